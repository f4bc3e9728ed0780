//! The operator's verdict on a content (by SHA-256): quarantined, or accepted (an
//! admin's release). It belongs to the bytes, not to an upload, so every media naming
//! that content shares it, whoever uploaded it and whenever.
//!
//! A verdict is one small JSON object `verdicts/<sha256>.json` beside
//! `content/<sha256>` (see `mod.rs`), written by the admin commands and, later, by an
//! upload hook. No verdict means the content is served. Every reader of a record
//! (DownloadMedia, GetMedia, GetThumbnail, the media check of a send) goes through
//! [`MediaStore::get`], which reads the verdict from the store on each call: no replica
//! caches it, so a quarantine holds everywhere at once. Uploads of quarantined content
//! are refused before anything is kept; a record written in a race with a quarantine
//! is still refused on every read.
//!
//! Quarantine verdicts stay until released, even once no media names the content, so
//! that the same bytes uploaded again stay quarantined. Accepted verdicts are swept
//! with their content (see `sweeper.rs`).

use std::collections::HashSet;

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};

use super::{MediaStore, Record, check_sha256_hex, ignore_not_found, record::now_millis};
use crate::error::{Error, Reason};

/// What the operator decided about a content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictState {
    /// Served as usual (an admin released it, or a hook accepted it).
    Accepted,
    /// Neither downloaded, thumbnailed, fetched nor sent, nor uploaded again.
    Quarantined,
}

/// The stored verdict of one content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The decision.
    pub state: VerdictState,
    /// Who decided: `admin`, or the name of a hook.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why, for the operator (never shown to users); may be empty.
    #[serde(default)]
    pub note: String,
}

impl Verdict {
    /// A verdict of `state` by `by`, now.
    pub fn now(state: VerdictState, by: &str, note: &str) -> Self {
        Self {
            state,
            by: by.to_owned(),
            at_ms: now_millis(),
            note: note.to_owned(),
        }
    }
}

/// The key of the verdict on content `sha256` (hex, checked by the caller).
fn verdict_path(sha256: &str) -> Path {
    Path::from(format!("verdicts/{sha256}.json"))
}

/// The verdict on content `sha256`, if any. An unreadable verdict counts as a
/// quarantine: a damaged object must not release content.
pub async fn read(media: &MediaStore, sha256: &str) -> Result<Option<Verdict>, Error> {
    check_sha256_hex(sha256)?;
    match media.object_store().get(&verdict_path(sha256)).await {
        Ok(result) => {
            let bytes = result.bytes().await?;
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, %sha256, "an unreadable verdict; treating the content as quarantined");
                Verdict::now(VerdictState::Quarantined, "unreadable", "")
            })))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Stores `verdict` on content `sha256`, replacing any earlier one.
pub async fn write(media: &MediaStore, sha256: &str, verdict: &Verdict) -> Result<(), Error> {
    check_sha256_hex(sha256)?;
    let json = serde_json::to_vec(verdict)
        .map_err(|e| Error::Internal(format!("encoding a verdict: {e}")))?;
    media
        .object_store()
        .put(&verdict_path(sha256), PutPayload::from(json))
        .await?;
    Ok(())
}

/// Whether content `sha256` is quarantined.
pub async fn is_quarantined(media: &MediaStore, sha256: &str) -> Result<bool, Error> {
    Ok(read(media, sha256)
        .await?
        .is_some_and(|v| v.state == VerdictState::Quarantined))
}

/// Refuses `record` with MEDIA_QUARANTINED when its content is quarantined.
pub(super) async fn check_record(media: &MediaStore, record: &Record) -> Result<(), Error> {
    if is_quarantined(media, &record.sha256).await? {
        return Err(Error::Refused(
            Reason::MediaQuarantined,
            format!(
                "media {} is quarantined by the operator: it cannot be downloaded or sent until released",
                record.media_id
            ),
        ));
    }
    Ok(())
}

/// Refuses an upload of content `sha256` (hex) when it is quarantined; nothing of the
/// upload is kept by the caller.
pub(super) async fn check_upload(media: &MediaStore, sha256: &str) -> Result<(), Error> {
    if is_quarantined(media, sha256).await? {
        return Err(Error::Refused(
            Reason::MediaQuarantined,
            "this content is quarantined by the operator; the upload was refused and nothing was kept"
                .into(),
        ));
    }
    Ok(())
}

/// Deletes each accepted verdict whose content no live record names (`live`) and that
/// was written before `cutoff` (a hook may accept content just before its record is
/// written); quarantine verdicts stay. Returns how many.
pub(super) async fn sweep(
    media: &MediaStore,
    live: &HashSet<String>,
    cutoff: u64,
) -> Result<usize, Error> {
    let store = media.object_store();
    let prefix = Path::from("verdicts");
    let mut listing = store.list(Some(&prefix));
    let mut stale = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(sha256) = meta
            .location
            .filename()
            .and_then(|name| name.strip_suffix(".json"))
        else {
            continue;
        };
        if check_sha256_hex(sha256).is_err()
            || live.contains(sha256)
            || meta.last_modified.timestamp_millis().max(0) as u64 >= cutoff
        {
            continue;
        }
        stale.push((sha256.to_owned(), meta.location.clone()));
    }
    drop(listing);
    let mut deleted = 0;
    for (sha256, key) in stale {
        if read(media, &sha256).await?.map(|v| v.state) == Some(VerdictState::Accepted) {
            ignore_not_found(store.delete(&key).await)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
