//! The record of a stored image or file.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::pb;

/// Whether an object was uploaded as an image or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An image: the server reads its width and height.
    Image,
    /// Any other file.
    File,
}

impl MediaKind {
    pub(crate) fn to_proto(self) -> pb::MediaKind {
        match self {
            Self::Image => pb::MediaKind::Image,
            Self::File => pb::MediaKind::File,
        }
    }
}

/// The record of a stored object, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The media ID that messages carry and downloads use.
    pub media_id: String,
    /// Image or file.
    pub kind: MediaKind,
    /// The display file name.
    pub file_name: String,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// The MIME type.
    pub content_type: String,
    /// Width in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0.
    pub width: u32,
    /// Height in pixels for JPEG, PNG, BMP, GIF and WebP images, else 0.
    pub height: u32,
    /// When the upload completed.
    pub created: SystemTime,
    /// When the object expires (NOT_FOUND from then on).
    pub expires: SystemTime,
}

/// A protobuf timestamp as a `SystemTime`; none, or one out of range, is the epoch.
pub(crate) fn system_time(timestamp: Option<prost_types::Timestamp>) -> SystemTime {
    timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(UNIX_EPOCH)
}

impl Media {
    pub(crate) fn from_proto(media: pb::Media) -> Self {
        let kind = match media.kind() {
            pb::MediaKind::Image => MediaKind::Image,
            _ => MediaKind::File,
        };
        let mut sha256 = [0u8; 32];
        if media.sha256.len() == 32 {
            sha256.copy_from_slice(&media.sha256);
        }
        Self {
            media_id: media.media_id,
            kind,
            file_name: media.file_name,
            size: media.size,
            sha256,
            content_type: media.content_type,
            width: media.width,
            height: media.height,
            created: system_time(media.create_time),
            expires: system_time(media.expire_time),
        }
    }

    /// The SHA-256 as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}
