//! The seam between the messaging engine and where its events are kept: one server's
//! redb file ([`super::redb`]) or NATS JetStream shared by replicas ([`super::nats`]).
//!
//! A store keeps each user's event log (cursor-ordered entries: logged events, cached
//! offline messages, a reserved first cursor), the dedup records of sends, channel
//! membership and who is online, and hands every new entry of a user who has streams
//! on this process to the [`Feed`](super::feed::Feed), in cursor order. Everything a
//! user sees of it (replay, hand-over of cached messages, events lost, limits) is
//! decided once, above it, in [`super::engine`].

use std::sync::Arc;

use super::{
    event::{Dedup, Event, Sent},
    feed::Stream,
    roster::Roster,
};
use crate::{error::Error, pb};

/// What a log entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A peer message delivered to a live stream, or a channel message.
    Logged,
    /// A peer message cached while its receiver was offline, until handed over.
    Cached,
    /// The first entry of a user's log, holding no event: a cursor to resume after.
    Reserved,
}

/// One entry of a user's log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its cursor.
    pub cursor: u64,
    /// What it holds.
    pub kind: Kind,
    /// The event, its cursor set; `None` for a reserved entry (or one that does not
    /// decode, which is warned of and passed over).
    pub event: Option<Arc<Event>>,
}

/// One send, appended as one group with its dedup claim.
#[derive(Debug, Clone)]
pub enum Append {
    /// A peer message: logged when `peer` has a live stream (DELIVERED); else cached
    /// when `cache` is set (CACHED); else nothing kept (PEER_UNREACHABLE).
    Peer {
        /// The receiver.
        peer: String,
        /// The message.
        message: pb::PeerMessageReceived,
        /// Whether an offline receiver's copy is kept.
        cache: bool,
    },
    /// A channel message, logged for each of `members` but its sender.
    Channel {
        /// The channel's members, as the roster keeps them ready.
        members: Arc<[String]>,
        /// The message.
        message: pb::ChannelMessageReceived,
    },
}

/// A span of positions in which a user was a member of a channel: after `join`,
/// before `leave` (`u64::MAX` while still a member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The channel.
    pub channel: String,
    /// The position of the join.
    pub join: u64,
    /// The position of the leave.
    pub leave: u64,
}

/// Where the hand-over of a user's cached messages stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handed {
    /// Cached messages up to this cursor were handed to a stream.
    pub upto: u64,
    /// The version of the record, for [`Store::hand`]'s compare-and-set.
    pub version: u64,
}

/// A guard held for as long as a stream is open (a cluster-wide lease).
pub type Hold = Box<dyn Send + Sync>;

/// The store under the messaging engine.
#[tonic::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends one send's entries as one group, unless `dedup` repeats a recorded
    /// send (then its first answer, and nothing appended). Its entries reach the
    /// feed in cursor order once stored.
    async fn append(&self, append: Append, dedup: Option<Dedup>) -> Result<Sent, Error>;

    /// Adds `stream` to the feed for `user` at the store's point of order and returns
    /// the cursor it starts after: every entry up to it is in the log, every one
    /// after it reaches the stream. A user's first stream reserves a cursor, so that
    /// it is never 0. Refused past `max` streams here.
    async fn follow(&self, user: &str, stream: Stream, max: usize) -> Result<u64, Error>;

    /// `user`'s live entries from cursor `from` to `until` (both included), in order.
    async fn read(&self, user: &str, from: u64, until: u64) -> Result<Vec<Entry>, Error>;

    /// Whether entries of `user` after `after` (at most the latest) were dropped.
    async fn lost_after(&self, user: &str, after: u64) -> Result<bool, Error>;

    /// `user`'s channel memberships that overlap the positions after `after` up to
    /// `until`, for a store that keeps a channel message once ([`Store::read_channel`]).
    /// A store that copies channel messages into each member's own log has none.
    async fn spans(&self, _user: &str, _after: u64, _until: u64) -> Result<Vec<Span>, Error> {
        Ok(Vec::new())
    }

    /// `channel`'s messages after `after` up to `until` (both positions), in order,
    /// and whether any message there was dropped.
    async fn read_channel(
        &self,
        _channel: &str,
        _after: u64,
        _until: u64,
    ) -> Result<(Vec<Entry>, bool), Error> {
        Ok((Vec::new(), false))
    }

    /// The most events of a user's own log and channels a replay returns (the newest
    /// are kept, and the replay says events were lost).
    fn replay_most(&self) -> usize;

    /// Where the hand-over of `user`'s cached messages stands.
    async fn handed(&self, user: &str) -> Result<Handed, Error>;

    /// Records that `user`'s cached messages up to `upto` were handed over, if the
    /// record is still at version `expected` (or whatever it is, with `None`): false
    /// when another stream took them first. They then count as delivered.
    async fn hand(&self, user: &str, upto: u64, expected: Option<u64>) -> Result<bool, Error>;

    /// Holds one of `user`'s at most `max` streams across every process sharing the
    /// store; `None` when they have `max` already.
    async fn hold_stream(&self, user: &str, max: usize) -> Result<Option<Hold>, Error>;

    /// Whether each of `users` has a live stream anywhere.
    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error>;

    /// The most cached messages a stream is handed (the newest are kept).
    fn cached_per_user(&self) -> usize;

    /// Waits until membership reflects every change made anywhere before now.
    async fn catch_up(&self) -> Result<(), Error>;

    /// Records `user` as a member of `channel` (or not), durably.
    async fn set_member(&self, channel: &str, user: &str, member: bool) -> Result<(), Error>;

    /// Channel membership as this process has it now (after [`Store::catch_up`]: every
    /// change made anywhere before it).
    fn roster(&self) -> &Roster;
}
