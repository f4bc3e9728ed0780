//! Appending to the event log on the bus: a peer message as one entry of its
//! receiver's log, a channel message as JetStream atomic batches of its members'
//! entries.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        context::{PublishAckFuture, PublishError, PublishErrorKind},
        message::PublishMessage as Publish,
    },
};
use bytes::Bytes;
use rand::RngCore;

use super::{KIND, LOGGED, NatsStore, log_subject};
use crate::{
    bus::{limits::is_subject_full, token, unavailable},
    error::{Error, Reason},
    messaging::event::Dedup,
    telemetry,
};

/// Log entries written per atomic batch (NATS's default ceiling, `max_msgs`).
const ATOMIC_MOST: usize = 1000;
/// How many times a batch NATS refused whole is sent again.
const BATCH_TRIES: u32 = 40;

impl NatsStore {
    /// Appends `event` of `kind` to `user`'s log (a delivered event expires after the
    /// log's TTL, a cached one lives as long as the stream keeps it); `msg_id` makes a
    /// retried append stored once. Returns the ack to await.
    pub(super) async fn append_entry(
        &self,
        user: &str,
        kind: &'static str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let publish = Publish::build()
            .headers(self.entry_headers(kind, msg_id))
            .payload(payload);
        self.bus.js.send_publish(log_subject(user), publish).await
    }

    /// The headers of a log entry of `kind`: the kind, the trace of the send (the
    /// stream that reads it continues it), the TTL of a delivered event, and the
    /// `Nats-Msg-Id` that makes a retried append stored once.
    fn entry_headers(&self, kind: &'static str, msg_id: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(KIND, kind);
        telemetry::inject(&mut headers);
        if kind == LOGGED {
            let ttl = self.bus.settings().log_ttl.max(Duration::from_secs(1));
            headers.insert("Nats-TTL", ttl.as_secs().to_string());
        }
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        headers
    }

    /// Appends `payload` of `kind` to the logs of `users` (with a send's `dedup`) as
    /// JetStream atomic batches of at most [`ATOMIC_MOST`] entries: stored together,
    /// one fsync and one ack per batch, in consecutive cursors. NATS keeps few batches
    /// open per stream (50 by default) and refuses the rest whole, so this replica
    /// keeps at most [`OPEN_BATCHES`] open, and a refused batch (nothing of it stored)
    /// is sent again after a short pause, a bounded number of times.
    pub(super) async fn append_all(
        &self,
        users: &[String],
        kind: &'static str,
        payload: Bytes,
        sender: &str,
        dedup: Option<&Dedup>,
    ) -> Result<(), Error> {
        for chunk in users.chunks(ATOMIC_MOST) {
            let mut attempt = 0u32;
            loop {
                let result = {
                    let _open = self
                        .open_batches
                        .acquire()
                        .await
                        .map_err(|e| unavailable("writing to the event log", e))?;
                    self.append_batch(chunk, kind, &payload, sender, dedup)
                        .await
                };
                match result {
                    Ok(()) => break,
                    Err(e) if is_batch_refused(&e) && attempt < BATCH_TRIES => {
                        attempt += 1;
                        let pause = 5 * u64::from(attempt) + rand::rng().next_u64() % 10;
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    Err(e) => return Err(log_error(e)),
                }
            }
        }
        Ok(())
    }

    /// Sends one atomic batch: every entry but the last on core NATS, the last with
    /// the commit header, awaiting its ack.
    async fn append_batch(
        &self,
        users: &[String],
        kind: &'static str,
        payload: &Bytes,
        sender: &str,
        dedup: Option<&Dedup>,
    ) -> Result<(), PublishError> {
        // 64 random bits: unique among the batches open at once (10 s at most).
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        let batch = hex::encode(id);
        for (i, user) in users.iter().enumerate() {
            let mut headers = self.entry_headers(kind, msg_id(sender, dedup, user).as_deref());
            headers.insert("Nats-Batch-Id", batch.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string());
            if i + 1 == users.len() {
                headers.insert("Nats-Batch-Commit", "1");
                let publish = Publish::build().headers(headers).payload(payload.clone());
                self.bus
                    .js
                    .send_publish(log_subject(user), publish)
                    .await?
                    .await?;
            } else if let Err(e) = self
                .bus
                .client
                .publish_with_headers(log_subject(user), headers, payload.clone())
                .await
            {
                return Err(PublishError::with_source(PublishErrorKind::Other, e));
            }
        }
        Ok(())
    }

    /// Waits for the ack of an append (its cursor), mapping a full log to
    /// OFFLINE_CACHE_FULL.
    pub(super) async fn acked(ack: Result<PublishAckFuture, PublishError>) -> Result<u64, Error> {
        match ack {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        }
        .map(|ack| ack.sequence)
        .map_err(log_error)
    }
}

/// A failed write to the event log as the caller sees it: OFFLINE_CACHE_FULL when the
/// log is full, else UNAVAILABLE.
fn log_error(e: PublishError) -> Error {
    if is_subject_full(&e) {
        Error::Refused(
            Reason::OfflineCacheFull,
            "the server's message log is full; nothing was kept".into(),
        )
    } else {
        unavailable("writing to the event log", e)
    }
}

/// Whether NATS refused an atomic batch whole (too many open, or some of it dropped
/// on the way): nothing of it was stored, so it may be sent again.
fn is_batch_refused(error: &PublishError) -> bool {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.contains("atomic publish") && !is_subject_full(error)
}

/// The `Nats-Msg-Id` of a send's entry in `user`'s log.
pub(super) fn msg_id(sender: &str, dedup: Option<&Dedup>, user: &str) -> Option<String> {
    dedup.map(|d| {
        format!(
            "{}.{}.{}",
            token(sender),
            token(&d.client_message_id),
            token(user)
        )
    })
}
