//! Channel membership with several replicas: the record is the JetStream stream
//! [`MEMBERS`] (one subject per channel and user, its last message saying joined or
//! left, file storage: it survives restarts of replicas and of NATS), and each replica
//! keeps a mirror of it in memory, fed by an ordered consumer, for fan-out and the
//! per-user limit. A change is acknowledged only once this replica's mirror has it,
//! and reads that must see every replica's changes first catch the mirror up to the
//! stream's last sequence.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use tokio::sync::watch;

use super::roster::Roster;
use crate::{
    bus::{Bus, MEMBERS, from_token, token, unavailable},
    error::Error,
};

/// How long a change or a read waits for the mirror before giving up.
const CATCH_UP: Duration = Duration::from_secs(3);

/// The mirror. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    /// The bus.
    bus: Bus,
    /// The members of each channel, and each user's channels.
    mirror: Roster,
    /// The last stream sequence applied to the mirror.
    applied: watch::Receiver<u64>,
}

/// `courier.member.<channel>.<user>`.
fn subject(channel: &str, user: &str) -> String {
    format!("courier.member.{}.{}", token(channel), token(user))
}

impl Membership {
    /// Starts the mirror; it follows the stream for as long as the process runs.
    pub fn start(bus: Bus) -> Self {
        let (applied_tx, applied) = watch::channel(0);
        let membership = Self {
            bus,
            mirror: Roster::default(),
            applied,
        };
        let follower = membership.clone();
        tokio::spawn(async move { follower.follow(applied_tx).await });
        membership
    }

    /// Applies the stream to the mirror, from its start and then live; starts over
    /// (idempotently) if the consumer fails.
    async fn follow(&self, applied: watch::Sender<u64>) {
        loop {
            if let Err(e) = self.follow_once(&applied).await {
                tracing::warn!(error = %e, "bus: following channel membership; starting over");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn follow_once(&self, applied: &watch::Sender<u64>) -> Result<(), Error> {
        let stream = self.bus.stream(MEMBERS).await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: "courier.member.>".into(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("following channel membership", e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("following channel membership", e))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| unavailable("following channel membership", e))?;
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let mut tokens = message.subject.split('.').skip(2);
            if let (Some(channel), Some(user)) = (
                tokens.next().and_then(from_token),
                tokens.next().and_then(from_token),
            ) {
                let member = !message.payload.is_empty();
                self.mirror.apply(&channel, &user, member);
            }
            applied.send_if_modified(|last| {
                let newer = sequence > *last;
                if newer {
                    *last = sequence;
                }
                newer
            });
        }
        Ok(())
    }

    /// Waits until the mirror has applied `sequence`.
    async fn wait_for(&self, sequence: u64) -> Result<(), Error> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(CATCH_UP, applied.wait_for(|a| *a >= sequence)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(unavailable(
                "catching up with channel membership",
                "timed out",
            )),
        }
    }

    /// Waits until the mirror has every change any replica made before now.
    pub async fn catch_up(&self) -> Result<(), Error> {
        let stream = self.bus.stream(MEMBERS).await?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| unavailable("reading channel membership", e))?;
        self.wait_for(info.state.last_sequence).await
    }

    /// Records `user` as a member of `channel` (or not), once this replica's mirror
    /// has the change.
    pub async fn set(&self, channel: &str, user: &str, member: bool) -> Result<(), Error> {
        let payload = if member { "1" } else { "" };
        let ack = self
            .bus
            .js
            .publish(subject(channel, user), payload.into())
            .await
            .map_err(|e| unavailable("recording channel membership", e))?
            .await
            .map_err(|e| unavailable("recording channel membership", e))?;
        self.wait_for(ack.sequence).await
    }

    /// The mirror, as it has the membership now.
    pub fn roster(&self) -> &Roster {
        &self.mirror
    }
}
