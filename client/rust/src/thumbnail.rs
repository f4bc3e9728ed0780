//! Server-made thumbnails of stored images, and image messages carrying one.

use bytes::Bytes;

use crate::{client::Client, error::Error, message::Message, pb};

/// A thumbnail made by the server: at most 96, 320 or 640 pixels on its longer side,
/// upright (EXIF orientation applied), a JPEG or (for images with transparency) a PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded image.
    pub data: Bytes,
}

impl Thumbnail {
    /// The file extension that fits the content type: `jpg` or `png`.
    pub fn extension(&self) -> &'static str {
        match self.content_type.as_str() {
            "image/png" => "png",
            _ => "jpg",
        }
    }
}

/// The thumbnail size that fits in a message: the 96-pixel one (a few KiB; messages
/// hold at most 32 KiB in all).
pub const MESSAGE_THUMBNAIL_EDGE: u32 = 96;

impl Client {
    /// The server's thumbnail of image `media_id`, at most `max_edge` pixels on its
    /// longer side after rounding up to 96, 320 or 640 (above 640: 640). Errors:
    /// [`Error::InvalidArgument`] for a `max_edge` of 0, [`Error::NotFound`] for an
    /// unknown or expired ID, [`Error::NotAnImage`] and [`Error::ImageRefused`] for
    /// media the server does not thumbnail. Retried like other reads.
    pub async fn thumbnail(&self, media_id: &str, max_edge: u32) -> Result<Thumbnail, Error> {
        let max_edge = i32::try_from(max_edge).unwrap_or(i32::MAX);
        let response = self
            .retrying(|| async {
                let request = self.request(
                    pb::GetThumbnailRequest {
                        media_id: media_id.to_owned(),
                        max_edge,
                    },
                    true,
                );
                Ok(self.media().get_thumbnail(request).await?.into_inner())
            })
            .await?;
        Ok(Thumbnail {
            content_type: response.content_type,
            width: response.width,
            height: response.height,
            data: response.data,
        })
    }

    /// An image message for an already uploaded `media_id` with the server's
    /// [`MESSAGE_THUMBNAIL_EDGE`] thumbnail filled in, so that receivers can show it
    /// before downloading.
    pub async fn image_message_with_thumbnail(&self, media_id: &str) -> Result<Message, Error> {
        let message = self.image_message_from_media_id(media_id).await?;
        self.fill_thumbnail(message).await
    }

    /// `message` with the server's [`MESSAGE_THUMBNAIL_EDGE`] thumbnail filled in when
    /// it is an image message without one; any other message as it is.
    pub async fn fill_thumbnail(&self, message: Message) -> Result<Message, Error> {
        let Message::Image(mut image) = message else {
            return Ok(message);
        };
        if image.thumbnail.is_empty() {
            let thumb = self
                .thumbnail(&image.media_id, MESSAGE_THUMBNAIL_EDGE)
                .await?;
            image.thumbnail = thumb.data;
            image.thumbnail_width = thumb.width;
            image.thumbnail_height = thumb.height;
        }
        Ok(Message::Image(image))
    }
}
