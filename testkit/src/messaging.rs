//! MessagingService helpers: clients, sends and [`Feed`], an open Subscribe stream.

use std::time::Duration;

use courier_server::pb::{
    self, messaging_service_client::MessagingServiceClient, subscribe_response,
};
use tonic::{Status, transport::Channel};

use crate::{Server, authed, token};

/// A MessagingService client on its own connection.
pub async fn messaging(server: &Server) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(server.channel().await)
}

/// A text message.
pub fn text(text: &str) -> pb::Message {
    pb::Message {
        body: Some(pb::message::Body::Text(pb::TextMessage {
            text: text.to_owned(),
        })),
    }
}

/// Sends `message` from the holder of `token` to `peer`.
pub async fn send_peer(
    client: &mut MessagingServiceClient<Channel>,
    token: &str,
    peer: &str,
    message: pb::Message,
    offline: bool,
) -> Result<pb::SendPeerMessageResponse, Status> {
    let request = pb::SendPeerMessageRequest {
        peer_id: peer.to_owned(),
        message: Some(message),
        options: Some(pb::SendMessageOptions {
            enable_offline_messaging: offline,
        }),
        client_message_id: String::new(),
    };
    Ok(client
        .send_peer_message(authed(token, request))
        .await?
        .into_inner())
}

/// An open Subscribe stream, past its cached messages and `ready` event.
pub struct Feed {
    stream: tonic::Streaming<pb::SubscribeResponse>,
    /// The cached messages delivered before `ready`, in order.
    pub offline: Vec<pb::PeerMessageReceived>,
    /// The count that `ready` reported.
    pub ready_count: u32,
}

impl Feed {
    /// Subscribes as `user` on a connection of its own.
    pub async fn open(server: &Server, user: &str) -> Self {
        let mut client = messaging(server).await;
        let mut stream = client
            .subscribe(authed(&token(user), pb::SubscribeRequest { after: 0 }))
            .await
            .expect("subscribes")
            .into_inner();
        let mut offline = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the ready event comes")
                .expect("the stream stays open")
                .expect("the stream stays open");
            match event.event {
                Some(subscribe_response::Event::PeerMessage(message)) => offline.push(message),
                Some(subscribe_response::Event::Ready(ready)) => {
                    return Self {
                        stream,
                        offline,
                        ready_count: ready.offline_message_count,
                    };
                }
                other => panic!("unexpected event before ready: {other:?}"),
            }
        }
    }

    /// The next event; panics if none comes within 10 s.
    pub async fn next(&mut self) -> subscribe_response::Event {
        tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("an event comes within 10 s")
            .expect("the stream is healthy")
            .expect("the stream is open")
            .event
            .expect("an event")
    }

    /// The next event, which must be a peer message.
    pub async fn next_peer(&mut self) -> pb::PeerMessageReceived {
        match self.next().await {
            subscribe_response::Event::PeerMessage(message) => message,
            other => panic!("expected a peer message, got {other:?}"),
        }
    }

    /// The next event, which must be a channel message.
    pub async fn next_channel(&mut self) -> pb::ChannelMessageReceived {
        match self.next().await {
            subscribe_response::Event::ChannelMessage(message) => message,
            other => panic!("expected a channel message, got {other:?}"),
        }
    }

    /// What the stream yields next, however it ends: an event, a clean end (None) or
    /// an error status.
    pub async fn end(&mut self) -> Result<Option<pb::SubscribeResponse>, Status> {
        tokio::time::timeout(Duration::from_secs(15), self.stream.message())
            .await
            .expect("the stream yields within 15 s")
    }
}

/// The body of a received message.
pub fn body(message: &Option<pb::Message>) -> &pb::message::Body {
    message
        .as_ref()
        .and_then(|m| m.body.as_ref())
        .expect("a message body")
}

/// Sends a marker text from `from` to `to` and checks it is the next thing `feed`
/// receives: proof that nothing else was delivered to `feed` before it.
pub async fn expect_nothing_before_marker(server: &Server, feed: &mut Feed, to: &str) {
    let mut client = messaging(server).await;
    let sent = send_peer(&mut client, &token("marker"), to, text("marker"), false)
        .await
        .expect("marker");
    let got = feed.next_peer().await;
    assert_eq!(
        got.message_id, sent.message_id,
        "something arrived before the marker: {got:?}"
    );
}

/// Whether each of `users` is online, asked as alice.
pub async fn online(server: &Server, users: &[&str]) -> Vec<bool> {
    let mut client = messaging(server).await;
    let request = pb::QueryPeersOnlineStatusRequest {
        user_ids: users.iter().map(|u| u.to_string()).collect(),
    };
    let statuses = client
        .query_peers_online_status(authed(&token("alice"), request))
        .await
        .expect("query")
        .into_inner()
        .statuses;
    assert_eq!(
        statuses
            .iter()
            .map(|s| s.user_id.as_str())
            .collect::<Vec<_>>(),
        users
    );
    statuses.iter().map(|s| s.online).collect()
}
