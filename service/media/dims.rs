//! Image dimensions, read from the first bytes of an upload; nothing is decoded.
//!
//! A JPEG's size is that of its upright picture: when its EXIF orientation turns it a
//! quarter (orientations 5 to 8), width and height are swapped, so the size a client
//! lays out matches what it shows after applying the orientation (and matches the
//! server's thumbnails, which apply it).

use image::metadata::Orientation;
use imagesize::ImageType;

/// How many leading bytes are kept for detection: enough for a JPEG whose EXIF block
/// comes before the frame header.
pub const HEAD_BYTES: usize = 256 * 1024;

/// Width, height and MIME type of a JPEG, PNG, BMP, GIF or WebP image; `None` for
/// anything else.
pub fn detect(head: &[u8]) -> Option<(u32, u32, &'static str)> {
    let mime = match imagesize::image_type(head).ok()? {
        ImageType::Jpeg => "image/jpeg",
        ImageType::Png => "image/png",
        ImageType::Bmp => "image/bmp",
        ImageType::Gif => "image/gif",
        ImageType::Webp => "image/webp",
        _ => return None,
    };
    let size = imagesize::blob_size(head).ok()?;
    let width = u32::try_from(size.width).ok()?;
    let height = u32::try_from(size.height).ok()?;
    if mime == "image/jpeg" && jpeg_orientation(head).is_some_and(turns_a_quarter) {
        return Some((height, width, mime));
    }
    Some((width, height, mime))
}

/// Whether `orientation` turns the picture by 90 or 270 degrees (EXIF 5 to 8), which
/// swaps its width and height.
pub fn turns_a_quarter(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// What the segments of a JPEG before its image data hold: the EXIF block (the TIFF
/// data after `Exif\0\0` in the first APP1 segment that has one) and the total
/// bytes of metadata segments (APP0 to APP15 and comments).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JpegMetadata<'a> {
    /// The EXIF TIFF data, if any.
    pub exif: Option<&'a [u8]>,
    /// The bytes of every APPn and COM segment, headers included.
    pub bytes: u64,
}

/// Walks the segments of a JPEG up to its first scan; `None` when `data` is not a
/// JPEG. Reads only segment headers and stops at the end of `data`, so a truncated
/// head gives what it holds.
pub fn jpeg_metadata(data: &[u8]) -> Option<JpegMetadata<'_>> {
    if !data.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    let mut found = JpegMetadata::default();
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while data.get(pos) == Some(&0xff) && data.get(pos + 1) == Some(&0xff) {
            pos += 1;
        }
        let (Some(&0xff), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            return Some(found);
        };
        match marker {
            // Start of scan or end of image: no metadata after it counts here.
            0xda | 0xd9 => return Some(found),
            // Markers without a length.
            0x01 | 0xd0..=0xd7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let Some(len) = data
            .get(pos + 2..pos + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Some(found);
        };
        if len < 2 {
            return Some(found);
        }
        let body = data.get(pos + 4..(pos + 2 + len).min(data.len()));
        if matches!(marker, 0xe0..=0xef | 0xfe) {
            found.bytes += 2 + len as u64;
        }
        if marker == 0xe1
            && found.exif.is_none()
            && let Some(tiff) = body.and_then(|b| b.strip_prefix(b"Exif\0\0"))
        {
            found.exif = Some(tiff);
        }
        pos += 2 + len;
    }
}

/// The EXIF orientation of a JPEG, if it has a valid one.
pub fn jpeg_orientation(data: &[u8]) -> Option<Orientation> {
    Orientation::from_exif_chunk(jpeg_metadata(data)?.exif?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_bytes_have_no_dimensions() {
        assert_eq!(detect(b"hello, world"), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn reads_a_png_header() {
        // The signature and IHDR chunk of a 3x2 PNG: all that detection needs.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&3u32.to_be_bytes());
        png.extend_from_slice(&2u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(detect(&png), Some((3, 2, "image/png")));
    }

    /// A JPEG of `width` x `height` with an EXIF APP1 segment giving `orientation`.
    fn jpeg_with_orientation(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        let img = image::RgbImage::new(width, height);
        let mut jpeg = std::io::Cursor::new(Vec::new());
        // Unit-test fixture: encoding an 8-bit RGB image into memory cannot fail.
        img.write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .expect("encodes");
        let jpeg = jpeg.into_inner();
        // Big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = vec![0xff, 0xd8, 0xff, 0xe1];
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn a_quarter_turned_jpeg_reports_its_upright_size() {
        for (orientation, expected) in [(1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40))]
        {
            let jpeg = jpeg_with_orientation(40, 30, orientation);
            assert_eq!(
                detect(&jpeg),
                Some((expected.0, expected.1, "image/jpeg")),
                "orientation {orientation}"
            );
        }
    }

    #[test]
    fn jpeg_segments_are_walked_safely() {
        let jpeg = jpeg_with_orientation(8, 8, 6);
        // Unit test: the fixture above is a JPEG; a None here is the failure tested for.
        let meta = jpeg_metadata(&jpeg).expect("a JPEG");
        assert!(meta.exif.is_some());
        assert!(meta.bytes > 0);
        // Every truncation reads what it holds and never panics.
        for end in 0..jpeg.len().min(200) {
            let _ = jpeg_orientation(&jpeg[..end]);
        }
        assert_eq!(jpeg_metadata(b"not a jpeg"), None);
    }
}
