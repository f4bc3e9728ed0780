//! Resumable uploads of a file: CreateUpload, WriteUpload part by part with each
//! part's CRC32C, CommitUpload with the SHA-256, keeping the upload's state beside the
//! file (`<PATH>.courier-upload`, JSON) so that a broken connection (retried with
//! backoff within the call) or a restart of this process (the next call finds the
//! state and asks the server how far it got) continues where it stopped.
//!
//! The contract every client follows is in `proto/courier/v1/media_service.proto`.

use std::{
    io::SeekFrom,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{
    client::Client,
    error::Error,
    media::{Media, MediaKind},
    pb,
    transfer::{Transfer, TransferContext},
    upload::file_sha256,
};

/// How many times a part whose CRC32C the server refused is sent again.
const CHECKSUM_RETRIES: u32 = 3;

/// How many breaks in a row (no part stored between them) a call rides out.
const BREAKS_IN_A_ROW: u32 = 8;

/// The longest pause between attempts after a break.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A completed resumable upload.
#[derive(Debug, Clone)]
pub struct ResumedUpload {
    /// The stored object.
    pub media: Media,
    /// How many bytes the server already held when this call started (0 for a new
    /// upload).
    pub resumed_from: u64,
}

/// How a resumable upload call ended.
#[derive(Debug, Clone)]
pub enum ResumableOutcome {
    /// Every part is stored and committed.
    Completed(ResumedUpload),
    /// The call stopped after the number of parts it was asked to write, without
    /// committing; the state file is kept, and the next call continues.
    Paused {
        /// The upload's ID.
        upload_id: String,
        /// How many bytes the server holds.
        committed_size: u64,
    },
}

/// What is kept beside the file between calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    /// The upload's ID.
    upload_id: String,
    /// The server it was created on.
    server: String,
    /// The file's size.
    size: u64,
    /// The file's SHA-256, hex.
    sha256: String,
    /// The server's part size.
    part_size: u64,
}

/// Where the state of a resumable upload of `path` is kept.
pub fn state_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".courier-upload");
    PathBuf::from(name)
}

/// The CRC32C (Castagnoli) of `data`.
fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Whether `error` is a break worth riding out: the connection or the server went
/// away (or answered nothing in time).
fn is_break(error: &Error) -> bool {
    match error {
        // Inside the work, CANCELLED comes from the connection (a stream reset under
        // the call): a cancel by the caller stops the work without an error reaching it.
        Error::Unavailable(_) | Error::DeadlineExceeded(_) | Error::Cancelled => true,
        Error::Status(status) => matches!(
            status.code(),
            tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Aborted
                | tonic::Code::Internal
        ),
        _ => false,
    }
}

impl Client {
    /// Starts a resumable upload of the file at `path` as `kind` and returns at once;
    /// await the [`Transfer`] for the [`ResumedUpload`]. The upload's state is kept in
    /// `<path>.courier-upload` until it is committed, so a call after a crash or a
    /// restart continues from what the server holds. Cancelling it cancels the upload
    /// on the server and removes the state file.
    pub fn upload_resumable(
        &self,
        path: impl AsRef<Path>,
        kind: MediaKind,
    ) -> Result<Transfer<ResumedUpload>, Error> {
        self.start_resumable(path.as_ref(), kind, None, |outcome| match outcome {
            ResumableOutcome::Completed(done) => Ok(done),
            ResumableOutcome::Paused { .. } => Err(Error::Integrity(
                "a resumable upload paused without being asked to".into(),
            )),
        })
    }

    /// [`Client::upload_resumable`] that stops, without committing, after writing
    /// `max_parts` parts in this call (when given).
    pub fn upload_resumable_parts(
        &self,
        path: impl AsRef<Path>,
        kind: MediaKind,
        max_parts: Option<u64>,
    ) -> Result<Transfer<ResumableOutcome>, Error> {
        self.start_resumable(path.as_ref(), kind, max_parts, Ok)
    }

    fn start_resumable<T: Send + 'static>(
        &self,
        path: &Path,
        kind: MediaKind,
        max_parts: Option<u64>,
        finish: fn(ResumableOutcome) -> Result<T, Error>,
    ) -> Result<Transfer<T>, Error> {
        let path = path.to_owned();
        let metadata = std::fs::metadata(&path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))?;
        if !metadata.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let size = metadata.len();
        let client = self.clone();
        let on_cancel = {
            let client = self.clone();
            let path = path.clone();
            move || async move { client.cancel_resumable(&path).await }
        };
        self.inner.transfers.start(
            size,
            move |progress| async move {
                finish(
                    client
                        .run_resumable(path, kind, size, max_parts, progress)
                        .await?,
                )
            },
            on_cancel,
        )
    }

    /// Cancels the upload named by `path`'s state file on the server (best effort)
    /// and removes the state file.
    async fn cancel_resumable(&self, path: &Path) {
        let state_path = state_path(path);
        if let Ok(text) = tokio::fs::read(&state_path).await
            && let Ok(state) = serde_json::from_slice::<StateFile>(&text)
        {
            let request = pb::CancelUploadRequest {
                upload_id: state.upload_id,
            };
            let _ = self
                .media()
                .cancel_upload(self.request(request, true))
                .await;
        }
        let _ = tokio::fs::remove_file(&state_path).await;
    }

    async fn run_resumable(
        self,
        path: PathBuf,
        kind: MediaKind,
        size: u64,
        max_parts: Option<u64>,
        progress: TransferContext,
    ) -> Result<ResumableOutcome, Error> {
        let sha256 = file_sha256(&path).await?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{} has no file name", path.display()))
            })?;
        let mut upload = Upload {
            client: self,
            state_path: state_path(&path),
            file: tokio::fs::File::open(&path).await?,
            kind,
            file_name,
            size,
            sha256,
            progress,
        };
        upload.run(max_parts).await
    }
}

/// One run of a resumable upload.
struct Upload {
    client: Client,
    state_path: PathBuf,
    file: tokio::fs::File,
    kind: MediaKind,
    file_name: String,
    size: u64,
    sha256: [u8; 32],
    progress: TransferContext,
}

impl Upload {
    async fn run(&mut self, max_parts: Option<u64>) -> Result<ResumableOutcome, Error> {
        let (mut state, mut committed) = match self.resume().await? {
            Some(found) => found,
            None => (self.create().await?, 0),
        };
        let resumed_from = committed;
        let mut written = 0u64;
        let mut breaks = 0u32;
        let mut restarted = false;
        let mut pause = self.client.inner.options.backoff;
        self.progress.report(committed, self.size);
        while committed < self.size {
            if max_parts.is_some_and(|max| written >= max) {
                return Ok(ResumableOutcome::Paused {
                    upload_id: state.upload_id,
                    committed_size: committed,
                });
            }
            match self.write_part(&state, committed).await {
                Ok(next) => {
                    committed = next;
                    written += 1;
                    breaks = 0;
                    pause = self.client.inner.options.backoff;
                    self.progress.report(committed, self.size);
                }
                Err(Error::NotFound(_)) if !restarted => {
                    // Expired while away: start over, once.
                    restarted = true;
                    state = self.create().await?;
                    committed = 0;
                }
                Err(Error::UploadOffsetMismatch(_)) => {
                    committed = self.query(&state).await?;
                }
                Err(e) if is_break(&e) && breaks < BREAKS_IN_A_ROW => {
                    breaks += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                    committed = match self.query(&state).await {
                        Ok(at) => at,
                        Err(e) if is_break(&e) => committed,
                        Err(e) => return Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        let media = self.commit(&state).await?;
        let _ = tokio::fs::remove_file(&self.state_path).await;
        Ok(ResumableOutcome::Completed(ResumedUpload {
            media,
            resumed_from,
        }))
    }

    /// The upload named by the state file, when it is for this server and these bytes
    /// and the server still has it: its state and committed size.
    async fn resume(&self) -> Result<Option<(StateFile, u64)>, Error> {
        let Ok(text) = tokio::fs::read(&self.state_path).await else {
            return Ok(None);
        };
        let Ok(state) = serde_json::from_slice::<StateFile>(&text) else {
            return Ok(None);
        };
        if state.server != self.client.server_url()
            || state.size != self.size
            || state.sha256 != hex::encode(self.sha256)
        {
            return Ok(None);
        }
        match self.query(&state).await {
            Ok(committed) => Ok(Some((state, committed))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a new upload and writes its state file.
    async fn create(&self) -> Result<StateFile, Error> {
        let header = pb::UploadHeader {
            kind: self.kind.to_proto().into(),
            file_name: self.file_name.clone(),
            size: self.size,
            sha256: Bytes::copy_from_slice(&self.sha256),
            ..Default::default()
        };
        let client = &self.client;
        let created = client
            .retrying(|| async {
                let request = pb::CreateUploadRequest {
                    header: Some(header.clone()),
                };
                Ok(client
                    .media()
                    .create_upload(client.request(request, true))
                    .await?
                    .into_inner())
            })
            .await?;
        if created.part_size == 0 {
            return Err(Error::Integrity("the server gave a part size of 0".into()));
        }
        let state = StateFile {
            upload_id: created.upload_id,
            server: client.server_url(),
            size: self.size,
            sha256: hex::encode(self.sha256),
            part_size: created.part_size,
        };
        let json = serde_json::to_vec(&state)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        tokio::fs::write(&self.state_path, json).await?;
        Ok(state)
    }

    /// How many bytes the server holds (retried while it is unavailable).
    async fn query(&self, state: &StateFile) -> Result<u64, Error> {
        let client = &self.client;
        client
            .retrying(|| async {
                let request = pb::QueryUploadRequest {
                    upload_id: state.upload_id.clone(),
                };
                Ok(client
                    .media()
                    .query_upload(client.request(request, true))
                    .await?
                    .into_inner()
                    .committed_size)
            })
            .await
    }

    /// Writes the part at `offset`, sending it again when its CRC32C was refused.
    async fn write_part(&mut self, state: &StateFile, offset: u64) -> Result<u64, Error> {
        let len = state.part_size.min(self.size - offset);
        let mut data = vec![0u8; len as usize];
        self.file.seek(SeekFrom::Start(offset)).await?;
        self.file.read_exact(&mut data).await?;
        let data = Bytes::from(data);
        let crc = crc32c(&data);
        let mut attempt = 0;
        loop {
            let request = pb::WriteUploadRequest {
                upload_id: state.upload_id.clone(),
                offset,
                data: data.clone(),
                crc32c: crc,
            };
            let result = self
                .client
                .media()
                .write_upload(self.client.request(request, true))
                .await;
            match result {
                Ok(response) => return Ok(response.into_inner().committed_size),
                Err(status) => match Error::from(status) {
                    Error::ChecksumMismatch(_) if attempt < CHECKSUM_RETRIES => attempt += 1,
                    e => return Err(e),
                },
            }
        }
    }

    /// Commits (a repeated commit answers the same record, so it is retried).
    async fn commit(&self, state: &StateFile) -> Result<Media, Error> {
        let client = &self.client;
        let media = client
            .retrying(|| async {
                let request = pb::CommitUploadRequest {
                    upload_id: state.upload_id.clone(),
                    sha256: Bytes::copy_from_slice(&self.sha256),
                };
                client
                    .media()
                    .commit_upload(client.request(request, true))
                    .await?
                    .into_inner()
                    .media
                    .map(Media::from_proto)
                    .ok_or_else(|| {
                        Error::Integrity("the server's answer holds no media record".into())
                    })
            })
            .await?;
        if media.sha256 != self.sha256 {
            return Err(Error::Integrity(format!(
                "the server stored SHA-256 {} but the file hashes differently",
                media.sha256_hex()
            )));
        }
        Ok(media)
    }
}
