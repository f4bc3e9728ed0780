//! Channel messages stored once on the bus: a channel message is one entry of the log
//! stream on the channel's subject, `courier.offline.ch<channel>`, and each join or
//! leave an entry on the user's membership subject, `courier.offline.m<user>`, so
//! that every entry takes its position from the one stream sequence. (`c`+`h` and `m`
//! cannot begin a user's subject token, which is lowercase hexadecimal.) A user's
//! spans of membership are read back from their membership subject; a membership from
//! before spans were kept (or whose join fell out of the subject's cap) counts from
//! the start of the channel's history.

use std::collections::HashMap;

use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use futures::StreamExt;

use super::{Kind, LOGGED, NatsStore, entry_of};
use crate::{
    bus::{OFFLINE, token, unavailable},
    error::Error,
    messaging::store::{Entry, Span},
};

/// The kind header of a membership entry.
pub const MEMBER: &str = "member";

/// The subject of `channel`'s messages.
pub fn channel_subject(channel: &str) -> String {
    format!("courier.offline.ch{}", token(channel))
}

/// The subject of `user`'s joins and leaves.
pub fn spans_subject(user: &str) -> String {
    format!("courier.offline.m{}", token(user))
}

/// The payload of a membership entry: the channel's token, then `+` (joined) or `-`.
fn membership_payload(channel: &str, member: bool) -> Bytes {
    Bytes::from(format!(
        "{}{}",
        token(channel),
        if member { '+' } else { '-' }
    ))
}

impl NatsStore {
    /// Records a join or leave at its position in the log.
    pub(super) async fn record_membership(
        &self,
        channel: &str,
        user: &str,
        member: bool,
    ) -> Result<(), Error> {
        let ack = self
            .append_subject(
                spans_subject(user),
                MEMBER,
                membership_payload(channel, member),
                None,
            )
            .await;
        Self::acked(ack).await.map(|_| ())
    }

    /// `user`'s spans of membership overlapping the positions after `after` up to
    /// `until`.
    pub(super) async fn read_spans(
        &self,
        user: &str,
        after: u64,
        until: u64,
    ) -> Result<Vec<Span>, Error> {
        let mut open: HashMap<String, u64> = HashMap::new();
        let mut spans = Vec::new();
        for stored in self.read_log(&spans_subject(user), 1, until).await? {
            let text = String::from_utf8_lossy(&stored.payload).into_owned();
            let (channel, member) = match text.strip_suffix('+') {
                Some(channel) => (channel.to_owned(), true),
                None => (text.trim_end_matches('-').to_owned(), false),
            };
            let Some(channel) = crate::bus::from_token(&channel) else {
                continue;
            };
            match (member, open.remove(&channel)) {
                (true, None) => {
                    open.insert(channel, stored.sequence);
                }
                (true, Some(join)) => {
                    open.insert(channel, join);
                }
                (false, Some(join)) => spans.push(Span {
                    channel,
                    join,
                    leave: stored.sequence,
                }),
                (false, None) => {}
            }
        }
        // Memberships now held whose join is not on record count from the start.
        let roster = self.membership.roster();
        for channel in roster.channels_of(user) {
            let join = open.remove(&channel).unwrap_or(0);
            spans.push(Span {
                channel,
                join,
                leave: u64::MAX,
            });
        }
        spans.retain(|s| s.join < until && s.leave > after);
        Ok(spans)
    }

    /// `channel`'s messages after `after` up to `until`.
    pub(super) async fn read_channel_log(
        &self,
        channel: &str,
        after: u64,
        until: u64,
    ) -> Result<Vec<Entry>, Error> {
        if after >= until {
            return Ok(Vec::new());
        }
        Ok(self
            .read_log(&channel_subject(channel), after + 1, until)
            .await?
            .into_iter()
            .map(|stored| entry_of(stored.sequence, Some(&stored.headers), stored.payload))
            .filter(|entry| entry.kind == Kind::Logged)
            .collect())
    }

    /// Whether entries of log `subject` after position `after` were dropped. The log
    /// drops a subject's oldest first, by count (the stream's per-subject cap) or by
    /// age (a delivered event's TTL), so nothing after `after` was dropped while the
    /// subject's oldest entry held is at most `after` + 1. Past that, some were when
    /// the subject is at its cap, or when the entry at `after` (any subject's) is gone
    /// or older than the TTL: the gap may hold only others' entries, but the log
    /// cannot tell, so it reports them lost.
    pub(super) async fn subject_lost(&self, subject: &str, after: u64) -> Result<bool, Error> {
        let log = self.bus.stream(OFFLINE).await?;
        match log.direct_get_next_for_subject(subject, None).await {
            Ok(first) if first.sequence <= after + 1 => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("reading the event log", e)),
        }
        let settings = self.bus.settings();
        match log.direct_get(after).await {
            Ok(anchor) => {
                let age = time::OffsetDateTime::now_utc() - anchor.time;
                if age.unsigned_abs() > settings.log_ttl {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(unavailable("reading the event log", e)),
        }
        let mut held = 0;
        let mut subjects = log
            .info_with_subjects(subject)
            .await
            .map_err(|e| unavailable("reading the event log", e))?;
        while let Some(found) = subjects.next().await {
            let (name, count) = found.map_err(|e| unavailable("reading the event log", e))?;
            if name == subject {
                held = count;
            }
        }
        Ok(held >= settings.offline_per_user.max(settings.log_size))
    }

    /// Appends a channel message once, on the channel's subject.
    pub(super) async fn append_channel(
        &self,
        channel: &str,
        payload: Bytes,
        msg_id: Option<String>,
    ) -> Result<u64, Error> {
        let ack = self
            .append_subject(channel_subject(channel), LOGGED, payload, msg_id.as_deref())
            .await;
        Self::acked(ack).await
    }
}
