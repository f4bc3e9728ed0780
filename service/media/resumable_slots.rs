//! The transfer slots that open resumable uploads hold on this replica, from
//! CreateUpload (or, after a restart or a move from another replica, from the next call
//! that touches the upload) until commit, cancel or idle expiry, and the reaper that
//! gives them back.
//!
//! The store is the truth about an upload; this map only says which slots this process
//! holds. Every few seconds the reaper reads the state of each held upload: one that is
//! gone or committed (perhaps through another replica) gives its slot back; one idle
//! here for the TTL gives it back too, and is removed when the store says it is idle
//! everywhere.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use tokio::sync::Mutex as AsyncMutex;

use super::{MediaStore, SlotGuard, TransferSlots, resumable};
use crate::{error::Error, ids::MediaId};

/// One upload's hold on a slot.
struct Held {
    /// The slot; dropping it frees it.
    _slot: SlotGuard,
    /// Whose upload it is (checked against the store when the slot was taken).
    owner: String,
    /// When a call last touched the upload on this replica.
    touched: Instant,
    /// Serialises this replica's calls on the upload, so that two writes of one part
    /// cannot interleave their part data and part record.
    turn: Arc<AsyncMutex<()>>,
}

/// The slots held by open resumable uploads. Cheap to clone.
#[derive(Clone)]
pub(super) struct HeldUploads {
    /// Held slots by upload ID. An async mutex, held across taking a slot, so that
    /// two calls on one upload never take two (with a bus, dropping the spare would
    /// release the lease they share).
    held: Arc<AsyncMutex<HashMap<String, Held>>>,
    /// Where slots come from.
    slots: TransferSlots,
}

impl std::fmt::Debug for HeldUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldUploads").finish_non_exhaustive()
    }
}

impl HeldUploads {
    /// Slots taken from `slots`; a reaper checks them against `media` until this (and
    /// every clone) is dropped.
    pub(super) fn new(slots: TransferSlots, media: MediaStore) -> Self {
        let this = Self {
            held: Arc::default(),
            slots,
        };
        let ttl = media.resumable.ttl;
        let every = (ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
        tokio::spawn(reap(Arc::downgrade(&this.held), media, every));
        this
    }

    /// Makes sure this replica holds a slot of `owner` for upload `id` (taking one if
    /// not: TOO_MANY_TRANSFERS when all are in use), marks it touched, and returns the
    /// upload's turn lock.
    pub(super) async fn hold(
        &self,
        id: &MediaId,
        owner: &str,
    ) -> Result<Arc<AsyncMutex<()>>, Error> {
        let mut held = self.held.lock().await;
        if let Some(entry) = held.get_mut(id.as_str()) {
            entry.touched = Instant::now();
            return Ok(entry.turn.clone());
        }
        let slot = self.slots.acquire_named(owner, id.as_str()).await?;
        let turn: Arc<AsyncMutex<()>> = Arc::default();
        held.insert(
            id.to_string(),
            Held {
                _slot: slot,
                owner: owner.to_owned(),
                touched: Instant::now(),
                turn: turn.clone(),
            },
        );
        Ok(turn)
    }

    /// When this replica holds the slot of upload `id` for `owner`: marks it touched
    /// and returns its turn lock, with no need to read the upload's state first.
    pub(super) async fn held_by(&self, id: &MediaId, owner: &str) -> Option<Arc<AsyncMutex<()>>> {
        let mut held = self.held.lock().await;
        let entry = held.get_mut(id.as_str()).filter(|h| h.owner == owner)?;
        entry.touched = Instant::now();
        Some(entry.turn.clone())
    }

    /// The turn lock of upload `id` when this replica holds its slot.
    pub(super) async fn turn(&self, id: &MediaId) -> Option<Arc<AsyncMutex<()>>> {
        self.held
            .lock()
            .await
            .get(id.as_str())
            .map(|h| h.turn.clone())
    }

    /// Gives the slot of upload `id` back (committed, cancelled or expired).
    pub(super) async fn release(&self, id: &MediaId) {
        self.held.lock().await.remove(id.as_str());
    }
}

/// Every `every`, checks each held upload against the store; stops once the map is
/// gone.
async fn reap(held: Weak<AsyncMutex<HashMap<String, Held>>>, media: MediaStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(map) = held.upgrade() else { return };
        let ids: Vec<(String, Instant)> = {
            let map = map.lock().await;
            map.iter()
                // An upload whose turn is taken is in use (being created, say).
                .filter(|(_, h)| h.turn.try_lock().is_ok())
                .map(|(id, h)| (id.clone(), h.touched))
                .collect()
        };
        drop(map);
        for (id, touched) in ids {
            let Ok(parsed) = MediaId::parse(&id) else {
                continue;
            };
            let idle_here = touched.elapsed() >= media.resumable.ttl;
            let keep = match resumable::still_open(&media, &parsed).await {
                Ok(open) => open && !idle_here,
                Err(e) => {
                    tracing::warn!(error = %e, upload_id = %id, "checking a resumable upload");
                    true
                }
            };
            if !keep && let Some(map) = held.upgrade() {
                let mut map = map.lock().await;
                // A call that touched it since the check keeps it.
                if map
                    .get(&id)
                    .is_some_and(|h| h.touched == touched && h.turn.try_lock().is_ok())
                {
                    map.remove(&id);
                    tracing::info!(upload_id = %id, "a resumable upload gave its transfer slot back");
                }
            }
        }
    }
}
