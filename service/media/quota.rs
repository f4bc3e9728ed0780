//! Storage quotas per user: the bytes of live media (`--quota-bytes`) and the bytes
//! uploaded in the last hour (`--quota-bytes-per-hour`), both off by default.
//!
//! The accounting lives in the object store, beside the media, so every replica sees
//! the same: while a quota is set, each finished upload (a header-only re-upload
//! included) writes an empty key `usage/<sha256(owner)>/<created>-<expires>-<size>-<id>`
//! (milliseconds, bytes). An upload's header is checked against a listing of the
//! owner's keys: live bytes are the sizes of keys not yet expired, the hour's bytes
//! those created in the last hour. Over either, the upload is refused at the header,
//! before any byte is stored, with RESOURCE_EXHAUSTED and reason QUOTA_EXCEEDED whose
//! metadata names the quota, its limit and the use. Expiry frees quota at once (an
//! expired key no longer counts); the sweeper deletes the key with the record.
//!
//! Exactness: an upload holds its declared bytes from its admission. Before its
//! header is checked it writes a hold, a key of the same form whose name ends in
//! `.hold` (a streaming upload; it counts for at most an hour should its server die)
//! or `.upload` (a resumable one, named by its upload ID; it counts until the upload
//! is committed, cancelled or swept). The check then lists the owner's keys, its own
//! hold among them. Of two uploads racing for the last bytes, the one that lists second
//! sees the other's hold, so live bytes never pass the quota, on one server or across
//! replicas sharing a store. When only other uploads' holds put it over, an upload
//! takes its hold back and tries again a few times before it is refused; the refusal
//! says how much is held. A finished upload writes its usage key and then deletes its
//! hold; a failed or cancelled one deletes its hold. Uploads made while no quota was
//! set are not counted.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use rand::Rng;

use super::{MediaStore, Record, ignore_not_found, owner_key, record::now_millis};
use crate::{
    error::{Error, Reason},
    ids::MediaId,
};

/// One hour in milliseconds.
const HOUR_MS: u64 = 3_600_000;

/// How long the hold of a streaming upload counts if its server dies before it ends.
const STREAM_HOLD_MS: u64 = HOUR_MS;

/// How many times an upload that only other uploads' holds put over the quota tries.
const HOLD_TRIES: u32 = 4;

/// The name ending of a streaming upload's hold.
const STREAM_HOLD: &str = ".hold";

/// The name ending of a resumable upload's hold.
const UPLOAD_HOLD: &str = ".upload";

/// The quotas; `None` is off.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaLimits {
    /// The most bytes of live media one user may hold.
    pub live_bytes: Option<u64>,
    /// The most bytes one user may upload in any hour.
    pub bytes_per_hour: Option<u64>,
}

impl QuotaLimits {
    fn enabled(&self) -> bool {
        self.live_bytes.is_some() || self.bytes_per_hour.is_some()
    }
}

fn owner_prefix(owner: &str) -> Path {
    Path::from(format!("usage/{}", owner_key(owner)))
}

fn usage_path(record: &Record) -> Path {
    let prefix = owner_prefix(&record.owner);
    Path::from(format!(
        "{prefix}/{}-{}-{}-{}",
        record.created_ms, record.expires_ms, record.size, record.media_id
    ))
}

/// One key under `usage/<owner>/`: `<created>-<expires>-<size>-<rest>`.
struct UsageKey<'a> {
    created: u64,
    expires: u64,
    size: u64,
    rest: &'a str,
}

fn parse_key(name: &str) -> Option<UsageKey<'_>> {
    let mut fields = name.splitn(4, '-');
    let mut number = || fields.next()?.parse::<u64>().ok();
    let (created, expires, size) = (number()?, number()?, number()?);
    Some(UsageKey {
        created,
        expires,
        size,
        rest: fields.next().unwrap_or(""),
    })
}

/// An owner's use at one listing.
#[derive(Debug, Default)]
struct Usage {
    /// Bytes of media not yet expired, holds included.
    live: u64,
    /// Bytes uploaded (or held) in the last hour.
    hour: u64,
    /// Of those, the bytes of other uploads' holds (live, in the hour).
    held: (u64, u64),
}

/// `owner`'s use now, `own` (a hold's path) counted as the others.
async fn usage(media: &MediaStore, owner: &str, own: Option<&Path>) -> Result<Usage, Error> {
    let now = now_millis();
    let mut listing = media.object_store().list(Some(&owner_prefix(owner)));
    let mut usage = Usage::default();
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let Some(key) = meta.location.filename().and_then(parse_key) else {
            continue;
        };
        let hold = key.rest.ends_with(STREAM_HOLD) || key.rest.ends_with(UPLOAD_HOLD);
        let other_hold = hold && Some(&meta.location) != own;
        if key.expires > now {
            usage.live += key.size;
            if other_hold {
                usage.held.0 += key.size;
            }
        }
        if key.created + HOUR_MS > now {
            usage.hour += key.size;
            if other_hold {
                usage.held.1 += key.size;
            }
        }
    }
    Ok(usage)
}

/// The bytes an upload holds from its admission until it is counted or released:
/// see the module's comment. Without quotas it holds nothing.
#[derive(Debug)]
#[must_use = "a hold is counted or released"]
pub(super) struct Hold {
    /// The hold's key and its store; `None` once counted, released or kept, or
    /// without quotas.
    held: Option<(Path, Arc<dyn ObjectStore>)>,
}

/// A call cancelled part-way (its client went away, so its future is dropped) gives
/// its hold back in the background.
impl Drop for Hold {
    fn drop(&mut self) {
        if let Some((path, store)) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = ignore_not_found(store.delete(&path).await) {
                    tracing::warn!(error = %e, hold = %path, "releasing the quota hold of a cancelled upload");
                }
            });
        }
    }
}

impl Hold {
    /// Admits a streaming upload of `size` bytes by `owner` as media `id`, or refuses
    /// it with QUOTA_EXCEEDED.
    pub(super) async fn streaming(
        media: &MediaStore,
        owner: &str,
        id: &MediaId,
        size: u64,
    ) -> Result<Hold, Error> {
        let now = now_millis();
        let name = format!("{now}-{}-{size}-{id}{STREAM_HOLD}", now + STREAM_HOLD_MS);
        take(media, owner, name, size).await
    }

    /// Admits resumable upload `upload_id` of `size` bytes by `owner`, created at
    /// `created_ms`, or refuses it with QUOTA_EXCEEDED.
    pub(super) async fn resumable(
        media: &MediaStore,
        owner: &str,
        upload_id: &MediaId,
        created_ms: u64,
        size: u64,
    ) -> Result<Hold, Error> {
        take(
            media,
            owner,
            resumable_name(upload_id, created_ms, size),
            size,
        )
        .await
    }

    /// The hold that resumable upload `upload_id` took when it was created.
    pub(super) fn of_resumable(
        media: &MediaStore,
        owner: &str,
        upload_id: &MediaId,
        created_ms: u64,
        size: u64,
    ) -> Hold {
        let name = resumable_name(upload_id, created_ms, size);
        Hold {
            held: media
                .limits()
                .quota
                .enabled()
                .then(|| (hold_path(owner, &name), media.object_store().clone())),
        }
    }

    /// Leaves the hold in the store: a resumable upload's, which its state names
    /// from its creation on (see [`Hold::of_resumable`]).
    pub(super) fn keep(mut self) {
        self.held = None;
    }

    /// Gives the held bytes back (the upload failed or was cancelled).
    pub(super) async fn release(mut self) {
        if let Some((path, store)) = self.held.take()
            && let Err(e) = ignore_not_found(store.delete(&path).await)
        {
            // Left behind, it is swept: a streaming hold after its hour, a resumable
            // one once its upload is gone.
            tracing::warn!(error = %e, hold = %path, "releasing a quota hold");
        }
    }

    /// Counts the stored upload `record` against its owner's quotas, then releases
    /// the hold. The upload has succeeded whatever happens here: a failure is
    /// logged, and the upload goes uncounted.
    pub(super) async fn count(self, media: &MediaStore, record: &Record) {
        counted(media, record).await;
        self.release().await;
    }
}

fn hold_path(owner: &str, name: &str) -> Path {
    Path::from(format!("{}/{name}", owner_prefix(owner)))
}

fn resumable_name(upload_id: &MediaId, created_ms: u64, size: u64) -> String {
    format!("{created_ms}-{}-{size}-{upload_id}{UPLOAD_HOLD}", u64::MAX)
}

/// Writes the hold `name` of `owner`, then checks the owner's use with it; see
/// [`Hold`].
async fn take(media: &MediaStore, owner: &str, name: String, size: u64) -> Result<Hold, Error> {
    let limits = media.limits().quota;
    if !limits.enabled() {
        return Ok(Hold { held: None });
    }
    let path = hold_path(owner, &name);
    let store = media.object_store();
    let mut tries = 0;
    loop {
        tries += 1;
        store.put(&path, PutPayload::new()).await?;
        // From here a cancelled call drops it, and so releases the hold.
        let hold = Hold {
            held: Some((path.clone(), store.clone())),
        };
        let usage = match usage(media, owner, Some(&path)).await {
            Ok(usage) => usage,
            Err(e) => {
                hold.release().await;
                return Err(e);
            }
        };
        let Some(refusal) = over(limits, &usage, size) else {
            return Ok(hold);
        };
        hold.release().await;
        let without_holds = Usage {
            live: usage.live - usage.held.0,
            hour: usage.hour - usage.held.1,
            held: (0, 0),
        };
        if tries >= HOLD_TRIES || over(limits, &without_holds, size).is_some() {
            return Err(refusal);
        }
        // Only uploads in progress put it over: one of them may fail, or two racing
        // uploads may each have seen the other. Apart by a random few milliseconds,
        // one of them then goes first.
        let pause = rand::rng().random_range(5..40u64 << tries);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// The refusal of an upload of `size` bytes whose hold is counted in `usage` when it
/// passes a quota of `limits`.
fn over(limits: QuotaLimits, usage: &Usage, size: u64) -> Option<Error> {
    let refusal = |name: &str, limit: u64, with: u64, held: u64, what: &str| {
        let used = with - size;
        let metadata = BTreeMap::from([
            ("quota".to_owned(), name.to_owned()),
            ("limit".to_owned(), limit.to_string()),
            ("used".to_owned(), used.to_string()),
            ("held".to_owned(), held.to_string()),
            ("requested".to_owned(), size.to_string()),
        ]);
        let held_text = if held > 0 {
            format!(" ({held} of them held by uploads in progress)")
        } else {
            String::new()
        };
        Error::RefusedWith(
            Reason::QuotaExceeded,
            format!(
                "over the storage quota: {used} of {limit} bytes {what} are used{held_text} and this upload declares {size} more; nothing was stored"
            ),
            metadata,
        )
    };
    if let Some(limit) = limits.live_bytes
        && usage.live > limit
    {
        return Some(refusal(
            "live_bytes",
            limit,
            usage.live,
            usage.held.0,
            "of live media",
        ));
    }
    if let Some(limit) = limits.bytes_per_hour
        && usage.hour > limit
    {
        return Some(refusal(
            "bytes_per_hour",
            limit,
            usage.hour,
            usage.held.1,
            "uploaded in the last hour",
        ));
    }
    None
}

/// Deletes the holds nothing will end: a streaming upload's past its hour, and a
/// resumable upload's created before `cutoff` whose upload is not in `open` (the
/// upload IDs of the resumable uploads listed after it). Returns how many went.
pub(super) async fn sweep_holds(
    media: &MediaStore,
    open: &HashSet<String>,
    cutoff: u64,
) -> Result<usize, Error> {
    if !media.limits().quota.enabled() {
        return Ok(0);
    }
    let now = now_millis();
    let keys: Vec<object_store::ObjectMeta> = media
        .object_store()
        .list(Some(&Path::from("usage")))
        .try_collect()
        .await?;
    let mut removed = 0;
    for meta in keys {
        let Some(key) = meta.location.filename().and_then(parse_key) else {
            continue;
        };
        let stale = if key.rest.ends_with(STREAM_HOLD) {
            key.expires <= now
        } else if let Some(upload_id) = key.rest.strip_suffix(UPLOAD_HOLD) {
            key.created < cutoff && !open.contains(upload_id)
        } else {
            false
        };
        if stale {
            ignore_not_found(media.object_store().delete(&meta.location).await)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Counts a finished upload against its owner's quotas (when quotas are on).
pub(super) async fn count(media: &MediaStore, record: &Record) -> Result<(), Error> {
    if !media.limits().quota.enabled() {
        return Ok(());
    }
    media
        .object_store()
        .put(&usage_path(record), PutPayload::new())
        .await?;
    Ok(())
}

/// Forgets an expired upload (the sweeper deletes its record).
pub(super) async fn forget(media: &MediaStore, record: &Record) -> Result<(), Error> {
    ignore_not_found(media.object_store().delete(&usage_path(record)).await)
}

/// Counts a stored upload against its owner's quotas. The upload has succeeded
/// whatever happens here: a failure is logged, and the upload goes uncounted.
pub(super) async fn counted(media: &MediaStore, record: &Record) {
    if let Err(e) = count(media, record).await {
        tracing::warn!(error = %e, media_id = %record.media_id, "counting an upload against its owner's quota");
    }
}
