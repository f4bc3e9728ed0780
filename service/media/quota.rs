//! Storage quotas per user: the bytes of live media (`--quota-bytes`) and the bytes
//! uploaded in the last hour (`--quota-bytes-per-hour`), both off by default.
//!
//! The accounting lives in the object store, beside the media, so every replica sees
//! the same: while a quota is set, each finished upload (a header-only re-upload
//! included) writes an empty key `usage/<sha256(owner)>/<created>-<expires>-<size>-<id>`
//! (milliseconds, bytes). An upload's header is checked against a listing of the
//! owner's keys: live bytes are the sizes of keys not yet expired, the hour's bytes
//! those created in the last hour. Over either, the upload is refused at the header,
//! before any byte is stored, with RESOURCE_EXHAUSTED and reason QUOTA_EXCEEDED whose
//! metadata names the quota, its limit and the use. Expiry frees quota at once (an
//! expired key no longer counts); the sweeper deletes the key with the record.
//!
//! Exactness: uploads of one user that run at once are each checked before any of
//! them is counted, so together they may pass the quota by at most what is in flight
//! (at most 9 transfers of at most 30 MiB). Uploads made while no quota was set are
//! not counted.

use std::collections::BTreeMap;

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload, path::Path};

use super::{MediaStore, Record, ignore_not_found, owner_key, record::now_millis};
use crate::error::{Error, Reason};

/// One hour in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// The quotas; `None` is off.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaLimits {
    /// The most bytes of live media one user may hold.
    pub live_bytes: Option<u64>,
    /// The most bytes one user may upload in any hour.
    pub bytes_per_hour: Option<u64>,
}

impl QuotaLimits {
    fn enabled(&self) -> bool {
        self.live_bytes.is_some() || self.bytes_per_hour.is_some()
    }
}

fn owner_prefix(owner: &str) -> Path {
    Path::from(format!("usage/{}", owner_key(owner)))
}

fn usage_path(record: &Record) -> Path {
    let prefix = owner_prefix(&record.owner);
    Path::from(format!(
        "{prefix}/{}-{}-{}-{}",
        record.created_ms, record.expires_ms, record.size, record.media_id
    ))
}

/// `owner`'s use now: (live bytes, bytes uploaded in the last hour).
async fn usage(media: &MediaStore, owner: &str) -> Result<(u64, u64), Error> {
    let now = now_millis();
    let mut listing = media.object_store().list(Some(&owner_prefix(owner)));
    let (mut live, mut hour) = (0u64, 0u64);
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let mut fields = name.splitn(4, '-').map(|f| f.parse::<u64>());
        let (Some(Ok(created)), Some(Ok(expires)), Some(Ok(size))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if expires > now {
            live += size;
        }
        if created + HOUR_MS > now {
            hour += size;
        }
    }
    Ok((live, hour))
}

/// Refuses an upload of `size` bytes by `owner` that would pass a quota.
pub(super) async fn check(media: &MediaStore, owner: &str, size: u64) -> Result<(), Error> {
    let limits = media.limits().quota;
    if !limits.enabled() {
        return Ok(());
    }
    let (live, hour) = usage(media, owner).await?;
    let over = |name: &str, limit: u64, used: u64, what: &str| {
        let metadata = BTreeMap::from([
            ("quota".to_owned(), name.to_owned()),
            ("limit".to_owned(), limit.to_string()),
            ("used".to_owned(), used.to_string()),
            ("requested".to_owned(), size.to_string()),
        ]);
        Error::RefusedWith(
            Reason::QuotaExceeded,
            format!(
                "over the storage quota: {used} of {limit} bytes {what} are used and this upload declares {size} more; nothing was stored"
            ),
            metadata,
        )
    };
    if let Some(limit) = limits.live_bytes
        && live + size > limit
    {
        return Err(over("live_bytes", limit, live, "of live media"));
    }
    if let Some(limit) = limits.bytes_per_hour
        && hour + size > limit
    {
        return Err(over(
            "bytes_per_hour",
            limit,
            hour,
            "uploaded in the last hour",
        ));
    }
    Ok(())
}

/// Counts a finished upload against its owner's quotas (when quotas are on).
pub(super) async fn count(media: &MediaStore, record: &Record) -> Result<(), Error> {
    if !media.limits().quota.enabled() {
        return Ok(());
    }
    media
        .object_store()
        .put(&usage_path(record), PutPayload::new())
        .await?;
    Ok(())
}

/// Forgets an expired upload (the sweeper deletes its record).
pub(super) async fn forget(media: &MediaStore, record: &Record) -> Result<(), Error> {
    ignore_not_found(media.object_store().delete(&usage_path(record)).await)
}

/// Counts a stored upload against its owner's quotas. The upload has succeeded
/// whatever happens here: a failure is logged, and the upload goes uncounted.
pub(super) async fn counted(media: &MediaStore, record: &Record) {
    if let Err(e) = count(media, record).await {
        tracing::warn!(error = %e, media_id = %record.media_id, "counting an upload against its owner's quota");
    }
}
