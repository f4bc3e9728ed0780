//! The per-user message rate limit: at most N messages in any sliding window.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    bus::limits::BusRate,
    error::{Error, Reason},
};

/// The rate limit of a server: counted here, or on the bus across every replica.
#[derive(Debug)]
pub enum RateLimit {
    /// One server.
    Local(RateLimiter),
    /// Several replicas sharing a bus.
    Cluster(Box<BusRate>),
}

impl RateLimit {
    /// Counts one message of `user`, or refuses it with RESOURCE_EXHAUSTED.
    pub async fn check(&self, user: &str) -> Result<(), Error> {
        match self {
            Self::Local(limiter) => limiter.check(user),
            Self::Cluster(rate) => rate.check(user).await,
        }
    }
}

/// Past this many tracked users, idle ones are forgotten on the next check; after a
/// prune the threshold becomes twice the users left (at least this), so a full scan
/// happens only when the map has doubled: amortised O(1) per message however many
/// users are active.
const PRUNE_AT: usize = 10_000;

/// A sliding-window limiter, exact: the (N+1)th message inside any window is refused.
#[derive(Debug)]
pub struct RateLimiter {
    /// Messages allowed per window.
    limit: usize,
    /// The window's length.
    window: Duration,
    /// Each user's recent messages. A std mutex: held only for a few queue
    /// operations (and, amortised, a share of a prune), never across an `.await`.
    sent: Mutex<Sent>,
}

/// The times of each user's messages inside the current window, oldest first.
#[derive(Debug)]
struct Sent {
    /// Per user.
    users: HashMap<String, VecDeque<Instant>>,
    /// Prune idle users when the map grows past this.
    prune_at: usize,
    /// How many prunes ran (for tests of the amortised cost).
    prunes: u64,
}

impl RateLimiter {
    /// A limiter allowing `limit` messages per `window` per user.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            sent: Mutex::new(Sent {
                users: HashMap::new(),
                prune_at: PRUNE_AT,
                prunes: 0,
            }),
        }
    }

    /// Counts one message of `user`, or refuses it with RESOURCE_EXHAUSTED.
    pub fn check(&self, user: &str) -> Result<(), Error> {
        self.check_at(user, Instant::now())
    }

    fn check_at(&self, user: &str, now: Instant) -> Result<(), Error> {
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if sent.users.len() > sent.prune_at {
            let window = self.window;
            sent.users.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            sent.prune_at = (sent.users.len() * 2).max(PRUNE_AT);
            sent.prunes += 1;
        }
        let times = sent.users.entry(user.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit {
            return Err(Error::Refused(
                Reason::RateLimited,
                format!(
                    "sending too often: at most {} messages per {} s per user",
                    self.limit,
                    self.window.as_secs_f64()
                ),
            ));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_active_users_do_not_make_every_check_a_scan() {
        let limiter = RateLimiter::new(5, Duration::from_secs(3));
        let now = Instant::now();
        let users = 100_000;
        for i in 0..users {
            assert!(limiter.check_at(&format!("user{i}"), now).is_ok());
        }
        let sent = limiter.sent.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(sent.users.len(), users);
        // 10k, 20k, 40k, 80k: a handful of scans for 100k users, not one per message.
        assert!(sent.prunes <= 5, "{} prunes", sent.prunes);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let limiter = RateLimiter::new(5, Duration::from_secs(3));
        let start = Instant::now();
        for i in 0..=PRUNE_AT {
            assert!(limiter.check_at(&format!("old{i}"), start).is_ok());
        }
        let later = start + Duration::from_secs(10);
        assert!(limiter.check_at("new", later).is_ok());
        assert!(limiter.check_at("newer", later).is_ok());
        let sent = limiter.sent.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(sent.users.len(), 2, "the idle users were pruned");
    }

    #[test]
    fn refuses_past_the_limit_until_the_window_moves() {
        let limiter = RateLimiter::new(3, Duration::from_secs(3));
        let start = Instant::now();
        for i in 0..3 {
            assert!(
                limiter
                    .check_at("a", start + Duration::from_millis(i))
                    .is_ok()
            );
        }
        assert!(
            limiter
                .check_at("a", start + Duration::from_secs(2))
                .is_err()
        );
        assert!(
            limiter
                .check_at("b", start + Duration::from_secs(2))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("a", start + Duration::from_millis(3001))
                .is_ok()
        );
    }
}
