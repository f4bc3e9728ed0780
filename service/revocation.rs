//! Token revocation: `courier-server revoke --user alice` makes every token of alice
//! issued before now invalid, while tokens minted afterwards work.
//!
//! A revocation is a user and a time (unix seconds): a token whose `iat` is that second
//! or earlier is refused with UNAUTHENTICATED, and open Subscribe streams opened with such a token
//! end with UNAUTHENTICATED at once. Revocations are kept in `revocations.json` in the
//! data folder (read again within a second of changing, so no restart is needed) and,
//! with several replicas, in the JetStream key-value bucket [`BUCKET`], which every
//! replica watches. Tokens are compared at second resolution, so a token minted in the
//! same second as the revocation is refused too; `revoke` returns only once that
//! second is over, so a token minted after it returns works.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use tokio::sync::watch;

use crate::{
    bus::{Bus, from_token, token, unavailable},
    error::Error,
    ids,
};

/// The file of revocations in the data folder.
pub const FILE: &str = "revocations.json";
/// The JetStream key-value bucket of revocations (key: the user, hex; value: seconds).
pub const BUCKET: &str = "courier_revocations";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The revocations in force. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Revocations {
    /// From the file and the bus: each user's revocation time.
    revoked: Arc<RwLock<HashMap<String, u64>>>,
    /// Bumped on every change, for streams waiting to be ended.
    changed: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            revoked: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Revocations {
    /// Whether a token of `user` issued at `iat` (None: no `iat` claim) is revoked.
    pub fn is_revoked(&self, user: &str, iat: Option<u64>) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        revoked
            .get(user)
            .is_some_and(|at| iat.is_none_or(|iat| iat <= *at))
    }

    /// Completes once a token of `user` issued at `iat` is revoked.
    pub async fn wait_revoked(&self, user: &str, iat: Option<u64>) {
        let mut changed = self.changed.subscribe();
        loop {
            if self.is_revoked(user, iat) {
                return;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Merges `entries` in (the later time wins).
    fn merge(&self, entries: impl IntoIterator<Item = (String, u64)>) {
        let mut any = false;
        {
            let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
            for (user, at) in entries {
                let current = revoked.entry(user).or_insert(0);
                if at > *current {
                    *current = at;
                    any = true;
                }
            }
        }
        if any {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Follows `<data_dir>/revocations.json`, checking it every second.
    pub fn watch_file(&self, data_dir: &Path) -> tokio::task::JoinHandle<()> {
        let path = data_dir.join(FILE);
        let this = self.clone();
        let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if let Ok(entries) = read_file(&path) {
            this.merge(entries);
        }
        tokio::spawn(async move {
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                match read_file(&path) {
                    Ok(entries) => {
                        this.merge(entries);
                        seen = now;
                    }
                    Err(e) => tracing::warn!(error = %e, "reading revocations"),
                }
            }
        })
    }

    /// Follows the bus's bucket of revocations (from its start, then live).
    pub async fn watch_bus(&self, bus: &Bus) -> Result<tokio::task::JoinHandle<()>, Error> {
        let kv = bucket(bus).await?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                match kv.watch_all_from_revision(1).await {
                    Ok(mut entries) => {
                        while let Some(Ok(entry)) = entries.next().await {
                            let at = std::str::from_utf8(&entry.value)
                                .ok()
                                .and_then(|v| v.parse::<u64>().ok());
                            if let (Some(user), Some(at)) = (from_token(&entry.key), at) {
                                this.merge([(user, at)]);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "bus: watching revocations"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }))
    }
}

async fn bucket(bus: &Bus) -> Result<async_nats::jetstream::kv::Store, Error> {
    open_bucket(&bus.js, bus.settings().replicas).await
}

/// The bucket, created (file storage, one value per key) if it is not there yet.
async fn open_bucket(
    js: &async_nats::jetstream::Context,
    replicas: usize,
) -> Result<async_nats::jetstream::kv::Store, Error> {
    if let Ok(kv) = js.get_key_value(BUCKET).await {
        return Ok(kv);
    }
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: BUCKET.into(),
        description: "courier: revoked users' tokens".into(),
        history: 1,
        // A reservation: JetStream refuses streams whose limits exceed its store.
        max_bytes: 16 * 1024 * 1024,
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| unavailable("opening the revocations bucket", e))
}

fn read_file(path: &Path) -> Result<Vec<(String, u64)>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let map: HashMap<String, u64> = serde_json::from_str(&text)
                .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
            Ok(map.into_iter().collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Internal(format!("{}: {e}", path.display()))),
    }
}

/// Revokes `user`'s tokens issued up to now (this whole second included): in the data
/// folder's file, and on the bus when one is given; returns the revocation time once
/// that second is over, so that a token minted from then on is not revoked.
pub async fn revoke(data_dir: &Path, bus_url: Option<&str>, user: &str) -> Result<u64, Error> {
    ids::validate_name("user ID", user)?;
    let at = now_secs();
    let path = data_dir.join(FILE);
    let mut map: HashMap<String, u64> = read_file(&path)?.into_iter().collect();
    map.insert(user.to_owned(), at);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::Internal(format!("{}: {e}", data_dir.display())))?;
    let staged = data_dir.join(format!("{FILE}.tmp"));
    let text = serde_json::to_string_pretty(&map)
        .map_err(|e| Error::Internal(format!("revocations: {e}")))?;
    std::fs::write(&staged, text)
        .and_then(|()| std::fs::rename(&staged, &path))
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    if let Some(url) = bus_url {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| Error::Internal(format!("cannot reach the bus at {url}: {e}")))?;
        let js = async_nats::jetstream::new(client.clone());
        let kv = open_bucket(&js, 1).await?;
        kv.put(token(user), at.to_string().into())
            .await
            .map_err(|e| unavailable("writing a revocation", e))?;
        client
            .flush()
            .await
            .map_err(|e| unavailable("writing a revocation", e))?;
    }
    let next_second = UNIX_EPOCH + Duration::from_secs(at + 1);
    if let Ok(left) = next_second.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    Ok(at)
}
