//! Checks a message before it is sent: a body (a text with some text, a raw message
//! with some payload), the 32 KiB limit, and for image and
//! file messages a live media ID (an image's must be an image), a file name held to the
//! upload's rules and a size that agrees with the record, which fills what the sender
//! left empty.

use crate::{
    error::{Error, Reason},
    ids::{self, MediaId},
    media::{MediaKind as Kind, MediaStore, Record},
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
    match &body {
        Body::Text(text) if text.text.is_empty() => {
            return Err(Error::invalid(
                "message.text.text is empty: a text message must hold some text",
            ));
        }
        Body::Raw(raw) if raw.payload.is_empty() => {
            return Err(Error::invalid(
                "message.raw.payload is empty: a raw message must hold some bytes",
            ));
        }
        _ => {}
    }
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
            if record.kind != Kind::Image {
                return Err(Error::invalid(format!(
                    "media {} was uploaded as a file, not an image: send it in a file message",
                    record.media_id
                )));
            }
            image.file_name = file_name("message.image.file_name", image.file_name, &record)?;
            image.size = checked_size("message.image.size", image.size, &record)?;
            if image.width == 0 {
                image.width = record.width;
            }
            if image.height == 0 {
                image.height = record.height;
            }
            Body::Image(image)
        }
        Body::File(mut file) => {
            // A file message may point at any media, images included.
            let record = live_media(media, &file.media_id).await?;
            file.file_name = file_name("message.file.file_name", file.file_name, &record)?;
            file.size = checked_size("message.file.size", file.size, &record)?;
            Body::File(file)
        }
        other => other,
    };
    Ok(pb::Message { body: Some(body) })
}

/// The file name a message carries: the sender's, held to the upload header's rules,
/// or the record's when the sender left it empty.
fn file_name(field: &str, given: String, record: &Record) -> Result<String, Error> {
    if given.is_empty() {
        return Ok(record.file_name.clone());
    }
    ids::validate_file_name(field, &given)?;
    Ok(given)
}

/// The size a message carries: the record's; a size the sender set must agree with it.
fn checked_size(field: &str, given: u64, record: &Record) -> Result<u64, Error> {
    if given != 0 && given != record.size {
        return Err(Error::invalid(format!(
            "{field} is {given} but media {} is {} bytes; leave it 0 to have it filled in",
            record.media_id, record.size
        )));
    }
    Ok(record.size)
}

/// The record of a media ID that a message points at: FAILED_PRECONDITION when it is
/// unknown, expired or deleted (MEDIA_UNAVAILABLE) or its content quarantined
/// (MEDIA_QUARANTINED, from the store).
async fn live_media(media: &MediaStore, id: &str) -> Result<Record, Error> {
    let id = MediaId::parse(id)?;
    match media.get(&id).await {
        Ok(record) => Ok(record),
        Err(Error::NotFound(_)) => Err(Error::Refused(
            Reason::MediaUnavailable,
            format!("media {id} does not exist or has expired; upload it again"),
        )),
        Err(Error::Refused(Reason::MediaDeleted, _)) => Err(Error::Refused(
            Reason::MediaUnavailable,
            format!("media {id} was deleted; upload it again"),
        )),
        Err(e) => Err(e),
    }
}
