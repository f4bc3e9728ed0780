//! The admin actions on stored media, shared by `courier-server media ...` and the
//! AdminService: each works on the store (what every replica reads) and logs what it
//! did as a JSON line with target `courier::admin`, saying by which way (`via`).

use std::collections::HashMap;

use futures::StreamExt;

use crate::{
    error::Error,
    ids::MediaId,
    media::{self, MediaStore, Record, Verdict, VerdictState},
};

/// What an action is on: one media, or a content by its SHA-256.
#[derive(Debug, Clone)]
pub enum Target {
    /// One media (for a verdict: its content).
    Media(MediaId),
    /// A content by its SHA-256, 64 hexadecimal digits (any case).
    Content(String),
}

impl Target {
    /// The target of a media ID or a SHA-256, exactly one of them given.
    pub fn of(media_id: Option<&str>, sha256: Option<&str>) -> Result<Self, Error> {
        match (media_id, sha256) {
            (Some(id), None) => Ok(Self::Media(MediaId::parse(id)?)),
            (None, Some(sha256)) => {
                let sha256 = sha256.to_ascii_lowercase();
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::invalid("a SHA-256 is 64 hexadecimal digits"));
                }
                Ok(Self::Content(sha256))
            }
            _ => Err(Error::invalid("give a media ID or a SHA-256, one of them")),
        }
    }
}

/// One media of a listing.
#[derive(Debug)]
pub struct Listed {
    /// The record, expired or not.
    pub record: Record,
    /// Whether its content is quarantined.
    pub quarantined: bool,
}

/// Every media record `user` owns, expired ones included.
pub async fn list(media: &MediaStore, user: &str, via: &str) -> Result<Vec<Listed>, Error> {
    let mut quarantined: HashMap<String, bool> = HashMap::new();
    let mut records = Box::pin(media::all_records(media));
    let mut listed = Vec::new();
    while let Some(record) = records.next().await {
        let record = record?;
        if record.owner != user {
            continue;
        }
        let held = match quarantined.get(&record.sha256) {
            Some(held) => *held,
            None => {
                let held = media
                    .verdict(&record.sha256)
                    .await?
                    .is_some_and(|v| v.state == VerdictState::Quarantined);
                quarantined.insert(record.sha256.clone(), held);
                held
            }
        };
        listed.push(Listed {
            record,
            quarantined: held,
        });
    }
    tracing::info!(target: "courier::admin", action = "list", via, user, count = listed.len(), "listed a user's media");
    Ok(listed)
}

/// What a deletion deleted.
#[derive(Debug)]
pub enum Deleted {
    /// Every media of a content.
    Content {
        /// The content.
        sha256: String,
        /// The media deleted.
        media_ids: Vec<String>,
    },
    /// One media, now.
    Media(Record),
    /// One media that had been deleted before.
    Already(MediaId),
}

/// Deletes one media, or every media of a content; an unknown media ID is NOT_FOUND.
pub async fn delete(media: &MediaStore, target: Target, via: &str) -> Result<Deleted, Error> {
    let id = match target {
        Target::Content(sha256) => {
            let deleted = media::delete_content(media, &sha256).await?;
            let media_ids: Vec<String> = deleted.into_iter().map(|r| r.media_id).collect();
            tracing::info!(target: "courier::admin", action = "delete", via, %sha256, media_ids = ?media_ids, "deleted every media of a content");
            return Ok(Deleted::Content { sha256, media_ids });
        }
        Target::Media(id) => id,
    };
    match media.read_record(&id).await? {
        Some(record) => {
            media::delete_media(media, &record, "admin").await?;
            tracing::info!(target: "courier::admin", action = "delete", via, media_id = %id, owner = %record.owner, sha256 = %record.sha256, "deleted media");
            Ok(Deleted::Media(record))
        }
        None if media::tombstone(media, &id).await?.is_some() => {
            tracing::info!(target: "courier::admin", action = "delete", via, media_id = %id, "media already deleted");
            Ok(Deleted::Already(id))
        }
        None => Err(Error::NotFound(format!("no media with ID {id}"))),
    }
}

/// Sets the verdict of a content (`Quarantined` or `Accepted`, for a release); returns
/// the content's SHA-256.
pub async fn set_verdict(
    media: &MediaStore,
    target: Target,
    state: VerdictState,
    via: &str,
) -> Result<String, Error> {
    let (sha256, media_id) = match target {
        Target::Content(sha256) => (sha256, None),
        Target::Media(id) => {
            let record = media
                .read_record(&id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no media with ID {id}")))?;
            (record.sha256, Some(id.to_string()))
        }
    };
    let note = media_id
        .as_deref()
        .map(|id| format!("by media ID {id}"))
        .unwrap_or_default();
    media
        .set_verdict(&sha256, &Verdict::now(state, "admin", &note))
        .await?;
    let action = match state {
        VerdictState::Quarantined => "quarantined",
        _ => "released",
    };
    tracing::info!(target: "courier::admin", action, via, %sha256, media_id = media_id.as_deref().unwrap_or(""), "set a content's verdict");
    Ok(sha256)
}
