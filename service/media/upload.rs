//! Uploads: a header frame, then data frames streamed straight into the object store.
//!
//! The bytes go to `uploads/<id>` through a bounded [`BlobWriter`] (small objects in
//! one put, larger ones as a multipart upload with a few parts in flight), so memory
//! per upload stays bounded by the part size, whatever the object's size. Once every
//! byte is stored and verified they are published under their SHA-256 and the record
//! is written (see `content.rs`); on any failure the partial data is aborted (and the
//! abort retried later if the store is unreachable).
//!
//! A header that carries `sha256` and is followed by no data frame asks to reuse
//! content: it completes at once when the same owner has that content stored, and
//! otherwise fails exactly as any upload without data does, so that it never tells
//! whether somebody else stored it. With an upload hook, content that has no verdict
//! yet (stored before the hook was configured) is not reused: the client then sends
//! the bytes, and the hook judges them (see `hook.rs`).

use std::{sync::atomic::Ordering, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;
use tracing::Instrument;

use super::{
    MediaStore, Record, content, digest::Digester, dims, hook, ignore_not_found, quota, record,
    verdict, writer::BlobWriter,
};
use crate::{
    error::{Error, Reason},
    ids::{self, MediaId},
    metrics::METRICS,
    pb,
};

/// The longest content type, in bytes.
const MAX_CONTENT_TYPE: usize = 255;

/// One frame of an upload, independent of gRPC.
#[derive(Debug)]
pub enum Frame {
    /// The description of the upload.
    Header(pb::UploadHeader),
    /// The next chunk of bytes.
    Data(Bytes),
}

/// A header that passed every check.
pub(super) struct Header {
    /// The kind of media.
    pub(super) kind: record::Kind,
    /// The display name, checked.
    pub(super) file_name: String,
    /// The exact size the data frames must add up to.
    pub(super) size: u64,
    /// The MIME type given, or empty.
    pub(super) content_type: String,
    /// The digest the bytes must match, when given.
    pub(super) sha256: Option<[u8; 32]>,
}

/// What the data frames added up to.
pub(super) struct Received {
    /// The SHA-256 of every byte received.
    pub(super) sha256: [u8; 32],
    /// The first bytes, for reading image dimensions.
    pub(super) head: Bytes,
}

/// Runs one upload for `owner` from `frames` and returns the stored record. On any
/// error nothing is kept.
pub async fn upload<S>(media: &MediaStore, owner: &str, mut frames: S) -> Result<Record, Error>
where
    S: Stream<Item = Result<Frame, Error>> + Unpin,
{
    let idle = media.limits().idle_timeout;
    let header = match next_frame(&mut frames, idle).await? {
        Some(Frame::Header(header)) => check_header(header, media.limits().max_upload_size)?,
        Some(Frame::Data(_)) => {
            return Err(Error::invalid(
                "the first frame of an upload must be the header",
            ));
        }
        None => return Err(Error::invalid("the upload sent no header")),
    };
    // Quotas are checked at the header, before any byte is stored, and the declared
    // bytes held until the upload ends.
    let id = MediaId::generate();
    let hold = quota::Hold::streaming(media, owner, &id, header.size).await?;
    let stored = store(media, owner, &id, header, &mut frames).await;
    match &stored {
        Ok(record) => hold.count(media, record).await,
        Err(_) => hold.release().await,
    }
    stored
}

/// The rest of an upload after its header: reuse, or receiving, storing and
/// publishing the bytes. On any error nothing is kept (but a quarantined upload, whose
/// record stays).
async fn store<S>(
    media: &MediaStore,
    owner: &str,
    id: &MediaId,
    header: Header,
    frames: &mut S,
) -> Result<Record, Error>
where
    S: Stream<Item = Result<Frame, Error>> + Unpin,
{
    let idle = media.limits().idle_timeout;
    // Content known by its header to be quarantined is refused before any byte.
    if let Some(sha256) = header.sha256 {
        verdict::check_upload(media, &hex::encode(sha256)).await?;
    }
    let first = next_frame(frames, idle).await?;
    if first.is_none() {
        if let Some(record) = reuse(media, id, owner, &header).await? {
            return Ok(record);
        }
        // The stream ended after the header: no data frame at all.
        if header.sha256.is_some() {
            return Err(Error::OfferMissed(format!(
                "the upload ended after 0 bytes, but the header declared {}",
                header.size
            )));
        }
    }
    let mut writer = BlobWriter::new(
        media.object_store().clone(),
        MediaStore::staging_path(id),
        media.limits().part_size,
        media.pending_aborts().clone(),
    );
    let mut frames = futures::stream::iter(first.map(Ok)).chain(frames);
    let received = match receive(&mut frames, &header, &mut writer, idle).await {
        Ok(received) => received,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    let staging = MediaStore::staging_path(id);
    if let Err(e) = writer.finish().await {
        writer.abort().await;
        // A lost answer to a put that did land would leave bytes without a record.
        let _ = ignore_not_found(media.object_store().delete(&staging).await);
        return Err(e);
    }
    content::crash_point("after-staging");

    let record = finished_record(id, owner, header, received, media.limits().ttl);
    let span = crate::telemetry::otel_span!("storage.publish", media_id = %id);
    if let Err(e) = content::publish(media, id, &record).instrument(span).await {
        let _ = ignore_not_found(media.object_store().delete(&staging).await);
        return Err(e);
    }
    Ok(record)
}

/// A header-only upload of content that `owner` already stored: a new record for it,
/// or `None` when there is none to reuse (the caller then fails it as an upload
/// without data).
async fn reuse(
    media: &MediaStore,
    id: &MediaId,
    owner: &str,
    header: &Header,
) -> Result<Option<Record>, Error> {
    let Some(sha256) = header.sha256 else {
        return Ok(None);
    };
    let sha256 = hex::encode(sha256);
    let Some(found) = content::find_own(media, owner, &sha256, header.size).await? else {
        return Ok(None);
    };
    // Content stored before the upload hook was configured is sent again and judged.
    if !hook::may_reuse(media, &sha256).await? {
        return Ok(None);
    }
    let content_type = if header.content_type.is_empty() {
        found.content_type
    } else {
        header.content_type.clone()
    };
    let created_ms = record::now_millis();
    let record = Record {
        media_id: id.to_string(),
        kind: header.kind,
        file_name: header.file_name.clone(),
        size: header.size,
        sha256,
        content_type,
        width: found.width,
        height: found.height,
        owner: owner.to_owned(),
        created_ms,
        expires_ms: Record::expiry(created_ms, media.limits().ttl),
        layout: record::LAYOUT_CONTENT,
    };
    media.put_record(&record).await?;
    content::index(media, &record).await;
    Ok(Some(record))
}

/// Waits for the next frame for at most the idle timeout.
async fn next_frame<S>(frames: &mut S, idle: Duration) -> Result<Option<Frame>, Error>
where
    S: Stream<Item = Result<Frame, Error>> + Unpin,
{
    match tokio::time::timeout(idle, frames.next()).await {
        Ok(frame) => frame.transpose(),
        Err(_) => Err(Error::DeadlineExceeded(format!(
            "the upload sent nothing for {}s (the idle timeout)",
            idle.as_secs_f64()
        ))),
    }
}

/// Checks the header against every rule before any byte is stored.
pub(super) fn check_header(header: pb::UploadHeader, max_size: u64) -> Result<Header, Error> {
    let kind = record::Kind::from_proto(header.kind)?;
    let name = header.file_name;
    ids::validate_file_name("header.file_name", &name)?;
    if header.size == 0 {
        return Err(Error::invalid(
            "header.size must be at least 1 byte: empty uploads are refused",
        ));
    }
    if header.size > max_size {
        return Err(Error::Refused(
            Reason::MediaTooLarge,
            format!(
                "header.size {} is over the largest upload allowed, {max_size} bytes",
                header.size
            ),
        ));
    }
    if header.content_type.len() > MAX_CONTENT_TYPE
        || header.content_type.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "header.content_type is not a valid MIME type",
        ));
    }
    let sha256 = match header.sha256.len() {
        0 => None,
        32 => {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&header.sha256);
            Some(digest)
        }
        n => {
            return Err(Error::invalid(format!(
                "header.sha256 must be 32 bytes (a SHA-256 digest), not {n}"
            )));
        }
    };
    Ok(Header {
        kind,
        file_name: name,
        size: header.size,
        content_type: header.content_type,
        sha256,
    })
}

/// Streams the data frames into `writer`, enforcing the declared size and digest.
async fn receive<S>(
    frames: &mut S,
    header: &Header,
    writer: &mut BlobWriter,
    idle: Duration,
) -> Result<Received, Error>
where
    S: Stream<Item = Result<Frame, Error>> + Unpin,
{
    let mut digester = Digester::spawn();
    let mut head = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(frame) = next_frame(frames, idle).await? {
        let data = match frame {
            Frame::Data(data) => data,
            Frame::Header(_) => {
                return Err(Error::invalid("an upload must send exactly one header"));
            }
        };
        total += data.len() as u64;
        if total > header.size {
            return Err(Error::invalid(format!(
                "the upload sent more than the declared size of {} bytes",
                header.size
            )));
        }
        digester.update(data.clone()).await?;
        if head.len() < dims::HEAD_BYTES {
            let take = data.len().min(dims::HEAD_BYTES - head.len());
            head.extend_from_slice(&data[..take]);
        }
        METRICS
            .upload_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        writer.put(data).await?;
    }
    if total != header.size {
        return Err(Error::invalid(format!(
            "the upload ended after {total} bytes, but the header declared {}",
            header.size
        )));
    }
    let sha256 = digester.finish().await?;
    if let Some(expected) = header.sha256
        && expected != sha256
    {
        return Err(Error::invalid(format!(
            "the SHA-256 of the received bytes is {}, not the {} that the header declared",
            hex::encode(sha256),
            hex::encode(expected)
        )));
    }
    Ok(Received {
        sha256,
        head: head.freeze(),
    })
}

/// The record of a completed upload.
pub(super) fn finished_record(
    id: &MediaId,
    owner: &str,
    header: Header,
    received: Received,
    ttl: Duration,
) -> Record {
    let detected = dims::detect(&received.head);
    let (width, height) = detected.map(|(w, h, _)| (w, h)).unwrap_or((0, 0));
    let content_type = if !header.content_type.is_empty() {
        header.content_type
    } else if let Some((_, _, mime)) = detected {
        mime.to_owned()
    } else {
        "application/octet-stream".to_owned()
    };
    let created_ms = record::now_millis();
    Record {
        media_id: id.to_string(),
        kind: header.kind,
        file_name: header.file_name,
        size: header.size,
        sha256: hex::encode(received.sha256),
        content_type,
        width,
        height,
        owner: owner.to_owned(),
        created_ms,
        expires_ms: Record::expiry(created_ms, ttl),
        layout: record::LAYOUT_CONTENT,
    }
}
