//! courier-client: the Rust client of courier — a self-hostable
//! messaging service where users send each other, and channels, text, raw, image and
//! file messages, with images and files uploaded once and sent by media ID.
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_client::Error> {
//! use courier_client::{Client, Message, SendOptions};
//!
//! let alice = Client::connect("http://127.0.0.1:50051", "<alice's token>").await?;
//! let media = alice.upload_image("cat.png")?.await?;
//! alice.send_peer_message("bob", media.image_message(), SendOptions::offline()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`]: the connection, with deadlines and retries (`client`).
//! - Transfers: uploads and downloads run in the background and hand back a
//!   [`Transfer`] with a [`RequestId`], progress and cancel (`transfer`, `upload`,
//!   `download`; the ID alone in `request_id`).
//! - Messages: [`Message`] to send, [`Event`]s from [`Client::subscribe`], which
//!   reconnects by itself (`message`, `subscribe`).
//! - [`Client::upload_resumable`]: uploads that continue after a broken connection or a
//!   restart, with their state beside the file (`resumable`).
//! - [`Client::thumbnail`]: the server's thumbnail of an image, and image messages
//!   that carry one (`thumbnail`).
//! - [`Client::delete_media`]: deleting one's own media (`delete`).
//! - [`Client::media_url`]: signed HTTP links to media, for image loaders, video
//!   players and CDNs (`url`).
//! - [`Error`]: one enum to match on (`error`).
//! - [`safe_file_name`], [`unique_path`]: where to save received files (`names`).
//! - [`pb`]: the generated gRPC types, for anything the typed layer does not cover.

#![warn(missing_docs)]

mod client;
mod delete;
mod download;
mod error;
mod media;
mod message;
mod names;
pub mod pb;
mod request_id;
mod resumable;
mod subscribe;
mod thumbnail;
mod transfer;
mod upload;
mod url;

pub use client::{Client, ClientOptions};
pub use download::Downloaded;
pub use error::Error;
pub use media::{Media, MediaKind};
pub use message::{
    Delivery, FileMessage, ImageMessage, Message, MessageSource, OnlineStatus, ReceivedMessage,
    SendOptions, SendReceipt, new_client_message_id,
};
pub use names::{safe_file_name, unique_path};
pub use pb::ErrorReason;
pub use request_id::RequestId;
pub use resumable::{ResumableOutcome, ResumedUpload, state_path as resumable_state_path};
pub use subscribe::{Event, Subscription};
pub use thumbnail::{MESSAGE_THUMBNAIL_EDGE, Thumbnail};
pub use transfer::{Progress, Transfer};
pub use url::{MediaUrl, MediaUrlOptions};
