//! The router of several replicas sharing NATS JetStream (`--bus`); see [`crate::bus`]
//! for what lives where.
//!
//! Each replica keeps its own Subscribe streams in [`LocalStreams`]. While a user has
//! a stream here, this replica listens on `courier.peer.<user>` and answers three
//! requests there: *deliver* (a peer message, queued on the user's streams here;
//! the answer says how many took it), *probe* (is the user online here) and *flush*
//! (something was just cached for the user: hand it over). A send to a user with no
//! listener anywhere gets "no responders" from NATS at once: the user is offline, and
//! the message is cached in JetStream or the sender told PEER_UNREACHABLE.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{HeaderMap, client::RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use tokio::{sync::watch, task::AbortHandle};
use tracing::Instrument;

use super::{
    hub::{
        Event, HubLimits, Router, Subscription, not_a_member, peer_event, too_many_channels,
        too_many_streams,
    },
    log::{Dedup, Replay, Sent},
    membership::Membership,
    streams::LocalStreams,
};
use crate::{
    bus::{
        Bus, OFFLINE,
        limits::{LeaseKind, Leases, is_subject_full},
        token, unavailable,
    },
    error::{Error, Reason},
    pb::{self, subscribe_response::Event as Kind},
    telemetry::{self, otel_span},
};

/// The header naming a request's operation on `courier.peer.<user>`.
const OP: &str = "Courier-Op";
/// How long a new stream waits for its listener to be registered with NATS.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

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
    /// Serialises taking a user's offline cache on this replica (a new stream and a
    /// flush at once would otherwise both hand over the same messages).
    taking: Arc<tokio::sync::Mutex<()>>,
}

/// A task listening on `courier.peer.<user>`.
struct Listener {
    /// Turns true once NATS has registered the subscription.
    ready: watch::Receiver<bool>,
    /// Stops the task (which unsubscribes).
    task: AbortHandle,
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
            taking: Arc::default(),
        };
        router.listen_to_channels().await?;
        Ok(router)
    }

    /// Every replica hears every channel message and queues it on its own streams of
    /// the channel's members, but the sender's.
    async fn listen_to_channels(&self) -> Result<(), Error> {
        let mut subscriber = self
            .bus
            .client
            .subscribe("courier.channel.*")
            .await
            .map_err(|e| unavailable("listening for channel messages", e))?;
        let router = self.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let span = otel_span!("bus.receive", op = "channel", messaging.system = "nats");
                telemetry::continue_remote(&span, message.headers.as_ref());
                let _entered = span.enter();
                let Ok(message) = pb::ChannelMessageReceived::decode(message.payload) else {
                    tracing::warn!("bus: a channel message that does not decode");
                    continue;
                };
                let members = router.membership.members(&message.channel_id);
                let streams = router.streams.streams_of(
                    members
                        .iter()
                        .map(String::as_str)
                        .filter(|m| *m != message.sender_id),
                );
                if streams.is_empty() {
                    continue;
                }
                let event = Arc::new(Event {
                    event: Some(Kind::ChannelMessage(message)),
                    cursor: 0,
                });
                router.streams.deliver(streams, &event, 0);
            }
        });
        Ok(())
    }

    /// Listens on `courier.peer.<user>` unless already listening; returns once NATS
    /// has the subscription, so a message sent after this reaches the user's streams.
    async fn listen_to(&self, user: &str) -> Result<(), Error> {
        let mut ready = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            match listeners.get(user) {
                Some(listener) => listener.ready.clone(),
                None => {
                    let (ready_tx, ready) = watch::channel(false);
                    let task = tokio::spawn(self.clone().listen(user.to_owned(), ready_tx));
                    listeners.insert(
                        user.to_owned(),
                        Listener {
                            ready: ready.clone(),
                            task: task.abort_handle(),
                        },
                    );
                    ready
                }
            }
        };
        match tokio::time::timeout(LISTEN_WAIT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(unavailable("listening for a user's messages", "timed out")),
        }
    }

    /// The listener task of one user.
    async fn listen(self, user: String, ready: watch::Sender<bool>) {
        let subject = format!("courier.peer.{}", token(&user));
        let mut subscriber = loop {
            match self.bus.client.subscribe(subject.clone()).await {
                Ok(subscriber) if self.bus.client.flush().await.is_ok() => break subscriber,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "bus: listening for a user's messages"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = ready.send(true);
        while let Some(request) = subscriber.next().await {
            let op = request
                .headers
                .as_ref()
                .and_then(|h| h.get(OP))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let span = otel_span!("bus.receive", op = %op, messaging.system = "nats");
            telemetry::continue_remote(&span, request.headers.as_ref());
            let payload = request.payload.clone();
            let answer: u64 = async {
                match op.as_str() {
                    "deliver" => match pb::PeerMessageReceived::decode(payload) {
                        Ok(message) => {
                            let streams = self.streams.streams_of([user.as_str()]);
                            self.streams
                                .deliver(streams, &Arc::new(peer_event(message)), 0)
                                as u64
                        }
                        Err(_) => 0,
                    },
                    "probe" => u64::from(self.streams.has(&user)),
                    "flush" => match self.flush_cache(&user).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(error = %e, "bus: handing over cached messages");
                            0
                        }
                    },
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

    /// `courier.offline.<user>`.
    fn cache_subject(user: &str) -> String {
        format!("courier.offline.{}", token(user))
    }

    /// The messages cached for `user`, oldest first, with the sequence of the last.
    async fn read_cache(&self, user: &str) -> Result<(Vec<pb::PeerMessageReceived>, u64), Error> {
        let stream = self.bus.stream(OFFLINE).await?;
        let subject = Self::cache_subject(user);
        let mut messages = Vec::new();
        let mut next = 1;
        let mut last = 0;
        // Bounded: the stream keeps at most this many per receiver.
        for _ in 0..=self.bus.settings().offline_per_user {
            match stream
                .direct_get_next_for_subject(subject.clone(), Some(next))
                .await
            {
                Ok(stored) => {
                    last = stored.sequence;
                    next = stored.sequence + 1;
                    match pb::PeerMessageReceived::decode(stored.payload) {
                        Ok(message) => messages.push(message),
                        Err(_) => tracing::warn!("bus: a cached message that does not decode"),
                    }
                }
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    break;
                }
                Err(e) => return Err(unavailable("reading the offline cache", e)),
            }
        }
        Ok((messages, last))
    }

    /// Removes `user`'s cached messages up to sequence `last`.
    async fn drop_cache(&self, user: &str, last: u64) -> Result<(), Error> {
        let stream = self.bus.stream(OFFLINE).await?;
        stream
            .purge()
            .filter(Self::cache_subject(user))
            .sequence(last + 1)
            .await
            .map_err(|e| unavailable("removing delivered offline messages", e))?;
        Ok(())
    }

    /// Takes `user`'s cached messages (for a new stream here).
    async fn take_cache(&self, user: &str) -> Result<Vec<pb::PeerMessageReceived>, Error> {
        let _taking = self.taking.lock().await;
        let (messages, last) = self.read_cache(user).await?;
        if last > 0 {
            self.drop_cache(user, last).await?;
        }
        Ok(messages)
    }

    /// Hands what is cached for `user` to their streams here; what no stream took
    /// stays cached. Returns how many messages were handed over.
    async fn flush_cache(&self, user: &str) -> Result<u64, Error> {
        let _taking = self.taking.lock().await;
        let (messages, last) = self.read_cache(user).await?;
        let mut handed = 0;
        for mut message in messages {
            message.offline = true;
            let streams = self.streams.streams_of([user]);
            if self
                .streams
                .deliver(streams, &Arc::new(peer_event(message)), 0)
                == 0
            {
                // No stream here any more: leave the rest cached.
                return Ok(handed);
            }
            handed += 1;
        }
        if last > 0 {
            self.drop_cache(user, last).await?;
        }
        Ok(handed)
    }

    /// Caches `message` for `peer`; a retry with the same message ID is stored once.
    async fn cache(&self, peer: &str, message: &pb::PeerMessageReceived) -> Result<(), Error> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message.message_id.as_str());
        let result = async {
            match self
                .bus
                .js
                .publish_with_headers(
                    Self::cache_subject(peer),
                    headers,
                    Bytes::from(message.encode_to_vec()),
                )
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            }
        }
        .instrument(otel_span!("bus.cache", messaging.system = "nats"))
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_subject_full(&e) => Err(Error::Refused(
                Reason::OfflineCacheFull,
                "the server's offline cache is full; nothing was kept".into(),
            )),
            Err(e) => Err(unavailable("caching an offline message", e)),
        }
    }
}

#[tonic::async_trait]
impl Router for BusRouter {
    async fn subscribe(&self, user: &str, _after: u64) -> Result<Subscription, Error> {
        let lease = self
            .leases
            .acquire(LeaseKind::Stream, user, self.limits.max_streams_per_user)
            .await?
            .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?;
        let registered = self
            .streams
            .register(user, self.limits.max_streams_per_user)
            .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?;
        // Listening first, then the cache is taken: a message sent in between is either
        // delivered live or already cached (and then flushed to this stream).
        self.listen_to(user).await?;
        let offline = self.take_cache(user).await?;
        Ok(Subscription {
            replay: Replay {
                offline: offline.len(),
                events: offline
                    .into_iter()
                    .map(|mut message| {
                        message.offline = true;
                        (0, peer_event(message))
                    })
                    .collect(),
                ..Replay::default()
            },
            events: registered.events,
            too_slow: registered.too_slow,
            registration: Box::new((registered.registration, lease)),
        })
    }

    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
        _dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        let sent = |state| Sent {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state,
        };
        let payload = Bytes::from(message.encode_to_vec());
        // DELIVERED only when a live stream queued it; a replica that answers 0 had
        // no stream that could take it (cut off as too slow): as for an offline peer.
        if let Some(taken) = self.ask(peer, "deliver", payload).await?
            && taken > 0
        {
            return Ok(sent(pb::PeerMessageState::Delivered));
        }
        if !cache {
            return Ok(sent(pb::PeerMessageState::PeerUnreachable));
        }
        self.cache(peer, &message).await?;
        // The peer may have subscribed while the message was being written, after its
        // stream took the cache: have their replica hand it over now.
        // It is cached either way: a failure here only delays it to their next stream.
        if let Err(e) = self.ask(peer, "flush", Bytes::new()).await {
            tracing::warn!(error = %e, "bus: asking for a cached message to be handed over");
        }
        Ok(sent(pb::PeerMessageState::Cached))
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
        _dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        self.bus.ensure_connected()?;
        if !self
            .membership
            .is_member(&message.channel_id, &message.sender_id)
        {
            // Perhaps joined through another replica a moment ago.
            self.membership.catch_up().await?;
            if !self
                .membership
                .is_member(&message.channel_id, &message.sender_id)
            {
                return Err(not_a_member(&message.channel_id));
            }
        }
        let span = otel_span!("bus.publish", op = "channel", messaging.system = "nats");
        let mut headers = HeaderMap::new();
        span.in_scope(|| telemetry::inject(&mut headers));
        let subject = format!("courier.channel.{}", token(&message.channel_id));
        let sent = Sent {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state: pb::PeerMessageState::Unspecified,
        };
        let payload = Bytes::from(message.encode_to_vec());
        let client = &self.bus.client;
        // Without traces, no headers at all (the message stays as small as before).
        async {
            if headers.is_empty() {
                client.publish(subject, payload).await
            } else {
                client.publish_with_headers(subject, headers, payload).await
            }
        }
        .instrument(span)
        .await
        .map_err(|e| unavailable("publishing a channel message", e))?;
        // Answered only once NATS has it: a sender's next message, even through
        // another replica, then reaches every member after this one.
        self.bus
            .client
            .flush()
            .await
            .map_err(|e| unavailable("publishing a channel message", e))?;
        Ok(sent)
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
