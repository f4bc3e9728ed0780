//! MessagingService, black-box: peer messages, media in messages, the offline cache,
//! presence and message limits, over real gRPC to a real server process.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{
    Backend, Feed, Server, authed, body, expect_code, expect_nothing_before_marker, header,
    messaging, online, pattern, png, send_peer, text, token, upload_bytes,
};
use courier_server::pb::{self, MediaKind, PeerMessageState, message::Body};
use tonic::Code;

/// Flags that lift the rate limit for tests that send many messages.
const UNLIMITED: [&str; 2] = ["--rate-limit", "1000000"];

fn image(media_id: &str) -> pb::Message {
    pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: media_id.into(),
            ..Default::default()
        })),
    }
}

fn file(media_id: &str) -> pb::Message {
    pb::Message {
        body: Some(Body::File(pb::FileMessage {
            media_id: media_id.into(),
            ..Default::default()
        })),
    }
}

/// Uploads a 40 x 30 PNG as alice and returns its record.
async fn upload_png(server: &Server) -> pb::Media {
    let data = png(40, 30);
    let mut client = server.media().await;
    let head = header(MediaKind::Image, "cat.png", data.len() as u64);
    upload_bytes(&mut client, &token("alice"), head, &data)
        .await
        .expect("upload")
}

#[tokio::test]
async fn peer_messages_of_every_kind_arrive_whole() {
    let server = Server::start(&Backend::Local, &[]);
    let media = upload_png(&server).await;
    let mut bob = Feed::open(&server, "bob").await;
    let mut alice = messaging(&server).await;
    let raw = pb::Message {
        body: Some(Body::Raw(pb::RawMessage {
            payload: Bytes::from_static(&[0, 1, 2, 255]),
            description: "bin/v1".into(),
        })),
    };
    let thumbnail = Bytes::from_static(b"tiny preview");
    let image_message = pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: media.media_id.clone(),
            thumbnail: thumbnail.clone(),
            thumbnail_width: 4,
            thumbnail_height: 3,
            ..Default::default()
        })),
    };
    let file_message = pb::Message {
        body: Some(Body::File(pb::FileMessage {
            media_id: media.media_id.clone(),
            file_name: "renamed.png".into(),
            thumbnail: thumbnail.clone(),
            ..Default::default()
        })),
    };
    for message in [text("hello bob"), raw.clone(), image_message, file_message] {
        let sent = send_peer(&mut alice, &token("alice"), "bob", message.clone(), false)
            .await
            .expect("send");
        assert_eq!(sent.state(), PeerMessageState::Delivered);
        assert_eq!(sent.message_id.len(), 32);
        let got = bob.next_peer().await;
        assert_eq!(got.sender_id, "alice");
        assert_eq!(got.message_id, sent.message_id);
        assert_eq!(got.server_time, sent.server_time);
        assert!(got.server_time.is_some_and(|t| t.seconds > 1_700_000_000));
        assert!(!got.offline);
        match (body(&got.message), message.body.as_ref().expect("body")) {
            (Body::Image(img), Body::Image(_)) => {
                assert_eq!(img.media_id, media.media_id);
                assert_eq!((img.file_name.as_str(), img.size), ("cat.png", media.size));
                assert_eq!(
                    (img.width, img.height),
                    (40, 30),
                    "dimensions filled from the store"
                );
                assert_eq!(
                    (
                        img.thumbnail.clone(),
                        img.thumbnail_width,
                        img.thumbnail_height
                    ),
                    (thumbnail.clone(), 4, 3)
                );
            }
            (Body::File(f), Body::File(_)) => {
                assert_eq!(
                    (f.media_id.as_str(), f.size),
                    (media.media_id.as_str(), media.size)
                );
                assert_eq!(f.file_name, "renamed.png", "the sender's name is kept");
                assert_eq!(f.thumbnail, thumbnail);
            }
            (got, sent) => assert_eq!(got, sent),
        }
    }
}

#[tokio::test]
async fn image_dimensions_come_from_the_store_unless_the_sender_sets_them() {
    let server = Server::start(&Backend::Local, &[]);
    let media = upload_png(&server).await;
    let mut bob = Feed::open(&server, "bob").await;
    let mut alice = messaging(&server).await;
    send_peer(
        &mut alice,
        &token("alice"),
        "bob",
        image(&media.media_id),
        false,
    )
    .await
    .expect("send");
    let Body::Image(filled) = body(&bob.next_peer().await.message).clone() else {
        panic!("an image")
    };
    assert_eq!(
        (filled.width, filled.height, filled.size),
        (40, 30, media.size)
    );
    let custom = pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: media.media_id.clone(),
            width: 400,
            height: 300,
            ..Default::default()
        })),
    };
    send_peer(&mut alice, &token("alice"), "bob", custom, false)
        .await
        .expect("send");
    let Body::Image(kept) = body(&bob.next_peer().await.message).clone() else {
        panic!("an image")
    };
    assert_eq!(
        (kept.width, kept.height),
        (400, 300),
        "the sender's dimensions win"
    );
}

#[tokio::test]
async fn unknown_or_expired_media_is_a_failed_precondition() {
    let server = Server::start(
        &Backend::Local,
        &["--media-ttl", "3s", "--sweep-interval", "1h"],
    );
    let mut alice = messaging(&server).await;
    let unknown = "0123456789abcdef0123456789abcdef";
    for message in [image(unknown), file(unknown)] {
        let result = send_peer(&mut alice, &token("alice"), "bob", message, true).await;
        let text = expect_code(result, Code::FailedPrecondition);
        assert!(text.contains("does not exist or has expired"), "{text}");
    }
    expect_code(
        send_peer(&mut alice, &token("alice"), "bob", image("../etc"), true).await,
        Code::InvalidArgument,
    );
    let media = upload_png(&server).await;
    send_peer(
        &mut alice,
        &token("alice"),
        "bob",
        file(&media.media_id),
        true,
    )
    .await
    .expect("alive");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let result = send_peer(
        &mut alice,
        &token("alice"),
        "bob",
        file(&media.media_id),
        true,
    )
    .await;
    expect_code(result, Code::FailedPrecondition);
}

#[tokio::test]
async fn every_stream_of_a_user_gets_every_message() {
    let server = Server::start(&Backend::Local, &[]);
    let mut phone = Feed::open(&server, "bob").await;
    let mut laptop = Feed::open(&server, "bob").await;
    let mut alice = messaging(&server).await;
    let sent = send_peer(&mut alice, &token("alice"), "bob", text("to both"), false)
        .await
        .expect("send");
    assert_eq!(phone.next_peer().await.message_id, sent.message_id);
    assert_eq!(laptop.next_peer().await.message_id, sent.message_id);
    expect_nothing_before_marker(&server, &mut phone, "bob").await;
}

#[tokio::test]
async fn offline_messages_survive_a_restart_and_arrive_first() {
    let mut server = Server::start(&Backend::Local, &[]);
    let mut alice = messaging(&server).await;
    let unreachable = send_peer(&mut alice, &token("alice"), "bob", text("lost"), false)
        .await
        .expect("send");
    assert_eq!(unreachable.state(), PeerMessageState::PeerUnreachable);
    let first = send_peer(
        &mut alice,
        &token("alice"),
        "bob",
        text("while you were out"),
        true,
    )
    .await
    .expect("send");
    assert_eq!(first.state(), PeerMessageState::Cached);
    let second = send_peer(&mut alice, &token("alice"), "bob", text("and again"), true)
        .await
        .expect("send");
    server.restart(&[]);
    let bob = Feed::open(&server, "bob").await;
    assert_eq!(bob.ready_count, 2);
    let ids: Vec<&str> = bob.offline.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        ids,
        [first.message_id.as_str(), second.message_id.as_str()],
        "oldest first, the unreachable one not kept"
    );
    assert!(
        bob.offline
            .iter()
            .all(|m| m.offline && m.sender_id == "alice")
    );
    assert_eq!(
        body(&bob.offline[0].message),
        &Body::Text(pb::TextMessage {
            text: "while you were out".into()
        })
    );
    assert_eq!(bob.offline[0].server_time, first.server_time);
    // Delivered once: a second stream gets nothing cached.
    let again = Feed::open(&server, "bob").await;
    assert_eq!(again.ready_count, 0);
    assert!(again.offline.is_empty());
}

#[tokio::test]
async fn the_201st_cached_message_drops_the_oldest() {
    let server = Server::start(&Backend::Local, &UNLIMITED);
    let mut alice = messaging(&server).await;
    for i in 0..201 {
        let sent = send_peer(
            &mut alice,
            &token("alice"),
            "bob",
            text(&i.to_string()),
            true,
        )
        .await
        .expect("send");
        assert_eq!(sent.state(), PeerMessageState::Cached);
    }
    let bob = Feed::open(&server, "bob").await;
    let texts: Vec<String> = bob
        .offline
        .iter()
        .map(|m| match body(&m.message) {
            Body::Text(t) => t.text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = (1..201).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn messages_over_32_kib_are_refused() {
    let server = Server::start(&Backend::Local, &[]);
    let media = upload_png(&server).await;
    let mut bob = Feed::open(&server, "bob").await;
    let mut alice = messaging(&server).await;
    let limit = 32 * 1024;
    let raw = |n: usize| pb::Message {
        body: Some(Body::Raw(pb::RawMessage {
            payload: pattern(n, 1),
            description: String::new(),
        })),
    };
    let thumb = |n: usize, name: &str| pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: media.media_id.clone(),
            file_name: name.into(),
            thumbnail: pattern(n, 2),
            ..Default::default()
        })),
    };
    for (fits, over) in [
        (text(&"x".repeat(limit)), text(&"x".repeat(limit + 1))),
        (raw(limit), raw(limit + 1)),
        (thumb(limit - 7, "cat.png"), thumb(limit - 6, "cat.png")),
    ] {
        send_peer(&mut alice, &token("alice"), "bob", fits, false)
            .await
            .expect("exactly 32 KiB is allowed");
        bob.next_peer().await;
        let text = expect_code(
            send_peer(&mut alice, &token("alice"), "bob", over, false).await,
            Code::InvalidArgument,
        );
        assert!(text.contains("32768"), "{text}");
    }
    expect_nothing_before_marker(&server, &mut bob, "bob").await;
}

#[tokio::test]
async fn online_while_subscribed_and_offline_after() {
    let server = Server::start(&Backend::Local, &[]);
    assert_eq!(online(&server, &["bob", "carol"]).await, [false, false]);
    let bob = Feed::open(&server, "bob").await;
    assert_eq!(online(&server, &["bob", "carol"]).await, [true, false]);
    drop(bob);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while online(&server, &["bob"]).await != [false] {
        assert!(
            std::time::Instant::now() < deadline,
            "bob stayed online after closing his stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = messaging(&server).await;
    let empty = pb::QueryPeersOnlineStatusRequest { user_ids: vec![] };
    expect_code(
        client
            .query_peers_online_status(authed(&token("alice"), empty))
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn malformed_ids_and_empty_messages_are_refused() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = messaging(&server).await;
    let alice = token("alice");
    for peer in ["", "has space", &"p".repeat(65), "caf\u{e9}"] {
        let text = expect_code(
            send_peer(&mut client, &alice, peer, text("x"), false).await,
            Code::InvalidArgument,
        );
        assert!(text.contains("peer_id"), "{text}");
    }
    expect_code(
        send_peer(
            &mut client,
            &alice,
            "bob",
            pb::Message { body: None },
            false,
        )
        .await,
        Code::InvalidArgument,
    );
    // A text without text and a raw message without payload are empty too, to a peer
    // and to a channel; nothing reaches the receiver.
    let raw = |description: &str| pb::Message {
        body: Some(Body::Raw(pb::RawMessage {
            payload: Default::default(),
            description: description.into(),
        })),
    };
    let mut bob = Feed::open(&server, "bob").await;
    let join = pb::JoinChannelRequest {
        channel_id: "empty".into(),
    };
    for user in [&alice, &token("bob")] {
        client
            .join_channel(authed(user, join.clone()))
            .await
            .expect("join");
    }
    for (empty, field) in [
        (text(""), "message.text.text"),
        (raw("png"), "message.raw.payload"),
    ] {
        let refused = expect_code(
            send_peer(&mut client, &alice, "bob", empty.clone(), false).await,
            Code::InvalidArgument,
        );
        assert!(refused.contains(field), "{refused}");
        let to_channel = pb::SendChannelMessageRequest {
            channel_id: "empty".into(),
            message: Some(empty),
            ..Default::default()
        };
        let refused = expect_code(
            client
                .send_channel_message(authed(&alice, to_channel))
                .await,
            Code::InvalidArgument,
        );
        assert!(refused.contains(field), "{refused}");
    }
    expect_nothing_before_marker(&server, &mut bob, "bob").await;
    let bad = pb::JoinChannelRequest {
        channel_id: "tab\there".into(),
    };
    expect_code(
        client.join_channel(authed(&alice, bad)).await,
        Code::InvalidArgument,
    );
    let long = pb::GetChannelMembersRequest {
        channel_id: "c".repeat(65),
    };
    expect_code(
        client.get_channel_members(authed(&alice, long)).await,
        Code::InvalidArgument,
    );
    let max = pb::JoinChannelRequest {
        channel_id: "c".repeat(64),
    };
    client
        .join_channel(authed(&alice, max))
        .await
        .expect("64 bytes is allowed");
}

#[tokio::test]
async fn cached_messages_expire_after_the_offline_ttl() {
    let server = Server::start(&Backend::Local, &["--offline-ttl", "1s"]);
    let mut alice = messaging(&server).await;
    let sent = send_peer(&mut alice, &token("alice"), "bob", text("too late"), true)
        .await
        .expect("send");
    assert_eq!(sent.state(), PeerMessageState::Cached);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let bob = Feed::open(&server, "bob").await;
    assert_eq!(bob.ready_count, 0, "an expired message is not delivered");
    assert!(bob.offline.is_empty());
}

#[tokio::test]
async fn a_user_may_open_only_so_many_streams() {
    let server = Server::start(&Backend::Local, &["--max-streams-per-user", "2"]);
    let first = Feed::open(&server, "bob").await;
    let _second = Feed::open(&server, "bob").await;
    let mut client = messaging(&server).await;
    let result = client
        .subscribe(authed(&token("bob"), pb::SubscribeRequest { after: 0 }))
        .await;
    let message = expect_code(result.map(|_| ()), Code::ResourceExhausted);
    assert!(message.contains("at most 2 Subscribe streams"), "{message}");
    // Another user is not affected, and closing a stream frees its place.
    Feed::open(&server, "carol").await;
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = client
            .subscribe(authed(&token("bob"), pb::SubscribeRequest { after: 0 }))
            .await;
        if attempt.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream's place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_message_that_overflows_a_stalled_stream_is_cached_not_acknowledged_delivered() {
    let server = Server::start(
        &Backend::Local,
        &["--rate-limit", "1000000", "--subscriber-buffer", "16"],
    );
    let mut client = messaging(&server).await;
    let alice = token("alice");
    // bob subscribes and then reads nothing: his queue and the HTTP/2 windows fill.
    let mut stalled = Feed::open(&server, "bob").await;
    let words = "w".repeat(30 * 1024);
    let mut delivered = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..2000 {
        let sent = send_peer(&mut client, &alice, "bob", text(&words), true)
            .await
            .expect("send");
        match sent.state() {
            PeerMessageState::Delivered => {
                assert!(cached.is_empty(), "delivered after bob was cut off");
                delivered.push(sent.message_id);
            }
            PeerMessageState::Cached => cached.push(sent.message_id),
            other => panic!("unexpected state {other:?}"),
        }
        if cached.len() == 3 {
            break;
        }
    }
    assert_eq!(cached.len(), 3, "bob's stream was never cut off");
    assert_eq!(server.metric("courier_subscribers_cut_off_total").await, 1);

    // Every message answered DELIVERED is on the stalled stream, then it ends too slow.
    let mut received = Vec::new();
    let status = loop {
        match stalled.end().await {
            Ok(Some(event)) => match event.event {
                Some(pb::subscribe_response::Event::PeerMessage(m)) => received.push(m.message_id),
                other => panic!("unexpected event {other:?}"),
            },
            Ok(None) => panic!("the stalled stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(received, delivered, "a message answered DELIVERED was lost");
    // Every message answered CACHED arrives, once, when bob comes back.
    let back = Feed::open(&server, "bob").await;
    let offline: Vec<&str> = back.offline.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(offline, cached);

    // Without offline messaging, the overflowing message is PEER_UNREACHABLE.
    drop(back);
    let _stalled = Feed::open(&server, "carol").await;
    let mut states = Vec::new();
    for _ in 0..2000 {
        let sent = send_peer(&mut client, &alice, "carol", text(&words), false)
            .await
            .expect("send");
        states.push(sent.state());
        if sent.state() != PeerMessageState::Delivered {
            break;
        }
    }
    assert_eq!(states.last(), Some(&PeerMessageState::PeerUnreachable));
}

#[tokio::test]
async fn image_and_file_messages_are_held_to_the_uploads_rules() {
    let server = Server::start(&Backend::Local, &UNLIMITED);
    let mut media = server.media().await;
    let mut client = messaging(&server).await;
    let alice = token("alice");
    let picture = png(40, 30);
    let image_id = upload_bytes(
        &mut media,
        &alice,
        header(MediaKind::Image, "cat.png", picture.len() as u64),
        &picture,
    )
    .await
    .expect("upload")
    .media_id;
    let data = pattern(1000, 4);
    let file_id = upload_bytes(
        &mut media,
        &alice,
        header(MediaKind::File, "notes.txt", 1000),
        &data,
    )
    .await
    .expect("upload")
    .media_id;
    let mut bob = Feed::open(&server, "bob").await;

    let named = |name: &str| pb::Message {
        body: Some(Body::Image(pb::ImageMessage {
            media_id: image_id.clone(),
            file_name: name.into(),
            ..Default::default()
        })),
    };
    for hostile in [
        "a\0b.png",
        "two\nlines.png",
        "evil\u{202E}gnp.exe",
        &"x".repeat(256),
    ] {
        let message = expect_code(
            send_peer(&mut client, &alice, "bob", named(hostile), false).await,
            Code::InvalidArgument,
        );
        assert!(message.contains("file_name"), "{hostile:?}: {message}");
    }
    // The upload header refuses the same names.
    let message = expect_code(
        common::upload_frames(
            &mut media,
            &alice,
            vec![common::header_frame(header(
                MediaKind::File,
                "evil\u{202E}gnp.exe",
                1,
            ))],
        )
        .await,
        Code::InvalidArgument,
    );
    assert!(message.contains("bidirectional"), "{message}");

    // A size that contradicts the record is refused; the right one, or none, passes.
    let sized = |size: u64| pb::Message {
        body: Some(Body::File(pb::FileMessage {
            media_id: file_id.clone(),
            size,
            ..Default::default()
        })),
    };
    let message = expect_code(
        send_peer(&mut client, &alice, "bob", sized(999_999), false).await,
        Code::InvalidArgument,
    );
    assert!(message.contains("1000 bytes"), "{message}");
    // An image message must point at an image; a file message may point at anything.
    let message = expect_code(
        send_peer(&mut client, &alice, "bob", image(&file_id), false).await,
        Code::InvalidArgument,
    );
    assert!(message.contains("file message"), "{message}");
    expect_nothing_before_marker(&server, &mut bob, "bob").await;

    send_peer(&mut client, &alice, "bob", sized(1000), false)
        .await
        .expect("the right size passes");
    match body(&bob.next_peer().await.message) {
        Body::File(f) => assert_eq!((f.size, f.file_name.as_str()), (1000, "notes.txt")),
        other => panic!("expected a file message, got {other:?}"),
    }
    send_peer(&mut client, &alice, "bob", file(&image_id), false)
        .await
        .expect("a file message may carry an image");
    send_peer(
        &mut client,
        &alice,
        "bob",
        named("caf\u{e9} \u{1F431}.png"),
        false,
    )
    .await
    .expect("a plain Unicode name passes");
    assert!(matches!(
        body(&bob.next_peer().await.message),
        Body::File(_)
    ));
    match body(&bob.next_peer().await.message) {
        Body::Image(i) => assert_eq!(
            (i.file_name.as_str(), i.width, i.height),
            ("caf\u{e9} \u{1F431}.png", 40, 30)
        ),
        other => panic!("expected an image message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_sender_cannot_fill_the_offline_cache() {
    let server = Server::start(&Backend::Local, &["--offline-quota-per-sender", "2"]);
    let mut client = messaging(&server).await;
    let mallory = token("mallory");
    for user in ["made-up-1", "made-up-2"] {
        let sent = send_peer(&mut client, &mallory, user, text("hi"), true)
            .await
            .expect("cached");
        assert_eq!(sent.state(), PeerMessageState::Cached);
    }
    let refused = send_peer(&mut client, &mallory, "made-up-3", text("hi"), true)
        .await
        .expect_err("over the quota");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    use tonic_types::StatusExt;
    let reason = refused
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone());
    assert_eq!(reason.as_deref(), Some("OFFLINE_CACHE_FULL"));
    // Other senders are not held to mallory's count; a live peer is not cached at all.
    let sent = send_peer(&mut client, &token("alice"), "made-up-3", text("hi"), true)
        .await
        .expect("cached");
    assert_eq!(sent.state(), PeerMessageState::Cached);
    let _bob = Feed::open(&server, "bob").await;
    let sent = send_peer(&mut client, &mallory, "bob", text("hi"), true)
        .await
        .expect("delivered");
    assert_eq!(sent.state(), PeerMessageState::Delivered);
    // Once a receiver comes online and takes its message, mallory may cache again.
    let feed = Feed::open(&server, "made-up-1").await;
    assert_eq!(feed.offline.len(), 1);
    let sent = send_peer(&mut client, &mallory, "made-up-4", text("hi"), true)
        .await
        .expect("cached");
    assert_eq!(sent.state(), PeerMessageState::Cached);
}
