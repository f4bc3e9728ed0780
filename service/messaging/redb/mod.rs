//! One server's store: the event log, dedup records and channel membership in an
//! embedded redb file under the data folder (`offline.redb`), so that they survive a
//! restart.
//!
//! **Group commit.** Every change goes through one writer thread ([`writer`]): it takes
//! everything waiting in its queue (sends, stream registrations, hand-overs,
//! membership changes), applies it in one write transaction in queue order, commits
//! it with one fsync, and only then queues the events on the streams (through places
//! held before the commit, so a peer message is DELIVERED only when a stream will get
//! it) and answers each caller. An answered send survives a power cut; a group costs
//! one fsync however many sends it holds. A stream registers through the same queue,
//! so it starts exactly after the last entry committed before it.
//!
//! Reads (replay, hand-over marks) use read transactions beside the writer.

mod channels;
mod outbox;
mod tables;
#[cfg(test)]
mod tests;
mod upkeep;
mod writer;

use std::{path::Path, sync::Arc};

use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

pub use outbox::RedbEvents;
pub use tables::LogLimits;
use tables::{ENTRIES, HANDED, USERS, event_of, expiry_of, internal, kind_of, now_ms};
pub use upkeep::spawn_purger;
use writer::Op;

use super::{
    event::{Dedup, Sent},
    feed::{Feed, Stream},
    outbox::HookEvents,
    roster::Roster,
    store::{Append, Entry, Handed, Hold, Kind, Span, Store},
};
use crate::error::Error;

/// How many changes may wait for the writer; callers wait beyond it.
const QUEUE: usize = 16 * 1024;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    /// The database file.
    db: Arc<Database>,
    /// The limits.
    limits: LogLimits,
    /// The writer's queue.
    writer: mpsc::Sender<Op>,
    /// Channel membership, as committed (the writer applies each change after its
    /// commit).
    roster: Roster,
    /// The streams on this process: who is online.
    feed: Feed,
    /// Entries committed since the store opened.
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Woken when the writer commits events for the event webhook.
    outbox_ready: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, moving an older layout's cached
    /// messages into it, and starts its writer, which queues events on `feed`.
    /// Blocking: reads the membership. With `path` `None` the store is kept in memory
    /// (for comparison in benchmarks: nothing survives the process).
    pub fn open(path: Option<&Path>, limits: LogLimits, feed: Feed) -> Result<Self, Error> {
        Self::open_with_hook(path, limits, feed, None)
    }

    /// Like [`RedbStore::open`], with the writer also recording `events` for the
    /// event webhook ([`RedbStore::hook_events`]).
    pub fn open_with_hook(
        path: Option<&Path>,
        limits: LogLimits,
        feed: Feed,
        events: Option<HookEvents>,
    ) -> Result<Self, Error> {
        let db = Arc::new(upkeep::open(path, &limits)?);
        let roster = Roster::default();
        for (channel, user) in upkeep::memberships(&db)? {
            roster.apply(&channel, &user, true);
        }
        let (writer, queue) = mpsc::channel(QUEUE);
        let written = Arc::default();
        let outbox = outbox::Outbox {
            events,
            ready: Arc::default(),
        };
        let outbox_ready = outbox.ready.clone();
        writer::start(
            db.clone(),
            limits,
            feed.clone(),
            roster.clone(),
            Arc::clone(&written),
            outbox,
            queue,
        )?;
        Ok(Self {
            outbox_ready,
            written,
            db,
            limits,
            writer,
            roster,
            feed,
        })
    }

    /// Queues `op` (made with the answer's sender) for the writer and waits for its
    /// answer.
    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Op,
    ) -> Result<T, Error> {
        let (answer, answered) = oneshot::channel();
        self.writer
            .send(op(answer))
            .await
            .map_err(|_| Error::Internal("event log: the writer stopped".into()))?;
        answered
            .await
            .map_err(|_| Error::Internal("event log: the writer stopped".into()))?
    }

    /// Runs `work` on a read transaction, off the async threads.
    async fn read_with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            work(&txn)
        })
        .await
        .map_err(|e| Error::Internal(format!("event log task: {e}")))?
    }

    /// The events recorded for the event webhook, after its saved cursor. Blocking (a
    /// short read).
    pub fn hook_events(&self) -> Result<RedbEvents, Error> {
        RedbEvents::open(self.db.clone(), self.outbox_ready.clone())
    }

    /// How many entries were committed since the store opened (a channel message is
    /// one, whatever its members).
    pub fn entries_written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many cached messages the log holds and their bytes, for the gauges.
    /// Blocking (a short read).
    pub fn size(&self) -> Result<(u64, u64), Error> {
        upkeep::size(&self.db)
    }

    /// Deletes every expired entry and dedup record; returns how many entries.
    pub async fn purge_expired(&self) -> Result<usize, Error> {
        let db = self.db.clone();
        let limits = self.limits;
        tokio::task::spawn_blocking(move || upkeep::purge(&db, &limits))
            .await
            .map_err(|e| Error::Internal(format!("event log task: {e}")))?
    }
}

#[tonic::async_trait]
impl Store for RedbStore {
    async fn append(&self, append: Append, dedup: Option<Dedup>) -> Result<Sent, Error> {
        self.write(|answer| Op::Append {
            append,
            dedup,
            answer,
        })
        .await
    }

    async fn follow(&self, user: &str, stream: Stream, max: usize) -> Result<u64, Error> {
        let user = user.to_owned();
        self.write(|answer| Op::Follow {
            user,
            stream,
            max,
            answer,
        })
        .await
    }

    async fn read(&self, user: &str, from: u64, until: u64) -> Result<Vec<Entry>, Error> {
        let user = user.to_owned();
        self.read_with(move |txn| {
            let table = txn.open_table(ENTRIES).map_err(internal)?;
            let now = now_ms();
            let mut entries = Vec::new();
            if from > until {
                return Ok(entries);
            }
            for item in table
                .range((user.as_str(), from)..=(user.as_str(), until))
                .map_err(internal)?
            {
                let (key, value) = item.map_err(internal)?;
                let value = value.value();
                if expiry_of(value) <= now {
                    // Expired but not yet purged: as good as dropped.
                    continue;
                }
                let cursor = key.value().1;
                let event = event_of(value).map(|mut event| {
                    event.cursor = cursor;
                    Arc::new(event)
                });
                if event.is_none() {
                    tracing::warn!("event log: skipping an entry that does not decode");
                }
                let kind = if kind_of(value) == tables::CACHED {
                    Kind::Cached
                } else {
                    Kind::Logged
                };
                entries.push(Entry {
                    cursor,
                    kind,
                    event,
                });
            }
            Ok(entries)
        })
        .await
    }

    async fn lost_after(&self, user: &str, after: u64) -> Result<bool, Error> {
        let user = user.to_owned();
        self.read_with(move |txn| {
            let users = txn.open_table(USERS).map_err(internal)?;
            let dropped = users
                .get(user.as_str())
                .map_err(internal)?
                .map(|v| v.value().1)
                .unwrap_or(0);
            if after < dropped {
                return Ok(true);
            }
            let table = txn.open_table(ENTRIES).map_err(internal)?;
            let now = now_ms();
            for item in table
                .range((user.as_str(), after + 1)..=(user.as_str(), u64::MAX))
                .map_err(internal)?
            {
                let (_, value) = item.map_err(internal)?;
                if expiry_of(value.value()) <= now {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    async fn handed(&self, user: &str) -> Result<Handed, Error> {
        let user = user.to_owned();
        self.read_with(move |txn| {
            let upto = txn
                .open_table(HANDED)
                .map_err(internal)?
                .get(user.as_str())
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0);
            Ok(Handed {
                upto,
                version: upto,
            })
        })
        .await
    }

    async fn hand(&self, user: &str, upto: u64, expected: Option<u64>) -> Result<bool, Error> {
        let user = user.to_owned();
        self.write(|answer| Op::Hand {
            user,
            upto,
            expected,
            answer,
        })
        .await
    }

    async fn hold_stream(&self, _user: &str, _max: usize) -> Result<Option<Hold>, Error> {
        // One process: the feed counts the streams when it adds them.
        Ok(Some(Box::new(())))
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        Ok(users.iter().map(|u| self.feed.has(u)).collect())
    }

    async fn spans(&self, user: &str, after: u64, until: u64) -> Result<Vec<Span>, Error> {
        let user = user.to_owned();
        self.read_with(move |txn| channels::spans_of(txn, &user, after, until))
            .await
    }

    async fn read_channel(
        &self,
        channel: &str,
        after: u64,
        until: u64,
    ) -> Result<(Vec<Entry>, bool), Error> {
        let channel = channel.to_owned();
        let (values, lost) = self
            .read_with(move |txn| channels::channel_entries(txn, &channel, after, until))
            .await?;
        let entries = values
            .into_iter()
            .map(|(cursor, value)| Entry {
                cursor,
                kind: Kind::Logged,
                event: event_of(&value).map(|mut event| {
                    event.cursor = cursor;
                    Arc::new(event)
                }),
            })
            .collect();
        Ok((entries, lost))
    }

    fn replay_most(&self) -> usize {
        self.limits.log_size
    }

    fn cached_per_user(&self) -> usize {
        self.limits.max_per_user
    }

    async fn catch_up(&self) -> Result<(), Error> {
        // The writer applies each change before answering it.
        Ok(())
    }

    async fn set_member(&self, channel: &str, user: &str, member: bool) -> Result<(), Error> {
        let (channel, user) = (channel.to_owned(), user.to_owned());
        self.write(|answer| Op::Member {
            channel,
            user,
            member,
            answer,
        })
        .await
    }

    fn roster(&self) -> &Roster {
        &self.roster
    }
}
