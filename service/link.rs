//! Signed media links: what a link says, how it is written into a URL, and how its
//! signature is made and checked.
//!
//! A link is `/media/v1/<media_id>?edge=<size>&exp=<secs>&u=<user>&iat=<secs>&sig=<mac>`:
//! `edge` the thumbnail size (absent or 0: the object itself), `exp` the expiry in
//! seconds since the Unix epoch, `u` the minting user's ID in unpadded URL-safe
//! base64, `iat` the issue time of the minting token (0 when it had none), and `sig`
//! the HMAC-SHA256 (unpadded URL-safe base64) of all of them under the link key.
//! The link key is HMAC-SHA256(token secret, "courier media url v1"): a key of its own,
//! so that a link's MAC can never stand in for a token's signature or the reverse.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::hmac;

use crate::ids::MediaId;

/// The path prefix of media links.
pub const PREFIX: &str = "/media/v1/";

/// The path prefix of links to an upload's staged bytes, minted only for the upload
/// hook: `/media/v1/staged/<media_id>?exp=<secs>&sig=<mac>`, the MAC over a text of
/// its own kind (see [`LinkKey::staged_query`]), so that it never opens a stored media
/// nor a media link opens staged bytes.
pub const STAGED_PREFIX: &str = "/media/v1/staged/";

/// What the link key is derived with, apart from the token secret.
const KEY_LABEL: &[u8] = b"courier media url v1";

/// The key that signs and checks links.
#[derive(Clone)]
pub struct LinkKey(hmac::Key);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// The link key of a server whose tokens are signed with `secret`.
    pub fn derive(secret: &[u8]) -> Self {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), KEY_LABEL);
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn mac(&self, link: &Link) -> hmac::Tag {
        hmac::sign(&self.0, link.signed_text().as_bytes())
    }

    /// The query of `link`, signature included.
    pub fn query(&self, link: &Link) -> String {
        let mut query = String::new();
        if link.edge != 0 {
            query.push_str(&format!("edge={}&", link.edge));
        }
        query.push_str(&format!(
            "exp={}&u={}&iat={}&sig={}",
            link.exp,
            URL_SAFE_NO_PAD.encode(link.user.as_bytes()),
            link.iat,
            URL_SAFE_NO_PAD.encode(self.mac(link).as_ref())
        ));
        query
    }

    /// The query of a link to the staged bytes of upload `id`, until `exp` (seconds
    /// since the Unix epoch).
    pub fn staged_query(&self, id: &MediaId, exp: u64) -> String {
        let mac = hmac::sign(&self.0, staged_text(id, exp).as_bytes());
        format!("exp={exp}&sig={}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    }

    /// Whether `sig` signs the staged-bytes link of `id` until `exp`.
    pub fn verify_staged(&self, id: &MediaId, exp: u64, sig: &[u8]) -> bool {
        hmac::verify(&self.0, staged_text(id, exp).as_bytes(), sig).is_ok()
    }

    /// Whether `sig` (the decoded `sig` parameter) is the signature of `link`;
    /// compared in constant time.
    pub fn verify(&self, link: &Link, sig: &[u8]) -> bool {
        hmac::verify(&self.0, link.signed_text().as_bytes(), sig).is_ok()
    }
}

/// What a link grants: one object (or one of its thumbnails) until an expiry, minted
/// by a user with a token of a given issue time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The object.
    pub media_id: MediaId,
    /// The thumbnail size (one of the sizes GetThumbnail makes), or 0 for the object.
    pub edge: u32,
    /// The expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// The user who minted it.
    pub user: String,
    /// The issue time of the minting token (0: the token had no `iat`).
    pub iat: u64,
}

impl Link {
    /// The text the signature covers: every field, each on its own line after a
    /// version tag, so that no two links share one.
    fn signed_text(&self) -> String {
        format!(
            "v1\n{}\n{}\n{}\n{}\n{}",
            self.media_id, self.edge, self.exp, self.user, self.iat
        )
    }
}

/// The text a staged-bytes link's MAC covers: a tag no media link's text starts with.
fn staged_text(id: &MediaId, exp: u64) -> String {
    format!("staged v1\n{id}\n{exp}")
}

/// The upload ID, expiry and signature of a staged-bytes link (path and query).
pub fn parse_staged(path: &str, query: Option<&str>) -> Result<(MediaId, u64, Vec<u8>), Malformed> {
    let id = path.strip_prefix(STAGED_PREFIX).ok_or(Malformed)?;
    let id = MediaId::parse(id).map_err(|_| Malformed)?;
    let (mut exp, mut sig) = (None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let taken = match pair.split_once('=').ok_or(Malformed)? {
            ("exp", value) => exp.replace(number(value)?).is_some(),
            ("sig", value) => sig
                .replace(URL_SAFE_NO_PAD.decode(value).map_err(|_| Malformed)?)
                .is_some(),
            _ => return Err(Malformed),
        };
        if taken {
            return Err(Malformed);
        }
    }
    Ok((id, exp.ok_or(Malformed)?, sig.ok_or(Malformed)?))
}

/// The parameters of a request to a media path, each as given (before its check).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `edge`, parsed; 0 when absent.
    pub edge: u32,
    /// The signed link's own parameters, when `sig` is there.
    pub signed: Option<Signed>,
}

/// The parameters of a signed link.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    /// `exp`.
    pub exp: u64,
    /// `u`, decoded.
    pub user: String,
    /// `iat`.
    pub iat: u64,
    /// `sig`, decoded.
    pub sig: Vec<u8>,
}

/// Why a request's path or query is not a link.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The media ID of a path under [`PREFIX`].
pub fn parse_path(path: &str) -> Result<MediaId, Malformed> {
    let id = path.strip_prefix(PREFIX).ok_or(Malformed)?;
    MediaId::parse(id).map_err(|_| Malformed)
}

/// Reads a query: `edge` alone (a Bearer request) or all of `exp`, `u`, `iat` and
/// `sig`. A parameter given twice, unknown, or not well formed makes it malformed.
pub fn parse_query(query: Option<&str>) -> Result<Params, Malformed> {
    let mut edge = None;
    let (mut exp, mut user, mut iat, mut sig) = (None, None, None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').ok_or(Malformed)?;
        let slot_taken = match name {
            "edge" => edge.replace(number(value)?).is_some(),
            "exp" => exp.replace(number(value)?).is_some(),
            "iat" => iat.replace(number(value)?).is_some(),
            "u" => {
                let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| Malformed)?;
                user.replace(String::from_utf8(bytes).map_err(|_| Malformed)?)
                    .is_some()
            }
            "sig" => sig
                .replace(URL_SAFE_NO_PAD.decode(value).map_err(|_| Malformed)?)
                .is_some(),
            _ => return Err(Malformed),
        };
        if slot_taken {
            return Err(Malformed);
        }
    }
    let edge = u32::try_from(edge.unwrap_or(0)).map_err(|_| Malformed)?;
    let signed = match (exp, user, iat, sig) {
        (None, None, None, None) => None,
        (Some(exp), Some(user), Some(iat), Some(sig)) => Some(Signed {
            exp,
            user,
            iat,
            sig,
        }),
        _ => return Err(Malformed),
    };
    Ok(Params { edge, signed })
}

/// A decimal number of at most 20 digits, nothing else.
fn number(text: &str) -> Result<u64, Malformed> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed);
    }
    text.parse().map_err(|_| Malformed)
}

/// `query` with the value of `sig` replaced by `REDACTED`, for logs.
pub fn redact(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("sig", _)) => "sig=REDACTED",
            _ => pair,
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            media_id: MediaId::generate(),
            edge: 320,
            exp: 1_900_000_000,
            user: "alice/é".into(),
            iat: 1_800_000_000,
        }
    }

    fn signed_params(key: &LinkKey, link: &Link) -> Params {
        parse_query(Some(&key.query(link))).unwrap_or_default()
    }

    #[test]
    fn a_minted_query_parses_back_and_verifies() {
        let key = LinkKey::derive(b"secret");
        let link = link();
        let params = signed_params(&key, &link);
        assert_eq!(params.edge, 320);
        let signed = params.signed.expect("signed");
        assert_eq!((signed.exp, signed.iat), (link.exp, link.iat));
        assert_eq!(signed.user, link.user);
        assert!(key.verify(&link, &signed.sig));
    }

    #[test]
    fn any_changed_field_or_key_fails() {
        let key = LinkKey::derive(b"secret");
        let link = link();
        let sig = signed_params(&key, &link)
            .signed
            .map(|s| s.sig)
            .unwrap_or_default();
        let changes = [
            Link {
                edge: 640,
                ..link.clone()
            },
            Link {
                exp: link.exp + 1,
                ..link.clone()
            },
            Link {
                user: "bob".into(),
                ..link.clone()
            },
            Link {
                iat: link.iat + 1,
                ..link.clone()
            },
            Link {
                media_id: MediaId::generate(),
                ..link.clone()
            },
        ];
        for changed in &changes {
            assert!(!key.verify(changed, &sig), "{changed:?}");
        }
        assert!(!LinkKey::derive(b"other").verify(&link, &sig));
        // The link key is not the token secret itself.
        let raw = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let raw_sig = hmac::sign(&raw, link.signed_text().as_bytes());
        assert!(!key.verify(&link, raw_sig.as_ref()));
    }

    #[test]
    fn malformed_queries_are_refused() {
        for query in [
            "exp=1",
            "exp=1&u=YQ&iat=1",
            "exp=x&u=YQ&iat=1&sig=AA",
            "exp=1&u=YQ&iat=1&sig=AA&sig=AA",
            "exp=1&u=!!&iat=1&sig=AA",
            "other=1",
            "edge=-1",
            "edge=99999999999",
            "edge",
        ] {
            assert_eq!(parse_query(Some(query)), Err(Malformed), "{query}");
        }
        assert_eq!(parse_query(None), Ok(Params::default()));
        assert_eq!(parse_query(Some("edge=96")).map(|p| p.edge), Ok(96));
        assert!(parse_path("/media/v1/../etc").is_err());
        assert!(parse_path("/media/v1/").is_err());
    }

    #[test]
    fn staged_links_open_only_staged_bytes() {
        let key = LinkKey::derive(b"secret");
        let id = MediaId::generate();
        let query = key.staged_query(&id, 1_900_000_000);
        let path = format!("{STAGED_PREFIX}{id}");
        let (parsed, exp, sig) = parse_staged(&path, Some(&query)).expect("parses");
        assert_eq!((parsed.clone(), exp), (id.clone(), 1_900_000_000));
        assert!(key.verify_staged(&id, exp, &sig));
        assert!(!key.verify_staged(&id, exp + 1, &sig));
        assert!(!key.verify_staged(&MediaId::generate(), exp, &sig));
        // Neither kind of signature stands in for the other.
        let media = Link {
            media_id: id.clone(),
            edge: 0,
            exp,
            user: String::new(),
            iat: 0,
        };
        assert!(!key.verify(&media, &sig));
        let media_sig = signed_params(&key, &media)
            .signed
            .map(|s| s.sig)
            .unwrap_or_default();
        assert!(!key.verify_staged(&id, exp, &media_sig));
        assert!(parse_path(&path).is_err());
    }

    #[test]
    fn redaction_hides_only_the_signature() {
        assert_eq!(
            redact("edge=96&exp=5&u=YQ&iat=1&sig=c2VjcmV0"),
            "edge=96&exp=5&u=YQ&iat=1&sig=REDACTED"
        );
    }
}
