//! Calls to the operator's own HTTP services: the upload hook (a scanner or a
//! moderation service that judges each new content) and the event webhook (a backend
//! told of messages, to send push notifications).
//!
//! Both are signed the way [Standard Webhooks] signs: three headers, `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated list
//! of `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`, one per configured
//! secret, so that an operator can rotate a secret by configuring the new one beside
//! the old, moving the receiver over, then dropping the old. A receiver checks the
//! timestamp is recent and any one signature matches.
//!
//! The client ([`Hook`]) follows no redirects, verifies TLS against the system's roots
//! (and an extra CA file when given), gives up after a timeout, and reads at most
//! [`MAX_ANSWER`] bytes of an answer.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

use std::{path::Path, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::{Bytes, BytesMut};

/// The most bytes of a hook's answer that are read; a longer answer is an error.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The prefix of a Standard Webhooks secret; the rest is the key in base64.
const SECRET_PREFIX: &str = "whsec_";

/// One signing key, from a `whsec_<base64>` secret.
#[derive(Clone)]
struct Key(ring::hmac::Key);

/// The secrets a hook's requests are signed with: usually one, two while rotating.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} secrets)", self.keys.len())
    }
}

impl Signer {
    /// A signer from one or more `whsec_<base64>` secrets (the form Standard Webhooks
    /// libraries take); an error names what is wrong with a malformed one.
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("a hook needs at least one signing secret".into());
        }
        if secrets.len() > 2 {
            return Err(format!(
                "a hook takes at most two secrets (the current one and the next), not {}",
                secrets.len()
            ));
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let secret = secret.as_ref().trim();
                let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
                    format!("hook secret {} must start with `{SECRET_PREFIX}`", i + 1)
                })?;
                let key = STANDARD.decode(encoded).map_err(|e| {
                    format!(
                        "hook secret {} is not base64 after `{SECRET_PREFIX}`: {e}",
                        i + 1
                    )
                })?;
                if !(24..=64).contains(&key.len()) {
                    return Err(format!(
                        "hook secret {} decodes to {} bytes; it must be 24 to 64",
                        i + 1,
                        key.len()
                    ));
                }
                Ok(Key(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { keys })
    }

    /// The `webhook-signature` header for message `id` sent at `timestamp` (Unix
    /// seconds) with `body`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut signatures = Vec::with_capacity(self.keys.len());
        for Key(key) in &self.keys {
            let mut context = ring::hmac::Context::with_key(key);
            context.update(id.as_bytes());
            context.update(b".");
            context.update(timestamp.to_string().as_bytes());
            context.update(b".");
            context.update(body);
            signatures.push(format!("v1,{}", STANDARD.encode(context.sign().as_ref())));
        }
        signatures.join(" ")
    }
}

/// Why a call to a hook got no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No answer within the hook's timeout.
    #[error("the hook did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed, TLS failed, or the answer was cut.
    #[error("calling the hook failed: {0}")]
    Transport(String),
    /// The answer was longer than [`MAX_ANSWER`].
    #[error("the hook's answer is longer than {MAX_ANSWER} bytes")]
    TooLong,
}

/// A hook's answer: its HTTP status and (at most [`MAX_ANSWER`] bytes of) its body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code. Redirects are not followed: a 3xx arrives here.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

/// An operator's HTTP endpoint that courier posts signed JSON to.
#[derive(Debug, Clone)]
pub struct Hook {
    url: url::Url,
    signer: Signer,
    client: reqwest::Client,
    timeout: Duration,
}

impl Hook {
    /// A hook at `url` (http or https), signed with `signer`, giving up after
    /// `timeout`; `ca_file` adds a PEM root certificate to the system's (for a hook
    /// behind a private CA).
    pub fn new(
        url: &str,
        signer: Signer,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| format!("hook URL `{url}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "hook URL `{url}` must be http:// or https://, not {}://",
                url.scheme()
            ));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("courier/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading hook CA file {}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("hook CA file {}: {e}", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| format!("building the hook client: {e}"))?;
        Ok(Self {
            url,
            signer,
            client,
            timeout,
        })
    }

    /// The URL posted to.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Posts `body` (JSON) as message `id` (the idempotency key a receiver dedups
    /// by), signed now, and returns the answer.
    pub async fn post(&self, id: &str, body: Vec<u8>) -> Result<Answer, HookError> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = self.signer.sign(id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = sent.map_err(|e| self.failure(e))?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER as u64)
        {
            return Err(HookError::TooLong);
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failure(e))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(HookError::TooLong);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body: body.freeze(),
        })
    }

    fn failure(&self, e: reqwest::Error) -> HookError {
        if e.is_timeout() {
            HookError::Timeout(self.timeout)
        } else {
            // The chain of sources says what failed (refused, TLS, reset).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            HookError::Transport(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks reference libraries: secret, message
    /// ID, timestamp and payload, and the signature they compute.
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let signer = Signer::new(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
        let signature = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signs_once_per_secret_for_rotation() {
        let signer = Signer::new(&[
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .unwrap();
        let signature = signer.sign("id", 1, b"{}");
        let parts: Vec<_> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn refuses_malformed_secrets_by_name() {
        let no_prefix = Signer::new(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap_err();
        assert!(no_prefix.contains("whsec_"), "{no_prefix}");
        let short = Signer::new(&["whsec_AAAA"]).unwrap_err();
        assert!(short.contains("24 to 64"), "{short}");
        let three = Signer::new(&["whsec_x", "whsec_y", "whsec_z"]).unwrap_err();
        assert!(three.contains("at most two"), "{three}");
        assert!(Signer::new::<&str>(&[]).is_err());
    }
}
