//! Identifiers: server-made media IDs, and the user and channel IDs that callers name.
//!
//! A media ID is checked here before it is ever turned into a storage path, so that no
//! caller-supplied text reaches the object store unvalidated.

use std::fmt;

use rand::RngCore;

use crate::error::Error;

/// The number of random bytes in a media ID (128 bits).
const MEDIA_ID_BYTES: usize = 16;

/// The longest user or channel ID, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A validated media ID: exactly 32 lowercase hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaId(String);

impl MediaId {
    /// Makes a new, unguessable media ID from 128 bits of the OS random generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; MEDIA_ID_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Checks a caller-supplied media ID strictly; nothing else may become a path.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::invalid("media_id is required"));
        }
        let well_formed = text.len() == MEDIA_ID_BYTES * 2
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(Error::invalid(
                "media_id is malformed: it must be 32 lowercase hexadecimal characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a user or channel ID: 1 to 64 bytes of printable ASCII, no whitespace.
/// `what` names the field in the error, for example "user ID" or "channel_id".
pub fn validate_name(what: &str, text: &str) -> Result<(), Error> {
    if text.is_empty() || text.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes long, not {}",
            text.len()
        )));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(format!(
            "{what} may hold only printable ASCII without whitespace"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = MediaId::generate();
        let b = MediaId::generate();
        assert_ne!(a, b);
        assert_eq!(MediaId::parse(a.as_str()).ok(), Some(a));
    }

    #[test]
    fn hostile_ids_are_refused() {
        let long = "a".repeat(300);
        for bad in [
            "",
            "../x",
            "a/b",
            long.as_str(),
            "ABCDEF0123456789ABCDEF0123456789",
            "0123456789abcdef0123456789abcde.",
        ] {
            assert!(MediaId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("user ID", "alice").is_ok());
        assert!(validate_name("user ID", &"x".repeat(64)).is_ok());
        assert!(validate_name("user ID", &"x".repeat(65)).is_err());
        assert!(validate_name("user ID", "").is_err());
        assert!(validate_name("user ID", "al ice").is_err());
        assert!(validate_name("user ID", "al\u{e9}").is_err());
        assert!(validate_name("user ID", "tab\t").is_err());
    }
}
