//! The engine over one server's store, in process: the layout migration, the cache's
//! byte bound, and group commit (many sends, one transaction; a stream registered in
//! the middle of a group misses nothing).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use prost::Message as _;
use redb::Database;

use super::{
    RedbStore,
    tables::{LogLimits, OLD_MESSAGES, now_ms},
};
use crate::{
    error::{Error, Reason},
    messaging::{
        engine::{Engine, HubLimits, Router},
        event::Sent,
        feed::Feed,
    },
    pb::{self, subscribe_response::Event as Kind},
};

fn limits() -> LogLimits {
    LogLimits {
        max_per_user: 200,
        max_per_sender: 1000,
        max_bytes: 1 << 30,
        ttl: Duration::from_secs(60),
        log_size: 1000,
        log_ttl: Duration::from_secs(60),
        channel_size: 1000,
        channel_ttl: Duration::from_secs(60),
    }
}

fn engine(path: &std::path::Path, limits: LogLimits) -> Engine<RedbStore> {
    // Room for every event of these tests: none reads its stream while sending.
    let feed = Feed::new(4096);
    let Ok(store) = RedbStore::open(Some(path), limits, feed.clone()) else {
        panic!("opens")
    };
    let hub = HubLimits {
        max_channels_per_user: 20,
        max_streams_per_user: 8,
        subscriber_buffer: 4096,
    };
    Engine::new(Arc::new(store), feed, hub)
}

fn from(sender: &str, id: &str) -> pb::PeerMessageReceived {
    pb::PeerMessageReceived {
        sender_id: sender.into(),
        message_id: id.into(),
        ..Default::default()
    }
}

async fn cache(
    engine: &Engine<RedbStore>,
    to: &str,
    message: pb::PeerMessageReceived,
) -> Result<Sent, Error> {
    engine.send_peer(to, message, true, None).await
}

#[tokio::test]
async fn an_older_offline_cache_moves_into_the_log_with_its_counts() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("a temp dir")
    };
    let path = dir.path().join("c.redb");
    // What layouts 1 and 2 wrote: messages keyed (receiver, seq), expiry first.
    {
        let Ok(db) = Database::create(&path) else {
            panic!("creates")
        };
        let Ok(txn) = db.begin_write() else {
            panic!("txn")
        };
        {
            let Ok(mut table) = txn.open_table(OLD_MESSAGES) else {
                panic!("table")
            };
            let expires = now_ms() + 60_000;
            for (seq, (user, sender)) in
                [("bob", "spammer"), ("carol", "spammer"), ("bob", "alice")]
                    .into_iter()
                    .enumerate()
            {
                let mut value = expires.to_be_bytes().to_vec();
                let _ = from(sender, &seq.to_string()).encode(&mut value);
                assert!(table.insert((user, seq as u64), value.as_slice()).is_ok());
            }
        }
        assert!(txn.commit().is_ok());
    }
    let quota = LogLimits {
        max_per_sender: 2,
        ..limits()
    };
    let engine = engine(&path, quota);
    // The spammer's two old messages count against the quota of two.
    assert!(matches!(
        cache(&engine, "dave", from("spammer", "new")).await,
        Err(Error::Refused(Reason::OfflineCacheFull, _))
    ));
    assert!(cache(&engine, "dave", from("alice", "new")).await.is_ok());
    let Ok(bob) = engine.subscribe("bob", 0).await else {
        panic!("replays")
    };
    let ids: Vec<(u64, String)> = bob
        .replay
        .events
        .iter()
        .map(|(cursor, e)| match &e.event {
            Some(Kind::PeerMessage(m)) => (*cursor, m.message_id.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    // Bob's two, in their order, at positions of the one sequence.
    assert_eq!(ids, [(2, "0".to_owned()), (3, "2".to_owned())]);
    assert_eq!(bob.replay.offline, 2);
    // Handed over: the spammer may cache again.
    assert!(
        cache(&engine, "erin", from("spammer", "again"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_cache_is_bounded_in_bytes_but_the_log_is_not() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("a temp dir")
    };
    let small = LogLimits {
        max_bytes: 3 * 200,
        ..limits()
    };
    let engine = engine(&dir.path().join("c.redb"), small);
    let big = |sender: &str| pb::PeerMessageReceived {
        sender_id: sender.into(),
        message_id: "x".repeat(150),
        ..Default::default()
    };
    let mut kept = 0;
    for (i, sender) in ["a", "b", "c", "d"].iter().enumerate() {
        if cache(&engine, &format!("user{i}"), big(sender))
            .await
            .is_ok()
        {
            kept += 1;
        }
    }
    assert_eq!(kept, 3, "three ~170-byte messages fit in 600 bytes");
    // Delivered messages are logged whatever the cache holds.
    let Ok(_online) = engine.subscribe("user9", 0).await else {
        panic!("subscribes")
    };
    let delivered = engine.send_peer("user9", big("e"), false, None).await;
    assert!(matches!(
        delivered.map(|s| s.state),
        Ok(pb::PeerMessageState::Delivered)
    ));
    // Handing one over makes room.
    assert!(engine.subscribe("user0", 0).await.is_ok());
    assert!(cache(&engine, "user8", big("f")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_commit_in_groups_and_a_stream_registered_among_them_misses_nothing() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("a temp dir")
    };
    let roomy = LogLimits {
        max_per_user: 10_000,
        log_size: 10_000,
        ..limits()
    };
    let engine = engine(&dir.path().join("c.redb"), roomy);
    let senders = 64;
    let each = 20;
    let mut sends = Vec::new();
    for s in 0..senders {
        let engine = engine.clone();
        sends.push(tokio::spawn(async move {
            let mut states = Vec::new();
            for i in 0..each {
                let sent = engine
                    .send_peer(
                        "bob",
                        from(&format!("s{s}"), &format!("{s}-{i}")),
                        true,
                        None,
                    )
                    .await;
                states.push(sent.map(|s| s.state));
            }
            states
        }));
    }
    // bob comes online while the sends are in flight: every message is either in his
    // replay (cached, before his start) or live (after it), once.
    tokio::task::yield_now().await;
    let Ok(mut bob) = engine.subscribe("bob", 0).await else {
        panic!("subscribes")
    };
    let mut states = Vec::new();
    for send in sends {
        let Ok(each) = send.await else {
            panic!("a sender panicked")
        };
        states.extend(each);
    }
    let total = senders * each;
    assert!(states.iter().all(|s| matches!(
        s,
        Ok(pb::PeerMessageState::Cached | pb::PeerMessageState::Delivered)
    )));
    let mut cursors: Vec<u64> = bob.replay.events.iter().map(|(c, _)| *c).collect();
    while cursors.len() < total {
        match tokio::time::timeout(Duration::from_secs(10), bob.events.recv()).await {
            Ok(Some((_, cursor))) => cursors.push(cursor),
            _ => break,
        }
    }
    let first = cursors.first().copied().unwrap_or_default();
    let expected: Vec<u64> = (first..first + total as u64).collect();
    assert_eq!(cursors, expected, "every message once, in cursor order");
}

fn channel_message(sender: &str, channel: &str, id: &str) -> pb::ChannelMessageReceived {
    pb::ChannelMessageReceived {
        sender_id: sender.into(),
        channel_id: channel.into(),
        message_id: id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_ten_thousand_members_is_one_store_write() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("a temp dir")
    };
    let feed = Feed::new(16);
    let Ok(store) = RedbStore::open(Some(&dir.path().join("c.redb")), limits(), feed.clone())
    else {
        panic!("opens")
    };
    let store = Arc::new(store);
    let hub = HubLimits {
        max_channels_per_user: 20,
        max_streams_per_user: 8,
        subscriber_buffer: 16,
    };
    let engine = Engine::new(store.clone(), feed, hub);
    let joins = (0..10_000).map(|i| {
        let engine = engine.clone();
        async move { engine.join(&format!("user{i}"), "big").await }
    });
    let joined = futures::stream::iter(joins)
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
    assert!(joined.iter().all(Result::is_ok));
    assert_eq!(
        engine.members("big").await.map(|m| m.len()).ok(),
        Some(10_000)
    );
    // A few members are online, the rest will replay it.
    let Ok(mut online) = engine.subscribe("user7", 0).await else {
        panic!("subscribes")
    };
    let before = store.entries_written();
    let sent = engine
        .send_channel(channel_message("user0", "big", "m"), None)
        .await;
    assert!(sent.is_ok());
    assert_eq!(
        store.entries_written() - before,
        1,
        "one entry, not one per member"
    );
    let Ok(Some((event, cursor))) =
        tokio::time::timeout(Duration::from_secs(5), online.events.recv()).await
    else {
        panic!("delivered live")
    };
    assert!(matches!(&event.event, Some(Kind::ChannelMessage(m)) if m.message_id == "m"));
    // An offline member resuming from before gets it from the one entry.
    let Ok(back) = engine.subscribe("user9999", online.replay.latest).await else {
        panic!("subscribes")
    };
    assert_eq!(
        back.replay
            .events
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>(),
        [cursor]
    );
}

#[tokio::test]
async fn a_layout_3_log_continues_above_every_cursor_with_its_entries_and_spans() {
    use super::tables::{CACHED, COUNTERS, ENTRIES, LOGGED, MEMBERS, SENDERS, USERS, entry};
    use crate::messaging::event::{channel_event, peer_event};
    let Ok(dir) = tempfile::tempdir() else {
        panic!("a temp dir")
    };
    let path = dir.path().join("c.redb");
    // What layout 3 wrote: each member's copy of a channel message at per-user cursors,
    // a cached message, rows, counters and memberships.
    let expires = now_ms() + 60_000;
    {
        let Ok(db) = Database::create(&path) else {
            panic!("creates")
        };
        let Ok(txn) = db.begin_write() else {
            panic!("txn")
        };
        {
            let (
                Ok(mut entries),
                Ok(mut users),
                Ok(mut counters),
                Ok(mut members),
                Ok(mut senders),
            ) = (
                txn.open_table(ENTRIES),
                txn.open_table(USERS),
                txn.open_table(COUNTERS),
                txn.open_table(MEMBERS),
                txn.open_table(SENDERS),
            )
            else {
                panic!("tables")
            };
            for cursor in 1..=3u64 {
                let old = channel_event(channel_message("alice", "room", &format!("old{cursor}")));
                let value = entry(LOGGED, expires, &old);
                assert!(entries.insert(("bob", cursor), value.as_slice()).is_ok());
            }
            let mut cached = from("carol", "cached");
            cached.offline = true;
            let value = entry(CACHED, expires, &peer_event(cached));
            assert!(entries.insert(("bob", 4), value.as_slice()).is_ok());
            assert!(users.insert("bob", (4, 0, 3, 1)).is_ok());
            assert!(users.insert("alice", (7, 7, 0, 0)).is_ok());
            assert!(counters.insert("layout", 3).is_ok());
            assert!(counters.insert("bytes", value.len() as u64).is_ok());
            assert!(senders.insert("carol", 1).is_ok());
            assert!(members.insert(("room", "alice"), ()).is_ok());
            assert!(members.insert(("room", "bob"), ()).is_ok());
        }
        assert!(txn.commit().is_ok());
    }
    let engine = engine(&path, limits());
    // A pre-upgrade cursor replays what the old log holds after it, and the cache.
    let Ok(bob) = engine.subscribe("bob", 1).await else {
        panic!("replays")
    };
    let got: Vec<(u64, String)> = bob
        .replay
        .events
        .iter()
        .map(|(c, e)| match &e.event {
            Some(Kind::ChannelMessage(m)) => (*c, m.message_id.clone()),
            Some(Kind::PeerMessage(m)) => (*c, m.message_id.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [(2, "old2".into()), (3, "old3".into()), (4, "cached".into())]
    );
    assert_eq!(bob.replay.offline, 1);
    assert!(!bob.replay.events_lost);
    let latest = bob.replay.latest;
    assert!(
        latest > 7,
        "the sequence starts above every cursor handed out"
    );
    drop(bob);
    // A new channel message reaches the members of before the upgrade, once stored.
    let sent = engine
        .send_channel(channel_message("alice", "room", "new"), None)
        .await;
    assert!(sent.is_ok());
    let Ok(again) = engine.subscribe("bob", 4).await else {
        panic!("replays")
    };
    let new: Vec<u64> = again.replay.events.iter().map(|(c, _)| *c).collect();
    assert_eq!(new.len(), 1);
    assert!(new[0] > latest);
    assert!(!again.replay.events_lost);
}
