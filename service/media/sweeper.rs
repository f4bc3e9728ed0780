//! The sweeper: a background task that deletes the bytes and records of expired media.
//! Expired media are NOT_FOUND at once (readers check the expiry); this reclaims space.

use std::{sync::atomic::Ordering, time::Duration};

use futures::StreamExt;
use object_store::{ObjectStoreExt, path::Path};
use tokio::sync::watch;

use super::{MediaStore, Record, record};
use crate::{error::Error, ids::MediaId, metrics::METRICS};

/// Runs [`sweep_once`] every `interval` until `shutdown` changes.
pub fn spawn_sweeper(
    media: MediaStore,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            match sweep_once(&media).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "swept expired media"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired media failed"),
            }
        }
    })
}

/// Deletes every expired object once and returns how many were deleted.
pub async fn sweep_once(media: &MediaStore) -> Result<usize, Error> {
    let now = record::now_millis();
    let prefix = Path::from("records");
    let mut listing = media.object_store().list(Some(&prefix));
    let mut deleted = 0;
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(id) = meta
            .location
            .filename()
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|id| MediaId::parse(id).ok())
        else {
            continue;
        };
        let bytes = match media.object_store().get(&meta.location).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let expired = match Record::from_json(&bytes) {
            Ok(record) => record.is_expired(now),
            // A record nobody can read serves nobody; remove it with its bytes.
            Err(_) => true,
        };
        if expired {
            media.delete(&id).await?;
            METRICS.media_expired.fetch_add(1, Ordering::Relaxed);
            deleted += 1;
        }
    }
    Ok(deleted)
}
