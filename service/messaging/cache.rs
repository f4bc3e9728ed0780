//! The offline cache of the in-process router: peer messages kept for users who were
//! offline, in an embedded redb database under the data folder, so that they survive
//! a restart. At most N per receiver (oldest dropped first) for a limited time, at
//! most M waiting from any one sender, and at most B bytes in all: a sender at the
//! rate limit cannot fill the disk by writing to made-up users.
//!
//! Layout 2 (this one) adds, beside layout 1's messages and sequence counter, a count
//! of waiting messages per sender and the total bytes; opening a layout-1 file
//! computes them from the messages once.

use std::{path::Path, sync::Arc, time::Duration};

use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{
    error::{Error, Reason},
    pb,
    periodic::spawn_periodic,
};

/// Cached messages: (receiver, sequence number) → expiry (8 bytes, big-endian
/// milliseconds since the epoch) followed by the encoded `PeerMessageReceived`.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline_messages");

/// Counters: "next_seq" is the next sequence number to hand out; "bytes" the total
/// size of the cached values; "layout" the layout version (absent: 1).
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// How many messages each sender has waiting in the cache (layout 2).
const SENDERS: TableDefinition<&str, u64> = TableDefinition::new("offline_senders");

/// The layout this code writes.
const LAYOUT: u64 = 2;

/// The limits of the offline cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// The most messages kept per receiver (the oldest are dropped).
    pub max_per_user: usize,
    /// The most messages one sender may have waiting, for all receivers together.
    pub max_per_sender: u64,
    /// The most bytes the cache holds in all.
    pub max_bytes: u64,
    /// How long a cached message is kept.
    pub ttl: Duration,
}

/// The offline cache. Cheap to clone.
#[derive(Clone)]
pub struct OfflineCache {
    /// The database file; redb serialises write transactions itself.
    db: Arc<Database>,
    /// The limits.
    limits: CacheLimits,
}

impl std::fmt::Debug for OfflineCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineCache")
            .field("limits", &self.limits)
            .finish()
    }
}

fn internal(e: impl Into<redb::Error>) -> Error {
    Error::Internal(format!("offline cache: {}", e.into()))
}

fn now_ms() -> u64 {
    crate::media::now_millis()
}

impl OfflineCache {
    /// Opens (or creates) the cache at `path`, migrating a layout-1 file.
    pub fn open(path: &Path, limits: CacheLimits) -> Result<Self, Error> {
        let db = Database::create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        {
            let messages = txn.open_table(MESSAGES).map_err(internal)?;
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let mut senders = txn.open_table(SENDERS).map_err(internal)?;
            let layout = counters
                .get("layout")
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(1);
            if layout < LAYOUT {
                // Layout 1 had no per-sender counts or byte total: compute them.
                let mut bytes = 0u64;
                let mut per_sender = std::collections::HashMap::<String, u64>::new();
                for entry in messages.iter().map_err(internal)? {
                    let (_, value) = entry.map_err(internal)?;
                    let value = value.value();
                    bytes += value.len() as u64;
                    *per_sender.entry(sender_of(value)).or_default() += 1;
                }
                for (sender, count) in per_sender {
                    senders.insert(sender.as_str(), count).map_err(internal)?;
                }
                counters.insert("bytes", bytes).map_err(internal)?;
                counters.insert("layout", LAYOUT).map_err(internal)?;
                tracing::info!(from = layout, to = LAYOUT, "offline cache layout migrated");
            }
        }
        txn.commit().map_err(internal)?;
        Ok(Self {
            db: Arc::new(db),
            limits,
        })
    }

    /// Keeps `message` for `user`, dropping that user's expired and oldest messages
    /// beyond the limit. Durable when it returns. Refused with OFFLINE_CACHE_FULL,
    /// keeping nothing, when the sender has the most messages waiting or the cache is
    /// full.
    pub async fn push(&self, user: &str, message: &pb::PeerMessageReceived) -> Result<(), Error> {
        let this = self.clone();
        let user = user.to_owned();
        let sender = message.sender_id.clone();
        let expires = now_ms().saturating_add(self.limits.ttl.as_millis() as u64);
        let mut value = expires.to_be_bytes().to_vec();
        message
            .encode(&mut value)
            .map_err(|e| Error::Internal(format!("encoding: {e}")))?;
        tokio::task::spawn_blocking(move || this.push_blocking(&user, &sender, &value))
            .await
            .map_err(|e| Error::Internal(format!("offline cache task: {e}")))?
    }

    fn push_blocking(&self, user: &str, sender: &str, value: &[u8]) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(internal)?;
        {
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let mut senders = txn.open_table(SENDERS).map_err(internal)?;
            let mut table = txn.open_table(MESSAGES).map_err(internal)?;
            // Make room first: this receiver's expired messages go.
            let now = now_ms();
            let mut live: Vec<u64> = Vec::new();
            let mut dead: Vec<u64> = Vec::new();
            for entry in table
                .range((user, 0)..=(user, u64::MAX))
                .map_err(internal)?
            {
                let (key, value) = entry.map_err(internal)?;
                let (_, seq) = key.value();
                if expiry(value.value()) <= now {
                    dead.push(seq);
                } else {
                    live.push(seq);
                }
            }
            let mut ledger = Ledger::open(&mut counters, &mut senders)?;
            for seq in dead {
                ledger.remove(&mut table, user, seq)?;
            }
            let waiting = ledger.waiting(sender)?;
            if waiting >= self.limits.max_per_sender {
                return Err(Error::Refused(
                    Reason::OfflineCacheFull,
                    format!(
                        "{sender} already has {waiting} messages waiting for offline receivers, the most allowed; nothing was kept"
                    ),
                ));
            }
            if ledger.bytes + value.len() as u64 > self.limits.max_bytes {
                return Err(Error::Refused(
                    Reason::OfflineCacheFull,
                    "the server's offline cache is full; nothing was kept".into(),
                ));
            }
            let seq = ledger.next_seq()?;
            table.insert((user, seq), value).map_err(internal)?;
            ledger.added(sender, value.len())?;
            live.push(seq);
            // Then the oldest beyond the per-receiver limit.
            let excess = live.len().saturating_sub(self.limits.max_per_user);
            for &seq in &live[..excess] {
                ledger.remove(&mut table, user, seq)?;
            }
            ledger.save()?;
        }
        txn.commit().map_err(internal)
    }

    /// Removes and returns every live message cached for `user`, oldest first.
    pub async fn take(&self, user: &str) -> Result<Vec<pb::PeerMessageReceived>, Error> {
        let this = self.clone();
        let user = user.to_owned();
        tokio::task::spawn_blocking(move || this.take_blocking(&user))
            .await
            .map_err(|e| Error::Internal(format!("offline cache task: {e}")))?
    }

    fn take_blocking(&self, user: &str) -> Result<Vec<pb::PeerMessageReceived>, Error> {
        // Most users have nothing cached: look first without a write transaction.
        {
            let read = self.db.begin_read().map_err(internal)?;
            let table = read.open_table(MESSAGES).map_err(internal)?;
            if table
                .range((user, 0)..=(user, u64::MAX))
                .map_err(internal)?
                .next()
                .is_none()
            {
                return Ok(Vec::new());
            }
        }
        let txn = self.db.begin_write().map_err(internal)?;
        let mut messages = Vec::new();
        {
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let mut senders = txn.open_table(SENDERS).map_err(internal)?;
            let mut ledger = Ledger::open(&mut counters, &mut senders)?;
            let mut table = txn.open_table(MESSAGES).map_err(internal)?;
            let now = now_ms();
            let mut seqs = Vec::new();
            for entry in table
                .range((user, 0)..=(user, u64::MAX))
                .map_err(internal)?
            {
                let (key, value) = entry.map_err(internal)?;
                seqs.push(key.value().1);
                let bytes = value.value();
                if expiry(bytes) > now {
                    match pb::PeerMessageReceived::decode(&bytes[8..]) {
                        Ok(message) => messages.push(message),
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping an unreadable cached message")
                        }
                    }
                }
            }
            for seq in seqs {
                ledger.remove(&mut table, user, seq)?;
            }
            ledger.save()?;
        }
        txn.commit().map_err(internal)?;
        Ok(messages)
    }
}

impl OfflineCache {
    /// How many messages are cached (expired ones not yet purged included) and how
    /// many bytes they hold: two reads of one read transaction, for the metrics.
    /// Blocking (a short redb read).
    pub fn size(&self) -> Result<(u64, u64), Error> {
        let txn = self.db.begin_read().map_err(internal)?;
        let messages = txn
            .open_table(MESSAGES)
            .map_err(internal)?
            .len()
            .map_err(internal)?;
        let bytes = txn
            .open_table(COUNTERS)
            .map_err(internal)?
            .get("bytes")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok((messages, bytes))
    }

    /// Deletes every expired message, of every user; returns how many. Messages are
    /// kept for the configured time and no longer, even for users who never return.
    pub async fn purge_expired(&self) -> Result<usize, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.purge_blocking())
            .await
            .map_err(|e| Error::Internal(format!("offline cache task: {e}")))?
    }

    fn purge_blocking(&self) -> Result<usize, Error> {
        let now = now_ms();
        let txn = self.db.begin_write().map_err(internal)?;
        let purged = {
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let mut senders = txn.open_table(SENDERS).map_err(internal)?;
            let mut ledger = Ledger::open(&mut counters, &mut senders)?;
            let mut table = txn.open_table(MESSAGES).map_err(internal)?;
            let mut expired = Vec::new();
            for entry in table.iter().map_err(internal)? {
                let (key, value) = entry.map_err(internal)?;
                if expiry(value.value()) <= now {
                    let (user, seq) = key.value();
                    expired.push((user.to_owned(), seq));
                }
            }
            for (user, seq) in &expired {
                ledger.remove(&mut table, user, *seq)?;
            }
            ledger.save()?;
            expired.len()
        };
        txn.commit().map_err(internal)?;
        Ok(purged)
    }
}

/// Runs [`OfflineCache::purge_expired`] every `interval` until `shutdown` turns true.
pub fn spawn_purger(
    cache: OfflineCache,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_periodic("expired offline messages", interval, shutdown, move || {
        let cache = cache.clone();
        async move { cache.purge_expired().await }
    })
}

/// The bookkeeping of one write transaction: the byte total and per-sender counts,
/// kept in step with every message added or removed.
struct Ledger<'a, 't> {
    counters: &'a mut redb::Table<'t, &'static str, u64>,
    senders: &'a mut redb::Table<'t, &'static str, u64>,
    /// The total size of the cached values.
    bytes: u64,
}

impl<'a, 't> Ledger<'a, 't> {
    fn open(
        counters: &'a mut redb::Table<'t, &'static str, u64>,
        senders: &'a mut redb::Table<'t, &'static str, u64>,
    ) -> Result<Self, Error> {
        let bytes = counters
            .get("bytes")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok(Self {
            counters,
            senders,
            bytes,
        })
    }

    fn next_seq(&mut self) -> Result<u64, Error> {
        let seq = self
            .counters
            .get("next_seq")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        self.counters
            .insert("next_seq", seq + 1)
            .map_err(internal)?;
        Ok(seq)
    }

    fn waiting(&self, sender: &str) -> Result<u64, Error> {
        Ok(self
            .senders
            .get(sender)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn added(&mut self, sender: &str, len: usize) -> Result<(), Error> {
        let waiting = self.waiting(sender)?;
        self.senders.insert(sender, waiting + 1).map_err(internal)?;
        self.bytes += len as u64;
        Ok(())
    }

    /// Removes one message and takes it off the books.
    fn remove(
        &mut self,
        table: &mut redb::Table<'_, (&'static str, u64), &'static [u8]>,
        user: &str,
        seq: u64,
    ) -> Result<(), Error> {
        let Some(value) = table.remove((user, seq)).map_err(internal)? else {
            return Ok(());
        };
        let value = value.value();
        self.bytes = self.bytes.saturating_sub(value.len() as u64);
        let sender = sender_of(value);
        match self.waiting(&sender)? {
            0 | 1 => {
                self.senders.remove(sender.as_str()).map_err(internal)?;
            }
            n => {
                self.senders
                    .insert(sender.as_str(), n - 1)
                    .map_err(internal)?;
            }
        }
        Ok(())
    }

    fn save(self) -> Result<(), Error> {
        self.counters
            .insert("bytes", self.bytes)
            .map_err(internal)?;
        Ok(())
    }
}

/// The sender of a cached value ("" when it does not decode).
fn sender_of(value: &[u8]) -> String {
    value
        .get(8..)
        .and_then(|bytes| pb::PeerMessageReceived::decode(bytes).ok())
        .map(|message| message.sender_id)
        .unwrap_or_default()
}

/// The expiry stored in front of a cached value.
fn expiry(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: &str) -> pb::PeerMessageReceived {
        from("alice", id)
    }

    fn from(sender: &str, id: &str) -> pb::PeerMessageReceived {
        pb::PeerMessageReceived {
            sender_id: sender.into(),
            message_id: id.into(),
            ..Default::default()
        }
    }

    fn limits(max_per_user: usize, ttl: Duration) -> CacheLimits {
        CacheLimits {
            max_per_user,
            max_per_sender: 1000,
            max_bytes: 1 << 30,
            ttl,
        }
    }

    fn temp_path(dir: &Option<tempfile::TempDir>) -> std::path::PathBuf {
        dir.as_ref()
            .map(|d| d.path().join("c.redb"))
            .unwrap_or_default()
    }

    fn refused(result: Result<(), Error>) -> bool {
        matches!(result, Err(Error::Refused(Reason::OfflineCacheFull, _)))
    }

    #[tokio::test]
    async fn one_sender_may_have_only_so_many_messages_waiting() {
        let dir = tempfile::tempdir().ok();
        let quota = CacheLimits {
            max_per_sender: 3,
            ..limits(200, Duration::from_secs(60))
        };
        let Ok(cache) = OfflineCache::open(&temp_path(&dir), quota) else {
            panic!("opens")
        };
        for user in ["u1", "u2", "u3"] {
            assert!(cache.push(user, &from("spammer", user)).await.is_ok());
        }
        assert!(refused(cache.push("u4", &from("spammer", "4")).await));
        // Others are not held to the spammer's count.
        assert!(cache.push("u4", &from("alice", "a")).await.is_ok());
        // Once a receiver takes its messages, the sender may send again.
        assert_eq!(cache.take("u1").await.unwrap_or_default().len(), 1);
        assert!(cache.push("u5", &from("spammer", "5")).await.is_ok());
        assert!(refused(cache.push("u6", &from("spammer", "6")).await));
        assert!(
            cache.take("u6").await.unwrap_or_default().is_empty(),
            "nothing kept"
        );
    }

    #[tokio::test]
    async fn the_whole_cache_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().ok();
        let small = CacheLimits {
            max_bytes: 3 * 200,
            ..limits(200, Duration::from_secs(60))
        };
        let Ok(cache) = OfflineCache::open(&temp_path(&dir), small) else {
            panic!("opens")
        };
        let big = |sender: &str| pb::PeerMessageReceived {
            sender_id: sender.into(),
            message_id: "x".repeat(150),
            ..Default::default()
        };
        let mut kept = 0;
        for (i, sender) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            match cache.push(&format!("user{i}"), &big(sender)).await {
                Ok(()) => kept += 1,
                Err(e) => assert!(refused(Err(e))),
            }
        }
        assert_eq!(kept, 3, "three ~160-byte messages fit in 600 bytes");
        assert_eq!(cache.take("user0").await.unwrap_or_default().len(), 1);
        assert!(cache.push("user9", &big("f")).await.is_ok(), "room again");
    }

    #[tokio::test]
    async fn a_layout_1_file_is_migrated_with_its_counts() {
        let dir = tempfile::tempdir().ok();
        let path = temp_path(&dir);
        // What layout 1 wrote: messages and next_seq, no sender counts, no byte total.
        {
            let Ok(db) = Database::create(&path) else {
                panic!("creates")
            };
            let Ok(txn) = db.begin_write() else {
                panic!("txn")
            };
            {
                let Ok(mut table) = txn.open_table(MESSAGES) else {
                    panic!("table")
                };
                let Ok(mut counters) = txn.open_table(COUNTERS) else {
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
                assert!(counters.insert("next_seq", 3).is_ok());
            }
            assert!(txn.commit().is_ok());
        }
        let quota = CacheLimits {
            max_per_sender: 2,
            ..limits(200, Duration::from_secs(60))
        };
        let Ok(cache) = OfflineCache::open(&path, quota) else {
            panic!("opens the old layout")
        };
        // The spammer's two old messages count against the quota of two.
        assert!(refused(cache.push("dave", &from("spammer", "new")).await));
        assert!(cache.push("dave", &from("alice", "new")).await.is_ok());
        let bob: Vec<String> = cache
            .take("bob")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(
            bob,
            ["0", "2"],
            "old messages are still delivered, in order"
        );
        assert!(cache.push("erin", &from("spammer", "again")).await.is_ok());
    }

    #[tokio::test]
    async fn keeps_the_newest_per_user_across_reopening() {
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().join("c.redb"))
            .unwrap_or_default();
        let cache = OfflineCache::open(&path, limits(3, Duration::from_secs(60)));
        let Ok(cache) = cache else { panic!("opens") };
        for i in 0..5 {
            assert!(cache.push("bob", &text(&i.to_string())).await.is_ok());
        }
        assert!(cache.push("carol", &text("c")).await.is_ok());
        drop(cache);
        let Ok(cache) = OfflineCache::open(&path, limits(3, Duration::from_secs(60))) else {
            panic!("reopens")
        };
        let ids: Vec<String> = cache
            .take("bob")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(ids, ["2", "3", "4"]);
        assert!(cache.take("bob").await.unwrap_or_default().is_empty());
        assert_eq!(cache.take("carol").await.unwrap_or_default().len(), 1);
    }

    #[tokio::test]
    async fn purging_removes_only_expired_messages() {
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().join("c.redb"))
            .unwrap_or_default();
        let Ok(short) = OfflineCache::open(&path, limits(3, Duration::from_millis(200))) else {
            panic!("opens")
        };
        assert!(short.push("bob", &text("old")).await.is_ok());
        assert!(short.push("carol", &text("old")).await.is_ok());
        drop(short);
        let Ok(cache) = OfflineCache::open(&path, limits(3, Duration::from_secs(60))) else {
            panic!("reopens")
        };
        assert!(cache.push("dave", &text("new")).await.is_ok());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cache.purge_expired().await.ok(), Some(2));
        assert_eq!(cache.take("dave").await.unwrap_or_default().len(), 1);
    }

    #[tokio::test]
    async fn expired_messages_are_not_delivered() {
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().join("c.redb"))
            .unwrap_or_default();
        let Ok(cache) = OfflineCache::open(&path, limits(3, Duration::from_millis(1))) else {
            panic!("opens")
        };
        assert!(cache.push("bob", &text("old")).await.is_ok());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(cache.take("bob").await.unwrap_or_default().is_empty());
    }
}
