//! The per-user message rate limit: at most N messages in any sliding window.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::error::{Error, Reason};

/// Past this many tracked users, idle ones are forgotten on the next check.
const PRUNE_AT: usize = 10_000;

/// A sliding-window limiter, exact: the (N+1)th message inside any window is refused.
#[derive(Debug)]
pub struct RateLimiter {
    /// Messages allowed per window.
    limit: usize,
    /// The window's length.
    window: Duration,
    /// The times of each user's messages inside the current window, oldest first.
    ///
    /// A std mutex: held only for a few queue operations, never across an `.await`.
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// A limiter allowing `limit` messages per `window` per user.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            sent: Mutex::default(),
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
        if sent.len() > PRUNE_AT {
            let window = self.window;
            sent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = sent.entry(user.to_owned()).or_default();
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
