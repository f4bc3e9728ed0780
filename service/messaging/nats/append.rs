//! Appending to the event log on the bus: one entry per send, on the subject of its
//! receiver, its channel, or (for a join or leave) the user's memberships.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        context::{PublishAckFuture, PublishError},
        message::PublishMessage as Publish,
    },
};
use bytes::Bytes;

use super::{KIND, LOGGED, NatsStore, log_subject};
use crate::{
    bus::{limits::is_subject_full, token, unavailable},
    error::{Error, Reason},
    messaging::event::Dedup,
    telemetry,
};

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
        self.append_subject(log_subject(user), kind, payload, msg_id)
            .await
    }

    /// Appends `payload` of `kind` on log `subject` (a user's, a channel's, a user's
    /// memberships); returns the ack to await.
    pub(super) async fn append_subject(
        &self,
        subject: String,
        kind: &'static str,
        payload: Bytes,
        msg_id: Option<&str>,
    ) -> Result<PublishAckFuture, PublishError> {
        let publish = Publish::build()
            .headers(self.entry_headers(kind, msg_id))
            .payload(payload);
        self.bus.js.send_publish(subject, publish).await
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
