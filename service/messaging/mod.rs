//! MessagingService: peer and channel messages, Subscribe streams, presence and the
//! offline cache.
//!
//! Layout, from the wire down:
//! - [`service`]: the gRPC handlers; they check requests and call a [`Router`].
//! - [`engine`]: the one router, [`Engine`], written once above a [`store::Store`]:
//!   Subscribe streams and their replay, sends, membership and its limit, presence.
//! - [`feed`]: this process's Subscribe streams; every store hands its entries here in
//!   cursor order (fan-out and the slow-stream cut-off).
//! - [`store`]: the seam; [`redb`] is one server's store (an embedded file, one
//!   writer committing in groups), [`nats`] the store of replicas sharing NATS
//!   JetStream ([`crate::bus`]).
//! - [`event`], [`message`], [`rate`]: the shared words, the checks of a message, the
//!   send rate limit.

mod engine;
mod event;
mod feed;
mod membership;
mod message;
mod nats;
pub mod outbox;
mod rate;
mod redb;
mod roster;
mod service;
mod store;

pub use engine::{Engine, HubLimits, Router, Subscription};
pub use event::{Dedup, Event, Replay, Sent};
pub use feed::Feed;
pub use message::{MAX_MESSAGE_BYTES, prepare};
pub use nats::{NatsEvents, NatsStore};
pub use rate::{RateLimit, RateLimiter};
pub use redb::{LogLimits, RedbEvents, RedbStore, spawn_purger};
pub use service::MessagingServer;
