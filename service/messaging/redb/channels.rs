//! Channel messages stored once, and memberships as spans of positions: what a
//! write transaction does to [`CHANNEL_LOG`], [`CHANNELS`] and [`SPANS`], and how a
//! read transaction finds a user's spans and a channel's entries.
//!
//! A member's events from a channel are the channel's entries inside one of their
//! spans `(join, leave)`: after the join's position and before the leave's. A channel
//! keeps at most `channel_size` messages for `channel_ttl` (the oldest dropped first;
//! the highest dropped position is kept, so a replay that needed it says events were
//! lost); a closed span is forgotten once every entry in it has been dropped, so
//! membership history lasts as long as the history it covers.

use redb::{ReadTransaction, ReadableTable};

use super::tables::{CHANNEL_LOG, CHANNELS, LogLimits, SPANS, Tables, expiry_of, internal, now_ms};
use crate::{error::Error, messaging::store::Span};

/// An entry's position and value.
pub type Positioned = (u64, Vec<u8>);

/// `leave` of a span that is still open.
pub const OPEN: u64 = u64::MAX;

/// The spans `(join, leave)` packed in a [`SPANS`] value.
pub fn unpack(value: &[u8]) -> Vec<(u64, u64)> {
    value
        .chunks_exact(16)
        .map(|c| {
            let (join, leave) = c.split_at(8);
            let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
            (word(join), word(leave))
        })
        .collect()
}

fn pack(spans: &[(u64, u64)]) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 * spans.len());
    for (join, leave) in spans {
        value.extend_from_slice(&join.to_be_bytes());
        value.extend_from_slice(&leave.to_be_bytes());
    }
    value
}

impl Tables<'_> {
    /// Appends a channel message (an entry's `value`) at position `seq`, then drops
    /// what is beyond the channel's limits.
    pub fn append_channel(
        &mut self,
        channel: &str,
        seq: u64,
        value: &[u8],
        limits: &LogLimits,
    ) -> Result<(), Error> {
        self.channel_log
            .insert((channel, seq), value)
            .map_err(internal)?;
        self.written += 1;
        let (held, dropped) = self.books(channel)?;
        self.trim_channel(channel, held + 1, dropped, limits)
    }

    /// A channel's (entries held, highest position dropped).
    fn books(&self, channel: &str) -> Result<(u64, u64), Error> {
        Ok(self
            .channels
            .get(channel)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or((0, 0)))
    }

    /// Drops `channel`'s expired entries and the oldest beyond `channel_size`, and
    /// saves its books.
    pub fn trim_channel(
        &mut self,
        channel: &str,
        mut held: u64,
        mut dropped: u64,
        limits: &LogLimits,
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut over = held.saturating_sub(limits.channel_size as u64);
        let mut gone = Vec::new();
        for item in self
            .channel_log
            .range((channel, 0)..=(channel, u64::MAX))
            .map_err(internal)?
        {
            let (key, value) = item.map_err(internal)?;
            if over == 0 && expiry_of(value.value()) > now {
                // The oldest live entry: later ones expire later.
                break;
            }
            gone.push(key.value().1);
            over = over.saturating_sub(1);
        }
        for seq in gone {
            self.channel_log.remove((channel, seq)).map_err(internal)?;
            held = held.saturating_sub(1);
            dropped = dropped.max(seq);
        }
        self.channels
            .insert(channel, (held, dropped))
            .map_err(internal)?;
        Ok(())
    }

    /// Opens a span of `user` in `channel` at position `seq` (a join), or closes the
    /// open one there (a leave).
    pub fn span(&mut self, user: &str, channel: &str, seq: u64, member: bool) -> Result<(), Error> {
        let mut spans = self
            .spans
            .get((user, channel))
            .map_err(internal)?
            .map(|v| unpack(v.value()))
            .unwrap_or_default();
        let open = spans.last().is_some_and(|(_, leave)| *leave == OPEN);
        match (member, open) {
            (true, false) => spans.push((seq, OPEN)),
            (false, true) => {
                if let Some(last) = spans.last_mut() {
                    last.1 = seq;
                }
            }
            // Already so (a membership from before spans were kept has none open:
            // a leave then records nothing to close).
            _ => return Ok(()),
        }
        self.spans
            .insert((user, channel), pack(&spans).as_slice())
            .map_err(internal)?;
        Ok(())
    }

    /// Drops every channel's expired entries, then forgets the closed spans that
    /// cover no entry any more. Returns how many entries went.
    pub fn purge_channels(&mut self, limits: &LogLimits) -> Result<usize, Error> {
        let mut books = Vec::new();
        for item in self.channels.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            books.push((key.value().to_owned(), value.value()));
        }
        let mut purged = 0;
        let mut oldest = std::collections::HashMap::new();
        for (channel, (held, dropped)) in books {
            self.trim_channel(&channel, held, dropped, limits)?;
            let (now_held, _) = self.books(&channel)?;
            purged += held.saturating_sub(now_held) as usize;
            let first = self
                .channel_log
                .range((channel.as_str(), 0)..=(channel.as_str(), u64::MAX))
                .map_err(internal)?
                .next()
                .transpose()
                .map_err(internal)?
                .map(|(key, _)| key.value().1);
            oldest.insert(channel, first.unwrap_or(OPEN));
        }
        let mut changed = Vec::new();
        for item in self.spans.iter().map_err(internal)? {
            let (key, value) = item.map_err(internal)?;
            let (user, channel) = key.value();
            let first = oldest.get(channel).copied().unwrap_or(OPEN);
            let spans = unpack(value.value());
            let kept: Vec<(u64, u64)> = spans
                .iter()
                .copied()
                .filter(|(_, leave)| *leave == OPEN || *leave > first)
                .collect();
            if kept.len() != spans.len() {
                changed.push((user.to_owned(), channel.to_owned(), kept));
            }
        }
        for (user, channel, kept) in changed {
            if kept.is_empty() {
                self.spans
                    .remove((user.as_str(), channel.as_str()))
                    .map_err(internal)?;
            } else {
                self.spans
                    .insert((user.as_str(), channel.as_str()), pack(&kept).as_slice())
                    .map_err(internal)?;
            }
        }
        Ok(purged)
    }
}

/// `user`'s spans that overlap the positions after `after` up to `until`.
pub fn spans_of(
    txn: &ReadTransaction,
    user: &str,
    after: u64,
    until: u64,
) -> Result<Vec<Span>, Error> {
    let table = txn.open_table(SPANS).map_err(internal)?;
    let mut found = Vec::new();
    for item in table.range((user, "")..).map_err(internal)? {
        let (key, value) = item.map_err(internal)?;
        let (owner, channel) = key.value();
        if owner != user {
            break;
        }
        for (join, leave) in unpack(value.value()) {
            if join < until && leave > after {
                found.push(Span {
                    channel: channel.to_owned(),
                    join,
                    leave,
                });
            }
        }
    }
    Ok(found)
}

/// `channel`'s live entries after `after` up to `until` (both positions), in order,
/// and whether any entry there was dropped (or expired and not yet purged).
pub fn channel_entries(
    txn: &ReadTransaction,
    channel: &str,
    after: u64,
    until: u64,
) -> Result<(Vec<Positioned>, bool), Error> {
    let books = txn.open_table(CHANNELS).map_err(internal)?;
    let dropped = books
        .get(channel)
        .map_err(internal)?
        .map(|v| v.value().1)
        .unwrap_or(0);
    let mut lost = dropped > after;
    let mut found = Vec::new();
    if after >= until {
        return Ok((found, false));
    }
    let table = txn.open_table(CHANNEL_LOG).map_err(internal)?;
    let now = now_ms();
    for item in table
        .range((channel, after + 1)..=(channel, until))
        .map_err(internal)?
    {
        let (key, value) = item.map_err(internal)?;
        if expiry_of(value.value()) <= now {
            lost = true;
            continue;
        }
        found.push((key.value().1, value.value().to_vec()));
    }
    Ok((found, lost))
}
