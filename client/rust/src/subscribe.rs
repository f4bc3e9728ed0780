//! The live feed: [`Client::subscribe`] yields typed [`Event`]s and reconnects by
//! itself, with backoff, when the connection drops or the server restarts, resuming
//! after the last cursor it received: nothing the server's event log still holds is
//! missed or repeated across a reconnect.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    client::Client,
    error::Error,
    message::ReceivedMessage,
    pb::{self, subscribe_response::Event as Kind},
};

/// How many events may wait for the application before the feed stops reading.
const QUEUE: usize = 256;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Something that happened on the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message arrived: from a peer or a channel; text, raw, image or file.
    Message(ReceivedMessage),
    /// The feed is live (sent after each connect, after the cached offline
    /// messages and the replayed events): from here on every message to this user
    /// arrives as it is sent.
    Ready {
        /// How many cached offline messages came before this event.
        offline_count: u32,
        /// The user's latest cursor.
        cursor: u64,
        /// True when the server no longer held some events after the cursor the feed
        /// resumed from (too old, or lost in a server crash): messages were missed.
        events_lost: bool,
    },
    /// The connection dropped; the feed is reconnecting, and then replays what came
    /// meanwhile (within the server's event log).
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// A live feed of [`Event`]s; it ends only with an error that reconnecting cannot
/// cure (such as an expired token). Dropping it closes the feed.
pub struct Subscription {
    /// Events from the feed task.
    events: mpsc::Receiver<Result<Event, Error>>,
    /// The feed task, stopped when the subscription is dropped.
    task: JoinHandle<()>,
    /// The cursor of the last event handed to the caller.
    cursor: u64,
}

impl Subscription {
    /// The cursor of the last message (or `ready`) this subscription handed to the
    /// caller: keep it to resume with [`Client::subscribe_after`] in a later process.
    /// 0 before any.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

impl Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.events.poll_recv(cx);
        if let Poll::Ready(Some(Ok(event))) = &polled
            && let Some(cursor) = cursor_of(event)
        {
            self.cursor = cursor;
        }
        polled
    }
}

/// The cursor an event moves the feed to, if any.
fn cursor_of(event: &Event) -> Option<u64> {
    match event {
        Event::Message(m) if m.cursor > 0 => Some(m.cursor),
        Event::Ready { cursor, .. } if *cursor > 0 => Some(*cursor),
        _ => None,
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Opens this user's live feed: the messages cached while offline, then live
    /// ones. While it is open the user is online.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_after(0)
    }

    /// Opens this user's live feed resuming after `cursor` (a
    /// [`Subscription::cursor`] or [`ReceivedMessage::cursor`] kept from before):
    /// first every event after it that the server still holds, then live ones.
    pub fn subscribe_after(&self, cursor: u64) -> Subscription {
        let (tx, events) = mpsc::channel(QUEUE);
        let resume = Arc::new(AtomicU64::new(cursor));
        let task = tokio::spawn(self.clone().feed(tx, resume));
        Subscription {
            events,
            task,
            cursor,
        }
    }

    /// Keeps a Subscribe call open, forwarding its events, and opens a new one
    /// whenever it ends, after the last cursor forwarded (events queued for the
    /// application are handed to it, so that is where it will be), until the
    /// application drops the feed.
    async fn feed(self, tx: mpsc::Sender<Result<Event, Error>>, resume: Arc<AtomicU64>) {
        let mut backoff = self.inner.options.backoff;
        loop {
            let after = resume.load(Ordering::Relaxed);
            let reason = match self
                .messaging()
                .subscribe(self.request(pb::SubscribeRequest { after }, false))
                .await
            {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => {
                                backoff = self.inner.options.backoff;
                                let Some(event) = convert(event) else {
                                    continue;
                                };
                                if let Some(cursor) = cursor_of(&event) {
                                    resume.store(cursor, Ordering::Relaxed);
                                }
                                if tx.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break "the server ended the feed".to_owned(),
                            Err(status) => {
                                let error = Error::from(status);
                                if !reconnectable(&error) {
                                    let _ = tx.send(Err(error)).await;
                                    return;
                                }
                                break error.to_string();
                            }
                        }
                    }
                }
                Err(status) => {
                    let error = Error::from(status);
                    if !reconnectable(&error) {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                    error.to_string()
                }
            };
            if tx.send(Ok(Event::Disconnected { reason })).await.is_err() {
                return;
            }
            // Given several server addresses, the next attempt goes to the next one.
            self.fail_over();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Whether a feed that ended with `error` should reconnect.
fn reconnectable(error: &Error) -> bool {
    !matches!(error, Error::Unauthenticated(_) | Error::InvalidArgument(_))
}

fn convert(response: pb::SubscribeResponse) -> Option<Event> {
    let cursor = response.cursor;
    match response.event? {
        Kind::PeerMessage(m) => ReceivedMessage::from_peer(m, cursor).map(Event::Message),
        Kind::ChannelMessage(m) => ReceivedMessage::from_channel(m, cursor).map(Event::Message),
        Kind::Ready(ready) => Some(Event::Ready {
            offline_count: ready.offline_message_count,
            cursor: ready.cursor,
            events_lost: ready.events_lost,
        }),
    }
}
