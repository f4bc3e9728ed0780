//! One server's source of webhook events: an outbox table ([`OUTBOX`]) keyed by the
//! log's position, written by the writer in the same transaction as the entries it
//! tells of (only the events subscribed to, only while an event hook is configured),
//! and a cursor (`event_hook_cursor` in [`COUNTERS`]) up to which they were posted.
//! Settling moves the cursor in memory; a flush deletes the posted rows and saves
//! the cursor in one write transaction (not fsynced on its own: it reaches disk with
//! the writer's next commit, or at once on shutdown; a crash before that posts those
//! events again, which is why delivery is at least once).
//!
//! A row expires with the entry it tells of (`--offline-ttl` for a cached message):
//! an event still unposted then is skipped (counted `expired`) and the purger deletes
//! it, so a backend down for longer than the log keeps messages loses those events.

use std::{sync::Arc, time::Duration};

use prost::Message as _;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::Notify;

use super::tables::{COUNTERS, OUTBOX, Tables, internal, now_ms};
use crate::{
    error::Error,
    messaging::{
        event::Event,
        outbox::{EventSource, HookEvent, HookEvents, HookKind},
    },
    metrics,
};

/// The counter holding the position up to which events were posted.
const CURSOR: &str = "event_hook_cursor";

/// What the writer needs to fill the outbox.
#[derive(Clone, Default)]
pub struct Outbox {
    /// The events subscribed to; `None`: no event hook, no outbox rows.
    pub events: Option<HookEvents>,
    /// Woken after a commit that wrote outbox rows.
    pub ready: Arc<Notify>,
}

impl Outbox {
    /// Records `event` of `kind` at `sequence` when it is subscribed to, expiring at
    /// `expires` (milliseconds since the epoch).
    pub fn record(
        &self,
        tables: &mut Tables<'_>,
        sequence: u64,
        kind: HookKind,
        recipient: &str,
        event: &Event,
        expires: u64,
    ) -> Result<(), Error> {
        if !self.events.is_some_and(|events| events.wants(kind)) {
            return Ok(());
        }
        let recipient = recipient.as_bytes();
        let mut value = Vec::with_capacity(19 + recipient.len() + event.encoded_len());
        value.push(kind.byte());
        value.extend_from_slice(&expires.to_be_bytes());
        value.extend_from_slice(&now_ms().to_be_bytes());
        value.extend_from_slice(&(recipient.len() as u16).to_be_bytes());
        value.extend_from_slice(recipient);
        let _ = event.encode(&mut value);
        tables
            .outbox
            .insert(sequence, value.as_slice())
            .map_err(internal)?;
        tables.outboxed = true;
        Ok(())
    }
}

/// A row's expiry.
fn expiry(value: &[u8]) -> u64 {
    u64_at(value, 1)
}

fn u64_at(value: &[u8], at: usize) -> u64 {
    value
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The event a row holds; `None` when it does not decode.
fn decode(sequence: u64, value: &[u8]) -> Option<HookEvent> {
    let kind = HookKind::from_byte(*value.first()?)?;
    let written_ms = u64_at(value, 9);
    let len = u16::from_be_bytes(value.get(17..19)?.try_into().ok()?) as usize;
    let recipient = std::str::from_utf8(value.get(19..19 + len)?).ok()?;
    let event = Event::decode(value.get(19 + len..)?).ok()?;
    Some(HookEvent {
        sequence,
        kind,
        recipient: recipient.to_owned(),
        event,
        written_ms,
    })
}

impl Tables<'_> {
    /// Deletes the outbox rows that expired (the hook was down, or is no longer
    /// configured, for longer than the log keeps them); returns how many.
    pub fn purge_outbox(&mut self, now: u64) -> Result<usize, Error> {
        let mut stale = Vec::new();
        for item in self.outbox.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            if expiry(value.value()) <= now {
                stale.push(key.value());
            }
        }
        for sequence in &stale {
            self.outbox.remove(sequence).map_err(internal)?;
        }
        Ok(stale.len())
    }
}

/// The outbox as an [`EventSource`].
pub struct RedbEvents {
    db: Arc<Database>,
    ready: Arc<Notify>,
    /// Events up to it were settled (in memory).
    cursor: u64,
    /// The cursor as last flushed.
    flushed: u64,
}

impl RedbEvents {
    /// The source over `db`'s outbox, from its saved cursor.
    pub fn open(db: Arc<Database>, ready: Arc<Notify>) -> Result<Self, Error> {
        let cursor = {
            let txn = db.begin_read().map_err(internal)?;
            txn.open_table(COUNTERS)
                .map_err(internal)?
                .get(CURSOR)
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0)
        };
        Ok(Self {
            db,
            ready,
            cursor,
            flushed: cursor,
        })
    }

    /// The live rows after the cursor, at most `most`; expired ones are settled and
    /// counted here.
    async fn read(&mut self, most: usize) -> Result<Vec<(HookEvent, u64)>, Error> {
        let db = self.db.clone();
        let after = self.cursor;
        let (events, skipped_to) = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(OUTBOX).map_err(internal)?;
            let now = now_ms();
            let mut events = Vec::new();
            let mut skipped_to = None;
            for item in table.range(after + 1..).map_err(internal)? {
                let (key, value) = item.map_err(internal)?;
                let (sequence, value) = (key.value(), value.value());
                if expiry(value) <= now {
                    metrics::event_hook_post("expired");
                    tracing::warn!(
                        sequence,
                        "event hook: an event expired before it was posted"
                    );
                    skipped_to = Some(sequence);
                    continue;
                }
                match decode(sequence, value) {
                    Some(event) => events.push((event, sequence)),
                    None => {
                        tracing::warn!(sequence, "event hook: skipping a row that does not decode");
                        skipped_to = Some(sequence);
                        continue;
                    }
                }
                if events.len() >= most {
                    break;
                }
            }
            Ok::<_, Error>((events, skipped_to))
        })
        .await
        .map_err(|e| Error::Internal(format!("event hook task: {e}")))??;
        // Skipped rows before the first live one count as settled.
        if let Some(skipped) = skipped_to {
            let first = events.first().map_or(u64::MAX, |(_, s)| *s);
            if skipped < first {
                self.cursor = self.cursor.max(skipped);
            }
        }
        Ok(events)
    }
}

#[tonic::async_trait]
impl EventSource for RedbEvents {
    /// The row's position.
    type Held = u64;

    async fn next(&mut self, most: usize, wait: Duration) -> Result<Vec<(HookEvent, u64)>, Error> {
        let events = self.read(most).await?;
        if !events.is_empty() {
            return Ok(events);
        }
        // A commit that wrote rows after the read above left a permit: no wake-up is
        // missed.
        let _ = tokio::time::timeout(wait, self.ready.notified()).await;
        self.read(most).await
    }

    async fn settle(&mut self, sequence: u64) -> Result<(), Error> {
        self.cursor = self.cursor.max(sequence);
        Ok(())
    }

    async fn flush(&mut self, last: bool) -> Result<(), Error> {
        if self.cursor == self.flushed && !last {
            return Ok(());
        }
        let (db, cursor) = (self.db.clone(), self.cursor);
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(internal)?;
            if !last {
                txn.set_durability(Durability::None)
                    .map_err(|e| Error::Internal(format!("event log: {e}")))?;
            }
            {
                let mut outbox = txn.open_table(OUTBOX).map_err(internal)?;
                let posted: Vec<u64> = outbox
                    .range(..=cursor)
                    .map_err(internal)?
                    .filter_map(Result::ok)
                    .map(|(k, _)| k.value())
                    .collect();
                for sequence in posted {
                    outbox.remove(sequence).map_err(internal)?;
                }
                txn.open_table(COUNTERS)
                    .map_err(internal)?
                    .insert(CURSOR, cursor)
                    .map_err(internal)?;
            }
            txn.commit().map_err(internal)
        })
        .await
        .map_err(|e| Error::Internal(format!("event hook task: {e}")))??;
        self.flushed = cursor;
        Ok(())
    }
}
