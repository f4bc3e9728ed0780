//! Deleting media: by the owner (DeleteMedia) or an admin (one media ID, or every
//! media naming a content), and the tombstones that make a deleted ID answer
//! NOT_FOUND with reason MEDIA_DELETED rather than a bare NOT_FOUND.
//!
//! A deletion writes the tombstone `deleted/<id>.json` first, then deletes the owner
//! index key, the record and the quota key ([`MediaStore::delete_record`]), so the ID
//! is gone at once and the owner's quota is freed at once. A crash in between leaves a
//! live record beside its tombstone: the record is still served (readers look for a
//! tombstone only when the record is missing), and deleting again finishes the job.
//! The tombstone lives until the media's original expiry, then the sweeper removes
//! it; from then on the ID is a plain NOT_FOUND, as any expired one.
//!
//! The bytes are not touched here: `content/<sha256>` is shared by every record
//! naming it, and the sweeper deletes it once no live record does and it is older
//! than the content grace (see `mod.rs`). Thumbnails go at the first sweep after the
//! last record naming their content. Layout-1 bytes (`blobs/<id>`) belong to one
//! record and go with it.

use futures::{Stream, StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};

use super::{MediaStore, Record, check_sha256_hex, ignore_not_found, record::now_millis};
use crate::{
    error::{Error, Reason},
    ids::MediaId,
};

/// What is left of a deleted media until its original expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The deleted media's ID.
    pub media_id: String,
    /// Its owner, so that the owner's second delete answers OK and nobody else's does.
    pub owner: String,
    /// Its content, for the admin's audit.
    pub sha256: String,
    /// Who deleted it: `owner` or `admin`.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub deleted_ms: u64,
    /// The media's original expiry: the tombstone goes then.
    pub expires_ms: u64,
}

/// The key of the tombstone of media `id`.
fn tombstone_path(id: &MediaId) -> Path {
    Path::from(format!("deleted/{id}.json"))
}

/// The tombstone of media `id`, if one is stored and not expired.
pub async fn tombstone(media: &MediaStore, id: &MediaId) -> Result<Option<Tombstone>, Error> {
    match media.object_store().get(&tombstone_path(id)).await {
        Ok(result) => {
            let bytes = result.bytes().await?;
            Ok(serde_json::from_slice::<Tombstone>(&bytes)
                .ok()
                .filter(|t| t.expires_ms > now_millis()))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The error for a media ID with no record: MEDIA_DELETED (NOT_FOUND) when it was
/// deleted and would not have expired yet, else a plain NOT_FOUND.
pub(super) async fn missing(media: &MediaStore, id: &MediaId) -> Error {
    match tombstone(media, id).await {
        Ok(Some(_)) => Error::Refused(
            Reason::MediaDeleted,
            format!("media {id} was deleted; its bytes can no longer be fetched"),
        ),
        Ok(None) => unknown(id),
        Err(e) => e,
    }
}

/// NOT_FOUND, worded the same for an ID that never existed and one of another owner.
fn unknown(id: &MediaId) -> Error {
    Error::NotFound(format!("no media with ID {id}"))
}

/// DeleteMedia: deletes `owner`'s media `id`. Deleting media already deleted by its
/// owner answers OK; another user's media, or an unknown or expired ID, NOT_FOUND.
pub async fn delete_own(media: &MediaStore, owner: &str, id: &MediaId) -> Result<(), Error> {
    match media.read_record(id).await? {
        Some(record) if record.owner == owner && !record.is_expired(now_millis()) => {
            remove(media, &record, "owner").await
        }
        Some(_) => Err(unknown(id)),
        None => match tombstone(media, id).await? {
            Some(t) if t.owner == owner => Ok(()),
            _ => Err(unknown(id)),
        },
    }
}

/// Deletes `record` on behalf of `by` (`owner` or `admin`): tombstone, then record,
/// owner index and quota key; logged.
pub async fn remove(media: &MediaStore, record: &Record, by: &str) -> Result<(), Error> {
    let id = MediaId::parse(&record.media_id)?;
    let stone = Tombstone {
        media_id: record.media_id.clone(),
        owner: record.owner.clone(),
        sha256: record.sha256.clone(),
        by: by.to_owned(),
        deleted_ms: now_millis(),
        expires_ms: record.expires_ms,
    };
    let json = serde_json::to_vec(&stone)
        .map_err(|e| Error::Internal(format!("encoding a tombstone: {e}")))?;
    media
        .object_store()
        .put(&tombstone_path(&id), PutPayload::from(json))
        .await?;
    media.delete_record(record).await?;
    tracing::info!(media_id = %record.media_id, owner = %record.owner, sha256 = %record.sha256, by, "deleted media");
    Ok(())
}

/// Every record in the store, expired ones included, in key order; unreadable ones
/// are skipped. Reads every record, as a sweep does.
pub fn all_records(media: &MediaStore) -> impl Stream<Item = Result<Record, Error>> + '_ {
    let prefix = Path::from("records");
    media
        .object_store()
        .list(Some(&prefix))
        .filter_map(move |meta| async move {
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => return Some(Err(e.into())),
            };
            let id = meta
                .location
                .filename()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|id| MediaId::parse(id).ok())?;
            media.read_record(&id).await.transpose()
        })
        .filter_map(|record| async move {
            match record {
                // A corrupt record is the sweeper's to remove, not a listing's to fail on.
                Err(Error::Internal(_)) => None,
                other => Some(other),
            }
        })
}

/// Deletes every live media naming content `sha256` (hex) on behalf of an admin;
/// returns their records.
pub async fn delete_content(media: &MediaStore, sha256: &str) -> Result<Vec<Record>, Error> {
    check_sha256_hex(sha256)
        .map_err(|_| Error::invalid("a SHA-256 is 64 lowercase hexadecimal digits"))?;
    let now = now_millis();
    let mut named = Vec::new();
    let mut records = Box::pin(all_records(media));
    while let Some(record) = records.next().await {
        let record = record?;
        if record.sha256 == sha256 && !record.is_expired(now) {
            named.push(record);
        }
    }
    for record in &named {
        remove(media, record, "admin").await?;
    }
    Ok(named)
}

/// Deletes the tombstones whose media would have expired by now; returns how many.
pub(super) async fn sweep_tombstones(media: &MediaStore) -> Result<usize, Error> {
    let store = media.object_store();
    let prefix = Path::from("deleted");
    let keys: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
    let now = now_millis();
    let mut deleted = 0;
    for key in keys.into_iter().map(|meta| meta.location) {
        let expired = match store.get(&key).await {
            Ok(result) => serde_json::from_slice::<Tombstone>(&result.bytes().await?)
                .map(|t| t.expires_ms <= now)
                .unwrap_or(true),
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if expired {
            ignore_not_found(store.delete(&key).await)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
