//! The one writer of a server's event log: it takes every change waiting in its
//! queue, applies them in queue order in one write transaction, commits with one
//! fsync, then queues the committed events on the streams and answers each change.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use redb::Database;
use tokio::sync::{mpsc, oneshot};

use super::{
    outbox::Outbox,
    tables::{CACHED, LOGGED, LogLimits, Tables, entry, internal, now_ms},
};
use crate::{
    error::Error,
    messaging::{
        event::{Dedup, Event, Sent, channel_event, peer_event},
        feed::{Feed, Permit, Stream},
        outbox::HookKind,
        roster::Roster,
        store::Append,
    },
    metrics::{self, METRICS},
    pb,
};

/// The most changes one group takes.
const GROUP_MOST: usize = 4096;

/// A change for the writer, with where its answer goes.
// Nearly every change is a send: boxing it to shrink the rare others would allocate
// once more per send.
#[allow(clippy::large_enum_variant)]
pub enum Op {
    /// A send ([`crate::messaging::store::Store::append`]).
    Append {
        append: Append,
        dedup: Option<Dedup>,
        answer: oneshot::Sender<Result<Sent, Error>>,
    },
    /// A stream to add after the last committed entry of its user.
    Follow {
        user: String,
        stream: Stream,
        max: usize,
        answer: oneshot::Sender<Result<u64, Error>>,
    },
    /// A hand-over of cached messages.
    Hand {
        user: String,
        upto: u64,
        expected: Option<u64>,
        answer: oneshot::Sender<Result<bool, Error>>,
    },
    /// A membership change.
    Member {
        channel: String,
        user: String,
        member: bool,
        answer: oneshot::Sender<Result<(), Error>>,
    },
}

/// What a group does once committed, per change, in queue order.
enum Then {
    /// Queue `event` at `cursor` on the places held, then answer.
    Deliver(Vec<(Vec<Permit>, Arc<Event>, u64)>, Answer<Sent>),
    /// Answer a stream's registration with the cursor it starts after.
    Answer(oneshot::Sender<Result<u64, Error>>, Result<u64, Error>),
    /// Apply the membership change.
    Member(String, String, bool, oneshot::Sender<Result<(), Error>>),
    /// Answer.
    Hand(Answer<bool>),
}

/// An answer and what it is.
type Answer<T> = (oneshot::Sender<Result<T, Error>>, Result<T, Error>);

/// The writer's state.
struct Writer {
    db: Arc<Database>,
    limits: LogLimits,
    feed: Feed,
    roster: Roster,
    /// Entries committed, for [`super::RedbStore::entries_written`].
    written: Arc<AtomicU64>,
    /// The event webhook's outbox, written with the entries.
    outbox: Outbox,
}

/// Starts the writer thread on `queue`; it ends when every sender is gone.
pub fn start(
    db: Arc<Database>,
    limits: LogLimits,
    feed: Feed,
    roster: Roster,
    written: Arc<AtomicU64>,
    outbox: Outbox,
    mut queue: mpsc::Receiver<Op>,
) -> Result<(), Error> {
    let writer = Writer {
        db,
        limits,
        feed,
        roster,
        written,
        outbox,
    };
    std::thread::Builder::new()
        .name("event-log-writer".into())
        .spawn(move || {
            while let Some(first) = queue.blocking_recv() {
                let mut ops = vec![first];
                while ops.len() < GROUP_MOST {
                    match queue.try_recv() {
                        Ok(op) => ops.push(op),
                        Err(_) => break,
                    }
                }
                writer.group(ops);
            }
        })
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("event log: starting the writer: {e}")))
}

impl Writer {
    /// Applies `ops` in one transaction, commits, then delivers and answers.
    fn group(&self, ops: Vec<Op>) {
        let started = Instant::now();
        let size = ops.len();
        let mut then = Vec::with_capacity(size);
        let committed = self.apply(ops, &mut then);
        metrics::record_group(size, started.elapsed());
        match committed {
            Ok(()) => self.finish(then),
            Err(e) => self.fail(then, &e),
        }
    }

    /// Applies every op in one write transaction and commits it durably. An op that
    /// is refused (a full cache, a reused ID) changes nothing; a storage error fails
    /// the whole group.
    fn apply(&self, ops: Vec<Op>, then: &mut Vec<Then>) -> Result<(), Error> {
        let mut ops = ops.into_iter();
        let (written, outboxed);
        let txn = match self.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                then.extend(ops.map(pending));
                return Err(internal(e));
            }
        };
        {
            let mut tables = match Tables::open(&txn) {
                Ok(tables) => tables,
                Err(e) => {
                    then.extend(ops.map(pending));
                    return Err(e);
                }
            };
            // This group's membership changes, in order, for its channel messages.
            let mut changes = Vec::new();
            while let Some(op) = ops.next() {
                match self.apply_one(&mut tables, op, then, &mut changes) {
                    Ok(()) => {}
                    Err(e) => {
                        then.extend(ops.map(pending));
                        return Err(e);
                    }
                }
            }
            written = tables.written;
            outboxed = tables.outboxed;
            tables.save()?;
        }
        txn.commit().map_err(internal)?;
        if outboxed {
            self.outbox.ready.notify_one();
        }
        self.written.fetch_add(written, Ordering::Relaxed);
        METRICS
            .log_entries_written
            .fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one op; its outcome (or refusal) goes to `then`. Errors only when the
    /// storage failed.
    fn apply_one(
        &self,
        tables: &mut Tables<'_>,
        op: Op,
        then: &mut Vec<Then>,
        changes: &mut Vec<(String, String, bool)>,
    ) -> Result<(), Error> {
        match op {
            Op::Append {
                append,
                dedup,
                answer,
            } => {
                let mut deliveries = Vec::new();
                let sent = self.append(tables, append, dedup.as_ref(), &mut deliveries, changes);
                if let Err(e @ Error::Internal(_)) = sent {
                    self.feed
                        .failed(deliveries.into_iter().flat_map(|(p, _, _)| p).collect());
                    let _ = answer.send(Err(Error::Internal(format!("{e}"))));
                    return Err(e);
                }
                then.push(Then::Deliver(deliveries, (answer, sent)));
            }
            Op::Follow {
                user,
                stream,
                max,
                answer,
            } => {
                let start = tables.start();
                // Added here, in queue order: the changes after it in this group
                // hold places on it too. Should the group fail, the caller's error
                // drops the stream.
                let added = self.feed.add(&user, stream, start, max).map(|()| start);
                then.push(Then::Answer(answer, added));
            }
            Op::Hand {
                user,
                upto,
                expected,
                answer,
            } => {
                let current = tables.handed(&user)?;
                let taken = expected.is_none_or(|e| e == current);
                if taken {
                    tables.hand(&user, upto, &self.limits)?;
                }
                then.push(Then::Hand((answer, Ok(taken))));
            }
            Op::Member {
                channel,
                user,
                member,
                answer,
            } => {
                if member {
                    tables
                        .members
                        .insert((channel.as_str(), user.as_str()), ())
                        .map_err(internal)?;
                } else {
                    tables
                        .members
                        .remove((channel.as_str(), user.as_str()))
                        .map_err(internal)?;
                }
                // A join or leave takes its position: the channel's messages after
                // it are the member's, or no longer.
                let seq = tables.take();
                tables.span(&user, &channel, seq, member)?;
                changes.push((channel.clone(), user.clone(), member));
                then.push(Then::Member(channel, user, member, answer));
            }
        }
        Ok(())
    }

    /// Appends one send, unless its dedup ID repeats a recorded send; holds places on
    /// the receivers' streams for each entry.
    fn append(
        &self,
        tables: &mut Tables<'_>,
        append: Append,
        dedup: Option<&Dedup>,
        deliveries: &mut Vec<(Vec<Permit>, Arc<Event>, u64)>,
        changes: &[(String, String, bool)],
    ) -> Result<Sent, Error> {
        let sender = match &append {
            Append::Peer { message, .. } => message.sender_id.clone(),
            Append::Channel { message, .. } => message.sender_id.clone(),
        };
        if let Some(dedup) = dedup
            && let Some(first) = tables.check_dedup(&sender, dedup)?
        {
            return Ok(first);
        }
        let sent = match append {
            Append::Peer {
                peer,
                message,
                cache,
            } => self.append_peer(tables, &peer, message, cache, deliveries)?,
            Append::Channel { message, .. } => {
                // Stored once, at one position: every member's cursor for it.
                let sent = Sent::channel(&message);
                let channel = message.channel_id.clone();
                let seq = tables.take();
                let mut event = channel_event(message);
                event.cursor = seq;
                let event = Arc::new(event);
                let expires = now_ms().saturating_add(self.limits.channel_ttl.as_millis() as u64);
                let value = entry(LOGGED, expires, &event);
                tables.append_channel(&channel, seq, &value, &self.limits)?;
                self.outbox
                    .record(tables, seq, HookKind::Channel, "", &event, expires)?;
                // The members as of this position: the roster as committed, with
                // this group's earlier joins and leaves.
                let mut members: Vec<String> = self.roster.members(&channel).to_vec();
                for (_, user, member) in changes.iter().filter(|(c, ..)| *c == channel) {
                    members.retain(|m| m != user);
                    if *member {
                        members.push(user.clone());
                    }
                }
                for member in members.iter().filter(|m| **m != sender) {
                    let permits = self.feed.reserve(member, seq);
                    if !permits.is_empty() {
                        deliveries.push((permits, event.clone(), seq));
                    }
                }
                sent
            }
        };
        if let Some(dedup) = dedup {
            tables.save_dedup(&sender, dedup, &sent)?;
        }
        Ok(sent)
    }

    /// A peer message takes `peer`'s next cursor. Held by a live stream: logged,
    /// DELIVERED. Else, with `cache`, cached, CACHED; else nothing kept,
    /// PEER_UNREACHABLE.
    fn append_peer(
        &self,
        tables: &mut Tables<'_>,
        peer: &str,
        mut message: pb::PeerMessageReceived,
        cache: bool,
        deliveries: &mut Vec<(Vec<Permit>, Arc<Event>, u64)>,
    ) -> Result<Sent, Error> {
        // The position it takes if it is kept (a send not kept takes none).
        let cursor = tables.peek();
        let permits = self.feed.reserve(peer, cursor);
        if !permits.is_empty() {
            let mut row = tables.row(peer)?;
            tables.next(&mut row);
            let event = Arc::new(peer_event(message.clone()));
            let expires = self.limits.expiry(LOGGED);
            let value = entry(LOGGED, expires, &event);
            tables.append(peer, row, cursor, &value, &self.limits)?;
            self.outbox
                .record(tables, cursor, HookKind::Delivered, peer, &event, expires)?;
            deliveries.push((permits, event, cursor));
            return Ok(Sent::peer(&message, pb::PeerMessageState::Delivered));
        }
        if !cache {
            return Ok(Sent::peer(&message, pb::PeerMessageState::PeerUnreachable));
        }
        message.offline = true;
        let sent = Sent::peer(&message, pb::PeerMessageState::Cached);
        let sender = message.sender_id.clone();
        let expires = self.limits.expiry(CACHED);
        let event = peer_event(message);
        let value = entry(CACHED, expires, &event);
        tables.check_cache(peer, &sender, value.len(), &self.limits)?;
        let mut row = tables.row(peer)?;
        let cursor = tables.next(&mut row);
        tables.append(peer, row, cursor, &value, &self.limits)?;
        self.outbox
            .record(tables, cursor, HookKind::Cached, peer, &event, expires)?;
        Ok(sent)
    }

    /// After the commit: queues the events, adds the streams, applies membership, and
    /// answers, in queue order.
    fn finish(&self, then: Vec<Then>) {
        let mut delivered = 0;
        for step in then {
            match step {
                Then::Deliver(deliveries, (answer, sent)) => {
                    for (permits, event, cursor) in deliveries {
                        delivered += permits.len();
                        for permit in permits {
                            permit.send(event.clone(), cursor);
                        }
                    }
                    let _ = answer.send(sent);
                }
                Then::Answer(answer, added) => {
                    let _ = answer.send(added);
                }
                Then::Member(channel, user, member, answer) => {
                    self.roster.apply(&channel, &user, member);
                    let _ = answer.send(Ok(()));
                }
                Then::Hand((answer, taken)) => {
                    let _ = answer.send(taken);
                }
            }
        }
        METRICS
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
    }

    /// The commit failed: nothing of the group is kept; the streams promised its
    /// events are ended, and every change is answered with the error.
    fn fail(&self, then: Vec<Then>, error: &Error) {
        tracing::error!(%error, "event log: a group failed to commit");
        for step in then {
            match step {
                Then::Deliver(deliveries, (answer, _)) => {
                    self.feed
                        .failed(deliveries.into_iter().flat_map(|(p, _, _)| p).collect());
                    let _ = answer.send(failed(error));
                }
                Then::Answer(answer, _) => {
                    let _ = answer.send(failed(error));
                }
                Then::Member(.., answer) => {
                    let _ = answer.send(failed(error));
                }
                Then::Hand((answer, _)) => {
                    let _ = answer.send(failed(error));
                }
            }
        }
    }
}

/// The answer of a change whose group failed.
fn failed<T>(error: &Error) -> Result<T, Error> {
    Err(Error::Internal(format!("{error}")))
}

/// An op that was not applied: it is answered with the group's error.
fn pending(op: Op) -> Then {
    match op {
        Op::Append { answer, .. } => Then::Deliver(
            Vec::new(),
            (
                answer,
                failed(&Error::Internal("event log: not applied".into())),
            ),
        ),
        Op::Follow { answer, .. } => Then::Answer(
            answer,
            failed(&Error::Internal("event log: not applied".into())),
        ),
        Op::Hand { answer, .. } => Then::Hand((
            answer,
            failed(&Error::Internal("event log: not applied".into())),
        )),
        Op::Member {
            channel,
            user,
            member,
            answer,
        } => Then::Member(channel, user, member, answer),
    }
}
