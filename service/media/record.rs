//! The record of one stored object, kept as JSON beside its bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{error::Error, pb};

/// What the server knows about one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The media ID (validated before it is stored).
    pub media_id: String,
    /// `image` or `file`.
    pub kind: Kind,
    /// The uploader's display name, never used as a path.
    pub file_name: String,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The content type, given or detected.
    pub content_type: String,
    /// Width in pixels, or 0.
    pub width: u32,
    /// Height in pixels, or 0.
    pub height: u32,
    /// The user who uploaded it.
    pub owner: String,
    /// When the upload completed, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// Where the bytes are: [`LAYOUT_BLOBS`] (records written before content
    /// addressing, which carry no such field) or [`LAYOUT_CONTENT`].
    #[serde(default = "legacy_layout")]
    pub layout: u32,
}

/// Layout 1: the bytes of each media ID under `blobs/<id>`, deleted with the record.
pub const LAYOUT_BLOBS: u32 = 1;

/// Layout 2: the bytes under `content/<sha256>`, shared by every record naming it.
pub const LAYOUT_CONTENT: u32 = 2;

/// The layout of a record that names none: the first.
fn legacy_layout() -> u32 {
    LAYOUT_BLOBS
}

/// Whether an object is an image or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An image.
    Image,
    /// Any other file.
    File,
}

impl Kind {
    /// The kind named by an upload header; UNSPECIFIED and unknown values are refused.
    pub fn from_proto(value: i32) -> Result<Self, Error> {
        match pb::MediaKind::try_from(value) {
            Ok(pb::MediaKind::Image) => Ok(Self::Image),
            Ok(pb::MediaKind::File) => Ok(Self::File),
            _ => Err(Error::invalid(
                "header.kind must be MEDIA_KIND_IMAGE or MEDIA_KIND_FILE",
            )),
        }
    }

    fn to_proto(self) -> pb::MediaKind {
        match self {
            Self::Image => pb::MediaKind::Image,
            Self::File => pb::MediaKind::File,
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A time in milliseconds since the Unix epoch as a protobuf timestamp.
pub fn timestamp(ms: u64) -> prost_types::Timestamp {
    (UNIX_EPOCH + Duration::from_millis(ms)).into()
}

impl Record {
    /// The expiry time for an object created at `created_ms` that lives for `ttl`.
    pub fn expiry(created_ms: u64, ttl: Duration) -> u64 {
        created_ms.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64)
    }

    /// True once the object's time is up.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms
    }

    /// The JSON stored beside the bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
    }

    /// Reads a stored record.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Internal(format!("a corrupt record: {e}")))
    }

    /// The record as the API shows it.
    pub fn to_proto(&self) -> pb::Media {
        pb::Media {
            media_id: self.media_id.clone(),
            kind: self.kind.to_proto().into(),
            file_name: self.file_name.clone(),
            size: self.size,
            sha256: hex::decode(&self.sha256).unwrap_or_default().into(),
            content_type: self.content_type.clone(),
            width: self.width,
            height: self.height,
            create_time: Some(timestamp(self.created_ms)),
            expire_time: Some(timestamp(self.expires_ms)),
        }
    }
}
