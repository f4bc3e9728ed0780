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
//! - `cursors`: [`Sub`], a Subscribe stream read up to `ready`, with raw sends.
//! - `toxiproxy`: [`Toxiproxy`] proxies that cut, slow or reset connections.
//! - `nats`: a real [`Nats`] server with JetStream, for the replica drills.
//! - `replicas`: three [`Replicas`] of the server sharing it.
//! - `nats_cluster`: a three-node [`NatsCluster`] whose routes pass through Toxiproxy,
//!   for the cluster drills.
//! - `s3`: what the S3 server holds that object_store cannot list.
//! - here: tokens, `authed` requests, test data (bytes, images) and status assertions.

mod cursors;
mod media;
mod messaging;
mod nats;
mod nats_cluster;
mod replicas;
pub mod s3;
mod server;
mod toxiproxy;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tonic::{Code, Request, Status};

pub use cursors::*;
/// Image formats for [`encode_image`].
pub use image::ImageFormat;
pub use media::*;
pub use messaging::*;
pub use nats::Nats;
pub use nats_cluster::{ClusterNode, NatsCluster, SyncPolicy};
pub use replicas::Replicas;
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

/// The gRPC code and ErrorInfo reason of a refusal ("" without one).
#[track_caller]
pub fn refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String) {
    use tonic_types::StatusExt;
    let status = result.expect_err("refused");
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    (status.code(), reason)
}

/// Polls `check` every 50 ms until it holds; fails the test if it does not within
/// `limit`, naming `what` was awaited.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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

/// `jpeg` (a JPEG from [`encode_image`] or any other) with an EXIF APP1 segment put
/// first, whose IFD0 holds one entry: Orientation (tag 0x0112) = `orientation` (1 to 8;
/// 6 means "rotate 90° clockwise to show").
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Bytes {
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
    // Big-endian TIFF header, IFD0 at offset 8 with one SHORT entry, no next IFD.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xff, 0xd8];
    out.extend_from_slice(&app_segment(0xe1, &app1));
    out.extend_from_slice(&jpeg[2..]);
    out.into()
}

/// A JPEG APPn (or any length-prefixed) segment: marker, length, `body` (< 64 KiB).
pub fn app_segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len() + 2).expect("a segment body under 64 KiB");
    let mut out = vec![0xff, marker];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A `width` x `height` JPEG whose left half is red and right half blue, so that a
/// test can tell which way it was turned.
pub fn two_tone_jpeg(width: u32, height: u32) -> Bytes {
    let img = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encodes");
    out.into_inner().into()
}

/// The signature and IHDR chunk of a PNG declaring `width` x `height` RGBA pixels,
/// then an empty IDAT and IEND: a decompression bomb's header, without the bomb.
pub fn png_declaring(width: u32, height: u32) -> Bytes {
    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        let mut typed = kind.to_vec();
        typed.extend_from_slice(body);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
        out
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    out.extend_from_slice(&chunk(b"IHDR", &ihdr));
    // A zlib stream of nothing.
    out.extend_from_slice(&chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    out.extend_from_slice(&chunk(b"IEND", &[]));
    out.into()
}

/// The CRC-32 of PNG chunks.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `VmRSS` of process `pid` in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS")
}

/// The width and height of an encoded image, by decoding it whole.
pub fn decoded_size(data: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(data).expect("the image decodes");
    (img.width(), img.height())
}
