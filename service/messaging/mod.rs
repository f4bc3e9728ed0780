//! MessagingService: peer and channel messages, Subscribe streams, presence and the
//! offline cache.
//!
//! Handlers ([`MessagingServer`]) check requests and call a [`Router`]; [`LocalHub`] is
//! the router for one server, with an [`OfflineCache`] on disk that survives restarts.

mod cache;
mod hub;
mod message;
mod rate;
mod service;

pub use cache::{CacheLimits, OfflineCache, spawn_purger};
pub use hub::{Event, HubLimits, LocalHub, Router, Subscription};
pub use message::{MAX_MESSAGE_BYTES, prepare};
pub use rate::RateLimiter;
pub use service::MessagingServer;
