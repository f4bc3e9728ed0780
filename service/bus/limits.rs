//! Limits that hold across replicas: leases counted in JetStream for transfers and
//! Subscribe streams, and the sliding-window rate limit.
//!
//! **Leases.** A held transfer or stream is a message on its own subject,
//! `courier.lease.<kind>.<user>.<lease>`, in a memory-backed stream whose messages
//! live [`BusSettings::lease_ttl`](super::BusSettings::lease_ttl): the replica that
//! holds it publishes it again every third of that, and purges it when the transfer
//! or stream ends. Taking one is publish-then-count: the new lease is published, the
//! user's leases are counted, and if the count is over the limit the new one is purged
//! and the request refused. So the limit is never exceeded, even by replicas racing;
//! two requests racing for the last slot may both be refused (the client retries). A
//! replica that dies leaves its leases to expire within the TTL.
//!
//! **Rate.** Each message is a publish to `courier.rate.<user>` in a memory-backed
//! stream ([`RATE`](super::RATE)) keeping at most `limit` messages per subject for `window`, with
//! "discard new per subject": the JetStream server itself refuses the (limit+1)th
//! message inside the window, exactly, whichever replica sends it.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::TryStreamExt;
use rand::RngCore;

use super::{Bus, LEASES, token, unavailable};
use crate::error::{Error, Reason};

/// What a lease holds a slot of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// An upload or download in flight.
    Transfer,
    /// An open Subscribe stream.
    Stream,
}

impl LeaseKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Transfer => "transfer",
            Self::Stream => "stream",
        }
    }
}

/// The leases this replica holds. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    /// The bus.
    bus: Bus,
    /// The subjects of the leases held now, refreshed in the background.
    held: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

/// A held lease; dropping it gives the slot back.
pub struct Lease {
    /// Where it is held.
    leases: Leases,
    /// Its subject.
    subject: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("subject", &self.subject)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases.lock().remove(&self.subject);
        let bus = self.leases.bus.clone();
        let subject = std::mem::take(&mut self.subject);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = purge(&bus, &subject).await {
                    // It expires by itself within the lease TTL.
                    tracing::debug!(error = %e, %subject, "releasing a lease");
                }
            });
        }
    }
}

async fn purge(bus: &Bus, subject: &str) -> Result<(), Error> {
    let stream = bus.stream(LEASES).await?;
    stream
        .purge()
        .filter(subject)
        .await
        .map_err(|e| unavailable("releasing a lease", e))?;
    Ok(())
}

impl Leases {
    /// The leases of this replica on `bus`, refreshed in the background for as long
    /// as the process runs.
    pub fn new(bus: Bus) -> Self {
        let leases = Self {
            bus,
            held: Arc::default(),
        };
        leases.spawn_refresher();
        leases
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one of `user`'s `limit` slots of `kind`, cluster-wide: `None` when they
    /// are all held.
    pub async fn acquire(
        &self,
        kind: LeaseKind,
        user: &str,
        limit: usize,
    ) -> Result<Option<Lease>, Error> {
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        self.acquire_named(kind, user, &hex::encode(id), limit)
            .await
    }

    /// Like [`Leases::acquire`], for a lease named `name` (lowercase hex): every
    /// replica that takes the same name holds the same lease, so a transfer that moves
    /// between replicas (a resumable upload, named by its ID) counts once. Any holder
    /// dropping it purges it; the others publish it again within a third of the TTL.
    pub async fn acquire_named(
        &self,
        kind: LeaseKind,
        user: &str,
        name: &str,
        limit: usize,
    ) -> Result<Option<Lease>, Error> {
        self.bus.ensure_connected()?;
        let prefix = format!("courier.lease.{}.{}", kind.as_str(), token(user));
        let subject = format!("{prefix}.{name}");
        self.publish(&subject).await?;
        self.lock().insert(subject.clone());
        let lease = Lease {
            leases: self.clone(),
            subject,
        };
        let held = self.count(&format!("{prefix}.*")).await?;
        if held > limit {
            return Ok(None); // dropping the lease purges it
        }
        Ok(Some(lease))
    }

    /// How many leases match `filter`.
    async fn count(&self, filter: &str) -> Result<usize, Error> {
        let stream = self.bus.stream(LEASES).await?;
        let info = stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| unavailable("counting leases", e))?;
        let subjects: Vec<(String, usize)> = info
            .try_collect()
            .await
            .map_err(|e| unavailable("counting leases", e))?;
        Ok(subjects.len())
    }

    async fn publish(&self, subject: &str) -> Result<(), Error> {
        self.bus
            .js
            .publish(subject.to_owned(), bytes::Bytes::new())
            .await
            .map_err(|e| unavailable("taking a lease", e))?
            .await
            .map_err(|e| unavailable("taking a lease", e))?;
        Ok(())
    }

    /// Every third of the lease TTL, publishes every held lease again.
    fn spawn_refresher(&self) {
        let leases = self.clone();
        let every = (self.bus.settings().lease_ttl / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let held: Vec<String> = leases.lock().iter().cloned().collect();
                let mut acks = Vec::with_capacity(held.len());
                for subject in held {
                    match leases.bus.js.publish(subject, bytes::Bytes::new()).await {
                        Ok(ack) => acks.push(ack),
                        Err(e) => {
                            tracing::debug!(error = %e, "refreshing leases");
                            break;
                        }
                    }
                }
                for ack in acks {
                    let _ = ack.await;
                }
            }
        });
    }
}

/// The rate limit, counted in JetStream.
#[derive(Debug, Clone)]
pub struct BusRate {
    /// The bus.
    bus: Bus,
}

impl BusRate {
    /// The rate limit of `bus`'s settings.
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    /// Counts one message of `user`, or refuses it with RATE_LIMITED.
    pub async fn check(&self, user: &str) -> Result<(), Error> {
        self.bus.ensure_connected()?;
        let subject = format!("courier.rate.{}", token(user));
        let result = match self.bus.js.publish(subject, bytes::Bytes::new()).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_subject_full(&e) => {
                let s = self.bus.settings();
                Err(Error::Refused(
                    Reason::RateLimited,
                    format!(
                        "sending too often: at most {} messages per {} s per user",
                        s.rate_limit,
                        s.rate_window.as_secs_f64()
                    ),
                ))
            }
            Err(e) => Err(unavailable("counting a message against the rate", e)),
        }
    }
}

/// Whether a publish was refused because its subject (or the stream) is full.
pub fn is_subject_full(error: &async_nats::jetstream::context::PublishError) -> bool {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.contains("maximum messages per subject") || text.contains("maximum bytes")
}
