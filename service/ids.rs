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

/// The longest display file name, in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// Checks a display file name, wherever it arrives (an upload header, an image or file
/// message): 1 to [`MAX_FILE_NAME`] bytes of UTF-8 with no control characters (NUL,
/// newlines, ...) and no bidirectional-text controls, which can make `evil\u{202E}gnp.exe`
/// show as `evilexe.png`. `what` names the field in the error.
pub fn validate_file_name(what: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_FILE_NAME {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {MAX_FILE_NAME} bytes long, not {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    if name.chars().any(is_bidi_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain bidirectional-text controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)"
        )));
    }
    Ok(())
}

/// The Unicode characters that reorder how text is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
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

    #[test]
    fn file_names() {
        assert!(validate_file_name("f", "cat.png").is_ok());
        assert!(validate_file_name("f", "caf\u{e9} \u{1F431}.png").is_ok());
        assert!(validate_file_name("f", &"x".repeat(255)).is_ok());
        for bad in [
            "",
            "a\0b",
            "two\nlines",
            "evil\u{202E}gnp.exe",
            "x\u{2066}y",
        ] {
            assert!(
                validate_file_name("f", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(validate_file_name("f", &"x".repeat(256)).is_err());
    }
}
