//! Per-user transfer slots: at most N uploads and downloads in flight per user, on
//! this server and, with a bus, across every replica (a lease per transfer, see
//! [`crate::bus::limits`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
};

use crate::{
    bus::limits::{Lease, LeaseKind, Leases},
    error::{Error, Reason},
    metrics::METRICS,
};

/// Counts each user's transfers in flight. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TransferSlots {
    /// Transfers in flight per user; a user with none has no entry.
    ///
    /// A std mutex is right here: it is held only to bump a counter, never across an
    /// `.await`, so it cannot block the runtime.
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// The most transfers one user may have in flight.
    max_per_user: usize,
    /// With several replicas: the cluster-wide leases.
    cluster: Option<Leases>,
}

/// A held slot; dropping it frees the slot at once.
#[derive(Debug)]
pub struct SlotGuard {
    /// The slots this guard returns to.
    slots: TransferSlots,
    /// The user whose slot this is.
    user: String,
    /// The cluster-wide lease, with several replicas; released when dropped.
    _lease: Option<Lease>,
}

impl TransferSlots {
    /// Slots allowing `max_per_user` transfers per user.
    pub fn new(max_per_user: usize) -> Self {
        Self {
            counts: Arc::default(),
            max_per_user,
            cluster: None,
        }
    }

    /// The same limit held across every replica sharing `leases`' bus.
    pub fn cluster_wide(mut self, leases: Leases) -> Self {
        self.cluster = Some(leases);
        self
    }

    /// Takes a slot for `user`, or fails with RESOURCE_EXHAUSTED when all are in use
    /// (on any replica, with a bus).
    pub async fn acquire(&self, user: &str) -> Result<SlotGuard, Error> {
        self.acquire_as(user, None).await
    }

    /// Takes a slot for `user` for the transfer named `name` (a resumable upload's
    /// ID): with a bus, every replica holding a slot for the same name holds the same
    /// cluster-wide lease, so the transfer counts once however many replicas it
    /// passes through.
    pub async fn acquire_named(&self, user: &str, name: &str) -> Result<SlotGuard, Error> {
        self.acquire_as(user, Some(name)).await
    }

    async fn acquire_as(&self, user: &str, name: Option<&str>) -> Result<SlotGuard, Error> {
        let mut guard = self.acquire_here(user)?;
        if let Some(leases) = &self.cluster {
            let lease = match name {
                Some(name) => {
                    leases
                        .acquire_named(LeaseKind::Transfer, user, name, self.max_per_user)
                        .await?
                }
                None => {
                    leases
                        .acquire(LeaseKind::Transfer, user, self.max_per_user)
                        .await?
                }
            };
            match lease {
                Some(lease) => guard._lease = Some(lease),
                None => {
                    METRICS.transfers_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(self.too_many());
                }
            }
        }
        Ok(guard)
    }

    fn too_many(&self) -> Error {
        Error::Refused(
            Reason::TooManyTransfers,
            format!(
                "too many transfers in flight: at most {} uploads and downloads per user at once",
                self.max_per_user
            ),
        )
    }

    /// Takes a slot for `user` on this server.
    fn acquire_here(&self, user: &str) -> Result<SlotGuard, Error> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = counts.entry(user.to_owned()).or_insert(0);
        if *count >= self.max_per_user {
            METRICS.transfers_refused.fetch_add(1, Ordering::Relaxed);
            return Err(self.too_many());
        }
        *count += 1;
        METRICS.transfers_in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(SlotGuard {
            slots: self.clone(),
            user: user.to_owned(),
            _lease: None,
        })
    }

    /// How many transfers are in flight over all users.
    pub fn total(&self) -> usize {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        counts.values().sum()
    }

    /// How many transfers `user` has in flight.
    pub fn in_flight(&self, user: &str) -> usize {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        counts.get(user).copied().unwrap_or(0)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut counts = self
            .slots
            .counts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
        METRICS.transfers_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_user_and_frees_on_drop() {
        let slots = TransferSlots::new(2);
        let a = slots.acquire_here("alice");
        let b = slots.acquire_here("alice");
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(
            slots.acquire_here("alice"),
            Err(Error::Refused(Reason::TooManyTransfers, _))
        ));
        assert!(slots.acquire_here("bob").is_ok());
        drop(a);
        assert_eq!(slots.in_flight("alice"), 1);
        assert!(slots.acquire_here("alice").is_ok());
    }
}
