//! Opening a server's event log (moving an older layout's offline cache into it),
//! purging what expired, and reading its size for the gauges.
//!
//! Layout 3 replaced layouts 1 and 2's `offline_messages` table with the log; opening
//! an older file moves its cached messages into the log once. Layout 4 stores a
//! channel message once: opening a layout-3 file starts the one sequence above every
//! cursor handed out before (so pre-upgrade cursors stay valid: the channel messages
//! copied into members' logs stay there as their own entries) and opens a span at
//! that position for every membership.

use std::{path::Path, time::Duration};

use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use super::RedbStore;
use super::tables::{
    CACHED, CHANNEL_LOG, CHANNELS, COUNTERS, DEDUP, ENTRIES, HANDED, LAYOUT, LogLimits, MEMBERS,
    OLD_MESSAGES, OUTBOX, SENDERS, SPANS, Tables, USERS, entry, expiry_of, internal, now_ms,
};
use crate::{error::Error, messaging::event::peer_event, pb, periodic::spawn_periodic};

/// Opens (or creates) the database at `path`, migrating an older layout, with every
/// table created so that readers find them.
/// `path` `None`: in memory, kept for as long as the process runs.
pub fn open(path: Option<&Path>, limits: &LogLimits) -> Result<Database, Error> {
    let db = match path {
        Some(path) => Database::create(path).map_err(internal)?,
        None => Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(internal)?,
    };
    let txn = db.begin_write().map_err(internal)?;
    {
        let layout = txn
            .open_table(COUNTERS)
            .map_err(internal)?
            .get("layout")
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(1);
        if layout < LAYOUT {
            migrate(&txn, layout, limits)?;
        }
        txn.open_table(ENTRIES).map_err(internal)?;
        txn.open_table(CHANNEL_LOG).map_err(internal)?;
        txn.open_table(CHANNELS).map_err(internal)?;
        txn.open_table(SPANS).map_err(internal)?;
        txn.open_table(DEDUP).map_err(internal)?;
        txn.open_table(MEMBERS).map_err(internal)?;
        txn.open_table(HANDED).map_err(internal)?;
        txn.open_table(USERS).map_err(internal)?;
        txn.open_table(SENDERS).map_err(internal)?;
        txn.open_table(OUTBOX).map_err(internal)?;
        // Older servers marked a running log, to raise cursors after a crash; every
        // commit is durable now, so nothing is lost in one.
        txn.open_table(COUNTERS)
            .map_err(internal)?
            .remove("running")
            .map_err(internal)?;
    }
    txn.commit().map_err(internal)?;
    Ok(db)
}

/// Every (channel, user) membership recorded.
pub fn memberships(db: &Database) -> Result<Vec<(String, String)>, Error> {
    let txn = db.begin_read().map_err(internal)?;
    let table = txn.open_table(MEMBERS).map_err(internal)?;
    let mut all = Vec::new();
    for item in table.iter().map_err(internal)? {
        let (key, _) = item.map_err(internal)?;
        let (channel, user) = key.value();
        all.push((channel.to_owned(), user.to_owned()));
    }
    Ok(all)
}

/// How many cached messages the log holds and their bytes.
pub fn size(db: &Database) -> Result<(u64, u64), Error> {
    let txn = db.begin_read().map_err(internal)?;
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

/// Deletes every expired entry (own and channel ones) and dedup record, and the
/// membership spans that cover nothing any more; returns how many entries.
pub fn purge(db: &Database, limits: &LogLimits) -> Result<usize, Error> {
    let now = now_ms();
    let txn = db.begin_write().map_err(internal)?;
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
        tables.purge_dedup(now)?;
        tables.purge_outbox(now)?;
        let channels = tables.purge_channels(limits)?;
        tables.save()?;
        expired.len() + channels
    };
    txn.commit().map_err(internal)?;
    Ok(purged)
}

/// Brings a file of layout `from` to [`LAYOUT`].
fn migrate(txn: &WriteTransaction, from: u64, limits: &LogLimits) -> Result<(), Error> {
    if from < 3 {
        move_old_cache(txn, from, limits)?;
    }
    open_spans(txn)?;
    txn.open_table(COUNTERS)
        .map_err(internal)?
        .insert("layout", LAYOUT)
        .map_err(internal)?;
    Ok(())
}

/// Starts the one sequence above every cursor handed out, and opens a span there for
/// every membership.
fn open_spans(txn: &WriteTransaction) -> Result<(), Error> {
    let mut highest = 0;
    for item in txn
        .open_table(USERS)
        .map_err(internal)?
        .iter()
        .map_err(internal)?
    {
        let (_, row) = item.map_err(internal)?;
        highest = highest.max(row.value().0);
    }
    let members = {
        let table = txn.open_table(MEMBERS).map_err(internal)?;
        let mut all = Vec::new();
        for item in table.iter().map_err(internal)? {
            let (key, _) = item.map_err(internal)?;
            let (channel, user) = key.value();
            all.push((channel.to_owned(), user.to_owned()));
        }
        all
    };
    let mut tables = Tables::open(txn)?;
    tables.seq = tables.seq.max(highest);
    // Above every cursor handed out (a fresh log has none: it starts at 1).
    let start = if highest > 0 || !members.is_empty() {
        tables.take()
    } else {
        tables.start()
    };
    for (channel, user) in &members {
        tables.span(user, channel, start, true)?;
    }
    tables.save()?;
    tracing::info!(
        start,
        memberships = members.len(),
        "event log: channel messages are stored once from here on"
    );
    Ok(())
}

/// Moves a layout-1/2 offline cache into the log as cached entries, recomputing the
/// byte total and per-sender counts.
fn move_old_cache(txn: &WriteTransaction, from: u64, limits: &LogLimits) -> Result<(), Error> {
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
            let value = entry(CACHED, expires, &peer_event(message));
            tables.append(&user, row, cursor, &value, limits)?;
        }
        tables.save()?;
    }
    txn.delete_table(OLD_MESSAGES).map_err(internal)?;
    tracing::info!(
        from,
        to = 3,
        moved,
        "offline cache moved into the event log"
    );
    Ok(())
}

/// Runs [`RedbStore::purge_expired`] every `interval` until `shutdown` turns true.
pub fn spawn_purger(
    store: RedbStore,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_periodic("expired events", interval, shutdown, move || {
        let store = store.clone();
        async move { store.purge_expired().await }
    })
}
