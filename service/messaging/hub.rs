//! Routing: who is online, who is in which channel, and getting each event to the
//! right Subscribe streams. Handlers see only the [`Router`] trait; [`LocalHub`] is the
//! in-process implementation for one server, and a NATS JetStream one can take its
//! place for several replicas without touching the handlers.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use tokio::sync::mpsc;

use super::{cache::OfflineCache, streams::LocalStreams};
use crate::{
    error::{Error, Reason},
    pb::{self, subscribe_response::Event as Kind},
};

/// One event for a Subscribe stream.
pub type Event = pb::SubscribeResponse;

/// A registered Subscribe stream.
pub struct Subscription {
    /// Messages cached while the user was offline, oldest first, to send first.
    pub offline: Vec<pb::PeerMessageReceived>,
    /// Live events, shared between the streams they fan out to. Ends when the router
    /// drops the stream.
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
    /// Who is online: the open streams.
    streams: LocalStreams,
    /// Membership.
    state: Arc<Mutex<State>>,
    /// Messages for offline users, on disk.
    cache: OfflineCache,
    /// The limits.
    limits: HubLimits,
}

/// Membership. Guarded by a std mutex: every critical section is a few map
/// operations and never crosses an `.await`.
#[derive(Debug, Default)]
struct State {
    /// Each channel's members.
    channels: HashMap<String, BTreeSet<String>>,
    /// Each user's channels, for the per-user limit.
    joined: HashMap<String, BTreeSet<String>>,
}

impl LocalHub {
    /// A router over `cache` with `limits`.
    pub fn new(cache: OfflineCache, limits: HubLimits) -> Self {
        Self {
            streams: LocalStreams::new(limits.subscriber_buffer, None),
            state: Arc::default(),
            cache,
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers whatever is cached for `user` to their open streams; what no stream
    /// took goes back into the cache.
    async fn flush_cache(&self, user: &str) -> Result<(), Error> {
        for mut message in self.cache.take(user).await? {
            message.offline = true;
            let streams = self.streams.streams_of([user]);
            let event = Arc::new(peer_event(message));
            if self.streams.deliver(streams, &event) == 0
                && let Some(Kind::PeerMessage(message)) = Arc::unwrap_or_clone(event).event
            {
                self.cache.push(user, &message).await?;
            }
        }
        Ok(())
    }
}

/// A peer message as a Subscribe event.
pub(super) fn peer_event(message: pb::PeerMessageReceived) -> Event {
    Event {
        event: Some(Kind::PeerMessage(message)),
        cursor: 0,
    }
}

/// The refusal of a stream past the per-user limit.
pub(super) fn too_many_streams(max: usize) -> Error {
    Error::Refused(
        Reason::TooManyStreams,
        format!("a user may have at most {max} Subscribe streams open at once"),
    )
}

/// The refusal of a join past the per-user limit.
pub(super) fn too_many_channels(max: usize) -> Error {
    Error::Refused(
        Reason::TooManyChannels,
        format!("a user may be a member of at most {max} channels; leave one first"),
    )
}

/// The refusal of a channel message from a non-member.
pub(super) fn not_a_member(channel: &str) -> Error {
    Error::Refused(
        Reason::NotAMember,
        format!("join channel {channel} before sending to it"),
    )
}

#[tonic::async_trait]
impl Router for LocalHub {
    async fn subscribe(&self, user: &str) -> Result<Subscription, Error> {
        let registered = self
            .streams
            .register(user, self.limits.max_streams_per_user)
            .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?;
        // Registered first, then the cache is taken: a message sent in between is
        // either delivered live or already in the cache.
        let offline = self.cache.take(user).await?;
        Ok(Subscription {
            offline,
            events: registered.events,
            too_slow: registered.too_slow,
            registration: Box::new(registered.registration),
        })
    }

    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
    ) -> Result<pb::PeerMessageState, Error> {
        let streams = self.streams.streams_of([peer]);
        let message = if streams.is_empty() {
            message
        } else {
            let event = Arc::new(peer_event(message));
            // DELIVERED only when a live stream queued it: a message that overflows the
            // peer's only stream (cutting it off) is handled as for an offline peer.
            if self.streams.deliver(streams, &event) > 0 {
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
        if self.streams.has(peer) {
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
            return Err(too_many_channels(self.limits.max_channels_per_user));
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
        let members: Vec<String> = {
            let state = self.lock();
            let Some(members) = state
                .channels
                .get(&message.channel_id)
                .filter(|m| m.contains(&message.sender_id))
            else {
                return Err(not_a_member(&message.channel_id));
            };
            members
                .iter()
                .filter(|member| **member != message.sender_id)
                .cloned()
                .collect()
        };
        let streams = self.streams.streams_of(members.iter().map(String::as_str));
        let event = Arc::new(Event {
            event: Some(Kind::ChannelMessage(message)),
            cursor: 0,
        });
        self.streams.deliver(streams, &event);
        Ok(())
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        Ok(users.iter().map(|u| self.streams.has(u)).collect())
    }
}
