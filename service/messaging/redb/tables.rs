//! The tables of one server's event log and how a write transaction changes them:
//! entries and their books (per-user rows, per-sender counts, the cached bytes), dedup
//! records, hand-over marks and channel membership.
//!
//! Every entry takes the next position of one sequence (the writer's, counter `seq`),
//! so a user's cursor is a position in it and increases, not by 1. A user's own
//! entries are kept as `(user, cursor)`:
//! - **logged**: a peer message that was DELIVERED to a live stream (and, from layout 3,
//!   a channel message copied to every member). At most `log_size` per user (the
//!   oldest dropped first), each for `log_ttl`.
//! - **cached**: a peer message for an offline user (the offline cache): at most
//!   `max_per_user` per receiver (oldest dropped first) for `ttl`, at most
//!   `max_per_sender` waiting from any one sender, at most `max_bytes` in all (past
//!   those, OFFLINE_CACHE_FULL and nothing kept). Once handed to a stream it becomes a
//!   logged entry (its cursor unchanged).
//!
//! A user's row holds their last cursor and the highest cursor dropped from their log
//! (by count or age): a client resuming after a cursor below it has lost events.
//!
//! A channel message is one entry `(channel, position)` of [`CHANNEL_LOG`] however many
//! members the channel has ([`super::channels`]); each membership is a span of
//! positions, from its join to its leave ([`SPANS`]), so a user's events are their own
//! entries merged with those of their channels within their spans.

use prost::Message as _;
use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::{
    error::{Error, Reason},
    messaging::event::{Dedup, Event, Sent, reused},
    pb::{self, subscribe_response::Event as Kind},
};

/// Entries: (user, cursor) → kind (1 byte), expiry (8 bytes, big-endian milliseconds
/// since the epoch), then the encoded `SubscribeResponse` (its cursor left 0).
pub const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("event_log");

/// Per user: (last cursor, highest cursor dropped, logged entries, cached entries).
pub const USERS: TableDefinition<&str, (u64, u64, u64, u64)> = TableDefinition::new("log_users");

/// Dedup records: (sender, client_message_id) → expiry (8 bytes), fingerprint (32
/// bytes), then the encoded first answer (a `SendPeerMessageResponse`).
pub const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");

/// The layout-1/2 offline cache: (receiver, seq) → expiry then `PeerMessageReceived`.
pub const OLD_MESSAGES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("offline_messages");

/// Counters: "bytes" the total size of the cached entries; "layout" the layout version
/// (absent: 1); "base" a floor of every cursor (set by older servers after a crash).
pub const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// How many cached entries each sender has waiting.
pub const SENDERS: TableDefinition<&str, u64> = TableDefinition::new("offline_senders");

/// Channel membership of one server: (channel, user), present while a member.
pub const MEMBERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("channel_members");

/// Per user: the cursor up to which cached messages were handed to a stream.
pub const HANDED: TableDefinition<&str, u64> = TableDefinition::new("handed");

/// Channel messages, stored once: (channel, position) → as [`ENTRIES`] (always logged).
pub const CHANNEL_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("channel_log");

/// Per channel: (entries held, highest position dropped).
pub const CHANNELS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("channel_books");

/// Memberships over time: (user, channel) → the spans `(join, leave)` of positions, 16
/// bytes each (big-endian; `leave` is `u64::MAX` while a member).
pub const SPANS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("member_spans");

/// Events for the event webhook: position → kind, expiry, time written, receiver, event
/// ([`super::outbox`]).
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("event_hook_outbox");

/// The layout this code writes: 4 stores a channel message once (3 copied it to every
/// member's log, with per-user cursors).
pub const LAYOUT: u64 = 4;

/// An entry's kind byte: logged.
pub const LOGGED: u8 = 0;
/// An entry's kind byte: cached.
pub const CACHED: u8 = 1;

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
    pub ttl: std::time::Duration,
    /// The most logged events kept per user (the oldest are dropped).
    pub log_size: usize,
    /// How long a logged event is kept.
    pub log_ttl: std::time::Duration,
    /// The most messages kept per channel (the oldest are dropped).
    pub channel_size: usize,
    /// How long a channel message is kept.
    pub channel_ttl: std::time::Duration,
}

impl LogLimits {
    /// When an entry of `kind` written now expires.
    pub fn expiry(&self, kind: u8) -> u64 {
        let ttl = if kind == CACHED {
            self.ttl
        } else {
            self.log_ttl
        };
        now_ms().saturating_add(ttl.as_millis() as u64)
    }
}

pub fn internal(e: impl Into<redb::Error>) -> Error {
    Error::Internal(format!("event log: {}", e.into()))
}

pub fn now_ms() -> u64 {
    crate::media::now_millis()
}

/// An entry's value.
pub fn entry(kind: u8, expires: u64, event: &Event) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + event.encoded_len());
    value.push(kind);
    value.extend_from_slice(&expires.to_be_bytes());
    let _ = event.encode(&mut value);
    value
}

pub fn kind_of(value: &[u8]) -> u8 {
    value.first().copied().unwrap_or(LOGGED)
}

pub fn expiry_of(value: &[u8]) -> u64 {
    value
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

pub fn event_of(value: &[u8]) -> Option<Event> {
    Event::decode(value.get(9..)?).ok()
}

/// The sender of a cached entry ("" when it does not decode).
fn sender_of(value: &[u8]) -> String {
    match event_of(value).and_then(|e| e.event) {
        Some(Kind::PeerMessage(m)) => m.sender_id,
        _ => String::new(),
    }
}

/// The expiry at the head of a dedup record.
pub fn dedup_expiry(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// A user's row: (last cursor, highest dropped, logged count, cached count).
#[derive(Debug, Clone, Copy, Default)]
pub struct Row {
    pub last: u64,
    pub dropped: u64,
    pub logged: u64,
    pub cached: u64,
}

impl From<(u64, u64, u64, u64)> for Row {
    fn from((last, dropped, logged, cached): (u64, u64, u64, u64)) -> Self {
        Self {
            last,
            dropped,
            logged,
            cached,
        }
    }
}

/// The tables of one write transaction.
pub struct Tables<'t> {
    pub entries: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    users: redb::Table<'t, &'static str, (u64, u64, u64, u64)>,
    pub counters: redb::Table<'t, &'static str, u64>,
    senders: redb::Table<'t, &'static str, u64>,
    dedup: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    handed: redb::Table<'t, &'static str, u64>,
    pub members: redb::Table<'t, (&'static str, &'static str), ()>,
    pub channel_log: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    pub channels: redb::Table<'t, &'static str, (u64, u64)>,
    pub spans: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub outbox: redb::Table<'t, u64, &'static [u8]>,
    /// Whether this transaction wrote outbox rows (the poster is woken after it).
    pub outboxed: bool,
    /// The last position taken.
    pub seq: u64,
    /// How many entries this transaction wrote (own and channel ones).
    pub written: u64,
    /// The total size of the cached entries.
    pub bytes: u64,
    /// Every cursor handed out is above it.
    base: u64,
    /// The rows read or changed in this transaction, written back once by
    /// [`Tables::save`]: a group that gives one user many entries reads and writes
    /// their row once.
    rows: std::collections::HashMap<String, Row>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, Error> {
        let counters = txn.open_table(COUNTERS).map_err(internal)?;
        let counter = |name: &str| -> Result<u64, Error> {
            Ok(counters
                .get(name)
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        let (bytes, base, seq) = (counter("bytes")?, counter("base")?, counter("seq")?);
        Ok(Self {
            base,
            bytes,
            seq,
            written: 0,
            channel_log: txn.open_table(CHANNEL_LOG).map_err(internal)?,
            channels: txn.open_table(CHANNELS).map_err(internal)?,
            spans: txn.open_table(SPANS).map_err(internal)?,
            outbox: txn.open_table(OUTBOX).map_err(internal)?,
            outboxed: false,
            rows: std::collections::HashMap::new(),
            entries: txn.open_table(ENTRIES).map_err(internal)?,
            users: txn.open_table(USERS).map_err(internal)?,
            senders: txn.open_table(SENDERS).map_err(internal)?,
            dedup: txn.open_table(DEDUP).map_err(internal)?,
            handed: txn.open_table(HANDED).map_err(internal)?,
            members: txn.open_table(MEMBERS).map_err(internal)?,
            counters,
        })
    }

    pub fn row(&self, user: &str) -> Result<Row, Error> {
        if let Some(row) = self.rows.get(user) {
            return Ok(*row);
        }
        Ok(self
            .users
            .get(user)
            .map_err(internal)?
            .map(|v| Row::from(v.value()))
            .unwrap_or_default())
    }

    pub fn save_row(&mut self, user: &str, row: Row) -> Result<(), Error> {
        match self.rows.get_mut(user) {
            Some(cached) => *cached = row,
            None => {
                self.rows.insert(user.to_owned(), row);
            }
        }
        Ok(())
    }

    pub fn waiting(&self, sender: &str) -> Result<u64, Error> {
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
    pub fn remove(&mut self, user: &str, cursor: u64, row: &mut Row) -> Result<(), Error> {
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
            self.count_sender(&sender_of(value), -1)?;
        } else {
            row.logged = row.logged.saturating_sub(1);
        }
        Ok(())
    }

    /// Drops a user's expired entries and the oldest beyond the limits.
    pub fn trim(&mut self, user: &str, row: &mut Row, limits: &LogLimits) -> Result<(), Error> {
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
            } else if kind != CACHED && logged_over > 0 {
                gone.push(cursor);
                logged_over -= 1;
            } else if kind != CACHED && cached_over == 0 {
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

    /// Takes the next position for an entry of `row`'s user. Past an older server's
    /// crash base, the user's cursors below it count as dropped: some may have been
    /// handed out and lost.
    pub fn next(&mut self, row: &mut Row) -> u64 {
        if row.last < self.base {
            row.dropped = row.dropped.max(self.base);
        }
        row.last = self.take();
        row.last
    }

    /// The position [`Tables::take`] gives next.
    pub fn peek(&self) -> u64 {
        self.start() + 1
    }

    /// Takes the next position of the sequence.
    pub fn take(&mut self) -> u64 {
        // 1 is never taken: it is the start of a stream on an empty log.
        self.seq = self.start() + 1;
        self.seq
    }

    /// The cursor a new stream starts after: the last position taken. The first one,
    /// 1, is reserved when the log is made, so that the `ready` cursor to resume after
    /// is never 0 (which means none).
    pub fn start(&self) -> u64 {
        self.seq.max(self.base).max(1)
    }

    /// Appends `value` for `user` at `cursor` (from [`Tables::next`] on `row`), drops
    /// what is beyond the limits, and saves the row.
    pub fn append(
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
        self.written += 1;
        if kind_of(value) == CACHED {
            row.cached += 1;
            self.bytes += value.len() as u64;
            self.count_sender(&sender_of(value), 1)?;
        } else {
            row.logged += 1;
        }
        self.trim(user, &mut row, limits)?;
        self.save_row(user, row)
    }

    /// Refuses a cached message of `len` bytes from `sender` past the sender's quota
    /// or the byte limit; the receiver's expired messages go first (they free room).
    pub fn check_cache(
        &mut self,
        peer: &str,
        sender: &str,
        len: usize,
        limits: &LogLimits,
    ) -> Result<(), Error> {
        let mut row = self.row(peer)?;
        self.trim(peer, &mut row, limits)?;
        self.save_row(peer, row)?;
        let waiting = self.waiting(sender)?;
        if waiting >= limits.max_per_sender {
            return Err(cache_full(format!(
                "{sender} already has {waiting} messages waiting for offline receivers, the most allowed; nothing was kept"
            )));
        }
        if self.bytes + len as u64 > limits.max_bytes {
            return Err(cache_full(
                "the server's offline cache is full; nothing was kept".into(),
            ));
        }
        Ok(())
    }

    /// The cursor up to which `user`'s cached messages were handed over.
    pub fn handed(&self, user: &str) -> Result<u64, Error> {
        Ok(self
            .handed
            .get(user)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Hands `user`'s cached entries up to `upto` over: they become logged entries
    /// (off the cache's books, expiring as logged ones), and the mark moves to `upto`.
    pub fn hand(&mut self, user: &str, upto: u64, limits: &LogLimits) -> Result<(), Error> {
        let mut row = self.row(user)?;
        let mut cached = Vec::new();
        for item in self
            .entries
            .range((user, 0)..=(user, upto))
            .map_err(internal)?
        {
            let (key, value) = item.map_err(internal)?;
            if kind_of(value.value()) == CACHED {
                cached.push((key.value().1, value.value().to_vec()));
            }
        }
        let expires = limits.expiry(LOGGED);
        for (cursor, mut value) in cached {
            self.remove(user, cursor, &mut row)?;
            value[0] = LOGGED;
            value[1..9].copy_from_slice(&expires.to_be_bytes());
            self.entries
                .insert((user, cursor), value.as_slice())
                .map_err(internal)?;
            row.logged += 1;
        }
        self.trim(user, &mut row, limits)?;
        self.save_row(user, row)?;
        let mark = self.handed(user)?.max(upto);
        self.handed.insert(user, mark).map_err(internal)?;
        Ok(())
    }

    /// The dedup record of `sender`'s `dedup`: the first answer, a refusal when the
    /// ID was used for another request, or `None` when it is new (or expired).
    pub fn check_dedup(&self, sender: &str, dedup: &Dedup) -> Result<Option<Sent>, Error> {
        let Some(value) = self
            .dedup
            .get((sender, dedup.client_message_id.as_str()))
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let value = value.value();
        if dedup_expiry(value) <= now_ms() {
            return Ok(None);
        }
        if value.get(8..40) != Some(&dedup.fingerprint[..]) {
            return Err(reused(&dedup.client_message_id));
        }
        let answer = pb::SendPeerMessageResponse::decode(value.get(40..).unwrap_or_default())
            .map_err(|e| Error::Internal(format!("event log: a dedup record: {e}")))?;
        Ok(Some(Sent::from_response(answer)))
    }

    /// Records `sent` as the first answer of `sender`'s `dedup`.
    pub fn save_dedup(&mut self, sender: &str, dedup: &Dedup, sent: &Sent) -> Result<(), Error> {
        let expires = now_ms().saturating_add(dedup.window.as_millis() as u64);
        let mut value = expires.to_be_bytes().to_vec();
        value.extend_from_slice(&dedup.fingerprint);
        let _ = sent.response().encode(&mut value);
        self.dedup
            .insert((sender, dedup.client_message_id.as_str()), value.as_slice())
            .map_err(internal)?;
        Ok(())
    }

    /// Deletes every expired dedup record.
    pub fn purge_dedup(&mut self, now: u64) -> Result<(), Error> {
        let mut stale: Vec<(String, String)> = Vec::new();
        for item in self.dedup.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            if dedup_expiry(value.value()) <= now {
                let (sender, id) = key.value();
                stale.push((sender.to_owned(), id.to_owned()));
            }
        }
        for (sender, id) in &stale {
            self.dedup
                .remove((sender.as_str(), id.as_str()))
                .map_err(internal)?;
        }
        Ok(())
    }

    /// Writes the rows and the byte total back.
    pub fn save(mut self) -> Result<(), Error> {
        for (user, row) in std::mem::take(&mut self.rows) {
            self.users
                .insert(
                    user.as_str(),
                    (row.last, row.dropped, row.logged, row.cached),
                )
                .map_err(internal)?;
        }
        self.counters
            .insert("bytes", self.bytes)
            .map_err(internal)?;
        self.counters.insert("seq", self.seq).map_err(internal)?;
        Ok(())
    }
}

fn cache_full(message: String) -> Error {
    Error::Refused(Reason::OfflineCacheFull, message)
}
