//! The sweeper: a background task that deletes the bytes and records of expired media.
//! Expired media are NOT_FOUND at once (readers check the expiry); this reclaims space.

use std::{sync::atomic::Ordering, time::Duration};

use futures::StreamExt;
use object_store::{ObjectStoreExt, path::Path};
use tokio::sync::watch;

use super::{MediaStore, Record, record};
use crate::{error::Error, ids::MediaId, metrics::METRICS, periodic::spawn_periodic};

/// Runs [`sweep_once`] every `interval` until `shutdown` turns true.
pub fn spawn_sweeper(
    media: MediaStore,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_periodic("expired media", interval, shutdown, move || {
        let media = media.clone();
        async move { sweep_once(&media).await }
    })
}

/// Retries the aborts of failed uploads that the store refused earlier, then deletes
/// every expired object once; returns how many uploads and objects were removed.
pub async fn sweep_once(media: &MediaStore) -> Result<usize, Error> {
    let aborted = media.pending_aborts().retry().await;
    Ok(aborted + sweep_expired(media).await?)
}

/// Deletes every expired object once and returns how many were deleted.
async fn sweep_expired(media: &MediaStore) -> Result<usize, Error> {
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
