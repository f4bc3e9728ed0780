//! courier-server: a self-hostable real-time messaging service over gRPC in which
//! users send each other, and channels, text, image and file messages. Images and
//! files are uploaded once into object storage and travel in messages as media IDs.
//!
//! # Layout
//! - [`config`]: the command line and environment (`serve`, `token`).
//! - [`server`]: wires the services together and runs them until shutdown.
//! - [`health`]: the health service, NOT_SERVING everywhere at shutdown but on the
//!   liveness name.
//! - [`admin`]: `courier-server media ...`, the operator's commands on stored media.
//! - [`http`]: media over plain HTTP on the gRPC port (`/media/v1/`, GetMediaUrl's
//!   signed links).
//! - [`auth`]: HS256 JWT bearer tokens, the secret, and the interceptor.
//! - [`media`]: MediaService — uploads, downloads, records, slots, expiry.
//! - [`messaging`]: MessagingService (peer and channel messages, presence).
//! - [`bus`]: NATS JetStream for several replicas: streams, cluster-wide limits.
//! - [`storage`]: opens the object store (a local folder or S3).
//! - [`tls`]: TLS on the gRPC port, with certificates reloaded when they change.
//! - [`revocation`]: revoked users' tokens, from a file in the data folder or the bus.
//! - [`ids`]: media IDs and user/channel IDs, generated and validated.
//! - [`metrics`]: Prometheus metrics (the `metrics` facade), their HTTP endpoint, and
//!   the tower layer that measures every gRPC call.
//! - [`telemetry`]: JSON logs, and OpenTelemetry traces over OTLP (`--otlp-endpoint`).
//! - [`periodic`]: background chores (expiry of media and offline messages).
//! - [`error`]: the one error type, and the one place it becomes a gRPC status.
//! - [`pb`]: code generated from `proto/`, with the [`codec`] that decodes requests.

pub mod admin;
pub mod auth;
pub mod bus;
pub mod codec;
pub mod config;
pub mod error;
pub mod health;
pub mod hooks;
pub mod http;
pub mod ids;
pub mod link;
pub mod media;
pub mod messaging;
pub mod metrics;
pub mod pb;
pub mod periodic;
pub mod revocation;
pub mod server;
pub mod storage;
pub mod tls;

pub mod telemetry;

pub use config::{Cli, Command, RevokeArgs, ServeConfig, TlsDevArgs, TokenArgs};
pub use error::Error;
