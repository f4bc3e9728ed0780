//! Downloads: the record, then the requested range of bytes in frames of bounded size.

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{GetOptions, GetRange, GetResultPayload};

use super::{MediaStore, Record};
use crate::{error::Error, ids::MediaId};

/// The size of the data frames a download sends.
pub const FRAME_SIZE: usize = 256 * 1024;

/// An opened download: the record, and a stream of the requested bytes.
pub struct Download {
    /// The record of the object, sent first.
    pub record: Record,
    /// How many bytes `data` yields: the requested range, cut to the object's end.
    pub len: u64,
    /// The requested bytes in frames of at most [`FRAME_SIZE`].
    pub data: BoxStream<'static, Result<Bytes, Error>>,
}

/// Opens `id` for reading `length` bytes (0: to the end) from `offset`.
pub async fn open_download(
    media: &MediaStore,
    id: &MediaId,
    offset: u64,
    length: u64,
) -> Result<Download, Error> {
    let record = media.get(id).await?;
    if offset > record.size {
        return Err(Error::OutOfRange(format!(
            "offset {offset} is past the end of media {id}, which is {} bytes long",
            record.size
        )));
    }
    let end = match length {
        0 => record.size,
        n => offset.saturating_add(n).min(record.size),
    };
    if offset == end {
        return Ok(Download {
            record,
            len: 0,
            data: futures::stream::empty().boxed(),
        });
    }
    let options = GetOptions {
        range: Some(GetRange::Bounded(offset..end)),
        ..GetOptions::default()
    };
    let result = match media
        .object_store()
        .get_opts(&MediaStore::bytes_path(&record)?, options)
        .await
    {
        Ok(result) => result,
        // The record exists but the bytes are gone: the sweeper is deleting it.
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::NotFound(format!("media {id} has expired")));
        }
        Err(e) => return Err(e.into()),
    };
    let data = match result.payload {
        GetResultPayload::File(file, _) => read_file(file, offset, end - offset)?,
        GetResultPayload::Stream(stream) => rechunk(stream.map_err(Error::from).boxed()),
    };
    Ok(Download {
        record,
        len: end - offset,
        data,
    })
}

/// Reads `len` bytes from `offset` of a local file in frames of [`FRAME_SIZE`]: each
/// frame one positioned read on the blocking pool, straight into the frame's buffer
/// (tokio's `File` would read into a buffer of its own and copy it over).
fn read_file(
    file: std::fs::File,
    offset: u64,
    len: u64,
) -> Result<BoxStream<'static, Result<Bytes, Error>>, Error> {
    let file = std::sync::Arc::new(file);
    Ok(
        futures::stream::try_unfold((file, offset, len), |(file, at, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let want = left.min(FRAME_SIZE as u64) as usize;
            let reader = file.clone();
            let frame = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                std::os::unix::fs::FileExt::read_exact_at(&*reader, &mut buf, at).map(|()| buf)
            })
            .await
            .map_err(|e| Error::Internal(format!("reading a stored object: {e}")))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    Error::Internal("a stored object is shorter than its record".into())
                }
                _ => io_error(e),
            })?;
            Ok(Some((
                Bytes::from(frame),
                (file, at + want as u64, left - want as u64),
            )))
        })
        .boxed(),
    )
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("reading a stored object: {e}"))
}

/// Regroups the store's chunks (of any size) into frames of [`FRAME_SIZE`]; large
/// chunks are split without a copy.
fn rechunk(
    stream: BoxStream<'static, Result<Bytes, Error>>,
) -> BoxStream<'static, Result<Bytes, Error>> {
    let state = (stream, Bytes::new(), false);
    futures::stream::try_unfold(state, |(mut stream, mut rest, mut done)| async move {
        let mut frame = BytesMut::new();
        loop {
            if rest.is_empty() {
                if done {
                    break;
                }
                match stream.next().await {
                    Some(chunk) => rest = chunk?,
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            if frame.is_empty() && rest.len() >= FRAME_SIZE {
                let out = rest.split_to(FRAME_SIZE);
                return Ok(Some((out, (stream, rest, done))));
            }
            let take = rest.len().min(FRAME_SIZE - frame.len());
            frame.extend_from_slice(&rest.split_to(take));
            if frame.len() == FRAME_SIZE {
                break;
            }
        }
        if frame.is_empty() {
            Ok(None)
        } else {
            Ok(Some((frame.freeze(), (stream, rest, done))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rechunk_regroups_into_full_frames() {
        let sizes = [1usize, FRAME_SIZE, 7, FRAME_SIZE * 2 + 3, 100];
        let chunks: Vec<Result<Bytes, Error>> = sizes
            .iter()
            .map(|&n| Ok(Bytes::from(vec![1u8; n])))
            .collect();
        let total: usize = sizes.iter().sum();
        let frames: Vec<Bytes> = rechunk(futures::stream::iter(chunks).boxed())
            .try_collect()
            .await
            .unwrap_or_default();
        assert_eq!(frames.iter().map(Bytes::len).sum::<usize>(), total);
        let (last, full) = frames
            .split_last()
            .map(|(l, f)| (l.len(), f.to_vec()))
            .unwrap_or_default();
        assert!(full.iter().all(|f| f.len() == FRAME_SIZE));
        assert!(last > 0 && last <= FRAME_SIZE);
    }
}
