//! Several replicas sharing NATS JetStream (`--bus`): three real `courier-server`
//! processes on their own ports, a real `nats-server` with JetStream (fsync on every
//! write), and one media store (a prefix of the MinIO bucket the test script started,
//! or a shared folder). Each drill starts its own cluster and stops it when done.
//!
//! Skipped without a nats-server binary, unless COURIER_TEST_REQUIRE_NATS is set (as
//! `scripts/test` does).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    Backend, Feed, Nats, Server, authed, body, download, eventually, expect_nothing_before_marker,
    header, messaging, online, pattern, send_peer, text, token, upload_bytes,
};
use courier_client::{Client, Event, MessageSource, SendOptions};
use courier_server::pb::{self, MediaKind, PeerMessageState, message::Body};
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// A NATS server and three replicas sharing it and one media store.
struct Cluster {
    /// The replicas, r1..r3.
    replicas: Vec<Server>,
    /// The bus.
    nats: Nats,
    /// The flags each replica was started with (for restarts).
    flags: Vec<String>,
    /// A shared media folder when there is no S3 server.
    _media: tempfile::TempDir,
}

impl Cluster {
    /// Three replicas with `extra` flags, or `None` without a nats-server.
    fn start(extra: &[&str]) -> Option<Self> {
        let nats = Nats::start()?;
        let media = tempfile::tempdir().expect("a shared media folder");
        let backend = Backend::shared(media.path());
        let mut flags = vec!["--bus".to_owned(), nats.url()];
        flags.extend(extra.iter().map(|f| (*f).to_owned()));
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let replicas = (0..3).map(|_| Server::start(&backend, &args)).collect();
        Some(Self {
            replicas,
            nats,
            flags,
            _media: media,
        })
    }

    fn r(&self, n: usize) -> &Server {
        &self.replicas[n - 1]
    }

    /// Kills replica `n` (SIGKILL) and starts it again on the same port and folders.
    fn restart(&mut self, n: usize) {
        let args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.replicas[n - 1].restart(&args);
    }
}

/// The ErrorInfo reason of a refusal.
fn reason(status: &tonic::Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
}

async fn health(server: &Server, service: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

async fn join(server: &Server, user: &str, channel: &str) -> Result<(), tonic::Status> {
    let mut client = messaging(server).await;
    client
        .join_channel(authed(
            &token(user),
            pb::JoinChannelRequest {
                channel_id: channel.to_owned(),
            },
        ))
        .await
        .map(|_| ())
}

async fn members(server: &Server, channel: &str) -> Vec<String> {
    let mut client = messaging(server).await;
    client
        .get_channel_members(authed(
            &token("anyone"),
            pb::GetChannelMembersRequest {
                channel_id: channel.to_owned(),
            },
        ))
        .await
        .expect("members")
        .into_inner()
        .user_ids
}

async fn send_channel(
    server: &Server,
    user: &str,
    channel: &str,
    words: &str,
) -> Result<pb::SendChannelMessageResponse, tonic::Status> {
    let mut client = messaging(server).await;
    client
        .send_channel_message(authed(
            &token(user),
            pb::SendChannelMessageRequest {
                channel_id: channel.to_owned(),
                message: Some(text(words)),
                client_message_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

fn text_of(message: &Option<pb::Message>) -> String {
    match body(message) {
        Body::Text(t) => t.text.clone(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_messages_cross_replicas_in_order_and_presence_is_shared() {
    let Some(cluster) = Cluster::start(&[]) else {
        return;
    };
    let mut bob = Feed::open(cluster.r(2), "bob").await;
    // Presence asked through a third replica.
    assert_eq!(
        online(cluster.r(3), &["bob", "nobody"]).await,
        [true, false]
    );
    let mut client = messaging(cluster.r(1)).await;
    let alice = token("alice");
    for i in 0..50 {
        let sent = send_peer(&mut client, &alice, "bob", text(&format!("m{i}")), false)
            .await
            .expect("sent across replicas");
        assert_eq!(sent.state(), PeerMessageState::Delivered, "message {i}");
    }
    for i in 0..50 {
        let got = bob.next_peer().await;
        assert_eq!((got.sender_id.as_str(), got.offline), ("alice", false));
        assert_eq!(
            text_of(&got.message),
            format!("m{i}"),
            "in order per sender"
        );
    }
    expect_nothing_before_marker(cluster.r(3), &mut bob, "bob").await;
    // An offline user is offline on every replica: not cached unless asked.
    let sent = send_peer(&mut client, &alice, "nobody", text("hi"), false)
        .await
        .expect("answered");
    assert_eq!(sent.state(), PeerMessageState::PeerUnreachable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_members_on_every_replica_receive_once_and_membership_survives_restarts() {
    let Some(mut cluster) = Cluster::start(&[]) else {
        return;
    };
    join(cluster.r(1), "carol", "room").await.expect("join");
    join(cluster.r(2), "dave", "room").await.expect("join");
    join(cluster.r(3), "erin", "room").await.expect("join");
    join(cluster.r(2), "alice", "room").await.expect("join");
    let everyone = ["alice", "carol", "dave", "erin"]
        .map(String::from)
        .to_vec();
    for n in 1..=3 {
        assert_eq!(
            members(cluster.r(n), "room").await,
            everyone,
            "members via r{n}"
        );
    }
    let mut carol = Feed::open(cluster.r(1), "carol").await;
    let mut dave = Feed::open(cluster.r(2), "dave").await;
    let mut erin = Feed::open(cluster.r(3), "erin").await;
    let mut alice = Feed::open(cluster.r(1), "alice").await;
    send_channel(cluster.r(3), "alice", "room", "one")
        .await
        .expect("sent");
    send_channel(cluster.r(1), "alice", "room", "two")
        .await
        .expect("sent");
    for feed in [&mut carol, &mut dave, &mut erin] {
        // Once each: "two" comes right after "one".
        for words in ["one", "two"] {
            let got = feed.next_channel().await;
            assert_eq!(
                (got.channel_id.as_str(), got.sender_id.as_str()),
                ("room", "alice")
            );
            assert_eq!(text_of(&got.message), words);
        }
    }
    // The sender's own streams get nothing.
    expect_nothing_before_marker(cluster.r(2), &mut alice, "alice").await;

    // Membership lives in JetStream: a replica killed and started again knows it.
    drop((carol, dave, erin, alice));
    cluster.restart(1);
    assert_eq!(members(cluster.r(1), "room").await, everyone);
    // Leaving through one replica is seen by the others at once.
    let mut client = messaging(cluster.r(3)).await;
    client
        .leave_channel(authed(
            &token("alice"),
            pb::LeaveChannelRequest {
                channel_id: "room".into(),
            },
        ))
        .await
        .expect("leave");
    let refused = send_channel(cluster.r(1), "alice", "room", "three")
        .await
        .expect_err("no longer a member");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused).as_deref(), Some("NOT_A_MEMBER"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_are_cached_in_jetstream_and_delivered_once_anywhere() {
    let Some(mut cluster) = Cluster::start(&["--offline-cache-size", "3"]) else {
        return;
    };
    let mut client = messaging(cluster.r(1)).await;
    let alice = token("alice");
    let sent = send_peer(&mut client, &alice, "bob", text("while you were out"), true)
        .await
        .expect("cached");
    assert_eq!(sent.state(), PeerMessageState::Cached);
    // The replica that cached it dies; nothing is lost.
    drop(client);
    cluster.replicas[0].kill();
    let mut bob = Feed::open(cluster.r(3), "bob").await;
    assert_eq!(bob.ready_count, 1);
    assert_eq!(bob.offline.len(), 1);
    assert_eq!(bob.offline[0].message_id, sent.message_id);
    assert!(bob.offline[0].offline);
    expect_nothing_before_marker(cluster.r(2), &mut bob, "bob").await;
    drop(bob);
    // Delivered once: the next stream, on another replica, gets nothing cached.
    let again = Feed::open(cluster.r(2), "bob").await;
    assert_eq!((again.ready_count, again.offline.len()), (0, 0));

    // The per-receiver cap (3 here) drops the oldest, as on one server.
    let mut client = messaging(cluster.r(2)).await;
    for words in ["a", "b", "c", "d"] {
        let sent = send_peer(&mut client, &alice, "zed", text(words), true)
            .await
            .expect("cached");
        assert_eq!(sent.state(), PeerMessageState::Cached);
    }
    let zed = Feed::open(cluster.r(3), "zed").await;
    let texts: Vec<String> = zed.offline.iter().map(|m| text_of(&m.message)).collect();
    assert_eq!(texts, ["b", "c", "d"]);
    cluster.restart(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_uploaded_through_one_replica_downloads_through_another() {
    let Some(cluster) = Cluster::start(&[]) else {
        return;
    };
    let data = pattern(3 * 1024 * 1024 + 17, 9);
    let mut r1 = cluster.r(1).media().await;
    let media = upload_bytes(
        &mut r1,
        &token("alice"),
        header(MediaKind::File, "report.bin", data.len() as u64),
        &data,
    )
    .await
    .expect("uploaded through r1");
    let mut r3 = cluster.r(3).media().await;
    let (record, bytes) = download(&mut r3, &token("bob"), &media.media_id, 0, 0)
        .await
        .expect("downloaded through r3");
    assert_eq!(record.media_id, media.media_id);
    assert_eq!(Bytes::from(bytes), data, "byte-identical");
    // A file message naming it is accepted by a third replica, size filled in.
    let mut bob = Feed::open(cluster.r(1), "bob").await;
    let mut client = messaging(cluster.r(2)).await;
    let message = pb::Message {
        body: Some(Body::File(pb::FileMessage {
            media_id: media.media_id.clone(),
            ..Default::default()
        })),
    };
    send_peer(&mut client, &token("alice"), "bob", message, false)
        .await
        .expect("sent");
    match body(&bob.next_peer().await.message) {
        Body::File(file) => assert_eq!(file.size, data.len() as u64),
        other => panic!("expected a file message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_loses_nothing_cached_and_the_client_moves_on() {
    let Some(mut cluster) = Cluster::start(&[]) else {
        return;
    };
    let urls: Vec<String> = [2, 1, 3].iter().map(|n| cluster.r(*n).url()).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let bob = Client::connect_any(&urls, &token("bob"))
        .await
        .expect("bob connects to r2 first");
    let mut feed = bob.subscribe();
    assert!(matches!(next(&mut feed).await, Event::Ready { .. }));
    // A raw stream of carol on r2 too, to see presence follow the replica's death.
    let _carol = Feed::open(cluster.r(2), "carol").await;
    let alice = Client::connect(&cluster.r(1).url(), &token("alice"))
        .await
        .expect("alice on r1");
    let receipt = alice
        .send_peer_message(
            "bob",
            courier_client::Message::text("before"),
            SendOptions::default(),
        )
        .await
        .expect("delivered");
    assert_eq!(receipt.delivery, courier_client::Delivery::Delivered);
    match next(&mut feed).await {
        Event::Message(m) => assert_eq!(m.message, courier_client::Message::text("before")),
        other => panic!("expected the message, got {other:?}"),
    }

    cluster.replicas[1].kill();
    // carol's only stream was on r2: she goes offline at once, everywhere.
    eventually(
        Duration::from_secs(5),
        "carol offline after r2 died",
        || async { online(cluster.r(3), &["carol"]).await == [false] },
    )
    .await;
    // Sent while bob may be between replicas: delivered or cached, never lost.
    let receipt = alice
        .send_peer_message(
            "bob",
            courier_client::Message::text("after"),
            SendOptions { offline: true },
        )
        .await
        .expect("delivered or cached");
    let mut got_after = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !got_after {
        assert!(
            Instant::now() < deadline,
            "bob never got the message sent after the kill"
        );
        match next(&mut feed).await {
            Event::Message(m) => {
                assert_eq!(m.message, courier_client::Message::text("after"));
                assert_eq!(m.source, MessageSource::Peer);
                assert_eq!(m.message_id, receipt.message_id);
                got_after = true;
            }
            Event::Disconnected { .. } | Event::Ready { .. } => {}
        }
    }
    // And only once: the next message is the marker.
    alice
        .send_peer_message(
            "bob",
            courier_client::Message::text("marker"),
            SendOptions { offline: true },
        )
        .await
        .expect("marker");
    loop {
        match next(&mut feed).await {
            Event::Message(m) => {
                assert_eq!(m.message, courier_client::Message::text("marker"));
                break;
            }
            Event::Ready { .. } | Event::Disconnected { .. } => {}
        }
    }
    cluster.restart(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ride_out_a_nats_restart_with_readiness_not_liveness() {
    let Some(mut cluster) = Cluster::start(&["--health-check-interval", "200ms"]) else {
        return;
    };
    join(cluster.r(1), "carol", "room").await.expect("join");
    let mut client = messaging(cluster.r(1)).await;
    let cached = send_peer(&mut client, &token("alice"), "dave", text("kept"), true)
        .await
        .expect("cached");
    assert_eq!(cached.state(), PeerMessageState::Cached);
    let mut bob = Feed::open(cluster.r(2), "bob").await;

    cluster.nats.kill();
    for n in 1..=3 {
        eventually(Duration::from_secs(5), "readiness NOT_SERVING", || async {
            health(cluster.r(n), "").await == Some(ServingStatus::NotServing)
        })
        .await;
        assert_eq!(
            health(cluster.r(n), "courier.v1.Liveness").await,
            Some(ServingStatus::Serving),
            "liveness does not depend on the bus"
        );
    }
    let refused = send_peer(&mut client, &token("alice"), "bob", text("lost?"), false)
        .await
        .expect_err("the bus is down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    cluster.nats.restart();
    for n in 1..=3 {
        eventually(
            Duration::from_secs(15),
            "readiness SERVING again",
            || async { health(cluster.r(n), "").await == Some(ServingStatus::Serving) },
        )
        .await;
    }
    // Messaging resumes by itself; bob's stream on r2 never closed.
    let mut delivered = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while delivered.is_none() {
        assert!(Instant::now() < deadline, "messaging did not resume");
        if let Ok(sent) = send_peer(&mut client, &token("alice"), "bob", text("back"), false).await
            && sent.state() == PeerMessageState::Delivered
        {
            delivered = Some(sent);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Earlier attempts that timed out may have reached bob too (never half a message):
    // read up to the one answered DELIVERED.
    let delivered = delivered.expect("delivered").message_id;
    for _ in 0..200 {
        let got = bob.next_peer().await;
        assert_eq!(text_of(&got.message), "back");
        if got.message_id == delivered {
            break;
        }
    }
    // What JetStream held on disk survived: membership and the cached message.
    assert_eq!(members(cluster.r(3), "room").await, ["carol"]);
    let dave = Feed::open(cluster.r(3), "dave").await;
    assert_eq!(dave.offline.len(), 1);
    assert_eq!(dave.offline[0].message_id, cached.message_id);
}

/// The next event of a client's feed, within 20 s.
async fn next(feed: &mut courier_client::Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("an event within 20 s")
        .expect("the feed goes on")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_replicas() {
    let Some(cluster) = Cluster::start(&[
        "--rate-limit",
        "10",
        "--rate-window",
        "60s",
        "--max-channels-per-user",
        "3",
        "--max-streams-per-user",
        "2",
        "--max-transfers-per-user",
        "3",
        "--quota-bytes",
        "4096",
    ]) else {
        return;
    };
    // Rate: 10 messages per window, however they are spread over replicas.
    let mut clients = Vec::new();
    for n in 1..=3 {
        clients.push(messaging(cluster.r(n)).await);
    }
    let frank = token("frank");
    for i in 0..10 {
        send_peer(&mut clients[i % 3], &frank, "nobody", text("hi"), false)
            .await
            .unwrap_or_else(|e| panic!("message {i} is within the rate: {e:?}"));
    }
    let refused = send_peer(&mut clients[1], &frank, "nobody", text("hi"), false)
        .await
        .expect_err("the 11th in the window");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused).as_deref(), Some("RATE_LIMITED"));

    // Channels: 3 per user, joined through three replicas.
    for (n, channel) in [(1, "c1"), (2, "c2"), (3, "c3")] {
        join(cluster.r(n), "grace", channel)
            .await
            .expect("within the limit");
    }
    let refused = join(cluster.r(1), "grace", "c4")
        .await
        .expect_err("a 4th channel");
    assert_eq!(reason(&refused).as_deref(), Some("TOO_MANY_CHANNELS"));
    join(cluster.r(2), "grace", "c1")
        .await
        .expect("joining again is no change");

    // Streams: 2 per user.
    let first = Feed::open(cluster.r(1), "heidi").await;
    let _second = Feed::open(cluster.r(2), "heidi").await;
    let mut r3 = messaging(cluster.r(3)).await;
    let refused = r3
        .subscribe(authed(&token("heidi"), pb::SubscribeRequest { after: 0 }))
        .await
        .expect_err("a 3rd stream");
    assert_eq!(reason(&refused).as_deref(), Some("TOO_MANY_STREAMS"));
    drop(first);
    eventually(Duration::from_secs(5), "a freed stream slot", || async {
        let mut r3 = messaging(cluster.r(3)).await;
        r3.subscribe(authed(&token("heidi"), pb::SubscribeRequest { after: 0 }))
            .await
            .is_ok()
    })
    .await;

    // Storage quota: counted in the shared store, so it holds across replicas.
    let mut r1 = cluster.r(1).media().await;
    upload_bytes(
        &mut r1,
        &token("judy"),
        header(MediaKind::File, "q", 3000),
        &pattern(3000, 3),
    )
    .await
    .expect("within the quota");
    let mut r3 = cluster.r(3).media().await;
    let refused = upload_bytes(
        &mut r3,
        &token("judy"),
        header(MediaKind::File, "q", 2000),
        &pattern(2000, 4),
    )
    .await
    .expect_err("over the quota through another replica");
    assert_eq!(reason(&refused).as_deref(), Some("QUOTA_EXCEEDED"));

    // Transfers: 3 per user, held open on three replicas (1 KiB each, so that their
    // quota holds, 3 KiB, leave room under the 4 KiB quota for the last upload).
    let mut held = Vec::new();
    for n in 1..=3 {
        held.push(common::open_upload(cluster.r(n), "ivan", 1024, 512).await);
        cluster.r(n).wait_in_flight(1).await;
    }
    let mut r2 = cluster.r(2).media().await;
    let data = pattern(10, 2);
    let refused = upload_bytes(
        &mut r2,
        &token("ivan"),
        header(MediaKind::File, "fourth", 10),
        &data,
    )
    .await
    .expect_err("a 4th transfer");
    assert_eq!(reason(&refused).as_deref(), Some("TOO_MANY_TRANSFERS"));
    let (tx, call) = held.remove(0);
    call.abort();
    drop(tx);
    eventually(Duration::from_secs(5), "a freed transfer slot", || async {
        let mut r2 = cluster.r(2).media().await;
        upload_bytes(
            &mut r2,
            &token("ivan"),
            header(MediaKind::File, "fourth", 10),
            &data,
        )
        .await
        .is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_the_bus_holds_on_every_replica_at_once() {
    let Some(cluster) = Cluster::start(&[]) else {
        return;
    };
    let now = common::now_secs();
    let old = common::token_with_claims(
        &serde_json::json!({ "sub": "alice", "exp": now + 3600, "iat": now - 10 }),
    );
    let mut r2 = messaging(cluster.r(2)).await;
    let mut stream = r2
        .subscribe(authed(&old, pb::SubscribeRequest { after: 0 }))
        .await
        .expect("subscribes")
        .into_inner();
    stream.message().await.expect("ready").expect("ready");
    let data_dir = tempfile::tempdir().expect("dir");
    let output = std::process::Command::new(common::server_binary())
        .args([
            "revoke",
            "--user",
            "alice",
            "--bus",
            &cluster.nats.url(),
            "--data-dir",
        ])
        .arg(data_dir.path())
        .output()
        .expect("revoke runs");
    assert!(output.status.success(), "{output:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream on r2 ends within 5 s")
        .expect_err("with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let query = || pb::QueryPeersOnlineStatusRequest {
        user_ids: vec!["bob".into()],
    };
    let fresh = common::token_with_claims(
        &serde_json::json!({ "sub": "alice", "exp": now + 3600, "iat": now + 1 }),
    );
    for n in [1, 3] {
        // Each replica hears the bucket's change within milliseconds of the others.
        eventually(
            Duration::from_secs(2),
            "revoked on every replica",
            || async {
                let mut client = messaging(cluster.r(n)).await;
                client
                    .query_peers_online_status(authed(&old, query()))
                    .await
                    .is_err_and(|e| e.code() == Code::Unauthenticated)
            },
        )
        .await;
        let mut client = messaging(cluster.r(n)).await;
        client
            .query_peers_online_status(authed(&fresh, query()))
            .await
            .expect("a token issued after works");
    }
}
