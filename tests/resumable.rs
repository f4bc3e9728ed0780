//! The resumable upload API (CreateUpload, WriteUpload, QueryUpload, CommitUpload,
//! CancelUpload) over gRPC against a real server, on a local folder and on S3 (MinIO),
//! including a restart of the server mid-upload and, with S3 and a bus, an upload
//! started on one replica and finished on another.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Backend, Nats, Server, authed, download, eventually, expect_code, header, pattern, sha256,
    token, upload_bytes,
};
use courier_server::pb::{self, MediaKind, media_service_client::MediaServiceClient};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

/// The part size the local-folder tests run with (the default is 1 MiB).
const LOCAL_PART: &str = "65536";

/// The CRC32C (Castagnoli) of `data`, as a client computes it.
fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// A user's calls on one server.
struct Uploader {
    client: MediaServiceClient<Channel>,
    token: String,
}

impl Uploader {
    async fn new(server: &Server, user: &str) -> Self {
        Self {
            client: server.media().await,
            token: token(user),
        }
    }

    async fn create(&mut self, name: &str, size: u64) -> Result<pb::CreateUploadResponse, Status> {
        let request = pb::CreateUploadRequest {
            header: Some(header(MediaKind::File, name, size)),
        };
        Ok(self
            .client
            .create_upload(authed(&self.token, request))
            .await?
            .into_inner())
    }

    async fn write_crc(
        &mut self,
        id: &str,
        offset: u64,
        data: Bytes,
        crc: u32,
    ) -> Result<pb::WriteUploadResponse, Status> {
        let request = pb::WriteUploadRequest {
            upload_id: id.to_owned(),
            offset,
            data,
            crc32c: crc,
        };
        Ok(self
            .client
            .write_upload(authed(&self.token, request))
            .await?
            .into_inner())
    }

    async fn write(&mut self, id: &str, offset: u64, data: Bytes) -> Result<u64, Status> {
        let crc = crc32c(&data);
        Ok(self.write_crc(id, offset, data, crc).await?.committed_size)
    }

    /// Writes the parts of `data` from `from` (a part boundary) to `to`.
    async fn write_range(&mut self, id: &str, data: &Bytes, part: u64, from: u64, to: u64) {
        let mut offset = from;
        while offset < to {
            let end = (offset + part).min(data.len() as u64);
            let committed = self
                .write(id, offset, data.slice(offset as usize..end as usize))
                .await
                .expect("a part is stored");
            assert_eq!(committed, end, "committed_size after the part at {offset}");
            offset = end;
        }
    }

    async fn query(&mut self, id: &str) -> Result<pb::QueryUploadResponse, Status> {
        let request = pb::QueryUploadRequest {
            upload_id: id.to_owned(),
        };
        Ok(self
            .client
            .query_upload(authed(&self.token, request))
            .await?
            .into_inner())
    }

    async fn commit(&mut self, id: &str, sha: Vec<u8>) -> Result<pb::Media, Status> {
        let request = pb::CommitUploadRequest {
            upload_id: id.to_owned(),
            sha256: sha.into(),
        };
        Ok(self
            .client
            .commit_upload(authed(&self.token, request))
            .await?
            .into_inner()
            .media
            .expect("a media record"))
    }

    async fn cancel(&mut self, id: &str) -> Result<(), Status> {
        let request = pb::CancelUploadRequest {
            upload_id: id.to_owned(),
        };
        self.client
            .cancel_upload(authed(&self.token, request))
            .await
            .map(|_| ())
    }
}

/// The ErrorInfo reason and metadata of a refusal.
fn info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo");
    assert_eq!(info.domain, "courier.v1");
    (info.reason, info.metadata)
}

/// Asserts UPLOAD_OFFSET_MISMATCH with `committed_size` in its metadata.
#[track_caller]
fn assert_offset_mismatch<T: std::fmt::Debug>(result: Result<T, Status>, committed: u64) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "UPLOAD_OFFSET_MISMATCH");
    assert_eq!(metadata.get("committed_size"), Some(&committed.to_string()));
}

fn server_for(backend: &Backend, extra: &[&str]) -> Server {
    let mut flags: Vec<&str> = extra.to_vec();
    if matches!(backend, Backend::Local) {
        flags.extend(["--upload-part-size", LOCAL_PART]);
    }
    Server::start(backend, &flags)
}

/// The keys under `resumable/`.
async fn resumable_keys(server: &Server) -> Vec<String> {
    server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with("resumable/"))
        .collect()
}

on_every_backend!(
    a_whole_upload_lands_as_media,
    parts_must_fit_what_is_stored,
    an_upload_is_its_owners_alone,
    a_commit_checks_every_byte,
    an_upload_holds_a_transfer_slot,
    cancel_removes_everything,
    it_survives_a_restart_of_the_server,
);

/// Create, write every part, commit: the Media record, byte-identical on download,
/// stored once per content (as UploadMedia stores it), committed again with the same
/// answer, nothing of the parts left.
async fn a_whole_upload_lands_as_media(backend: Backend) {
    let server = server_for(&backend, &[]);
    let mut alice = Uploader::new(&server, "alice").await;
    let probe = alice.create("probe.bin", 1).await.expect("created");
    alice.cancel(&probe.upload_id).await.expect("cancelled");
    let part = probe.part_size;
    let data = pattern((part * 2 + part / 2) as usize, 3);
    let created = alice
        .create("file.bin", data.len() as u64)
        .await
        .expect("created");
    assert_eq!(created.upload_id.len(), 32);
    assert!(created.upload_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(created.expire_time.is_some());
    let id = created.upload_id.clone();
    assert_eq!(alice.query(&id).await.expect("query").committed_size, 0);
    alice
        .write_range(&id, &data, part, 0, data.len() as u64)
        .await;
    let query = alice.query(&id).await.expect("query");
    assert_eq!(
        (query.committed_size, query.size, query.part_size),
        (data.len() as u64, data.len() as u64, part)
    );
    let media = alice.commit(&id, sha256(&data)).await.expect("committed");
    assert_eq!(media.size, data.len() as u64);
    assert_eq!(media.sha256.to_vec(), sha256(&data));
    assert_eq!(media.file_name, "file.bin");
    let (record, bytes) = download(&mut alice.client, &alice.token, &media.media_id, 0, 0)
        .await
        .expect("downloads");
    assert_eq!(record.media_id, media.media_id);
    assert!(bytes == data, "the download is byte-identical");

    // The client lost the answer: the same record again.
    let again = alice
        .commit(&id, sha256(&data))
        .await
        .expect("committed again");
    assert_eq!(again.media_id, media.media_id);
    // A committed upload takes no more parts.
    expect_code(
        alice.write(&id, 0, data.slice(0..part as usize)).await,
        Code::FailedPrecondition,
    );
    // Only its state is left, for repeated commits, and the content once.
    let stored = server.stored().await;
    let sha = hex::encode(sha256(&data));
    assert!(stored.contains(&format!("content/{sha}")), "{stored:?}");
    assert_eq!(
        resumable_keys(&server).await,
        vec![format!("resumable/{id}/state.json")]
    );
    assert!(
        !stored.iter().any(|k| k.starts_with("uploads/")),
        "{stored:?}"
    );
    if let Some((bucket, prefix)) = server.s3_location() {
        assert!(common::s3::incomplete_uploads(&bucket, &prefix).is_empty());
    }
    // The same content by UploadMedia shares the bytes (content-addressed).
    let streamed = upload_bytes(
        &mut alice.client,
        &alice.token,
        header(MediaKind::File, "copy.bin", data.len() as u64),
        &data,
    )
    .await
    .expect("uploaded");
    assert_ne!(streamed.media_id, media.media_id);
    let contents = server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with("content/"))
        .count();
    assert_eq!(contents, 1);
}

/// Parts go exactly at k x part_size with exactly part_size bytes (the last: the rest)
/// and their CRC32C; an identical re-write is acknowledged, anything else refused with
/// the committed size, and nothing of a refused part is kept.
async fn parts_must_fit_what_is_stored(backend: Backend) {
    let server = server_for(&backend, &[]);
    let mut alice = Uploader::new(&server, "alice").await;
    let probe = alice.create("probe.bin", 1).await.expect("created");
    alice.cancel(&probe.upload_id).await.expect("cancelled");
    let part = probe.part_size;
    let data = pattern((part * 2 + 100) as usize, 4);
    let id = alice
        .create("f.bin", data.len() as u64)
        .await
        .expect("created")
        .upload_id;
    let p =
        |k: u64| data.slice((k * part) as usize..((k + 1) * part).min(data.len() as u64) as usize);

    // A bad CRC32C: refused, nothing kept.
    let status = alice
        .write_crc(&id, 0, p(0), crc32c(&p(0)) ^ 1)
        .await
        .expect_err("a bad checksum");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(info(&status).0, "CHECKSUM_MISMATCH");
    assert_eq!(
        info(&status).1.get("checksum").map(String::as_str),
        Some("crc32c")
    );
    assert_eq!(alice.query(&id).await.expect("query").committed_size, 0);

    // A gap, a misaligned offset, an offset past the end.
    assert_offset_mismatch(alice.write(&id, part, p(1)).await, 0);
    assert_offset_mismatch(
        alice.write(&id, 1, data.slice(1..1 + part as usize)).await,
        0,
    );
    assert_offset_mismatch(
        alice.write(&id, part * 3, Bytes::from_static(b"x")).await,
        0,
    );
    // A wrong length: too short, too long, empty.
    expect_code(
        alice.write(&id, 0, p(0).slice(1..)).await,
        Code::InvalidArgument,
    );
    expect_code(
        alice.write(&id, 0, data.slice(0..part as usize + 1)).await,
        Code::InvalidArgument,
    );
    expect_code(
        alice.write(&id, 0, Bytes::new()).await,
        Code::InvalidArgument,
    );
    assert_eq!(alice.query(&id).await.expect("query").committed_size, 0);

    assert_eq!(alice.write(&id, 0, p(0)).await.expect("stored"), part);
    // The same bytes again: fine.
    assert_eq!(alice.write(&id, 0, p(0)).await.expect("again"), part);
    // Different bytes over a stored part: refused.
    let mut other = p(0).to_vec();
    other[7] ^= 0xff;
    assert_offset_mismatch(alice.write(&id, 0, Bytes::from(other)).await, part);
    // The last part must be exactly the rest.
    assert_offset_mismatch(alice.write(&id, part * 2, p(2)).await, part);
    assert_eq!(
        alice.write(&id, part, p(1)).await.expect("stored"),
        part * 2
    );
    expect_code(
        alice
            .write(
                &id,
                part * 2,
                data.slice((part * 2) as usize..(part * 2 + 99) as usize),
            )
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        alice.write(&id, part * 2, p(2)).await.expect("stored"),
        data.len() as u64
    );
    let media = alice.commit(&id, sha256(&data)).await.expect("committed");
    let (_, bytes) = download(&mut alice.client, &alice.token, &media.media_id, 0, 0)
        .await
        .expect("downloads");
    assert!(bytes == data);
}

/// Another user's calls with an upload ID are NOT_FOUND, worded as for an ID that
/// never was; a malformed ID is INVALID_ARGUMENT.
async fn an_upload_is_its_owners_alone(backend: Backend) {
    let server = server_for(&backend, &[]);
    let mut alice = Uploader::new(&server, "alice").await;
    let mut bob = Uploader::new(&server, "bob").await;
    let data = pattern(1000, 5);
    let id = alice
        .create("a.bin", 1000)
        .await
        .expect("created")
        .upload_id;
    let never = "0123456789abcdef0123456789abcdef";
    let theirs = expect_code(bob.query(&id).await, Code::NotFound);
    let missing = expect_code(bob.query(never).await, Code::NotFound);
    assert_eq!(theirs.replace(&id, "ID"), missing.replace(never, "ID"));
    expect_code(bob.write(&id, 0, data.clone()).await, Code::NotFound);
    expect_code(bob.commit(&id, sha256(&data)).await, Code::NotFound);
    expect_code(bob.cancel(&id).await, Code::NotFound);
    for bad in ["", "../state", "0123456789ABCDEF0123456789ABCDEF"] {
        expect_code(alice.query(bad).await, Code::InvalidArgument);
        expect_code(
            alice.write(bad, 0, data.clone()).await,
            Code::InvalidArgument,
        );
    }
    // Bob's attempts changed nothing, and took none of his slots.
    assert_eq!(
        alice.write(&id, 0, data.clone()).await.expect("stored"),
        1000
    );
    alice.commit(&id, sha256(&data)).await.expect("committed");
    assert_eq!(server.metric("courier_transfers_in_flight").await, 0);
}

/// A commit needs every byte (UPLOAD_OFFSET_MISMATCH with the committed size) and the
/// right SHA-256 (CHECKSUM_MISMATCH: the upload is removed, nothing published).
async fn a_commit_checks_every_byte(backend: Backend) {
    let server = server_for(&backend, &[]);
    let mut alice = Uploader::new(&server, "alice").await;
    let probe = alice.create("probe.bin", 1).await.expect("created");
    alice.cancel(&probe.upload_id).await.expect("cancelled");
    let part = probe.part_size;
    let data = pattern((part + 10) as usize, 6);
    let id = alice
        .create("f.bin", data.len() as u64)
        .await
        .expect("created")
        .upload_id;
    assert_offset_mismatch(alice.commit(&id, sha256(&data)).await, 0);
    alice.write_range(&id, &data, part, 0, part).await;
    assert_offset_mismatch(alice.commit(&id, sha256(&data)).await, part);
    alice
        .write_range(&id, &data, part, part, data.len() as u64)
        .await;
    expect_code(
        alice.commit(&id, vec![1, 2, 3]).await,
        Code::InvalidArgument,
    );
    let status = alice
        .commit(&id, sha256(b"something else"))
        .await
        .expect_err("a wrong digest");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(info(&status).0, "CHECKSUM_MISMATCH");
    assert_eq!(
        info(&status).1.get("checksum").map(String::as_str),
        Some("sha256")
    );
    expect_code(alice.query(&id).await, Code::NotFound);
    let stored = server.stored().await;
    assert!(
        !stored.iter().any(|k| k.starts_with("resumable/")
            || k.starts_with("records/")
            || k.starts_with("content/")
            || k.starts_with("uploads/")),
        "{stored:?}"
    );
    if let Some((bucket, prefix)) = server.s3_location() {
        assert!(common::s3::incomplete_uploads(&bucket, &prefix).is_empty());
    }
    server.wait_in_flight(0).await;
}

/// An open upload holds one of its owner's transfer slots from create until commit or
/// cancel, shared with UploadMedia; the size limit and the quotas hold at create.
async fn an_upload_holds_a_transfer_slot(backend: Backend) {
    let server = server_for(
        &backend,
        &["--max-transfers-per-user", "2", "--quota-bytes", "20000000"],
    );
    let mut alice = Uploader::new(&server, "alice").await;
    let a = alice.create("a.bin", 100).await.expect("created").upload_id;
    let b = alice.create("b.bin", 100).await.expect("created").upload_id;
    assert_eq!(server.metric("courier_transfers_in_flight").await, 2);
    let status = alice.create("c.bin", 100).await.expect_err("a third");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(info(&status).0, "TOO_MANY_TRANSFERS");
    let streamed = upload_bytes(
        &mut alice.client,
        &alice.token,
        header(MediaKind::File, "s.bin", 10),
        &pattern(10, 1),
    )
    .await;
    expect_code(streamed, Code::ResourceExhausted);
    // Another user is not affected.
    let mut bob = Uploader::new(&server, "bob").await;
    let bobs = bob.create("b.bin", 10).await.expect("bob's").upload_id;
    bob.cancel(&bobs).await.expect("cancelled");
    // Cancel frees one at once, commit the other.
    alice.cancel(&a).await.expect("cancelled");
    let c = alice.create("c.bin", 100).await.expect("created").upload_id;
    let data = pattern(100, 2);
    alice.write(&b, 0, data.clone()).await.expect("stored");
    alice.commit(&b, sha256(&data)).await.expect("committed");
    assert_eq!(server.metric("courier_transfers_in_flight").await, 1);
    alice.cancel(&c).await.expect("cancelled");
    server.wait_in_flight(0).await;

    // Over the size limit, over the quota: refused at create, nothing stored.
    let status = alice
        .create("big.bin", 30 * 1024 * 1024 + 1)
        .await
        .expect_err("too big");
    assert_eq!(info(&status).0, "MEDIA_TOO_LARGE");
    let status = alice
        .create("q.bin", 20_000_000)
        .await
        .expect_err("over the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(info(&status).0, "QUOTA_EXCEEDED");
    // The committed upload counts against the quota: 100 + 19,999,901 is one too many.
    let status = alice
        .create("q.bin", 19_999_901)
        .await
        .expect_err("over the quota");
    assert_eq!(info(&status).1.get("used").map(String::as_str), Some("100"));
    let ok = alice
        .create("q.bin", 19_999_900)
        .await
        .expect("within the quota");
    alice.cancel(&ok.upload_id).await.expect("cancelled");
    expect_code(
        alice
            .client
            .create_upload(authed(
                &alice.token,
                pb::CreateUploadRequest { header: None },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert!(resumable_keys(&server).await.iter().all(|k| k.contains(&b)));
    server.wait_in_flight(0).await;
}

/// Cancel removes the parts and the state, and frees the slot; the ID is then unknown.
async fn cancel_removes_everything(backend: Backend) {
    let server = server_for(&backend, &[]);
    let mut alice = Uploader::new(&server, "alice").await;
    let probe = alice.create("probe.bin", 1).await.expect("created");
    alice.cancel(&probe.upload_id).await.expect("cancelled");
    let part = probe.part_size;
    let data = pattern((part * 2) as usize, 7);
    let id = alice
        .create("f.bin", data.len() as u64)
        .await
        .expect("created")
        .upload_id;
    alice.write_range(&id, &data, part, 0, part).await;
    assert!(!resumable_keys(&server).await.is_empty());
    alice.cancel(&id).await.expect("cancelled");
    assert_eq!(resumable_keys(&server).await, Vec::<String>::new());
    if let Some((bucket, prefix)) = server.s3_location() {
        assert!(common::s3::incomplete_uploads(&bucket, &prefix).is_empty());
    }
    expect_code(alice.query(&id).await, Code::NotFound);
    expect_code(alice.cancel(&id).await, Code::NotFound);
    server.wait_in_flight(0).await;
}

/// The state is in the store: after the server is killed and started again on the
/// same store, the upload continues where it stopped, and takes its slot again when
/// touched.
async fn it_survives_a_restart_of_the_server(backend: Backend) {
    let mut server = server_for(&backend, &["--max-transfers-per-user", "1"]);
    let mut alice = Uploader::new(&server, "alice").await;
    let probe = alice.create("probe.bin", 1).await.expect("created");
    alice.cancel(&probe.upload_id).await.expect("cancelled");
    let part = probe.part_size;
    let data = pattern((part * 3 - 5) as usize, 8);
    let id = alice
        .create("f.bin", data.len() as u64)
        .await
        .expect("created")
        .upload_id;
    alice.write_range(&id, &data, part, 0, part * 2).await;
    let mut flags = vec!["--max-transfers-per-user", "1"];
    if matches!(backend, Backend::Local) {
        flags.extend(["--upload-part-size", LOCAL_PART]);
    }
    server.restart(&flags);
    let mut alice = Uploader::new(&server, "alice").await;
    assert_eq!(server.metric("courier_transfers_in_flight").await, 0);
    assert_eq!(
        alice.query(&id).await.expect("query").committed_size,
        part * 2
    );
    // Touched: it holds the user's one slot again.
    assert_eq!(server.metric("courier_transfers_in_flight").await, 1);
    expect_code(alice.create("other.bin", 1).await, Code::ResourceExhausted);
    alice
        .write_range(&id, &data, part, part * 2, data.len() as u64)
        .await;
    let media = alice.commit(&id, sha256(&data)).await.expect("committed");
    let (_, bytes) = download(&mut alice.client, &alice.token, &media.media_id, 0, 0)
        .await
        .expect("downloads");
    assert!(bytes == data);
    server.wait_in_flight(0).await;
}

/// An upload idle for the TTL is removed with its parts (the reaper, and the sweeper
/// after a restart), and its slot freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upload_expires() {
    let flags = [
        "--resumable-upload-ttl",
        "1s",
        "--sweep-interval",
        "1s",
        "--upload-part-size",
        LOCAL_PART,
    ];
    let mut server = Server::start(&Backend::Local, &flags);
    let mut alice = Uploader::new(&server, "alice").await;
    let data = pattern(100_000, 9);
    let id = alice
        .create("f.bin", 100_000)
        .await
        .expect("created")
        .upload_id;
    alice
        .write(&id, 0, data.slice(0..65536))
        .await
        .expect("stored");
    assert_eq!(server.metric("courier_transfers_in_flight").await, 1);
    server.wait_in_flight(0).await;
    eventually(Duration::from_secs(10), "the upload's removal", || async {
        resumable_keys(&server).await.is_empty()
    })
    .await;
    expect_code(alice.query(&id).await, Code::NotFound);

    // After a restart nothing holds it in memory: the sweeper removes it.
    let id = alice
        .create("g.bin", 100_000)
        .await
        .expect("created")
        .upload_id;
    alice
        .write(&id, 0, data.slice(0..65536))
        .await
        .expect("stored");
    server.restart(&flags);
    assert!(!resumable_keys(&server).await.is_empty());
    eventually(Duration::from_secs(10), "the sweeper's removal", || async {
        resumable_keys(&server).await.is_empty()
    })
    .await;
    let mut alice = Uploader::new(&server, "alice").await;
    expect_code(alice.query(&id).await, Code::NotFound);
}

/// S3 and a bus: an upload created and partly written on replica 1 is finished and
/// committed on replica 2 (its parts are S3 parts of one multipart upload), and it
/// counts as one transfer across the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_moves_between_replicas() {
    let Some(Backend::S3 { bucket }) = Backend::s3() else {
        return;
    };
    let Some(nats) = Nats::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let backend = Backend::shared(dir.path());
    assert!(
        matches!(
            backend,
            Backend::Shared {
                bucket: Some(_),
                ..
            }
        ),
        "{bucket}"
    );
    let flags = ["--bus", &nats.url(), "--max-transfers-per-user", "2"];
    let r1 = Server::start(&backend, &flags);
    let r2 = Server::start(&backend, &flags);
    let mut on1 = Uploader::new(&r1, "alice").await;
    let mut on2 = Uploader::new(&r2, "alice").await;
    let created = on1
        .create("f.bin", 12 * 1024 * 1024)
        .await
        .expect("created");
    let part = created.part_size;
    assert_eq!(part, 5 * 1024 * 1024);
    let data = pattern(12 * 1024 * 1024, 10);
    let id = created.upload_id;
    on1.write_range(&id, &data, part, 0, part).await;
    // Replica 2 sees the state, takes the same slot (one transfer, not two).
    assert_eq!(on2.query(&id).await.expect("query").committed_size, part);
    // Counted twice, the limit of 2 would refuse this.
    let other = on1.create("g.bin", 10).await.expect("the second slot");
    let status = on2.create("h.bin", 10).await.expect_err("a third");
    assert_eq!(info(&status).0, "TOO_MANY_TRANSFERS");
    on1.cancel(&other.upload_id).await.expect("cancelled");
    on2.write_range(&id, &data, part, part, data.len() as u64)
        .await;
    let media = on2
        .commit(&id, sha256(&data))
        .await
        .expect("committed on r2");
    let (_, bytes) = download(&mut on1.client, &on1.token, &media.media_id, 0, 0)
        .await
        .expect("downloads from r1");
    assert!(bytes == data);
    // Replica 1 learns of the commit and gives its slot back.
    r1.wait_in_flight(0).await;
    r2.wait_in_flight(0).await;
    if let Backend::Shared {
        bucket: Some(bucket),
        prefix,
        ..
    } = &backend
    {
        assert!(common::s3::incomplete_uploads(bucket, prefix).is_empty());
    }
}
