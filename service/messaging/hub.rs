//! Routing: who is online, who is in which channel, and getting each event to the
//! right Subscribe streams. Handlers see only the [`Router`] trait; [`LocalHub`] is the
//! in-process implementation for one server, and a NATS JetStream one can take its
//! place for several replicas without touching the handlers.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use tokio::sync::mpsc;

use super::{
    log::{Dedup, EventLog, Replay, Sent},
    streams::{LocalStreams, Queued},
};
use crate::{
    error::{Error, Reason},
    pb::{self, subscribe_response::Event as Kind},
};

/// One event for a Subscribe stream.
pub type Event = pb::SubscribeResponse;

/// A registered Subscribe stream.
pub struct Subscription {
    /// What the stream is owed before `ready`, with cursors, in cursor order: the
    /// messages cached while the user was offline (flagged `offline`) and the events
    /// after the stream's `after`.
    pub replay: Replay,
    /// Live events with their cursors. Those up to `replay.latest` are already in the
    /// replay (or were before `after`) and are skipped. Ends when the router drops
    /// the stream.
    pub events: mpsc::Receiver<Queued>,
    /// Set when the router dropped the stream because it could not keep up.
    pub too_slow: Arc<AtomicBool>,
    /// Unregisters the stream when dropped.
    pub registration: Box<dyn Send + Sync>,
}

/// Routes messages between users and channels.
#[tonic::async_trait]
pub trait Router: Send + Sync + 'static {
    /// Registers a stream for `user` (who is online while one is registered) and
    /// hands over what it is owed: the messages cached for them and, when `after` >
    /// 0, the events after that cursor.
    async fn subscribe(&self, user: &str, after: u64) -> Result<Subscription, Error>;

    /// Delivers a message to every stream of `peer`; when `peer` has none, caches it
    /// if `cache` is set. A send repeating a recorded `dedup` gets the first answer
    /// and delivers nothing.
    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error>;

    /// Makes `user` a member of `channel`.
    async fn join(&self, user: &str, channel: &str) -> Result<(), Error>;

    /// Ends `user`'s membership of `channel`.
    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error>;

    /// The members of `channel`, sorted.
    async fn members(&self, channel: &str) -> Result<Vec<String>, Error>;

    /// Delivers a channel message to every member's streams except the sender's; the
    /// sender must be a member. A send repeating a recorded `dedup` gets the first
    /// answer and delivers nothing.
    async fn send_channel(
        &self,
        message: pb::ChannelMessageReceived,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error>;

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
    /// The per-user event log and offline cache, on disk.
    log: EventLog,
    /// Held while a send takes cursors and queues events, and while a stream
    /// registers: each stream sees its user's cursors in order, and a new stream's
    /// replay holds every event that was not queued on it live.
    order: Arc<tokio::sync::Mutex<()>>,
    /// The limits.
    limits: HubLimits,
    /// Held while membership changes (recorded in the log, then applied).
    membership: Arc<tokio::sync::Mutex<()>>,
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
    /// A router over `log` with `limits`, with the channel membership recorded in
    /// the log (it survives a restart). Blocking: reads the membership.
    pub fn new(log: EventLog, limits: HubLimits) -> Result<Self, Error> {
        let mut state = State::default();
        for (channel, user) in log.memberships()? {
            state
                .joined
                .entry(user.clone())
                .or_default()
                .insert(channel.clone());
            state.channels.entry(channel).or_default().insert(user);
        }
        Ok(Self {
            streams: LocalStreams::new(limits.subscriber_buffer, None),
            state: Arc::new(Mutex::new(state)),
            log,
            order: Arc::default(),
            limits,
            membership: Arc::default(),
        })
    }

    /// Records a membership change in the log, off the async threads.
    async fn record_member(&self, channel: &str, user: &str, member: bool) -> Result<(), Error> {
        let log = self.log.clone();
        let (channel, user) = (channel.to_owned(), user.to_owned());
        blocking(move || log.set_member(&channel, &user, member)).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs blocking log work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("event log task: {e}")))?
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
    async fn subscribe(&self, user: &str, after: u64) -> Result<Subscription, Error> {
        let registered = {
            let _order = self.order.lock().await;
            self.streams
                .register(user, self.limits.max_streams_per_user)
                .ok_or_else(|| too_many_streams(self.limits.max_streams_per_user))?
        };
        // Registered first, then the log is read: an event sent in between is either
        // queued live or already in the log (and then skipped live by its cursor).
        let log = self.log.clone();
        let owner = user.to_owned();
        let replay = blocking(move || log.replay(&owner, after)).await?;
        Ok(Subscription {
            replay,
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
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        let order = self.order.clone().lock_owned().await;
        let this = self.clone();
        let peer = peer.to_owned();
        blocking(move || {
            let _order = order;
            // DELIVERED only when a live stream queued it: a message that overflows
            // the peer's only stream (cutting it off) is handled as for an offline
            // peer.
            this.log
                .send_peer(&peer, message, cache, dedup.as_ref(), |cursor, event| {
                    let streams = this.streams.streams_of([peer.as_str()]);
                    if streams.is_empty() {
                        0
                    } else {
                        this.streams.deliver(streams, &event, cursor)
                    }
                })
        })
        .await
    }

    async fn join(&self, user: &str, channel: &str) -> Result<(), Error> {
        // Serialised with other membership changes, so the record and the map agree.
        let _changing = self.membership.lock().await;
        {
            let state = self.lock();
            let joined = state.joined.get(user);
            if joined.is_some_and(|j| j.contains(channel)) {
                return Ok(());
            }
            if joined.map_or(0, BTreeSet::len) >= self.limits.max_channels_per_user {
                return Err(too_many_channels(self.limits.max_channels_per_user));
            }
        }
        // Recorded first: a join answered is one a restart remembers.
        self.record_member(channel, user, true).await?;
        let mut state = self.lock();
        state
            .joined
            .entry(user.to_owned())
            .or_default()
            .insert(channel.to_owned());
        state
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(user.to_owned());
        Ok(())
    }

    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error> {
        let _changing = self.membership.lock().await;
        let was_member = self
            .lock()
            .joined
            .get(user)
            .is_some_and(|j| j.contains(channel));
        if !was_member {
            return Ok(());
        }
        self.record_member(channel, user, false).await?;
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

    async fn send_channel(
        &self,
        message: pb::ChannelMessageReceived,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
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
        let order = self.order.clone().lock_owned().await;
        let this = self.clone();
        blocking(move || {
            let _order = order;
            let mut streams: HashMap<String, Vec<_>> = HashMap::new();
            for (user, stream) in this.streams.streams_of(members.iter().map(String::as_str)) {
                streams
                    .entry(user.clone())
                    .or_default()
                    .push((user, stream));
            }
            this.log.send_channel(
                &members,
                message,
                dedup.as_ref(),
                |member, cursor, event| {
                    if let Some(of_member) = streams.remove(member) {
                        this.streams.deliver(of_member, event, cursor);
                    }
                },
            )
        })
        .await
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        Ok(users.iter().map(|u| self.streams.has(u)).collect())
    }
}
