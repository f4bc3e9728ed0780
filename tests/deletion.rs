//! Deleting media (DeleteMedia by the owner, `courier-server media delete` by an
//! admin) and quarantining content (`courier-server media quarantine|release`),
//! black-box: real server processes, real gRPC, the real admin binary, on a local
//! folder and on S3, and across two servers sharing one store.

#[macro_use]
mod common;

use std::{process::Command, time::Duration};

use bytes::Bytes;
use common::{
    Backend, Feed, Server, authed, body, download, eventually, header, messaging, pattern, png,
    refusal, send_peer, sha256, token, upload_bytes, upload_frames,
};
use courier_client::{Client, Error};
use courier_server::pb::{self, MediaKind, message::Body};
use tonic::{Code, Status};

fn image(media_id: &str) -> pb::Message {
    pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: media_id.into(),
            ..Default::default()
        })),
    }
}

async fn put(server: &Server, user: &str, kind: MediaKind, data: &Bytes) -> pb::Media {
    let mut client = server.media().await;
    upload_bytes(
        &mut client,
        &token(user),
        header(kind, "cat.png", data.len() as u64),
        data,
    )
    .await
    .expect("upload")
}

async fn delete(server: &Server, user: &str, media_id: &str) -> Result<(), Status> {
    let request = pb::DeleteMediaRequest {
        media_id: media_id.to_owned(),
    };
    server
        .media()
        .await
        .delete_media(authed(&token(user), request))
        .await
        .map(|_| ())
}

async fn fetch(server: &Server, user: &str, media_id: &str) -> Result<Vec<u8>, Status> {
    let mut client = server.media().await;
    download(&mut client, &token(user), media_id, 0, 0)
        .await
        .map(|(_, bytes)| bytes)
}

async fn get(server: &Server, user: &str, media_id: &str) -> Result<pb::Media, Status> {
    let request = pb::GetMediaRequest {
        media_id: media_id.to_owned(),
    };
    let response = server
        .media()
        .await
        .get_media(authed(&token(user), request))
        .await?;
    Ok(response.into_inner().media.unwrap_or_default())
}

async fn thumb(server: &Server, user: &str, media_id: &str) -> Result<(), Status> {
    let request = pb::GetThumbnailRequest {
        media_id: media_id.to_owned(),
        max_edge: 96,
    };
    let mut client = server.media().await;
    client
        .get_thumbnail(authed(&token(user), request))
        .await
        .map(|_| ())
}

/// Runs `courier-server media ARGS` on `storage` (the server's own when `None`);
/// returns whether it succeeded, its stdout and its stderr.
fn admin(server: &Server, storage: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier-server"));
    command
        .arg("media")
        .args(args)
        .arg("--data-dir")
        .arg(server.data_dir.path());
    let s3 = server
        .s3_location()
        .map(|(bucket, prefix)| format!("s3://{bucket}/{prefix}"));
    if let Some(storage) = storage.map(str::to_owned).or(s3) {
        command.arg("--storage").arg(storage);
    }
    let output = command.output().expect("runs courier-server media");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The JSON lines of an admin command's stdout.
fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

on_every_backend!(
    owner_deletes_and_the_id_answers_media_deleted,
    another_users_delete_is_not_found_and_changes_nothing,
    deleting_frees_quota_at_once,
    content_stays_while_named_and_goes_after_the_sweep,
    tombstone_goes_at_the_original_expiry,
    quarantine_and_release_by_the_admin_cli,
    admin_lists_and_deletes_by_id_and_by_content,
    http_links_end_at_a_quarantine_or_a_deletion,
);

async fn owner_deletes_and_the_id_answers_media_deleted(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let media = put(&server, "alice", MediaKind::Image, &png(40, 30)).await;
    let id = media.media_id.as_str();
    let mut alice = messaging(&server).await;
    // Sent before the deletion: to bob online, and cached for carol offline.
    let mut bob = Feed::open(&server, "bob").await;
    send_peer(&mut alice, &token("alice"), "bob", image(id), false)
        .await
        .expect("sent");
    send_peer(&mut alice, &token("alice"), "carol", image(id), true)
        .await
        .expect("cached");
    let received = bob.next_peer().await;
    assert!(matches!(body(&received.message), Body::Image(i) if i.media_id == id));

    let client = Client::connect(&server.url(), &token("alice"))
        .await
        .expect("connects");
    client.delete_media(id).await.expect("the owner deletes");
    assert!(!server.has(&format!("records/{id}.json")).await);
    for (code, reason) in [
        refusal(fetch(&server, "bob", id).await),
        refusal(get(&server, "bob", id).await),
        refusal(thumb(&server, "bob", id).await),
    ] {
        assert_eq!((code, reason.as_str()), (Code::NotFound, "MEDIA_DELETED"));
    }
    let error = Client::connect(&server.url(), &token("bob"))
        .await
        .expect("connects")
        .download_to_memory(id)
        .expect("starts")
        .await
        .expect_err("deleted");
    assert!(matches!(error, Error::MediaDeleted(_)), "{error:?}");
    // New sends are refused; the message cached before still arrives.
    let sent = send_peer(&mut alice, &token("alice"), "bob", image(id), false).await;
    assert_eq!(
        refusal(sent),
        (Code::FailedPrecondition, "MEDIA_UNAVAILABLE".into())
    );
    let carol = Feed::open(&server, "carol").await;
    assert_eq!(carol.offline.len(), 1);
    assert!(matches!(body(&carol.offline[0].message), Body::Image(i) if i.media_id == id));
    // Twice is as once.
    client.delete_media(id).await.expect("deleting twice is OK");
}

async fn another_users_delete_is_not_found_and_changes_nothing(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(5000, 3);
    let media = put(&server, "alice", MediaKind::File, &data).await;
    let before = server.stored().await;
    let theirs = delete(&server, "bob", &media.media_id)
        .await
        .expect_err("not bob's");
    let unknown_id = "0123456789abcdef0123456789abcdef";
    let unknown = delete(&server, "bob", unknown_id)
        .await
        .expect_err("unknown");
    assert_eq!(theirs.code(), Code::NotFound);
    // Worded as for an ID that never existed.
    assert_eq!(
        theirs.message().replace(&media.media_id, "ID"),
        unknown.message().replace(unknown_id, "ID")
    );
    assert_eq!(server.stored().await, before);
    assert_eq!(
        fetch(&server, "bob", &media.media_id).await.expect("works"),
        data.to_vec()
    );
    let malformed = delete(&server, "alice", "../records").await;
    assert_eq!(refusal(malformed).0, Code::InvalidArgument);
}

async fn deleting_frees_quota_at_once(backend: Backend) {
    let server = Server::start(&backend, &["--quota-bytes", "1000"]);
    let first = put(&server, "alice", MediaKind::File, &pattern(600, 1)).await;
    let mut client = server.media().await;
    let more = pattern(500, 2);
    let head = header(MediaKind::File, "q.bin", 500);
    let refused = upload_bytes(&mut client, &token("alice"), head.clone(), &more).await;
    assert_eq!(
        refusal(refused),
        (Code::ResourceExhausted, "QUOTA_EXCEEDED".into())
    );
    delete(&server, "alice", &first.media_id)
        .await
        .expect("deleted");
    upload_bytes(&mut client, &token("alice"), head, &more)
        .await
        .expect("the deletion freed the quota");
}

async fn content_stays_while_named_and_goes_after_the_sweep(backend: Backend) {
    let flags = ["--sweep-interval", "200ms", "--content-grace", "300ms"];
    let server = Server::start(&backend, &flags);
    let data = png(64, 48);
    let content = format!("content/{}", hex::encode(sha256(&data)));
    let alices = put(&server, "alice", MediaKind::Image, &data).await;
    let bobs = put(&server, "bob", MediaKind::Image, &data).await;
    thumb(&server, "bob", &bobs.media_id)
        .await
        .expect("thumbnail");
    delete(&server, "alice", &alices.media_id)
        .await
        .expect("deleted");
    // Past the grace and several sweeps: bob's record still names the bytes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        server.has(&content).await,
        "kept while bob's media names it"
    );
    assert_eq!(
        fetch(&server, "carol", &bobs.media_id)
            .await
            .expect("bob's"),
        data.to_vec()
    );
    // A released verdict goes with its content; a quarantine outlives it.
    let hex_sha = hex::encode(sha256(&data));
    let (ok, _, stderr) = admin(&server, None, &["release", "--sha256", &hex_sha]);
    assert!(ok, "{stderr}");
    let other = hex::encode(sha256(b"never uploaded"));
    let (ok, _, stderr) = admin(&server, None, &["quarantine", "--sha256", &other]);
    assert!(ok, "{stderr}");
    delete(&server, "bob", &bobs.media_id)
        .await
        .expect("deleted");
    eventually(
        Duration::from_secs(10),
        "the bytes, thumbnails and release go",
        || async {
            let keys = server.stored().await;
            !keys.iter().any(|k| {
                k.starts_with("content/") || k.starts_with("thumbs/") || k.contains(&hex_sha)
            })
        },
    )
    .await;
    assert!(!server.has(&content).await);
    assert!(server.has(&format!("verdicts/{other}.json")).await);
}

async fn tombstone_goes_at_the_original_expiry(backend: Backend) {
    let flags = ["--media-ttl", "2s", "--sweep-interval", "200ms"];
    let server = Server::start(&backend, &flags);
    let media = put(&server, "alice", MediaKind::File, &pattern(100, 4)).await;
    delete(&server, "alice", &media.media_id)
        .await
        .expect("deleted");
    let tombstone = format!("deleted/{}.json", media.media_id);
    assert!(server.has(&tombstone).await);
    assert_eq!(
        refusal(fetch(&server, "bob", &media.media_id).await),
        (Code::NotFound, "MEDIA_DELETED".into())
    );
    eventually(Duration::from_secs(10), "the tombstone goes", || async {
        !server.has(&tombstone).await
    })
    .await;
    assert_eq!(
        refusal(fetch(&server, "bob", &media.media_id).await),
        (Code::NotFound, String::new())
    );
}

async fn quarantine_and_release_by_the_admin_cli(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = png(40, 30);
    let hex_sha = hex::encode(sha256(&data));
    let media = put(&server, "alice", MediaKind::Image, &data).await;
    let id = media.media_id.as_str();
    let (ok, stdout, stderr) = admin(&server, None, &["quarantine", id]);
    assert!(ok, "{stderr}");
    assert_eq!(lines(&stdout)[0]["sha256"], hex_sha.as_str());
    assert_eq!(lines(&stdout)[0]["quarantined"], true);
    // Logged as JSON on stderr.
    assert!(
        stderr
            .lines()
            .any(|l| serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["action"] == "quarantined" && v["sha256"] == hex_sha.as_str())),
        "{stderr}"
    );
    let quarantined = (Code::FailedPrecondition, "MEDIA_QUARANTINED".to_owned());
    assert_eq!(refusal(fetch(&server, "bob", id).await), quarantined);
    assert_eq!(refusal(get(&server, "bob", id).await), quarantined);
    assert_eq!(refusal(thumb(&server, "bob", id).await), quarantined);
    let mut alice = messaging(&server).await;
    let sent = send_peer(&mut alice, &token("alice"), "bob", image(id), true).await;
    assert_eq!(refusal(sent), quarantined);
    // The same bytes uploaded again, by anyone and any way, are refused; nothing kept.
    let before = server.stored().await;
    let mut client = server.media().await;
    let again = header(MediaKind::Image, "again.png", data.len() as u64);
    let streamed = upload_bytes(&mut client, &token("bob"), again.clone(), &data).await;
    assert_eq!(refusal(streamed), quarantined);
    let mut offer = again;
    offer.sha256 = sha256(&data).into();
    let offered = upload_frames(
        &mut client,
        &token("alice"),
        vec![common::header_frame(offer)],
    )
    .await;
    assert_eq!(refusal(offered), quarantined);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("again.png");
    std::fs::write(&path, &data).expect("written");
    let carol = Client::connect(&server.url(), &token("carol"))
        .await
        .expect("connects");
    let resumed = carol
        .upload_resumable(&path, courier_client::MediaKind::Image)
        .expect("starts")
        .await
        .expect_err("quarantined");
    assert!(matches!(resumed, Error::MediaQuarantined(_)), "{resumed:?}");
    assert_eq!(server.stored().await, before);
    // Released by content: served again.
    let (ok, _, stderr) = admin(&server, None, &["release", "--sha256", &hex_sha]);
    assert!(ok, "{stderr}");
    assert_eq!(
        fetch(&server, "bob", id).await.expect("released"),
        data.to_vec()
    );
    thumb(&server, "bob", id).await.expect("thumbnail");
    send_peer(&mut alice, &token("alice"), "bob", image(id), true)
        .await
        .expect("sendable");
    upload_bytes(
        &mut client,
        &token("bob"),
        header(MediaKind::Image, "b.png", data.len() as u64),
        &data,
    )
    .await
    .expect("uploadable");
    // Unknown targets fail with a message, and a usage error without one.
    let (ok, _, stderr) = admin(
        &server,
        None,
        &["quarantine", "0123456789abcdef0123456789abcdef"],
    );
    assert!(!ok && stderr.contains("no media with ID"), "{stderr}");
    let (ok, _, _) = admin(&server, None, &["quarantine"]);
    assert!(!ok);
}

async fn admin_lists_and_deletes_by_id_and_by_content(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let shared = pattern(3000, 8);
    let first = put(&server, "alice", MediaKind::File, &pattern(1000, 7)).await;
    let second = put(&server, "alice", MediaKind::File, &shared).await;
    let bobs = put(&server, "bob", MediaKind::File, &shared).await;
    let (ok, stdout, stderr) = admin(&server, None, &["list", "--user", "alice"]);
    assert!(ok, "{stderr}");
    let mut listed: Vec<String> = lines(&stdout)
        .iter()
        .map(|l| l["media_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![first.media_id.clone(), second.media_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let line = &lines(&stdout)[0];
    assert_eq!(line["owner"], "alice");
    assert_eq!(line["quarantined"], false);
    // One media by ID.
    let (ok, stdout, stderr) = admin(&server, None, &["delete", &first.media_id]);
    assert!(ok, "{stderr}");
    assert_eq!(lines(&stdout)[0]["deleted"], true);
    assert_eq!(
        refusal(fetch(&server, "alice", &first.media_id).await),
        (Code::NotFound, "MEDIA_DELETED".into())
    );
    // Every media of a content, whoever owns it.
    let hex_sha = hex::encode(sha256(&shared));
    let (ok, stdout, stderr) = admin(&server, None, &["delete", "--sha256", &hex_sha]);
    assert!(ok, "{stderr}");
    assert_eq!(
        lines(&stdout)[0]["deleted"].as_array().map(Vec::len),
        Some(2)
    );
    for id in [&second.media_id, &bobs.media_id] {
        assert_eq!(
            refusal(fetch(&server, "carol", id).await),
            (Code::NotFound, "MEDIA_DELETED".into())
        );
    }
    let (ok, stdout, _) = admin(&server, None, &["list", "--user", "alice"]);
    assert!(ok && stdout.is_empty(), "{stdout}");
}

/// Two replicas sharing one store (a folder, or a bucket prefix when S3 runs) and,
/// when a nats-server is found, a bus: a deletion or quarantine through one holds at
/// once on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_and_quarantine_hold_across_replicas_sharing_a_store() {
    let dir = tempfile::tempdir().expect("a shared folder");
    let backend = Backend::shared(dir.path());
    let storage = match &backend {
        Backend::Shared { storage, .. } => storage.clone(),
        _ => unreachable!("Backend::shared is shared"),
    };
    // As replicas do, on a bus when a nats-server is at hand (media need only the store).
    let nats = common::Nats::start();
    let bus: Vec<String> = nats
        .iter()
        .flat_map(|n| ["--bus".to_owned(), n.url()])
        .collect();
    let flags: Vec<&str> = bus.iter().map(String::as_str).collect();
    let one = Server::start(&backend, &flags);
    let two = Server::start(&backend, &flags);
    let data = png(40, 30);
    let media = put(&one, "alice", MediaKind::Image, &data).await;
    let id = media.media_id.as_str();
    fetch(&two, "bob", id).await.expect("served by the other");
    let (ok, _, stderr) = admin(&one, Some(&storage), &["quarantine", id]);
    assert!(ok, "{stderr}");
    assert_eq!(
        refusal(fetch(&two, "bob", id).await),
        (Code::FailedPrecondition, "MEDIA_QUARANTINED".into())
    );
    let (ok, _, stderr) = admin(&two, Some(&storage), &["release", id]);
    assert!(ok, "{stderr}");
    fetch(&one, "bob", id).await.expect("released on both");
    delete(&one, "alice", id)
        .await
        .expect("deleted through one");
    assert_eq!(
        refusal(get(&two, "bob", id).await),
        (Code::NotFound, "MEDIA_DELETED".into())
    );
    delete(&two, "alice", id)
        .await
        .expect("again through the other");
}

/// A link minted before a quarantine or a deletion stops working at once (each GET and
/// HEAD reads the record and the verdict), and works again after a release: 404 with
/// no body of the media, as docs/http.md says.
async fn http_links_end_at_a_quarantine_or_a_deletion(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = png(40, 30);
    let media = put(&server, "alice", MediaKind::Image, &data).await;
    let id = media.media_id.as_str();
    let request = pb::GetMediaUrlRequest {
        media_id: id.to_owned(),
        ..Default::default()
    };
    let url = server
        .media()
        .await
        .get_media_url(authed(&token("bob"), request))
        .await
        .expect("a link")
        .into_inner()
        .url;
    let http = reqwest::Client::new();
    let status = |method: reqwest::Method| {
        let request = http.request(method, &url);
        async move { request.send().await.expect("an HTTP answer").status() }
    };
    let fetched = http.get(&url).send().await.expect("GET");
    assert_eq!(fetched.status(), reqwest::StatusCode::OK);
    assert_eq!(&fetched.bytes().await.expect("body")[..], &data[..]);

    let (ok, _, stderr) = admin(&server, None, &["quarantine", id]);
    assert!(ok, "{stderr}");
    let refused = http.get(&url).send().await.expect("GET");
    assert_eq!(refused.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let text = refused.text().await.expect("body");
    assert_eq!(text.trim(), "no such media");
    assert_eq!(
        status(reqwest::Method::HEAD).await,
        reqwest::StatusCode::NOT_FOUND
    );

    let (ok, _, stderr) = admin(&server, None, &["release", id]);
    assert!(ok, "{stderr}");
    assert_eq!(status(reqwest::Method::GET).await, reqwest::StatusCode::OK);

    delete(&server, "alice", id).await.expect("deleted");
    assert_eq!(
        status(reqwest::Method::GET).await,
        reqwest::StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(reqwest::Method::HEAD).await,
        reqwest::StatusCode::NOT_FOUND
    );
}
