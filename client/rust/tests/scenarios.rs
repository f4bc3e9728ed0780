//! The eight client scenarios of `tests/scenarios.md`, run through the Rust client
//! against a real `courier-server` process, plus reconnection and the typed errors.

use std::time::Duration;

use bytes::Bytes;
use courier_client::{
    Client, Delivery, Error, Event, MediaKind, Message, MessageSource, Progress, ReceivedMessage,
    SendOptions, Subscription,
};
use courier_testkit::{Backend, Server, pattern, png, sha256, token};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const MIB: usize = 1024 * 1024;

async fn client(server: &Server, user: &str) -> Client {
    Client::connect(&server.url(), &token(user))
        .await
        .expect("connects")
}

/// Waits for the next message on `feed`, skipping ready and reconnect events.
async fn next_message(feed: &mut Subscription) -> ReceivedMessage {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("a message within 10 s")
            .expect("the feed is open")
            .expect("no error");
        if let Event::Message(message) = event {
            return message;
        }
    }
}

/// Waits for the feed's `ready` event and returns its offline count.
async fn ready(feed: &mut Subscription) -> (u32, Vec<ReceivedMessage>) {
    let mut before = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("ready within 10 s")
            .expect("the feed is open")
            .expect("no error");
        match event {
            Event::Ready { offline_count, .. } => return (offline_count, before),
            Event::Message(message) => before.push(message),
            Event::Disconnected { .. } => {}
        }
    }
}

#[tokio::test]
async fn upload_with_progress() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.bin");
    let data = pattern(5 * MIB, 1);
    std::fs::write(&path, &data).expect("write");
    let upload = alice.upload_file(&path).expect("starts");
    assert!(upload.request_id() > 0);
    let mut progress = upload.progress();
    let watcher = tokio::spawn(async move {
        let mut seen: Vec<Progress> = Vec::new();
        while let Some(p) = progress.next().await {
            seen.push(p);
        }
        seen
    });
    let media = upload.await.expect("uploads");
    let seen = watcher.await.expect("watcher");
    assert!(
        seen.windows(2).all(|w| w[0].done <= w[1].done),
        "progress went backwards: {seen:?}"
    );
    assert!(seen.iter().all(|p| p.total == 5 * MIB as u64));
    assert_eq!(seen.last().map(|p| p.done), Some(5 * MIB as u64));
    assert_eq!(
        (media.size, media.kind, media.file_name.as_str()),
        (5 * MIB as u64, MediaKind::File, "report.bin")
    );
    assert_eq!(media.sha256.to_vec(), sha256(&data));
}

#[tokio::test]
async fn cancel_mid_upload() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let upload = alice
        .upload_stream(
            MediaKind::File,
            "big.bin",
            20 * MIB as u64,
            ReceiverStream::new(rx),
        )
        .expect("starts");
    let id = upload.request_id();
    assert_eq!(
        upload.progress_now().done,
        0,
        "the call returns before any byte moves"
    );
    for chunk in 0..8 {
        tx.send(Ok(pattern(256 * 1024, chunk)))
            .await
            .expect("the upload reads");
    }
    let mut progress = upload.progress();
    while progress
        .next()
        .await
        .is_some_and(|p| p.done < 2 * MIB as u64)
    {}
    server.wait_in_flight(1).await;
    alice.cancel(id).expect("cancels a running transfer");
    assert!(matches!(upload.await, Err(Error::Cancelled)));
    server.wait_in_flight(0).await;
    server.wait_stored(&[]).await;
    assert!(matches!(alice.cancel(id), Err(Error::NoSuchTransfer(n)) if n == id));
    let media = alice
        .upload_file_bytes("next.bin", pattern(1000, 2))
        .expect("starts")
        .await
        .expect("the slot is free");
    assert_eq!(media.size, 1000);
}

#[tokio::test]
async fn download_to_file() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(3 * MIB, 3);
    let media = alice
        .upload_file_bytes("doc.bin", data.clone())
        .expect("starts")
        .await
        .expect("uploads");
    let path = dir.path().join("doc.bin");
    let got = alice
        .download_to_file(&media.media_id, &path)
        .expect("starts")
        .await
        .expect("downloads");
    assert_eq!(got, media);
    assert!(std::fs::read(&path).expect("read") == data);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("doc.bin")],
        "no partial file remains"
    );

    // Cancelled part-way: neither the file nor a partial file is left.
    let big = pattern(30 * MIB, 4);
    let big_media = alice
        .upload_file_bytes("big.bin", big.clone())
        .expect("starts")
        .await
        .expect("uploads");
    let target = dir.path().join("big.bin");
    let download = alice
        .download_to_file(&big_media.media_id, &target)
        .expect("starts");
    let mut progress = download.progress();
    while progress.next().await.is_some_and(|p| p.done == 0) {}
    download.cancel();
    assert!(matches!(download.await, Err(Error::Cancelled)));
    assert!(!target.exists());
    assert!(!Client::partial_path(&target, &big_media.media_id).exists());

    // Interrupted earlier: the first MiB is already in the partial file; only the rest
    // is fetched.
    let partial = Client::partial_path(&target, &big_media.media_id);
    std::fs::write(&partial, &big[..MIB]).expect("write partial");
    // The cancelled download's server side has stopped counting once its slot is free.
    server.wait_in_flight(0).await;
    let sent_before = server.metric("courier_download_bytes_total").await;
    alice
        .download_to_file(&big_media.media_id, &target)
        .expect("starts")
        .await
        .expect("resumes");
    let sent = server.metric("courier_download_bytes_total").await - sent_before;
    assert_eq!(
        sent,
        (30 * MIB - MIB) as i64,
        "only the missing bytes were sent"
    );
    assert!(std::fs::read(&target).expect("read") == big);
    assert!(!partial.exists());

    // A partial file with wrong bytes fails the check, is removed, and the next try works.
    std::fs::remove_file(&target).expect("remove");
    std::fs::write(&partial, vec![0u8; MIB]).expect("write partial");
    let result = alice
        .download_to_file(&big_media.media_id, &target)
        .expect("starts")
        .await;
    assert!(matches!(result, Err(Error::Integrity(_))), "{result:?}");
    assert!(!partial.exists() && !target.exists());
    alice
        .download_to_file(&big_media.media_id, &target)
        .expect("starts")
        .await
        .expect("downloads");
    assert!(std::fs::read(&target).expect("read") == big);
}

#[tokio::test]
async fn download_to_memory() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let data = pattern(200 * 1024, 5);
    let media = alice
        .upload_file_bytes("notes.bin", data.clone())
        .expect("starts")
        .await
        .expect("uploads");
    let download = alice.download_to_memory(&media.media_id).expect("starts");
    let mut progress = download.progress();
    let got = download.await.expect("downloads");
    assert_eq!(got.media, media);
    assert!(got.bytes == data);
    let mut last = Progress::default();
    while let Some(p) = progress.next().await {
        last = p;
    }
    assert_eq!(
        (last.done, last.total),
        (data.len() as u64, data.len() as u64)
    );
}

#[tokio::test]
async fn image_to_peer() {
    let server = Server::start(&Backend::Local, &[]);
    let bob = client(&server, "bob").await;
    let mut feed = bob.subscribe();
    ready(&mut feed).await;
    let alice = client(&server, "alice").await;
    let picture = png(40, 30);
    let media = alice
        .upload_image_bytes("cat.png", picture.clone())
        .expect("starts")
        .await
        .expect("uploads");
    let from_record = media.image_message();
    let from_id = alice
        .image_message_from_media_id(&media.media_id)
        .await
        .expect("record");
    for message in [from_record, from_id] {
        let receipt = alice
            .send_peer_message("bob", message, SendOptions::default())
            .await
            .expect("sends");
        assert_eq!(receipt.delivery, Delivery::Delivered);
        let got = next_message(&mut feed).await;
        assert_eq!(
            (got.from.as_str(), &got.source, got.offline),
            ("alice", &MessageSource::Peer, false)
        );
        assert_eq!(got.message_id, receipt.message_id);
        let Message::Image(image) = got.message else {
            panic!("an image message: {got:?}")
        };
        assert_eq!(image.media_id, media.media_id);
        assert_eq!(
            (
                image.file_name.as_str(),
                image.size,
                image.width,
                image.height
            ),
            ("cat.png", media.size, 40, 30)
        );
        let downloaded = bob
            .download_to_memory(&image.media_id)
            .expect("starts")
            .await
            .expect("downloads");
        assert!(downloaded.bytes == picture);
    }
}

#[tokio::test]
async fn file_to_channel() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice.join_channel("team").await.expect("joins");
    bob.join_channel("team").await.expect("joins");
    assert_eq!(
        bob.channel_members("team").await.expect("members"),
        ["alice", "bob"]
    );
    let mut bob_feed = bob.subscribe();
    ready(&mut bob_feed).await;
    let mut alice_feed = alice.subscribe();
    ready(&mut alice_feed).await;
    let media = alice
        .upload_file_bytes("plan.pdf", pattern(70_000, 6))
        .expect("starts")
        .await
        .expect("uploads");
    alice
        .send_channel_message("team", media.file_message())
        .await
        .expect("sends");
    let got = next_message(&mut bob_feed).await;
    assert_eq!(
        (got.from.as_str(), &got.source),
        ("alice", &MessageSource::Channel("team".into()))
    );
    let Message::File(file) = got.message else {
        panic!("a file message")
    };
    assert_eq!(
        (file.media_id.as_str(), file.file_name.as_str(), file.size),
        (media.media_id.as_str(), "plan.pdf", 70_000)
    );
    // alice's own feed does not get her channel message: the next thing it sees is a
    // peer message sent after it.
    let marker = bob
        .send_peer_message("alice", Message::text("marker"), SendOptions::default())
        .await
        .expect("sends");
    assert_eq!(
        next_message(&mut alice_feed).await.message_id,
        marker.message_id
    );
    bob.leave_channel("team").await.expect("leaves");
    assert_eq!(
        alice.channel_members("team").await.expect("members"),
        ["alice"]
    );
}

#[tokio::test]
async fn offline_cached_then_delivered() {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let cached = alice
        .send_peer_message(
            "bob",
            Message::text("while you were out"),
            SendOptions::offline(),
        )
        .await
        .expect("sends");
    assert_eq!(cached.delivery, Delivery::Cached);
    let lost = alice
        .send_peer_message("bob", Message::text("lost"), SendOptions::default())
        .await;
    assert!(
        matches!(lost, Err(Error::PeerUnreachable { ref peer, .. }) if peer == "bob"),
        "{lost:?}"
    );
    let bob = client(&server, "bob").await;
    let mut feed = bob.subscribe();
    let (count, offline) = ready(&mut feed).await;
    assert_eq!(count, 1);
    assert_eq!(offline.len(), 1);
    let got = &offline[0];
    assert!(got.offline);
    assert_eq!(
        (got.from.as_str(), got.message_id.as_str()),
        ("alice", cached.message_id.as_str())
    );
    assert_eq!(got.message, Message::text("while you were out"));
    let online = alice
        .query_online_status(&["bob", "carol"])
        .await
        .expect("query");
    assert_eq!(
        online.iter().map(|s| s.online).collect::<Vec<_>>(),
        [true, false]
    );
}

#[tokio::test]
async fn typed_errors() {
    let small = Server::start(
        &Backend::Local,
        &["--max-upload-size", "1000", "--media-ttl", "1s"],
    );
    let alice = client(&small, "alice").await;
    let result = alice
        .upload_file_bytes("big", pattern(1001, 7))
        .expect("starts")
        .await;
    assert!(matches!(result, Err(Error::TooLarge(_))), "{result:?}");

    let unknown = "0123456789abcdef0123456789abcdef";
    assert!(matches!(
        alice.get_media(unknown).await,
        Err(Error::NotFound(_))
    ));
    let result = alice.download_to_memory(unknown).expect("starts").await;
    assert!(matches!(result, Err(Error::NotFound(_))), "{result:?}");
    // Empty messages are refused by the library, before a call (the server's
    // refusal words it otherwise).
    let empty = [
        Message::Text(String::new()),
        Message::Raw {
            payload: bytes::Bytes::new(),
            description: "nothing".into(),
        },
    ];
    for message in empty {
        let result = alice
            .send_peer_message("bob", message.clone(), SendOptions::offline())
            .await;
        assert!(
            matches!(&result, Err(Error::InvalidArgument(m)) if m.contains("cannot be sent")),
            "{result:?}"
        );
        let result = alice.send_channel_message("team", message).await;
        assert!(
            matches!(&result, Err(Error::InvalidArgument(m)) if m.contains("cannot be sent")),
            "{result:?}"
        );
    }
    let image = Message::Image(courier_client::ImageMessage {
        media_id: unknown.into(),
        ..Default::default()
    });
    let result = alice
        .send_peer_message("bob", image, SendOptions::offline())
        .await;
    assert!(
        matches!(result, Err(Error::MediaUnavailable(_))),
        "{result:?}"
    );
    assert!(matches!(
        alice.download_to_memory("../etc/passwd"),
        Err(Error::InvalidArgument(_))
    ));

    let media = alice
        .upload_file_bytes("short-lived", pattern(10, 8))
        .expect("starts")
        .await
        .expect("uploads");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        alice.get_media(&media.media_id).await,
        Err(Error::NotFound(_))
    ));

    let fits = alice
        .send_peer_message(
            "bob",
            Message::text("x".repeat(32 * 1024)),
            SendOptions::offline(),
        )
        .await;
    assert!(fits.is_ok(), "{fits:?}");
    let over = alice
        .send_peer_message(
            "bob",
            Message::text("x".repeat(32 * 1024 + 1)),
            SendOptions::offline(),
        )
        .await;
    assert!(matches!(over, Err(Error::MessageTooLarge(_))), "{over:?}");

    // The client holds its transfers to 9 before the server has to. (A 1-hour rate
    // window: the 181st message below is refused however slowly this machine runs.)
    let server = Server::start(&Backend::Local, &["--rate-window", "1h"]);
    let alice = client(&server, "alice").await;
    let mut held = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..9 {
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(1);
        held.push(
            alice
                .upload_stream(MediaKind::File, "slow", 10, ReceiverStream::new(rx))
                .expect("starts"),
        );
        senders.push(tx);
    }
    let tenth = alice.upload_file_bytes("tenth", pattern(10, 9));
    assert!(
        matches!(tenth, Err(Error::TooManyTransfers(_))),
        "refused in the client"
    );
    for transfer in &held {
        transfer.cancel();
    }
    for transfer in held {
        assert!(matches!(transfer.await, Err(Error::Cancelled)));
    }
    // The client's slots are free at once (this one is not refused); the server frees
    // its own as soon as it sees each cancellation, which under load can take a moment.
    let after = alice
        .upload_file_bytes("after", pattern(10, 9))
        .expect("slots are free again");
    after.cancel();
    assert!(matches!(after.await, Err(Error::Cancelled)));
    server.wait_in_flight(0).await;
    alice
        .upload_file_bytes("after", pattern(10, 9))
        .expect("slots are free again")
        .await
        .expect("uploads");

    // The rate limit.
    let mut refused = None;
    for i in 0..181 {
        let sent = alice
            .send_peer_message("bob", Message::text("hi"), SendOptions::default())
            .await;
        if let Err(e) = sent
            && !matches!(e, Error::PeerUnreachable { .. })
        {
            refused = Some((i, e));
            break;
        }
    }
    assert!(
        matches!(refused, Some((180, Error::TooOften(_)))),
        "{refused:?}"
    );

    let forged = Client::connect(&server.url(), "not-a-token")
        .await
        .expect("connects");
    assert!(matches!(
        forged.get_media(unknown).await,
        Err(Error::Unauthenticated(_))
    ));
    assert!(matches!(
        forged.join_channel("c").await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn subscribe_reconnects_after_a_server_restart() {
    let mut server = Server::start(&Backend::Local, &[]);
    let bob = client(&server, "bob").await;
    let mut feed = bob.subscribe();
    ready(&mut feed).await;
    server.restart(&[]);
    // The feed reports the drop, reconnects by itself and is ready again.
    let mut disconnected = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), feed.next())
            .await
            .expect("an event")
            .expect("open")
        {
            Ok(Event::Disconnected { .. }) => disconnected = true,
            Ok(Event::Ready { .. }) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(disconnected);
    let alice = client(&server, "alice").await;
    let sent = alice
        .send_peer_message(
            "bob",
            Message::text("after the restart"),
            SendOptions::default(),
        )
        .await
        .expect("bob is online again");
    assert_eq!(next_message(&mut feed).await.message_id, sent.message_id);
}

#[tokio::test]
async fn connect_retries_until_the_server_is_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let connecting = tokio::spawn(async move { Client::connect(&url, &token("alice")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !connecting.is_finished(),
        "still retrying while nothing listens"
    );
    let server = Server::start_at(&Backend::Local, &format!("127.0.0.1:{port}"), &[]);
    let alice = connecting
        .await
        .expect("task")
        .expect("connects once the server is up");
    alice.join_channel("up").await.expect("works");
    assert_eq!(
        alice.channel_members("up").await.expect("members"),
        ["alice"]
    );
    drop(server);
    // Nothing listens any more: calls that are safe to retry give up with Unavailable.
    let gone = alice.channel_members("up").await;
    assert!(matches!(gone, Err(Error::Unavailable(_))), "{gone:?}");
}

#[tokio::test]
async fn https_urls_speak_tls() {
    // The test server speaks plaintext HTTP/2 only: with https:// the client's TLS
    // handshake meets a plaintext answer, which rustls reports as a corrupt message.
    let server = Server::start(&Backend::Local, &[]);
    let plain = Client::connect(&server.url(), &token("alice")).await;
    assert!(plain.is_ok());
    let tls_url = server.url().replacen("http://", "https://", 1);
    let tls = Client::connect(&tls_url, &token("alice")).await;
    let Err(Error::Unavailable(message)) = tls else {
        panic!("expected Unavailable, got {tls:?}")
    };
    assert!(
        message.contains("InvalidContentType"),
        "no TLS handshake happened: {message}"
    );
}
