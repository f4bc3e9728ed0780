//! Content-addressed media (issue 17), black-box on a local folder and on S3: one stored
//! copy for many uploads, the owner's header-only re-upload and nobody else's, shared
//! bytes that go with their last record, the previous store layout still served, and
//! crashes at the worst moments of an upload leaving no orphan and no dangling record.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Backend, Server, authed, download, expect_code, header, header_frame, pattern, sha256, token,
    upload_bytes, upload_frames,
};
use courier_server::pb::{self, MediaKind};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use tonic::{Code, Status};

const MIB: usize = 1024 * 1024;

on_every_backend!(
    one_copy_for_many_uploads,
    header_only_reupload_for_the_owner_only,
    shared_bytes_go_with_the_last_record,
    previous_layout_still_served,
    crash_after_staging_leaves_nothing,
    crash_after_copy_leaves_nothing,
    crash_after_copy_keeps_shared_content,
    crash_after_record_keeps_a_whole_upload,
);

/// Uploads `data` as a file named `name` with its bytes.
async fn put(server: &Server, user: &str, name: &str, data: &Bytes) -> Result<pb::Media, Status> {
    let mut client = server.media().await;
    upload_bytes(
        &mut client,
        &token(user),
        header(MediaKind::File, name, data.len() as u64),
        data,
    )
    .await
}

/// A header-only upload naming `data`'s digest and size.
async fn put_header_only(
    server: &Server,
    user: &str,
    name: &str,
    data: &Bytes,
) -> Result<pb::Media, Status> {
    let mut client = server.media().await;
    let mut head = header(MediaKind::File, name, data.len() as u64);
    head.sha256 = sha256(data).into();
    upload_frames(&mut client, &token(user), vec![header_frame(head)]).await
}

/// The stored keys under `prefix/`.
async fn keys_under(server: &Server, prefix: &str) -> Vec<String> {
    server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Downloads `id` whole as `user`.
async fn fetch(server: &Server, user: &str, id: &str) -> Result<Vec<u8>, Status> {
    let mut client = server.media().await;
    download(&mut client, &token(user), id, 0, 0)
        .await
        .map(|(_, bytes)| bytes)
}

async fn one_copy_for_many_uploads(backend: Backend) {
    let server = Server::start(&backend, &[]);
    // Over the 5 MiB part size, so S3 stores it by multipart upload.
    let data = pattern(6 * MIB, 3);
    let mut ids = Vec::new();
    for user in ["alice", "alice", "bob", "carol", "bob"] {
        let media = put(&server, user, "same.bin", &data).await.expect("upload");
        assert_eq!(media.sha256, sha256(&data));
        ids.push(media.media_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each upload has its own media ID");
    let digest = hex::encode(sha256(&data));
    assert_eq!(
        keys_under(&server, "content").await,
        vec![format!("content/{digest}")]
    );
    assert_eq!(keys_under(&server, "records").await.len(), 5);
    assert_eq!(keys_under(&server, "uploads").await, Vec::<String>::new());
    for id in &ids {
        assert_eq!(
            fetch(&server, "dave", id).await.expect("download"),
            data.to_vec()
        );
    }
}

async fn header_only_reupload_for_the_owner_only(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(3 * MIB, 5);
    let first = put(&server, "alice", "a.bin", &data).await.expect("upload");

    let again = put_header_only(&server, "alice", "again.bin", &data)
        .await
        .expect("the owner re-uploads by header alone");
    assert_ne!(again.media_id, first.media_id);
    assert_eq!(again.file_name, "again.bin");
    assert_eq!(again.size, data.len() as u64);
    assert_eq!(again.sha256, sha256(&data));
    assert_eq!(
        fetch(&server, "bob", &again.media_id)
            .await
            .expect("download"),
        data.to_vec()
    );

    // Anyone else gets exactly what a header-only upload of unknown content gets.
    let other = put_header_only(&server, "bob", "a.bin", &data)
        .await
        .expect_err("bob never sent the bytes");
    let unknown = put_header_only(&server, "bob", "a.bin", &pattern(3 * MIB, 6))
        .await
        .expect_err("nobody stored this");
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    assert_eq!(
        (other.code(), other.message()),
        (unknown.code(), unknown.message())
    );
    // The owner's shortcut needs the right size too.
    let mut client = server.media().await;
    let mut head = header(MediaKind::File, "a.bin", data.len() as u64 - 1);
    head.sha256 = sha256(&data).into();
    expect_code(
        upload_frames(&mut client, &token("alice"), vec![header_frame(head)]).await,
        Code::InvalidArgument,
    );
    // Bob, sending the bytes, is stored against the same content.
    put(&server, "bob", "a.bin", &data).await.expect("upload");
    assert_eq!(keys_under(&server, "content").await.len(), 1);
    assert_eq!(keys_under(&server, "records").await.len(), 3);
}

async fn shared_bytes_go_with_the_last_record(backend: Backend) {
    let flags = [
        "--media-ttl",
        "3s",
        "--sweep-interval",
        "200ms",
        "--content-grace",
        "200ms",
    ];
    let server = Server::start(&backend, &flags);
    let data = pattern(100_000, 7);
    let content = format!("content/{}", hex::encode(sha256(&data)));
    let first = put(&server, "alice", "a.bin", &data).await.expect("upload");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = put(&server, "bob", "b.bin", &data).await.expect("upload");
    // The first record expires and is swept; the bytes stay for the second.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    expect_code(
        fetch(&server, "alice", &first.media_id).await,
        Code::NotFound,
    );
    assert_eq!(
        fetch(&server, "bob", &second.media_id)
            .await
            .expect("alive"),
        data.to_vec()
    );
    let records = keys_under(&server, "records").await;
    assert_eq!(records, vec![format!("records/{}.json", second.media_id)]);
    assert!(
        server.has(&content).await,
        "the bytes outlive the first record"
    );
    // Then the last record expires, and the bytes go with it.
    server.wait_stored(&[]).await;
    expect_code(
        fetch(&server, "bob", &second.media_id).await,
        Code::NotFound,
    );
}

async fn previous_layout_still_served(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let data = pattern(300_000, 9);
    let now_ms = testkit_now_ms();
    let live = "00112233445566778899aabbccddeeff";
    let gone = "ffeeddccbbaa99887766554433221100";
    for (id, expires_ms) in [(live, now_ms + 3_600_000), (gone, now_ms - 1_000)] {
        // Exactly what the first layout wrote: no `layout` field, bytes under blobs/.
        let record = serde_json::json!({
            "media_id": id, "kind": "file", "file_name": "old.bin",
            "size": data.len(), "sha256": hex::encode(sha256(&data)),
            "content_type": "application/octet-stream", "width": 0, "height": 0,
            "owner": "alice", "created_ms": now_ms - 10_000, "expires_ms": expires_ms,
        });
        let store = &server.store;
        store
            .put(
                &Path::from(format!("blobs/{id}")),
                PutPayload::from(data.clone()),
            )
            .await
            .expect("put blob");
        store
            .put(
                &Path::from(format!("records/{id}.json")),
                PutPayload::from(serde_json::to_vec(&record).expect("json")),
            )
            .await
            .expect("put record");
    }
    let mut client = server.media().await;
    let alice = token("alice");
    let (media, bytes) = download(&mut client, &alice, live, 0, 0)
        .await
        .expect("an old-layout object downloads");
    assert_eq!(bytes, data.to_vec());
    assert_eq!(media.file_name, "old.bin");
    assert_eq!(media.sha256, sha256(&data));
    let (_, part) = download(&mut client, &alice, live, 1000, 500)
        .await
        .expect("a range");
    assert_eq!(part, data[1000..1500].to_vec());
    let get = pb::GetMediaRequest {
        media_id: live.to_owned(),
    };
    client
        .get_media(authed(&alice, get))
        .await
        .expect("GetMedia");
    expect_code(
        download(&mut client, &alice, gone, 0, 0).await,
        Code::NotFound,
    );
    // The sweeper deletes the expired old object, bytes and record, and keeps the other.
    server.restart(&["--sweep-interval", "200ms", "--content-grace", "200ms"]);
    server
        .wait_stored(&[format!("blobs/{live}"), format!("records/{live}.json")])
        .await;
}

fn testkit_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Flags of a restarted server that sweeps at once what a crash left behind.
const SWEEP_SOON: [&str; 4] = ["--sweep-interval", "200ms", "--content-grace", "500ms"];

/// Stores `shared` for bob, restarts the server to die at `point`, has alice upload
/// `data` (the upload dies with the server), then restarts it normally. Returns bob's
/// record.
async fn crash_during_upload(
    server: &mut Server,
    point: &str,
    shared: &Bytes,
    data: &Bytes,
) -> pb::Media {
    let bob = put(server, "bob", "shared.bin", shared)
        .await
        .expect("upload");
    server.restart_env(&[], &[("COURIER_CRASH_AT", point)]);
    let died = put(server, "alice", "a.bin", data).await;
    assert!(died.is_err(), "the server died mid-upload: {died:?}");
    server.restart_env(&SWEEP_SOON, &[]);
    bob
}

/// Waits until the store settles on `expected` keys, then checks that every record
/// names stored bytes and every stored content is named by a record.
async fn settles_on(server: &Server, expected: Vec<String>) {
    let mut expected = expected;
    expected.sort();
    server.wait_stored(&expected).await;
    let mut listing = server.store.list(Some(&Path::from("records")));
    let mut named = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.expect("listing");
        let bytes = server
            .store
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let record: serde_json::Value = serde_json::from_slice(&bytes).expect("a record");
        let sha = record["sha256"].as_str().expect("sha256").to_owned();
        assert!(
            server.has(&format!("content/{sha}")).await,
            "a dangling record: {}",
            meta.location
        );
        named.push(format!("content/{sha}"));
    }
    for key in keys_under(server, "content").await {
        assert!(named.contains(&key), "an orphan: {key}");
    }
}

/// Bob's keys for `media` of `data`.
fn keys_of(user: &str, media: &pb::Media, data: &Bytes) -> Vec<String> {
    let digest = hex::encode(sha256(data));
    let owner = hex::encode(sha256(user.as_bytes()));
    vec![
        format!("content/{digest}"),
        format!("owners/{owner}/{digest}/{}", media.media_id),
        format!("records/{}.json", media.media_id),
    ]
}

async fn crash_after_staging_leaves_nothing(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let (shared, data) = (pattern(5000, 1), pattern(2 * MIB, 2));
    let bob = crash_during_upload(&mut server, "after-staging", &shared, &data).await;
    settles_on(&server, keys_of("bob", &bob, &shared)).await;
}

async fn crash_after_copy_leaves_nothing(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let (shared, data) = (pattern(5000, 1), pattern(2 * MIB, 2));
    let bob = crash_during_upload(&mut server, "after-copy", &shared, &data).await;
    settles_on(&server, keys_of("bob", &bob, &shared)).await;
}

async fn crash_after_copy_keeps_shared_content(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let shared = pattern(5000, 1);
    // Alice dies uploading the very bytes bob stored: bob's content must stay.
    let bob = crash_during_upload(&mut server, "after-copy", &shared, &shared).await;
    settles_on(&server, keys_of("bob", &bob, &shared)).await;
    assert_eq!(
        fetch(&server, "bob", &bob.media_id).await.expect("alive"),
        shared.to_vec()
    );
}

async fn crash_after_record_keeps_a_whole_upload(backend: Backend) {
    let mut server = Server::start(&backend, &[]);
    let (shared, data) = (pattern(5000, 1), pattern(2 * MIB, 2));
    let bob = crash_during_upload(&mut server, "after-record", &shared, &data).await;
    // Alice's record was written: her upload is whole (its staged copy is swept, its
    // owner index was never written), though her client never heard of it.
    let records = keys_under(&server, "records").await;
    let alice_id = records
        .iter()
        .map(|k| {
            k.trim_start_matches("records/")
                .trim_end_matches(".json")
                .to_owned()
        })
        .find(|id| *id != bob.media_id)
        .expect("alice's record");
    let mut expected = keys_of("bob", &bob, &shared);
    expected.push(format!("content/{}", hex::encode(sha256(&data))));
    expected.push(format!("records/{alice_id}.json"));
    settles_on(&server, expected).await;
    assert_eq!(
        fetch(&server, "alice", &alice_id).await.expect("alive"),
        data.to_vec()
    );
}
