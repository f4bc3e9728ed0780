//! Fault drills (issue 11, "Hardening"): real processes on 127.0.0.1, with Toxiproxy
//! on the wire where a fault sits there — between the Rust client and the server, and
//! between the server and MinIO — and SIGKILL for crashes. Each drill says what a user
//! sees (a clear status, progress that moves, a resumed download that is byte for byte
//! the original) and what the store keeps (nothing partial).
//!
//! Drills that need Toxiproxy or MinIO are skipped without them, unless
//! COURIER_TEST_REQUIRE_TOXIPROXY / COURIER_TEST_REQUIRE_S3 are set (`scripts/test`
//! sets both). Every wait is bounded in time; every loop in count.

mod common;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    Backend, Feed, Proxy, Server, Toxiproxy, authed, data_frames, download, header, header_frame,
    messaging, pattern, s3, send_peer, text, token, upload_bytes,
};
use courier_client::{Client, ClientOptions, Progress};
use courier_server::pb::{self, MediaKind, PeerMessageState, subscribe_response};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const MIB: usize = 1024 * 1024;
const FRAME: usize = 256 * 1024;

/// Runs `future` for at most `limit`, or fails the drill naming `what`.
async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} took longer than {limit:?}"),
    }
}

/// Polls `check` every 100 ms for at most `limit` until it gives `Some`.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most 30 s) until a transfer has moved `bytes`.
async fn wait_progress(progress: &tokio::sync::watch::Receiver<Progress>, bytes: u64) {
    let mut progress = progress.clone();
    within(
        "progress",
        Duration::from_secs(30),
        progress.wait_for(|p| p.done >= bytes),
    )
    .await
    .expect("the transfer is still running");
}

/// Collects a transfer's progress updates until it ends.
fn record_progress(
    stream: impl futures::Stream<Item = Progress> + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Progress>> {
    tokio::spawn(stream.take(100_000).collect::<Vec<_>>())
}

/// A watch of a transfer's progress, fed from its progress stream.
fn watch_progress(
    stream: impl futures::Stream<Item = Progress> + Send + 'static,
) -> tokio::sync::watch::Receiver<Progress> {
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(p) = stream.next().await {
            tx.send_replace(p);
        }
    });
    rx
}

/// A Rust client connected through `proxy`.
/// A server on the S3 backend that reaches MinIO through a Toxiproxy proxy named
/// `name`, with `flags`; `None` (the drill is skipped) without Toxiproxy or S3.
fn s3_server_through_proxy(name: &str, flags: &[&str]) -> Option<(Server, Proxy)> {
    let toxiproxy = Toxiproxy::from_env()?;
    let backend = Backend::s3()?;
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT with the S3 backend");
    let minio = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let proxy = toxiproxy.proxy(name, minio);
    let server = Server::start_env(&backend, flags, &[("AWS_ENDPOINT", &proxy.url())]);
    Some((server, proxy))
}

async fn client_through(proxy: &Proxy, user: &str) -> Client {
    Client::connect(&proxy.url(), &token(user))
        .await
        .expect("connects through the proxy")
}

// ---------------------------------------------------------------------------------
// Drill 1: the S3 server becomes unreachable in the middle of a multipart upload.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_mid_upload() {
    // The server reaches MinIO through the proxy; the test looks at MinIO directly.
    let Some((server, proxy)) = s3_server_through_proxy("s3", &["--sweep-interval", "1s"]) else {
        return;
    };
    let (bucket, prefix) = server.s3_location().expect("an S3 server");
    let uploads_under = format!("{prefix}/");
    let alice = token("alice");
    let mut client = server.media().await;

    // 12 MiB: over the 5 MiB part size, so a multipart upload.
    let data = pattern(12 * MIB, 11);
    let head = header(MediaKind::File, "big.bin", data.len() as u64);
    let (tx, rx) = mpsc::channel(4);
    tx.send(header_frame(head.clone())).await.expect("queued");
    let call = tokio::spawn({
        let mut client = client.clone();
        let alice = alice.clone();
        async move {
            client
                .upload_media(authed(&alice, ReceiverStream::new(rx)))
                .await
        }
    });
    let frames = data_frames(&data, FRAME);
    let (first, rest) = frames.split_at(6 * MIB / FRAME);
    for frame in first {
        tx.send(frame.clone()).await.expect("the server reads");
    }
    let key = eventually("a multipart upload starts", Duration::from_secs(15), || {
        s3::incomplete_uploads(&bucket, &uploads_under).pop()
    })
    .await;
    let media_id = key.rsplit('/').next().expect("uploads/<id>").to_owned();
    assert!(key.ends_with(&format!("uploads/{media_id}")), "{key}");

    // The store goes away mid-upload; the client sends the rest and gets its answer.
    proxy.set_enabled(false);
    let cut = Instant::now();
    for frame in rest {
        if tx.send(frame.clone()).await.is_err() {
            break;
        }
    }
    drop(tx);
    let status = within("the upload's answer", Duration::from_secs(45), call)
        .await
        .expect("the call task")
        .expect_err("the upload cannot succeed without its store");
    let answered = cut.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let endpoint = std::env::var("AWS_ENDPOINT").expect("AWS_ENDPOINT with the S3 backend");
    let minio = endpoint.trim_start_matches("http://").trim_end_matches('/');
    for detail in ["127.0.0.1", "http", minio] {
        assert!(!status.message().contains(detail), "{status:?}");
    }
    // Reading is unavailable too while the store is down, not INTERNAL.
    let get = pb::GetMediaRequest {
        media_id: media_id.clone(),
    };
    let down = client
        .get_media(authed(&alice, get.clone()))
        .await
        .expect_err("no store");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    // The store comes back: nothing of the failed upload is visible or stored.
    proxy.set_enabled(true);
    let gone = client
        .get_media(authed(&alice, get))
        .await
        .expect_err("never stored");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert_eq!(server.stored().await, Vec::<String>::new());

    // The same upload now succeeds, byte for byte.
    let again = Instant::now();
    let media = upload_bytes(&mut client, &alice, head, &data)
        .await
        .expect("the upload succeeds once the store is back");
    let uploaded = again.elapsed();
    let (_, bytes) = download(&mut client, &alice, &media.media_id, 0, 0)
        .await
        .expect("download");
    assert!(bytes == data, "the stored bytes differ");

    // The failed upload's multipart upload is aborted (the sweeper retries the abort
    // that the store refused while it was down).
    let back = Instant::now();
    eventually(
        "the incomplete multipart upload is aborted",
        Duration::from_secs(20),
        || {
            s3::incomplete_uploads(&bucket, &uploads_under)
                .is_empty()
                .then_some(())
        },
    )
    .await;
    server.wait_in_flight(0).await;
    eprintln!(
        "drill s3_unreachable_mid_upload: {} after {answered:?} ({:?}); GetMedia while down {:?}, after {:?}; \
         the same {} bytes uploaded in {uploaded:?}; multipart upload {key} aborted {:?} after the store came back",
        status.code(),
        status.message(),
        down.code(),
        gone.code(),
        data.len(),
        back.elapsed()
    );
}

// ---------------------------------------------------------------------------------
// Drill 2: the connection between client and server is reset mid-transfer.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_upload() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let server = Server::start(&Backend::Local, &[]);
    let proxy = toxiproxy.proxy("grpc-upload", &server.addr.to_string());
    // About 4 MB/s toward the server, so that the reset lands mid-upload.
    proxy.add_toxic("slow", "bandwidth", "upstream", json!({ "rate": 4096 }));
    let client = client_through(&proxy, "alice").await;
    let data = pattern(24 * MIB, 21);
    let transfer = client
        .upload_file_bytes("big.bin", data.clone())
        .expect("starts");
    let progress = watch_progress(transfer.progress());
    wait_progress(&progress, 4 * MIB as u64).await;
    // The client counts bytes handed to HTTP/2, which may still sit in buffers: cut
    // only once the server holds the upload (else nothing reached it to fail).
    server.wait_in_flight(1).await;
    proxy.add_toxic("cut", "reset_peer", "upstream", json!({ "timeout": 0 }));
    let cut = Instant::now();
    let error = within("the upload's answer", Duration::from_secs(30), transfer)
        .await
        .expect_err("the connection was reset");
    let answered = cut.elapsed();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let at = progress.borrow().done;

    // The server frees the slot and keeps nothing.
    server.wait_in_flight(0).await;
    server.wait_stored(&[]).await;
    // One failed upload, the one the reset broke; the client's header-only offer of
    // content the server does not hold is counted apart, as a missed offer.
    assert_eq!(server.metric("courier_uploads_failed_total").await, 1);
    assert_eq!(server.metric("courier_upload_offers_missed_total").await, 1);

    // Once the link is back the same upload completes on the same client.
    proxy.remove_toxic("cut");
    proxy.remove_toxic("slow");
    let media = within(
        "the upload again",
        Duration::from_secs(60),
        client
            .upload_file_bytes("big.bin", data.clone())
            .expect("starts"),
    )
    .await
    .expect("the upload succeeds on a healthy link");
    assert_eq!(media.size, data.len() as u64);
    eprintln!(
        "drill connection_reset_mid_upload: reset after {at} of {} bytes sent; client got {:?} ({error}) after {answered:?}; \
         slots back to 0, store empty; retried upload stored {}",
        data.len(),
        error.code(),
        media.media_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_mid_download_then_resume() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let server = Server::start(&Backend::Local, &[]);
    let data = pattern(16 * MIB, 22);
    let mut direct = server.media().await;
    let head = header(MediaKind::File, "big.bin", data.len() as u64);
    let stored = upload_bytes(&mut direct, &token("alice"), head, &data)
        .await
        .expect("upload");

    let proxy = toxiproxy.proxy("grpc-download", &server.addr.to_string());
    proxy.add_toxic("slow", "bandwidth", "downstream", json!({ "rate": 4096 }));
    let client = client_through(&proxy, "bob").await;
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("big.bin");
    let partial = Client::partial_path(&path, &stored.media_id);

    let transfer = client
        .download_to_file(&stored.media_id, &path)
        .expect("starts");
    let progress = watch_progress(transfer.progress());
    wait_progress(&progress, 4 * MIB as u64).await;
    proxy.set_enabled(false);
    let error = within("the download's answer", Duration::from_secs(30), transfer)
        .await
        .expect_err("the connection was cut");
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let kept = std::fs::metadata(&partial).expect("the partial file").len();
    assert!(kept > 0 && kept < data.len() as u64, "kept {kept}");
    assert!(!path.exists(), "no half file at the target");
    server.wait_in_flight(0).await;

    // The link comes back: the download resumes from the partial file.
    proxy.set_enabled(true);
    proxy.remove_toxic("slow");
    let sent_before = server.metric("courier_download_bytes_total").await;
    let media = within(
        "the resumed download",
        Duration::from_secs(60),
        client
            .download_to_file(&stored.media_id, &path)
            .expect("starts"),
    )
    .await
    .expect("the resumed download completes");
    let sent = server.metric("courier_download_bytes_total").await - sent_before;
    assert_eq!(media.size, data.len() as u64);
    assert!(
        std::fs::read(&path).expect("the file") == data,
        "the file differs"
    );
    assert!(!partial.exists(), "the partial file is renamed into place");
    assert_eq!(
        sent as u64,
        data.len() as u64 - kept,
        "the second download sends only what was missing"
    );
    server.wait_in_flight(0).await;
    eprintln!(
        "drill connection_reset_mid_download_then_resume: cut after {kept} of {} bytes; client got {:?} ({error}); \
         slots back to 0; resumed from byte {kept}, the server sent {sent} more bytes; file byte-identical",
        data.len(),
        error.code()
    );
}

// ---------------------------------------------------------------------------------
// Drill 3: a slow link.
// ---------------------------------------------------------------------------------

/// Checks that progress moved: several distinct values, never backwards, ending at
/// `total`.
fn assert_moving(what: &str, updates: &[Progress], total: u64) -> usize {
    let mut distinct: Vec<u64> = updates.iter().map(|p| p.done).collect();
    assert!(
        distinct.windows(2).all(|w| w[0] <= w[1]),
        "{what}: progress went backwards: {distinct:?}"
    );
    distinct.dedup();
    assert!(
        distinct.len() >= 5,
        "{what}: only {} distinct progress values: {distinct:?}",
        distinct.len()
    );
    assert_eq!(
        distinct.last().copied(),
        Some(total),
        "{what}: {distinct:?}"
    );
    distinct.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_link_transfers_complete_with_moving_progress() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let server = Server::start(&Backend::Local, &[]);
    let proxy = toxiproxy.proxy("grpc-slow", &server.addr.to_string());
    for stream in ["upstream", "downstream"] {
        proxy.add_toxic(
            &format!("latency-{stream}"),
            "latency",
            stream,
            json!({ "latency": 100, "jitter": 20 }),
        );
        proxy.add_toxic(
            &format!("bandwidth-{stream}"),
            "bandwidth",
            stream,
            json!({ "rate": 4096 }),
        );
    }
    // 64 KiB frames, as a mobile app on a slow link would send.
    let options = ClientOptions {
        chunk_size: 64 * 1024,
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&proxy.url(), &token("alice"), options)
        .await
        .expect("connects through the proxy");
    // Over the HTTP/2 windows (4 MiB a stream) and the socket buffers, which an upload
    // fills at once before the link's pace shows.
    let data = pattern(16 * MIB, 31);
    let total = data.len() as u64;

    let started = Instant::now();
    let upload = client
        .upload_file_bytes("slow.bin", data.clone())
        .expect("starts");
    let updates = record_progress(upload.progress());
    let media = within("a slow upload", Duration::from_secs(90), upload)
        .await
        .expect("the upload completes");
    let up_time = started.elapsed();
    let up = assert_moving("upload", &updates.await.expect("progress"), total);

    let started = Instant::now();
    let download = client.download_to_memory(&media.media_id).expect("starts");
    let updates = record_progress(download.progress());
    let got = within("a slow download", Duration::from_secs(90), download)
        .await
        .expect("the download completes");
    let down_time = started.elapsed();
    let down = assert_moving("download", &updates.await.expect("progress"), total);
    assert!(got.bytes == data, "the downloaded bytes differ");
    eprintln!(
        "drill slow_link: {total} bytes at 4 MB/s + 100 ms latency each way: upload {up_time:?} with {up} distinct progress values, \
         download {down_time:?} with {down}"
    );
}

// ---------------------------------------------------------------------------------
// Drill 4: kill -9 of the server.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_upload_leaves_no_partial_media() {
    let mut server = Server::start(&Backend::Local, &[]);
    let alice = token("alice");
    let client = server.media().await;
    let data = pattern(8 * MIB, 41);
    let (tx, rx) = mpsc::channel(4);
    tx.send(header_frame(header(
        MediaKind::File,
        "big.bin",
        data.len() as u64,
    )))
    .await
    .expect("queued");
    let call = tokio::spawn({
        let mut client = client.clone();
        let alice = alice.clone();
        async move {
            client
                .upload_media(authed(&alice, ReceiverStream::new(rx)))
                .await
        }
    });
    for frame in data_frames(&data.slice(..3 * MIB), FRAME) {
        tx.send(frame).await.expect("the server reads");
    }
    let mut staged = Vec::new();
    for _ in 0..100 {
        staged = server.stored().await;
        if staged.iter().any(|key| key.contains('#')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let staging = staged
        .iter()
        .find(|key| key.contains('#'))
        .unwrap_or_else(|| panic!("no staging file of the upload: {staged:?}"))
        .clone();
    let media_id = staging
        .trim_start_matches("uploads/")
        .split('#')
        .next()
        .expect("an ID")
        .to_owned();

    server.restart(&[]);
    let broken = within("the killed upload's answer", Duration::from_secs(15), call)
        .await
        .expect("the call task")
        .expect_err("the server died");
    drop(tx);
    assert_eq!(
        server.stored().await,
        Vec::<String>::new(),
        "after the restart"
    );
    let mut client = server.media().await;
    let missing = client
        .get_media(authed(
            &alice,
            pb::GetMediaRequest {
                media_id: media_id.clone(),
            },
        ))
        .await
        .expect_err("never completed");
    assert_eq!(missing.code(), Code::NotFound);
    // The restarted server takes uploads.
    let small = Bytes::from_static(b"after the crash");
    upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::File, "a.txt", small.len() as u64),
        &small,
    )
    .await
    .expect("uploads after the restart");
    eprintln!(
        "drill kill_mid_upload: killed with {staging} on disk; the client got {:?}; after the restart the store was empty \
         and GetMedia({media_id}) is {:?}",
        broken.code(),
        missing.code()
    );
}

/// The text of a received peer message.
fn text_of(message: &pb::PeerMessageReceived) -> String {
    match message.message.as_ref().and_then(|m| m.body.as_ref()) {
        Some(pb::message::Body::Text(t)) => t.text.clone(),
        other => panic!("a text message expected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_offline_cache_write_keeps_only_complete_messages() {
    const SENDERS: [&str; 4] = ["carol", "dave", "erin", "frank"];
    const PER_SENDER: usize = 40;
    const KILL_AFTER: usize = 40;
    let mut server = Server::start(&Backend::Local, &[]);

    // Before the kill: 20 messages answered CACHED.
    let mut alice = messaging(&server).await;
    let mut before = Vec::new();
    for i in 0..20 {
        let body = format!("pre-{i}");
        let sent = send_peer(&mut alice, &token("alice"), "bob", text(&body), true)
            .await
            .expect("send");
        assert_eq!(sent.state(), PeerMessageState::Cached);
        before.push(body);
    }

    // A burst from four senders at once, killed part-way.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut burst = Vec::new();
    for sender in SENDERS {
        let mut client = messaging(&server).await;
        let answered = answered.clone();
        burst.push(tokio::spawn(async move {
            let mut cached = Vec::new();
            let mut in_flight = None;
            for i in 0..PER_SENDER {
                let body = format!("burst-{sender}-{i}");
                match send_peer(&mut client, &token(sender), "bob", text(&body), true).await {
                    Ok(sent) => {
                        assert_eq!(sent.state(), PeerMessageState::Cached, "{body}");
                        cached.push(body);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        in_flight = Some(body);
                        break;
                    }
                }
            }
            (cached, in_flight)
        }));
    }
    eventually("the burst gets going", Duration::from_secs(20), || {
        (answered.load(Ordering::SeqCst) >= KILL_AFTER).then_some(())
    })
    .await;
    server.restart(&[]);
    let mut cached = Vec::new();
    let mut in_flight = Vec::new();
    for task in burst {
        let (done, flying) = within("a burst sender", Duration::from_secs(30), task)
            .await
            .expect("the sender task");
        cached.extend(done);
        in_flight.extend(flying);
    }

    // After the restart bob gets every answered message, and nothing else but what
    // was in flight; each one whole and once.
    let bob = Feed::open(&server, "bob").await;
    let delivered: Vec<String> = bob.offline.iter().map(text_of).collect();
    assert!(bob.offline.iter().all(|m| m.offline));
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), delivered.len(), "a message came twice");
    for body in before.iter().chain(&cached) {
        assert!(
            delivered.contains(body),
            "{body} was answered CACHED but lost"
        );
    }
    for body in &delivered {
        assert!(
            before.contains(body) || cached.contains(body) || in_flight.contains(body),
            "{body:?} was delivered but never answered nor in flight (corrupt?)"
        );
    }
    assert_eq!(bob.ready_count as usize, delivered.len());
    let flew_in = delivered.iter().filter(|b| in_flight.contains(b)).count();
    // Delivered once: nothing more is owed.
    let mut bob = bob;
    let mut sender = messaging(&server).await;
    let marker = send_peer(&mut sender, &token("alice"), "bob", text("marker"), false)
        .await
        .expect("marker");
    match bob.next().await {
        subscribe_response::Event::PeerMessage(m) => assert_eq!(m.message_id, marker.message_id),
        other => panic!("expected the marker, got {other:?}"),
    }
    eprintln!(
        "drill kill_mid_offline_cache_write: {} answered CACHED before the kill ({} before the burst), {} in flight; \
         after the restart {} delivered ({} of those in flight), all whole and once",
        before.len() + cached.len(),
        before.len(),
        in_flight.len(),
        delivered.len(),
        flew_in
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_liveness_does_not() {
    let Some((server, proxy)) =
        s3_server_through_proxy("s3-health", &["--health-check-interval", "200ms"])
    else {
        return;
    };
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = |name: &'static str| {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest {
                service: name.into(),
            };
            health
                .check(request)
                .await
                .expect("check")
                .into_inner()
                .status()
        }
    };
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(status("").await, ServingStatus::Serving);

    // The store goes away: readiness turns NOT_SERVING, liveness stays SERVING.
    proxy.set_enabled(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status("").await != ServingStatus::NotServing {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness stayed SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status("courier.v1.Liveness").await, ServingStatus::Serving);

    // It comes back: ready again.
    proxy.set_enabled(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status("").await != ServingStatus::Serving {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness stayed NOT_SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
