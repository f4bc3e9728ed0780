//! Cursor helpers: a Subscribe stream read up to `ready` ([`Sub`]), sends that return
//! the raw answer, and the marker check that nothing else came.

use std::time::Duration;

use courier_server::pb::{self, subscribe_response::Event as Kind};

use crate::{Server, authed, messaging, text, token};

/// An open Subscribe stream with everything before `ready` (what a stream was
/// replayed, and its `ready`).
pub struct Sub {
    pub stream: tonic::Streaming<pb::SubscribeResponse>,
    /// The events before `ready`, with their cursors.
    pub replay: Vec<pb::SubscribeResponse>,
    pub ready: pb::SubscribeReady,
    /// The cursor `ready` carried on the response itself.
    pub ready_response_cursor: u64,
    /// The cursor of the last event read after `ready`.
    pub last_seen: u64,
}

pub async fn subscribe(server: &Server, user: &str, after: u64) -> Sub {
    let mut client = messaging(server).await;
    let mut stream = client
        .subscribe(authed(&token(user), pb::SubscribeRequest { after }))
        .await
        .expect("subscribes")
        .into_inner();
    let mut replay = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("ready comes")
            .expect("healthy")
            .expect("open");
        match event.event {
            Some(Kind::Ready(ready)) => {
                return Sub {
                    stream,
                    replay,
                    ready,
                    ready_response_cursor: event.cursor,
                    last_seen: 0,
                };
            }
            Some(_) => replay.push(event),
            None => panic!("an empty event"),
        }
    }
}

impl Sub {
    pub async fn next(&mut self) -> pb::SubscribeResponse {
        let event = tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("an event within 10 s")
            .expect("healthy")
            .expect("open");
        self.last_seen = event.cursor;
        event
    }

    /// The cursor of the last event read after `ready`.
    pub fn next_cursor_seen(&self) -> u64 {
        self.last_seen
    }
}

pub fn peer_id(event: &pb::SubscribeResponse) -> String {
    match &event.event {
        Some(Kind::PeerMessage(m)) => m.message_id.clone(),
        Some(Kind::ChannelMessage(m)) => m.message_id.clone(),
        other => panic!("not a message: {other:?}"),
    }
}

pub fn cursors(events: &[pb::SubscribeResponse]) -> Vec<u64> {
    events.iter().map(|e| e.cursor).collect()
}

pub async fn send(
    server: &Server,
    from: &str,
    to: &str,
    body: &str,
    cache: bool,
    id: &str,
) -> Result<pb::SendPeerMessageResponse, tonic::Status> {
    let mut client = messaging(server).await;
    let request = pb::SendPeerMessageRequest {
        peer_id: to.into(),
        message: Some(text(body)),
        options: Some(pb::SendMessageOptions {
            enable_offline_messaging: cache,
        }),
        client_message_id: id.into(),
    };
    client
        .send_peer_message(authed(&token(from), request))
        .await
        .map(|r| r.into_inner())
}

pub async fn send_channel(
    server: &Server,
    from: &str,
    channel: &str,
    body: &str,
    id: &str,
) -> Result<pb::SendChannelMessageResponse, tonic::Status> {
    let mut client = messaging(server).await;
    let request = pb::SendChannelMessageRequest {
        channel_id: channel.into(),
        message: Some(text(body)),
        client_message_id: id.into(),
    };
    client
        .send_channel_message(authed(&token(from), request))
        .await
        .map(|r| r.into_inner())
}

pub async fn join(server: &Server, user: &str, channel: &str) {
    let mut client = messaging(server).await;
    client
        .join_channel(authed(
            &token(user),
            pb::JoinChannelRequest {
                channel_id: channel.into(),
            },
        ))
        .await
        .expect("joins");
}

/// Sends a marker from `marker` and checks it is the next event: nothing else came.
pub async fn next_is_marker(server: &Server, sub: &mut Sub, to: &str) {
    let sent = send(server, "marker", to, "marker", false, "")
        .await
        .expect("marker");
    let got = sub.next().await;
    assert_eq!(
        peer_id(&got),
        sent.message_id,
        "something came before the marker"
    );
}
