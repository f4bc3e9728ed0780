//! Uploads from a file or from memory, streamed in chunks with progress; the server's
//! SHA-256 is checked against the one computed while reading.
//!
//! A file or in-memory upload is hashed first and offered to the server by header
//! alone (SHA-256 and size, no data): when this user stored the same content before,
//! the server completes it at once without the bytes. Otherwise the server answers
//! INVALID_ARGUMENT (the same as for content it does not hold, or that another user
//! stored), and the bytes are sent as usual.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    client::Client,
    error::Error,
    media::{Media, MediaKind},
    pb::{self, upload_media_request::Frame},
    transfer::{Transfer, TransferContext},
};

/// Where an upload's bytes come from.
enum Source {
    File(PathBuf),
    Memory(Bytes),
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

impl Client {
    /// Starts uploading the image at `path` and returns at once; await the
    /// [`Transfer`] for the [`Media`] record (then [`Media::image_message`]).
    pub fn upload_image(&self, path: impl AsRef<Path>) -> Result<Transfer<Media>, Error> {
        self.upload_path(MediaKind::Image, path.as_ref())
    }

    /// Starts uploading the file at `path`; see [`Client::upload_image`].
    pub fn upload_file(&self, path: impl AsRef<Path>) -> Result<Transfer<Media>, Error> {
        self.upload_path(MediaKind::File, path.as_ref())
    }

    /// Starts uploading `bytes` as an image named `file_name`.
    pub fn upload_image_bytes(
        &self,
        file_name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<Transfer<Media>, Error> {
        self.upload_bytes(MediaKind::Image, file_name, bytes)
    }

    /// Starts uploading `bytes` as a file named `file_name`.
    pub fn upload_file_bytes(
        &self,
        file_name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<Transfer<Media>, Error> {
        self.upload_bytes(MediaKind::File, file_name, bytes)
    }

    /// Starts uploading `bytes` of `kind`, named `file_name`.
    pub fn upload_bytes(
        &self,
        kind: MediaKind,
        file_name: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<Transfer<Media>, Error> {
        let bytes = bytes.into();
        self.upload(
            kind,
            file_name.to_owned(),
            bytes.len() as u64,
            Source::Memory(bytes),
        )
    }

    /// Starts uploading `size` bytes that `stream` yields (from a camera, a socket,
    /// ...); the stream must yield exactly `size` bytes.
    pub fn upload_stream<S>(
        &self,
        kind: MediaKind,
        file_name: &str,
        size: u64,
        stream: S,
    ) -> Result<Transfer<Media>, Error>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.upload(
            kind,
            file_name.to_owned(),
            size,
            Source::Stream(stream.boxed()),
        )
    }

    fn upload_path(&self, kind: MediaKind, path: &Path) -> Result<Transfer<Media>, Error> {
        // The caller's input: a path that cannot be read is an invalid argument.
        let metadata = std::fs::metadata(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))?;
        if !metadata.is_file() {
            return Err(Error::InvalidArgument(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let size = metadata.len();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{} has no file name", path.display()))
            })?;
        self.upload(kind, file_name, size, Source::File(path.to_owned()))
    }

    fn upload(
        &self,
        kind: MediaKind,
        file_name: String,
        size: u64,
        source: Source,
    ) -> Result<Transfer<Media>, Error> {
        let client = self.clone();
        self.inner.transfers.start(
            size,
            move |progress| client.run_upload(kind, file_name, size, source, progress),
            || async {},
        )
    }

    async fn run_upload(
        self,
        kind: MediaKind,
        file_name: String,
        size: u64,
        source: Source,
        progress: TransferContext,
    ) -> Result<Media, Error> {
        let mut header = pb::UploadHeader {
            kind: kind.to_proto().into(),
            file_name,
            size,
            ..Default::default()
        };
        let digest = digest_of(&source).await?;
        if let Some(digest) = digest {
            header.sha256 = Bytes::copy_from_slice(&digest);
            if let Some(media) = self.try_reuse(header.clone(), &digest).await? {
                progress.report(size, size);
                return Ok(media);
            }
        }
        let (tx, rx) = mpsc::channel(4);
        let chunk = self.inner.options.chunk_size;
        // The channel is new and has room: the header always goes first.
        let _ = tx.try_send(pb::UploadMediaRequest {
            frame: Some(Frame::Header(header)),
        });
        let reader = tokio::spawn(send_chunks(source, chunk, size, tx, progress));
        let response = self
            .media()
            .upload_media(self.request(ReceiverStream::new(rx), false))
            .await;
        let read = reader.await.map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "the reading task failed: {e}"
            )))
        })?;
        // A local read error is the root cause of whatever the server said after it.
        let (digest, progress) = read?;
        let media = response?
            .into_inner()
            .media
            .map(Media::from_proto)
            .ok_or_else(|| Error::Integrity("the server's answer holds no media record".into()))?;
        if digest.is_some_and(|d| d != media.sha256) {
            return Err(Error::Integrity(format!(
                "the server stored SHA-256 {} but the bytes read here hash differently",
                media.sha256_hex()
            )));
        }
        progress.report(size, size);
        Ok(media)
    }
}

impl Client {
    /// Offers the content by header alone; `None` when the server wants the bytes.
    async fn try_reuse(
        &self,
        header: pb::UploadHeader,
        digest: &[u8; 32],
    ) -> Result<Option<Media>, Error> {
        let frames = futures::stream::iter([pb::UploadMediaRequest {
            frame: Some(Frame::Header(header)),
        }]);
        let response = match self.media().upload_media(self.request(frames, false)).await {
            Ok(response) => response,
            // Not content this user stored (or not stored at all): send the bytes.
            Err(status) if status.code() == tonic::Code::InvalidArgument => return Ok(None),
            Err(status) => return Err(status.into()),
        };
        let media = response
            .into_inner()
            .media
            .map(Media::from_proto)
            .ok_or_else(|| Error::Integrity("the server's answer holds no media record".into()))?;
        if media.sha256 != *digest {
            return Err(Error::Integrity(format!(
                "the server reused SHA-256 {} for content that hashes differently here",
                media.sha256_hex()
            )));
        }
        Ok(Some(media))
    }
}

/// The SHA-256 of a file or in-memory source, read before the upload so that the
/// server can be offered the content by header alone; `None` for a stream, which can
/// be read only once.
fn digest_of(
    source: &Source,
) -> impl Future<Output = Result<Option<[u8; 32]>, Error>> + Send + 'static {
    // What to hash is taken here, so that the future does not borrow the source.
    let path = match source {
        Source::Memory(bytes) => Err(Some(Sha256::digest(bytes).into())),
        Source::Stream(_) => Err(None),
        Source::File(path) => Ok(path.clone()),
    };
    async move {
        let path = match path {
            Ok(path) => path,
            Err(known) => return Ok(known),
        };
        Ok(Some(file_sha256(&path).await?))
    }
}

/// The SHA-256 of the file at `path`, read on a blocking thread.
pub(crate) async fn file_sha256(path: &Path) -> Result<[u8; 32], Error> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "the hashing task failed: {e}"
        )))
    })?
    .map_err(Error::Io)
}

/// Reads the source in `chunk`-sized frames into `tx`, hashing as it goes. Returns
/// the digest, or `None` when the server stopped reading early.
async fn send_chunks(
    source: Source,
    chunk: usize,
    size: u64,
    tx: mpsc::Sender<pb::UploadMediaRequest>,
    progress: TransferContext,
) -> Result<(Option<[u8; 32]>, TransferContext), Error> {
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let frame = |data: Bytes| pb::UploadMediaRequest {
        frame: Some(Frame::Data(data)),
    };
    match source {
        Source::Memory(bytes) => {
            for start in (0..bytes.len()).step_by(chunk.max(1)) {
                let data = bytes.slice(start..(start + chunk).min(bytes.len()));
                hasher.update(&data);
                done += data.len() as u64;
                if tx.send(frame(data)).await.is_err() {
                    return Ok((None, progress));
                }
                progress.report(done, size);
            }
        }
        Source::Stream(mut stream) => {
            while let Some(data) = stream.next().await {
                let data = data?;
                hasher.update(&data);
                done += data.len() as u64;
                if tx.send(frame(data)).await.is_err() {
                    return Ok((None, progress));
                }
                progress.report(done.min(size), size);
            }
        }
        Source::File(path) => {
            let mut file = tokio::fs::File::open(&path).await?;
            loop {
                let mut buf = Vec::with_capacity(chunk);
                let n = (&mut file).take(chunk as u64).read_to_end(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf);
                done += n as u64;
                if tx.send(frame(Bytes::from(buf))).await.is_err() {
                    return Ok((None, progress));
                }
                progress.report(done.min(size), size);
            }
        }
    }
    Ok((Some(hasher.finalize().into()), progress))
}
