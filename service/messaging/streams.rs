//! The Subscribe streams open on this process, by user: registering and unregistering
//! them, and queueing events on them without waiting. Both routers use it: the
//! in-process [`LocalHub`](super::LocalHub) for everything, and the bus router for
//! the streams its replica holds.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::hub::Event;

/// What a stream's queue holds: an event, shared between the streams it fans out to,
/// and its cursor for this stream's user (0 where there is none).
pub type Queued = (Arc<Event>, u64);
use crate::metrics::METRICS;

/// Called with the registry and a user's ID when the user's last stream on this
/// process is gone.
pub type OnLastGone = Arc<dyn Fn(&LocalStreams, &str) + Send + Sync>;

/// The open streams, by user. Cheap to clone.
#[derive(Clone)]
pub struct LocalStreams {
    /// Each online user's open streams. A std mutex: every critical section is a few
    /// map operations and never crosses an `.await`.
    streams: Arc<Mutex<HashMap<String, Vec<Stream>>>>,
    /// The next stream ID.
    next_id: Arc<AtomicU64>,
    /// How many events a stream may have queued before it is cut off as too slow.
    buffer: usize,
    /// Told when a user's last stream goes.
    on_last_gone: Option<OnLastGone>,
}

impl std::fmt::Debug for LocalStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStreams")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// One open Subscribe stream.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Identifies the stream for unregistering.
    id: u64,
    /// Where its events go; bounded. Events are shared: a fan-out queues one
    /// allocation on every stream, and a queue slot is a pointer.
    tx: mpsc::Sender<Queued>,
    /// Set when it is cut off as too slow.
    too_slow: Arc<AtomicBool>,
}

/// A stream just registered: the receiving end of its queue, its too-slow flag, and
/// the registration that removes it when dropped.
pub struct Registered {
    /// Live events.
    pub events: mpsc::Receiver<Queued>,
    /// Set when the stream is cut off as too slow.
    pub too_slow: Arc<AtomicBool>,
    /// Unregisters the stream when dropped.
    pub registration: Registration,
}

/// Unregisters a stream when dropped.
pub struct Registration {
    /// The registry to remove the stream from.
    streams: LocalStreams,
    /// The stream's user.
    user: String,
    /// The stream's ID.
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.streams.remove(&self.user, self.id);
    }
}

impl LocalStreams {
    /// An empty registry whose streams queue up to `buffer` events.
    pub fn new(buffer: usize, on_last_gone: Option<OnLastGone>) -> Self {
        Self {
            streams: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            buffer: buffer.max(1),
            on_last_gone,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Stream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a stream for `user`, unless they have `max` open here already
    /// (then `None`).
    pub fn register(&self, user: &str, max: usize) -> Option<Registered> {
        let (tx, events) = mpsc::channel(self.buffer);
        let too_slow = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut all = self.lock();
            let streams = all.entry(user.to_owned()).or_default();
            if streams.len() >= max {
                return None;
            }
            streams.push(Stream {
                id,
                tx,
                too_slow: too_slow.clone(),
            });
        }
        METRICS.subscribers.fetch_add(1, Ordering::Relaxed);
        Some(Registered {
            events,
            too_slow,
            registration: Registration {
                streams: self.clone(),
                user: user.to_owned(),
                id,
            },
        })
    }

    /// Removes one stream; tells [`OnLastGone`] when it was the user's last.
    fn remove(&self, user: &str, id: u64) {
        let last = {
            let mut all = self.lock();
            let Some(streams) = all.get_mut(user) else {
                return;
            };
            let before = streams.len();
            streams.retain(|s| s.id != id);
            if streams.len() < before {
                METRICS.subscribers.fetch_sub(1, Ordering::Relaxed);
            }
            let last = streams.is_empty() && before > 0;
            if streams.is_empty() {
                all.remove(user);
            }
            last
        };
        if last && let Some(on_last_gone) = &self.on_last_gone {
            on_last_gone(self, user);
        }
    }

    /// Whether `user` has a stream open here.
    pub fn has(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// The streams of each of `users`, paired with their user.
    pub fn streams_of<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, Stream)> {
        let all = self.lock();
        users
            .into_iter()
            .filter_map(|user| all.get(user).map(|streams| (user, streams)))
            .flat_map(|(user, streams)| streams.iter().map(|s| (user.to_owned(), s.clone())))
            .collect()
    }

    /// Queues `event` with `cursor` on each stream without waiting; a stream whose
    /// queue is full is cut off as too slow, so that it cannot hold up anyone else.
    /// Returns how many streams took the event.
    pub fn deliver(
        &self,
        streams: Vec<(String, Stream)>,
        event: &Arc<Event>,
        cursor: u64,
    ) -> usize {
        let mut delivered = 0;
        let mut dropped = Vec::new();
        for (user, stream) in streams {
            match stream.tx.try_send((Arc::clone(event), cursor)) {
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
        for (user, id) in dropped {
            self.remove(&user, id);
        }
        delivered
    }
}
