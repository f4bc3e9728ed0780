//! The events an event webhook is told of, as a store hands them on: which ones
//! ([`HookEvents`]), what one is ([`HookEvent`]), and the narrow trait each store's
//! source implements ([`EventSource`]): the next events after its own durable cursor,
//! in order, and settling one (posted, or given up on) so that it is not handed out
//! again, even after a restart. The poster above it ([`crate::hooks::events`]) is
//! written once for both stores.

use super::event::Event;
use crate::error::Error;

/// Which message events the operator subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookEvents {
    /// Only peer messages cached for an offline receiver (to send a push
    /// notification).
    Cached,
    /// Every message: peer messages delivered or cached, and channel messages.
    All,
}

impl HookEvents {
    /// Whether an event of `kind` is posted.
    pub fn wants(self, kind: HookKind) -> bool {
        self == Self::All || kind == HookKind::Cached
    }
}

/// What became of the message an event tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// A peer message cached for an offline receiver: `message.cached`.
    Cached,
    /// A peer message delivered to a live stream: `message.delivered`.
    Delivered,
    /// A channel message: `channel.message`.
    Channel,
}

impl HookKind {
    /// The byte a store keeps it as.
    pub fn byte(self) -> u8 {
        match self {
            Self::Cached => 1,
            Self::Delivered => 2,
            Self::Channel => 3,
        }
    }

    /// The kind of a stored byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Cached),
            2 => Some(Self::Delivered),
            3 => Some(Self::Channel),
            _ => None,
        }
    }
}

/// One event for the webhook.
#[derive(Debug, Clone)]
pub struct HookEvent {
    /// Its position in the store's log: the `evt_<sequence>` idempotency key.
    pub sequence: u64,
    /// What it is.
    pub kind: HookKind,
    /// The receiver of a peer message (empty for a channel message, whose channel is
    /// in the event).
    pub recipient: String,
    /// The message, as a Subscribe stream would get it.
    pub event: Event,
    /// When the store wrote it (milliseconds since the epoch), for the lag gauge.
    pub written_ms: u64,
}

/// The events of one store after its webhook cursor, in order. `Held` is what the
/// store needs to settle an event (nothing for one server, the message to ack on the
/// bus).
#[tonic::async_trait]
pub trait EventSource: Send + 'static {
    /// What settles one event.
    type Held: Send + Sync + 'static;

    /// The next events after the cursor (at most `most`), waiting up to `wait` for
    /// one; an empty batch when none came.
    async fn next(
        &mut self,
        most: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<(HookEvent, Self::Held)>, Error>;

    /// The event was posted (or given up on): the cursor moves past it. It may be
    /// kept in memory until [`EventSource::flush`].
    async fn settle(&mut self, held: Self::Held) -> Result<(), Error>;

    /// Tells the store the event is still being posted (retries can outlast a
    /// store's redelivery timer).
    async fn working(_held: &Self::Held) {}

    /// Hands an event back unposted, at shutdown (it is posted after the restart,
    /// or by another replica).
    async fn release(_held: Self::Held) {}

    /// Makes the settled cursor durable; `last` on shutdown, when it must reach disk
    /// now.
    async fn flush(&mut self, last: bool) -> Result<(), Error>;
}
