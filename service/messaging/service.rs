//! The gRPC face of MessagingService: handlers check the request, count it against
//! the rate limit, and hand it to the [`Router`].

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{Stream, StreamExt};
use rand::RngCore;
use sha2::Digest as _;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{
    engine::{Router, Subscription},
    event::Dedup,
    feed::ended as feed_ended,
    message::prepare,
    rate::RateLimit,
};
use crate::{
    auth::{self, IssuedAt},
    error::{Error, Reason},
    ids,
    media::{MediaStore, now_millis},
    metrics::METRICS,
    pb::{self, messaging_service_server, subscribe_response::Event as Kind},
    revocation::Revocations,
};

/// The most user IDs one QueryPeersOnlineStatus may ask about.
const MAX_QUERY: usize = 256;

/// The MessagingService implementation.
#[derive(Clone)]
pub struct MessagingServer {
    /// Where messages go.
    router: Arc<dyn Router>,
    /// For checking and completing image and file messages.
    media: MediaStore,
    /// The per-user send limit.
    rate: Arc<RateLimit>,
    /// Turns true when the server shuts down: Subscribe streams then end cleanly.
    stop: watch::Receiver<bool>,
    /// Revoked tokens: a Subscribe stream opened with one ends with UNAUTHENTICATED.
    revocations: Revocations,
    /// How long a send's `client_message_id` is remembered.
    dedup_window: std::time::Duration,
}

/// The default of `--dedup-window`.
pub const DEFAULT_DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

impl MessagingServer {
    /// A service routing through `router`.
    pub fn new(
        router: Arc<dyn Router>,
        media: MediaStore,
        rate: RateLimit,
        stop: watch::Receiver<bool>,
        revocations: Revocations,
    ) -> Self {
        Self {
            router,
            media,
            rate: Arc::new(rate),
            stop,
            revocations,
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }

    /// Remembers each send's `client_message_id` for `window`.
    pub fn with_dedup_window(mut self, window: std::time::Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// The dedup record of a request: `None` without a client message ID; the ID is
    /// checked like a user ID.
    fn dedup(
        &self,
        client_message_id: &str,
        request: &impl prost::Message,
    ) -> Result<Option<Dedup>, Error> {
        if client_message_id.is_empty() {
            return Ok(None);
        }
        ids::validate_name("client_message_id", client_message_id)?;
        let fingerprint = sha2::Sha256::digest(request.encode_to_vec()).into();
        Ok(Some(Dedup {
            client_message_id: client_message_id.to_owned(),
            fingerprint,
            window: self.dedup_window,
        }))
    }

    /// Counts a message against the sender's rate, checks it, and stamps it.
    async fn accept(
        &self,
        sender: &str,
        message: Option<pb::Message>,
    ) -> Result<(pb::Message, String, prost_types::Timestamp), Error> {
        // The rate limit first: it is cheap, and a flood of image messages must not
        // reach the media store before it is refused.
        self.rate.check(sender).await?;
        let message = prepare(&self.media, message).await?;
        METRICS.messages.fetch_add(1, Ordering::Relaxed);
        Ok((message, new_message_id(), timestamp_now()))
    }
}

/// A new message ID: 128 random bits, hex.
fn new_message_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Now, to the millisecond (as the stores keep times).
fn timestamp_now() -> prost_types::Timestamp {
    crate::media::timestamp(now_millis())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// The Subscribe stream: what it is owed (cached messages flagged offline, events
/// after `after`), then `ready`, then live events not already replayed; it ends with
/// RESOURCE_EXHAUSTED when cut off as too slow, with UNAUTHENTICATED when its token is
/// revoked, and cleanly when the server stops.
fn event_stream(
    subscription: Subscription,
    mut stop: watch::Receiver<bool>,
    revoked: impl Future<Output = ()> + Send + 'static,
) -> EventStream {
    let Subscription {
        replay,
        events,
        ended,
        registration,
    } = subscription;
    let latest = replay.latest;
    let ready = pb::SubscribeResponse {
        event: Some(Kind::Ready(pb::SubscribeReady {
            offline_message_count: replay.offline as u32,
            events_lost: replay.events_lost,
            cursor: latest,
        })),
        cursor: latest,
    };
    let replayed = replay.events.into_iter().map(|(cursor, mut event)| {
        event.cursor = cursor;
        event
    });
    // The feed queues only events after the stream's start.
    let live = ReceiverStream::new(events).map(|(event, cursor)| {
        let mut event = Arc::unwrap_or_clone(event);
        event.cursor = cursor;
        event
    });
    let cut_off = futures::stream::once(async move {
        match ended.load(Ordering::Relaxed) {
            feed_ended::TOO_SLOW => Some(Err(Status::from(Error::Refused(
                Reason::TooSlow,
                "too slow: this Subscribe stream fell too far behind and was ended; reconnect"
                    .into(),
            )))),
            feed_ended::STORE_FAILED => Some(Err(Status::from(Error::Unavailable(
                "the event log failed to store events of this stream; subscribe again after your last cursor"
                    .into(),
            )))),
            _ => None,
        }
    })
    .filter_map(futures::future::ready);
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let was_revoked = Arc::new(AtomicBool::new(false));
    let flag = was_revoked.clone();
    let revoked = async move {
        revoked.await;
        flag.store(true, Ordering::Relaxed);
    };
    let revoked_error = futures::stream::once(async move {
        was_revoked.load(Ordering::Relaxed).then(|| {
            Err(Status::from(Error::Unauthenticated(
                "the token of this Subscribe stream was revoked; subscribe again with a new one"
                    .into(),
            )))
        })
    })
    .filter_map(futures::future::ready);
    futures::stream::iter(replayed)
        .chain(futures::stream::once(async { ready }))
        .chain(live)
        .map(Ok)
        .chain(cut_off)
        .take_until(Box::pin(revoked))
        .chain(revoked_error)
        .take_until(Box::pin(stopped))
        // The registration lives as long as the stream: dropping the call unregisters.
        .map(move |event| {
            let _ = &registration;
            event
        })
        .boxed()
}

#[tonic::async_trait]
impl messaging_service_server::MessagingService for MessagingServer {
    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let user = auth::caller(&request)?;
        let issued = request
            .extensions()
            .get::<IssuedAt>()
            .copied()
            .unwrap_or(IssuedAt(None));
        let after = request.get_ref().after;
        let subscription = self.router.subscribe(&user.0, after).await?;
        let revocations = self.revocations.clone();
        let revoked = async move { revocations.wait_revoked(&user.0, issued.0).await };
        Ok(Response::new(event_stream(
            subscription,
            self.stop.clone(),
            revoked,
        )))
    }

    async fn send_peer_message(
        &self,
        request: Request<pb::SendPeerMessageRequest>,
    ) -> Result<Response<pb::SendPeerMessageResponse>, Status> {
        let user = auth::caller(&request)?;
        let request = request.into_inner();
        ids::validate_name("peer_id", &request.peer_id)?;
        let dedup = self.dedup(&request.client_message_id, &request)?;
        let (message, message_id, server_time) = self.accept(&user.0, request.message).await?;
        let cache = request.options.is_some_and(|o| o.enable_offline_messaging);
        let received = pb::PeerMessageReceived {
            sender_id: user.0,
            message_id,
            server_time: Some(server_time),
            offline: false,
            message: Some(message),
        };
        let sent = self
            .router
            .send_peer(&request.peer_id, received, cache, dedup)
            .await?;
        Ok(Response::new(pb::SendPeerMessageResponse {
            message_id: sent.message_id,
            server_time: sent.server_time,
            state: sent.state.into(),
        }))
    }

    async fn join_channel(
        &self,
        request: Request<pb::JoinChannelRequest>,
    ) -> Result<Response<pb::JoinChannelResponse>, Status> {
        let user = auth::caller(&request)?;
        let channel = &request.get_ref().channel_id;
        ids::validate_name("channel_id", channel)?;
        self.router.join(&user.0, channel).await?;
        Ok(Response::new(pb::JoinChannelResponse {}))
    }

    async fn leave_channel(
        &self,
        request: Request<pb::LeaveChannelRequest>,
    ) -> Result<Response<pb::LeaveChannelResponse>, Status> {
        let user = auth::caller(&request)?;
        let channel = &request.get_ref().channel_id;
        ids::validate_name("channel_id", channel)?;
        self.router.leave(&user.0, channel).await?;
        Ok(Response::new(pb::LeaveChannelResponse {}))
    }

    async fn get_channel_members(
        &self,
        request: Request<pb::GetChannelMembersRequest>,
    ) -> Result<Response<pb::GetChannelMembersResponse>, Status> {
        let channel = &request.get_ref().channel_id;
        ids::validate_name("channel_id", channel)?;
        let user_ids = self.router.members(channel).await?;
        Ok(Response::new(pb::GetChannelMembersResponse { user_ids }))
    }

    async fn send_channel_message(
        &self,
        request: Request<pb::SendChannelMessageRequest>,
    ) -> Result<Response<pb::SendChannelMessageResponse>, Status> {
        let user = auth::caller(&request)?;
        let request = request.into_inner();
        ids::validate_name("channel_id", &request.channel_id)?;
        let dedup = self.dedup(&request.client_message_id, &request)?;
        let (message, message_id, server_time) = self.accept(&user.0, request.message).await?;
        let received = pb::ChannelMessageReceived {
            channel_id: request.channel_id,
            sender_id: user.0,
            message_id,
            server_time: Some(server_time),
            message: Some(message),
        };
        let sent = self.router.send_channel(received, dedup).await?;
        Ok(Response::new(pb::SendChannelMessageResponse {
            message_id: sent.message_id,
            server_time: sent.server_time,
        }))
    }

    async fn query_peers_online_status(
        &self,
        request: Request<pb::QueryPeersOnlineStatusRequest>,
    ) -> Result<Response<pb::QueryPeersOnlineStatusResponse>, Status> {
        let user_ids = request.into_inner().user_ids;
        if user_ids.is_empty() || user_ids.len() > MAX_QUERY {
            return Err(
                Error::invalid(format!("user_ids must list 1 to {MAX_QUERY} user IDs")).into(),
            );
        }
        for id in &user_ids {
            ids::validate_name("each of user_ids", id)?;
        }
        let online = self.router.online(&user_ids).await?;
        let statuses = user_ids
            .into_iter()
            .zip(online)
            .map(|(user_id, online)| pb::PeerOnlineStatus { user_id, online })
            .collect();
        Ok(Response::new(pb::QueryPeersOnlineStatusResponse {
            statuses,
        }))
    }
}
