//! Content shared between uploads: publishing verified bytes under their SHA-256, and
//! finding content an owner already stored for a header-only re-upload. The keys,
//! and why the order of writes below is safe against the sweeper, are in `mod.rs`.

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{MediaStore, Record, hook, ignore_not_found, quota, record, verdict};
use crate::{error::Error, ids::MediaId};

/// A live record of `owner` for the content `sha256` (hex) of `size` bytes, whose
/// content is stored and which outlives the sweeper's grace period; `None` otherwise.
/// Only `owner`'s own index is read, so the answer (and its cost) says nothing about
/// other users' content.
pub(super) async fn find_own(
    media: &MediaStore,
    owner: &str,
    sha256: &str,
    size: u64,
) -> Result<Option<Record>, Error> {
    let prefix = MediaStore::owner_prefix(owner, sha256);
    let mut listing = media.object_store().list(Some(&prefix));
    let not_before = record::now_millis().saturating_add(grace_ms(media));
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(id) = meta
            .location
            .filename()
            .and_then(|name| MediaId::parse(name).ok())
        else {
            continue;
        };
        let found = match media
            .object_store()
            .get(&MediaStore::record_path(&id))
            .await
        {
            Ok(result) => match Record::from_json(&result.bytes().await?) {
                Ok(record) => record,
                // Unreadable: not content this owner can reuse.
                Err(_) => continue,
            },
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if found.owner != owner
            || found.sha256 != sha256
            || found.size != size
            || found.layout != record::LAYOUT_CONTENT
            || found.expires_ms <= not_before
        {
            continue;
        }
        match media
            .object_store()
            .head(&MediaStore::content_path(sha256))
            .await
        {
            Ok(meta) if meta.size == size => return Ok(Some(found)),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Publishes a verified upload: refuses quarantined content (MEDIA_QUARANTINED; the
/// caller removes the staged bytes), asks the upload hook when one is configured
/// (a rejection or a failure is an error, and the caller removes the staged bytes;
/// a quarantine publishes, counts the upload, and then answers MEDIA_QUARANTINED),
/// copies `uploads/<id>` to `content/<sha256>`, writes
/// the record (the upload becomes visible), makes sure the content survived a
/// concurrent sweep, indexes it for its owner and removes the staged copy.
pub(super) async fn publish(
    media: &MediaStore,
    id: &MediaId,
    record: &Record,
) -> Result<(), Error> {
    let store = media.object_store();
    let staging = MediaStore::staging_path(id);
    let content = MediaStore::content_path(&record.sha256);
    verdict::check_upload(media, &record.sha256).await?;
    let judged = hook::judge(media, id, record).await?;
    store.copy(&staging, &content).await?;
    crash_point("after-copy");
    media.put_record(record).await?;
    crash_point("after-record");
    // A sweep that read the content's old time may have deleted it after the copy.
    match store.head(&content).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(media_id = %id, "content swept during its upload; copying again");
            if let Err(e) = store.copy(&staging, &content).await {
                let _ = media.delete_record(record).await;
                return Err(e.into());
            }
        }
        Err(e) => {
            let _ = media.delete_record(record).await;
            return Err(e.into());
        }
    }
    index(media, record).await;
    // Left behind on failure, a staged copy is swept after the grace period.
    if let Err(e) = ignore_not_found(store.delete(&staging).await) {
        tracing::warn!(error = %e, media_id = %id, "could not remove a staged upload");
    }
    if judged == hook::Judged::Quarantine {
        quota::counted(media, record).await;
        return Err(hook::quarantined(record));
    }
    Ok(())
}

/// Writes the owner index key of `record`. Best effort: without it the record is
/// whole, and only the owner's header-only re-upload of it is not offered.
pub(super) async fn index(media: &MediaStore, record: &Record) {
    let key = MediaStore::owner_index_path(record);
    if let Err(e) = media.object_store().put(&key, Default::default()).await {
        tracing::warn!(error = %e, media_id = %record.media_id, "could not index an upload for its owner");
    }
}

/// The grace period in milliseconds.
pub(super) fn grace_ms(media: &MediaStore) -> u64 {
    media.limits().grace.as_millis().min(u64::MAX as u128) as u64
}

/// A fault-injection point for the crash drills (tests/dedup.rs): when the process was
/// started with `COURIER_CRASH_AT=<name>`, it dies here at once, as under kill -9 (no
/// unwinding, no cleanup). Unset, as in production, it does nothing.
pub(super) fn crash_point(name: &str) {
    static CRASH_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if CRASH_AT
        .get_or_init(|| std::env::var("COURIER_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        std::process::abort();
    }
}
