//! The Subscribe streams open on this process, by user, and getting events onto them:
//! every store hands its entries here, in cursor order, so fan-out and the slow-stream
//! cut-off are written once.
//!
//! A stream is made by [`Feed::stream`] and added by the store ([`Feed::add`]) at its
//! point of order, with the cursor it starts after: every entry after that cursor is
//! then offered to it, once ([`Feed::offer`], or [`Feed::reserve`] when the store must
//! know before committing that a stream will take it). A stream whose queue is full is
//! cut off as too slow, so that it cannot hold up anyone else.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc::{self, OwnedPermit, error::TrySendError};

use super::event::{Event, too_many_streams};
use crate::{error::Error, metrics::METRICS};

/// What a stream's queue holds: an event, shared between the streams it fans out to,
/// and its cursor for this stream's user.
pub type Queued = (Arc<Event>, u64);

/// Why a stream was ended by the feed ([`Ended`]'s values).
pub mod ended {
    /// Still open.
    pub const OPEN: u8 = 0;
    /// Its queue was full: it fell too far behind.
    pub const TOO_SLOW: u8 = 1;
    /// The store failed to commit events it had been promised.
    pub const STORE_FAILED: u8 = 2;
}

/// Set when the feed ends a stream, to one of [`ended`]'s values.
pub type Ended = Arc<AtomicU8>;

/// Called with the feed and a user's ID when the user's last stream here is gone.
pub type OnLastGone = Arc<dyn Fn(&Feed, &str) + Send + Sync>;

/// The open streams, by user. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    /// Each online user's open streams. A std mutex: every critical section is a few
    /// map operations and non-blocking queue pushes, and never crosses an `.await`.
    streams: Arc<Mutex<HashMap<String, Vec<Stream>>>>,
    /// The next stream ID.
    next_id: Arc<AtomicU64>,
    /// How many events a stream may have queued before it is cut off as too slow.
    buffer: usize,
    /// Told when a user's last stream goes.
    on_last_gone: Arc<Mutex<Option<OnLastGone>>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// One Subscribe stream, as the feed holds it.
pub struct Stream {
    /// Identifies the stream for removing it.
    id: u64,
    /// Where its events go; bounded.
    tx: mpsc::Sender<Queued>,
    /// Set when the feed ends it.
    ended: Ended,
    /// The last cursor it has (or that its replay covers).
    last: u64,
}

/// The stream's own end: its queue, why it was ended, and the registration that
/// removes it from the feed when dropped.
pub struct Registered {
    /// Live events.
    pub events: mpsc::Receiver<Queued>,
    /// Set when the feed ends the stream.
    pub ended: Ended,
    /// Removes the stream when dropped.
    pub registration: Registration,
}

/// Removes a stream from the feed when dropped.
pub struct Registration {
    /// The feed to remove the stream from.
    feed: Feed,
    /// The stream's user.
    user: String,
    /// The stream's ID.
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.feed.remove(&self.user, self.id);
    }
}

/// A place held on one stream's queue for an entry a store is about to commit.
pub struct Permit {
    /// The place.
    permit: OwnedPermit<Queued>,
    /// The stream's user, for cutting it off if the commit fails.
    user: String,
    /// The stream's ID.
    id: u64,
}

impl Feed {
    /// An empty feed whose streams queue up to `buffer` events.
    pub fn new(buffer: usize) -> Self {
        Self {
            streams: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            buffer: buffer.max(1),
            on_last_gone: Arc::default(),
        }
    }

    /// Calls `on_last_gone` whenever a user's last stream here goes.
    pub fn set_on_last_gone(&self, on_last_gone: OnLastGone) {
        *self.on_last_gone.lock().unwrap_or_else(|p| p.into_inner()) = Some(on_last_gone);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Stream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new stream for `user`, not added yet: the part the store adds, and the
    /// stream's own end.
    pub fn stream(&self, user: &str) -> (Stream, Registered) {
        let (tx, events) = mpsc::channel(self.buffer);
        let ended = Ended::default();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = Stream {
            id,
            tx,
            ended: ended.clone(),
            last: 0,
        };
        let registered = Registered {
            events,
            ended,
            registration: Registration {
                feed: self.clone(),
                user: user.to_owned(),
                id,
            },
        };
        (stream, registered)
    }

    /// Adds `stream` for `user`, to be offered every entry after `start`; refused when
    /// the user has `max` streams here already.
    pub fn add(&self, user: &str, mut stream: Stream, start: u64, max: usize) -> Result<(), Error> {
        stream.last = start;
        {
            let mut all = self.lock();
            let streams = all.entry(user.to_owned()).or_default();
            if streams.len() >= max {
                return Err(too_many_streams(max));
            }
            if stream.tx.is_closed() {
                // Its call ended while it was being added.
                return Ok(());
            }
            streams.push(stream);
        }
        METRICS.subscribers.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes one stream; tells [`OnLastGone`] when the user has none left.
    fn remove(&self, user: &str, id: u64) {
        let none_left = {
            let mut all = self.lock();
            match all.get_mut(user) {
                Some(streams) => {
                    let before = streams.len();
                    streams.retain(|s| s.id != id);
                    if streams.len() < before {
                        METRICS.subscribers.fetch_sub(1, Ordering::Relaxed);
                    }
                    let empty = streams.is_empty();
                    if empty {
                        all.remove(user);
                    }
                    empty
                }
                None => true,
            }
        };
        if none_left {
            let on_last_gone = self
                .on_last_gone
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(on_last_gone) = on_last_gone {
                on_last_gone(self, user);
            }
        }
    }

    /// Ends every stream of `user` here (each resumes after its last cursor).
    pub fn end(&self, user: &str) {
        let ids: Vec<(u64, bool)> = self
            .lock()
            .get(user)
            .into_iter()
            .flatten()
            .map(|s| (s.id, false))
            .collect();
        self.cut_off(user, ids);
    }

    /// Ends every stream here (each resumes after its last cursor).
    pub fn end_all(&self) {
        let users: Vec<String> = self.lock().keys().cloned().collect();
        for user in users {
            self.end(&user);
        }
    }

    /// Those of `users` who have a stream open here.
    pub fn here(&self, users: &[String]) -> Vec<String> {
        let all = self.lock();
        users
            .iter()
            .filter(|u| all.contains_key(u.as_str()))
            .cloned()
            .collect()
    }

    /// Whether `user` has a stream open here.
    pub fn has(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// Queues `event` with `cursor` on each stream of `user` that does not have it yet,
    /// without waiting. Returns how many streams took it.
    pub fn offer(&self, user: &str, cursor: u64, event: Option<&Arc<Event>>) -> usize {
        let mut delivered = 0;
        let mut cut = Vec::new();
        {
            let mut all = self.lock();
            let Some(streams) = all.get_mut(user) else {
                return 0;
            };
            for stream in streams.iter_mut().filter(|s| s.last < cursor) {
                let Some(event) = event else {
                    // Nothing to send (a reserved cursor), but passed.
                    stream.last = cursor;
                    continue;
                };
                match stream.tx.try_send((Arc::clone(event), cursor)) {
                    Ok(()) => {
                        stream.last = cursor;
                        delivered += 1;
                    }
                    Err(TrySendError::Full(_)) => cut.push((stream.id, true)),
                    Err(TrySendError::Closed(_)) => cut.push((stream.id, false)),
                }
            }
        }
        self.cut_off(user, cut);
        METRICS
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    /// Holds a place for the entry at `cursor` on each stream of `user` that does not
    /// have it yet; a stream with no room is cut off. The entry is then sent through
    /// the permits, after it is committed ([`Permit::send`]), or the streams are
    /// ended ([`Feed::failed`]).
    pub fn reserve(&self, user: &str, cursor: u64) -> Vec<Permit> {
        let mut permits = Vec::new();
        let mut cut = Vec::new();
        {
            let mut all = self.lock();
            let Some(streams) = all.get_mut(user) else {
                return permits;
            };
            for stream in streams.iter_mut().filter(|s| s.last < cursor) {
                match stream.tx.clone().try_reserve_owned() {
                    Ok(permit) => {
                        stream.last = cursor;
                        permits.push(Permit {
                            permit,
                            user: user.to_owned(),
                            id: stream.id,
                        });
                    }
                    Err(TrySendError::Full(_)) => cut.push((stream.id, true)),
                    Err(TrySendError::Closed(_)) => cut.push((stream.id, false)),
                }
            }
        }
        self.cut_off(user, cut);
        permits
    }

    /// Ends the streams holding `permits`: the entries promised to them were not
    /// committed, so their cursors no longer match the log (they resume after their
    /// last cursor).
    pub fn failed(&self, permits: Vec<Permit>) {
        let mut by_user: HashMap<String, Vec<(u64, bool)>> = HashMap::new();
        for permit in permits {
            by_user
                .entry(permit.user)
                .or_default()
                .push((permit.id, false));
        }
        for (user, ids) in by_user {
            {
                let all = self.lock();
                for stream in all.get(&user).into_iter().flatten() {
                    if ids.iter().any(|(id, _)| *id == stream.id) {
                        stream.ended.store(ended::STORE_FAILED, Ordering::Relaxed);
                    }
                }
            }
            self.cut_off(&user, ids);
        }
    }

    /// Removes the streams `ids` of `user`; those flagged `too_slow` are marked so.
    fn cut_off(&self, user: &str, ids: Vec<(u64, bool)>) {
        for (id, too_slow) in ids {
            if too_slow {
                let all = self.lock();
                if let Some(stream) = all.get(user).into_iter().flatten().find(|s| s.id == id) {
                    let _ = stream.ended.compare_exchange(
                        ended::OPEN,
                        ended::TOO_SLOW,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                drop(all);
                METRICS.subscribers_cut_off.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%user, "cutting off a Subscribe stream that is too slow");
            }
            self.remove(user, id);
        }
    }
}

impl Permit {
    /// Queues the committed entry on the place held for it.
    pub fn send(self, event: Arc<Event>, cursor: u64) {
        self.permit.send((event, cursor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Arc<Event> {
        Arc::new(Event::default())
    }

    #[tokio::test]
    async fn a_stream_gets_each_entry_after_its_start_once_in_order() {
        let feed = Feed::new(8);
        let (stream, mut mine) = feed.stream("bob");
        assert!(feed.add("bob", stream, 3, 4).is_ok());
        for cursor in [2, 3, 4, 4, 6] {
            feed.offer("bob", cursor, Some(&event()));
        }
        let mut got = Vec::new();
        while let Ok((_, cursor)) = mine.events.try_recv() {
            got.push(cursor);
        }
        assert_eq!(got, [4, 6]);
    }

    #[tokio::test]
    async fn a_full_stream_is_cut_off_and_a_reservation_is_kept() {
        let feed = Feed::new(2);
        let (stream, mut mine) = feed.stream("bob");
        assert!(feed.add("bob", stream, 0, 4).is_ok());
        let held = feed.reserve("bob", 1);
        assert_eq!(held.len(), 1);
        assert_eq!(feed.offer("bob", 2, Some(&event())), 1);
        // Full now (one held, one queued): the next entry cuts it off.
        assert_eq!(feed.offer("bob", 3, Some(&event())), 0);
        assert_eq!(mine.ended.load(Ordering::Relaxed), ended::TOO_SLOW);
        assert!(!feed.has("bob"));
        for permit in held {
            permit.send(event(), 1);
        }
        let mut got = Vec::new();
        while let Ok((_, cursor)) = mine.events.try_recv() {
            got.push(cursor);
        }
        assert_eq!(got, [2, 1], "queued in the order of sending");
    }

    #[tokio::test]
    async fn a_user_has_at_most_max_streams() {
        let feed = Feed::new(2);
        let (one, _one) = feed.stream("bob");
        let (two, _two) = feed.stream("bob");
        assert!(feed.add("bob", one, 0, 1).is_ok());
        assert!(feed.add("bob", two, 0, 1).is_err());
    }
}
