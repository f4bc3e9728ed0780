//! The live feed: [`Client::subscribe`] yields typed [`Event`]s and reconnects by
//! itself, with backoff, when the connection drops or the server restarts.

use std::{
    pin::Pin,
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
    /// messages): from here on every message to this user arrives as it is sent.
    Ready {
        /// How many cached offline messages came before this event.
        offline_count: u32,
    },
    /// The connection dropped; the feed is reconnecting. Messages sent to this
    /// user meanwhile are cached only if their senders enabled offline messaging.
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
}

impl Stream for Subscription {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Opens this user's live feed. While it is open the user is online.
    pub fn subscribe(&self) -> Subscription {
        let (tx, events) = mpsc::channel(QUEUE);
        let task = tokio::spawn(self.clone().feed(tx));
        Subscription { events, task }
    }

    /// Keeps a Subscribe call open, forwarding its events, and opens a new one
    /// whenever it ends, until the application drops the feed.
    async fn feed(self, tx: mpsc::Sender<Result<Event, Error>>) {
        let mut backoff = self.inner.options.backoff;
        loop {
            let reason = match self
                .messaging()
                .subscribe(self.request(pb::SubscribeRequest { after: 0 }, false))
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
    match response.event? {
        Kind::PeerMessage(m) => ReceivedMessage::from_peer(m).map(Event::Message),
        Kind::ChannelMessage(m) => ReceivedMessage::from_channel(m).map(Event::Message),
        Kind::Ready(ready) => Some(Event::Ready {
            offline_count: ready.offline_message_count,
        }),
    }
}
