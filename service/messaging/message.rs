//! Checks a message before it is sent: a body, the 32 KiB limit, and for image and
//! file messages a live media ID, whose record fills what the sender left empty.

use crate::{
    error::{Error, Reason},
    ids::MediaId,
    media::MediaStore,
    pb::{self, message::Body},
};

/// The most bytes of text, file name, thumbnail and raw payload one message may hold.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// The bytes of a message that count towards [`MAX_MESSAGE_BYTES`].
fn counted_bytes(body: &Body) -> usize {
    match body {
        Body::Text(text) => text.text.len(),
        Body::Raw(raw) => raw.payload.len() + raw.description.len(),
        Body::Image(image) => image.file_name.len() + image.thumbnail.len(),
        Body::File(file) => file.file_name.len() + file.thumbnail.len(),
    }
}

/// Validates `message` and completes image and file messages from the media store.
pub async fn prepare(
    media: &MediaStore,
    message: Option<pb::Message>,
) -> Result<pb::Message, Error> {
    let Some(body) = message.and_then(|m| m.body) else {
        return Err(Error::invalid(
            "message must hold a text, raw, image or file body",
        ));
    };
    let size = counted_bytes(&body);
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::Refused(
            Reason::MessageTooLarge,
            format!(
                "the message holds {size} bytes of text, file name, thumbnail and payload; at most {MAX_MESSAGE_BYTES} are allowed"
            ),
        ));
    }
    let body = match body {
        Body::Image(mut image) => {
            let record = live_media(media, &image.media_id).await?;
            if image.file_name.is_empty() {
                image.file_name = record.file_name;
            }
            if image.size == 0 {
                image.size = record.size;
            }
            if image.width == 0 {
                image.width = record.width;
            }
            if image.height == 0 {
                image.height = record.height;
            }
            Body::Image(image)
        }
        Body::File(mut file) => {
            let record = live_media(media, &file.media_id).await?;
            if file.file_name.is_empty() {
                file.file_name = record.file_name;
            }
            if file.size == 0 {
                file.size = record.size;
            }
            Body::File(file)
        }
        other => other,
    };
    Ok(pb::Message { body: Some(body) })
}

/// The record of a media ID that a message points at: FAILED_PRECONDITION when it is
/// unknown or expired.
async fn live_media(media: &MediaStore, id: &str) -> Result<crate::media::Record, Error> {
    let id = MediaId::parse(id)?;
    match media.get(&id).await {
        Ok(record) => Ok(record),
        Err(Error::NotFound(_)) => Err(Error::Refused(
            Reason::MediaUnavailable,
            format!("media {id} does not exist or has expired; upload it again"),
        )),
        Err(e) => Err(e),
    }
}
