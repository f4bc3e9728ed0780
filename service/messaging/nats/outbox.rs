//! The replicas' source of webhook events: one durable pull consumer of the log
//! stream ([`CONSUMER`]), shared by every replica, so that each event is handed to
//! one of them. Its priority policy pins one replica at a time (the others wait on
//! standby and take over when it stops pulling), so events are posted in log order.
//! An event is acked once posted (or refused for good); one still unacked after the
//! ack wait (a replica died mid-post) is delivered again, to whichever replica holds
//! the pin. The consumer's position is JetStream's, so it survives restarts of every
//! replica; the stream's retention (`--offline-ttl`, the per-user caps) bounds what an
//! outage can leave behind.
//!
//! Entries that are not subscribed to (membership edges, reserved cursors, and with
//! `cached` delivered and channel messages) are acked as they pass.

use std::{
    collections::{BTreeSet, HashSet},
    time::Duration,
};

use async_nats::jetstream::{
    AckKind, Message,
    consumer::{AckPolicy, DeliverPolicy, PriorityPolicy, pull},
};
use futures::StreamExt;

use super::{CACHED, LOGGED, decode_entry, kind_of};
use crate::{
    bus::{Bus, OFFLINE, from_token, unavailable},
    error::Error,
    messaging::outbox::{EventSource, HookEvent, HookEvents, HookKind},
};

/// The durable consumer's name.
pub const CONSUMER: &str = "courier-event-hook";
/// Its priority group.
const GROUP: &str = "event-hook";
/// How long the pin outlives the last pull of the replica holding it.
const PIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How long one pull request waits (well below the pin's timeout).
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// The consumer as an [`EventSource`].
pub struct NatsEvents {
    bus: Bus,
    messages: pull::Stream,
    events: HookEvents,
    /// The stream sequences handed out and not yet settled: a redelivery of one is
    /// left alone (this replica is posting it).
    holding: HashSet<u64>,
    /// The latest stream sequences settled here (at most [`SETTLED_KEPT`]): a
    /// redelivery of one is acked again, not posted.
    settled: BTreeSet<u64>,
}

/// How many settled sequences are remembered.
const SETTLED_KEPT: usize = 4096;

impl NatsEvents {
    /// Joins (or creates) the consumer; a new one starts at the log's end. `timeout`
    /// is the hook's: the ack wait is well above it.
    pub async fn open(bus: Bus, events: HookEvents, timeout: Duration) -> Result<Self, Error> {
        let stream = bus
            .js
            .get_stream(OFFLINE)
            .await
            .map_err(|e| unavailable("opening the event log", e))?;
        let config = pull::Config {
            durable_name: Some(CONSUMER.into()),
            description: Some("courier: events for the event webhook".into()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: (timeout * 3).max(Duration::from_secs(15)),
            max_deliver: -1,
            max_ack_pending: 1024,
            priority_policy: PriorityPolicy::PinnedClient,
            priority_groups: vec![GROUP.into()],
            priority_timeout: PIN_TIMEOUT,
            num_replicas: bus.settings().replicas,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(CONSUMER, config)
            .await
            .map_err(|e| unavailable("creating the event hook's consumer", e))?;
        let messages = consumer
            .stream()
            .group(GROUP)
            .max_messages_per_batch(256)
            .expires(PULL_EXPIRES)
            .heartbeat(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| unavailable("pulling events for the event hook", e))?;
        Ok(Self {
            bus,
            messages,
            events,
            holding: HashSet::new(),
            settled: BTreeSet::new(),
        })
    }

    /// The event `message` holds, if it is one subscribed to; `None` when it is to
    /// be passed over (acked) or is a redelivery (left alone, or acked if settled).
    async fn take(&mut self, message: Message) -> Option<(HookEvent, Message)> {
        let info = message.info().ok()?;
        let sequence = info.stream_sequence;
        let written_ms = (info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        if self.holding.contains(&sequence) {
            return None;
        }
        if self.settled.contains(&sequence) {
            let _ = message.ack().await;
            return None;
        }
        let token = message.subject.as_str().rsplit('.').next().unwrap_or("");
        let headers = message.headers.as_ref();
        let kind = match (kind_of(headers), token.strip_prefix("ch")) {
            (LOGGED, Some(_)) => Some(HookKind::Channel),
            (LOGGED, None) => Some(HookKind::Delivered),
            (CACHED, None) => Some(HookKind::Cached),
            _ => None,
        };
        let wanted = kind.filter(|k| self.events.wants(*k));
        let recipient = match wanted {
            Some(HookKind::Channel) => Some(String::new()),
            Some(_) => from_token(token),
            None => None,
        };
        let event = decode_entry(headers, message.payload.clone());
        match (wanted, recipient, event) {
            (Some(kind), Some(recipient), Some(event)) => {
                self.holding.insert(sequence);
                Some((
                    HookEvent {
                        sequence,
                        kind,
                        recipient,
                        event,
                        written_ms,
                    },
                    message,
                ))
            }
            _ => {
                let _ = message.ack().await;
                None
            }
        }
    }
}

#[tonic::async_trait]
impl EventSource for NatsEvents {
    type Held = Message;

    async fn next(
        &mut self,
        most: usize,
        wait: Duration,
    ) -> Result<Vec<(HookEvent, Message)>, Error> {
        let mut batch = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while batch.len() < most {
            // The first event may be waited for; the rest only taken if there.
            let next = if batch.is_empty() {
                match tokio::time::timeout_at(deadline, self.messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                match futures::FutureExt::now_or_never(self.messages.next()) {
                    Some(next) => next,
                    None => break,
                }
            };
            match next {
                Some(Ok(message)) => {
                    if let Some(taken) = self.take(message).await {
                        batch.push(taken);
                    }
                }
                Some(Err(e)) => {
                    if batch.is_empty() {
                        return Err(unavailable("pulling events for the event hook", e));
                    }
                    break;
                }
                None => return Err(unavailable("pulling events for the event hook", "ended")),
            }
        }
        Ok(batch)
    }

    async fn settle(&mut self, message: Message) -> Result<(), Error> {
        if let Ok(info) = message.info() {
            let sequence = info.stream_sequence;
            self.holding.remove(&sequence);
            self.settled.insert(sequence);
            if self.settled.len() > SETTLED_KEPT {
                self.settled.pop_first();
            }
        }
        message
            .ack()
            .await
            .map_err(|e| unavailable("acking an event hook's event", e))
    }

    async fn working(message: &Message) {
        let _ = message.ack_with(AckKind::Progress).await;
    }

    async fn release(message: Message) {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }

    async fn flush(&mut self, _last: bool) -> Result<(), Error> {
        self.bus
            .client
            .flush()
            .await
            .map_err(|e| unavailable("flushing the event hook's acks", e))
    }
}
