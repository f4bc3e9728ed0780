//! Test harness: starts the real `courier-server` binary on 127.0.0.1:0 against a
//! local folder or a real S3-compatible server, and talks gRPC to it.
//!
//! The binary is found next to the running test (`target/<profile>/courier-server`),
//! where `cargo test --workspace` builds it, or at `$COURIER_SERVER_BIN`.
//!
//! # Layout
//! - `server`: [`Server`] processes, their metrics and their stored objects.
//! - `media`: upload and download helpers over raw gRPC.
//! - `messaging`: [`Feed`] (a Subscribe stream) and send helpers.
//! - `toxiproxy`: [`Toxiproxy`] proxies that cut, slow or reset connections.
//! - `nats`: a real [`Nats`] server with JetStream, for the replica drills.
//! - `s3`: what the S3 server holds that object_store cannot list.
//! - here: tokens, `authed` requests, test data (bytes, images) and status assertions.

mod media;
mod messaging;
mod nats;
pub mod s3;
mod server;
mod toxiproxy;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tonic::{Code, Request, Status};

/// Image formats for [`encode_image`].
pub use image::ImageFormat;
pub use media::*;
pub use messaging::*;
pub use nats::Nats;
pub use server::*;
pub use toxiproxy::*;

/// The secret every test server signs with, so tests can mint and forge tokens.
pub const SECRET: &str = "test-secret-of-courier";

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
}

/// A token for `user` signed with `secret`, expiring `ttl_secs` from now (negative: in
/// the past).
pub fn token_with(secret: &str, user: &str, ttl_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: user,
        exp: (now as i64 + ttl_secs) as u64,
        iat: now,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signs")
}

/// A token signed with [`SECRET`] holding exactly `claims` (a JSON object), for tests
/// of which claims the server requires.
pub fn token_with_claims(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("signs")
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A valid token for `user`.
pub fn token(user: &str) -> String {
    token_with(SECRET, user, 3600)
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    let mut x: u32 = 0x9e37_79b9 ^ seed as u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Asserts that `result` failed with `code`, and returns the status message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> String {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status.message().to_owned()
        }
    }
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// A `width` x `height` image encoded in `format` by the `image` crate.
pub fn encode_image(format: image::ImageFormat, width: u32, height: u32) -> Bytes {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encodes");
    out.into_inner().into()
}

/// A `width` x `height` PNG.
pub fn png(width: u32, height: u32) -> Bytes {
    encode_image(image::ImageFormat::Png, width, height)
}
