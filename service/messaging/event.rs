//! The words every part of messaging shares: a Subscribe event, what a send is
//! recognised by when retried ([`Dedup`]), what became of it ([`Sent`]), what a new
//! stream is owed ([`Replay`]), and the refusals of the messaging rules.

use std::time::Duration;

use crate::{
    error::{Error, Reason},
    pb::{self, subscribe_response::Event as Kind},
};

/// One event for a Subscribe stream.
pub type Event = pb::SubscribeResponse;

/// A peer message as a Subscribe event (its cursor left 0).
pub fn peer_event(message: pb::PeerMessageReceived) -> Event {
    Event {
        event: Some(Kind::PeerMessage(message)),
        cursor: 0,
    }
}

/// A channel message as a Subscribe event (its cursor left 0).
pub fn channel_event(message: pb::ChannelMessageReceived) -> Event {
    Event {
        event: Some(Kind::ChannelMessage(message)),
        cursor: 0,
    }
}

/// What a retried send is recognised by.
#[derive(Debug, Clone)]
pub struct Dedup {
    /// The client's ID for the message, unique per sender.
    pub client_message_id: String,
    /// SHA-256 of the request: a reused ID with another request is refused.
    pub fingerprint: [u8; 32],
    /// How long the first answer is remembered.
    pub window: Duration,
}

/// What became of a send: the first answer, for a retry too.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The server-made message ID.
    pub message_id: String,
    /// When the server accepted it.
    pub server_time: Option<prost_types::Timestamp>,
    /// For a peer message, what became of it.
    pub state: pb::PeerMessageState,
}

impl Sent {
    /// The answer to a peer message in `state`.
    pub fn peer(message: &pb::PeerMessageReceived, state: pb::PeerMessageState) -> Self {
        Self {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state,
        }
    }

    /// The answer to a channel message.
    pub fn channel(message: &pb::ChannelMessageReceived) -> Self {
        Self {
            message_id: message.message_id.clone(),
            server_time: message.server_time,
            state: pb::PeerMessageState::Unspecified,
        }
    }

    /// The answer as the wire has it (and as dedup records keep it).
    pub fn response(&self) -> pb::SendPeerMessageResponse {
        pb::SendPeerMessageResponse {
            message_id: self.message_id.clone(),
            server_time: self.server_time,
            state: self.state.into(),
        }
    }

    /// The answer a dedup record kept.
    pub fn from_response(answer: pb::SendPeerMessageResponse) -> Self {
        Self {
            state: answer.state(),
            message_id: answer.message_id,
            server_time: answer.server_time,
        }
    }
}

/// What a new stream is owed.
#[derive(Debug, Default)]
pub struct Replay {
    /// The events to send before `ready`, with their cursors, in cursor order.
    pub events: Vec<(u64, Event)>,
    /// How many of them were cached for the user while offline.
    pub offline: usize,
    /// Whether events after the stream's `after` were dropped from the log.
    pub events_lost: bool,
    /// The user's latest cursor: live events up to it are in `events` or were before
    /// `after`.
    pub latest: u64,
}

/// The refusal of a stream past the per-user limit.
pub fn too_many_streams(max: usize) -> Error {
    Error::Refused(
        Reason::TooManyStreams,
        format!("a user may have at most {max} Subscribe streams open at once"),
    )
}

/// The refusal of a join past the per-user limit.
pub fn too_many_channels(max: usize) -> Error {
    Error::Refused(
        Reason::TooManyChannels,
        format!("a user may be a member of at most {max} channels; leave one first"),
    )
}

/// The refusal of a channel message from a non-member.
pub fn not_a_member(channel: &str) -> Error {
    Error::Refused(
        Reason::NotAMember,
        format!("join channel {channel} before sending to it"),
    )
}

/// The refusal of a client message ID used again for a different message.
pub fn reused(id: &str) -> Error {
    Error::invalid(format!(
        "client_message_id {id:?} was already used for a different message within the dedup window; use a new ID for a new message"
    ))
}
