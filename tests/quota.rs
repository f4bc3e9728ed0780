//! Storage quotas (`--quota-bytes`, `--quota-bytes-per-hour`): an upload over either
//! is refused at its header with RESOURCE_EXHAUSTED and reason QUOTA_EXCEEDED whose
//! metadata says the quota, limit and use; nothing is stored; expiry frees live
//! quota (not the hour's); header-only re-uploads count. An upload holds its declared
//! bytes from its admission: open resumable uploads and racing streaming uploads, on
//! one server or two sharing a store, never pass the quota together. On a local
//! folder and on S3.

#[macro_use]
mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    Backend, Server, authed, data_frames, header, open_upload, pattern, sha256, token,
    upload_bytes, upload_frames,
};
use courier_client::{Client, Error};
use courier_server::pb::{self, MediaKind};
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

/// CreateUpload of `size` bytes by `user`.
async fn create(server: &Server, user: &str, size: u64) -> Result<String, tonic::Status> {
    let request = pb::CreateUploadRequest {
        header: Some(header(MediaKind::File, "r.bin", size)),
    };
    let mut media = server.media().await;
    Ok(media
        .create_upload(authed(&token(user), request))
        .await?
        .into_inner()
        .upload_id)
}

/// The quota, the use and the held bytes a QUOTA_EXCEEDED refusal names.
fn refused_with(status: &tonic::Status) -> (String, String, String) {
    let (reason, metadata) = info(status);
    assert_eq!(reason, "QUOTA_EXCEEDED", "{status:?}");
    (
        metadata["quota"].clone(),
        metadata["used"].clone(),
        metadata["held"].clone(),
    )
}

async fn open_resumable_uploads_hold_their_bytes(backend: Backend) {
    let server = Server::start(&backend, &["--quota-bytes", "1000"]);
    let first = create(&server, "dave", 400).await.expect("fits");
    let second = create(&server, "dave", 400)
        .await
        .expect("fits with the first");
    // Two open uploads hold 800 bytes: a third, or a streaming upload, is refused
    // although nothing is committed yet.
    let refused = create(&server, "dave", 400)
        .await
        .expect_err("800 held + 400 > 1000");
    assert_eq!(
        refused_with(&refused),
        ("live_bytes".into(), "800".into(), "800".into())
    );
    assert!(refused.message().contains("held by uploads in progress"));
    let refused = upload(&server, "dave", 300, 1)
        .await
        .expect_err("800 held + 300 > 1000");
    assert_eq!(refused_with(&refused).1, "800");
    // A cancelled upload gives its bytes back.
    let mut media = server.media().await;
    media
        .cancel_upload(authed(
            &token("dave"),
            pb::CancelUploadRequest {
                upload_id: first.clone(),
            },
        ))
        .await
        .expect("cancels");
    upload(&server, "dave", 300, 1)
        .await
        .expect("400 held + 300 fits");
    // A committed one is counted once: its hold becomes its use.
    let data = pattern(400, 2);
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &data) as u32;
    media
        .write_upload(authed(
            &token("dave"),
            pb::WriteUploadRequest {
                upload_id: second.clone(),
                offset: 0,
                data: data.clone(),
                crc32c: crc,
            },
        ))
        .await
        .expect("the part");
    media
        .commit_upload(authed(
            &token("dave"),
            pb::CommitUploadRequest {
                upload_id: second,
                sha256: sha256(&data).into(),
            },
        ))
        .await
        .expect("commits");
    let refused = upload(&server, "dave", 301, 3)
        .await
        .expect_err("700 + 301 > 1000");
    assert_eq!(
        refused_with(&refused),
        ("live_bytes".into(), "700".into(), "0".into())
    );
    upload(&server, "dave", 300, 3)
        .await
        .expect("exactly at the quota");
}

/// Uploads of 400 bytes by `user`, each through the next of `servers` in turn, all
/// admitted (header and half their bytes sent) before any finishes; returns how many
/// were stored. Every other one must be refused with QUOTA_EXCEEDED.
async fn race(servers: &[&Server], user: &str, uploads: usize) -> u64 {
    let mut open = Vec::new();
    for k in 0..uploads {
        open.push(open_upload(servers[k % servers.len()], user, 400, 200).await);
    }
    let mut stored = 0;
    for (tx, call) in open {
        // The rest of the bytes (a refused upload's stream is already closed).
        for frame in data_frames(&pattern(200, 6), 256 * 1024) {
            let _ = tx.send(frame).await;
        }
        drop(tx);
        match call.await.expect("the upload task") {
            Ok(_) => stored += 1,
            Err(status) => {
                refused_with(&status);
            }
        }
    }
    stored
}

/// After a race that stored `stored` uploads of 400 bytes under a quota of 1,000,
/// exactly the rest of the quota is free: no refused upload left bytes held.
async fn rest_is_free(server: &Server, user: &str, stored: u64) {
    assert!(
        stored <= 2,
        "{stored} uploads of 400 bytes stored under a quota of 1000"
    );
    let rest = 1000 - 400 * stored as usize;
    let refused = upload(server, user, rest + 1, 8)
        .await
        .expect_err("one byte past the quota");
    assert_eq!(refused_with(&refused).2, "0", "nothing is left held");
    upload(server, user, rest, 8)
        .await
        .expect("the rest of the quota is free");
}

async fn racing_uploads_never_pass_the_quota(backend: Backend) {
    let server = Server::start(&backend, &["--quota-bytes", "1000"]);
    let stored = race(&[&server], "erin", 6).await;
    rest_is_free(&server, "erin", stored).await;
}

on_every_backend!(
    live_quota_refuses_at_the_header_and_expiry_frees_it,
    hourly_quota_counts_expired_uploads_and_re_uploads,
    open_resumable_uploads_hold_their_bytes,
    racing_uploads_never_pass_the_quota,
);

/// Two replicas sharing a store (S3 when the test script started one, else a folder):
/// uploads racing through both never pass the quota together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_uploads_through_two_replicas_never_pass_the_quota() {
    let dir = tempfile::tempdir().expect("a shared folder");
    let backend = Backend::shared(dir.path());
    let one = Server::start(&backend, &["--quota-bytes", "1000"]);
    let two = Server::start(&backend, &["--quota-bytes", "1000"]);
    let stored = race(&[&one, &two], "frank", 6).await;
    rest_is_free(&two, "frank", stored).await;
}
