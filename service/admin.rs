//! `courier-server media ...`: the operator's commands on stored media, run directly
//! on the configured storage (the same `--data-dir` and `--storage` as `serve`), with
//! or without servers running: the store is what every replica reads, and nothing
//! caches records or verdicts, so an action holds everywhere at once.
//!
//! Each command prints JSON lines on stdout and logs what it did as a JSON line on
//! stderr (target `courier::admin`), so that every admin action leaves a trace.
//! There is no admin gRPC service: the operator's access to the store is the
//! authority, and user tokens never carry admin rights.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, Subcommand};
use futures::StreamExt;
use object_store::{ObjectStore, local::LocalFileSystem};
use serde_json::json;

use crate::{
    error::Error,
    ids::MediaId,
    media::{
        self, MediaLimits, MediaStore, QuotaLimits, Record, Verdict, VerdictState, now_millis,
    },
    storage::{self, Location},
};

/// The flags of `media`.
#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: MediaAction,

    /// The server's data folder (the media are in `<data-dir>/media` unless --storage
    /// says otherwise).
    #[arg(
        long,
        env = "COURIER_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Where media are stored, as `serve` takes it: a folder path or
    /// `s3://bucket/prefix` (with the usual AWS_* variables).
    #[arg(long, env = "COURIER_STORAGE", global = true)]
    pub storage: Option<String>,
}

/// The admin actions on media.
#[derive(Debug, Clone, Subcommand)]
pub enum MediaAction {
    /// List a user's media, one JSON line each (expired ones included, flagged).
    List {
        /// The owner.
        #[arg(long)]
        user: String,
    },
    /// Delete one media, or every media naming a content; the bytes go at the first
    /// sweep after the content grace.
    Delete(Target),
    /// Quarantine a content: its media can no longer be downloaded, thumbnailed,
    /// fetched or sent, and it cannot be uploaded again, by anyone.
    Quarantine(Target),
    /// Lift a quarantine.
    Release(Target),
}

/// A media ID, or a content by `--sha256`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The media ID (for quarantine and release: its content).
    pub media_id: Option<String>,
    /// The content's SHA-256, 64 hexadecimal digits.
    #[arg(long)]
    pub sha256: Option<String>,
}

/// Runs `args` and prints its output; the error is for the caller to print.
pub async fn run(args: MediaArgs) -> Result<(), Error> {
    let media = open(&args)?;
    match args.action {
        MediaAction::List { user } => list(&media, &user).await,
        MediaAction::Delete(target) => delete(&media, target).await,
        MediaAction::Quarantine(target) => {
            set(&media, target, VerdictState::Quarantined, "quarantined").await
        }
        MediaAction::Release(target) => {
            set(&media, target, VerdictState::Accepted, "released").await
        }
    }
}

/// JSON log lines on stderr, so that stdout holds only the commands' output.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The media library on the configured storage. The limits only matter to uploads
/// and sweeps, which these commands do not run. A local folder is opened as it is:
/// not created, and without the start-up clean-up of `serve`, which would remove
/// the files of uploads a running server has in flight.
fn open(args: &MediaArgs) -> Result<MediaStore, Error> {
    let location = Location::parse(args.storage.as_deref(), &args.data_dir)?;
    let store: Arc<dyn ObjectStore> = match &location {
        Location::Local(dir) if !dir.is_dir() => {
            return Err(Error::invalid(format!(
                "no media folder at {}: give the --data-dir or --storage the server uses",
                dir.display()
            )));
        }
        Location::Local(dir) => Arc::new(LocalFileSystem::new_with_prefix(dir)?),
        Location::S3 { .. } => storage::open(&location)?,
    };
    let limits = MediaLimits {
        max_upload_size: 0,
        ttl: Duration::ZERO,
        idle_timeout: Duration::ZERO,
        part_size: location.part_size(),
        grace: Duration::ZERO,
        quota: QuotaLimits::default(),
    };
    Ok(MediaStore::new(store, limits))
}

async fn list(media: &MediaStore, user: &str) -> Result<(), Error> {
    let now = now_millis();
    let mut quarantined: HashMap<String, bool> = HashMap::new();
    let mut records = Box::pin(media::all_records(media));
    let mut count = 0;
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
        println!("{}", listed(&record, now, held));
        count += 1;
    }
    tracing::info!(target: "courier::admin", action = "list", user, count, "listed a user's media");
    Ok(())
}

/// One line of `media list`.
fn listed(record: &Record, now: u64, quarantined: bool) -> serde_json::Value {
    json!({
        "media_id": record.media_id,
        "owner": record.owner,
        "kind": match record.kind { media::MediaKind::Image => "image", media::MediaKind::File => "file" },
        "file_name": record.file_name,
        "size": record.size,
        "sha256": record.sha256,
        "content_type": record.content_type,
        "width": record.width,
        "height": record.height,
        "created_ms": record.created_ms,
        "expires_ms": record.expires_ms,
        "expired": record.is_expired(now),
        "quarantined": quarantined,
    })
}

async fn delete(media: &MediaStore, target: Target) -> Result<(), Error> {
    if let Some(sha256) = target.sha256 {
        let sha256 = sha256.to_ascii_lowercase();
        let deleted = media::delete_content(media, &sha256).await?;
        let ids: Vec<&str> = deleted.iter().map(|r| r.media_id.as_str()).collect();
        tracing::info!(target: "courier::admin", action = "delete", %sha256, media_ids = ?ids, "deleted every media of a content");
        println!("{}", json!({"sha256": sha256, "deleted": ids}));
        return Ok(());
    }
    let id = media_id(&target)?;
    match media.read_record(&id).await? {
        Some(record) => {
            media::delete_media(media, &record, "admin").await?;
            tracing::info!(target: "courier::admin", action = "delete", media_id = %id, owner = %record.owner, sha256 = %record.sha256, "deleted media");
            println!(
                "{}",
                json!({"media_id": id.as_str(), "owner": record.owner, "sha256": record.sha256, "deleted": true})
            );
            Ok(())
        }
        None if media::tombstone(media, &id).await?.is_some() => {
            tracing::info!(target: "courier::admin", action = "delete", media_id = %id, "media already deleted");
            println!("{}", json!({"media_id": id.as_str(), "deleted": true}));
            Ok(())
        }
        None => Err(Error::NotFound(format!("no media with ID {id}"))),
    }
}

async fn set(
    media: &MediaStore,
    target: Target,
    state: VerdictState,
    done: &str,
) -> Result<(), Error> {
    let (sha256, media_id) = match target.sha256 {
        Some(sha256) => (sha256.to_ascii_lowercase(), None),
        None => {
            let id = media_id(&target)?;
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
        .await
        .map_err(|e| match e {
            Error::Internal(_) => Error::invalid("a SHA-256 is 64 hexadecimal digits"),
            other => other,
        })?;
    tracing::info!(target: "courier::admin", action = done, %sha256, media_id = media_id.as_deref().unwrap_or(""), "set a content's verdict");
    println!(
        "{}",
        json!({"sha256": sha256, "media_id": media_id, "quarantined": state == VerdictState::Quarantined})
    );
    Ok(())
}

fn media_id(target: &Target) -> Result<MediaId, Error> {
    let text = target
        .media_id
        .as_deref()
        .ok_or_else(|| Error::invalid("give a media ID or --sha256"))?;
    MediaId::parse(text)
}
