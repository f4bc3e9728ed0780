//! How one event is posted until it is delivered: exponential backoff with jitter
//! between attempts, capped; a transport error, a timeout, a 5xx, a 408 or a 429 is
//! tried again, a 2xx is delivered, and any other status (a 4xx, a 3xx: redirects are
//! not followed) is a permanent failure that is logged, counted and skipped.

use std::{future::Future, time::Duration};

use rand::Rng;
use tokio::sync::watch;

use crate::hooks::{Answer, HookError};

/// How often a store is told an event is still being worked on while it waits.
const WORKING_EVERY: Duration = Duration::from_secs(5);

/// The delays between attempts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay.
    pub most: Duration,
}

impl Backoff {
    /// The delay after failed attempt `n` (from 1): `first` doubled each time, capped
    /// at `most`, then between half of it and all of it (so that many servers that
    /// failed together do not retry together).
    pub fn delay(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let full = self
            .first
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(30)))
            .min(self.most);
        let half = full / 2;
        half + Duration::from_nanos(rng.random_range(0..=half.as_nanos() as u64))
    }
}

/// What an answer (or its absence) means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Try again after a delay.
    Retry,
    /// Never delivered; skip it.
    Permanent(u16),
}

/// The verdict on an attempt.
pub fn judge(result: &Result<Answer, HookError>) -> Verdict {
    match result {
        Ok(answer) => match answer.status {
            200..=299 => Verdict::Delivered,
            408 | 429 | 500..=599 => Verdict::Retry,
            // Redirects are not followed; a moved hook is fixed by its operator,
            // without losing events meanwhile.
            300..=399 => Verdict::Retry,
            status => Verdict::Permanent(status),
        },
        Err(_) => Verdict::Retry,
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered after this many attempts.
    Delivered(u32),
    /// Refused for good with this status.
    Failed(u16),
    /// Shutdown came first: not settled, posted again after the restart.
    Stopped,
}

/// Posts with `attempt` until delivered, refused for good, or `stop` turns true (an
/// attempt in flight is finished first: it is bounded by the hook's timeout, and
/// abandoning it could post the event twice). `working` is called before each wait.
pub async fn deliver<A, F, W, G>(
    mut attempt: A,
    backoff: Backoff,
    stop: &mut watch::Receiver<bool>,
    mut working: W,
) -> Outcome
where
    A: FnMut() -> F,
    F: Future<Output = Result<Answer, HookError>>,
    W: FnMut() -> G,
    G: Future<Output = ()>,
{
    let mut failures = 0u32;
    loop {
        let result = attempt().await;
        match judge(&result) {
            Verdict::Delivered => return Outcome::Delivered(failures + 1),
            Verdict::Permanent(status) => return Outcome::Failed(status),
            Verdict::Retry => {}
        }
        failures += 1;
        crate::metrics::event_hook_post("retried");
        let delay = backoff.delay(failures, &mut rand::rng());
        match &result {
            Ok(answer) => {
                tracing::warn!(status = answer.status, attempt = failures, retry_in = ?delay, "event hook: the hook failed; retrying")
            }
            Err(error) => {
                tracing::warn!(%error, attempt = failures, retry_in = ?delay, "event hook: the hook failed; retrying")
            }
        }
        if *stop.borrow() {
            return Outcome::Stopped;
        }
        // Told again every few seconds: a store may redeliver an event whose poster
        // went quiet.
        let until = tokio::time::Instant::now() + delay;
        while tokio::time::Instant::now() < until {
            working().await;
            let step = until.min(tokio::time::Instant::now() + WORKING_EVERY);
            tokio::select! {
                () = tokio::time::sleep_until(step) => {}
                _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    fn answer(status: u16) -> Result<Answer, HookError> {
        Ok(Answer {
            status,
            body: Default::default(),
        })
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            most: Duration::from_secs(300),
        };
        let mut rng = rand::rng();
        for _ in 0..100 {
            let d1 = backoff.delay(1, &mut rng);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d4 = backoff.delay(4, &mut rng);
            assert!(d4 >= Duration::from_secs(4) && d4 <= Duration::from_secs(8));
            let d40 = backoff.delay(40, &mut rng);
            assert!(d40 >= Duration::from_secs(150) && d40 <= Duration::from_secs(300));
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert_eq!(judge(&answer(204)), Verdict::Delivered);
        for status in [408, 429, 500, 503, 302] {
            assert_eq!(judge(&answer(status)), Verdict::Retry, "{status}");
        }
        for status in [400, 401, 404, 410, 422] {
            assert_eq!(judge(&answer(status)), Verdict::Permanent(status));
        }
        assert_eq!(
            judge(&Err(HookError::Timeout(Duration::from_secs(1)))),
            Verdict::Retry
        );
        assert_eq!(
            judge(&Err(HookError::Transport("refused".into()))),
            Verdict::Retry
        );
    }

    /// Three failures then a success: delivered on the fourth attempt, after the
    /// three backoff delays (time is paused: the test sets it, not sleeps).
    #[tokio::test(start_paused = true)]
    async fn retries_until_delivered() {
        let calls = Arc::new(AtomicU32::new(0));
        let (_tx, mut stop) = watch::channel(false);
        let backoff = Backoff {
            first: Duration::from_secs(1),
            most: Duration::from_secs(300),
        };
        let started = tokio::time::Instant::now();
        let outcome = deliver(
            || {
                let calls = calls.clone();
                async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => answer(503),
                        1 => Err(HookError::Transport("refused".into())),
                        2 => answer(429),
                        _ => answer(200),
                    }
                }
            },
            backoff,
            &mut stop,
            || async {},
        )
        .await;
        assert_eq!(outcome, Outcome::Delivered(4));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(3500) && waited <= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_4xx_is_not_retried() {
        let calls = Arc::new(AtomicU32::new(0));
        let (_tx, mut stop) = watch::channel(false);
        let backoff = Backoff {
            first: Duration::from_secs(1),
            most: Duration::from_secs(2),
        };
        let outcome = deliver(
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { answer(400) }
            },
            backoff,
            &mut stop,
            || async {},
        )
        .await;
        assert_eq!(outcome, Outcome::Failed(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_retries() {
        let (tx, mut stop) = watch::channel(false);
        let backoff = Backoff {
            first: Duration::from_secs(60),
            most: Duration::from_secs(60),
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let _ = tx.send(true);
        });
        let outcome = deliver(|| async { answer(500) }, backoff, &mut stop, || async {}).await;
        assert_eq!(outcome, Outcome::Stopped);
    }
}
