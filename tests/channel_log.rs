//! Channel messages stored once, in one sequence (issue 27), black-box at the gRPC
//! layer on one server: a member who left misses nothing before the leave and gets
//! nothing after it, live and on replay; a member who joined gets nothing from before
//! the join and no `events_lost` for it; each channel's history is bounded by count,
//! and a replay by the newest events of the user's own log and channels together.

mod common;

use common::{
    Backend, Replicas, Server, authed, cursors, join, messaging, next_is_marker, peer_id, send,
    send_channel, subscribe, token,
};
use courier_server::pb;

async fn leave(server: &Server, user: &str, channel: &str) {
    let mut client = messaging(server).await;
    client
        .leave_channel(authed(
            &token(user),
            pb::LeaveChannelRequest {
                channel_id: channel.into(),
            },
        ))
        .await
        .expect("leaves");
}

async fn say(server: &Server, from: &str, channel: &str, body: &str) -> String {
    send_channel(server, from, channel, body, "")
        .await
        .expect("sends")
        .message_id
}

fn ids(events: &[pb::SubscribeResponse]) -> Vec<String> {
    events.iter().map(peer_id).collect()
}

/// Each case on one server (`[s, s, s]`) and on three replicas sharing NATS: the
/// stream on the first, joins and leaves through the second, sends through the third.
macro_rules! on_one_server_and_replicas {
    ($($case:ident),* $(,)?) => {
        mod one_server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = super::Server::start(&super::Backend::Local, &[]);
                    super::$case([&server, &server, &server]).await
                }
            )*
        }
        mod replicas {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(replicas) = super::Replicas::start(&[]) {
                        super::$case([replicas.r(1), replicas.r(2), replicas.r(3)]).await
                    }
                }
            )*
        }
    };
}

on_one_server_and_replicas!(
    a_member_who_left_misses_nothing_before_and_gets_nothing_after,
    a_member_who_joined_gets_nothing_from_before_the_join_and_no_loss,
);

async fn a_member_who_left_misses_nothing_before_and_gets_nothing_after(
    [streams, members, senders]: [&Server; 3],
) {
    join(members, "alice", "room").await;
    join(members, "carol", "room").await;
    let mut carol = subscribe(streams, "carol", 0).await;
    let from = carol.ready.cursor;
    let before = say(senders, "alice", "room", "before").await;
    assert_eq!(peer_id(&carol.next().await), before, "live while a member");
    leave(members, "carol", "room").await;
    let after = say(senders, "alice", "room", "after the leave").await;
    // Live: nothing after the leave (the marker, a peer message, comes next).
    next_is_marker(senders, &mut carol, "carol").await;
    drop(carol);
    // Back in: only what is sent from now on.
    join(members, "carol", "room").await;
    let again = say(senders, "alice", "room", "after the rejoin").await;
    let back = subscribe(streams, "carol", from).await;
    let messages: Vec<String> = ids(&back.replay)
        .into_iter()
        .filter(|id| [&before, &after, &again].contains(&id))
        .collect();
    assert_eq!(
        messages,
        [before, again],
        "the span before the leave and the one after the rejoin, not the gap"
    );
    assert!(!back.ready.events_lost, "nothing owed was dropped");
}

async fn a_member_who_joined_gets_nothing_from_before_the_join_and_no_loss(
    [streams, members, senders]: [&Server; 3],
) {
    join(members, "alice", "room").await;
    // Dave has a cursor from before the channel had any message, and was offline.
    let dave = subscribe(streams, "dave", 0).await;
    let from = dave.ready.cursor;
    drop(dave);
    for i in 0..3 {
        say(senders, "alice", "room", &format!("early {i}")).await;
    }
    join(members, "dave", "room").await;
    let late = say(senders, "alice", "room", "after the join").await;
    let back = subscribe(streams, "dave", from).await;
    assert_eq!(ids(&back.replay), [late], "only what came after the join");
    assert!(
        !back.ready.events_lost,
        "the messages before the join were not owed"
    );
    assert!(back.replay[0].cursor > from);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_history_keeps_its_newest_messages() {
    let server = Server::start(&Backend::Local, &["--channel-history-size", "3"]);
    join(&server, "alice", "room").await;
    join(&server, "bob", "room").await;
    let bob = subscribe(&server, "bob", 0).await;
    let from = bob.ready.cursor;
    drop(bob);
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(say(&server, "alice", "room", &format!("m{i}")).await);
    }
    let back = subscribe(&server, "bob", from).await;
    assert_eq!(ids(&back.replay), sent[2..], "the newest three");
    assert!(back.ready.events_lost, "two owed messages were dropped");
    // Resuming after the third: nothing owed was dropped.
    let third = back.replay[0].cursor;
    let in_time = subscribe(&server, "bob", cursors(&back.replay)[0] - 1).await;
    assert_eq!(ids(&in_time.replay), sent[2..]);
    assert!(!in_time.ready.events_lost);
    assert!(third > from);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_returns_the_newest_events_of_the_users_log_and_channels_together() {
    let server = Server::start(&Backend::Local, &["--event-log-size", "3"]);
    join(&server, "alice", "room").await;
    join(&server, "bob", "room").await;
    let mut bob = subscribe(&server, "bob", 0).await;
    let from = bob.ready.cursor;
    let mut sent = Vec::new();
    for i in 0..2 {
        sent.push(
            send(&server, "alice", "bob", &format!("p{i}"), false, "")
                .await
                .expect("sends")
                .message_id,
        );
        bob.next().await;
        sent.push(say(&server, "alice", "room", &format!("c{i}")).await);
        bob.next().await;
    }
    drop(bob);
    let back = subscribe(&server, "bob", from).await;
    assert_eq!(
        ids(&back.replay),
        sent[1..],
        "the newest three of four, merged in order"
    );
    let got = cursors(&back.replay);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    assert!(back.ready.events_lost, "the fourth was left out");
}
