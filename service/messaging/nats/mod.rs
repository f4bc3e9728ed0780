//! The store of several replicas sharing NATS JetStream (`--bus`); see [`crate::bus`]
//! for what lives where.
//!
//! Every entry is a message of one JetStream stream ([`OFFLINE`]), its cursor the
//! stream sequence: a peer message to an online user is logged on the user's subject
//! (DELIVERED), to an offline one cached (CACHED) or not kept (PEER_UNREACHABLE); a
//! channel message is one entry on the channel's subject, and joins and leaves are
//! entries on the user's membership subject ([`channels`]). A user is online while
//! some replica holds a stream of theirs and answers probes for them ([`listen`]);
//! each replica follows the whole log in sequence order, once, and hands each entry
//! to its own streams of the user or of the channel's members. A send with a client
//! message ID claims it first ([`dedup`]), and its entry carries it as
//! `Nats-Msg-Id`.

mod append;
mod channels;
mod dedup;
mod listen;
mod outbox;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
};

use async_nats::{
    HeaderMap,
    client::RequestErrorKind,
    jetstream::{
        context::PublishErrorKind, message::PublishMessage as Publish, stream::DirectGetErrorKind,
    },
};
use bytes::Bytes;
use prost::Message as _;
use tracing::Instrument;

pub use outbox::NatsEvents;

use super::{
    event::{Dedup, Event, Sent, channel_event, peer_event},
    feed::{Feed, Stream},
    membership::Membership,
    roster::Roster,
    store::{Append, Entry, Handed, Hold, Kind, Span, Store},
};
use crate::{
    bus::{
        Bus, HANDED, OFFLINE, Stored,
        limits::{LeaseKind, Leases},
        token, unavailable,
    },
    error::Error,
    pb,
    telemetry::{self, otel_span},
};

/// The header saying what a log entry is: [`LOGGED`], [`CACHED`] or [`RESERVED`].
const KIND: &str = "Courier-Kind";
/// A delivered peer message or a channel message; expires after the log's TTL.
const LOGGED: &str = "logged";
/// A message cached while its receiver was offline; lives as long as the stream keeps
/// it, and is handed to the receiver's next stream.
const CACHED: &str = "cached";
/// The first entry of a user's log, holding no event: a cursor to resume after.
const RESERVED: &str = "reserved";
/// The header naming a request's operation on `courier.peer.<user>`.
const OP: &str = "Courier-Op";
/// Log entries read per batched direct get.
const BATCH: usize = 256;

/// The store of one replica among several. Cheap to clone.
#[derive(Clone)]
pub struct NatsStore {
    /// NATS.
    bus: Bus,
    /// The streams on this replica.
    feed: Feed,
    /// Cluster-wide leases of Subscribe streams.
    leases: Leases,
    /// The mirror of channel membership.
    membership: Membership,
    /// The presence listeners, one per user with a stream here.
    listeners: Arc<Mutex<HashMap<String, listen::Listener>>>,
    /// The follower of the whole log, which adds streams at its position.
    live: listen::Live,
}

impl NatsStore {
    /// The store of this replica on `bus`, handing entries to `feed`; starts the
    /// membership mirror.
    pub fn start(bus: Bus, leases: Leases, feed: Feed) -> Self {
        let (live, follow) = listen::Live::new();
        let store = Self {
            membership: Membership::start(bus.clone()),
            bus,
            feed: feed.clone(),
            leases,
            listeners: Arc::default(),
            live,
        };
        tokio::spawn(store.clone().follow(follow));
        // When a user's last stream here goes, stop listening for them, unless a new
        // stream is on its way.
        let listeners = store.listeners.clone();
        feed.set_on_last_gone(Arc::new(move |feed: &Feed, user: &str| {
            let mut listeners = listeners.lock().unwrap_or_else(|p| p.into_inner());
            if feed.has(user) {
                return;
            }
            let idle = listeners
                .get(user)
                .is_some_and(|l| l.pending.load(Ordering::Relaxed) == 0);
            if idle && let Some(listener) = listeners.remove(user) {
                listener.task.abort();
            }
        }));
        store
    }

    /// The entries of log `subject` from cursor `from` to `until` (both included), in
    /// cursor order, by batched direct gets; bounded by the most a user's log holds.
    async fn read_log(&self, subject: &str, from: u64, until: u64) -> Result<Vec<Stored>, Error> {
        let settings = self.bus.settings();
        let most = settings.offline_per_user.max(settings.log_size) + 2;
        let mut entries = Vec::new();
        let mut next = from;
        while next <= until && entries.len() <= most {
            let batch = self
                .bus
                .direct_get_batch(OFFLINE, subject, next, BATCH)
                .await?;
            let full = batch.len() == BATCH;
            for stored in batch {
                if stored.sequence > until {
                    return Ok(entries);
                }
                next = stored.sequence + 1;
                entries.push(stored);
            }
            if !full {
                break;
            }
        }
        Ok(entries)
    }

    /// Sends `op` to the replicas holding `user`'s streams: `None` when there are none
    /// (no responders), else the first answer.
    async fn ask(&self, user: &str, op: &str, payload: Bytes) -> Result<Option<u64>, Error> {
        self.bus.ensure_connected()?;
        let span = otel_span!("bus.request", op = %op, messaging.system = "nats");
        let mut headers = HeaderMap::new();
        headers.insert(OP, op);
        span.in_scope(|| telemetry::inject(&mut headers));
        match self
            .bus
            .client
            .request_with_headers(format!("courier.peer.{}", token(user)), headers, payload)
            .instrument(span)
            .await
        {
            Ok(reply) => Ok(Some(
                std::str::from_utf8(&reply.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(None),
            Err(e) => Err(unavailable("reaching the replica of a user", e)),
        }
    }

    /// The log's last position; an empty log gets a reserved entry first, so that
    /// the cursor a stream resumes after is never 0 (which means none).
    async fn last_position(&self) -> Result<u64, Error> {
        let last = self
            .bus
            .js
            .get_stream(OFFLINE)
            .await
            .map_err(|e| unavailable("reading the event log", e))?
            .cached_info()
            .state
            .last_sequence;
        if last > 0 {
            return Ok(last);
        }
        let reserved = "courier.offline.r".to_owned();
        Self::acked(
            self.append_subject(reserved, RESERVED, Bytes::new(), None)
                .await,
        )
        .await
    }

    /// A peer message: DELIVERED (logged) when the peer has a stream, CACHED when not
    /// and `cache` is set, else PEER_UNREACHABLE (nothing kept).
    async fn send_peer(
        &self,
        peer: &str,
        mut message: pb::PeerMessageReceived,
        cache: bool,
        msg_id: Option<String>,
    ) -> Result<Sent, Error> {
        let online = matches!(self.ask(peer, "probe", Bytes::new()).await?, Some(n) if n > 0);
        let (kind, state) = if online {
            (LOGGED, pb::PeerMessageState::Delivered)
        } else if cache {
            message.offline = true;
            (CACHED, pb::PeerMessageState::Cached)
        } else {
            return Ok(Sent::peer(&message, pb::PeerMessageState::PeerUnreachable));
        };
        let answer = Sent::peer(&message, state);
        let payload = Bytes::from(peer_event(message).encode_to_vec());
        let span = otel_span!("bus.request", op = "deliver", messaging.system = "nats");
        let ack = self
            .append_entry(peer, kind, payload, msg_id.as_deref())
            .instrument(span.clone())
            .await;
        Self::acked(ack).instrument(span).await?;
        Ok(answer)
    }
}

#[tonic::async_trait]
impl Store for NatsStore {
    async fn append(&self, append: Append, dedup: Option<Dedup>) -> Result<Sent, Error> {
        match append {
            Append::Peer {
                peer,
                message,
                cache,
            } => {
                let sender = message.sender_id.clone();
                let id = append::msg_id(&sender, dedup.as_ref(), &peer);
                let send = self.send_peer(&peer, message, cache, id);
                self.once(&sender, dedup.clone(), send).await
            }
            Append::Channel { message, .. } => {
                let sender = message.sender_id.clone();
                let channel = message.channel_id.clone();
                let sent = Sent::channel(&message);
                let payload = Bytes::from(channel_event(message).encode_to_vec());
                let id = append::msg_id(&sender, dedup.as_ref(), &channel);
                let send = async {
                    // Stored once; every replica hands it to its members' streams.
                    self.append_channel(&channel, payload, id)
                        .instrument(otel_span!(
                            "bus.publish",
                            op = "channel",
                            messaging.system = "nats"
                        ))
                        .await?;
                    Ok(sent)
                };
                self.once(&sender, dedup.clone(), send).await
            }
        }
    }

    async fn follow(&self, user: &str, stream: Stream, max: usize) -> Result<u64, Error> {
        self.add_stream(user, stream, max).await
    }

    async fn read(&self, user: &str, from: u64, until: u64) -> Result<Vec<Entry>, Error> {
        Ok(self
            .read_log(&log_subject(user), from, until)
            .await?
            .into_iter()
            .map(|stored| entry_of(stored.sequence, Some(&stored.headers), stored.payload))
            .collect())
    }

    async fn lost_after(&self, user: &str, after: u64) -> Result<bool, Error> {
        self.subject_lost(&log_subject(user), after).await
    }

    async fn spans(&self, user: &str, after: u64, until: u64) -> Result<Vec<Span>, Error> {
        self.read_spans(user, after, until).await
    }

    async fn read_channel(
        &self,
        channel: &str,
        after: u64,
        until: u64,
    ) -> Result<(Vec<Entry>, bool), Error> {
        let entries = self.read_channel_log(channel, after, until).await?;
        let lost = self
            .subject_lost(&channels::channel_subject(channel), after)
            .await?;
        Ok((entries, lost))
    }

    async fn handed(&self, user: &str) -> Result<Handed, Error> {
        let stream = self.bus.stream(HANDED).await?;
        match stream
            .direct_get_last_for_subject(handed_subject(user))
            .await
        {
            Ok(record) => Ok(Handed {
                upto: std::str::from_utf8(&record.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                version: record.sequence,
            }),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(Handed::default()),
            Err(e) => Err(unavailable("reading the handed-over offline messages", e)),
        }
    }

    async fn hand(&self, user: &str, upto: u64, expected: Option<u64>) -> Result<bool, Error> {
        let mut publish = Publish::build().payload(Bytes::from(upto.to_string()));
        if let Some(expected) = expected {
            publish = publish.expected_last_subject_sequence(expected);
        }
        let result = match self
            .bus
            .js
            .send_publish(handed_subject(user), publish)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(unavailable("recording handed-over offline messages", e)),
        }
    }

    async fn hold_stream(&self, user: &str, max: usize) -> Result<Option<Hold>, Error> {
        self.bus.ensure_connected()?;
        Ok(self
            .leases
            .acquire(LeaseKind::Stream, user, max)
            .await?
            .map(|lease| Box::new(lease) as Hold))
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        self.bus.ensure_connected()?;
        let answers = futures::future::join_all(
            users
                .iter()
                .map(|user| self.ask(user, "probe", Bytes::new())),
        )
        .await;
        // A replica that does not answer in time (dying, or hung) cannot deliver to
        // its users either: they count as offline.
        Ok(answers
            .into_iter()
            .map(|answer| matches!(answer, Ok(Some(n)) if n > 0))
            .collect())
    }

    fn replay_most(&self) -> usize {
        self.bus.settings().log_size
    }

    fn cached_per_user(&self) -> usize {
        self.bus.settings().offline_per_user
    }

    async fn catch_up(&self) -> Result<(), Error> {
        self.bus.ensure_connected()?;
        self.membership.catch_up().await
    }

    async fn set_member(&self, channel: &str, user: &str, member: bool) -> Result<(), Error> {
        self.bus.ensure_connected()?;
        // Its position first (the span's edge), then the record of who is a member.
        self.record_membership(channel, user, member).await?;
        self.membership.set(channel, user, member).await
    }

    fn roster(&self) -> &Roster {
        self.membership.roster()
    }
}

/// `courier.offline.<user>`: the user's event log.
fn log_subject(user: &str) -> String {
    format!("courier.offline.{}", token(user))
}

/// `courier.handed.<user>`.
fn handed_subject(user: &str) -> String {
    format!("courier.handed.{}", token(user))
}

/// The kind of a log entry; entries from before the log (plain cached messages)
/// have no header and count as cached.
fn kind_of(headers: Option<&HeaderMap>) -> &'static str {
    match headers.and_then(|h| h.get(KIND)).map(|v| v.as_str()) {
        Some(LOGGED) => LOGGED,
        Some(RESERVED | channels::MEMBER) => RESERVED,
        _ => CACHED,
    }
}

/// The log entry at `cursor` with `headers` and `payload`.
fn entry_of(cursor: u64, headers: Option<&HeaderMap>, payload: Bytes) -> Entry {
    let kind = match kind_of(headers) {
        LOGGED => Kind::Logged,
        RESERVED => Kind::Reserved,
        _ => Kind::Cached,
    };
    let event = (kind != Kind::Reserved)
        .then(|| decode_entry(headers, payload))
        .flatten()
        .map(|mut event| {
            event.cursor = cursor;
            Arc::new(event)
        });
    if kind != Kind::Reserved && event.is_none() {
        tracing::warn!("bus: skipping a log entry that does not decode");
    }
    Entry {
        cursor,
        kind,
        event,
    }
}

/// The event a log entry holds.
fn decode_entry(headers: Option<&HeaderMap>, payload: Bytes) -> Option<Event> {
    if headers.and_then(|h| h.get(KIND)).is_none() {
        let mut message = pb::PeerMessageReceived::decode(payload).ok()?;
        message.offline = true;
        return Some(peer_event(message));
    }
    Event::decode(payload).ok()
}
