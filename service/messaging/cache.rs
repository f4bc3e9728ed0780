//! The offline cache of the in-process router: peer messages kept for users who were
//! offline, in an embedded redb database under the data folder, so that they survive
//! a restart. At most N per receiver (oldest dropped first) for a limited time.

use std::{path::Path, sync::Arc, time::Duration};

use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{error::Error, pb, periodic::spawn_periodic};

/// Cached messages: (receiver, sequence number) → expiry (8 bytes, big-endian
/// milliseconds since the epoch) followed by the encoded `PeerMessageReceived`.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline_messages");

/// Counters: "next_seq" is the next sequence number to hand out.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The offline cache. Cheap to clone.
#[derive(Clone)]
pub struct OfflineCache {
    /// The database file; redb serialises write transactions itself.
    db: Arc<Database>,
    /// The most messages kept per receiver.
    max_per_user: usize,
    /// How long a cached message is kept.
    ttl: Duration,
}

impl std::fmt::Debug for OfflineCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineCache")
            .field("max_per_user", &self.max_per_user)
            .field("ttl", &self.ttl)
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
    /// Opens (or creates) the cache at `path`.
    pub fn open(path: &Path, max_per_user: usize, ttl: Duration) -> Result<Self, Error> {
        let db = Database::create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        txn.open_table(MESSAGES).map_err(internal)?;
        txn.open_table(COUNTERS).map_err(internal)?;
        txn.commit().map_err(internal)?;
        Ok(Self {
            db: Arc::new(db),
            max_per_user,
            ttl,
        })
    }

    /// Keeps `message` for `user`, dropping that user's expired and oldest messages
    /// beyond the limit. Durable when it returns.
    pub async fn push(&self, user: &str, message: &pb::PeerMessageReceived) -> Result<(), Error> {
        let this = self.clone();
        let user = user.to_owned();
        let expires = now_ms().saturating_add(self.ttl.as_millis() as u64);
        let mut value = expires.to_be_bytes().to_vec();
        message
            .encode(&mut value)
            .map_err(|e| Error::Internal(format!("encoding: {e}")))?;
        tokio::task::spawn_blocking(move || this.push_blocking(&user, &value))
            .await
            .map_err(|e| Error::Internal(format!("offline cache task: {e}")))?
    }

    fn push_blocking(&self, user: &str, value: &[u8]) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(internal)?;
        {
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let seq = counters
                .get("next_seq")
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0);
            counters.insert("next_seq", seq + 1).map_err(internal)?;
            let mut table = txn.open_table(MESSAGES).map_err(internal)?;
            table.insert((user, seq), value).map_err(internal)?;
            // Drop expired messages, then the oldest beyond the limit.
            let now = now_ms();
            let mut keep: Vec<u64> = Vec::new();
            let mut drop: Vec<u64> = Vec::new();
            for entry in table
                .range((user, 0)..=(user, u64::MAX))
                .map_err(internal)?
            {
                let (key, value) = entry.map_err(internal)?;
                let (_, seq) = key.value();
                if expiry(value.value()) <= now {
                    drop.push(seq);
                } else {
                    keep.push(seq);
                }
            }
            let excess = keep.len().saturating_sub(self.max_per_user);
            drop.extend_from_slice(&keep[..excess]);
            for seq in drop {
                table.remove((user, seq)).map_err(internal)?;
            }
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
                table.remove((user, seq)).map_err(internal)?;
            }
        }
        txn.commit().map_err(internal)?;
        Ok(messages)
    }
}

impl OfflineCache {
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
            let mut table = txn.open_table(MESSAGES).map_err(internal)?;
            let before = table.len().map_err(internal)?;
            table
                .retain(|_, value| expiry(value) > now)
                .map_err(internal)?;
            before - table.len().map_err(internal)?
        };
        txn.commit().map_err(internal)?;
        Ok(purged as usize)
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
        pb::PeerMessageReceived {
            sender_id: "alice".into(),
            message_id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn keeps_the_newest_per_user_across_reopening() {
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().join("c.redb"))
            .unwrap_or_default();
        let cache = OfflineCache::open(&path, 3, Duration::from_secs(60));
        let Ok(cache) = cache else { panic!("opens") };
        for i in 0..5 {
            assert!(cache.push("bob", &text(&i.to_string())).await.is_ok());
        }
        assert!(cache.push("carol", &text("c")).await.is_ok());
        drop(cache);
        let Ok(cache) = OfflineCache::open(&path, 3, Duration::from_secs(60)) else {
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
        let Ok(short) = OfflineCache::open(&path, 3, Duration::from_millis(200)) else {
            panic!("opens")
        };
        assert!(short.push("bob", &text("old")).await.is_ok());
        assert!(short.push("carol", &text("old")).await.is_ok());
        drop(short);
        let Ok(cache) = OfflineCache::open(&path, 3, Duration::from_secs(60)) else {
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
        let Ok(cache) = OfflineCache::open(&path, 3, Duration::from_millis(1)) else {
            panic!("opens")
        };
        assert!(cache.push("bob", &text("old")).await.is_ok());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(cache.take("bob").await.unwrap_or_default().is_empty());
    }
}
