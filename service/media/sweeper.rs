//! The sweeper: a background task that deletes expired records, the shared content
//! no live record names any more, and uploads a crash left staged. Expired media are
//! NOT_FOUND at once (readers check the expiry); this reclaims space. Why content is
//! only deleted after a grace period is in `mod.rs`.

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, path::Path};
use tokio::sync::watch;

use super::{
    MediaStore, Record, content, delete, ignore_not_found, quota, record, resumable, verdict,
};
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

/// Retries the aborts of failed uploads that the store refused earlier, deletes every
/// expired record once, then the content and staged uploads nothing needs, and the
/// resumable uploads idle past their TTL (or committed a TTL ago) and the quota holds
/// no upload will end, the tombstones of
/// deleted media past their original expiry and released verdicts of content no live
/// record names; returns
/// how many uploads, records and objects were removed.
pub async fn sweep_once(media: &MediaStore) -> Result<usize, Error> {
    let aborted = media.pending_aborts().retry().await;
    // Taken before the records are listed: content younger than this may belong to a
    // record written after the listing.
    let cutoff = record::now_millis().saturating_sub(content::grace_ms(media));
    let (expired, live) = sweep_records(media).await?;
    let unreferenced = sweep_content(media, &live.content, cutoff).await?;
    let staged = sweep_staged(media, cutoff).await?;
    let thumbs = sweep_thumbs(media, &live.digests).await?;
    let (resumable, open) = resumable::sweep(media).await?;
    let holds = quota::sweep_holds(media, &open, cutoff).await?;
    let tombstones = delete::sweep_tombstones(media).await?;
    let verdicts = verdict::sweep(media, &live.digests, cutoff).await?;
    Ok(aborted
        + expired
        + unreferenced
        + staged
        + thumbs
        + resumable
        + holds
        + tombstones
        + verdicts)
}

/// What the live records name.
#[derive(Default)]
struct Live {
    /// The SHA-256 of every live layout-2 record: their shared content.
    content: HashSet<String>,
    /// The SHA-256 of every live record of any layout: the content whose thumbnails
    /// are kept.
    digests: HashSet<String>,
}

/// Deletes every expired record once; returns how many were deleted and what the live
/// records name.
async fn sweep_records(media: &MediaStore) -> Result<(usize, Live), Error> {
    let now = record::now_millis();
    let prefix = Path::from("records");
    let mut listing = media.object_store().list(Some(&prefix));
    let mut deleted = 0;
    let mut live = Live::default();
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
        match Record::from_json(&bytes) {
            Ok(record) if !record.is_expired(now) => {
                if record.layout == record::LAYOUT_CONTENT {
                    live.content.insert(record.sha256.clone());
                }
                live.digests.insert(record.sha256);
                continue;
            }
            Ok(record) => media.delete_record(&record).await?,
            // A record nobody can read serves nobody; remove it (and layout-1 bytes).
            Err(_) => {
                ignore_not_found(
                    media
                        .object_store()
                        .delete(&MediaStore::legacy_blob_path(&id))
                        .await,
                )?;
                ignore_not_found(media.object_store().delete(&meta.location).await)?;
            }
        }
        METRICS.media_expired.fetch_add(1, Ordering::Relaxed);
        deleted += 1;
    }
    Ok((deleted, live))
}

/// Deletes each `content/<sha256>` that no live record names and that was last
/// written before `cutoff`; returns how many.
async fn sweep_content(
    media: &MediaStore,
    live: &HashSet<String>,
    cutoff: u64,
) -> Result<usize, Error> {
    let store = media.object_store();
    let stale = older_than(media, "content", cutoff).await?;
    let mut deleted = 0;
    for meta in stale {
        let Some(sha256) = meta.location.filename() else {
            continue;
        };
        if live.contains(sha256) {
            continue;
        }
        // Read the time again: an upload may have copied the content in since the
        // listing.
        match store.head(&meta.location).await {
            Ok(now) if millis(&now) < cutoff => {}
            Ok(_) | Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        ignore_not_found(store.delete(&meta.location).await)?;
        tracing::info!(key = %meta.location, "deleted content no live media names");
        deleted += 1;
    }
    Ok(deleted)
}

/// Deletes the `uploads/<id>` that a crashed upload left before `cutoff`.
async fn sweep_staged(media: &MediaStore, cutoff: u64) -> Result<usize, Error> {
    let stale = older_than(media, "uploads", cutoff).await?;
    for meta in &stale {
        ignore_not_found(media.object_store().delete(&meta.location).await)?;
        tracing::info!(key = %meta.location, "deleted an upload left staged by a crash");
    }
    Ok(stale.len())
}

/// Deletes each `thumbs/<sha256>/<size>` whose content no live record names; returns
/// how many. No grace period: a thumbnail deleted while a new record of its content
/// is written is made again on the next request.
async fn sweep_thumbs(media: &MediaStore, live: &HashSet<String>) -> Result<usize, Error> {
    let store = media.object_store();
    let prefix = Path::from("thumbs");
    let listing: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    let mut deleted = 0;
    for meta in listing {
        let sha256 = meta.location.parts().nth(1);
        if sha256.is_some_and(|sha| live.contains(sha.as_ref())) {
            continue;
        }
        ignore_not_found(store.delete(&meta.location).await)?;
        tracing::info!(key = %meta.location, "deleted a thumbnail of expired media");
        deleted += 1;
    }
    Ok(deleted)
}

/// The objects under `prefix` last written before `cutoff`.
async fn older_than(
    media: &MediaStore,
    prefix: &str,
    cutoff: u64,
) -> Result<Vec<ObjectMeta>, Error> {
    let prefix = Path::from(prefix);
    let mut listing = media.object_store().list(Some(&prefix));
    let mut out = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if millis(&meta) < cutoff {
            out.push(meta);
        }
    }
    Ok(out)
}

/// When an object was last written, in milliseconds since the Unix epoch.
fn millis(meta: &ObjectMeta) -> u64 {
    meta.last_modified.timestamp_millis().max(0) as u64
}
