//! Server-made thumbnails of stored images (GetThumbnail).
//!
//! # Sizes and formats
//! Thumbnails come in [`SIZES`] (96, 320 and 640 pixels on the longer side); a request
//! is rounded up to the next one, and above the largest gets the largest. A fixed set
//! keeps the stored copies to three per image, whatever clients ask for. An image
//! smaller than the size is not enlarged. JPEG, PNG, GIF (its first frame), WebP and
//! BMP are read; the EXIF orientation (JPEG, and WebP or PNG when they carry EXIF) is
//! applied after scaling, so the thumbnail is upright.
//!
//! The thumbnail is a JPEG (quality 80) unless the image has a transparent pixel,
//! then a PNG: JPEG is the smallest lossy format every client and platform decodes;
//! it has no alpha channel, and flattening a sticker or logo onto a colour would show
//! a box behind it. PNG rather than WebP, because the `image` crate encodes WebP only
//! losslessly (so no smaller than PNG for this) and every client decodes PNG natively.
//!
//! # Safe decoding
//! The original is only decoded once its header has been read and passed three checks
//! that allocate nothing: each side at most [`MAX_SIDE`] pixels, its decoded size
//! (width × height × bytes per pixel) at most [`MAX_DECODED_BYTES`], and for a JPEG
//! its metadata segments (EXIF and others) at most [`MAX_METADATA_BYTES`]. The
//! decoders get the same limits (`image::Limits`) for what they allocate besides. A
//! refused, truncated or corrupt image fails with FAILED_PRECONDITION and reason
//! IMAGE_REFUSED; an object that is not one of the five formats with NOT_AN_IMAGE.
//! Decoding runs on tokio's blocking threads, at most `--thumbnail-concurrency` at
//! once (a semaphore taken *before* the original is read, so waiting requests hold no
//! image bytes): peak memory for thumbnails is about that many times the budget, and
//! the async workers that carry transfers and messages never decode.
//!
//! # Storage
//! A thumbnail depends only on the image's bytes, so it is stored once per content
//! and size, under `thumbs/<sha256>/<size>` beside `content/<sha256>` (see `mod.rs`),
//! for records of every layout. The stored object is the encoded image itself: its
//! type and size are read back from its header. The first request makes and stores
//! it; later ones, on any replica or after a restart, read it. Two first requests at
//! once both make it and write the same bytes. The sweeper deletes the thumbnails of
//! content that no live record names, so they expire with their media.

use std::{io::Cursor, sync::Arc, sync::atomic::Ordering};

use bytes::Bytes;
use image::{
    DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits,
    codecs::{jpeg::JpegEncoder, png::PngEncoder},
    metadata::Orientation,
};
use object_store::{ObjectStoreExt, PutPayload, path::Path};
use tokio::sync::Semaphore;

use super::{MediaStore, check_sha256_hex, dims};
use crate::{
    error::{Error, Reason},
    ids::MediaId,
    metrics::METRICS,
};

/// The sizes thumbnails come in: pixels on the longer side.
pub const SIZES: [u32; 3] = [96, 320, 640];

/// The most pixels an image may have on either side to be decoded.
pub const MAX_SIDE: u32 = 16_384;

/// The most bytes an image may take decoded (width × height × bytes per pixel); a
/// 12-megapixel RGB photo takes 36 MiB.
pub const MAX_DECODED_BYTES: u64 = 192 * 1024 * 1024;

/// The most bytes of metadata segments (APPn, COM) a JPEG may carry.
pub const MAX_METADATA_BYTES: u64 = 1024 * 1024;

/// The quality of JPEG thumbnails.
const JPEG_QUALITY: u8 = 80;

/// A thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    /// Width in pixels, upright.
    pub width: u32,
    /// Height in pixels, upright.
    pub height: u32,
    /// The encoded image.
    pub data: Bytes,
}

/// Limits how many thumbnails are decoded at once. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Thumbnailer {
    /// One permit per decode running.
    permits: Arc<Semaphore>,
}

impl Thumbnailer {
    /// A thumbnailer decoding at most `concurrency` images at once (at least 1).
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }
}

/// The size served for a request of `max_edge`: the smallest of [`SIZES`] at least as
/// large, or the largest.
pub fn size_for(max_edge: i32) -> Result<u32, Error> {
    if max_edge <= 0 {
        return Err(Error::invalid(format!(
            "max_edge must be at least 1 pixel, not {max_edge}"
        )));
    }
    let wanted = max_edge as u32;
    Ok(SIZES
        .iter()
        .copied()
        .find(|&size| size >= wanted)
        .unwrap_or(SIZES[SIZES.len() - 1]))
}

/// The key of the thumbnail of content `sha256` at `size`.
pub(super) fn thumb_path(sha256: &str, size: u32) -> Path {
    Path::from(format!("thumbs/{sha256}/{size}"))
}

/// The thumbnail of media `id` for a request of `max_edge` pixels: the stored one, or
/// one made now (then stored).
pub async fn thumbnail(
    media: &MediaStore,
    thumbnailer: &Thumbnailer,
    id: &MediaId,
    max_edge: i32,
) -> Result<Thumbnail, Error> {
    let size = size_for(max_edge)?;
    let record = media.get(id).await?;
    check_sha256_hex(&record.sha256)?;
    let store = media.object_store();
    // No size in the record: a file, or an image whose header lies past the bytes
    // read at upload. Its first bytes tell which, without reading it all.
    if (record.width == 0 || record.height == 0) && !signature_read(media, &record).await? {
        return Err(not_an_image(id));
    }
    let key = thumb_path(&record.sha256, size);
    match store.get(&key).await {
        Ok(found) => {
            let data = found.bytes().await?;
            if let Some(stored) = from_stored(data) {
                METRICS.thumbnails_stored.fetch_add(1, Ordering::Relaxed);
                return Ok(stored);
            }
            tracing::warn!(%key, "a stored thumbnail is unreadable; making it again");
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Taken before the original is read: requests waiting here hold no image bytes.
    let permit = thumbnailer
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Internal("the thumbnail semaphore was closed".into()))?;
    let original = match store.get(&MediaStore::bytes_path(&record)?).await {
        Ok(found) => found.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::NotFound(format!("media {id} has expired")));
        }
        Err(e) => return Err(e.into()),
    };
    let made = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        make(&original, size)
    })
    .await
    .map_err(|e| Error::Internal(format!("the thumbnail task failed: {e}")))?;
    let made = match made {
        Ok(made) => made,
        Err(Refusal::NotAnImage) => {
            METRICS.thumbnails_refused.fetch_add(1, Ordering::Relaxed);
            return Err(not_an_image(id));
        }
        Err(Refusal::Refused(why)) => {
            METRICS.thumbnails_refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(media_id = %id, reason = %why, "refused to make a thumbnail");
            return Err(Error::Refused(
                Reason::ImageRefused,
                format!("media {id} cannot be thumbnailed: {why}"),
            ));
        }
    };
    METRICS.thumbnails_made.fetch_add(1, Ordering::Relaxed);
    // Best effort: unstored, the thumbnail is still good, and made again next time.
    if let Err(e) = store.put(&key, PutPayload::from(made.data.clone())).await {
        tracing::warn!(error = %e, %key, "could not store a thumbnail");
    }
    Ok(made)
}

/// Whether the first bytes of `record`'s object are the signature of a format read.
async fn signature_read(media: &MediaStore, record: &super::Record) -> Result<bool, Error> {
    let end = record.size.min(32);
    if end == 0 {
        return Ok(false);
    }
    let head = match media
        .object_store()
        .get_range(&MediaStore::bytes_path(record)?, 0..end)
        .await
    {
        Ok(head) => head,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::NotFound(format!(
                "media {} has expired",
                record.media_id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(readable_format(&head).is_some())
}

/// The format of `data` by its signature, if it is one of those read.
fn readable_format(data: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(data) {
        Ok(
            format @ (ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp),
        ) => Some(format),
        _ => None,
    }
}

/// NOT_AN_IMAGE for media `id`.
fn not_an_image(id: &MediaId) -> Error {
    Error::Refused(
        Reason::NotAnImage,
        format!("media {id} is not a JPEG, PNG, GIF, WebP or BMP image"),
    )
}

/// A stored thumbnail, its type and size read from its header.
fn from_stored(data: Bytes) -> Option<Thumbnail> {
    let (width, height, content_type) = dims::detect(&data)?;
    let content_type = match content_type {
        "image/jpeg" => "image/jpeg",
        "image/png" => "image/png",
        _ => return None,
    };
    Some(Thumbnail {
        content_type,
        width,
        height,
        data,
    })
}

/// Why an image was not thumbnailed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not one of the formats read.
    NotAnImage,
    /// Over a limit, truncated or corrupt; says which.
    Refused(String),
}

/// The limits every decoder gets.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Makes the thumbnail of `data` no larger than `size` on its longer side. Blocking
/// and CPU-bound: runs on a blocking thread.
pub fn make(data: &[u8], size: u32) -> Result<Thumbnail, Refusal> {
    let Some(format) = readable_format(data) else {
        return Err(Refusal::NotAnImage);
    };
    if format == ImageFormat::Jpeg
        && let Some(meta) = dims::jpeg_metadata(data)
        && meta.bytes > MAX_METADATA_BYTES
    {
        return Err(Refusal::Refused(format!(
            "its metadata (EXIF and other segments) takes {} bytes; at most {} are read",
            meta.bytes, MAX_METADATA_BYTES
        )));
    }
    // The JPEG decoder draws what a cut-off file holds and greys out the rest.
    if format == ImageFormat::Jpeg && !jpeg_complete(data) {
        return Err(Refusal::Refused(
            "it is truncated: its last scan has no end-of-image marker".into(),
        ));
    }
    // The header's own size first, to name it in the refusal; the decoder checks again.
    if let Some((width, height, _)) = dims::detect(data)
        && (width > MAX_SIDE || height > MAX_SIDE)
    {
        return Err(too_large(width, height));
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    reader.limits(limits());
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_large(width, height));
    }
    let decoded = decoder.total_bytes();
    if decoded > MAX_DECODED_BYTES {
        return Err(Refusal::Refused(format!(
            "it declares {width} x {height} pixels, {} MiB decoded; at most {} MiB are decoded",
            decoded / (1024 * 1024),
            MAX_DECODED_BYTES / (1024 * 1024)
        )));
    }
    // Unreadable orientation metadata is no reason to refuse the picture.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    let mut small = if image.width() > size || image.height() > size {
        image.thumbnail(size, size)
    } else {
        image
    };
    small.apply_orientation(orientation);
    encode(&small)
}

/// The refusal of an image declaring `width` x `height`.
fn too_large(width: u32, height: u32) -> Refusal {
    Refusal::Refused(format!(
        "it declares {width} x {height} pixels; at most {MAX_SIDE} on a side are decoded"
    ))
}

/// Whether a JPEG's last scan (its last start-of-scan marker, `FF DA`) is followed by
/// the end-of-image marker (`FF D9`). Neither can occur inside entropy-coded data (a
/// `FF` byte there is followed by `00` or a restart marker), and an EXIF thumbnail,
/// with markers of its own, comes before the image's scans.
fn jpeg_complete(data: &[u8]) -> bool {
    let Some(last_scan) = data.windows(2).rposition(|w| w == [0xff, 0xda]) else {
        return false;
    };
    data[last_scan..].windows(2).any(|w| w == [0xff, 0xd9])
}

/// The refusal for a decoder's error.
fn decode_error(error: ImageError) -> Refusal {
    match error {
        ImageError::Limits(e) => Refusal::Refused(format!(
            "it needs more than the server decodes ({MAX_SIDE} pixels on a side, {} MiB): {e}",
            MAX_DECODED_BYTES / (1024 * 1024)
        )),
        ImageError::Unsupported(e) => Refusal::Refused(format!("an unsupported variant: {e}")),
        e => Refusal::Refused(format!("it is truncated or corrupt: {e}")),
    }
}

/// Encodes a thumbnail: PNG when a pixel is transparent, JPEG otherwise.
fn encode(image: &DynamicImage) -> Result<Thumbnail, Refusal> {
    let (width, height) = (image.width(), image.height());
    let mut out = Vec::new();
    let rgba = image.color().has_alpha().then(|| image.to_rgba8());
    let encoded = match rgba {
        Some(rgba) if rgba.pixels().any(|p| p.0[3] < 255) => rgba
            .write_with_encoder(PngEncoder::new(&mut out))
            .map(|()| "image/png"),
        _ => image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))
            .map(|()| "image/jpeg"),
    };
    let content_type = encoded
        .map_err(|e| Refusal::Refused(format!("its thumbnail could not be encoded: {e}")))?;
    Ok(Thumbnail {
        content_type,
        width,
        height,
        data: out.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up() {
        let cases = [
            (1, 96),
            (96, 96),
            (97, 320),
            (320, 320),
            (321, 640),
            (640, 640),
            (641, 640),
            (i32::MAX, 640),
        ];
        for (asked, served) in cases {
            // Unit test: every case here is a valid size; an Err is the failure tested for.
            assert_eq!(size_for(asked).expect("valid"), served, "{asked}");
        }
        for bad in [0, -1, i32::MIN] {
            assert!(matches!(size_for(bad), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn a_png_declaring_too_many_pixels_is_refused_unread() {
        // Signature and IHDR of a 100,000 x 100,000 RGBA PNG, and nothing else.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        match make(&png, 96) {
            Err(Refusal::Refused(why)) => assert!(why.contains("100000"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A noisy 300 x 200 image (so that it does not compress away) in `format`.
    fn noisy(format: ImageFormat) -> Vec<u8> {
        let mut state = 0x2545_f491u32;
        let img = image::RgbImage::from_fn(300, 200, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let [r, g, b, _] = state.to_le_bytes();
            image::Rgb([r, g, b])
        });
        let mut out = Cursor::new(Vec::new());
        // Unit test: encoding an in-memory image into a Vec cannot fail for these formats.
        img.write_to(&mut out, format).expect("encodes"); // cannot fail: see above
        out.into_inner()
    }

    #[test]
    fn a_truncated_image_of_any_format_is_refused() {
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::WebP,
            ImageFormat::Bmp,
        ] {
            let whole = noisy(format);
            assert!(make(&whole, 96).is_ok(), "{format:?} whole");
            for cut in [400, whole.len() / 2, whole.len() * 9 / 10] {
                match make(&whole[..cut], 96) {
                    Err(Refusal::Refused(_)) => {}
                    other => panic!(
                        "{format:?} cut at {cut} of {}: {:?}",
                        whole.len(),
                        other.map(|t| (t.width, t.height))
                    ),
                }
            }
        }
    }

    #[test]
    fn other_bytes_are_not_an_image() {
        assert_eq!(make(b"hello", 96), Err(Refusal::NotAnImage));
    }

    /// The CRC-32 of PNG chunks.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
