//! Routing: who is online, who is in which channel, and getting each event to the
//! right Subscribe streams. Handlers see only the [`Router`] trait; [`LocalHub`] is the
//! in-process implementation for one server, and a NATS JetStream one can take its
//! place for several replicas without touching the handlers.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::cache::OfflineCache;
use crate::{
    error::{Error, Reason},
    metrics::METRICS,
    pb::{self, subscribe_response::Event as Kind},
};

/// One event for a Subscribe stream.
pub type Event = pb::SubscribeResponse;

/// A registered Subscribe stream.
pub struct Subscription {
    /// Messages cached while the user was offline, oldest first, to send first.
    pub offline: Vec<pb::PeerMessageReceived>,
    /// Live events, shared between the streams they go to (a queue slot is a pointer,
    /// so an idle stream's queue is small). Ends when the router drops the stream.
    pub events: mpsc::Receiver<Arc<Event>>,
    /// Set when the router dropped the stream because it could not keep up.
    pub too_slow: Arc<AtomicBool>,
    /// Unregisters the stream when dropped.
    pub registration: Box<dyn Send + Sync>,
}

/// Routes messages between users and channels.
#[tonic::async_trait]
pub trait Router: Send + Sync + 'static {
    /// Registers a stream for `user` (who is online while one is registered) and
    /// hands over the messages cached for them.
    async fn subscribe(&self, user: &str) -> Result<Subscription, Error>;

    /// Delivers a message to every stream of `peer`; when `peer` has none, caches it
    /// if `cache` is set.
    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
    ) -> Result<pb::PeerMessageState, Error>;

    /// Makes `user` a member of `channel`.
    async fn join(&self, user: &str, channel: &str) -> Result<(), Error>;

    /// Ends `user`'s membership of `channel`.
    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error>;

    /// The members of `channel`, sorted.
    async fn members(&self, channel: &str) -> Result<Vec<String>, Error>;

    /// Delivers a channel message to every member's streams except the sender's; the
    /// sender must be a member.
    async fn send_channel(&self, message: pb::ChannelMessageReceived) -> Result<(), Error>;

    /// Whether each of `users` is online.
    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error>;
}

/// The limits a router enforces.
#[derive(Debug, Clone)]
pub struct HubLimits {
    /// The most channels one user may be a member of.
    pub max_channels_per_user: usize,
    /// The most Subscribe streams one user may have open.
    pub max_streams_per_user: usize,
    /// How many events a stream may have queued before it is cut off as too slow.
    pub subscriber_buffer: usize,
}

/// The in-process router. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalHub {
    /// Presence and membership.
    state: Arc<Mutex<State>>,
    /// Messages for offline users, on disk.
    cache: OfflineCache,
    /// The limits.
    limits: HubLimits,
    /// The next stream ID.
    next_id: Arc<AtomicU64>,
}

/// Presence and membership. Guarded by a std mutex: every critical section is a few
/// map operations and never crosses an `.await`.
#[derive(Debug, Default)]
struct State {
    /// Each online user's open streams.
    streams: HashMap<String, Vec<Stream>>,
    /// Each channel's members.
    channels: HashMap<String, BTreeSet<String>>,
    /// Each user's channels, for the per-user limit.
    joined: HashMap<String, BTreeSet<String>>,
}

/// One open Subscribe stream.
#[derive(Debug, Clone)]
struct Stream {
    /// Identifies the stream for unregistering.
    id: u64,
    /// Where its events go; bounded.
    tx: mpsc::Sender<Arc<Event>>,
    /// Set when it is cut off as too slow.
    too_slow: Arc<AtomicBool>,
}

/// Unregisters a stream when dropped.
struct Registration {
    /// The presence map to remove the stream from.
    state: Arc<Mutex<State>>,
    /// The stream's user.
    user: String,
    /// The stream's ID.
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.remove_stream(&self.user, self.id);
    }
}

impl State {
    fn remove_stream(&mut self, user: &str, id: u64) {
        if let Some(streams) = self.streams.get_mut(user) {
            let before = streams.len();
            streams.retain(|s| s.id != id);
            if streams.len() < before {
                METRICS.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
            if streams.is_empty() {
                self.streams.remove(user);
            }
        }
    }

    fn streams_of(&self, user: &str) -> Vec<(String, Stream)> {
        self.streams
            .get(user)
            .map(|streams| {
                streams
                    .iter()
                    .map(|s| (user.to_owned(), s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl LocalHub {
    /// A router over `cache` with `limits`.
    pub fn new(cache: OfflineCache, limits: HubLimits) -> Self {
        Self {
            state: Arc::default(),
            cache,
            limits,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `event` on each stream without waiting; a stream whose queue is full is
    /// cut off as too slow, so that it cannot hold up anyone else. Returns how many
    /// streams took the event.
    fn deliver(&self, streams: Vec<(String, Stream)>, event: &Arc<Event>) -> usize {
        let mut delivered = 0;
        let mut dropped = Vec::new();
        for (user, stream) in streams {
            match stream.tx.try_send(Arc::clone(event)) {
                Ok(()) => delivered += 1,
                Err(TrySendError::Full(_)) => {
                    stream.too_slow.store(true, Ordering::Relaxed);
                    METRICS.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(%user, "cutting off a Subscribe stream that is too slow");
                    dropped.push((user, stream.id));
                }
                Err(TrySendError::Closed(_)) => dropped.push((user, stream.id)),
            }
        }
        METRICS
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        if !dropped.is_empty() {
            let mut state = self.lock();
            for (user, id) in dropped {
                state.remove_stream(&user, id);
            }
        }
        delivered
    }

    /// Delivers whatever is cached for `user` to their open streams; what no stream
    /// took goes back into the cache.
    async fn flush_cache(&self, user: &str) -> Result<(), Error> {
        for mut message in self.cache.take(user).await? {
            message.offline = true;
            let streams = self.lock().streams_of(user);
            let event = Arc::new(peer_event(message));
            if self.deliver(streams, &event) == 0
                && let Some(Kind::PeerMessage(message)) = Arc::unwrap_or_clone(event).event
            {
                self.cache.push(user, &message).await?;
            }
        }
        Ok(())
    }
}

fn peer_event(message: pb::PeerMessageReceived) -> Event {
    Event {
        event: Some(Kind::PeerMessage(message)),
    }
}

#[tonic::async_trait]
impl Router for LocalHub {
    async fn subscribe(&self, user: &str) -> Result<Subscription, Error> {
        let (tx, events) = mpsc::channel(self.limits.subscriber_buffer.max(1));
        let too_slow = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = Stream {
            id,
            tx,
            too_slow: too_slow.clone(),
        };
        {
            let mut state = self.lock();
            let streams = state.streams.entry(user.to_owned()).or_default();
            if streams.len() >= self.limits.max_streams_per_user {
                return Err(Error::Refused(
                    Reason::TooManyStreams,
                    format!(
                        "a user may have at most {} Subscribe streams open at once",
                        self.limits.max_streams_per_user
                    ),
                ));
            }
            streams.push(stream);
        }
        METRICS.subscribers.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            state: self.state.clone(),
            user: user.to_owned(),
            id,
        };
        // Registered first, then the cache is taken: a message sent in between is
        // either delivered live or already in the cache.
        let offline = self.cache.take(user).await?;
        Ok(Subscription {
            offline,
            events,
            too_slow,
            registration: Box::new(registration),
        })
    }

    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
    ) -> Result<pb::PeerMessageState, Error> {
        let streams = self.lock().streams_of(peer);
        let message = if streams.is_empty() {
            message
        } else {
            let event = Arc::new(peer_event(message));
            // DELIVERED only when a live stream queued it: a message that overflows the
            // peer's only stream (cutting it off) is handled as for an offline peer.
            if self.deliver(streams, &event) > 0 {
                return Ok(pb::PeerMessageState::Delivered);
            }
            let Some(Kind::PeerMessage(message)) = Arc::unwrap_or_clone(event).event else {
                return Err(Error::Internal("a peer event lost its message".into()));
            };
            message
        };
        if !cache {
            return Ok(pb::PeerMessageState::PeerUnreachable);
        }
        self.cache.push(peer, &message).await?;
        // The peer may have subscribed while the message was being written, after its
        // stream took the cache: hand the message over now.
        if self.lock().streams.contains_key(peer) {
            self.flush_cache(peer).await?;
        }
        Ok(pb::PeerMessageState::Cached)
    }

    async fn join(&self, user: &str, channel: &str) -> Result<(), Error> {
        let mut state = self.lock();
        let joined = state.joined.entry(user.to_owned()).or_default();
        if joined.contains(channel) {
            return Ok(());
        }
        if joined.len() >= self.limits.max_channels_per_user {
            return Err(Error::Refused(
                Reason::TooManyChannels,
                format!(
                    "a user may be a member of at most {} channels; leave one first",
                    self.limits.max_channels_per_user
                ),
            ));
        }
        joined.insert(channel.to_owned());
        state
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(user.to_owned());
        Ok(())
    }

    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error> {
        let mut state = self.lock();
        if let Some(joined) = state.joined.get_mut(user) {
            joined.remove(channel);
            if joined.is_empty() {
                state.joined.remove(user);
            }
        }
        if let Some(members) = state.channels.get_mut(channel) {
            members.remove(user);
            if members.is_empty() {
                state.channels.remove(channel);
            }
        }
        Ok(())
    }

    async fn members(&self, channel: &str) -> Result<Vec<String>, Error> {
        let state = self.lock();
        Ok(state
            .channels
            .get(channel)
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn send_channel(&self, message: pb::ChannelMessageReceived) -> Result<(), Error> {
        let streams: Vec<(String, Stream)> = {
            let state = self.lock();
            let Some(members) = state
                .channels
                .get(&message.channel_id)
                .filter(|m| m.contains(&message.sender_id))
            else {
                return Err(Error::Refused(
                    Reason::NotAMember,
                    format!("join channel {} before sending to it", message.channel_id),
                ));
            };
            members
                .iter()
                .filter(|member| **member != message.sender_id)
                .flat_map(|member| state.streams_of(member))
                .collect()
        };
        let event = Arc::new(Event {
            event: Some(Kind::ChannelMessage(message)),
        });
        self.deliver(streams, &event);
        Ok(())
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        let state = self.lock();
        Ok(users
            .iter()
            .map(|u| state.streams.contains_key(u))
            .collect())
    }
}
