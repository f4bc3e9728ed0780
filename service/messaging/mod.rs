//! MessagingService: peer and channel messages, Subscribe streams, presence and the
//! offline cache.
//!
//! Handlers ([`MessagingServer`]) check requests and call a [`Router`]; [`LocalHub`] is
//! the router for one server, with an [`OfflineCache`] on disk that survives restarts,
//! and [`BusRouter`] the router of replicas sharing NATS JetStream ([`crate::bus`]).

mod bus_router;
mod cache;
mod hub;
mod membership;
mod message;
mod rate;
mod service;
mod streams;

pub use bus_router::BusRouter;
pub use cache::{CacheLimits, OfflineCache, spawn_purger};
pub use hub::{Event, HubLimits, LocalHub, Router, Subscription};
pub use message::{MAX_MESSAGE_BYTES, prepare};
pub use rate::{RateLimit, RateLimiter};
pub use service::MessagingServer;
