//! MediaService: images and files stored once per distinct content, served by media ID.
//!
//! # Store layout (version 3: content-addressed, with thumbnails)
//! - `content/<sha256>`: the bytes, once per distinct SHA-256 whoever uploaded them.
//! - `thumbs/<sha256>/<size>`: the thumbnail of those bytes at one of the sizes 96,
//!   320, 640 (see `thumbnail.rs`), made on the first GetThumbnail, for content of
//!   records of any layout (a layout-1 record names its SHA-256 too).
//! - `records/<id>.json`: one [`Record`] per upload (its own ID, owner, file name and
//!   expiry) naming the content's SHA-256; written last, so an object is visible only
//!   once complete. Every reader starts from it.
//! - `owners/<sha256(owner)>/<sha256>/<id>`: an empty index key, so that an owner's
//!   header-only re-upload finds a live record of its own without a scan.
//! - `uploads/<id>`: an upload's bytes while they stream in and are verified.
//! - `resumable/<upload-id>/…`: a resumable upload's state and parts until it is
//!   committed, cancelled or expires (see `resumable.rs`).
//! - `usage/<sha256(owner)>/<created>-<expires>-<size>-<id>`: an empty key per upload
//!   while storage quotas are on (see `quota.rs`); deleted with the record.
//! - `verdicts/<sha256>.json`: the operator's verdict on a content (quarantined, or
//!   released or accepted by the upload hook), shared by every record naming it (see
//!   `verdict.rs`, `hook.rs`).
//! - `deleted/<id>.json`: the tombstone of a deleted media until its original expiry,
//!   so that its ID answers MEDIA_DELETED (see `delete.rs`).
//!
//! Version 1 wrote `blobs/<id>` + `records/<id>.json` (a record with no `layout`
//! field). Such records stay readable as they are: downloads read `blobs/<id>`, and
//! the sweeper deletes both when the record expires. Nothing is migrated.
//!
//! Version 4 only adds `verdicts/` and `deleted/`, which readers consult beside a
//! record: no verdict means served, no tombstone means a plain NOT_FOUND, so what
//! earlier versions wrote is served as before. A version-3 server ignores both (it
//! would serve quarantined content, and answer a deleted ID with a bare NOT_FOUND),
//! so a rolling upgrade should finish before quarantines are relied on.
//!
//! Version 3 only adds `thumbs/`; records are unchanged (their `layout` field says
//! where a record's bytes are, which did not change, so they keep writing 2). Not
//! bumping it is deliberate: a server of version 2 counts only records of layout 2 as
//! naming shared content, so during a rolling upgrade it would delete the content of
//! records marked 3. Such a server ignores `thumbs/`; thumbnails of media that expire
//! while only it sweeps are collected by the first version-3 sweep.
//!
//! # How bytes are shared and collected
//! An upload streams into `uploads/<id>`, verifies size and digest, copies it to
//! `content/<sha256>` (a plain copy: whoever wrote that key wrote the same bytes, so
//! overwriting is harmless and needs no conditional write, on a folder or S3 alike,
//! and it makes the key's last-modified time fresh), writes its record, checks that
//! the content is still there (copying again if a sweep took it meanwhile), writes
//! the owner index and deletes `uploads/<id>`. A header-only re-upload (same owner,
//! same SHA-256 and size, no data frames) is accepted only when a live record of that
//! owner names the content and expires later than `grace` from now; it writes a
//! record and an index key and nothing else.
//!
//! The sweeper (see `sweeper.rs`) deletes expired records, then lists the records
//! left and deletes each `content/<sha256>` that no live record names and whose
//! last-modified time (read again just before the delete) is older than `grace`
//! before the sweep started; each `uploads/<id>` older than `grace`; and each
//! `thumbs/<sha256>/<size>` whose SHA-256 no live record (of any layout) names. A
//! thumbnail needs no grace: it is derived, so one deleted while a new record of its
//! content is written is only made again on the next request.
//!
//! # Races, and why they are safe
//! - *An upload writing its record while a sweep lists records.* Its content was
//!   copied (last-modified refreshed) just before, so it is younger than `grace` and
//!   kept; the next sweep sees the record. `grace` (default 1 h) must exceed the time
//!   from an upload's copy to its record write (bounded by the store's retry limit,
//!   15 s).
//! - *A header-only re-upload while the previous record expires.* It is accepted only
//!   when that record outlives `grace`, so any sweep that could miss the new record
//!   still sees the old one live and keeps the content.
//! - *A sweep that read an old last-modified, then an upload re-copies, then the sweep
//!   deletes.* The sweep reads last-modified again right before its delete, and the
//!   upload checks after its record write that the content exists (copying it again
//!   from `uploads/<id>` if not). What remains is a sweep stalled between its check
//!   and its delete for longer than an upload's copy, record write and check; object
//!   stores without conditional deletes cannot close that last gap, and `grace`
//!   makes it need a content unreferenced for `grace` and re-uploaded in that instant.
//! - *Two uploads of the same content at once.* Both copy identical bytes to the same
//!   key; the last copy wins and is the same.
//! - *A crash (kill -9) at any point.* Before the record: `uploads/<id>` or an
//!   unreferenced `content/<sha256>` is left and swept after `grace` (a local store's
//!   half-written staging files are removed at start; an S3 multipart upload never
//!   completed is left to the bucket's lifecycle rule). After the record: its content
//!   is there (copied and checked first); a missing index key only disables the
//!   shortcut for that upload. Deleting, the sweeper removes the index key, then the
//!   record; content goes only when no live record names it. So no record points at
//!   missing bytes, and no bytes stay uncollected.

mod content;
mod delete;
mod digest;
mod dims;
mod download;
mod hook;
mod quota;
mod record;
mod resumable;
mod resumable_slots;
mod service;
mod slots;
mod sweeper;
mod thumbnail;
mod upload;
mod verdict;
mod writer;

use std::{sync::Arc, time::Duration};

use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, multipart::MultipartStore, path::Path,
};

pub use delete::{
    Tombstone, all_records, delete_content, delete_own, remove as delete_media, tombstone,
};
pub use dims::detect as detect_image;
pub use download::{Download, open_download};
pub use hook::{HookFailure, UploadHook, open_staged};
pub use quota::QuotaLimits;
pub use record::{Kind as MediaKind, Record, now_millis, timestamp};
pub use resumable::ResumableSettings;
pub use service::MediaServer;
pub use slots::{SlotGuard, TransferSlots};
pub use sweeper::{spawn_sweeper, sweep_once};
pub use thumbnail::{Thumbnail, Thumbnailer, size_for as thumbnail_size, thumbnail};
pub use upload::{Frame, upload};
pub use verdict::{Verdict, VerdictState};
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
    /// How old unreferenced content and staged uploads must be before the sweeper
    /// deletes them; see the module doc for why.
    pub grace: Duration,
    /// Per-user storage quotas (off by default).
    pub quota: QuotaLimits,
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
    /// The part size and idle expiry of resumable uploads.
    resumable: ResumableSettings,
    /// With S3: the store's multipart API, so that a resumable upload's parts are S3
    /// parts; `None` on a local folder.
    multipart: Parts,
    /// The operator's upload hook, when configured (see `hook.rs`).
    hook: Option<Arc<UploadHook>>,
}

/// The low-level multipart API of an S3 store, or none.
#[derive(Clone, Default)]
struct Parts(Option<Arc<dyn MultipartStore>>);

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Parts(S3)"
        } else {
            "Parts(none)"
        })
    }
}

impl MediaStore {
    /// A library over `store`.
    pub fn new(store: Arc<dyn ObjectStore>, limits: MediaLimits) -> Self {
        Self {
            store,
            limits: Arc::new(limits),
            pending_aborts: PendingAborts::default(),
            resumable: ResumableSettings::default(),
            multipart: Parts::default(),
            hook: None,
        }
    }

    /// The same library, with every new content judged by `hook` before it is
    /// published.
    pub fn with_hook(mut self, hook: UploadHook) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The upload hook, when configured.
    fn upload_hook(&self) -> Option<&UploadHook> {
        self.hook.as_deref()
    }

    /// The same library, with resumable uploads of `settings` whose parts go through
    /// `multipart` (S3's multipart API) when given, else into plain part objects.
    pub fn with_resumable(
        mut self,
        settings: ResumableSettings,
        multipart: Option<Arc<dyn MultipartStore>>,
    ) -> Self {
        self.resumable = settings;
        self.multipart = Parts(multipart);
        self
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

    /// Where an upload's bytes stream in before they are verified.
    fn staging_path(id: &MediaId) -> Path {
        Path::from(format!("uploads/{id}"))
    }

    /// The key of the bytes whose SHA-256 is `sha256` (hex).
    fn content_path(sha256: &str) -> Path {
        Path::from(format!("content/{sha256}"))
    }

    /// The key of a layout-1 object's bytes.
    fn legacy_blob_path(id: &MediaId) -> Path {
        Path::from(format!("blobs/{id}"))
    }

    /// The key of an object's record.
    fn record_path(id: &MediaId) -> Path {
        Path::from(format!("records/{id}.json"))
    }

    /// The prefix of `owner`'s index keys for content `sha256`; the owner is hashed,
    /// so whatever a user ID holds it never shapes a path.
    fn owner_prefix(owner: &str, sha256: &str) -> Path {
        Path::from(format!("owners/{}/{sha256}", owner_key(owner)))
    }

    /// The index key saying that `record`'s owner uploaded its content.
    fn owner_index_path(record: &Record) -> Path {
        let prefix = Self::owner_prefix(&record.owner, &record.sha256);
        Path::from(format!("{prefix}/{}", record.media_id))
    }

    /// Where the bytes of `record` are, by its layout.
    fn bytes_path(record: &Record) -> Result<Path, Error> {
        if record.layout == record::LAYOUT_BLOBS {
            Ok(Self::legacy_blob_path(&MediaId::parse(&record.media_id)?))
        } else {
            check_sha256_hex(&record.sha256)?;
            Ok(Self::content_path(&record.sha256))
        }
    }

    /// The store key of `record`'s bytes (for presigning a GET of them).
    pub fn bytes_key(record: &Record) -> Result<Path, Error> {
        Self::bytes_path(record)
    }

    /// The record of a live object that may be served: NOT_FOUND when unknown or
    /// expired (reason MEDIA_DELETED when it was deleted), FAILED_PRECONDITION
    /// (MEDIA_QUARANTINED) when its content is quarantined. Every reader of a record
    /// goes through here, and it reads the store each time: nothing is cached, so a
    /// deletion or quarantine holds on every replica at once.
    pub async fn get(&self, id: &MediaId) -> Result<Record, Error> {
        let Some(record) = self.read_record(id).await? else {
            return Err(delete::missing(self, id).await);
        };
        if record.is_expired(record::now_millis()) {
            return Err(Error::NotFound(format!("media {id} has expired")));
        }
        verdict::check_record(self, &record).await?;
        Ok(record)
    }

    /// The stored record of `id`, expired or not, whatever its content's verdict.
    pub async fn read_record(&self, id: &MediaId) -> Result<Option<Record>, Error> {
        match self.store.get(&Self::record_path(id)).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                Ok(Some(Record::from_json(&bytes)?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The operator's verdict on content `sha256` (hex), if any.
    pub async fn verdict(&self, sha256: &str) -> Result<Option<Verdict>, Error> {
        verdict::read(self, sha256).await
    }

    /// Stores the operator's verdict on content `sha256` (hex), logged.
    pub async fn set_verdict(&self, sha256: &str, verdict: &Verdict) -> Result<(), Error> {
        verdict::write(self, sha256, verdict).await?;
        tracing::info!(%sha256, state = ?verdict.state, by = %verdict.by, note = %verdict.note, "set the verdict on a content");
        Ok(())
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

    /// Deletes an upload's record. Layout 1: its bytes first, then the record, so that
    /// a crash between the two leaves a record the next sweep deletes, never bytes
    /// without a record. Layout 2: the owner index, then the record; the shared bytes
    /// are the sweeper's to collect once no record names them.
    async fn delete_record(&self, record: &Record) -> Result<(), Error> {
        let id = MediaId::parse(&record.media_id)?;
        if record.layout == record::LAYOUT_BLOBS {
            ignore_not_found(self.store.delete(&Self::legacy_blob_path(&id)).await)?;
        } else {
            ignore_not_found(self.store.delete(&Self::owner_index_path(record)).await)?;
        }
        ignore_not_found(self.store.delete(&Self::record_path(&id)).await)?;
        quota::forget(self, record).await
    }
}

/// An owner as a key segment: the SHA-256 of the user ID, hex, so that whatever a
/// user ID holds it never shapes a path.
fn owner_key(owner: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(owner.as_bytes()))
}

/// Checks that a record's digest is 64 lowercase hex digits before it names a key.
fn check_sha256_hex(sha256: &str) -> Result<(), Error> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(Error::Internal("a record with a malformed sha256".into()))
    }
}

/// Treats "already gone" as success.
fn ignore_not_found(result: object_store::Result<()>) -> Result<(), Error> {
    match result {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
