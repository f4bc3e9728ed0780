//! The per-user event log of the in-process router, in an embedded redb database under
//! the data folder, so that it survives a restart.
//!
//! Every event for a user takes the next cursor of that user (1, 2, 3, ...) and is kept
//! as an entry `(user, cursor)`:
//! - **logged**: a peer message that was DELIVERED to a live stream, or a channel
//!   message (for every member but the sender, online or not). At most `log_size` per
//!   user (the oldest dropped first), each for `log_ttl`.
//! - **cached**: a peer message for an offline user (the offline cache): at most
//!   `cache_per_user` per receiver (oldest dropped first) for `cache_ttl`, at most
//!   `max_per_sender` waiting from any one sender, at most `max_bytes` in all (past
//!   those, OFFLINE_CACHE_FULL and nothing kept). Once handed to a stream it becomes a
//!   logged entry (its cursor unchanged).
//!
//! A user's row holds their last cursor and the highest cursor dropped from their log
//! (by count or age): a client resuming after a cursor below it has lost events.
//!
//! Durability: a cached message is durable when the send returns (an fsync). Logged
//! entries and dedup records are committed without an fsync and made durable by the
//! next durable commit, at most [`FLUSH_INTERVAL`] later (a background flush) and when
//! the log is closed: a crash of the machine may lose the last second of them, which
//! only shortens a replay (the message was delivered live).
//!
//! The dedup records of idempotent sends live here too: `(sender, client_message_id)`
//! → the fingerprint of the request and the first answer, for the dedup window.
//!
//! Layout 3 (this one) replaces layout 1 and 2's `offline_messages` table with the
//! log; opening an older file moves its cached messages into the log once.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prost::Message as _;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::hub::Event;
use crate::{
    error::{Error, Reason},
    pb::{self, subscribe_response::Event as Kind},
    periodic::spawn_periodic,
};

/// Entries: (user, cursor) → kind (1 byte), expiry (8 bytes, big-endian milliseconds
/// since the epoch), then the encoded `SubscribeResponse` (its cursor left 0).
const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("event_log");

/// Per user: (last cursor, highest cursor dropped, logged entries, cached entries).
const USERS: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("log_users");

/// Dedup records: (sender, client_message_id) → expiry (8 bytes), fingerprint (32
/// bytes), then the encoded first answer (a `SendPeerMessageResponse`).
const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");

/// The layout-1/2 offline cache: (receiver, seq) → expiry then `PeerMessageReceived`.
const OLD_MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline_messages");

/// Counters: "bytes" the total size of the cached entries; "layout" the layout version
/// (absent: 1); "next_seq" was layout 1 and 2's.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// How many cached entries each sender has waiting.
const SENDERS: TableDefinition<&str, u64> = TableDefinition::new("offline_senders");
/// Channel membership of one server: (channel, user), present while a member.
const MEMBERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("channel_members");

/// The layout this code writes.
const LAYOUT: u64 = 3;

/// How long a logged entry may stay without an fsync.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How far cursors jump after a crash: more than any user can receive in the
/// [`FLUSH_INTERVAL`] whose commits a crash may lose.
const CRASH_GAP: u64 = 1 << 20;

const LOGGED: u8 = 0;
const CACHED: u8 = 1;

/// The limits of the log and of the offline cache within it.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// The most cached messages kept per receiver (the oldest are dropped).
    pub max_per_user: usize,
    /// The most cached messages one sender may have waiting, for all receivers.
    pub max_per_sender: u64,
    /// The most bytes of cached messages in all.
    pub max_bytes: u64,
    /// How long a cached message is kept.
    pub ttl: Duration,
    /// The most logged events kept per user (the oldest are dropped).
    pub log_size: usize,
    /// How long a logged event is kept.
    pub log_ttl: Duration,
}

/// What a retried send is recognised by.
#[derive(Debug, Clone)]
pub struct Dedup {
    /// The client's ID for the message, unique per sender.
    pub client_message_id: String,
    /// SHA-256 of the request: a reused ID with another request is refused.
    pub fingerprint: [u8; 32],
    /// How long the first answer is remembered.
    pub window: Duration,
}

/// What became of a send: the first answer, for a retry too.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The server-made message ID.
    pub message_id: String,
    /// When the server accepted it.
    pub server_time: Option<prost_types::Timestamp>,
    /// For a peer message, what became of it.
    pub state: pb::PeerMessageState,
}

/// What a new stream is owed.
#[derive(Debug, Default)]
pub struct Replay {
    /// The events to send before `ready`, with their cursors, in cursor order.
    pub events: Vec<(u64, Event)>,
    /// How many of them were cached for the user while offline.
    pub offline: usize,
    /// Whether events after the stream's `after` were dropped from the log.
    pub events_lost: bool,
    /// The user's latest cursor: live events up to it are in `events` or were before
    /// `after`.
    pub latest: u64,
}

/// The log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
    limits: LogLimits,
}

struct Inner {
    /// The database file; redb serialises write transactions itself.
    db: Database,
    /// Set by a commit without fsync, cleared by [`EventLog::flush`].
    dirty: AtomicBool,
    /// Set by [`EventLog::close`]: every commit is durable from then on.
    closing: AtomicBool,
    /// The base of cursors (see [`Tables::next`]), fixed at opening.
    base: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.dirty.load(Ordering::Relaxed)
            && let Err(e) = durable_commit(&self.db)
        {
            tracing::warn!(error = %e, "event log: the last flush failed");
        }
    }
}

fn durable_commit(db: &Database) -> Result<(), Error> {
    let txn = db.begin_write().map_err(internal)?;
    // A change, so that the commit is not skipped as empty.
    txn.open_table(COUNTERS)
        .map_err(internal)?
        .insert("flushed", now_ms())
        .map_err(internal)?;
    txn.commit().map_err(internal)
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("limits", &self.limits)
            .finish()
    }
}

fn internal(e: impl Into<redb::Error>) -> Error {
    Error::Internal(format!("event log: {}", e.into()))
}

fn now_ms() -> u64 {
    crate::media::now_millis()
}

fn cache_full(message: String) -> Error {
    Error::Refused(Reason::OfflineCacheFull, message)
}

/// An entry's value.
fn entry(kind: u8, expires: u64, event: &Event) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + event.encoded_len());
    value.push(kind);
    value.extend_from_slice(&expires.to_be_bytes());
    let _ = event.encode(&mut value);
    value
}

fn kind_of(value: &[u8]) -> u8 {
    value.first().copied().unwrap_or(LOGGED)
}

fn expiry_of(value: &[u8]) -> u64 {
    value
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn event_of(value: &[u8]) -> Option<Event> {
    Event::decode(value.get(9..)?).ok()
}

/// The sender of a cached entry ("" when it does not decode).
fn sender_of(value: &[u8]) -> String {
    match event_of(value).and_then(|e| e.event) {
        Some(Kind::PeerMessage(m)) => m.sender_id,
        _ => String::new(),
    }
}

/// A user's row: (last cursor, highest dropped, logged count, cached count).
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    last: u64,
    dropped: u64,
    logged: u64,
    cached: u64,
}

/// The tables of one write transaction.
struct Tables<'t> {
    entries: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    users: redb::Table<'t, &'static str, (u64, u64, u64, u64)>,
    counters: redb::Table<'t, &'static str, u64>,
    senders: redb::Table<'t, &'static str, u64>,
    /// The total size of the cached entries.
    bytes: u64,
    /// Every cursor handed out from now on is above it (raised after a crash).
    base: u64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        let counters = txn.open_table(COUNTERS).map_err(internal)?;
        let bytes = counters
            .get("bytes")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let base = counters
            .get("base")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok(Self {
            base,
            entries: txn.open_table(ENTRIES).map_err(internal)?,
            users: txn.open_table(USERS).map_err(internal)?,
            senders: txn.open_table(SENDERS).map_err(internal)?,
            counters,
            bytes,
        })
    }

    fn row(&self, user: &str) -> Result<Row, Error> {
        Ok(self
            .users
            .get(user)
            .map_err(internal)?
            .map(|v| {
                let (last, dropped, logged, cached) = v.value();
                Row {
                    last,
                    dropped,
                    logged,
                    cached,
                }
            })
            .unwrap_or_default())
    }

    fn save_row(&mut self, user: &str, row: Row) -> Result<(), Error> {
        self.users
            .insert(user, (row.last, row.dropped, row.logged, row.cached))
            .map_err(internal)?;
        Ok(())
    }

    fn waiting(&self, sender: &str) -> Result<u64, Error> {
        Ok(self
            .senders
            .get(sender)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn count_sender(&mut self, sender: &str, delta: i64) -> Result<(), Error> {
        let n = self.waiting(sender)?.saturating_add_signed(delta);
        if n == 0 {
            self.senders.remove(sender).map_err(internal)?;
        } else {
            self.senders.insert(sender, n).map_err(internal)?;
        }
        Ok(())
    }

    /// Removes one entry and takes it off the books (not the row's `dropped`).
    fn remove(&mut self, user: &str, cursor: u64, row: &mut Row) -> Result<(), Error> {
        let Some(value) = self
            .entries
            .remove((user, cursor))
            .map_err(internal)?
            .map(|v| v.value().to_vec())
        else {
            return Ok(());
        };
        let value = value.as_slice();
        if kind_of(value) == CACHED {
            row.cached = row.cached.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(value.len() as u64);
            let sender = sender_of(value);
            self.count_sender(&sender, -1)?;
        } else {
            row.logged = row.logged.saturating_sub(1);
        }
        Ok(())
    }

    /// Drops a user's expired entries and the oldest beyond the limits.
    fn trim(&mut self, user: &str, row: &mut Row, limits: &LogLimits) -> Result<(), Error> {
        let now = now_ms();
        let mut gone = Vec::new();
        let mut logged_over = row.logged.saturating_sub(limits.log_size as u64);
        let mut cached_over = row.cached.saturating_sub(limits.max_per_user as u64);
        for item in self
            .entries
            .range((user, 0)..=(user, u64::MAX))
            .map_err(internal)?
        {
            let (key, value) = item.map_err(internal)?;
            let value = value.value();
            let cursor = key.value().1;
            let kind = kind_of(value);
            if expiry_of(value) <= now {
                gone.push(cursor);
                if kind == CACHED {
                    cached_over = cached_over.saturating_sub(1);
                } else {
                    logged_over = logged_over.saturating_sub(1);
                }
            } else if kind == CACHED && cached_over > 0 {
                gone.push(cursor);
                cached_over -= 1;
            } else if kind == LOGGED && logged_over > 0 {
                gone.push(cursor);
                logged_over -= 1;
            } else if kind == LOGGED && cached_over == 0 {
                // The oldest live logged entry: later ones expire later (nearly
                // always; the purger catches the rest).
                break;
            }
        }
        for cursor in gone {
            self.remove(user, cursor, row)?;
            row.dropped = row.dropped.max(cursor);
        }
        Ok(())
    }

    /// Takes the next cursor of `row`'s user. Past a crash's base, the cursors below
    /// it count as dropped: some may have been handed out and lost.
    fn next(&self, row: &mut Row) -> u64 {
        if row.last < self.base {
            row.dropped = row.dropped.max(self.base);
            row.last = self.base;
        }
        row.last += 1;
        row.last
    }

    /// Appends `value` for `user` at `cursor` (from [`Tables::next`] on `row`), drops
    /// what is beyond the limits, and saves the row.
    fn append(
        &mut self,
        user: &str,
        mut row: Row,
        cursor: u64,
        value: &[u8],
        limits: &LogLimits,
    ) -> Result<(), Error> {
        row.last = row.last.max(cursor);
        self.entries
            .insert((user, cursor), value)
            .map_err(internal)?;
        if kind_of(value) == CACHED {
            row.cached += 1;
            self.bytes += value.len() as u64;
            let sender = sender_of(value);
            self.count_sender(&sender, 1)?;
        } else {
            row.logged += 1;
        }
        self.trim(user, &mut row, limits)?;
        self.save_row(user, row)
    }

    fn save(mut self) -> Result<(), Error> {
        self.counters
            .insert("bytes", self.bytes)
            .map_err(internal)?;
        Ok(())
    }
}

/// The dedup record of `sender`'s `dedup`: the first answer, a refusal when the ID
/// was used for another request, or `None` when it is new (or expired).
fn check_dedup(txn: &WriteTransaction, sender: &str, dedup: &Dedup) -> Result<Option<Sent>, Error> {
    let table = txn.open_table(DEDUP).map_err(internal)?;
    let Some(value) = table
        .get((sender, dedup.client_message_id.as_str()))
        .map_err(internal)?
    else {
        return Ok(None);
    };
    let value = value.value();
    let expires = value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    if expires <= now_ms() {
        return Ok(None);
    }
    if value.get(8..40) != Some(&dedup.fingerprint[..]) {
        return Err(reused(&dedup.client_message_id));
    }
    let answer = pb::SendPeerMessageResponse::decode(value.get(40..).unwrap_or_default())
        .map_err(|e| Error::Internal(format!("event log: a dedup record: {e}")))?;
    Ok(Some(Sent {
        state: answer.state(),
        message_id: answer.message_id,
        server_time: answer.server_time,
    }))
}

/// The refusal of a client message ID used again for a different message.
pub fn reused(id: &str) -> Error {
    Error::invalid(format!(
        "client_message_id {id:?} was already used for a different message within the dedup window; use a new ID for a new message"
    ))
}

fn save_dedup(
    txn: &WriteTransaction,
    sender: &str,
    dedup: &Dedup,
    sent: &Sent,
) -> Result<(), Error> {
    let mut table = txn.open_table(DEDUP).map_err(internal)?;
    let expires = now_ms().saturating_add(dedup.window.as_millis() as u64);
    let mut value = expires.to_be_bytes().to_vec();
    value.extend_from_slice(&dedup.fingerprint);
    let answer = pb::SendPeerMessageResponse {
        message_id: sent.message_id.clone(),
        server_time: sent.server_time,
        state: sent.state.into(),
    };
    let _ = answer.encode(&mut value);
    table
        .insert((sender, dedup.client_message_id.as_str()), value.as_slice())
        .map_err(internal)?;
    Ok(())
}

impl EventLog {
    /// Opens (or creates) the log at `path`, moving an older layout's cached messages
    /// into it.
    pub fn open(path: &Path, limits: LogLimits) -> Result<Self, Error> {
        let db = Database::create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        let base;
        {
            let layout = txn
                .open_table(COUNTERS)
                .map_err(internal)?
                .get("layout")
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(1);
            if layout < LAYOUT {
                migrate(&txn, layout, &limits)?;
            }
            // Create every table, so that readers find them.
            txn.open_table(ENTRIES).map_err(internal)?;
            txn.open_table(DEDUP).map_err(internal)?;
            txn.open_table(MEMBERS).map_err(internal)?;
            let users = txn.open_table(USERS).map_err(internal)?;
            let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
            let running = counters
                .get("running")
                .map_err(internal)?
                .is_some_and(|v| v.value() == 1);
            if running {
                // The last process did not close the log: the commits of its last
                // moment (no fsync) are gone, and the cursors they took may have
                // reached clients. Hand out only cursors above any it could have.
                let mut highest = 0;
                for item in users.iter().map_err(internal)? {
                    let (_, row) = item.map_err(internal)?;
                    highest = highest.max(row.value().0);
                }
                let base = counters
                    .get("base")
                    .map_err(internal)?
                    .map(|v| v.value())
                    .unwrap_or(0)
                    .max(highest)
                    + CRASH_GAP;
                counters.insert("base", base).map_err(internal)?;
                tracing::warn!(
                    base,
                    "event log: not closed cleanly; cursors go on above the base"
                );
            }
            counters.insert("running", 1).map_err(internal)?;
            base = counters
                .get("base")
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0);
        }
        txn.commit().map_err(internal)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                dirty: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                base,
            }),
            limits,
        })
    }

    /// Makes every commit so far and from now on durable, and marks the log closed
    /// cleanly (a process that ends without this counts as crashed). Blocking.
    pub fn close(&self) -> Result<(), Error> {
        self.inner.closing.store(true, Ordering::Relaxed);
        let txn = self.begin()?;
        txn.open_table(COUNTERS)
            .map_err(internal)?
            .insert("running", 0)
            .map_err(internal)?;
        txn.commit().map_err(internal)?;
        self.inner.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Every (channel, user) membership recorded. Blocking.
    pub fn memberships(&self) -> Result<Vec<(String, String)>, Error> {
        let txn = self.inner.db.begin_read().map_err(internal)?;
        let table = txn.open_table(MEMBERS).map_err(internal)?;
        let mut all = Vec::new();
        for item in table.iter().map_err(internal)? {
            let (key, _) = item.map_err(internal)?;
            let (channel, user) = key.value();
            all.push((channel.to_owned(), user.to_owned()));
        }
        Ok(all)
    }

    /// Records that `user` joined (`member`) or left `channel`, durably: a join
    /// answered survives a crash. Blocking.
    pub fn set_member(&self, channel: &str, user: &str, member: bool) -> Result<(), Error> {
        let txn = self.begin()?;
        {
            let mut table = txn.open_table(MEMBERS).map_err(internal)?;
            if member {
                table.insert((channel, user), ()).map_err(internal)?;
            } else {
                table.remove((channel, user)).map_err(internal)?;
            }
        }
        self.commit(txn, true)
    }

    /// The limits.
    pub fn limits(&self) -> &LogLimits {
        &self.limits
    }

    fn begin(&self) -> Result<WriteTransaction, Error> {
        self.inner.db.begin_write().map_err(internal)
    }

    /// Commits with an fsync when `durable`, else leaves it to the next flush.
    fn commit(&self, mut txn: WriteTransaction, durable: bool) -> Result<(), Error> {
        let durable = durable || self.inner.closing.load(Ordering::Relaxed);
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| Error::Internal(format!("event log: {e}")))?;
            self.inner.dirty.store(true, Ordering::Relaxed);
        }
        txn.commit().map_err(internal)?;
        if durable {
            self.inner.dirty.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes every commit so far durable. Blocking.
    pub fn flush(&self) -> Result<(), Error> {
        if self.inner.dirty.swap(false, Ordering::Relaxed) {
            durable_commit(&self.inner.db)?;
        }
        Ok(())
    }

    /// Sends a peer message to `peer` in one transaction: a retry of a recorded
    /// `dedup` gets the first answer; otherwise the message takes `peer`'s next
    /// cursor and `deliver` queues it on their live streams (returning how many took
    /// it). Taken: logged, DELIVERED. Else, with `cache`, cached (durable), CACHED; else
    /// nothing kept, PEER_UNREACHABLE. Blocking; the caller serialises it with the
    /// registration of streams so that cursors reach streams in order.
    pub fn send_peer(
        &self,
        peer: &str,
        mut message: pb::PeerMessageReceived,
        cache: bool,
        dedup: Option<&Dedup>,
        deliver: impl FnOnce(u64, Arc<Event>) -> usize,
    ) -> Result<Sent, Error> {
        let sender = message.sender_id.clone();
        self.once(&sender, dedup, |txn| {
            let mut sent = Sent {
                message_id: message.message_id.clone(),
                server_time: message.server_time,
                state: pb::PeerMessageState::PeerUnreachable,
            };
            let mut durable = false;
            let mut tables = Tables::open(txn)?;
            let mut row = tables.row(peer)?;
            let cursor = tables.next(&mut row);
            let event = Arc::new(super::hub::peer_event(message.clone()));
            if deliver(cursor, event.clone()) > 0 {
                let expires = now_ms().saturating_add(self.limits.log_ttl.as_millis() as u64);
                let value = entry(LOGGED, expires, &event);
                tables.append(peer, row, cursor, &value, &self.limits)?;
                sent.state = pb::PeerMessageState::Delivered;
            } else if cache {
                message.offline = true;
                let expires = now_ms().saturating_add(self.limits.ttl.as_millis() as u64);
                let value = entry(CACHED, expires, &super::hub::peer_event(message));
                self.check_cache(&mut tables, peer, &sender, value.len())?;
                let mut row = tables.row(peer)?;
                let cursor = tables.next(&mut row);
                tables.append(peer, row, cursor, &value, &self.limits)?;
                sent.state = pb::PeerMessageState::Cached;
                durable = true;
            }
            tables.save()?;
            Ok((sent, durable))
        })
    }

    /// Runs `send` in one write transaction, unless `dedup` repeats a recorded send
    /// (then that send's answer, and nothing written); records `send`'s answer under
    /// `dedup`, and commits, with an fsync when `send` says it must be durable.
    fn once(
        &self,
        sender: &str,
        dedup: Option<&Dedup>,
        send: impl FnOnce(&WriteTransaction) -> Result<(Sent, bool), Error>,
    ) -> Result<Sent, Error> {
        let txn = self.begin()?;
        if let Some(dedup) = dedup
            && let Some(first) = check_dedup(&txn, sender, dedup)?
        {
            return Ok(first);
        }
        let (sent, durable) = send(&txn)?;
        if let Some(dedup) = dedup {
            save_dedup(&txn, sender, dedup, &sent)?;
        }
        self.commit(txn, durable)?;
        Ok(sent)
    }

    /// Refuses a cached message past the sender's quota or the byte limit.
    fn check_cache(
        &self,
        tables: &mut Tables<'_>,
        peer: &str,
        sender: &str,
        len: usize,
    ) -> Result<(), Error> {
        // This receiver's expired messages go first: they free room.
        let mut row = tables.row(peer)?;
        tables.trim(peer, &mut row, &self.limits)?;
        tables.save_row(peer, row)?;
        let waiting = tables.waiting(sender)?;
        if waiting >= self.limits.max_per_sender {
            return Err(cache_full(format!(
                "{sender} already has {waiting} messages waiting for offline receivers, the most allowed; nothing was kept"
            )));
        }
        if tables.bytes + len as u64 > self.limits.max_bytes {
            return Err(cache_full(
                "the server's offline cache is full; nothing was kept".into(),
            ));
        }
        Ok(())
    }

    /// Sends a channel message to `members` (the sender left out) in one transaction:
    /// a retry of a recorded `dedup` gets the first answer; otherwise each member's
    /// next cursor is taken, `deliver(member, cursor, event)` queues it on their live
    /// streams, and it is logged for every member, online or not. Blocking; serialised
    /// by the caller as [`EventLog::send_peer`].
    pub fn send_channel(
        &self,
        members: &[String],
        message: pb::ChannelMessageReceived,
        dedup: Option<&Dedup>,
        mut deliver: impl FnMut(&str, u64, &Arc<Event>),
    ) -> Result<Sent, Error> {
        let sender = message.sender_id.clone();
        let sent = Sent {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state: pb::PeerMessageState::Unspecified,
        };
        let event = Arc::new(Event {
            event: Some(Kind::ChannelMessage(message)),
            cursor: 0,
        });
        let expires = now_ms().saturating_add(self.limits.log_ttl.as_millis() as u64);
        let value = entry(LOGGED, expires, &event);
        self.once(&sender, dedup, |txn| {
            let mut tables = Tables::open(txn)?;
            for member in members {
                let mut row = tables.row(member)?;
                let cursor = tables.next(&mut row);
                deliver(member, cursor, &event);
                tables.append(member, row, cursor, &value, &self.limits)?;
            }
            tables.save()?;
            Ok((sent, false))
        })
    }

    /// What a new stream of `user` is owed: the cached messages (now handed over:
    /// they become logged entries) and, when `after` > 0, the logged events after
    /// it, in cursor order. Blocking.
    pub fn replay(&self, user: &str, after: u64) -> Result<Replay, Error> {
        // Most streams owe nothing cached: look first without a write transaction.
        let (replay, cached) = {
            let read = self.inner.db.begin_read().map_err(internal)?;
            let entries = read.open_table(ENTRIES).map_err(internal)?;
            let users = read.open_table(USERS).map_err(internal)?;
            let row = users
                .get(user)
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or_default();
            self.collect(user, after, row.0, row.1, &entries)?
        };
        if cached.is_empty() && replay.latest > self.inner.base {
            return Ok(replay);
        }
        // Hand the cached ones over: they become logged entries, off the cache's books.
        let txn = self.begin()?;
        let (replay, cached) = {
            let mut tables = Tables::open(&txn)?;
            let mut row = tables.row(user)?;
            if row.last == 0 || row.last < tables.base {
                // A user's first stream reserves a cursor that no event has: the
                // `ready` cursor to resume after is then never 0 (which means none).
                tables.next(&mut row);
                tables.save_row(user, row)?;
            }
            let (replay, cached) =
                self.collect(user, after, row.last, row.dropped, &tables.entries)?;
            let expires = now_ms().saturating_add(self.limits.log_ttl.as_millis() as u64);
            for cursor in &cached {
                let Some(value) = tables
                    .entries
                    .get((user, *cursor))
                    .map_err(internal)?
                    .map(|v| v.value().to_vec())
                else {
                    continue;
                };
                tables.remove(user, *cursor, &mut row)?;
                let mut logged = value;
                logged[0] = LOGGED;
                logged[1..9].copy_from_slice(&expires.to_be_bytes());
                tables
                    .entries
                    .insert((user, *cursor), logged.as_slice())
                    .map_err(internal)?;
                row.logged += 1;
            }
            tables.trim(user, &mut row, &self.limits)?;
            tables.save_row(user, row)?;
            tables.save()?;
            (replay, cached)
        };
        // Durable: a handed-over message must not come back as cached after a crash
        // (it would be delivered twice), nor a reserved cursor be handed out again.
        self.commit(txn, true)?;
        let _ = cached;
        Ok(replay)
    }

    /// The replay of `user` from their entries, and the cursors of the cached ones.
    fn collect(
        &self,
        user: &str,
        after: u64,
        latest: u64,
        dropped: u64,
        entries: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    ) -> Result<(Replay, Vec<u64>), Error> {
        let now = now_ms();
        // A cursor from the future (a log lost with its data folder) resumes nothing.
        let future = after > latest;
        let mut replay = Replay {
            events_lost: after > 0 && (after < dropped || future),
            latest,
            ..Replay::default()
        };
        let mut cached = Vec::new();
        for item in entries
            .range((user, 0)..=(user, u64::MAX))
            .map_err(internal)?
        {
            let (key, value) = item.map_err(internal)?;
            let value = value.value();
            let cursor = key.value().1;
            if expiry_of(value) <= now {
                // Expired but not yet purged: as good as dropped.
                if after > 0 && cursor > after {
                    replay.events_lost = true;
                }
                continue;
            }
            let is_cached = kind_of(value) == CACHED;
            if !(is_cached || (after > 0 && !future && cursor > after)) {
                continue;
            }
            let Some(mut event) = event_of(value) else {
                tracing::warn!("event log: skipping an entry that does not decode");
                continue;
            };
            event.cursor = cursor;
            if is_cached {
                cached.push(cursor);
                replay.offline += 1;
            }
            replay.events.push((cursor, event));
        }
        Ok((replay, cached))
    }

    /// How many entries the log holds and how many bytes: for the metrics (the
    /// offline-cache gauges count the cached ones). Blocking (a short read).
    pub fn size(&self) -> Result<(u64, u64), Error> {
        let txn = self.inner.db.begin_read().map_err(internal)?;
        let bytes = txn
            .open_table(COUNTERS)
            .map_err(internal)?
            .get("bytes")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let cached = txn
            .open_table(SENDERS)
            .map_err(internal)?
            .iter()
            .map_err(internal)?
            .filter_map(Result::ok)
            .map(|(_, v)| v.value())
            .sum();
        Ok((cached, bytes))
    }

    /// The number of entries and the bytes of their values, cached or logged, and
    /// the file's size: for the benchmark. Blocking.
    pub fn footprint(&self) -> Result<(u64, u64), Error> {
        let txn = self.inner.db.begin_read().map_err(internal)?;
        let entries = txn.open_table(ENTRIES).map_err(internal)?;
        let mut bytes = 0;
        for item in entries.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            bytes += (key.value().0.len() + 8 + value.value().len()) as u64;
        }
        Ok((entries.len().map_err(internal)?, bytes))
    }

    /// Deletes every expired entry and dedup record; returns how many entries.
    pub async fn purge_expired(&self) -> Result<usize, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.purge_blocking())
            .await
            .map_err(|e| Error::Internal(format!("event log task: {e}")))?
    }

    fn purge_blocking(&self) -> Result<usize, Error> {
        let now = now_ms();
        let txn = self.begin()?;
        let purged = {
            let mut tables = Tables::open(&txn)?;
            let mut expired: Vec<(String, u64)> = Vec::new();
            for item in tables.entries.iter().map_err(internal)? {
                let (key, value) = item.map_err(internal)?;
                if expiry_of(value.value()) <= now {
                    let (user, cursor) = key.value();
                    expired.push((user.to_owned(), cursor));
                }
            }
            let mut i = 0;
            while i < expired.len() {
                let user = expired[i].0.clone();
                let mut row = tables.row(&user)?;
                while i < expired.len() && expired[i].0 == user {
                    tables.remove(&user, expired[i].1, &mut row)?;
                    row.dropped = row.dropped.max(expired[i].1);
                    i += 1;
                }
                tables.save_row(&user, row)?;
            }
            tables.save()?;
            let mut dedup = txn.open_table(DEDUP).map_err(internal)?;
            let mut stale: Vec<(String, String)> = Vec::new();
            for item in dedup.iter().map_err(internal)? {
                let (key, value) = item.map_err(internal)?;
                let expires = value
                    .value()
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                if expires <= now {
                    let (sender, id) = key.value();
                    stale.push((sender.to_owned(), id.to_owned()));
                }
            }
            for (sender, id) in &stale {
                dedup
                    .remove((sender.as_str(), id.as_str()))
                    .map_err(internal)?;
            }
            expired.len()
        };
        self.commit(txn, true)?;
        Ok(purged)
    }
}

/// Moves a layout-1/2 offline cache into the log as cached entries, recomputing the
/// byte total and per-sender counts.
fn migrate(txn: &WriteTransaction, from: u64, limits: &LogLimits) -> Result<(), Error> {
    let mut old: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let table = txn.open_table(OLD_MESSAGES).map_err(internal)?;
        for item in table.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            old.push((key.value().0.to_owned(), value.value().to_vec()));
        }
    }
    {
        let mut senders = txn.open_table(SENDERS).map_err(internal)?;
        let names: Vec<String> = senders
            .iter()
            .map_err(internal)?
            .filter_map(Result::ok)
            .map(|(k, _)| k.value().to_owned())
            .collect();
        for name in names {
            senders.remove(name.as_str()).map_err(internal)?;
        }
    }
    {
        let mut counters = txn.open_table(COUNTERS).map_err(internal)?;
        counters.insert("bytes", 0).map_err(internal)?;
        counters.remove("next_seq").map_err(internal)?;
    }
    let moved = old.len();
    {
        let mut tables = Tables::open(txn)?;
        for (user, value) in old {
            let expires = value
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let Some(mut message) = value
                .get(8..)
                .and_then(|b| pb::PeerMessageReceived::decode(b).ok())
            else {
                continue;
            };
            message.offline = true;
            let mut row = tables.row(&user)?;
            let cursor = tables.next(&mut row);
            let value = entry(CACHED, expires, &super::hub::peer_event(message));
            tables.append(&user, row, cursor, &value, limits)?;
        }
        tables.counters.insert("layout", LAYOUT).map_err(internal)?;
        tables.save()?;
    }
    txn.delete_table(OLD_MESSAGES).map_err(internal)?;
    tracing::info!(
        from,
        to = LAYOUT,
        moved,
        "offline cache moved into the event log"
    );
    Ok(())
}

/// Runs [`EventLog::purge_expired`] every `interval`, and [`EventLog::flush`] every
/// [`FLUSH_INTERVAL`], until `shutdown` turns true (then flushes once more).
pub fn spawn_purger(
    log: EventLog,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let flusher = log.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            let stopping = tokio::select! {
                _ = ticks.tick() => false,
                _ = stop.wait_for(|stop| *stop) => true,
            };
            let log = flusher.clone();
            let done =
                tokio::task::spawn_blocking(
                    move || {
                        if stopping { log.close() } else { log.flush() }
                    },
                );
            if let Ok(Err(e)) = done.await {
                tracing::warn!(error = %e, "event log: flushing");
            }
            if stopping {
                return;
            }
        }
    });
    spawn_periodic("expired events", interval, shutdown, move || {
        let log = log.clone();
        async move { log.purge_expired().await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn from(sender: &str, id: &str) -> pb::PeerMessageReceived {
        pb::PeerMessageReceived {
            sender_id: sender.into(),
            message_id: id.into(),
            ..Default::default()
        }
    }

    fn cache(log: &EventLog, to: &str, message: pb::PeerMessageReceived) -> Result<Sent, Error> {
        log.send_peer(to, message, true, None, |_, _| 0)
    }

    #[test]
    fn an_older_offline_cache_moves_into_the_log_with_its_counts() {
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
        let Ok(log) = EventLog::open(&path, quota) else {
            panic!("opens the old layout")
        };
        // The spammer's two old messages count against the quota of two.
        assert!(matches!(
            cache(&log, "dave", from("spammer", "new")),
            Err(Error::Refused(Reason::OfflineCacheFull, _))
        ));
        assert!(cache(&log, "dave", from("alice", "new")).is_ok());
        let Ok(bob) = log.replay("bob", 0) else {
            panic!("replays")
        };
        let ids: Vec<(u64, String)> = bob
            .events
            .into_iter()
            .map(|(cursor, e)| match e.event {
                Some(Kind::PeerMessage(m)) => (cursor, m.message_id),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [(1, "0".to_owned()), (2, "2".to_owned())]);
        assert_eq!(bob.offline, 2);
        // Handed over: the spammer may cache again.
        assert!(cache(&log, "erin", from("spammer", "again")).is_ok());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_but_the_log_is_not() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("a temp dir")
        };
        let small = LogLimits {
            max_bytes: 3 * 200,
            ..limits()
        };
        let Ok(log) = EventLog::open(&dir.path().join("c.redb"), small) else {
            panic!("opens")
        };
        let big = |sender: &str| pb::PeerMessageReceived {
            sender_id: sender.into(),
            message_id: "x".repeat(150),
            ..Default::default()
        };
        let kept = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .filter(|(i, s)| cache(&log, &format!("user{i}"), big(s)).is_ok())
            .count();
        assert_eq!(kept, 3, "three ~170-byte messages fit in 600 bytes");
        // Delivered messages are logged whatever the cache holds.
        let delivered = log.send_peer("user9", big("e"), false, None, |_, _| 1);
        assert!(matches!(
            delivered.map(|s| s.state),
            Ok(pb::PeerMessageState::Delivered)
        ));
        // Handing one over makes room.
        assert!(log.replay("user0", 0).is_ok());
        assert!(cache(&log, "user8", big("f")).is_ok());
    }
}
