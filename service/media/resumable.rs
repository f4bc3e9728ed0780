//! Resumable uploads: an upload made of unary calls (CreateUpload, WriteUpload at an
//! offset, QueryUpload, CommitUpload, CancelUpload) whose state lives in the object
//! store, so that it survives a broken connection, a restart of either side and, with
//! S3, a move to another replica. The contract is written in media_service.proto.
//!
//! # Keys
//! - `resumable/<upload-id>/state.json`: the [`State`]: owner, header, part size, the
//!   media ID the upload will get, the S3 multipart upload ID, and once committed when.
//! - `resumable/<upload-id>/parts/<k>.json`: a [`PartRecord`] per stored part (length,
//!   CRC32C, SHA-256, S3 ETag), written after the part's bytes: a part exists once its
//!   record does. Their last-modified times are the upload's activity.
//! - Local folder: `resumable/<upload-id>/data/<k>`, the part's bytes. S3: part `k` of
//!   the multipart upload of `uploads/<media-id>`, completed by the commit.
//!
//! A commit assembles the parts into `uploads/<media-id>` (S3: completes the multipart
//! upload; a folder: copies the parts in order), hashes them, and finishes exactly as
//! UploadMedia does ([`content::publish`], quota accounting), so the Media record, the
//! owner index, the quota ledger and thumbnails work the same. The state then records
//! the commit (a repeated commit answers the same record) and the parts are deleted.

use std::{
    collections::{BTreeMap, HashSet},
    sync::atomic::Ordering,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload, multipart::PartId, path::Path};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    MediaStore, Record, content, dims, ignore_not_found, quota, record,
    upload::{Header, Received, check_header, finished_record},
    writer::BlobWriter,
};
use crate::{
    error::{Error, Reason},
    ids::MediaId,
    metrics::METRICS,
    pb,
};

/// The part size and idle expiry of resumable uploads.
#[derive(Debug, Clone, Copy)]
pub struct ResumableSettings {
    /// Every part but the last has exactly this many bytes.
    pub part_size: u64,
    /// An upload with no part stored for this long is removed.
    pub ttl: Duration,
}

impl Default for ResumableSettings {
    fn default() -> Self {
        Self {
            part_size: 1024 * 1024,
            ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// What the store keeps about one resumable upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    /// The user who created it; nobody else may see it.
    owner: String,
    /// The header's kind.
    kind: record::Kind,
    /// The header's file name (checked).
    file_name: String,
    /// The header's size.
    size: u64,
    /// The header's content type, or empty.
    content_type: String,
    /// The header's SHA-256 (hex), when given.
    header_sha256: Option<String>,
    /// The part size of this upload, fixed at creation.
    part_size: u64,
    /// When it was created, in milliseconds since the Unix epoch.
    created_ms: u64,
    /// The media ID the committed object gets (chosen at creation, so that a repeated
    /// commit finds the record).
    media_id: String,
    /// With S3: the multipart upload of `uploads/<media_id>`.
    multipart: Option<String>,
    /// When it was committed; `None` while open.
    committed_ms: Option<u64>,
}

impl State {
    /// How many parts the object has.
    fn part_count(&self) -> u64 {
        self.size.div_ceil(self.part_size)
    }

    /// The length part `k` must have.
    fn part_len(&self, k: u64) -> u64 {
        (self.size - k * self.part_size).min(self.part_size)
    }

    fn media_id(&self) -> Result<MediaId, Error> {
        MediaId::parse(&self.media_id)
    }
}

/// What is kept about one stored part, to tell an identical re-write from another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartRecord {
    /// Its length in bytes.
    len: u64,
    /// Its CRC32C.
    crc32c: u32,
    /// Its SHA-256, hex.
    sha256: String,
    /// With S3: the part's ETag, for completing the multipart upload.
    etag: Option<String>,
}

/// An upload as loaded for a call: its state and its stored parts.
pub(super) struct Loaded {
    /// The upload ID.
    id: MediaId,
    /// The state.
    state: State,
    /// The record key of each stored part by index.
    parts: BTreeMap<u64, ObjectMeta>,
}

impl Loaded {
    /// Whether it was committed already.
    pub(super) fn committed(&self) -> bool {
        self.state.committed_ms.is_some()
    }

    /// The bytes stored from the start without a gap: the offset to write next.
    fn committed_size(&self) -> u64 {
        let mut next = 0;
        while self.parts.contains_key(&next) {
            next += 1;
        }
        (next * self.state.part_size).min(self.state.size)
    }

    /// The last time a part was stored (or the upload created), in milliseconds.
    fn active_ms(&self) -> u64 {
        self.parts
            .values()
            .map(|m| m.last_modified.timestamp_millis().max(0) as u64)
            .fold(self.state.created_ms, u64::max)
    }

    /// When the upload expires if nothing more is stored.
    fn expire_ms(&self, ttl: Duration) -> u64 {
        self.active_ms()
            .saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64)
    }
}

fn prefix(id: &MediaId) -> Path {
    Path::from(format!("resumable/{id}"))
}

fn state_path(id: &MediaId) -> Path {
    Path::from(format!("resumable/{id}/state.json"))
}

fn parts_prefix(id: &MediaId) -> Path {
    Path::from(format!("resumable/{id}/parts"))
}

fn part_record_path(id: &MediaId, k: u64) -> Path {
    Path::from(format!("resumable/{id}/parts/{k}.json"))
}

fn part_data_path(id: &MediaId, k: u64) -> Path {
    Path::from(format!("resumable/{id}/data/{k}"))
}

/// The CRC32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Checks a caller's upload ID before it names a key.
pub(super) fn parse_upload_id(text: &str) -> Result<MediaId, Error> {
    if text.is_empty() {
        return Err(Error::invalid("upload_id is required"));
    }
    MediaId::parse(text).map_err(|_| {
        Error::invalid("upload_id is malformed: it must be 32 lowercase hexadecimal characters")
    })
}

fn not_found(id: &MediaId) -> Error {
    Error::NotFound(format!(
        "no resumable upload with ID {id}: it expired, was cancelled, or never was; start a new one with CreateUpload"
    ))
}

fn offset_mismatch(committed: u64, why: String) -> Error {
    Error::RefusedWith(
        Reason::UploadOffsetMismatch,
        format!("{why}; {committed} bytes are stored: QueryUpload, then write from there"),
        BTreeMap::from([("committed_size".to_owned(), committed.to_string())]),
    )
}

fn checksum_mismatch(which: &str, message: String) -> Error {
    Error::RefusedWith(
        Reason::ChecksumMismatch,
        message,
        BTreeMap::from([("checksum".to_owned(), which.to_owned())]),
    )
}

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().min(u64::MAX as u128) as u64
}

/// Reads the state of upload `id`, `None` when there is none.
async fn read_state(media: &MediaStore, id: &MediaId) -> Result<Option<State>, Error> {
    match media.object_store().get(&state_path(id)).await {
        Ok(result) => {
            let bytes = result.bytes().await?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Internal(format!("a corrupt resumable upload state: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_state(media: &MediaStore, id: &MediaId, state: &State) -> Result<(), Error> {
    let json = serde_json::to_vec(state)
        .map_err(|e| Error::Internal(format!("encoding a resumable upload state: {e}")))?;
    media
        .object_store()
        .put(&state_path(id), PutPayload::from(json))
        .await?;
    Ok(())
}

/// The stored parts of upload `id`, by index.
async fn list_parts(media: &MediaStore, id: &MediaId) -> Result<BTreeMap<u64, ObjectMeta>, Error> {
    let listing: Vec<ObjectMeta> = media
        .object_store()
        .list(Some(&parts_prefix(id)))
        .try_collect()
        .await?;
    Ok(listing
        .into_iter()
        .filter_map(|meta| {
            let k = meta
                .location
                .filename()?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((k, meta))
        })
        .collect())
}

/// Loads upload `id` for `owner`: NOT_FOUND when it does not exist, belongs to someone
/// else (never saying which) or has expired (it is then removed).
pub(super) async fn load(media: &MediaStore, id: &MediaId, owner: &str) -> Result<Loaded, Error> {
    let Some(state) = read_state(media, id).await? else {
        return Err(not_found(id));
    };
    if state.owner != owner {
        return Err(not_found(id));
    }
    let loaded = Loaded {
        id: id.clone(),
        parts: if state.committed_ms.is_some() {
            BTreeMap::new()
        } else {
            list_parts(media, id).await?
        },
        state,
    };
    if loaded.state.committed_ms.is_none()
        && loaded.expire_ms(media.resumable.ttl) <= record::now_millis()
    {
        remove(media, id, Some(&loaded.state)).await?;
        return Err(not_found(id));
    }
    Ok(loaded)
}

/// The quota hold that open upload `id` took when it was created.
fn hold(media: &MediaStore, id: &MediaId, state: &State) -> quota::Hold {
    quota::Hold::of_resumable(media, &state.owner, id, state.created_ms, state.size)
}

/// Removes every key of upload `id`, aborts its S3 multipart upload and, while it is
/// open, releases its quota hold.
async fn remove(media: &MediaStore, id: &MediaId, state: Option<&State>) -> Result<(), Error> {
    if let Some(state) = state
        && state.committed_ms.is_none()
    {
        hold(media, id, state).release().await;
    }
    if let (Some(state), Some(parts)) = (state, &media.multipart.0)
        && let Some(multipart) = &state.multipart
        && state.committed_ms.is_none()
    {
        let target = MediaStore::staging_path(&state.media_id()?);
        match parts.abort_multipart(&target, multipart).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, upload_id = %id, "aborting a resumable upload's multipart upload")
            }
        }
    }
    let keys: Vec<ObjectMeta> = media
        .object_store()
        .list(Some(&prefix(id)))
        .try_collect()
        .await?;
    // The state last, so that a failure part-way leaves it for the sweeper.
    for meta in keys.iter().filter(|m| m.location != state_path(id)) {
        ignore_not_found(media.object_store().delete(&meta.location).await)?;
    }
    ignore_not_found(media.object_store().delete(&state_path(id)).await)
}

/// Whether upload `id` is still open (for the slot reaper): false when it is gone or
/// committed; an open one idle past the TTL is removed, and false.
pub(super) async fn still_open(media: &MediaStore, id: &MediaId) -> Result<bool, Error> {
    let Some(state) = read_state(media, id).await? else {
        return Ok(false);
    };
    if state.committed_ms.is_some() {
        return Ok(false);
    }
    let owner = state.owner.clone();
    match load(media, id, &owner).await {
        Ok(_) => Ok(true),
        Err(Error::NotFound(_)) => {
            tracing::info!(upload_id = %id, "removed a resumable upload idle past its TTL");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// CreateUpload: checks the header (and the quotas) as UploadMedia does, and records a
/// new upload. The caller must hold a slot for it (see the handler).
pub(super) async fn create(
    media: &MediaStore,
    id: &MediaId,
    owner: &str,
    header: pb::UploadHeader,
) -> Result<pb::CreateUploadResponse, Error> {
    let header = check_header(header, media.limits().max_upload_size)?;
    // Quotas are checked here, and the declared bytes held until the upload is
    // committed, cancelled or swept.
    let created_ms = record::now_millis();
    let hold = quota::Hold::resumable(media, owner, id, created_ms, header.size).await?;
    let media_id = MediaId::generate();
    let multipart = match &media.multipart.0 {
        Some(parts) => match parts
            .create_multipart(&MediaStore::staging_path(&media_id))
            .await
        {
            Ok(multipart) => Some(multipart),
            Err(e) => {
                hold.release().await;
                return Err(e.into());
            }
        },
        None => None,
    };
    let state = State {
        owner: owner.to_owned(),
        kind: header.kind,
        file_name: header.file_name,
        size: header.size,
        content_type: header.content_type,
        header_sha256: header.sha256.map(hex::encode),
        part_size: media.resumable.part_size,
        created_ms,
        media_id: media_id.to_string(),
        multipart,
        committed_ms: None,
    };
    if let Err(e) = write_state(media, id, &state).await {
        // The hold too: the state is of an open upload.
        let _ = remove(media, id, Some(&state)).await;
        hold.keep();
        return Err(e);
    }
    // From here on the state names the hold (see `hold`).
    hold.keep();
    Ok(pb::CreateUploadResponse {
        upload_id: id.to_string(),
        part_size: state.part_size,
        expire_time: Some(record::timestamp(
            state.created_ms.saturating_add(ttl_ms(media.resumable.ttl)),
        )),
    })
}

/// WriteUpload: stores part `offset / part_size` after checking its place, length and
/// CRC32C; an identical re-write of a stored part is acknowledged.
pub(super) async fn write(
    media: &MediaStore,
    loaded: Loaded,
    offset: u64,
    data: Bytes,
    crc: u32,
) -> Result<pb::WriteUploadResponse, Error> {
    let mut loaded = loaded;
    let id = loaded.id.clone();
    if loaded.state.committed_ms.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "upload {id} is already committed; CommitUpload again returns its media"
        )));
    }
    let committed = loaded.committed_size();
    let state = &loaded.state;
    if !offset.is_multiple_of(state.part_size) || offset >= state.size {
        return Err(offset_mismatch(
            committed,
            format!(
                "offset {offset} is not the start of a part (parts are {} bytes, the object {} bytes)",
                state.part_size, state.size
            ),
        ));
    }
    let k = offset / state.part_size;
    let expected = state.part_len(k);
    if data.len() as u64 != expected {
        return Err(Error::invalid(format!(
            "the part at offset {offset} must be exactly {expected} bytes, not {}",
            data.len()
        )));
    }
    let actual = crc32c(&data);
    if actual != crc {
        return Err(checksum_mismatch(
            "crc32c",
            format!(
                "the CRC32C of the part at offset {offset} is {actual:#010x}, not the {crc:#010x} sent; nothing of it was kept: send it again"
            ),
        ));
    }
    let part = PartRecord {
        len: expected,
        crc32c: actual,
        sha256: hex::encode(Sha256::digest(&data)),
        etag: None,
    };
    if loaded.parts.contains_key(&k) {
        let stored = read_part(media, &id, k).await?;
        if stored.len != part.len || stored.crc32c != part.crc32c || stored.sha256 != part.sha256 {
            return Err(offset_mismatch(
                committed,
                format!("the part at offset {offset} is already stored with different bytes"),
            ));
        }
    } else if offset > committed {
        return Err(offset_mismatch(
            committed,
            format!("offset {offset} would leave a gap after the stored bytes"),
        ));
    } else {
        store_part(media, &loaded.state, &id, k, data, part).await?;
        METRICS.upload_bytes.fetch_add(expected, Ordering::Relaxed);
        loaded.parts = list_parts(media, &id).await?;
    }
    Ok(pb::WriteUploadResponse {
        committed_size: loaded.committed_size(),
        expire_time: Some(record::timestamp(loaded.expire_ms(media.resumable.ttl))),
    })
}

async fn read_part(media: &MediaStore, id: &MediaId, k: u64) -> Result<PartRecord, Error> {
    let bytes = media
        .object_store()
        .get(&part_record_path(id, k))
        .await?
        .bytes()
        .await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("a corrupt resumable part record: {e}")))
}

/// Stores part `k`'s bytes (an S3 part, or a part object), then its record.
async fn store_part(
    media: &MediaStore,
    state: &State,
    id: &MediaId,
    k: u64,
    data: Bytes,
    mut part: PartRecord,
) -> Result<(), Error> {
    match (&media.multipart.0, &state.multipart) {
        (Some(parts), Some(multipart)) => {
            let index = usize::try_from(k)
                .map_err(|_| Error::Internal("a part index past usize".into()))?;
            let target = MediaStore::staging_path(&state.media_id()?);
            let stored = parts
                .put_part(&target, multipart, index, PutPayload::from(data))
                .await?;
            part.etag = Some(stored.content_id);
        }
        _ => {
            media
                .object_store()
                .put(&part_data_path(id, k), PutPayload::from(data))
                .await?;
        }
    }
    let json = serde_json::to_vec(&part)
        .map_err(|e| Error::Internal(format!("encoding a part record: {e}")))?;
    media
        .object_store()
        .put(&part_record_path(id, k), PutPayload::from(json))
        .await?;
    Ok(())
}

/// QueryUpload: how much is stored.
pub(super) fn query(media: &MediaStore, loaded: &Loaded) -> pb::QueryUploadResponse {
    let committed = loaded.state.committed_ms.is_some();
    pb::QueryUploadResponse {
        committed_size: if committed {
            loaded.state.size
        } else {
            loaded.committed_size()
        },
        size: loaded.state.size,
        part_size: loaded.state.part_size,
        expire_time: Some(record::timestamp(match loaded.state.committed_ms {
            Some(at) => at.saturating_add(ttl_ms(media.resumable.ttl)),
            None => loaded.expire_ms(media.resumable.ttl),
        })),
    }
}

/// CancelUpload: removes everything of an open upload.
pub(super) async fn cancel(media: &MediaStore, loaded: Loaded) -> Result<(), Error> {
    if loaded.state.committed_ms.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "upload {} is already committed; its media stays until it expires",
            loaded.id
        )));
    }
    remove(media, &loaded.id, Some(&loaded.state)).await
}

/// CommitUpload: checks that every byte is stored and matches `sha256`, then finishes
/// like UploadMedia; a commit of a committed upload returns the same record.
pub(super) async fn commit(
    media: &MediaStore,
    loaded: Loaded,
    sha256: &[u8],
) -> Result<Record, Error> {
    let mut loaded = loaded;
    let id = loaded.id.clone();
    let expected: [u8; 32] = sha256.try_into().map_err(|_| {
        Error::invalid(format!(
            "sha256 must be 32 bytes (the SHA-256 of the whole object), not {}",
            sha256.len()
        ))
    })?;
    let media_id = loaded.state.media_id()?;
    if loaded.state.committed_ms.is_some() {
        return recommit(media, &media_id, &expected).await;
    }
    // A commit that crashed after publishing: the record is there.
    if let Ok(record) = media.get(&media_id).await {
        mark_committed(media, &mut loaded).await?;
        return recommit_record(record, &expected);
    }
    let committed = loaded.committed_size();
    if committed < loaded.state.size {
        return Err(offset_mismatch(
            committed,
            format!(
                "upload {id} holds {committed} of its {} bytes; write the rest before committing",
                loaded.state.size
            ),
        ));
    }
    let received = match assemble(media, &loaded).await {
        Ok(received) => received,
        Err(e) => return Err(e),
    };
    let staging = MediaStore::staging_path(&media_id);
    let header_sha = loaded.state.header_sha256.clone();
    if received.sha256 != expected || header_sha.is_some_and(|h| h != hex::encode(received.sha256))
    {
        let _ = ignore_not_found(media.object_store().delete(&staging).await);
        remove(media, &id, Some(&loaded.state)).await?;
        return Err(checksum_mismatch(
            "sha256",
            format!(
                "the SHA-256 of the stored bytes is {}, not the {} given; the upload was removed",
                hex::encode(received.sha256),
                hex::encode(expected)
            ),
        ));
    }
    let state = &loaded.state;
    let header = Header {
        kind: state.kind,
        file_name: state.file_name.clone(),
        size: state.size,
        content_type: state.content_type.clone(),
        sha256: Some(expected),
    };
    let record = finished_record(
        &media_id,
        &state.owner,
        header,
        received,
        media.limits().ttl,
    );
    if let Err(e) = content::publish(media, &media_id, &record).await {
        let _ = ignore_not_found(media.object_store().delete(&staging).await);
        // Quarantined, rejected or not judged (hook down): nothing of the upload is kept.
        if super::hook::ends_upload(&e) {
            remove(media, &id, Some(&loaded.state)).await?;
        }
        return Err(e);
    }
    hold(media, &loaded.id, &loaded.state)
        .count(media, &record)
        .await;
    mark_committed(media, &mut loaded).await?;
    Ok(record)
}

/// Records the commit in the state and deletes the parts (best effort: what is left
/// goes with the state when the sweeper removes it).
async fn mark_committed(media: &MediaStore, loaded: &mut Loaded) -> Result<(), Error> {
    loaded.state.committed_ms = Some(record::now_millis());
    write_state(media, &loaded.id, &loaded.state).await?;
    let keys: Vec<ObjectMeta> = media
        .object_store()
        .list(Some(&prefix(&loaded.id)))
        .try_collect()
        .await?;
    for meta in keys.iter().filter(|m| m.location != state_path(&loaded.id)) {
        if let Err(e) = ignore_not_found(media.object_store().delete(&meta.location).await) {
            tracing::warn!(error = %e, upload_id = %loaded.id, "removing a committed upload's parts");
        }
    }
    Ok(())
}

async fn recommit(
    media: &MediaStore,
    media_id: &MediaId,
    expected: &[u8; 32],
) -> Result<Record, Error> {
    recommit_record(media.get(media_id).await?, expected)
}

fn recommit_record(record: Record, expected: &[u8; 32]) -> Result<Record, Error> {
    if record.sha256 != hex::encode(expected) {
        return Err(checksum_mismatch(
            "sha256",
            format!(
                "the upload was committed with SHA-256 {}, not the {} given",
                record.sha256,
                hex::encode(expected)
            ),
        ));
    }
    Ok(record)
}

/// Puts the parts together as `uploads/<media-id>` and hashes them.
async fn assemble(media: &MediaStore, loaded: &Loaded) -> Result<Received, Error> {
    let state = &loaded.state;
    let media_id = state.media_id()?;
    let staging = MediaStore::staging_path(&media_id);
    let mut hasher = Sha256::new();
    let mut head = BytesMut::new();
    let mut take = |chunk: &Bytes| {
        hasher.update(chunk);
        if head.len() < dims::HEAD_BYTES {
            let n = chunk.len().min(dims::HEAD_BYTES - head.len());
            head.extend_from_slice(&chunk[..n]);
        }
    };
    match (&media.multipart.0, &state.multipart) {
        (Some(parts), Some(multipart)) => {
            let mut etags = Vec::new();
            for k in 0..state.part_count() {
                let part = read_part(media, &loaded.id, k).await?;
                let etag = part
                    .etag
                    .ok_or_else(|| Error::Internal("an S3 part record without an ETag".into()))?;
                etags.push(PartId { content_id: etag });
            }
            // A commit cut off after completing it finds the object there.
            let done = match media.object_store().head(&staging).await {
                Ok(meta) => meta.size == state.size,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !done {
                parts.complete_multipart(&staging, multipart, etags).await?;
            }
            let mut stream = media.object_store().get(&staging).await?.into_stream();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                total += chunk.len() as u64;
                take(&chunk);
            }
            if total != state.size {
                return Err(Error::Internal(format!(
                    "the completed upload holds {total} bytes, not {}",
                    state.size
                )));
            }
        }
        _ => {
            let mut writer = BlobWriter::new(
                media.object_store().clone(),
                staging.clone(),
                media.limits().part_size,
                media.pending_aborts().clone(),
            );
            for k in 0..state.part_count() {
                let bytes = match media
                    .object_store()
                    .get(&part_data_path(&loaded.id, k))
                    .await
                {
                    Ok(result) => result.bytes().await,
                    Err(e) => Err(e),
                };
                let bytes = match bytes {
                    Ok(bytes) if bytes.len() as u64 == state.part_len(k) => bytes,
                    Ok(_) => {
                        writer.abort().await;
                        return Err(Error::Internal(format!("part {k} has the wrong length")));
                    }
                    Err(e) => {
                        writer.abort().await;
                        return Err(e.into());
                    }
                };
                take(&bytes);
                if let Err(e) = writer.put(bytes).await {
                    writer.abort().await;
                    return Err(e);
                }
            }
            if let Err(e) = writer.finish().await {
                writer.abort().await;
                return Err(e);
            }
        }
    }
    Ok(Received {
        sha256: hasher.finalize().into(),
        head: head.freeze(),
    })
}

/// For the sweeper: removes the resumable uploads idle past the TTL, and the states of
/// committed ones kept for a TTL after their commit; returns how many, and the upload
/// IDs of those still open.
pub(super) async fn sweep(media: &MediaStore) -> Result<(usize, HashSet<String>), Error> {
    let listing: Vec<ObjectMeta> = media
        .object_store()
        .list(Some(&Path::from("resumable")))
        .try_collect()
        .await?;
    let mut ids: Vec<MediaId> = listing
        .iter()
        .filter_map(|m| m.location.parts().nth(1))
        .filter_map(|p| MediaId::parse(p.as_ref()).ok())
        .collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids.dedup();
    let now = record::now_millis();
    let grace = content::grace_ms(media);
    let mut removed = 0;
    let mut open = HashSet::new();
    for id in ids {
        match read_state(media, &id).await {
            Ok(Some(state)) => {
                let gone = match state.committed_ms {
                    Some(at) => at.saturating_add(ttl_ms(media.resumable.ttl)) <= now,
                    None => !still_open(media, &id).await?,
                };
                if gone {
                    remove(media, &id, Some(&state)).await?;
                    removed += 1;
                } else if state.committed_ms.is_none() {
                    open.insert(id.to_string());
                }
            }
            // Keys without a state (a crash while creating or removing): after grace.
            Ok(None) => {
                let newest = listing
                    .iter()
                    .filter(|m| {
                        m.location
                            .parts()
                            .nth(1)
                            .is_some_and(|p| p.as_ref() == id.as_str())
                    })
                    .map(|m| m.last_modified.timestamp_millis().max(0) as u64)
                    .max()
                    .unwrap_or(0);
                if newest.saturating_add(grace) <= now {
                    remove(media, &id, None).await?;
                    removed += 1;
                }
            }
            Err(e) => {
                // Unread, it counts as open: its hold stays.
                open.insert(id.to_string());
                tracing::warn!(error = %e, upload_id = %id, "reading a resumable upload's state")
            }
        }
    }
    Ok((removed, open))
}
