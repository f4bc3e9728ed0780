//! Background chores that run every so often until shutdown: the media sweeper and
//! the offline-cache purger.

use std::{future::Future, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use crate::error::Error;

/// Runs `chore` every `interval` (first at once) until `shutdown` turns true, logging
/// how many things it removed under `what`.
pub fn spawn_periodic<F, Fut>(
    what: &'static str,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut chore: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<usize, Error>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            match chore().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, what, "removed expired data"),
                Err(e) => tracing::warn!(error = %e, what, "removing expired data failed"),
            }
        }
    })
}
