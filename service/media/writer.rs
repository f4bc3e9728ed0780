//! Writes one upload's bytes into the store with bounded memory: small objects in one
//! put, larger ones as a multipart upload of `part_size` parts with a few in flight.
//!
//! Unlike object_store's `BufWriter`, it keeps hold of the multipart upload when an
//! abort fails (the store is unreachable, say), and hands it to [`PendingAborts`],
//! which the media sweeper retries later — so an S3 outage during an upload does not
//! leave an incomplete multipart upload behind for good.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayloadMut, path::Path};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::{error::Error, telemetry::otel_span};

/// How many parts of one upload may be in flight to the store at once.
const PARTS_IN_FLIGHT: usize = 2;

/// The most failed aborts kept for a retry; past it the oldest is given up (the
/// bucket's lifecycle rule for incomplete multipart uploads is the last resort).
const MAX_PENDING_ABORTS: usize = 1024;

/// Streams an object's bytes into the store.
pub(super) struct BlobWriter {
    /// The store written to.
    store: Arc<dyn ObjectStore>,
    /// The key written.
    path: Path,
    /// The size of each part but the last.
    part_size: usize,
    /// Bytes not yet sent, at most `part_size`.
    buffer: PutPayloadMut,
    /// The multipart upload, once the object outgrew one part.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts being sent, at most [`PARTS_IN_FLIGHT`].
    parts: JoinSet<object_store::Result<()>>,
    /// Where an abort that failed goes for a later retry.
    pending: PendingAborts,
}

impl BlobWriter {
    /// A writer of `path` in `store`, sending parts of `part_size` bytes.
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        part_size: usize,
        pending: PendingAborts,
    ) -> Self {
        Self {
            store,
            path,
            part_size: part_size.max(1),
            buffer: PutPayloadMut::new(),
            upload: None,
            parts: JoinSet::new(),
            pending,
        }
    }

    /// Buffers `data`, sending full parts as they fill; waits while too many parts are
    /// in flight.
    pub(super) async fn put(&mut self, mut data: Bytes) -> Result<(), Error> {
        while !data.is_empty() {
            // A full buffer is sent only once more bytes come, so that an object of
            // exactly one part is one plain put.
            if self.buffer.content_length() >= self.part_size {
                self.send_part().await?;
            }
            let room = self.part_size - self.buffer.content_length();
            self.buffer.push(data.split_to(room.min(data.len())));
        }
        Ok(())
    }

    /// Writes what is buffered and completes the object. On an error the caller
    /// should [`BlobWriter::abort`].
    pub(super) async fn finish(&mut self) -> Result<(), Error> {
        if self.upload.is_none() {
            let payload = std::mem::take(&mut self.buffer).freeze();
            let span =
                otel_span!("storage.put", object = %self.path, bytes = payload.content_length());
            self.store.put(&self.path, payload).instrument(span).await?;
            return Ok(());
        }
        if self.buffer.content_length() > 0 {
            self.send_part().await?;
        }
        while let Some(joined) = self.parts.join_next().await {
            joined_part(joined)?;
        }
        if let Some(upload) = self.upload.as_mut() {
            let span = otel_span!("storage.complete_multipart", object = %self.path);
            upload.complete().instrument(span).await?;
        }
        // Completed: there is nothing left to abort.
        self.upload = None;
        Ok(())
    }

    /// Stops the parts in flight and aborts the multipart upload, if one was started;
    /// an abort that fails is queued for a retry. Never fails.
    pub(super) async fn abort(mut self) {
        self.parts.shutdown().await;
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        if let Err(e) = upload.abort().await {
            tracing::warn!(error = %e, path = %self.path, "aborting a multipart upload failed; it will be retried");
            self.pending.push(self.path.clone(), upload);
        }
    }

    /// Sends the buffer as the next part, starting the multipart upload first if
    /// needed.
    async fn send_part(&mut self) -> Result<(), Error> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            if let Some(joined) = self.parts.join_next().await {
                joined_part(joined)?;
            }
        }
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self.upload.insert(
                self.store
                    .put_multipart(&self.path)
                    .instrument(otel_span!("storage.start_multipart", object = %self.path))
                    .await?,
            ),
        };
        let payload = std::mem::take(&mut self.buffer).freeze();
        let span =
            otel_span!("storage.put_part", object = %self.path, bytes = payload.content_length());
        self.parts.spawn(upload.put_part(payload).instrument(span));
        Ok(())
    }
}

/// The result of one part's task.
fn joined_part(
    joined: Result<object_store::Result<()>, tokio::task::JoinError>,
) -> Result<(), Error> {
    match joined {
        Ok(result) => Ok(result?),
        Err(e) => Err(Error::Internal(format!("a part upload task failed: {e}"))),
    }
}

/// A multipart upload to abort, with the key it was writing.
type PendingAbort = (Path, Box<dyn MultipartUpload>);

/// Multipart uploads whose abort failed, retried by the media sweeper. Bounded; lost
/// on a restart (a bucket lifecycle rule covers those). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PendingAborts {
    /// The key and the upload handle of each. A std mutex: held only to move entries
    /// in or out, never across an `.await`.
    queue: Arc<Mutex<VecDeque<PendingAbort>>>,
}

impl PendingAborts {
    /// Queues `upload` of `path` for another abort.
    fn push(&self, path: Path, upload: Box<dyn MultipartUpload>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_PENDING_ABORTS
            && let Some((dropped, _)) = queue.pop_front()
        {
            tracing::warn!(path = %dropped, "too many failed aborts queued; giving this one up");
        }
        queue.push_back((path, upload));
    }

    /// How many aborts wait for a retry.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no abort waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tries every queued abort once; those that fail again stay queued. Returns how
    /// many were aborted.
    pub async fn retry(&self) -> usize {
        let taken: Vec<_> = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.drain(..).collect()
        };
        let mut aborted = 0;
        for (path, mut upload) in taken {
            match upload.abort().await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(path = %path, "aborted a multipart upload left by a failed upload");
                    aborted += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %path, "aborting a multipart upload failed again");
                    self.push(path, upload);
                }
            }
        }
        aborted
    }
}
