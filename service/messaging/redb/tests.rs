//! The engine over one server's store, in process: the layout migration, the cache's
//! byte bound, and group commit (many sends, one transaction; a stream registered in
//! the middle of a group misses nothing).

use std::{sync::Arc, time::Duration};

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
    }
}

fn engine(path: &std::path::Path, limits: LogLimits) -> Engine<RedbStore> {
    // Room for every event of these tests: none reads its stream while sending.
    let feed = Feed::new(4096);
    let Ok(store) = RedbStore::open(path, limits, feed.clone()) else {
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
    assert_eq!(ids, [(1, "0".to_owned()), (2, "2".to_owned())]);
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
