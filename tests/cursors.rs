//! Cursors, the per-user event log and idempotent sends (issue 18), black-box at the
//! gRPC layer on one server: every rule of messaging_service.proto's contract.

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    Backend, Server, authed, cursors, join, messaging, next_is_marker, peer_id, send, send_channel,
    subscribe, text, token,
};
use courier_server::pb::{self, subscribe_response::Event as Kind};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_increase_and_a_stream_resumes_after_one() {
    let server = Server::start(&Backend::Local, &[]);
    let mut bob = subscribe(&server, "bob", 0).await;
    // The first stream reserves cursor 1 (no event has it): a cursor to resume after.
    assert_eq!(bob.ready.cursor, 1);
    assert!(!bob.ready.events_lost);
    let mut sent = Vec::new();
    let mut live = Vec::new();
    for i in 0..5 {
        let answer = send(&server, "alice", "bob", &format!("m{i}"), false, "")
            .await
            .expect("sends");
        assert_eq!(answer.state(), pb::PeerMessageState::Delivered);
        sent.push(answer.message_id);
        live.push(bob.next().await);
    }
    assert_eq!(cursors(&live), [2, 3, 4, 5, 6], "per user, increasing");
    drop(bob);
    // Not delivered and not cached: not an event, it takes no cursor.
    let unreachable = send(&server, "alice", "bob", "lost", false, "")
        .await
        .expect("sends");
    assert_eq!(unreachable.state(), pb::PeerMessageState::PeerUnreachable);

    let mut again = subscribe(&server, "bob", 3).await;
    assert_eq!(cursors(&again.replay), [4, 5, 6]);
    let ids: Vec<String> = again.replay.iter().map(peer_id).collect();
    assert_eq!(ids, sent[2..]);
    assert!(again.replay.iter().all(|e| match &e.event {
        Some(Kind::PeerMessage(m)) => !m.offline,
        _ => false,
    }));
    assert_eq!(again.ready.cursor, 6);
    assert_eq!(again.ready_response_cursor, 6);
    assert!(!again.ready.events_lost);
    assert_eq!(again.ready.offline_message_count, 0);
    // Live events carry on from there; the marker is next.
    send(&server, "alice", "bob", "m5", false, "")
        .await
        .expect("sends");
    assert_eq!(again.next().await.cursor, 7);
    next_is_marker(&server, &mut again, "bob").await;

    // after = the latest: nothing replayed. after = 0: as before cursors (cache only).
    let latest = subscribe(&server, "bob", 8).await;
    assert!(latest.replay.is_empty());
    assert!(!latest.ready.events_lost);
    assert_eq!(latest.ready.cursor, 8);
    let fresh = subscribe(&server, "bob", 0).await;
    assert!(fresh.replay.is_empty());
    assert_eq!(fresh.ready.cursor, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_messages_take_cursors_from_the_same_sequence() {
    let server = Server::start(&Backend::Local, &[]);
    let mut bob = subscribe(&server, "bob", 0).await;
    send(&server, "alice", "bob", "live", false, "")
        .await
        .expect("sends");
    assert_eq!(bob.next().await.cursor, 2);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..2 {
        let answer = send(&server, "carol", "bob", &format!("c{i}"), true, "")
            .await
            .expect("sends");
        assert_eq!(answer.state(), pb::PeerMessageState::Cached);
    }
    let back = subscribe(&server, "bob", 2).await;
    assert_eq!(cursors(&back.replay), [3, 4]);
    assert!(back.replay.iter().all(|e| matches!(&e.event,
        Some(Kind::PeerMessage(m)) if m.offline && m.sender_id == "carol")));
    assert_eq!(back.ready.offline_message_count, 2);
    assert_eq!(back.ready.cursor, 4);
    drop(back);
    // Handed over once; replayed after a cursor (still flagged offline), not as cached.
    let after_0 = subscribe(&server, "bob", 0).await;
    assert!(
        after_0.replay.is_empty(),
        "cached messages are handed over once"
    );
    let after_1 = subscribe(&server, "bob", 2).await;
    assert_eq!(cursors(&after_1.replay), [3, 4]);
    assert_eq!(after_1.ready.offline_message_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_log_reports_lost_events() {
    let server = Server::start(&Backend::Local, &["--event-log-size", "3"]);
    let mut bob = subscribe(&server, "bob", 0).await;
    for i in 0..6 {
        send(&server, "alice", "bob", &format!("m{i}"), false, "")
            .await
            .expect("sends");
        bob.next().await;
    }
    drop(bob);
    let late = subscribe(&server, "bob", 1).await;
    assert!(late.ready.events_lost, "2 to 4 were dropped");
    assert_eq!(cursors(&late.replay), [5, 6, 7], "what the log holds");
    let in_time = subscribe(&server, "bob", 4).await;
    assert!(!in_time.ready.events_lost);
    assert_eq!(cursors(&in_time.replay), [5, 6, 7]);
    // A cursor this server never handed out (its log was lost with the data folder).
    let future = subscribe(&server, "bob", 99).await;
    assert!(future.ready.events_lost);
    assert!(future.replay.is_empty());
    assert_eq!(future.ready.cursor, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_events_expire_but_cached_messages_keep_their_life() {
    let server = Server::start(&Backend::Local, &["--event-log-ttl", "1s"]);
    let mut bob = subscribe(&server, "bob", 0).await;
    send(&server, "alice", "bob", "live", false, "")
        .await
        .expect("sends");
    assert_eq!(bob.next().await.cursor, 2);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cached = send(&server, "alice", "bob", "cached", true, "")
        .await
        .expect("sends");
    assert_eq!(cached.state(), pb::PeerMessageState::Cached);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = subscribe(&server, "bob", 0).await;
    // The cached message outlives the log's TTL (it keeps the offline TTL).
    assert_eq!(back.replay.len(), 1);
    assert_eq!(peer_id(&back.replay[0]), cached.message_id);
    assert_eq!(back.replay[0].cursor, 3);
    drop(back);
    // The delivered one (2) is gone: resuming after 1 has lost it.
    let late = subscribe(&server, "bob", 1).await;
    assert!(late.ready.events_lost);
    // Cursor 3 was handed over just now and is still held (with the log's TTL).
    assert_eq!(cursors(&late.replay), [3]);
    let in_time = subscribe(&server, "bob", 2).await;
    assert!(!in_time.ready.events_lost);
    assert_eq!(cursors(&in_time.replay), [3]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let too_late = subscribe(&server, "bob", 2).await;
    assert!(too_late.ready.events_lost, "cursor 3 expired from the log");
    assert!(too_late.replay.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_was_offline_gets_the_channel_messages_they_missed() {
    let server = Server::start(&Backend::Local, &[]);
    join(&server, "alice", "room").await;
    join(&server, "carol", "room").await;
    let carol = subscribe(&server, "carol", 0).await;
    let resume_at = carol.ready.cursor;
    drop(carol);
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            send_channel(&server, "alice", "room", &format!("c{i}"), "")
                .await
                .expect("sends")
                .message_id,
        );
    }
    let back = subscribe(&server, "carol", resume_at).await;
    let ids: Vec<String> = back.replay.iter().map(peer_id).collect();
    assert_eq!(ids, sent);
    let got = cursors(&back.replay);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]) && got[0] > resume_at,
        "increasing, after the cursor resumed from: {got:?}"
    );
    assert!(!back.ready.events_lost);
    assert_eq!(back.ready.cursor, got[2], "the latest position");
    // Not replayed to the sender, resuming from before them.
    let alice = subscribe(&server, "alice", resume_at).await;
    assert!(alice.replay.is_empty(), "{:?}", alice.replay);
    assert!(!alice.ready.events_lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_survives_a_restart_and_a_crash() {
    let mut server = Server::start(&Backend::Local, &[]);
    let mut bob = subscribe(&server, "bob", 0).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            send(&server, "alice", "bob", &format!("m{i}"), false, "")
                .await
                .expect("sends")
                .message_id,
        );
        bob.next().await;
    }
    drop(bob);
    // A clean stop (SIGTERM) keeps everything; the sequence carries on.
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    server.restart(&[]);
    let mut back = subscribe(&server, "bob", 2).await;
    assert_eq!(cursors(&back.replay), [3, 4]);
    let ids: Vec<String> = back.replay.iter().map(peer_id).collect();
    assert_eq!(ids, sent[1..]);
    assert!(!back.ready.events_lost);
    send(&server, "alice", "bob", "after", false, "")
        .await
        .expect("sends");
    assert_eq!(back.next().await.cursor, 5, "the sequence carries on");
    drop(back);
    // A crash (SIGKILL) right after a send keeps it: every answered send was
    // committed with an fsync (its group's), and the sequence carries on.
    let mut bob = subscribe(&server, "bob", 5).await;
    let answered = send(&server, "alice", "bob", "just before the crash", false, "")
        .await
        .expect("sends");
    assert_eq!(answered.state(), pb::PeerMessageState::Delivered);
    assert_eq!(bob.next().await.cursor, 6);
    drop(bob);
    server.restart(&[]);
    let mut crashed = subscribe(&server, "bob", 2).await;
    assert_eq!(cursors(&crashed.replay), [3, 4, 5, 6]);
    assert_eq!(peer_id(&crashed.replay[3]), answered.message_id);
    assert!(!crashed.ready.events_lost);
    send(&server, "alice", "bob", "after the crash", false, "")
        .await
        .expect("sends");
    assert_eq!(crashed.next().await.cursor, 7, "the sequence carries on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_gets_the_first_answer_and_delivers_nothing() {
    let server = Server::start(&Backend::Local, &[]);
    let mut bob = subscribe(&server, "bob", 0).await;
    let first = send(&server, "alice", "bob", "once", false, "retry-1")
        .await
        .expect("sends");
    let again = send(&server, "alice", "bob", "once", false, "retry-1")
        .await
        .expect("a retry succeeds");
    assert_eq!(again, first, "same message_id, state and server_time");
    assert_eq!(peer_id(&bob.next().await), first.message_id);
    next_is_marker(&server, &mut bob, "bob").await;
    // Another sender's same ID is theirs.
    let other = send(&server, "carol", "bob", "once", false, "retry-1")
        .await
        .expect("sends");
    assert_ne!(other.message_id, first.message_id);
    assert_eq!(peer_id(&bob.next().await), other.message_id);
    // A PEER_UNREACHABLE answer is the answer too, even once the peer is online.
    let unreachable = send(&server, "alice", "dave", "x", false, "to-dave")
        .await
        .expect("sends");
    assert_eq!(unreachable.state(), pb::PeerMessageState::PeerUnreachable);
    let _dave = subscribe(&server, "dave", 0).await;
    let retried = send(&server, "alice", "dave", "x", false, "to-dave")
        .await
        .expect("sends");
    assert_eq!(retried, unreachable);
    // The ID reused for a different message is refused, and nothing is sent.
    let reused = send(&server, "alice", "bob", "something else", false, "retry-1")
        .await
        .expect_err("refused");
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert!(
        reused.message().contains("client_message_id"),
        "{}",
        reused.message()
    );
    next_is_marker(&server, &mut bob, "bob").await;
    // Bad IDs.
    for bad in ["has space", &"x".repeat(65), "tab\t", "ünï"] {
        let refused = send(&server, "alice", "bob", "x", false, bad)
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
    }
    next_is_marker(&server, &mut bob, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_send_retried_is_cached_once() {
    let server = Server::start(&Backend::Local, &[]);
    let first = send(&server, "alice", "bob", "c", true, "cache-1")
        .await
        .expect("sends");
    assert_eq!(first.state(), pb::PeerMessageState::Cached);
    let again = send(&server, "alice", "bob", "c", true, "cache-1")
        .await
        .expect("sends");
    assert_eq!(again, first);
    let bob = subscribe(&server, "bob", 0).await;
    assert_eq!(bob.replay.len(), 1);
    assert_eq!(bob.ready.offline_message_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_channel_send_is_delivered_once() {
    let server = Server::start(&Backend::Local, &[]);
    join(&server, "alice", "room").await;
    join(&server, "bob", "room").await;
    let mut bob = subscribe(&server, "bob", 0).await;
    let first = send_channel(&server, "alice", "room", "hi", "ch-1")
        .await
        .expect("sends");
    let again = send_channel(&server, "alice", "room", "hi", "ch-1")
        .await
        .expect("sends");
    assert_eq!(again, first);
    assert_eq!(peer_id(&bob.next().await), first.message_id);
    next_is_marker(&server, &mut bob, "bob").await;
    let reused = send_channel(&server, "alice", "room", "other", "ch-1")
        .await
        .expect_err("refused");
    assert_eq!(reused.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedup_window_ends() {
    let server = Server::start(&Backend::Local, &["--dedup-window", "1s"]);
    let mut bob = subscribe(&server, "bob", 0).await;
    let first = send(&server, "alice", "bob", "x", false, "window-1")
        .await
        .expect("sends");
    assert_eq!(peer_id(&bob.next().await), first.message_id);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = send(&server, "alice", "bob", "x", false, "window-1")
        .await
        .expect("sends");
    assert_ne!(
        later.message_id, first.message_id,
        "a new message after the window"
    );
    assert_eq!(peer_id(&bob.next().await), later.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_stream_misses_nothing_and_repeats_nothing_under_load() {
    // Subscribing with `after` while messages keep coming: the replay and the live
    // events meet without a gap or a duplicate.
    let server = Server::start(&Backend::Local, &["--rate-limit", "100000"]);
    let mut bob = subscribe(&server, "bob", 0).await;
    let total = 600u64;
    let sender = {
        let url = server.url();
        let channel = server.channel().await;
        tokio::spawn(async move {
            let _ = url;
            let mut client = pb::messaging_service_client::MessagingServiceClient::new(channel);
            for i in 0..total {
                let request = pb::SendPeerMessageRequest {
                    peer_id: "bob".into(),
                    message: Some(text(&i.to_string())),
                    options: Some(pb::SendMessageOptions {
                        enable_offline_messaging: true,
                    }),
                    client_message_id: String::new(),
                };
                client
                    .send_peer_message(authed(&token("alice"), request))
                    .await
                    .expect("sends");
            }
        })
    };
    let mut seen: Vec<u64> = Vec::new();
    let mut last = 0;
    // Reconnect every 50 events, resuming after the last cursor seen.
    for _ in 0..200 {
        for _ in 0..50 {
            if seen.len() as u64 == total {
                break;
            }
            let event = bob.next().await;
            seen.push(event.cursor);
            last = event.cursor;
        }
        if seen.len() as u64 == total {
            break;
        }
        drop(bob);
        bob = subscribe(&server, "bob", last).await;
        for event in std::mem::take(&mut bob.replay) {
            seen.push(event.cursor);
            last = event.cursor;
        }
    }
    sender.await.expect("the sender finishes");
    assert_eq!(
        seen,
        (2..=total + 1).collect::<Vec<_>>(),
        "every cursor once, in order"
    );
}

/// The same rules across three replicas sharing NATS JetStream (`--bus`), where the
/// log is a JetStream stream and a cursor is its sequence: shared by every user, so
/// a user's cursors increase but need not be consecutive.
mod replicated {
    use super::*;
    use common::{Nats, Replicas as Cluster};

    fn increasing(cursors: &[u64]) -> bool {
        cursors.windows(2).all(|w| w[0] < w[1])
    }

    /// Waits until `to` is offline everywhere: their stream that was just dropped is
    /// gone on every replica. Asks presence rather than sending (a message sent while
    /// the stream is still being torn down would be logged for them).
    async fn until_offline(server: &Server, to: &str) {
        let mut client = messaging(server).await;
        for _ in 0..50 {
            let request = pb::QueryPeersOnlineStatusRequest {
                user_ids: vec![to.into()],
            };
            let statuses = client
                .query_peers_online_status(authed(&token("probe"), request))
                .await
                .expect("presence")
                .into_inner()
                .statuses;
            if statuses.iter().all(|s| !s.online) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{to} still online 5 s after their stream was dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cursors_increase_and_a_stream_resumes_after_one_on_another_replica() {
        let Some(cluster) = Cluster::start(&[]) else {
            return;
        };
        let mut bob = subscribe(cluster.r(1), "bob", 0).await;
        let reserved = bob.ready.cursor;
        assert!(reserved > 0, "a cursor to resume after, never 0");
        assert!(!bob.ready.events_lost);
        let mut sent = Vec::new();
        let mut live = Vec::new();
        for i in 0..5 {
            let answer = send(
                cluster.r(2 + i % 2),
                "alice",
                "bob",
                &format!("m{i}"),
                false,
                "",
            )
            .await
            .expect("sends");
            assert_eq!(answer.state(), pb::PeerMessageState::Delivered);
            sent.push(answer.message_id);
            live.push(bob.next().await);
        }
        let live = cursors(&live);
        assert!(
            reserved < live[0] && increasing(&live),
            "{reserved} {live:?}"
        );
        drop(bob);
        until_offline(cluster.r(1), "bob").await;

        let mut again = subscribe(cluster.r(3), "bob", live[1]).await;
        assert_eq!(cursors(&again.replay), live[2..]);
        let ids: Vec<String> = again.replay.iter().map(peer_id).collect();
        assert_eq!(ids, sent[2..]);
        assert!(again.replay.iter().all(|e| match &e.event {
            Some(Kind::PeerMessage(m)) => !m.offline,
            _ => false,
        }));
        assert_eq!(again.ready.cursor, live[4]);
        assert_eq!(again.ready_response_cursor, live[4]);
        assert!(!again.ready.events_lost);
        assert_eq!(again.ready.offline_message_count, 0);
        send(cluster.r(1), "alice", "bob", "m5", false, "")
            .await
            .expect("sends");
        let next = again.next().await.cursor;
        assert!(next > live[4]);
        next_is_marker(cluster.r(2), &mut again, "bob").await;

        // after = the latest: nothing replayed. after = 0: the cache only.
        let marker = again.next_cursor_seen();
        let latest = subscribe(cluster.r(2), "bob", marker).await;
        assert!(latest.replay.is_empty());
        assert!(!latest.ready.events_lost);
        assert_eq!(latest.ready.cursor, marker);
        let fresh = subscribe(cluster.r(1), "bob", 0).await;
        assert!(fresh.replay.is_empty());
        assert_eq!(fresh.ready.cursor, marker);
        // A cursor never handed out: lost, nothing replayed.
        let future = subscribe(cluster.r(3), "bob", marker + 1_000).await;
        assert!(future.ready.events_lost);
        assert!(future.replay.is_empty());
        assert_eq!(future.ready.cursor, marker);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_messages_take_cursors_from_the_same_sequence_and_are_handed_over_once() {
        let Some(cluster) = Cluster::start(&[]) else {
            return;
        };
        let mut bob = subscribe(cluster.r(1), "bob", 0).await;
        send(cluster.r(2), "alice", "bob", "live", false, "")
            .await
            .expect("sends");
        let seen = bob.next().await.cursor;
        drop(bob);
        until_offline(cluster.r(3), "bob").await;
        for i in 0..2 {
            let answer = send(cluster.r(2), "carol", "bob", &format!("c{i}"), true, "")
                .await
                .expect("sends");
            assert_eq!(answer.state(), pb::PeerMessageState::Cached);
        }
        let back = subscribe(cluster.r(3), "bob", seen).await;
        let cached = cursors(&back.replay);
        assert_eq!(cached.len(), 2);
        assert!(seen < cached[0] && increasing(&cached));
        assert!(back.replay.iter().all(|e| matches!(&e.event,
            Some(Kind::PeerMessage(m)) if m.offline && m.sender_id == "carol")));
        assert_eq!(back.ready.offline_message_count, 2);
        assert_eq!(back.ready.cursor, cached[1]);
        drop(back);
        // Handed over once, on any replica; replayed after a cursor, not as cached.
        let after_0 = subscribe(cluster.r(1), "bob", 0).await;
        assert!(
            after_0.replay.is_empty(),
            "cached messages are handed over once"
        );
        let again = subscribe(cluster.r(2), "bob", seen).await;
        assert_eq!(cursors(&again.replay), cached);
        assert_eq!(again.ready.offline_message_count, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_older_than_the_log_reports_lost_events() {
        let Some(cluster) = Cluster::start(&["--event-log-size", "3", "--offline-cache-size", "3"])
        else {
            return;
        };
        let mut bob = subscribe(cluster.r(1), "bob", 0).await;
        let reserved = bob.ready.cursor;
        let mut live = Vec::new();
        for i in 0..6 {
            send(cluster.r(2), "alice", "bob", &format!("m{i}"), false, "")
                .await
                .expect("sends");
            live.push(bob.next().await.cursor);
        }
        drop(bob);
        let late = subscribe(cluster.r(3), "bob", reserved).await;
        assert!(late.ready.events_lost, "the first three were dropped");
        assert_eq!(cursors(&late.replay), live[3..], "what the log holds");
        let in_time = subscribe(cluster.r(2), "bob", live[2]).await;
        assert!(!in_time.ready.events_lost);
        assert_eq!(cursors(&in_time.replay), live[3..]);
        let lost_one = subscribe(cluster.r(1), "bob", live[1]).await;
        assert!(
            lost_one.ready.events_lost,
            "the event after {} was dropped",
            live[1]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_who_was_offline_gets_the_channel_messages_they_missed() {
        let Some(cluster) = Cluster::start(&[]) else {
            return;
        };
        join(cluster.r(1), "alice", "room").await;
        join(cluster.r(2), "carol", "room").await;
        let carol = subscribe(cluster.r(3), "carol", 0).await;
        let resume_at = carol.ready.cursor;
        drop(carol);
        let mut sent = Vec::new();
        for i in 0..3 {
            sent.push(
                send_channel(cluster.r(1 + i % 3), "alice", "room", &format!("c{i}"), "")
                    .await
                    .expect("sends")
                    .message_id,
            );
        }
        let back = subscribe(cluster.r(2), "carol", resume_at).await;
        let ids: Vec<String> = back.replay.iter().map(peer_id).collect();
        assert_eq!(ids, sent);
        let got = cursors(&back.replay);
        assert!(resume_at < got[0] && increasing(&got));
        assert!(!back.ready.events_lost);
        assert_eq!(back.ready.cursor, got[2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_send_gets_the_first_answer_through_any_replica() {
        let Some(cluster) = Cluster::start(&[]) else {
            return;
        };
        let mut bob = subscribe(cluster.r(3), "bob", 0).await;
        let first = send(cluster.r(1), "alice", "bob", "once", false, "retry-1")
            .await
            .expect("sends");
        assert_eq!(first.state(), pb::PeerMessageState::Delivered);
        let again = send(cluster.r(2), "alice", "bob", "once", false, "retry-1")
            .await
            .expect("a retry succeeds");
        assert_eq!(again, first, "same message_id, state and server_time");
        assert_eq!(peer_id(&bob.next().await), first.message_id);
        next_is_marker(cluster.r(1), &mut bob, "bob").await;
        let other = send(cluster.r(2), "carol", "bob", "once", false, "retry-1")
            .await
            .expect("sends");
        assert_ne!(other.message_id, first.message_id);
        assert_eq!(peer_id(&bob.next().await), other.message_id);
        let reused = send(
            cluster.r(3),
            "alice",
            "bob",
            "something else",
            false,
            "retry-1",
        )
        .await
        .expect_err("refused");
        assert_eq!(reused.code(), Code::InvalidArgument);
        assert!(reused.message().contains("client_message_id"));
        next_is_marker(cluster.r(2), &mut bob, "bob").await;

        // Cached once.
        let cached = send(cluster.r(1), "alice", "dave", "c", true, "cache-1")
            .await
            .expect("sends");
        assert_eq!(cached.state(), pb::PeerMessageState::Cached);
        let retried = send(cluster.r(2), "alice", "dave", "c", true, "cache-1")
            .await
            .expect("sends");
        assert_eq!(retried, cached);
        let dave = subscribe(cluster.r(3), "dave", 0).await;
        assert_eq!(dave.replay.len(), 1);
        assert_eq!(dave.ready.offline_message_count, 1);

        // A channel message once.
        join(cluster.r(1), "alice", "room").await;
        join(cluster.r(2), "bob", "room").await;
        let first = send_channel(cluster.r(1), "alice", "room", "hi", "ch-1")
            .await
            .expect("sends");
        let again = send_channel(cluster.r(3), "alice", "room", "hi", "ch-1")
            .await
            .expect("sends");
        assert_eq!(again, first);
        assert_eq!(peer_id(&bob.next().await), first.message_id);
        next_is_marker(cluster.r(1), &mut bob, "bob").await;
    }

    /// A channel message is one entry of the log, with its `Nats-Msg-Id`: a send with a
    /// client message ID reaches every member at one position, and its retry through
    /// another replica gets the first answer and stores nothing again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_channel_send_with_an_id_is_stored_once_for_every_member() {
        let Some(cluster) = Cluster::start(&[]) else {
            return;
        };
        let members = ["bob", "carol", "dave"];
        join(cluster.r(1), "alice", "room").await;
        for member in members {
            join(cluster.r(2), member, "room").await;
        }
        let mut subs = Vec::new();
        for (i, member) in members.iter().enumerate() {
            subs.push(subscribe(cluster.r(1 + i % 3), member, 0).await);
        }
        let first = send_channel(cluster.r(1), "alice", "room", "hi", "ch-1")
            .await
            .expect("sends");
        let again = send_channel(cluster.r(3), "alice", "room", "hi", "ch-1")
            .await
            .expect("a retry succeeds");
        assert_eq!(again, first);
        let mut cursors = Vec::new();
        for sub in &mut subs {
            let got = sub.next().await;
            assert_eq!(peer_id(&got), first.message_id);
            cursors.push(got.cursor);
        }
        assert!(
            cursors.windows(2).all(|w| w[1] == w[0]),
            "stored once, at one position: {cursors:?}"
        );
        for (i, sub) in subs.iter_mut().enumerate() {
            next_is_marker(cluster.r(1 + i % 3), sub, members[i]).await;
        }
        let reused = send_channel(cluster.r(2), "alice", "room", "other", "ch-1")
            .await
            .expect_err("refused");
        assert_eq!(reused.code(), Code::InvalidArgument);
    }

    /// Many channel sends at once through every replica: every send succeeds and every
    /// member gets every message once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_channel_sends_are_all_logged_once() {
        const SENDS: usize = 1500;
        const CONNECTIONS: usize = 30;
        let Some(cluster) = Cluster::start(&["--rate-limit", "100000"]) else {
            return;
        };
        let members: Vec<String> = (0..60).map(|i| format!("member{i}")).collect();
        join(cluster.r(1), "alice", "room").await;
        for member in &members {
            join(cluster.r(2), member, "room").await;
        }
        let mut subs = Vec::new();
        for (i, member) in members.iter().enumerate().take(3) {
            subs.push(subscribe(cluster.r(1 + i % 3), member, 0).await);
        }
        let mut clients = Vec::new();
        for n in 0..CONNECTIONS {
            clients.push(messaging(cluster.r(1 + n % 3)).await);
        }
        let sends = (0..SENDS).map(|i| {
            let mut client = clients[i % CONNECTIONS].clone();
            async move {
                let request = pb::SendChannelMessageRequest {
                    channel_id: "room".into(),
                    message: Some(text(&format!("m{i}"))),
                    client_message_id: format!("many-{i}"),
                };
                client
                    .send_channel_message(authed(&token("alice"), request))
                    .await
                    .map(|r| r.into_inner().message_id)
            }
        });
        let mut sent: Vec<String> = futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|r| r.expect("every send is logged"))
            .collect();
        sent.sort();
        for sub in &mut subs {
            let mut got = Vec::new();
            for _ in 0..SENDS {
                got.push(peer_id(&sub.next().await));
            }
            got.sort();
            assert_eq!(got, sent, "every message once");
        }
    }

    /// The replica holding a stream loses NATS for a while: what is logged for the
    /// user meanwhile (channel messages, logged for every member whether online or
    /// not) is not republished to it, so once it is back it reads the gap from the
    /// log: the stream, still open, gets each message once, in cursor order, without
    /// waiting for a later one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_lost_nats_fills_the_gap_from_the_log() {
        let Some(toxiproxy) = common::Toxiproxy::from_env() else {
            return;
        };
        let Some(nats) = Nats::start() else {
            return;
        };
        let media = tempfile::tempdir().expect("a shared media folder");
        let backend = Backend::shared(media.path());
        let url = nats.url();
        let proxy = toxiproxy.proxy("cursors-nats", &format!("127.0.0.1:{}", nats.port));
        let cut_url = format!("nats://{}", proxy.listen);
        let steady = Server::start(&backend, &["--bus", url.as_str()]);
        let cut = Server::start(&backend, &["--bus", cut_url.as_str()]);
        join(&steady, "alice", "room").await;
        join(&steady, "carol", "room").await;
        let mut carol = subscribe(&cut, "carol", 0).await;
        let first = send_channel(&steady, "alice", "room", "before", "")
            .await
            .expect("sends");
        assert_eq!(peer_id(&carol.next().await), first.message_id);
        let before = carol.last_seen;

        proxy.set_enabled(false);
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(
                send_channel(&steady, "alice", "room", &format!("during {i}"), "")
                    .await
                    .expect("the steady replica still sends")
                    .message_id,
            );
        }
        proxy.set_enabled(true);

        // Nothing else is sent: the five come from the log once the replica is back.
        let mut got = Vec::new();
        let mut cursors = vec![before];
        for _ in 0..5 {
            let event = tokio::time::timeout(Duration::from_secs(20), carol.stream.message())
                .await
                .expect("the missed messages within 20 s of the reconnection")
                .expect("the stream stays healthy")
                .expect("open");
            cursors.push(event.cursor);
            got.push(peer_id(&event));
        }
        assert_eq!(got, sent, "each missed message once, in order");
        assert!(increasing(&cursors), "{cursors:?}");
        carol.last_seen = *cursors.last().expect("cursors");

        // And live again, with nothing repeated in between.
        let after = send_channel(&steady, "alice", "room", "after", "")
            .await
            .expect("sends");
        let event = carol.next().await;
        assert_eq!(peer_id(&event), after.message_id, "nothing repeated");
        assert!(event.cursor > cursors[5]);
    }
}
