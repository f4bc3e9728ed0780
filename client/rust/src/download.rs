//! Downloads into memory or into a file. A file download writes to a partial file
//! beside the target, verifies size and SHA-256, then renames it into place, so the
//! target is never a half file; an interrupted download resumes from the partial file.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    client::Client,
    error::Error,
    media::Media,
    pb::{self, download_media_response::Frame},
    transfer::{Transfer, TransferContext},
};

/// A download held in memory.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The record of the object.
    pub media: Media,
    /// Its bytes, verified against the record's size and SHA-256.
    pub bytes: Bytes,
}

/// Checks a media ID before it is used in a request or a file name: 32 lowercase hex.
fn check_media_id(media_id: &str) -> Result<(), Error> {
    let ok = media_id.len() == 32
        && media_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{media_id:?} is not a media ID (32 lowercase hex characters)"
        )))
    }
}

impl Client {
    /// Where [`Client::download_to_file`] keeps the unfinished bytes of `media_id`
    /// for `path`: a hidden file in the same folder, so the rename is atomic.
    pub fn partial_path(path: impl AsRef<Path>, media_id: &str) -> PathBuf {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".{name}.{media_id}.part"))
    }

    /// Starts downloading `media_id` into memory.
    pub fn download_to_memory(&self, media_id: &str) -> Result<Transfer<Downloaded>, Error> {
        check_media_id(media_id)?;
        let client = self.clone();
        let media_id = media_id.to_owned();
        self.inner.transfers.start(
            0,
            move |progress| client.run_download_to_memory(media_id, progress),
            || async {},
        )
    }

    /// Starts downloading `media_id` to `path`: the bytes go to
    /// [`Client::partial_path`] first and are renamed into place once their size and
    /// SHA-256 match; an existing `path` is replaced. A download whose connection is
    /// lost part-way (UNAVAILABLE, DEADLINE_EXCEEDED) keeps the partial file and the
    /// next call resumes from it; a cancelled one, or one that fails in any other way,
    /// removes it.
    pub fn download_to_file(
        &self,
        media_id: &str,
        path: impl AsRef<Path>,
    ) -> Result<Transfer<Media>, Error> {
        check_media_id(media_id)?;
        let path = path.as_ref().to_owned();
        let partial = Self::partial_path(&path, media_id);
        let client = self.clone();
        let media_id = media_id.to_owned();
        let remove = partial.clone();
        self.inner.transfers.start(
            0,
            move |progress| client.run_download_to_file(media_id, path, partial, progress),
            move || async move {
                let _ = tokio::fs::remove_file(remove).await;
            },
        )
    }

    /// Opens a download from `offset`, returning the record and the data stream.
    async fn open(
        &self,
        media_id: &str,
        offset: u64,
    ) -> Result<(Media, tonic::Streaming<pb::DownloadMediaResponse>), Error> {
        let request = pb::DownloadMediaRequest {
            media_id: media_id.to_owned(),
            offset,
            length: 0,
        };
        let mut stream = self
            .media()
            .download_media(self.request(request, false))
            .await?
            .into_inner();
        match stream.message().await? {
            Some(pb::DownloadMediaResponse {
                frame: Some(Frame::Media(media)),
            }) => Ok((Media::from_proto(media), stream)),
            _ => Err(Error::Integrity(
                "the download did not start with the media record".into(),
            )),
        }
    }

    async fn run_download_to_memory(
        self,
        media_id: String,
        progress: TransferContext,
    ) -> Result<Downloaded, Error> {
        let (media, mut stream) = self.open(&media_id, 0).await?;
        let mut bytes = BytesMut::with_capacity(media.size as usize);
        let mut hasher = Sha256::new();
        while let Some(frame) = stream.message().await? {
            if let Some(Frame::Data(data)) = frame.frame {
                hasher.update(&data);
                bytes.extend_from_slice(&data);
                progress.report(bytes.len() as u64, media.size);
            }
        }
        verify(&media, bytes.len() as u64, hasher.finalize().into())?;
        Ok(Downloaded {
            media,
            bytes: bytes.freeze(),
        })
    }

    async fn run_download_to_file(
        self,
        media_id: String,
        path: PathBuf,
        partial: PathBuf,
        progress: TransferContext,
    ) -> Result<Media, Error> {
        let result = self
            .fill_and_rename(&media_id, &path, &partial, &progress)
            .await;
        // Only a lost connection (or a stalled one) leaves bytes worth resuming from;
        // after any other failure (the media expired, a local write failed, the bytes
        // did not match) the partial file goes.
        if let Err(e) = &result
            && !matches!(e, Error::Unavailable(_) | Error::DeadlineExceeded(_))
        {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    async fn fill_and_rename(
        &self,
        media_id: &str,
        path: &Path,
        partial: &Path,
        progress: &TransferContext,
    ) -> Result<Media, Error> {
        let (mut hasher, mut done) = hash_file(partial).await?;
        let (media, mut stream) = match self.open(media_id, done).await {
            // The partial file is longer than the object: it is not a prefix of it.
            Err(Error::OutOfRange(_)) => {
                tokio::fs::remove_file(partial).await?;
                (hasher, done) = (Sha256::new(), 0);
                self.open(media_id, 0).await?
            }
            other => other?,
        };
        progress.report(done, media.size);
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .await?;
        while let Some(frame) = stream.message().await? {
            if let Some(Frame::Data(data)) = frame.frame {
                file.write_all(&data).await?;
                hasher.update(&data);
                done += data.len() as u64;
                progress.report(done, media.size);
            }
        }
        file.sync_all().await?;
        drop(file);
        // Bytes that fail the check can never become the object (the caller removes
        // the partial file): start over next time.
        verify(&media, done, hasher.finalize().into())?;
        tokio::fs::rename(partial, path).await?;
        Ok(media)
    }
}

/// Hashes what a partial file already holds; no file is an empty start.
async fn hash_file(path: &Path) -> Result<(Sha256, u64), Error> {
    let mut hasher = Sha256::new();
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok((hasher, total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn verify(media: &Media, size: u64, sha256: [u8; 32]) -> Result<(), Error> {
    if size != media.size {
        return Err(Error::Integrity(format!(
            "received {size} bytes of {}",
            media.size
        )));
    }
    if sha256 != media.sha256 {
        return Err(Error::Integrity(format!(
            "the bytes hash to {} but the record says {}",
            hex::encode(sha256),
            media.sha256_hex()
        )));
    }
    Ok(())
}
