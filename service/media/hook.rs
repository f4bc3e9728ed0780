//! The upload hook (`--upload-hook`): the operator's scanner or moderation service,
//! asked about each new content after its bytes are stored in `uploads/<id>` and
//! before its record is written, so that no media ID is usable before the verdict.
//!
//! The request is a signed JSON POST ([`crate::hooks::Hook`]) carrying the record
//! to be and a short-lived link to the staged bytes (`/media/v1/staged/<id>`, see
//! `http/staged.rs`). The answer is `{"verdict": "accept" | "reject" | "quarantine",
//! "message": ".."}` with a 2xx status; anything else, a timeout or no answer is a
//! failure, which `--upload-hook-failure` turns into a refusal (closed, the default)
//! or an acceptance (open).
//!
//! The verdict belongs to the content (see `verdict.rs`): `accept` and `quarantine`
//! are stored as the content's verdict, so the same bytes are never sent again; a
//! quarantined content stays so for whoever uploads it. `reject` stores nothing:
//! nothing of the upload is kept, and the same bytes uploaded again are asked again.
//! An acceptance by a failing hook (open mode) stores nothing either.
//!
//! Only uploads (UploadMedia, CommitUpload) pass the hook. Thumbnails are derived
//! from content that passed it; raw payloads carried inside messages never do.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, stream::BoxStream};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::{MediaStore, Record, verdict};
use crate::{
    error::{Error, Reason},
    hooks::{Hook, HookError},
    ids::MediaId,
    link::LinkKey,
    metrics,
};

/// The longest message of a hook shown to an uploader, in characters.
pub const MAX_MESSAGE: usize = 200;

/// How much longer than the hook's timeout a link to staged bytes lives.
const LINK_MARGIN: Duration = Duration::from_secs(60);

/// The name verdicts written by the hook are signed with (`by`).
const HOOK_NAME: &str = "upload-hook";

/// What a hook that fails or times out means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFailure {
    /// The upload is refused with UNAVAILABLE and nothing is kept.
    Closed,
    /// The upload is accepted (logged and counted), and no verdict is stored.
    Open,
}

/// The configured upload hook.
#[derive(Debug)]
pub struct UploadHook {
    /// The client: signing, no redirects, TLS verified, answers capped.
    hook: Hook,
    /// What a failure means.
    failure: HookFailure,
    /// Signs the links to staged bytes.
    key: LinkKey,
    /// The base the links start with (`http(s)://host:port`), reachable by the hook.
    base: String,
    /// How long a link lives: the hook's timeout and a margin.
    link_life: Duration,
}

impl UploadHook {
    /// The hook `hook` (with its timeout `timeout`), failing `failure`, fetching
    /// staged bytes through links signed by `key` under `base`.
    pub fn new(
        hook: Hook,
        timeout: Duration,
        failure: HookFailure,
        key: LinkKey,
        base: &str,
    ) -> Self {
        Self {
            hook,
            failure,
            key,
            base: base.trim_end_matches('/').to_owned(),
            link_life: timeout + LINK_MARGIN,
        }
    }
}

/// The JSON body posted to the hook.
#[derive(Debug, Serialize)]
struct Request<'a> {
    /// Always `media.upload`.
    r#type: &'static str,
    /// The media ID the upload will have (not usable before the verdict).
    media_id: &'a str,
    /// The uploader.
    owner: &'a str,
    /// The file name given.
    file_name: &'a str,
    /// `image` or `file`.
    kind: &'static str,
    /// Bytes.
    size: u64,
    /// The MIME type given or detected.
    content_type: &'a str,
    /// The SHA-256 of the bytes, hex.
    sha256: &'a str,
    /// Image dimensions when detected, else 0.
    width: u32,
    /// Image dimensions when detected, else 0.
    height: u32,
    /// A GET of this URL returns the bytes, until `fetch_expires`.
    fetch_url: String,
    /// When `fetch_url` stops working, in seconds since the Unix epoch.
    fetch_expires: u64,
}

/// The JSON a hook answers.
#[derive(Debug, Deserialize)]
struct Answer {
    /// `accept`, `reject` or `quarantine`.
    verdict: String,
    /// For the uploader (reject) or the operator (quarantine).
    #[serde(default)]
    message: String,
}

/// What the hook decided about an upload that may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Judged {
    /// Publish as usual.
    Accept,
    /// Publish, with the content quarantined (its verdict is stored already): the
    /// upload then answers MEDIA_QUARANTINED.
    Quarantine,
}

/// Asks the hook about `record`, whose bytes are staged under `id`: the content's
/// stored verdict when it has one (no call), else the hook's. A rejection, or a
/// failure in closed mode, is an error, and the caller keeps nothing.
pub(super) async fn judge(
    media: &MediaStore,
    id: &MediaId,
    record: &Record,
) -> Result<Judged, Error> {
    let Some(hook) = media.upload_hook() else {
        return Ok(Judged::Accept);
    };
    match verdict::read(media, &record.sha256).await? {
        Some(v) if v.state == verdict::VerdictState::Accepted => return Ok(Judged::Accept),
        Some(_) => {
            return Err(verdict::check_upload(media, &record.sha256)
                .await
                .err()
                .unwrap_or_else(|| Error::Internal("a verdict changed under an upload".into())));
        }
        None => {}
    }
    let started = Instant::now();
    let answer = ask(hook, id, record).await;
    let took = started.elapsed();
    match answer {
        Ok(answer) => decide(media, record, answer, took).await,
        Err(reason) => match hook.failure {
            HookFailure::Open => {
                metrics::upload_hook_call("failed_open", took);
                tracing::warn!(media_id = %id, %reason, "the upload hook failed; accepting the upload (--upload-hook-failure open)");
                Ok(Judged::Accept)
            }
            HookFailure::Closed => {
                metrics::upload_hook_call("failed_closed", took);
                tracing::warn!(media_id = %id, %reason, "the upload hook failed; refusing the upload (--upload-hook-failure closed)");
                Err(Error::Unavailable(
                    "the operator's upload scanner did not answer, and uploads wait for its verdict: the upload was refused and nothing was kept; try again later"
                        .into(),
                ))
            }
        },
    }
}

/// Acts on a verdict.
async fn decide(
    media: &MediaStore,
    record: &Record,
    answer: Answer,
    took: Duration,
) -> Result<Judged, Error> {
    let message = shown(&answer.message);
    match answer.verdict.as_str() {
        "accept" => {
            metrics::upload_hook_call("accept", took);
            let accepted = verdict::Verdict::now(verdict::VerdictState::Accepted, HOOK_NAME, "");
            media.set_verdict(&record.sha256, &accepted).await?;
            Ok(Judged::Accept)
        }
        "quarantine" => {
            metrics::upload_hook_call("quarantine", took);
            let held =
                verdict::Verdict::now(verdict::VerdictState::Quarantined, HOOK_NAME, &message);
            media.set_verdict(&record.sha256, &held).await?;
            Ok(Judged::Quarantine)
        }
        "reject" => {
            metrics::upload_hook_call("reject", took);
            tracing::info!(media_id = %record.media_id, owner = %record.owner, %message, "the upload hook rejected an upload");
            Err(Error::Refused(
                Reason::MediaRejected,
                if message.is_empty() {
                    "the operator's upload hook rejected this file; nothing was kept".into()
                } else {
                    message
                },
            ))
        }
        // Unreachable: `ask` only passes the three verdicts.
        other => Err(Error::Internal(format!("an upload hook verdict `{other}`"))),
    }
}

/// Posts the request and reads a verdict; the error says why there is none.
async fn ask(hook: &UploadHook, id: &MediaId, record: &Record) -> Result<Answer, String> {
    let expires = now_secs() + hook.link_life.as_secs();
    let body = Request {
        r#type: "media.upload",
        media_id: &record.media_id,
        owner: &record.owner,
        file_name: &record.file_name,
        kind: match record.kind {
            super::MediaKind::Image => "image",
            super::MediaKind::File => "file",
        },
        size: record.size,
        content_type: &record.content_type,
        sha256: &record.sha256,
        width: record.width,
        height: record.height,
        fetch_url: format!(
            "{}{}{id}?{}",
            hook.base,
            crate::link::STAGED_PREFIX,
            hook.key.staged_query(id, expires)
        ),
        fetch_expires: expires,
    };
    let json = serde_json::to_vec(&body).map_err(|e| format!("encoding the request: {e}"))?;
    let answer = hook
        .hook
        .post(&format!("upload_{id}"), json)
        .await
        .map_err(|e: HookError| e.to_string())?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("the hook answered HTTP {}", answer.status));
    }
    let parsed: Answer = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("the hook's answer is not a verdict: {e}"))?;
    if !matches!(parsed.verdict.as_str(), "accept" | "reject" | "quarantine") {
        return Err(format!(
            "the hook answered an unknown verdict `{}`",
            shown(&parsed.verdict)
        ));
    }
    Ok(parsed)
}

/// Whether a header-only re-upload of content `sha256` may reuse it: always without
/// a hook; with one, only when the content has a verdict (a quarantine is refused
/// earlier), so content stored before the hook was configured is sent again in full
/// and judged.
pub(super) async fn may_reuse(media: &MediaStore, sha256: &str) -> Result<bool, Error> {
    if media.upload_hook().is_none() {
        return Ok(true);
    }
    Ok(verdict::read(media, sha256).await?.is_some())
}

/// Whether a failed publish ends a resumable upload (its state removed, nothing
/// kept): a quarantine, a rejection, or no verdict from a failing hook.
pub(super) fn ends_upload(e: &Error) -> bool {
    matches!(
        e,
        Error::Refused(Reason::MediaQuarantined | Reason::MediaRejected, _)
            | Error::RefusedWith(Reason::MediaQuarantined, ..)
            | Error::Unavailable(_)
    )
}

/// The refusal of an upload quarantined by the hook; its record is kept.
pub(super) fn quarantined(record: &Record) -> Error {
    Error::RefusedWith(
        Reason::MediaQuarantined,
        format!(
            "media {} was stored but quarantined by the operator's upload hook: it cannot be downloaded or sent until an admin releases it",
            record.media_id
        ),
        [("media_id".to_owned(), record.media_id.clone())].into(),
    )
}

/// A hook's message as an uploader may see it: control characters dropped, cut to
/// [`MAX_MESSAGE`] characters.
fn shown(message: &str) -> String {
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The bytes staged under `id` and their size, for the hook's link; NOT_FOUND once
/// published or removed.
pub async fn open_staged(
    media: &MediaStore,
    id: &MediaId,
) -> Result<(u64, BoxStream<'static, Result<bytes::Bytes, Error>>), Error> {
    match media
        .object_store()
        .get(&MediaStore::staging_path(id))
        .await
    {
        Ok(result) => {
            let size = result.meta.size;
            Ok((
                size,
                result.into_stream().map(|c| c.map_err(Error::from)).boxed(),
            ))
        }
        Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound(
            "no upload is waiting for a verdict there".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_and_cleaned() {
        let long = "x".repeat(500);
        assert_eq!(shown(&long).chars().count(), MAX_MESSAGE);
        assert_eq!(shown("bad\nfile\u{7}"), "badfile");
        let wide = "é".repeat(300);
        assert_eq!(shown(&wide).chars().count(), MAX_MESSAGE);
    }
}
