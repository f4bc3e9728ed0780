//! Image dimensions, read from the first bytes of an upload; nothing is decoded.

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
    Some((width, height, mime))
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
}
