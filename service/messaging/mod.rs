//! MessagingService: peer and channel messages, Subscribe streams, presence and the
//! offline cache.
//!
//! Handlers ([`MessagingServer`]) check requests and call a [`Router`]; [`LocalHub`] is
//! the router for one server, with an [`EventLog`] on disk (the per-user event log,
//! which holds the offline cache too) that survives restarts,
//! and [`BusRouter`] the router of replicas sharing NATS JetStream ([`crate::bus`]).

mod bus_router;
mod hub;
mod log;
mod membership;
mod message;
mod rate;
mod service;
mod streams;

pub use bus_router::BusRouter;
pub use hub::{Event, HubLimits, LocalHub, Router, Subscription};
pub use log::{Dedup, EventLog, LogLimits, Replay, Sent, reused, spawn_purger};
pub use message::{MAX_MESSAGE_BYTES, prepare};
pub use rate::{RateLimit, RateLimiter};
pub use service::MessagingServer;
