//! How a replica hears of entries and of presence probes.
//!
//! **The follower** ([`Live`]): each replica follows the whole log once, in sequence
//! order. JetStream republishes every stored entry on `courier.live.<subject token>`
//! (core NATS, from the stream's leader, in sequence order); the follower takes them
//! all and hands each to this replica's streams: a user's entry to that user's, a
//! channel message to those of the channel's members here (but its sender), decoded
//! once and shared. The stream sequence has no holes, so a skipped position (a core
//! message lost, or missed while the connection to NATS was down) is seen and filled
//! from the log first. Streams are added through the follower, at the last position it
//! handed on: every entry up to it is in the log, every one after it reaches them.
//!
//! **Presence** ([`Listener`]): while a user has a stream here, a task answers probes
//! on `courier.peer.<user>`.

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

use super::NatsStore;
use super::{OP, entry_of};
use crate::{
    bus::{LIVE_PREFIX, OFFLINE, from_token, token, unavailable},
    error::Error,
    messaging::{
        feed::Stream,
        store::{Entry, Kind, Store as _},
    },
    pb,
    telemetry::{self, otel_span},
};

/// How long the follower keeps trying to fill a gap from the log before it ends the
/// streams here (they reconnect and resume after their cursor).
const FILL_WAIT: Duration = Duration::from_secs(30);
/// The most positions a gap is filled over; past it the streams here are ended.
const FILL_MOST: u64 = 200_000;
/// How long a new stream waits for its listener and the follower to be ready.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// A presence listener task, as the store keeps it.
pub struct Listener {
    /// Turns true once NATS has the probe subscription.
    pub ready: watch::Receiver<bool>,
    /// Stops the task (which unsubscribes).
    pub task: AbortHandle,
    /// Streams on their way to being added: the listener is not stopped meanwhile.
    pub pending: Arc<AtomicUsize>,
}

/// The follower's handle. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    /// True while the follower is subscribed and knows its position.
    ready: watch::Receiver<bool>,
    /// Adds streams.
    control: mpsc::UnboundedSender<Add>,
}

/// The follower's end of [`Live`].
pub struct Follow {
    ready: watch::Sender<bool>,
    orders: mpsc::UnboundedReceiver<Add>,
}

impl Live {
    /// A handle and the end that [`NatsStore::follow`] runs with.
    pub fn new() -> (Self, Follow) {
        let (ready_tx, ready) = watch::channel(false);
        let (control, orders) = mpsc::unbounded_channel();
        (
            Self { ready, control },
            Follow {
                ready: ready_tx,
                orders,
            },
        )
    }
}

/// A stream to add, answered with the cursor it starts after.
struct Add {
    user: String,
    stream: Stream,
    max: usize,
    added: oneshot::Sender<Result<u64, Error>>,
}

impl NatsStore {
    /// Adds `stream` for `user`: presence answered for them here, then the stream
    /// added by the follower; returns the cursor it starts after.
    pub(super) async fn add_stream(
        &self,
        user: &str,
        stream: Stream,
        max: usize,
    ) -> Result<u64, Error> {
        let (mut present, pending) = {
            let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let listener = listeners.entry(user.to_owned()).or_insert_with(|| {
                let (ready_tx, ready) = watch::channel(false);
                let task = tokio::spawn(self.clone().listen(user.to_owned(), ready_tx));
                Listener {
                    ready,
                    task: task.abort_handle(),
                    pending: Arc::default(),
                }
            });
            listener.pending.fetch_add(1, Ordering::Relaxed);
            (listener.ready.clone(), listener.pending.clone())
        };
        let result = async {
            let mut live = self.live.ready.clone();
            let both = async {
                present.wait_for(|r| *r).await.map_err(|_| ended())?;
                live.wait_for(|r| *r).await.map_err(|_| ended())?;
                Ok::<_, Error>(())
            };
            match tokio::time::timeout(LISTEN_WAIT, both).await {
                Ok(Ok(())) => {}
                _ => return Err(unavailable("listening for a user's messages", "timed out")),
            }
            let (added, was_added) = oneshot::channel();
            self.live
                .control
                .send(Add {
                    user: user.to_owned(),
                    stream,
                    max,
                    added,
                })
                .map_err(|_| ended())?;
            was_added.await.map_err(|_| ended())?
        }
        .await;
        pending.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The presence task of one user: answers probes until aborted.
    async fn listen(self, user: String, ready: watch::Sender<bool>) {
        let subject = format!("courier.peer.{}", token(&user));
        let deadline = Instant::now() + LISTEN_WAIT;
        let mut probes = loop {
            let subscribed = async {
                let probes = self.bus.client.subscribe(subject.clone()).await?;
                self.bus.client.flush().await?;
                Ok::<_, async_nats::Error>(probes)
            };
            match subscribed.await {
                Ok(probes) => break probes,
                Err(e) => tracing::warn!(error = %e, "bus: answering presence for a user"),
            }
            if Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let _ = ready.send(true);
        while let Some(request) = probes.next().await {
            self.answer(&user, request).await;
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

    /// The follower: runs for as long as the process does, subscribing again (and
    /// filling what it missed meanwhile) whenever its subscription ends.
    pub(super) async fn follow(self, follow: Follow) {
        let Follow { ready, mut orders } = follow;
        let mut last: Option<u64> = None;
        loop {
            let started = async {
                let live = self
                    .bus
                    .client
                    .subscribe(format!("{LIVE_PREFIX}.*"))
                    .await?;
                self.bus.client.flush().await?;
                // Every entry after this position is republished to us.
                let position = self.last_position().await?;
                Ok::<_, async_nats::Error>((live, position))
            };
            let (mut live, position) = match started.await {
                Ok(started) => started,
                Err(e) => {
                    tracing::warn!(error = %e, "bus: following the event log");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut at = match last {
                Some(at) => {
                    let mut at = at;
                    self.fill(&mut at, position + 1).await;
                    at
                }
                None => position,
            };
            let _ = ready.send(true);
            let mut connections = self.bus.connections();
            connections.mark_unchanged();
            loop {
                tokio::select! {
                    message = live.next() => {
                        let Some(message) = message else { break };
                        self.on_live(&mut at, message).await;
                    }
                    order = orders.recv() => {
                        let Some(Add { user, stream, max, added }) = order else { return };
                        let _ = added.send(self.feed.add(&user, stream, at, max).map(|()| at));
                    }
                    changed = connections.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Entries stored while the connection was down were not
                        // republished to us: read them from the log.
                        match self.last_position().await {
                            Ok(position) => self.fill(&mut at, position + 1).await,
                            Err(e) => tracing::warn!(error = %e, "bus: catching up after a reconnection"),
                        }
                    }
                }
            }
            let _ = ready.send(false);
            last = Some(at);
        }
    }

    /// Hands a republished entry on, after filling from the log the positions between
    /// `at` and it that did not reach us.
    async fn on_live(&self, at: &mut u64, message: async_nats::Message) {
        let Some(headers) = message.headers else {
            return;
        };
        let Some(position) = headers
            .get_last("Nats-Sequence")
            .and_then(|v| v.as_str().parse::<u64>().ok())
        else {
            return;
        };
        if position <= *at {
            return;
        }
        if position > *at + 1 {
            self.fill(at, position).await;
        }
        let subject = message.subject.as_str();
        let owner = subject
            .strip_prefix(LIVE_PREFIX)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or_default();
        self.dispatch(position, owner, &headers, message.payload)
            .await;
        *at = position;
    }

    /// Hands the entry at `position` of log subject token `owner` to the streams here
    /// that it is for.
    async fn dispatch(&self, position: u64, owner: &str, headers: &HeaderMap, payload: Bytes) {
        if let Some(channel) = owner.strip_prefix("ch") {
            let Some(channel) = from_token(channel) else {
                return;
            };
            let members = self.membership.roster().members(&channel);
            let here = self.feed.here(&members);
            if here.is_empty() {
                return;
            }
            let span = otel_span!("bus.receive", op = "channel", messaging.system = "nats");
            telemetry::continue_remote(&span, Some(headers));
            let entry = entry_of(position, Some(headers), payload);
            let sender = match entry.event.as_deref().and_then(|e| e.event.as_ref()) {
                Some(pb::subscribe_response::Event::ChannelMessage(m)) => m.sender_id.as_str(),
                _ => return,
            };
            span.in_scope(|| {
                for user in here.iter().filter(|u| *u != sender) {
                    self.feed.offer(user, position, entry.event.as_ref());
                }
            });
            return;
        }
        // Memberships and the reserved entry are for no stream.
        let Some(user) = from_token(owner) else {
            return;
        };
        if !self.feed.has(&user) {
            return;
        }
        let entry = entry_of(position, Some(headers), payload);
        self.give(&user, &entry, Some(headers));
    }

    /// Hands `entry` to the user's streams here (in the trace of its send); a cached
    /// message a stream took is recorded as handed over.
    fn give(&self, user: &str, entry: &Entry, headers: Option<&HeaderMap>) {
        let span = otel_span!("bus.receive", op = "deliver", messaging.system = "nats");
        telemetry::continue_remote(&span, headers);
        let delivered = span.in_scope(|| self.feed.offer(user, entry.cursor, entry.event.as_ref()));
        if delivered > 0 && entry.kind == Kind::Cached {
            // Cached as the user came online: handed over now, not again.
            let store = self.clone();
            let (user, cursor) = (user.to_owned(), entry.cursor);
            tokio::spawn(async move {
                if let Err(e) = store.hand(&user, cursor, None).await {
                    tracing::warn!(error = %e, "bus: recording a handed-over message");
                }
            });
        }
    }

    /// Reads the log's entries after `at` and before `before` and hands each on.
    /// Retries while the bus is down; when it cannot (or the gap is too large to
    /// fill), ends the streams here (they resume after their cursor).
    async fn fill(&self, at: &mut u64, before: u64) {
        if *at + 1 >= before {
            return;
        }
        if before - *at > FILL_MOST {
            tracing::warn!(
                missed = before - *at,
                "bus: too far behind the event log; ending the streams here"
            );
            self.feed.end_all();
            *at = before - 1;
            return;
        }
        let deadline = Instant::now() + FILL_WAIT;
        while *at + 1 < before {
            let batch = match self
                .bus
                .direct_get_batch(OFFLINE, "courier.offline.*", *at + 1, super::BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bus: filling a gap in the event log; ending the streams here");
                    self.feed.end_all();
                    *at = before - 1;
                    return;
                }
            };
            let full = batch.len() == super::BATCH;
            for stored in batch {
                if stored.sequence >= before {
                    return;
                }
                let owner = stored
                    .headers
                    .get_last("Nats-Subject")
                    .map(|s| s.as_str().trim_start_matches("courier.offline.").to_owned())
                    .unwrap_or_default();
                self.dispatch(stored.sequence, &owner, &stored.headers, stored.payload)
                    .await;
                *at = stored.sequence;
            }
            if !full {
                break;
            }
        }
        *at = (*at).max(before - 1);
    }
}

fn ended() -> Error {
    unavailable("listening for a user's messages", "the listener ended")
}
