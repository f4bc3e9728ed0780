//! Storage quotas (`--quota-bytes`, `--quota-bytes-per-hour`): an upload over either
//! is refused at its header with RESOURCE_EXHAUSTED and reason QUOTA_EXCEEDED whose
//! metadata says the quota, limit and use; nothing is stored; expiry frees live
//! quota (not the hour's); header-only re-uploads count. On a local folder and on S3.

#[macro_use]
mod common;

use std::{collections::HashMap, time::Duration};

use common::{Backend, Server, header, pattern, sha256, token, upload_bytes, upload_frames};
use courier_client::{Client, Error};
use courier_server::pb::MediaKind;
use tonic::Code;
use tonic_types::StatusExt;

/// The ErrorInfo of a refusal: reason and metadata.
fn info(status: &tonic::Status) -> (String, HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo");
    (info.reason, info.metadata)
}

async fn upload(server: &Server, user: &str, size: usize, seed: u8) -> Result<(), tonic::Status> {
    let mut media = server.media().await;
    let data = pattern(size, seed);
    upload_bytes(
        &mut media,
        &token(user),
        header(MediaKind::File, "q.bin", size as u64),
        &data,
    )
    .await
    .map(|_| ())
}

async fn live_quota_refuses_at_the_header_and_expiry_frees_it(backend: Backend) {
    let server = Server::start(
        &backend,
        &[
            "--quota-bytes",
            "1000",
            "--media-ttl",
            "3s",
            "--sweep-interval",
            "1h",
        ],
    );
    upload(&server, "alice", 600, 1)
        .await
        .expect("within the quota");
    let before = server.stored().await;
    let refused = upload(&server, "alice", 500, 2)
        .await
        .expect_err("600 + 500 > 1000");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let (reason, metadata) = info(&refused);
    assert_eq!(reason, "QUOTA_EXCEEDED");
    assert_eq!(metadata["quota"], "live_bytes");
    assert_eq!(metadata["limit"], "1000");
    assert_eq!(metadata["used"], "600");
    assert_eq!(metadata["requested"], "500");
    // Refused at the header: not a byte stored.
    assert_eq!(server.stored().await, before);
    // Other users have their own quota; 400 more fits exactly for alice.
    upload(&server, "bob", 1000, 3)
        .await
        .expect("bob's own quota");
    upload(&server, "alice", 400, 4)
        .await
        .expect("exactly at the quota");
    // The Rust client names it.
    let client = Client::connect(&server.url(), &token("alice"))
        .await
        .expect("connects");
    let error = client
        .upload_file_bytes("more.bin", pattern(10, 5))
        .expect("starts")
        .await
        .expect_err("over the quota");
    assert!(matches!(error, Error::QuotaExceeded(_)), "{error:?}");
    // Expiry frees live quota (no sweep needed: expired uploads stop counting).
    tokio::time::sleep(Duration::from_millis(3200)).await;
    upload(&server, "alice", 900, 6)
        .await
        .expect("after expiry");
}

async fn hourly_quota_counts_expired_uploads_and_re_uploads(backend: Backend) {
    let server = Server::start(
        &backend,
        &["--quota-bytes-per-hour", "1000", "--media-ttl", "1s"],
    );
    let data = pattern(600, 7);
    upload(&server, "carol", 600, 7)
        .await
        .expect("within the hour's quota");
    // A header-only re-upload of the same content counts too (it is a new upload).
    let mut media = server.media().await;
    let mut offer = header(MediaKind::File, "again.bin", data.len() as u64);
    offer.sha256 = sha256(&data).into();
    let refused = upload_frames(
        &mut media,
        &token("carol"),
        vec![common::header_frame(offer)],
    )
    .await
    .expect_err("600 + 600 > 1000 in the hour");
    assert_eq!(info(&refused).0, "QUOTA_EXCEEDED");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Expired, but uploaded within the hour: still counted.
    let refused = upload(&server, "carol", 500, 8)
        .await
        .expect_err("the hour's bytes are used");
    let (reason, metadata) = info(&refused);
    assert_eq!(reason, "QUOTA_EXCEEDED");
    assert_eq!(metadata["quota"], "bytes_per_hour");
    assert_eq!(metadata["used"], "600");
    upload(&server, "carol", 400, 9)
        .await
        .expect("what is left of the hour");
}

on_every_backend!(
    live_quota_refuses_at_the_header_and_expiry_frees_it,
    hourly_quota_counts_expired_uploads_and_re_uploads,
);
