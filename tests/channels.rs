//! MessagingService, black-box: channels, the limits on senders, slow subscribers,
//! ordering and shutdown, over real gRPC to a real server process.

mod common;

use std::time::Duration;

use common::{
    Backend, Feed, Server, authed, body, expect_code, expect_nothing_before_marker, messaging,
    online, send_peer, text, token,
};
use courier_server::pb::messaging_service_client::MessagingServiceClient;
use courier_server::pb::{self, message::Body};
use tonic::{Code, transport::Channel};

/// The members of `channel`, as `asker` sees them.
async fn members_of(
    client: &mut MessagingServiceClient<Channel>,
    asker: &str,
    channel: &str,
) -> Vec<String> {
    client
        .get_channel_members(authed(
            &token(asker),
            pb::GetChannelMembersRequest {
                channel_id: channel.into(),
            },
        ))
        .await
        .expect("members")
        .into_inner()
        .user_ids
}

/// Flags that lift the rate limit for tests that send many messages.
const UNLIMITED: [&str; 2] = ["--rate-limit", "1000000"];

#[tokio::test]
async fn channel_messages_reach_members_but_not_the_sender_or_leavers() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = messaging(&server).await;
    for user in ["alice", "bob", "carol"] {
        let join = pb::JoinChannelRequest {
            channel_id: "room".into(),
        };
        client
            .join_channel(authed(&token(user), join.clone()))
            .await
            .expect("join");
        client
            .join_channel(authed(&token(user), join))
            .await
            .expect("joining twice is fine");
    }
    assert_eq!(
        members_of(&mut client, "dave", "room").await,
        ["alice", "bob", "carol"]
    );
    let (mut alice, mut bob, mut carol) = (
        Feed::open(&server, "alice").await,
        Feed::open(&server, "bob").await,
        Feed::open(&server, "carol").await,
    );
    let send = |words: &str| pb::SendChannelMessageRequest {
        channel_id: "room".into(),
        message: Some(text(words)),
        client_message_id: String::new(),
    };
    let sent = client
        .send_channel_message(authed(&token("alice"), send("hi all")))
        .await
        .expect("send")
        .into_inner();
    for feed in [&mut bob, &mut carol] {
        let got = feed.next_channel().await;
        assert_eq!(
            (got.channel_id.as_str(), got.sender_id.as_str()),
            ("room", "alice")
        );
        assert_eq!(
            (got.message_id.clone(), got.server_time),
            (sent.message_id.clone(), sent.server_time)
        );
        assert_eq!(
            body(&got.message),
            &Body::Text(pb::TextMessage {
                text: "hi all".into()
            })
        );
    }
    expect_nothing_before_marker(&server, &mut alice, "alice").await;

    client
        .leave_channel(authed(
            &token("carol"),
            pb::LeaveChannelRequest {
                channel_id: "room".into(),
            },
        ))
        .await
        .expect("leave");
    client
        .send_channel_message(authed(&token("alice"), send("after carol left")))
        .await
        .expect("send");
    assert_eq!(bob.next_channel().await.sender_id, "alice");
    expect_nothing_before_marker(&server, &mut carol, "carol").await;
    // A non-member may not send.
    let result = client
        .send_channel_message(authed(&token("carol"), send("let me in")))
        .await;
    expect_code(result, Code::FailedPrecondition);
    // Membership outlives a user's streams.
    drop(bob);
    assert_eq!(
        members_of(&mut client, "alice", "room").await,
        ["alice", "bob"]
    );
}

#[tokio::test]
async fn the_21st_channel_is_refused() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = messaging(&server).await;
    let join = |i: usize| {
        authed(
            &token("alice"),
            pb::JoinChannelRequest {
                channel_id: format!("ch{i}"),
            },
        )
    };
    for i in 0..20 {
        client.join_channel(join(i)).await.expect("join");
    }
    let text = expect_code(client.join_channel(join(20)).await, Code::ResourceExhausted);
    assert!(text.contains("at most 20 channels"), "{text}");
    client
        .leave_channel(authed(
            &token("alice"),
            pb::LeaveChannelRequest {
                channel_id: "ch0".into(),
            },
        ))
        .await
        .expect("leave");
    client
        .join_channel(join(20))
        .await
        .expect("a slot freed by leaving");
}

/// One server keeps channel membership in its data folder: joins and leaves survive
/// a clean stop and a crash, so a member who was offline across the restart gets the
/// channel's messages without joining again, and the per-user limit still counts.
#[tokio::test]
async fn membership_survives_a_restart_and_a_crash() {
    let mut server = Server::start(&Backend::Local, &[]);
    {
        let mut client = messaging(&server).await;
        for user in ["alice", "bob", "carol"] {
            let join = pb::JoinChannelRequest {
                channel_id: "room".into(),
            };
            client
                .join_channel(authed(&token(user), join))
                .await
                .expect("join");
        }
        client
            .leave_channel(authed(
                &token("carol"),
                pb::LeaveChannelRequest {
                    channel_id: "room".into(),
                },
            ))
            .await
            .expect("leave");
        for i in 0..19 {
            let join = pb::JoinChannelRequest {
                channel_id: format!("more{i}"),
            };
            client
                .join_channel(authed(&token("alice"), join))
                .await
                .expect("join");
        }
    }
    // A clean stop, then a crash (SIGKILL): each time the same members.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    server.restart(&[]);
    let mut client = messaging(&server).await;
    assert_eq!(
        members_of(&mut client, "dave", "room").await,
        ["alice", "bob"]
    );
    server.restart(&[]);
    let mut client = messaging(&server).await;
    assert_eq!(
        members_of(&mut client, "dave", "room").await,
        ["alice", "bob"],
        "after a crash"
    );

    // bob, offline across the restarts, gets alice's message without joining again.
    let mut bob = Feed::open(&server, "bob").await;
    let sent = client
        .send_channel_message(authed(
            &token("alice"),
            pb::SendChannelMessageRequest {
                channel_id: "room".into(),
                message: Some(text("still here")),
                client_message_id: String::new(),
            },
        ))
        .await
        .expect("alice is still a member")
        .into_inner();
    let got = bob.next_channel().await;
    assert_eq!(got.message_id, sent.message_id);
    // carol left before the restarts: still not a member.
    let refused = client
        .send_channel_message(authed(
            &token("carol"),
            pb::SendChannelMessageRequest {
                channel_id: "room".into(),
                message: Some(text("let me in")),
                client_message_id: String::new(),
            },
        ))
        .await;
    expect_code(refused, Code::FailedPrecondition);
    // alice's 20 channels still count: a 21st is refused.
    let text = expect_code(
        client
            .join_channel(authed(
                &token("alice"),
                pb::JoinChannelRequest {
                    channel_id: "one-too-many".into(),
                },
            ))
            .await,
        Code::ResourceExhausted,
    );
    assert!(text.contains("at most 20 channels"), "{text}");
}

#[tokio::test]
async fn the_181st_message_in_the_window_is_refused() {
    // A 1-hour window, so that 180 calls need not fit in 3 s on a loaded machine; the
    // default of 180 per 3 s is checked in `the_defaults_are_the_designs`.
    let server = Server::start(&Backend::Local, &["--rate-window", "1h"]);
    let mut alice = messaging(&server).await;
    let mut channel = 0;
    for i in 0..180 {
        // Peer and channel messages count together.
        if i % 2 == 0 {
            send_peer(&mut alice, &token("alice"), "bob", text("hi"), false)
                .await
                .expect("within the limit");
        } else {
            if channel == 0 {
                alice
                    .join_channel(authed(
                        &token("alice"),
                        pb::JoinChannelRequest {
                            channel_id: "c".into(),
                        },
                    ))
                    .await
                    .expect("join");
                channel = 1;
            }
            let send = pb::SendChannelMessageRequest {
                channel_id: "c".into(),
                message: Some(text("hi")),
                client_message_id: String::new(),
            };
            alice
                .send_channel_message(authed(&token("alice"), send))
                .await
                .expect("within the limit");
        }
    }
    let text = expect_code(
        send_peer(
            &mut alice,
            &token("alice"),
            "bob",
            text("one too many"),
            false,
        )
        .await,
        Code::ResourceExhausted,
    );
    assert!(text.contains("180 messages per 3600 s"), "{text}");
    // Others are not held back.
    send_peer(
        &mut alice,
        &token("carol"),
        "bob",
        common::text("hi"),
        false,
    )
    .await
    .expect("carol has her own limit");
}

#[tokio::test]
async fn each_senders_order_is_kept_over_1000_messages() {
    let server = Server::start(&Backend::Local, &UNLIMITED);
    let mut bob = Feed::open(&server, "bob").await;
    let mut alice = messaging(&server).await;
    let mut carol = messaging(&server).await;
    // Texts "a0".."a999" from alice and "c0".."c999" from carol, each sender in order.
    async fn send_numbered(client: &mut MessagingServiceClient<Channel>, sender: &str) {
        let prefix = &sender[..1];
        for i in 0..1000 {
            let words = format!("{prefix}{i}");
            send_peer(client, &token(sender), "bob", text(&words), false)
                .await
                .expect("send");
        }
    }
    let sends = send_numbered(&mut alice, "alice");
    let other = send_numbered(&mut carol, "carol");
    let receive = async {
        let (mut next_a, mut next_c) = (0, 0);
        for _ in 0..2000 {
            let got = bob.next_peer().await;
            let Body::Text(t) = body(&got.message) else {
                panic!("text")
            };
            let (next, prefix) = if got.sender_id == "alice" {
                (&mut next_a, "a")
            } else {
                (&mut next_c, "c")
            };
            assert_eq!(
                t.text,
                format!("{prefix}{next}"),
                "out of order from {}",
                got.sender_id
            );
            *next += 1;
        }
        (next_a, next_c)
    };
    let ((), (), counts) = tokio::join!(sends, other, receive);
    assert_eq!(counts, (1000, 1000));
}

#[tokio::test]
async fn a_stalled_subscriber_is_cut_off_while_a_healthy_one_gets_everything() {
    let server = Server::start(
        &Backend::Local,
        &["--rate-limit", "1000000", "--subscriber-buffer", "16"],
    );
    let mut client = messaging(&server).await;
    for user in ["alice", "stalled", "healthy"] {
        client
            .join_channel(authed(
                &token(user),
                pb::JoinChannelRequest {
                    channel_id: "busy".into(),
                },
            ))
            .await
            .expect("join");
    }
    let mut stalled = Feed::open(&server, "stalled").await;
    let mut healthy = Feed::open(&server, "healthy").await;
    let total = 1500;
    let words = "w".repeat(30 * 1024);
    let sends = async {
        for _ in 0..total {
            let send = pb::SendChannelMessageRequest {
                channel_id: "busy".into(),
                message: Some(text(&words)),
                client_message_id: String::new(),
            };
            client
                .send_channel_message(authed(&token("alice"), send))
                .await
                .expect("sending never waits for a slow reader");
        }
    };
    let receive = async {
        for _ in 0..total {
            healthy.next_channel().await;
        }
    };
    tokio::join!(sends, receive);
    assert_eq!(server.metric("courier_subscribers_cut_off_total").await, 1);
    // The stalled stream, read at last, holds what was queued and then ends "too slow".
    let mut received = 0;
    let status = loop {
        match stalled.end().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stalled stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert!(received < total, "the stalled stream was not cut off");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("too slow"), "{status:?}");
    assert_eq!(
        online(&server, &["stalled", "healthy"]).await,
        [false, true]
    );
}

#[tokio::test]
async fn sigterm_ends_subscribe_streams_cleanly() {
    let mut server = Server::start(&Backend::Local, &["--shutdown-grace", "5s"]);
    let mut bob = Feed::open(&server, "bob").await;
    server.terminate();
    assert!(
        matches!(bob.end().await, Ok(None)),
        "the stream ends with OK"
    );
    let status = server
        .wait_exit(Duration::from_secs(8))
        .expect("exits within its grace period");
    assert!(status.success(), "{status:?}");
}
