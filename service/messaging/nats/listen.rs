//! The listener of one user on this replica, while they have a stream here: it answers
//! presence probes on `courier.peer.<user>`, and hands the user's log entries, which
//! JetStream republishes on `courier.live.<user>`, to the feed in cursor order. Each
//! republished entry names the user's previous entry, so a gap (a core message lost,
//! or missed while the connection to NATS was down) is seen and filled from the log
//! first. Streams are added through the listener, at the last cursor it handed on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::AbortHandle,
};
use tracing::Instrument;

use super::{NatsStore, OP, entry_of, log_subject};
use crate::{
    bus::{LIVE_PREFIX, token, unavailable},
    error::Error,
    messaging::{
        feed::Stream,
        store::{Entry, Kind, Store as _},
    },
    pb,
    telemetry::{self, otel_span},
};

/// How long a listener keeps trying to fill a gap from the log before it ends the
/// user's streams here (they reconnect and resume after their cursor).
const FILL_WAIT: Duration = Duration::from_secs(30);
/// How long a new stream waits for its listener to be ready.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// A listener task, as the store keeps it.
pub struct Listener {
    /// Turns true once NATS has both subscriptions and the listener knows the user's
    /// latest cursor.
    pub ready: watch::Receiver<bool>,
    /// Stops the task (which unsubscribes).
    pub task: AbortHandle,
    /// Adds streams.
    pub control: mpsc::UnboundedSender<Add>,
    /// Streams on their way to being added: the listener is not stopped meanwhile.
    pub pending: Arc<AtomicUsize>,
}

/// A stream to add, answered with the cursor it starts after.
pub struct Add {
    pub stream: Stream,
    pub max: usize,
    pub added: oneshot::Sender<Result<u64, Error>>,
}

/// A log entry as JetStream republished it.
struct Republished {
    entry: Entry,
    /// The user's previous entry when it was stored (0: unknown).
    previous: u64,
    /// Its headers (the trace context of the send).
    headers: HeaderMap,
}

impl NatsStore {
    /// Adds `stream` for `user` through their listener (started if there is none);
    /// returns the cursor it starts after.
    pub(super) async fn add_stream(
        &self,
        user: &str,
        stream: Stream,
        max: usize,
    ) -> Result<u64, Error> {
        let (mut ready, control, pending) = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let listener = listeners.entry(user.to_owned()).or_insert_with(|| {
                let (ready_tx, ready) = watch::channel(false);
                let (control, orders) = mpsc::unbounded_channel();
                let task = tokio::spawn(self.clone().listen(user.to_owned(), ready_tx, orders));
                Listener {
                    ready,
                    task: task.abort_handle(),
                    control,
                    pending: Arc::default(),
                }
            });
            listener.pending.fetch_add(1, Ordering::Relaxed);
            (
                listener.ready.clone(),
                listener.control.clone(),
                listener.pending.clone(),
            )
        };
        let result = async {
            match tokio::time::timeout(LISTEN_WAIT, ready.wait_for(|r| *r)).await {
                Ok(Ok(_)) => {}
                _ => return Err(unavailable("listening for a user's messages", "timed out")),
            }
            let (added, was_added) = oneshot::channel();
            control
                .send(Add { stream, max, added })
                .map_err(|_| ended())?;
            was_added.await.map_err(|_| ended())?
        }
        .await;
        pending.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The listener task of one user.
    async fn listen(
        self,
        user: String,
        ready: watch::Sender<bool>,
        mut orders: mpsc::UnboundedReceiver<Add>,
    ) {
        let subject = format!("courier.peer.{}", token(&user));
        let live_subject = format!("{LIVE_PREFIX}.{}", token(&user));
        let start = || async {
            let probes = self.bus.client.subscribe(subject.clone()).await?;
            let live = self.bus.client.subscribe(live_subject.clone()).await?;
            self.bus.client.flush().await?;
            // Every entry after this one is republished to us.
            let last = self.latest(&user).await?;
            Ok::<_, async_nats::Error>((probes, live, last))
        };
        let deadline = Instant::now() + LISTEN_WAIT;
        let (mut probes, mut live, mut last) = loop {
            match start().await {
                Ok(started) => break started,
                Err(e) => tracing::warn!(error = %e, "bus: listening for a user's messages"),
            }
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = ready.send(true);
        let mut connections = self.bus.connections();
        connections.mark_unchanged();
        loop {
            tokio::select! {
                request = probes.next() => {
                    let Some(request) = request else { break };
                    self.answer(&user, request).await;
                }
                message = live.next() => {
                    let Some(message) = message else { break };
                    let Some(republished) = republished(message) else { continue };
                    self.hand_on(&user, &mut last, republished).await;
                }
                order = orders.recv() => {
                    let Some(Add { stream, max, added }) = order else { break };
                    let _ = added.send(self.feed.add(&user, stream, last, max).map(|()| last));
                }
                changed = connections.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Entries stored while the connection was down were not
                    // republished to us: read them from the log.
                    match self.latest(&user).await {
                        Ok(latest) => self.fill(&user, &mut last, latest + 1).await,
                        Err(e) => tracing::warn!(error = %e, "bus: catching up after a reconnection"),
                    }
                }
            }
        }
    }

    /// Answers a probe: is `user` online here.
    async fn answer(&self, user: &str, request: async_nats::Message) {
        let op = request
            .headers
            .as_ref()
            .and_then(|h| h.get(OP))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let span = otel_span!("bus.receive", op = %op, messaging.system = "nats");
        telemetry::continue_remote(&span, request.headers.as_ref());
        let answer: u64 = async {
            match op.as_str() {
                "probe" => u64::from(self.feed.has(user)),
                _ => 0,
            }
        }
        .instrument(span)
        .await;
        if let Some(reply) = request.reply {
            let _ = self
                .bus
                .client
                .publish(reply, Bytes::from(answer.to_string()))
                .await;
        }
    }

    /// Hands a republished entry on, after filling from the log any entries between
    /// `last` and it that did not reach us.
    async fn hand_on(&self, user: &str, last: &mut u64, republished: Republished) {
        let cursor = republished.entry.cursor;
        if cursor <= *last {
            return;
        }
        let missed = match republished.previous {
            0 => *last + 1 < cursor,
            previous => previous > *last,
        };
        if missed {
            self.fill(user, last, cursor).await;
        }
        self.give(user, last, &republished.entry, Some(&republished.headers))
            .await;
    }

    /// Hands `entry` to the user's streams here (in the trace of its send); a cached
    /// message a stream took is recorded as handed over.
    async fn give(&self, user: &str, last: &mut u64, entry: &Entry, headers: Option<&HeaderMap>) {
        let op = match entry.event.as_deref().and_then(|e| e.event.as_ref()) {
            Some(pb::subscribe_response::Event::ChannelMessage(_)) => "channel",
            _ => "deliver",
        };
        let span = otel_span!("bus.receive", op = op, messaging.system = "nats");
        telemetry::continue_remote(&span, headers);
        let delivered = span.in_scope(|| self.feed.offer(user, entry.cursor, entry.event.as_ref()));
        *last = entry.cursor;
        if delivered > 0
            && entry.kind == Kind::Cached
            && let Err(e) = self.hand(user, entry.cursor, None).await
        {
            // Cached as the user came online: handed over now, not again.
            tracing::warn!(error = %e, "bus: recording a handed-over message");
        }
    }

    /// Reads `user`'s entries after `last` and before `before` from the log and hands
    /// each on. Retries while the bus is down; when it cannot, ends the user's streams
    /// here (they resume after their cursor).
    async fn fill(&self, user: &str, last: &mut u64, before: u64) {
        if *last + 1 >= before {
            return;
        }
        let subject = log_subject(user);
        let deadline = Instant::now() + FILL_WAIT;
        let entries = loop {
            match self.read_log(&subject, *last + 1, before - 1).await {
                Ok(entries) => break entries,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bus: filling a gap in a user's log; ending their streams here");
                    self.feed.end(user);
                    *last = before - 1;
                    return;
                }
            }
        };
        for stored in entries {
            let entry = entry_of(stored.sequence, Some(&stored.headers), stored.payload);
            self.give(user, last, &entry, Some(&stored.headers)).await;
        }
        *last = (*last).max(before - 1);
    }
}

/// An entry republished on `courier.live.<user>`; `None` if it lacks a sequence.
fn republished(message: async_nats::Message) -> Option<Republished> {
    let headers = message.headers?;
    let sequence = |name: &str| -> Option<u64> { headers.get_last(name)?.as_str().parse().ok() };
    let cursor = sequence("Nats-Sequence")?;
    let previous = sequence("Nats-Last-Sequence").unwrap_or(0);
    Some(Republished {
        entry: entry_of(cursor, Some(&headers), message.payload),
        previous,
        headers,
    })
}

fn ended() -> Error {
    unavailable("listening for a user's messages", "the listener ended")
}
