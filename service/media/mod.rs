//! MediaService: images and files stored once, served by media ID.
//!
//! Each object is two keys in the store: `blobs/<id>` holds the bytes and
//! `records/<id>.json` the [`Record`]. The record is written last, after the bytes are
//! complete, and every reader starts from it — so an object is visible only once
//! complete, on every backend alike, with no database.

mod digest;
mod dims;
mod download;
mod record;
mod service;
mod slots;
mod sweeper;
mod upload;
mod writer;

use std::{sync::Arc, time::Duration};

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

pub use download::{Download, open_download};
pub use record::{Kind as MediaKind, Record, now_millis};
pub use service::MediaServer;
pub use slots::{SlotGuard, TransferSlots};
pub use sweeper::{spawn_sweeper, sweep_once};
pub use upload::{Frame, upload};
pub use writer::PendingAborts;

use crate::{error::Error, ids::MediaId};

/// The rules that media obey, from the server's configuration.
#[derive(Debug, Clone)]
pub struct MediaLimits {
    /// The largest upload accepted, in bytes.
    pub max_upload_size: u64,
    /// How long an object lives after its upload completes.
    pub ttl: Duration,
    /// A transfer that moves nothing for this long is ended.
    pub idle_timeout: Duration,
    /// How many bytes an upload buffers before writing them as one part.
    pub part_size: usize,
}

/// The media library: the object store and the limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaStore {
    /// The store holding blobs and records.
    store: Arc<dyn ObjectStore>,
    /// The rules uploads and downloads obey.
    limits: Arc<MediaLimits>,
    /// Multipart uploads of failed uploads that could not be aborted yet.
    pending_aborts: PendingAborts,
}

impl MediaStore {
    /// A library over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, limits: MediaLimits) -> Self {
        Self {
            store,
            limits: Arc::new(limits),
            pending_aborts: PendingAborts::default(),
        }
    }

    /// The aborts that failed and wait for the sweeper to retry them.
    pub fn pending_aborts(&self) -> &PendingAborts {
        &self.pending_aborts
    }

    /// The configured limits.
    pub fn limits(&self) -> &MediaLimits {
        &self.limits
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of an object's bytes.
    fn blob_path(id: &MediaId) -> Path {
        Path::from(format!("blobs/{id}"))
    }

    /// The key of an object's record.
    fn record_path(id: &MediaId) -> Path {
        Path::from(format!("records/{id}.json"))
    }

    /// The record of a live object: NOT_FOUND when unknown or expired.
    pub async fn get(&self, id: &MediaId) -> Result<Record, Error> {
        let record = match self.store.get(&Self::record_path(id)).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                Record::from_json(&bytes)?
            }
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound(format!("no media with ID {id}")));
            }
            Err(e) => return Err(e.into()),
        };
        if record.is_expired(record::now_millis()) {
            return Err(Error::NotFound(format!("media {id} has expired")));
        }
        Ok(record)
    }

    /// Publishes a record, which makes its object visible.
    async fn put_record(&self, record: &Record) -> Result<(), Error> {
        let id = MediaId::parse(&record.media_id)?;
        let json = record.to_json()?;
        self.store
            .put(&Self::record_path(&id), PutPayload::from(json))
            .await?;
        Ok(())
    }

    /// Deletes an object: its bytes first, then its record, so that a crash between
    /// the two leaves a record the next sweep deletes, never bytes without a record.
    async fn delete(&self, id: &MediaId) -> Result<(), Error> {
        ignore_not_found(self.store.delete(&Self::blob_path(id)).await)?;
        ignore_not_found(self.store.delete(&Self::record_path(id)).await)?;
        Ok(())
    }
}

/// Treats "already gone" as success.
fn ignore_not_found(result: object_store::Result<()>) -> Result<(), Error> {
    match result {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
