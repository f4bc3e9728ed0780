//! Messages: what is sent, what arrives, and the calls that send them and manage
//! channels and presence.

use std::time::SystemTime;

use bytes::Bytes;

use crate::{
    client::Client,
    error::Error,
    media::{Media, MediaKind, system_time},
    pb::{self, message::Body},
};

/// An image message: a media ID plus what receivers show before downloading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMessage {
    /// The media ID of the uploaded image.
    pub media_id: String,
    /// The display file name (filled by the server when empty).
    pub file_name: String,
    /// The size in bytes (filled by the server when 0).
    pub size: u64,
    /// Width in pixels (filled by the server when 0; a value set here wins).
    pub width: u32,
    /// Height in pixels (filled by the server when 0; a value set here wins).
    pub height: u32,
    /// A small preview, delivered as given.
    pub thumbnail: Bytes,
    /// The preview's width.
    pub thumbnail_width: u32,
    /// The preview's height.
    pub thumbnail_height: u32,
}

/// A file message: a media ID plus what receivers show before downloading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileMessage {
    /// The media ID of the uploaded file.
    pub media_id: String,
    /// The display file name (filled by the server when empty).
    pub file_name: String,
    /// The size in bytes (filled by the server when 0).
    pub size: u64,
    /// A small preview, delivered as given.
    pub thumbnail: Bytes,
}

/// The content of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(String),
    /// Bytes for the application's own formats, with a short description.
    Raw {
        /// The payload.
        payload: Bytes,
        /// What the payload is.
        description: String,
    },
    /// An uploaded image.
    Image(ImageMessage),
    /// An uploaded file.
    File(FileMessage),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// A raw message.
    pub fn raw(payload: impl Into<Bytes>) -> Self {
        Self::Raw {
            payload: payload.into(),
            description: String::new(),
        }
    }

    pub(crate) fn to_proto(&self) -> pb::Message {
        let body = match self.clone() {
            Self::Text(text) => Body::Text(pb::TextMessage { text }),
            Self::Raw {
                payload,
                description,
            } => Body::Raw(pb::RawMessage {
                payload,
                description,
            }),
            Self::Image(i) => Body::Image(pb::ImageMessage {
                media_id: i.media_id,
                file_name: i.file_name,
                size: i.size,
                width: i.width,
                height: i.height,
                thumbnail: i.thumbnail,
                thumbnail_width: i.thumbnail_width,
                thumbnail_height: i.thumbnail_height,
            }),
            Self::File(f) => Body::File(pb::FileMessage {
                media_id: f.media_id,
                file_name: f.file_name,
                size: f.size,
                thumbnail: f.thumbnail,
            }),
        };
        pb::Message { body: Some(body) }
    }

    pub(crate) fn from_proto(message: Option<pb::Message>) -> Option<Self> {
        Some(match message?.body? {
            Body::Text(t) => Self::Text(t.text),
            Body::Raw(r) => Self::Raw {
                payload: r.payload,
                description: r.description,
            },
            Body::Image(i) => Self::Image(ImageMessage {
                media_id: i.media_id,
                file_name: i.file_name,
                size: i.size,
                width: i.width,
                height: i.height,
                thumbnail: i.thumbnail,
                thumbnail_width: i.thumbnail_width,
                thumbnail_height: i.thumbnail_height,
            }),
            Body::File(f) => Self::File(FileMessage {
                media_id: f.media_id,
                file_name: f.file_name,
                size: f.size,
                thumbnail: f.thumbnail,
            }),
        })
    }

    /// The media ID of an image or file message.
    pub fn media_id(&self) -> Option<&str> {
        match self {
            Self::Image(i) => Some(&i.media_id),
            Self::File(f) => Some(&f.media_id),
            _ => None,
        }
    }
}

impl Media {
    /// An image message for this object, with its name, size and dimensions.
    pub fn image_message(&self) -> Message {
        Message::Image(ImageMessage {
            media_id: self.media_id.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            width: self.width,
            height: self.height,
            ..Default::default()
        })
    }

    /// A file message for this object, with its name and size.
    pub fn file_message(&self) -> Message {
        Message::File(FileMessage {
            media_id: self.media_id.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            ..Default::default()
        })
    }

    /// An image message for an image, a file message for anything else.
    pub fn message(&self) -> Message {
        match self.kind {
            MediaKind::Image => self.image_message(),
            MediaKind::File => self.file_message(),
        }
    }
}

/// How to send a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Keep the message for an offline peer and deliver it when they next subscribe.
    pub offline: bool,
}

impl SendOptions {
    /// Options with offline messaging on.
    pub fn offline() -> Self {
        Self { offline: true }
    }
}

/// What became of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the receivers' open streams.
    Delivered,
    /// The peer was offline; the message is kept for their next subscribe.
    Cached,
}

/// The server's receipt for a sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The ID the server gave the message.
    pub message_id: String,
    /// When the server accepted it.
    pub server_time: SystemTime,
    /// Delivered or cached.
    pub delivery: Delivery,
}

/// Where a received message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSource {
    /// Sent to this user by another.
    Peer,
    /// Sent to a channel this user is in.
    Channel(String),
}

/// A message that arrived on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender's user ID.
    pub from: String,
    /// A peer message, or the channel it was sent to.
    pub source: MessageSource,
    /// The server's ID of the message.
    pub message_id: String,
    /// When the server accepted it.
    pub server_time: SystemTime,
    /// True when it was cached while this user was offline.
    pub offline: bool,
    /// Its place in this user's event sequence (increasing; 0 from a server without
    /// cursors): [`Client::subscribe_after`] this cursor resumes after it.
    pub cursor: u64,
    /// The content.
    pub message: Message,
}

impl ReceivedMessage {
    pub(crate) fn from_peer(m: pb::PeerMessageReceived, cursor: u64) -> Option<Self> {
        Some(Self {
            cursor,
            message: Message::from_proto(m.message)?,
            from: m.sender_id,
            source: MessageSource::Peer,
            message_id: m.message_id,
            server_time: system_time(m.server_time),
            offline: m.offline,
        })
    }

    pub(crate) fn from_channel(m: pb::ChannelMessageReceived, cursor: u64) -> Option<Self> {
        Some(Self {
            cursor,
            message: Message::from_proto(m.message)?,
            from: m.sender_id,
            source: MessageSource::Channel(m.channel_id),
            message_id: m.message_id,
            server_time: system_time(m.server_time),
            offline: false,
        })
    }
}

/// Whether one user is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineStatus {
    /// The user.
    pub user_id: String,
    /// True while they have a Subscribe open.
    pub online: bool,
}

impl Client {
    /// The record of `media_id`, without its bytes.
    pub async fn get_media(&self, media_id: &str) -> Result<Media, Error> {
        let response = self
            .retrying(|| async {
                let request = self.request(
                    pb::GetMediaRequest {
                        media_id: media_id.to_owned(),
                    },
                    true,
                );
                Ok(self.media().get_media(request).await?.into_inner())
            })
            .await?;
        response
            .media
            .map(Media::from_proto)
            .ok_or_else(|| Error::NotFound(media_id.to_owned()))
    }

    /// An image message for an already uploaded `media_id`, without uploading again.
    pub async fn image_message_from_media_id(&self, media_id: &str) -> Result<Message, Error> {
        Ok(self.get_media(media_id).await?.image_message())
    }

    /// A file message for an already uploaded `media_id`, without uploading again.
    pub async fn file_message_from_media_id(&self, media_id: &str) -> Result<Message, Error> {
        Ok(self.get_media(media_id).await?.file_message())
    }

    /// Sends `message` to `peer` (an empty text or raw payload is
    /// [`Error::InvalidArgument`], without a call). An offline peer is [`Error::PeerUnreachable`]
    /// unless `options.offline` is set, which caches the message instead.
    /// The send carries a new client message ID and is retried with it while the
    /// server is unavailable: the server delivers it once.
    pub async fn send_peer_message(
        &self,
        peer: &str,
        message: Message,
        options: SendOptions,
    ) -> Result<SendReceipt, Error> {
        self.send_peer_message_with_id(peer, message, options, &new_client_message_id())
            .await
    }

    /// [`Client::send_peer_message`] with the caller's `client_message_id` (1 to 64
    /// printable ASCII characters, unique per message): sending again with the same
    /// ID within the server's dedup window (10 minutes by default), from this process
    /// or another, answers as the first send did and delivers nothing again.
    pub async fn send_peer_message_with_id(
        &self,
        peer: &str,
        message: Message,
        options: SendOptions,
        client_message_id: &str,
    ) -> Result<SendReceipt, Error> {
        check_not_empty(&message)?;
        let request = pb::SendPeerMessageRequest {
            peer_id: peer.to_owned(),
            message: Some(message.to_proto()),
            options: Some(pb::SendMessageOptions {
                enable_offline_messaging: options.offline,
            }),
            client_message_id: client_message_id.to_owned(),
        };
        let response = self
            .retrying(|| async {
                Ok(self
                    .messaging()
                    .send_peer_message(self.request(request.clone(), true))
                    .await?
                    .into_inner())
            })
            .await?;
        let delivery = match response.state() {
            pb::PeerMessageState::Delivered => Delivery::Delivered,
            pb::PeerMessageState::Cached => Delivery::Cached,
            _ => {
                return Err(Error::PeerUnreachable {
                    peer: peer.to_owned(),
                    message_id: response.message_id,
                });
            }
        };
        Ok(SendReceipt {
            message_id: response.message_id,
            server_time: system_time(response.server_time),
            delivery,
        })
    }

    /// Sends `message` to every other member of `channel`; the caller must be a member.
    /// Retried as [`Client::send_peer_message`] is, delivered once.
    pub async fn send_channel_message(
        &self,
        channel: &str,
        message: Message,
    ) -> Result<SendReceipt, Error> {
        self.send_channel_message_with_id(channel, message, &new_client_message_id())
            .await
    }

    /// [`Client::send_channel_message`] with the caller's `client_message_id`, as in
    /// [`Client::send_peer_message_with_id`].
    pub async fn send_channel_message_with_id(
        &self,
        channel: &str,
        message: Message,
        client_message_id: &str,
    ) -> Result<SendReceipt, Error> {
        check_not_empty(&message)?;
        let request = pb::SendChannelMessageRequest {
            channel_id: channel.to_owned(),
            message: Some(message.to_proto()),
            client_message_id: client_message_id.to_owned(),
        };
        let response = self
            .retrying(|| async {
                Ok(self
                    .messaging()
                    .send_channel_message(self.request(request.clone(), true))
                    .await?
                    .into_inner())
            })
            .await?;
        Ok(SendReceipt {
            message_id: response.message_id,
            server_time: system_time(response.server_time),
            delivery: Delivery::Delivered,
        })
    }

    /// Joins `channel` (joining twice is fine).
    pub async fn join_channel(&self, channel: &str) -> Result<(), Error> {
        self.retrying(|| async {
            let request = self.request(
                pb::JoinChannelRequest {
                    channel_id: channel.to_owned(),
                },
                true,
            );
            self.messaging().join_channel(request).await?;
            Ok(())
        })
        .await
    }

    /// Leaves `channel`; delivery stops at once.
    pub async fn leave_channel(&self, channel: &str) -> Result<(), Error> {
        self.retrying(|| async {
            let request = self.request(
                pb::LeaveChannelRequest {
                    channel_id: channel.to_owned(),
                },
                true,
            );
            self.messaging().leave_channel(request).await?;
            Ok(())
        })
        .await
    }

    /// The members of `channel`, sorted.
    pub async fn channel_members(&self, channel: &str) -> Result<Vec<String>, Error> {
        self.retrying(|| async {
            let request = self.request(
                pb::GetChannelMembersRequest {
                    channel_id: channel.to_owned(),
                },
                true,
            );
            Ok(self
                .messaging()
                .get_channel_members(request)
                .await?
                .into_inner()
                .user_ids)
        })
        .await
    }

    /// Whether each of `users` is online, in the order asked.
    pub async fn query_online_status(&self, users: &[&str]) -> Result<Vec<OnlineStatus>, Error> {
        self.retrying(|| async {
            let user_ids = users.iter().map(|u| u.to_string()).collect();
            let request = self.request(pb::QueryPeersOnlineStatusRequest { user_ids }, true);
            let statuses = self
                .messaging()
                .query_peers_online_status(request)
                .await?
                .into_inner()
                .statuses;
            Ok(statuses
                .into_iter()
                .map(|s| OnlineStatus {
                    user_id: s.user_id,
                    online: s.online,
                })
                .collect())
        })
        .await
    }
}

/// A new client message ID: 32 lowercase hex characters from 128 random bits.
pub fn new_client_message_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Refuses an empty message before any call, as the server would: a text message
/// with empty text, or a raw message with an empty payload.
fn check_not_empty(message: &Message) -> Result<(), Error> {
    match message {
        Message::Text(text) if text.is_empty() => Err(Error::InvalidArgument(
            "a text message needs text: an empty one cannot be sent".into(),
        )),
        Message::Raw { payload, .. } if payload.is_empty() => Err(Error::InvalidArgument(
            "a raw message needs a payload: an empty one cannot be sent".into(),
        )),
        _ => Ok(()),
    }
}
