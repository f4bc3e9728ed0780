//! `courier-server media ...`: the operator's commands on stored media, run directly
//! on the configured storage (the same `--data-dir` and `--storage` as `serve`), with
//! or without servers running: the store is what every replica reads, and nothing
//! caches records or verdicts, so an action holds everywhere at once.
//!
//! Each command prints JSON lines on stdout and logs what it did as a JSON line on
//! stderr (target `courier::admin`), so that every admin action leaves a trace. The
//! same actions (`actions.rs`) are served over gRPC by the AdminService (`grpc.rs`),
//! off by default, on a listener of its own behind a secret of its own; user tokens
//! never carry admin rights.

pub mod actions;
pub mod grpc;

use std::{path::Path, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, Subcommand};
use object_store::{ObjectStore, local::LocalFileSystem};
use serde_json::json;

use crate::{
    error::Error,
    media::{self, MediaLimits, MediaStore, QuotaLimits, Record, VerdictState, now_millis},
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
    let media = open(args.storage.as_deref(), &args.data_dir)?;
    match args.action {
        MediaAction::List { user } => {
            let now = now_millis();
            for listed in actions::list(&media, &user, "cli").await? {
                println!("{}", listed_json(&listed.record, now, listed.quarantined));
            }
            Ok(())
        }
        MediaAction::Delete(target) => delete(&media, &target).await,
        MediaAction::Quarantine(target) => set(&media, &target, VerdictState::Quarantined).await,
        MediaAction::Release(target) => set(&media, &target, VerdictState::Accepted).await,
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
pub fn open(storage: Option<&str>, data_dir: &Path) -> Result<MediaStore, Error> {
    let location = Location::parse(storage, data_dir)?;
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

/// One line of `media list`.
fn listed_json(record: &Record, now: u64, quarantined: bool) -> serde_json::Value {
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

async fn delete(media: &MediaStore, target: &Target) -> Result<(), Error> {
    let line = match actions::delete(media, target.resolve()?, "cli").await? {
        actions::Deleted::Content { sha256, media_ids } => {
            json!({"sha256": sha256, "deleted": media_ids})
        }
        actions::Deleted::Media(record) => json!({
            "media_id": record.media_id,
            "owner": record.owner,
            "sha256": record.sha256,
            "deleted": true,
        }),
        actions::Deleted::Already(id) => json!({"media_id": id.as_str(), "deleted": true}),
    };
    println!("{line}");
    Ok(())
}

async fn set(media: &MediaStore, target: &Target, state: VerdictState) -> Result<(), Error> {
    let sha256 = actions::set_verdict(media, target.resolve()?, state, "cli").await?;
    println!(
        "{}",
        json!({"sha256": sha256, "media_id": target.media_id, "quarantined": state == VerdictState::Quarantined})
    );
    Ok(())
}

impl Target {
    fn resolve(&self) -> Result<actions::Target, Error> {
        actions::Target::of(self.media_id.as_deref(), self.sha256.as_deref())
    }
}
