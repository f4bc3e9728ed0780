//! Authentication: HS256 JWT bearer tokens whose `sub` is the user ID.
//!
//! Required claims: `sub` (the user ID: 1–64 bytes of printable ASCII, no whitespace)
//! and `exp` (expiry, seconds since the Unix epoch; no leeway). Optional: `nbf` (not
//! before; honoured, no leeway) and `iat` (issue time; not checked). Any other claim is
//! ignored. A token is at most [`MAX_TOKEN_BYTES`] long.
//!
//! The secret comes from `COURIER_JWT_SECRET`, or from the file `jwt-secret` in the data
//! folder, which the first start creates with mode 0600. `courier-server token` signs
//! with the same secret, so a script can mint a token and call the server at once.

use std::{
    fs,
    io::{self, Write},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status, service::Interceptor};

use crate::{error::Error, ids, revocation::Revocations};

/// The name of the secret's file inside the data folder.
const SECRET_FILE: &str = "jwt-secret";

/// The longest token accepted. Longer ones are refused with UNAUTHENTICATED (the
/// server reads metadata up to 64 KiB in all, so the refusal can say why).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The claims courier reads and writes.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user ID (empty when the token has none, which is refused).
    #[serde(default)]
    sub: String,
    /// Expiry, in seconds since the Unix epoch. Never absent in a verified token: the
    /// default only lets a token without one reach the check that names the claim.
    #[serde(default)]
    exp: u64,
    /// Issue time, in seconds since the Unix epoch: written by `mint`, never required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// Not before, in seconds since the Unix epoch: checked when present (the
    /// validation reads it from the token itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

/// The authenticated caller, put into each request's extensions by [`Authenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(pub String);

/// Returns the secret: the configured one, or the one in the data folder, creating it
/// (random, hex, mode 0600) when there is none yet.
pub fn resolve_secret(configured: Option<&str>, data_dir: &Path) -> io::Result<Vec<u8>> {
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is empty; delete it or set COURIER_JWT_SECRET",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret.into_bytes())
        }
        // Another process (a server, a `token` command) created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs a token for `user`, valid for `ttl`.
pub fn mint(secret: &[u8], user: &str, ttl: Duration) -> Result<String, Error> {
    ids::validate_name("user ID", user)?;
    let iat = now_secs();
    let claims = Claims {
        sub: user.to_owned(),
        exp: iat + ttl.as_secs().max(1),
        iat: Some(iat),
        nbf: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::Internal(format!("signing a token: {e}")))
}

/// Checks bearer tokens; as a tonic interceptor it guards every courier service.
#[derive(Clone)]
pub struct Authenticator {
    /// The key that verifies signatures.
    key: DecodingKey,
    /// HS256 only, `exp` and `sub` required, `nbf` honoured, no leeway.
    validation: Validation,
    /// Users whose tokens issued before some time are refused.
    revocations: Revocations,
}

/// When the caller's token was issued (its `iat` claim, if it has one): a request
/// extension beside the [`UserId`], for streams that must end when it is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedAt(pub Option<u64>);

/// When the caller's token expires (its `exp` claim, seconds since the Unix epoch): a
/// request extension beside the [`UserId`], so that a media link never outlives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiresAt(pub u64);

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The user.
    pub user: UserId,
    /// Its issue time.
    pub issued: IssuedAt,
    /// Its expiry.
    pub expires: ExpiresAt,
}

impl Authenticator {
    /// An authenticator for tokens signed with `secret`, none revoked.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_revocations(secret, Revocations::default())
    }

    /// An authenticator for tokens signed with `secret` that refuses `revocations`.
    pub fn with_revocations(secret: &[u8], revocations: Revocations) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            revocations,
        }
    }

    /// Verifies the value of an `authorization` header and returns the user it names.
    pub fn verify(&self, authorization: Option<&str>) -> Result<UserId, Error> {
        self.verify_issued(authorization).map(|(user, _)| user)
    }

    /// [`Authenticator::verify`], also returning when the token was issued.
    pub fn verify_issued(&self, authorization: Option<&str>) -> Result<(UserId, IssuedAt), Error> {
        self.verify_token(authorization)
            .map(|verified| (verified.user, verified.issued))
    }

    /// [`Authenticator::verify`], returning everything the token says.
    pub fn verify_token(&self, authorization: Option<&str>) -> Result<Verified, Error> {
        let header = authorization.ok_or_else(|| {
            Error::Unauthenticated("missing `authorization: Bearer <token>` metadata".into())
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("the authorization metadata must be `Bearer <token>`".into())
            })?;
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Unauthenticated(format!(
                "the token is {} bytes long; at most {MAX_TOKEN_BYTES} are accepted",
                token.len()
            )));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                Error::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".into(),
                    ErrorKind::ImmatureSignature => {
                        "the token is not valid yet (its nbf is in the future)".into()
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token has no `{claim}` claim (`sub` and `exp` are required)")
                    }
                    _ => "the token is invalid".into(),
                })
            })?;
        if data.claims.sub.is_empty() {
            return Err(Error::Unauthenticated(
                "the token has no `sub` claim (`sub` and `exp` are required)".into(),
            ));
        }
        ids::validate_name("the token's user ID", &data.claims.sub)
            .map_err(|e| Error::Unauthenticated(e.to_string()))?;
        if self
            .revocations
            .is_revoked(&data.claims.sub, data.claims.iat)
        {
            return Err(Error::Unauthenticated(
                "the token was revoked; ask for a new one".into(),
            ));
        }
        Ok(Verified {
            user: UserId(data.claims.sub),
            issued: IssuedAt(data.claims.iat),
            expires: ExpiresAt(data.claims.exp),
        })
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        let verified = self.verify_token(header)?;
        request.extensions_mut().insert(verified.user);
        request.extensions_mut().insert(verified.issued);
        request.extensions_mut().insert(verified.expires);
        Ok(request)
    }
}

/// The caller of a request that passed the [`Authenticator`].
pub fn caller<T>(request: &Request<T>) -> Result<UserId, Error> {
    request
        .extensions()
        .get::<UserId>()
        .cloned()
        .ok_or_else(|| Error::Internal("a request reached a handler without authentication".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify() {
        let token = mint(b"s3cret", "alice", Duration::from_secs(60)).ok();
        let auth = Authenticator::new(b"s3cret");
        let header = token.map(|t| format!("Bearer {t}"));
        assert_eq!(
            auth.verify(header.as_deref()).ok(),
            Some(UserId("alice".into()))
        );
    }

    #[test]
    fn forged_and_missing_tokens_fail() {
        let auth = Authenticator::new(b"s3cret");
        let forged = mint(b"other", "alice", Duration::from_secs(60)).ok();
        let header = forged.map(|t| format!("Bearer {t}"));
        assert!(matches!(
            auth.verify(header.as_deref()),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(auth.verify(None), Err(Error::Unauthenticated(_))));
        assert!(matches!(
            auth.verify(Some("Basic abc")),
            Err(Error::Unauthenticated(_))
        ));
    }

    #[test]
    fn secret_file_is_private_and_stable() {
        let dir = tempfile::tempdir().ok();
        let dir = dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"));
        let first = resolve_secret(None, dir).ok();
        let second = resolve_secret(None, dir).ok();
        assert!(first.is_some());
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(SECRET_FILE)).map(|m| m.permissions().mode());
            assert_eq!(mode.ok().map(|m| m & 0o777), Some(0o600));
        }
    }
}
