//! The router of several replicas sharing NATS JetStream (`--bus`); see [`crate::bus`]
//! for what lives where.
//!
//! Each replica keeps its own Subscribe streams in [`LocalStreams`]. While a user has
//! a stream here, this replica listens on `courier.peer.<user>` and answers *probe*
//! (is the user online here). A send to a user with no listener anywhere gets "no
//! responders" from NATS at once: the user is offline.
//!
//! Every message for a user is an entry in their event log in JetStream (a subject
//! of [`OFFLINE`]), its cursor the stream sequence: a peer message to an online user
//! is logged (DELIVERED), to an offline one cached (CACHED) or not kept
//! (PEER_UNREACHABLE); a channel message is logged for every member. A Subscribe
//! stream replays the log (batched direct gets up to the user's latest entry), then
//! follows it through the entries JetStream republishes on `courier.live.<user>`,
//! which this replica's listener of the user hands to each of the user's streams here:
//! no JetStream consumer per stream. Each republished entry names the previous entry
//! of the same user, so a gap (a core message lost, or missed while the connection
//! to NATS was down) is seen and filled from the log: no gap, no duplicate, in cursor
//! order, on whichever replica the user connects to. A send with a client message
//! ID claims it in [`DEDUP`] first, and the log entries carry it as `Nats-Msg-Id`.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    client::RequestErrorKind,
    jetstream::{
        context::{PublishAckFuture, PublishError, PublishErrorKind},
        message::PublishMessage as Publish,
        stream::DirectGetErrorKind,
    },
};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use rand::RngCore;
use tokio::{
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot, watch,
    },
    task::AbortHandle,
};
use tracing::Instrument;

use super::{
    hub::{
        Event, HubLimits, Router, Subscription, not_a_member, peer_event, too_many_channels,
        too_many_streams,
    },
    log::{Dedup, Replay, Sent, reused},
    membership::Membership,
    streams::{LocalStreams, Queued},
};
use crate::{
    bus::{
        Bus, DEDUP, HANDED, LIVE_PREFIX, OFFLINE, Stored,
        limits::{LeaseKind, Leases, is_subject_full},
        token, unavailable,
    },
    error::{Error, Reason},
    metrics::METRICS,
    pb::{self, subscribe_response::Event as Kind},
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
/// The header of a dedup record holding the request's fingerprint (hex).
const FINGERPRINT: &str = "Courier-Fingerprint";
/// How long a retry waits for the answer of a first send still in progress.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The header naming a request's operation on `courier.peer.<user>`.
const OP: &str = "Courier-Op";
/// How long a new stream waits for its listener to be registered with NATS.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Log entries written per atomic batch (NATS's default ceiling, `max_msgs`).
const ATOMIC_MOST: usize = 1000;
/// Atomic batches this replica keeps open at once (NATS's default ceiling is 50 per
/// stream, for every replica together).
const OPEN_BATCHES: usize = 8;
/// How many times a batch NATS refused whole is sent again.
const BATCH_TRIES: u32 = 40;
/// Log entries read per batched direct get.
const BATCH: usize = 256;
/// How long a listener keeps trying to fill a gap from the log before it ends the
/// streams concerned (they reconnect and resume after their cursor).
const FILL_WAIT: Duration = Duration::from_secs(30);

/// The router of one replica among several. Cheap to clone.
#[derive(Clone)]
pub struct BusRouter {
    /// NATS.
    bus: Bus,
    /// The Subscribe streams on this replica.
    streams: LocalStreams,
    /// Cluster-wide leases of Subscribe streams.
    leases: Leases,
    /// The mirror of channel membership.
    membership: Membership,
    /// The limits.
    limits: HubLimits,
    /// The listeners on `courier.peer.<user>`, one per user with a stream here.
    listeners: Arc<Mutex<HashMap<String, Listener>>>,
    /// Permits for the atomic batches this replica has open.
    open_batches: Arc<tokio::sync::Semaphore>,
}

/// A task listening on `courier.peer.<user>` (probes) and `courier.live.<user>` (the
/// user's log entries, republished), handing entries to the user's streams here.
struct Listener {
    /// Turns true once NATS has registered both subscriptions.
    ready: watch::Receiver<bool>,
    /// Stops the task (which unsubscribes).
    task: AbortHandle,
    /// Adds, starts and removes the user's streams.
    control: mpsc::UnboundedSender<Control>,
}

/// What a listener is told about the user's streams on this replica.
enum Control {
    /// A new stream: from now on, entries are kept for it until it starts.
    Add {
        id: u64,
        tx: mpsc::Sender<Queued>,
        too_slow: Arc<AtomicBool>,
        added: oneshot::Sender<()>,
    },
    /// The stream's replay went up to `latest`: hand it every entry after that.
    Start { id: u64, latest: u64 },
    /// The stream ended.
    Remove { id: u64 },
}

/// One of the user's streams, as its listener sees it.
struct Follower {
    /// Where its live events go.
    tx: mpsc::Sender<Queued>,
    /// Set when it is cut off as too slow.
    too_slow: Arc<AtomicBool>,
    /// The last cursor it has; `None` until it starts.
    last: Option<u64>,
    /// Entries that came before it started, in order.
    waiting: Vec<Arc<Entry>>,
}

/// A log entry as a listener hands it on.
struct Entry {
    /// Its cursor (stream sequence).
    cursor: u64,
    /// The sequence of the user's previous entry when it was stored (0: unknown), from
    /// a republished entry; `None` for one read from the log.
    previous: Option<u64>,
    /// [`LOGGED`], [`CACHED`] or [`RESERVED`].
    kind: &'static str,
    /// The event, with its cursor; `None` for a reserved entry or one that does not
    /// decode.
    event: Option<Arc<Event>>,
    /// Its headers (the trace context of the send).
    headers: Option<HeaderMap>,
}

impl Entry {
    /// An entry read from the log.
    fn stored(stored: Stored) -> Self {
        Self::new(stored.sequence, None, Some(stored.headers), stored.payload)
    }

    /// An entry republished on `courier.live.<user>`; `None` if it lacks a sequence.
    fn republished(message: async_nats::Message) -> Option<Self> {
        let headers = message.headers?;
        let sequence =
            |name: &str| -> Option<u64> { headers.get_last(name)?.as_str().parse().ok() };
        let cursor = sequence("Nats-Sequence")?;
        let previous = sequence("Nats-Last-Sequence").unwrap_or(0);
        Some(Self::new(
            cursor,
            Some(previous),
            Some(headers),
            message.payload,
        ))
    }

    fn new(cursor: u64, previous: Option<u64>, headers: Option<HeaderMap>, payload: Bytes) -> Self {
        let kind = kind_of(headers.as_ref());
        let event = (kind != RESERVED)
            .then(|| decode_entry(headers.as_ref(), payload))
            .flatten()
            .map(|mut event| {
                event.cursor = cursor;
                Arc::new(event)
            });
        if kind != RESERVED && event.is_none() {
            tracing::warn!("bus: skipping a log entry that does not decode");
        }
        Self {
            cursor,
            previous,
            kind,
            event,
            headers,
        }
    }
}

/// Removes a stream from its listener when dropped.
struct Unfollow {
    control: mpsc::UnboundedSender<Control>,
    id: u64,
}

impl Drop for Unfollow {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Remove { id: self.id });
    }
}

impl BusRouter {
    /// The router of this replica on `bus`; starts the channel listener and the
    /// membership mirror.
    pub async fn start(bus: Bus, leases: Leases, limits: HubLimits) -> Result<Self, Error> {
        let listeners: Arc<Mutex<HashMap<String, Listener>>> = Arc::default();
        let gone_listeners = listeners.clone();
        // When a user's last stream here goes, stop listening for them, unless a new
        // stream came in the meantime.
        let on_last_gone = Arc::new(move |streams: &LocalStreams, user: &str| {
            let mut listeners = gone_listeners.lock().unwrap_or_else(|p| p.into_inner());
            if streams.has(user) {
                return;
            }
            if let Some(listener) = listeners.remove(user) {
                listener.task.abort();
            }
        });
        let streams = LocalStreams::new(limits.subscriber_buffer, Some(on_last_gone));
        let router = Self {
            membership: Membership::start(bus.clone()),
            bus,
            streams,
            leases,
            limits,
            listeners,
            open_batches: Arc::new(tokio::sync::Semaphore::new(OPEN_BATCHES)),
        };
        Ok(router)
    }

    /// Listens on `courier.peer.<user>` and `courier.live.<user>` unless already
    /// listening; returns once NATS has the subscriptions, so an entry stored after
    /// this reaches the listener, with the listener's control channel.
    async fn listen_to(&self, user: &str) -> Result<mpsc::UnboundedSender<Control>, Error> {
        let (mut ready, control) = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            match listeners.get(user) {
                Some(listener) => (listener.ready.clone(), listener.control.clone()),
                None => {
                    let (ready_tx, ready) = watch::channel(false);
                    let (control, orders) = mpsc::unbounded_channel();
                    let task = tokio::spawn(self.clone().listen(user.to_owned(), ready_tx, orders));
                    listeners.insert(
                        user.to_owned(),
                        Listener {
                            ready: ready.clone(),
                            task: task.abort_handle(),
                            control: control.clone(),
                        },
                    );
                    (ready, control)
                }
            }
        };
        match tokio::time::timeout(LISTEN_WAIT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(control),
            _ => Err(unavailable("listening for a user's messages", "timed out")),
        }
    }

    /// The listener task of one user: answers probes, and hands the user's log
    /// entries to their streams here.
    async fn listen(
        self,
        user: String,
        ready: watch::Sender<bool>,
        mut orders: mpsc::UnboundedReceiver<Control>,
    ) {
        let subject = format!("courier.peer.{}", token(&user));
        let live_subject = format!("{LIVE_PREFIX}.{}", token(&user));
        let (mut probes, mut live) = loop {
            let subscribed = async {
                let probes = self.bus.client.subscribe(subject.clone()).await?;
                let live = self.bus.client.subscribe(live_subject.clone()).await?;
                self.bus.client.flush().await?;
                Ok::<_, async_nats::Error>((probes, live))
            };
            match subscribed.await {
                Ok(subscribed) => break subscribed,
                Err(e) => tracing::warn!(error = %e, "bus: listening for a user's messages"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = ready.send(true);
        let mut connections = self.bus.connections();
        connections.mark_unchanged();
        let mut followers: HashMap<u64, Follower> = HashMap::new();
        loop {
            tokio::select! {
                request = probes.next() => {
                    let Some(request) = request else { break };
                    self.answer(&user, request).await;
                }
                message = live.next() => {
                    let Some(message) = message else { break };
                    let Some(entry) = Entry::republished(message) else { continue };
                    let entry = Arc::new(entry);
                    for follower in followers.values_mut() {
                        if follower.last.is_none() {
                            follower.waiting.push(entry.clone());
                        }
                    }
                    self.hand_on(&user, &mut followers, None, &entry).await;
                }
                order = orders.recv() => {
                    let Some(order) = order else { break };
                    match order {
                        Control::Add { id, tx, too_slow, added } => {
                            followers.insert(id, Follower { tx, too_slow, last: None, waiting: Vec::new() });
                            let _ = added.send(());
                        }
                        Control::Start { id, latest } => {
                            let Some(follower) = followers.get_mut(&id) else { continue };
                            follower.last = Some(latest);
                            for entry in std::mem::take(&mut follower.waiting) {
                                self.hand_on(&user, &mut followers, Some(id), &entry).await;
                            }
                        }
                        Control::Remove { id } => {
                            followers.remove(&id);
                        }
                    }
                }
                changed = connections.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Entries stored while the connection was down were not
                    // republished to us: read them from the log.
                    self.catch_up(&user, &mut followers).await;
                }
            }
        }
    }

    /// Answers a probe: is `user` online here.
    async fn answer(&self, user: &str, request: async_nats::Message) {
        let op = request
            .headers
            .as_ref()
            .and_then(|h| h.get(OP))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let span = otel_span!("bus.receive", op = %op, messaging.system = "nats");
        telemetry::continue_remote(&span, request.headers.as_ref());
        let answer: u64 = async {
            match op.as_str() {
                "probe" => u64::from(self.streams.has(user)),
                _ => 0,
            }
        }
        .instrument(span)
        .await;
        if let Some(reply) = request.reply {
            let _ = self
                .bus
                .client
                .publish(reply, Bytes::from(answer.to_string()))
                .await;
        }
    }

    /// Hands `entry` to the started streams (only to `only` when given) that do not
    /// have it yet, first filling from the log any entries between a stream's last
    /// cursor and this one that it missed.
    async fn hand_on(
        &self,
        user: &str,
        followers: &mut HashMap<u64, Follower>,
        only: Option<u64>,
        entry: &Arc<Entry>,
    ) {
        let owed = |id: &u64, follower: &Follower| {
            only.is_none_or(|only| only == *id)
                && follower.last.is_some_and(|last| last < entry.cursor)
        };
        // A stream missed entries when this one's previous is after its last cursor
        // (or unknown, and the cursors are not adjacent).
        let gap_from = followers
            .iter()
            .filter(|(id, f)| owed(id, f))
            .filter_map(|(_, f)| f.last)
            .filter(|last| match entry.previous {
                Some(0) => *last + 1 < entry.cursor,
                Some(previous) => previous > *last,
                None => false,
            })
            .min();
        if let Some(from) = gap_from {
            let ids: Vec<u64> = followers
                .iter()
                .filter(|(id, f)| owed(id, f))
                .map(|(id, _)| *id)
                .collect();
            self.fill(user, followers, &ids, from, entry.cursor).await;
        }
        let ids: Vec<u64> = followers
            .iter()
            .filter(|(id, f)| owed(id, f))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        self.give(user, followers, &ids, entry).await;
    }

    /// Queues `entry` on the streams `ids` that do not have it (in the trace of the
    /// send); a cached message queued on one is recorded as handed over.
    async fn give(
        &self,
        user: &str,
        followers: &mut HashMap<u64, Follower>,
        ids: &[u64],
        entry: &Arc<Entry>,
    ) {
        let op = match entry.event.as_deref().and_then(|e| e.event.as_ref()) {
            Some(Kind::ChannelMessage(_)) => "channel",
            _ => "deliver",
        };
        let span = otel_span!("bus.receive", op = op, messaging.system = "nats");
        telemetry::continue_remote(&span, entry.headers.as_ref());
        let delivered = span.in_scope(|| deliver(user, followers, ids, entry));
        if delivered && entry.kind == CACHED {
            // Cached as the user came online: handed over now, not again.
            if let Err(e) = self.hand(user, entry.cursor, None).await {
                tracing::warn!(error = %e, "bus: recording a handed-over message");
            }
        }
    }

    /// Reads `user`'s entries after `from` and before `before` from the log and hands
    /// each to the streams `ids` that do not have it. Retries while the bus is down;
    /// streams it cannot serve in order are ended (they resume after their cursor).
    async fn fill(
        &self,
        user: &str,
        followers: &mut HashMap<u64, Follower>,
        ids: &[u64],
        from: u64,
        before: u64,
    ) {
        if from + 1 >= before {
            return;
        }
        let subject = log_subject(user);
        let deadline = Instant::now() + FILL_WAIT;
        let entries = loop {
            match self.read_log(&subject, from + 1, before - 1).await {
                Ok(entries) => break entries,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => {
                    // Ends them: the client resumes after its last cursor.
                    for id in ids {
                        followers.remove(id);
                    }
                    return;
                }
            }
        };
        for stored in entries {
            self.give(user, followers, ids, &Arc::new(Entry::stored(stored)))
                .await;
        }
    }

    /// After a reconnection to NATS: hands the started streams every entry stored
    /// since their last cursor (the republished ones went nowhere meanwhile).
    async fn catch_up(&self, user: &str, followers: &mut HashMap<u64, Follower>) {
        let Some(from) = followers.values().filter_map(|f| f.last).min() else {
            return;
        };
        let latest = match self.latest(user).await {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(error = %e, "bus: catching up after a reconnection");
                return;
            }
        };
        let ids: Vec<u64> = followers
            .iter()
            .filter(|(_, f)| f.last.is_some())
            .map(|(id, _)| *id)
            .collect();
        self.fill(user, followers, &ids, from, latest + 1).await;
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

    /// Appends `event` of `kind` to `user`'s log (a delivered event expires after the
    /// log's TTL, a cached one lives as long as the stream keeps it); `msg_id` makes a
    /// retried append stored once. Returns the ack to await.
    async fn append(
        &self,
        user: &str,
        kind: &'static str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let publish = Publish::build()
            .headers(self.entry_headers(kind, msg_id))
            .payload(payload);
        self.bus.js.send_publish(log_subject(user), publish).await
    }

    /// The headers of a log entry of `kind`: the kind, the trace of the send (the
    /// stream that reads it continues it), the TTL of a delivered event, and the
    /// `Nats-Msg-Id` that makes a retried append stored once.
    fn entry_headers(&self, kind: &'static str, msg_id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(KIND, kind);
        telemetry::inject(&mut headers);
        if kind == LOGGED {
            let ttl = self.bus.settings().log_ttl.max(Duration::from_secs(1));
            headers.insert("Nats-TTL", ttl.as_secs().to_string());
        }
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        headers
    }

    /// Appends `payload` of `kind` to the logs of `users` (with a send's `dedup`) as
    /// JetStream atomic batches of at most [`ATOMIC_MOST`] entries: stored together,
    /// one fsync and one ack per batch, in consecutive cursors. NATS keeps few batches
    /// open per stream (50 by default) and refuses the rest whole, so this replica
    /// keeps at most [`OPEN_BATCHES`] open, and a refused batch (nothing of it stored)
    /// is sent again after a short pause, a bounded number of times.
    async fn append_all(
        &self,
        users: &[String],
        kind: &'static str,
        payload: Bytes,
        sender: &str,
        dedup: Option<&Dedup>,
    ) -> Result<(), Error> {
        for chunk in users.chunks(ATOMIC_MOST) {
            let mut attempt = 0u32;
            loop {
                let result = {
                    let _open = self
                        .open_batches
                        .acquire()
                        .await
                        .map_err(|e| unavailable("writing to the event log", e))?;
                    self.append_batch(chunk, kind, &payload, sender, dedup)
                        .await
                };
                match result {
                    Ok(()) => break,
                    Err(e) if is_batch_refused(&e) && attempt < BATCH_TRIES => {
                        attempt += 1;
                        let pause = 5 * u64::from(attempt) + rand::rng().next_u64() % 10;
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    Err(e) => return Err(log_error(e)),
                }
            }
        }
        Ok(())
    }

    /// Sends one atomic batch: every entry but the last on core NATS, the last with
    /// the commit header, awaiting its ack.
    async fn append_batch(
        &self,
        users: &[String],
        kind: &'static str,
        payload: &Bytes,
        sender: &str,
        dedup: Option<&Dedup>,
    ) -> Result<(), PublishError> {
        // 64 random bits: unique among the batches open at once (10 s at most).
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let batch = hex::encode(id);
        for (i, user) in users.iter().enumerate() {
            let mut headers = self.entry_headers(kind, msg_id(sender, dedup, user).as_deref());
            headers.insert("Nats-Batch-Id", batch.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string());
            if i + 1 == users.len() {
                headers.insert("Nats-Batch-Commit", "1");
                let publish = Publish::build().headers(headers).payload(payload.clone());
                self.bus
                    .js
                    .send_publish(log_subject(user), publish)
                    .await?
                    .await?;
            } else if let Err(e) = self
                .bus
                .client
                .publish_with_headers(log_subject(user), headers, payload.clone())
                .await
            {
                return Err(PublishError::with_source(PublishErrorKind::Other, e));
            }
        }
        Ok(())
    }

    /// Waits for the ack of an append (its cursor), mapping a full log to
    /// OFFLINE_CACHE_FULL.
    async fn acked(ack: Result<PublishAckFuture, PublishError>) -> Result<u64, Error> {
        match ack {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        }
        .map(|ack| ack.sequence)
        .map_err(log_error)
    }

    /// Claims `sender`'s `dedup` ID, or returns the first answer given for it (after
    /// waiting, bounded, while the first send is still in progress elsewhere).
    async fn claim(&self, sender: &str, dedup: &Dedup) -> Result<Claim, Error> {
        let subject = dedup_subject(sender, &dedup.client_message_id);
        let fingerprint = hex::encode(dedup.fingerprint);
        let stream = self.bus.stream(DEDUP).await?;
        let deadline = Instant::now() + ANSWER_WAIT;
        loop {
            let publish = Publish::build()
                .header(FINGERPRINT, fingerprint.as_str())
                .expected_last_subject_sequence(0);
            let claimed = match self.bus.js.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(ack) => return Ok(Claim::Mine(ack.sequence)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => return Err(unavailable("recording a client message ID", e)),
            }
            match stream.direct_get_last_for_subject(subject.clone()).await {
                Ok(record) => {
                    let theirs = record
                        .headers
                        .get(FINGERPRINT)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    if theirs != fingerprint {
                        return Err(reused(&dedup.client_message_id));
                    }
                    if !record.payload.is_empty() {
                        let answer = pb::SendPeerMessageResponse::decode(record.payload)
                            .map_err(|e| Error::Internal(format!("a dedup record: {e}")))?;
                        return Ok(Claim::Answered(Sent {
                            state: answer.state(),
                            message_id: answer.message_id,
                            server_time: answer.server_time,
                        }));
                    }
                }
                // Gone in between (expired, or released by a failed first send).
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable("reading a client message ID", e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the first send with this client_message_id is still in progress; retry shortly"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Records the answer of a claimed send, or releases the claim when it failed (a
    /// retry then sends afresh).
    async fn settle(&self, sender: &str, dedup: &Dedup, claim: u64, result: &Result<Sent, Error>) {
        let subject = dedup_subject(sender, &dedup.client_message_id);
        match result {
            Ok(sent) => {
                let answer = pb::SendPeerMessageResponse {
                    message_id: sent.message_id.clone(),
                    server_time: sent.server_time,
                    state: sent.state.into(),
                };
                let publish = Publish::build()
                    .payload(Bytes::from(answer.encode_to_vec()))
                    .header(FINGERPRINT, hex::encode(dedup.fingerprint).as_str())
                    .expected_last_subject_sequence(claim);
                let recorded = match self.bus.js.send_publish(subject, publish).await {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = recorded {
                    tracing::warn!(error = %e, "bus: recording the answer of a send");
                }
            }
            Err(_) => {
                let released = match self.bus.stream(DEDUP).await {
                    Ok(stream) => stream
                        .purge()
                        .filter(subject)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = released {
                    tracing::warn!(error = %e, "bus: releasing a client message ID");
                }
            }
        }
    }

    /// Runs `send` once per `dedup` ID: a retry gets the first answer.
    async fn once<F>(&self, sender: &str, dedup: Option<Dedup>, send: F) -> Result<Sent, Error>
    where
        F: Future<Output = Result<Sent, Error>> + Send,
    {
        self.bus.ensure_connected()?;
        let Some(dedup) = dedup else {
            return send.await;
        };
        let claim = match self.claim(sender, &dedup).await? {
            Claim::Answered(first) => return Ok(first),
            Claim::Mine(claim) => claim,
        };
        let result = send.await;
        self.settle(sender, &dedup, claim, &result).await;
        result
    }

    /// The sequence up to which `user`'s cached messages were handed to a stream, and
    /// the stream sequence of that record (0 when there is none).
    async fn handed(&self, user: &str) -> Result<(u64, u64), Error> {
        let stream = self.bus.stream(HANDED).await?;
        match stream
            .direct_get_last_for_subject(handed_subject(user))
            .await
        {
            Ok(record) => Ok((
                std::str::from_utf8(&record.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                record.sequence,
            )),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok((0, 0)),
            Err(e) => Err(unavailable("reading the handed-over offline messages", e)),
        }
    }

    /// Records that `user`'s cached messages up to `upto` were handed over, if the
    /// record is still at `expected` (its stream sequence): false when another stream
    /// took them first.
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

    /// What a new stream of `user` is owed up to `latest`: the cached messages not yet
    /// handed over and, when `after` > 0, the events after it, in cursor order.
    async fn replay(&self, user: &str, after: u64, latest: u64) -> Result<Replay, Error> {
        let log = self.bus.stream(OFFLINE).await?;
        let subject = log_subject(user);
        let (handed, handed_at) = self.handed(user).await?;
        // A cursor from the future (a log lost with NATS's store) resumes nothing.
        let future = after > latest;
        let resume = if future { 0 } else { after };
        let mut replay = Replay {
            latest,
            events_lost: after > 0 && future,
            ..Replay::default()
        };
        if resume > 0 {
            replay.events_lost = self.lost_after(&log, &subject, resume).await?;
        }
        let next = if resume > 0 {
            resume.min(handed)
        } else {
            handed
        } + 1;
        let mut taken = Vec::new();
        for stored in self.read_log(&subject, next, latest).await? {
            let cursor = stored.sequence;
            let owed_cached = kind_of(Some(&stored.headers)) == CACHED && cursor > handed;
            if !(owed_cached || (resume > 0 && cursor > resume)) {
                continue;
            }
            // Reserved, or not decodable (warned of): nothing to send.
            let Some(event) = Entry::stored(stored).event else {
                continue;
            };
            if owed_cached {
                taken.push(cursor);
                replay.offline += 1;
            }
            replay.events.push((cursor, Arc::unwrap_or_clone(event)));
        }
        // The per-receiver cap of the offline cache keeps the newest cached ones (the
        // stream's per-user cap is shared with delivered events).
        let cap = self.bus.settings().offline_per_user;
        if taken.len() > cap {
            let dropped: Vec<u64> = taken.drain(..taken.len() - cap).collect();
            replay
                .events
                .retain(|(cursor, _)| !dropped.contains(cursor));
            replay.offline -= dropped.len();
        }
        if !taken.is_empty() && !self.hand(user, latest, Some(handed_at)).await? {
            // Another stream took them first: they are its, unless after `after`.
            let (now_handed, _) = self.handed(user).await?;
            replay.events.retain(|(cursor, _)| {
                !(taken.contains(cursor) && *cursor <= now_handed)
                    || (resume > 0 && *cursor > resume)
            });
            replay.offline -= taken.iter().filter(|c| **c <= now_handed).count();
        }
        Ok(replay)
    }

    /// Whether events of `subject` after `after` may have been dropped. Cursors are the
    /// stream's sequence, shared by every user: a gap between a user's cursors is
    /// normal. The log drops a user's oldest first (by count, and by age for
    /// delivered events, which expire in order), so while the event at `after` is
    /// held nothing after it was dropped; only a cached or reserved one can outlive
    /// delivered events after it, so such an anchor older than the log's TTL counts as
    /// lost. With the anchor gone, nothing was lost when the user's first held event
    /// comes right after it; otherwise some may have been (reported lost: the gap may
    /// hold only other users' events, but the log cannot tell).
    async fn lost_after(
        &self,
        log: &async_nats::jetstream::stream::Stream<()>,
        subject: &str,
        after: u64,
    ) -> Result<bool, Error> {
        match log.direct_get(after).await {
            Ok(anchor) if anchor.subject.as_str() == subject => {
                let age = time::OffsetDateTime::now_utc() - anchor.time;
                return Ok(kind_of(Some(&anchor.headers)) != LOGGED
                    && age.unsigned_abs() > self.bus.settings().log_ttl);
            }
            Ok(_) => {}
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("reading the event log", e)),
        }
        match log
            .direct_get_next_for_subject(subject.to_owned(), Some(after))
            .await
        {
            Ok(first) => Ok(first.sequence != after + 1),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(true),
            Err(e) => Err(unavailable("reading the event log", e)),
        }
    }

    /// `user`'s latest cursor; a user without one gets a reserved entry first, so
    /// that the cursor a stream resumes after is never 0 (which means none).
    async fn latest(&self, user: &str) -> Result<u64, Error> {
        let log = self.bus.stream(OFFLINE).await?;
        match log.direct_get_last_for_subject(log_subject(user)).await {
            Ok(last) => return Ok(last.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("reading the event log", e)),
        }
        Self::acked(self.append(user, RESERVED, Bytes::new(), None).await).await
    }
}

/// Queues `entry` on the streams `ids`, each then having it as its last cursor; cuts
/// off a stream whose queue is full as too slow. Whether any stream took it.
fn deliver(
    user: &str,
    followers: &mut HashMap<u64, Follower>,
    ids: &[u64],
    entry: &Arc<Entry>,
) -> bool {
    let mut delivered = false;
    for id in ids {
        let Some(follower) = followers.get_mut(id) else {
            continue;
        };
        if follower.last.is_none_or(|last| last >= entry.cursor) {
            continue;
        }
        let Some(event) = &entry.event else {
            // Reserved, or not decodable: nothing to send, but passed.
            follower.last = Some(entry.cursor);
            continue;
        };
        match follower.tx.try_send((event.clone(), entry.cursor)) {
            Ok(()) => {
                follower.last = Some(entry.cursor);
                delivered = true;
                METRICS.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                follower.too_slow.store(true, Ordering::Relaxed);
                METRICS.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%user, "cutting off a Subscribe stream that is too slow");
                followers.remove(id);
            }
            Err(TrySendError::Closed(_)) => {
                followers.remove(id);
            }
        }
    }
    delivered
}

/// What claiming a client message ID found.
enum Claim {
    /// The ID is this send's; the claim's stream sequence.
    Mine(u64),
    /// An earlier send with the ID got this answer.
    Answered(Sent),
}

/// A failed write to the event log as the caller sees it: OFFLINE_CACHE_FULL when the
/// log is full, else UNAVAILABLE.
fn log_error(e: PublishError) -> Error {
    if is_subject_full(&e) {
        Error::Refused(
            Reason::OfflineCacheFull,
            "the server's message log is full; nothing was kept".into(),
        )
    } else {
        unavailable("writing to the event log", e)
    }
}

/// Whether NATS refused an atomic batch whole (too many open, or some of it dropped
/// on the way): nothing of it was stored, so it may be sent again.
fn is_batch_refused(error: &PublishError) -> bool {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.contains("atomic publish") && !is_subject_full(error)
}

/// The ID of the next stream a listener follows for.
static NEXT_FOLLOWER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `courier.offline.<user>`: the user's event log.
fn log_subject(user: &str) -> String {
    format!("courier.offline.{}", token(user))
}

/// `courier.handed.<user>`.
fn handed_subject(user: &str) -> String {
    format!("courier.handed.{}", token(user))
}

/// `courier.dedup.<sender>.<client message ID>`.
fn dedup_subject(sender: &str, id: &str) -> String {
    format!("courier.dedup.{}.{}", token(sender), token(id))
}

/// The `Nats-Msg-Id` of a send's entry in `user`'s log.
fn msg_id(sender: &str, dedup: Option<&Dedup>, user: &str) -> Option<String> {
    dedup.map(|d| {
        format!(
            "{}.{}.{}",
            token(sender),
            token(&d.client_message_id),
            token(user)
        )
    })
}

/// The kind of a log entry; entries from before the log (plain cached messages)
/// have no header and count as cached.
fn kind_of(headers: Option<&HeaderMap>) -> &'static str {
    match headers.and_then(|h| h.get(KIND)).map(|v| v.as_str()) {
        Some(LOGGED) => LOGGED,
        Some(RESERVED) => RESERVED,
        _ => CACHED,
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

#[tonic::async_trait]
impl Router for BusRouter {
    async fn subscribe(&self, user: &str, after: u64) -> Result<Subscription, Error> {
        self.bus.ensure_connected()?;
        let lease = self
            .leases
            .acquire(LeaseKind::Stream, user, self.limits.max_streams_per_user)
            .await?
            .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?;
        let registered = self
            .streams
            .register(user, self.limits.max_streams_per_user)
            .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?;
        // Online first (a send from now on is logged as delivered, or cached and then
        // read live), with this stream known to the listener, which keeps the entries
        // arriving from now on; then the latest cursor, the replay up to it, and the
        // live entries after it: every event once, in cursor order.
        let control = self.listen_to(user).await?;
        let (tx, events) = mpsc::channel(self.limits.subscriber_buffer.max(1));
        let too_slow = Arc::new(AtomicBool::new(false));
        let id = NEXT_FOLLOWER.fetch_add(1, Ordering::Relaxed);
        let (added, was_added) = oneshot::channel();
        let unfollow = Unfollow {
            control: control.clone(),
            id,
        };
        control
            .send(Control::Add {
                id,
                tx,
                too_slow: too_slow.clone(),
                added,
            })
            .map_err(|_| unavailable("listening for a user's messages", "the listener ended"))?;
        was_added
            .await
            .map_err(|_| unavailable("listening for a user's messages", "the listener ended"))?;
        let latest = self.latest(user).await?;
        let replay = self.replay(user, after, latest).await?;
        control
            .send(Control::Start { id, latest })
            .map_err(|_| unavailable("listening for a user's messages", "the listener ended"))?;
        Ok(Subscription {
            replay,
            events,
            too_slow,
            registration: Box::new((registered.registration, lease, unfollow, registered.events)),
        })
    }

    async fn send_peer(
        &self,
        peer: &str,
        mut message: pb::PeerMessageReceived,
        cache: bool,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        let sender = message.sender_id.clone();
        let id = msg_id(&sender, dedup.as_ref(), peer);
        let send = async {
            let sent = |state| Sent {
                message_id: message.message_id.clone(),
                server_time: message.server_time,
                state,
            };
            // DELIVERED when the peer has a stream: logged, their streams read it.
            let online = matches!(self.ask(peer, "probe", Bytes::new()).await?, Some(n) if n > 0);
            let (kind, state) = if online {
                (LOGGED, pb::PeerMessageState::Delivered)
            } else if cache {
                message.offline = true;
                (CACHED, pb::PeerMessageState::Cached)
            } else {
                return Ok(sent(pb::PeerMessageState::PeerUnreachable));
            };
            let answer = sent(state);
            let payload = Bytes::from(peer_event(message.clone()).encode_to_vec());
            let span = otel_span!("bus.request", op = "deliver", messaging.system = "nats");
            let ack = self
                .append(peer, kind, payload, id.as_deref())
                .instrument(span.clone())
                .await;
            Self::acked(ack).instrument(span).await?;
            Ok(answer)
        };
        self.once(&sender, dedup.clone(), send).await
    }

    async fn join(&self, user: &str, channel: &str) -> Result<(), Error> {
        self.bus.ensure_connected()?;
        self.membership.catch_up().await?;
        if self.membership.is_member(channel, user) {
            return Ok(());
        }
        let max = self.limits.max_channels_per_user;
        if self.membership.joined(user) >= max {
            return Err(too_many_channels(max));
        }
        // Publish, then count: replicas racing for the last place may both be
        // refused, but never both admitted.
        self.membership.set(channel, user, true).await?;
        self.membership.catch_up().await?;
        if self.membership.joined(user) > max {
            self.membership.set(channel, user, false).await?;
            return Err(too_many_channels(max));
        }
        Ok(())
    }

    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error> {
        self.bus.ensure_connected()?;
        self.membership.set(channel, user, false).await
    }

    async fn members(&self, channel: &str) -> Result<Vec<String>, Error> {
        self.bus.ensure_connected()?;
        self.membership.catch_up().await?;
        Ok(self.membership.members(channel))
    }

    async fn send_channel(
        &self,
        message: pb::ChannelMessageReceived,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        self.bus.ensure_connected()?;
        // Every member a replica admitted before now gets it.
        self.membership.catch_up().await?;
        if !self
            .membership
            .is_member(&message.channel_id, &message.sender_id)
        {
            return Err(not_a_member(&message.channel_id));
        }
        let sender = message.sender_id.clone();
        let members: Vec<String> = self
            .membership
            .members(&message.channel_id)
            .into_iter()
            .filter(|member| *member != sender)
            .collect();
        let sent = Sent {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state: pb::PeerMessageState::Unspecified,
        };
        let payload = Bytes::from(
            Event {
                event: Some(Kind::ChannelMessage(message)),
                cursor: 0,
            }
            .encode_to_vec(),
        );
        let send = async {
            // Written to every member's log: all published, then the acks awaited.
            self.append_all(&members, LOGGED, payload.clone(), &sender, dedup.as_ref())
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
}
