//! The messaging engine, written once above a [`Store`]: Subscribe streams (a lease,
//! the store's point of order, the replay of what a stream is owed, then live events
//! from the [`Feed`]), sends (membership checked, handed to the store as one group
//! with its dedup claim), channel membership with its per-user limit, and presence.
//! Handlers see only the [`Router`] trait.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{
    event::{Dedup, Replay, Sent, not_a_member, too_many_channels, too_many_streams},
    feed::{Ended, Feed, Queued},
    store::{Append, Kind, Store},
};
use crate::{error::Error, pb};

/// A registered Subscribe stream.
pub struct Subscription {
    /// What the stream is owed before `ready`, with cursors, in cursor order: the
    /// messages cached while the user was offline (flagged `offline`) and the events
    /// after the stream's `after`.
    pub replay: Replay,
    /// Live events with their cursors, each after `replay.latest`. Ends when the feed
    /// drops the stream.
    pub events: mpsc::Receiver<Queued>,
    /// Set when the feed ended the stream (too slow, or the store failed).
    pub ended: Ended,
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

/// The engine over store `S`. Cheap to clone.
pub struct Engine<S> {
    /// Where events are kept.
    store: Arc<S>,
    /// The streams on this process.
    feed: Feed,
    /// The limits.
    limits: HubLimits,
}

impl<S> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            feed: self.feed.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl<S: Store> Engine<S> {
    /// The engine over `store`, whose entries reach the streams of `feed`.
    pub fn new(store: Arc<S>, feed: Feed, limits: HubLimits) -> Self {
        Self {
            store,
            feed,
            limits,
        }
    }

    /// What a new stream of `user` is owed up to `latest`: the cached messages not yet
    /// handed over (the newest [`Store::cached_per_user`]) and, when `after` > 0, the
    /// events after it, in cursor order.
    async fn replay(&self, user: &str, after: u64, latest: u64) -> Result<Replay, Error> {
        let handed = self.store.handed(user).await?;
        // A cursor from the future (a log lost with its store) resumes nothing.
        let future = after > latest;
        let resume = if future { 0 } else { after };
        let mut replay = Replay {
            latest,
            events_lost: after > 0 && future,
            ..Replay::default()
        };
        if resume > 0 {
            replay.events_lost = self.store.lost_after(user, resume).await?;
        }
        let next = if resume > 0 {
            resume.min(handed.upto)
        } else {
            handed.upto
        } + 1;
        let mut taken = Vec::new();
        for entry in self.store.read(user, next, latest).await? {
            let owed_cached = entry.kind == Kind::Cached && entry.cursor > handed.upto;
            if !(owed_cached || (resume > 0 && entry.cursor > resume)) {
                continue;
            }
            let Some(event) = entry.event else { continue };
            if owed_cached {
                taken.push(entry.cursor);
                replay.offline += 1;
            }
            replay
                .events
                .push((entry.cursor, Arc::unwrap_or_clone(event)));
        }
        let cap = self.store.cached_per_user();
        if taken.len() > cap {
            let dropped: Vec<u64> = taken.drain(..taken.len() - cap).collect();
            replay
                .events
                .retain(|(cursor, _)| !dropped.contains(cursor));
            replay.offline -= dropped.len();
        }
        if !taken.is_empty() && !self.store.hand(user, latest, Some(handed.version)).await? {
            // Another stream took them first: they are its, unless after `after`.
            let now = self.store.handed(user).await?.upto;
            replay.events.retain(|(cursor, _)| {
                !(taken.contains(cursor) && *cursor <= now) || (resume > 0 && *cursor > resume)
            });
            replay.offline -= taken.iter().filter(|c| **c <= now).count();
        }
        if resume > 0 {
            self.merge_channels(user, resume, latest, &mut replay, &taken)
                .await?;
        }
        Ok(replay)
    }

    /// Merges into `replay` the messages of `user`'s channels after `resume` up to
    /// `latest`, within the spans in which they were a member (their own messages
    /// left out), then keeps the newest [`Store::replay_most`] of the events after
    /// `resume` (the cached ones handed over, `taken`, always stay), saying events
    /// were lost when there were more.
    async fn merge_channels(
        &self,
        user: &str,
        resume: u64,
        latest: u64,
        replay: &mut Replay,
        taken: &[u64],
    ) -> Result<(), Error> {
        for span in self.store.spans(user, resume, latest).await? {
            let after = resume.max(span.join);
            let until = latest.min(span.leave);
            let (entries, lost) = self.store.read_channel(&span.channel, after, until).await?;
            replay.events_lost |= lost;
            for entry in entries {
                let Some(event) = entry.event else { continue };
                let own = matches!(&event.event, Some(pb::subscribe_response::Event::ChannelMessage(m)) if m.sender_id == user);
                if !own {
                    replay
                        .events
                        .push((entry.cursor, Arc::unwrap_or_clone(event)));
                }
            }
        }
        replay.events.sort_by_key(|(cursor, _)| *cursor);
        let most = self.store.replay_most();
        let owed: Vec<u64> = replay
            .events
            .iter()
            .map(|(cursor, _)| *cursor)
            .filter(|cursor| !taken.contains(cursor))
            .collect();
        if owed.len() > most {
            let oldest_kept = owed[owed.len() - most];
            replay
                .events
                .retain(|(cursor, _)| *cursor >= oldest_kept || taken.contains(cursor));
            replay.events_lost = true;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl<S: Store> Router for Engine<S> {
    async fn subscribe(&self, user: &str, after: u64) -> Result<Subscription, Error> {
        let max = self.limits.max_streams_per_user;
        let hold = self
            .store
            .hold_stream(user, max)
            .await?
            .ok_or_else(|| too_many_streams(max))?;
        let (stream, registered) = self.feed.stream(user);
        // Added at the store's point of order: events up to `latest` are in the log
        // (replayed), every one after it is queued live: no gap, no repeat.
        let latest = self.store.follow(user, stream, max).await?;
        let replay = self.replay(user, after, latest).await?;
        Ok(Subscription {
            replay,
            events: registered.events,
            ended: registered.ended,
            registration: Box::new((registered.registration, hold)),
        })
    }

    async fn send_peer(
        &self,
        peer: &str,
        message: pb::PeerMessageReceived,
        cache: bool,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        let append = Append::Peer {
            peer: peer.to_owned(),
            message,
            cache,
        };
        self.store.append(append, dedup).await
    }

    async fn join(&self, user: &str, channel: &str) -> Result<(), Error> {
        self.store.catch_up().await?;
        if self.store.roster().is_member(channel, user) {
            return Ok(());
        }
        let max = self.limits.max_channels_per_user;
        if self.store.roster().joined(user) >= max {
            return Err(too_many_channels(max));
        }
        // Recorded, then counted: two joins racing for the last place may both be
        // refused, but never both admitted.
        self.store.set_member(channel, user, true).await?;
        self.store.catch_up().await?;
        if self.store.roster().joined(user) > max {
            self.store.set_member(channel, user, false).await?;
            return Err(too_many_channels(max));
        }
        Ok(())
    }

    async fn leave(&self, user: &str, channel: &str) -> Result<(), Error> {
        self.store.catch_up().await?;
        if !self.store.roster().is_member(channel, user) {
            return Ok(());
        }
        self.store.set_member(channel, user, false).await
    }

    async fn members(&self, channel: &str) -> Result<Vec<String>, Error> {
        self.store.catch_up().await?;
        Ok(self.store.roster().members(channel).to_vec())
    }

    async fn send_channel(
        &self,
        message: pb::ChannelMessageReceived,
        dedup: Option<Dedup>,
    ) -> Result<Sent, Error> {
        // Every member admitted anywhere before now gets it.
        self.store.catch_up().await?;
        let roster = self.store.roster();
        if !roster.is_member(&message.channel_id, &message.sender_id) {
            return Err(not_a_member(&message.channel_id));
        }
        let members = roster.members(&message.channel_id);
        self.store
            .append(Append::Channel { members, message }, dedup)
            .await
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        self.store.online(users).await
    }
}
