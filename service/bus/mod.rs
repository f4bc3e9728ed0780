//! The bus: NATS with JetStream, shared by every replica when `--bus` is set.
//!
//! What lives where:
//! - **Presence** is core NATS request/reply: a replica holding a user's Subscribe
//!   streams listens on `courier.peer.<user>` and answers probes, so a send to a user
//!   with no stream anywhere gets NATS's "no responders" at once (that user is
//!   offline), and a replica that dies takes its subscriptions with it (its users go
//!   offline as soon as the NATS server sees the connection close, or misses two
//!   pings).
//! - **Every entry is a message of one stream** in JetStream ([`OFFLINE`], file
//!   storage, a per-subject cap; an event's cursor is its stream sequence): on a
//!   user's subject `courier.offline.<user>` the peer messages delivered to them
//!   (each with a `Nats-TTL` of `--event-log-ttl`) and those cached while they were
//!   offline (flagged in the `Courier-Kind` header, kept for the stream's maximum age,
//!   `--offline-ttl`); on a channel's subject `courier.offline.ch<channel>` each
//!   channel message, once; on `courier.offline.m<user>` the user's joins and
//!   leaves, the edges of their spans of membership. [`HANDED`] keeps, per user, the sequence up to
//!   which cached messages were handed to a stream; [`DEDUP`] the first answer of each
//!   send with a `client_message_id`, for the dedup window. Channel membership is in
//!   [`MEMBERS`] (file storage).
//! - **Live delivery**: the log stream republishes every entry on
//!   `courier.live.<subject>` (core NATS, with its sequence); each replica follows
//!   them all, once, in order, and hands each to its own streams (a channel message
//!   to its members' there), so live delivery costs one core message per replica and
//!   no JetStream consumer. A stream replays the log by batched direct gets, then
//!   takes live entries; a skipped sequence (a core message lost, or a NATS
//!   reconnection) is filled from the log, so every event arrives once, in cursor
//!   order.
//! - **Cluster-wide limits** are in memory-backed JetStream streams ([`limits`]): leases
//!   for transfers and Subscribe streams, and the sliding-window rate limit.
//!
//! Users and channels appear in subjects hex-encoded: IDs may hold `.`, `*` and `>`,
//! which mean something in a subject.
//!
//! What crosses the bus is the protobuf encoding of `courier.v1` messages
//! (`PeerMessageReceived`, `ChannelMessageReceived`): already versioned and guarded by
//! `buf breaking`, so replicas of neighbouring versions understand each other during
//! a rolling upgrade.

pub mod limits;

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    stream::{self, DiscardPolicy, StorageType},
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use crate::error::Error;

/// The stream of channel membership: `courier.member.<channel>.<user>`, the last
/// message of each subject saying joined (`1`) or left (empty).
pub const MEMBERS: &str = "COURIER_MEMBERS";
/// The stream of the per-user event logs (offline cache included):
/// `courier.offline.<user>`.
pub const OFFLINE: &str = "COURIER_OFFLINE";
/// The stream of the sequence up to which each user's cached messages were handed
/// to a Subscribe stream: `courier.handed.<user>`, the last message of each subject.
pub const HANDED: &str = "COURIER_HANDED";
/// The stream of the first answers of sends with a client message ID:
/// `courier.dedup.<sender>.<client message ID>`, kept for the dedup window.
pub const DEDUP: &str = "COURIER_DEDUP";
/// The stream of leases: `courier.lease.<kind>.<user>.<lease>`.
pub const LEASES: &str = "COURIER_LEASES";
/// The stream of the rate limit: `courier.rate.<user>`.
pub const RATE: &str = "COURIER_RATE";

/// The prefix of republished log entries: `courier.live.<subject token>`.
pub const LIVE_PREFIX: &str = "courier.live";

/// How long a request to another replica may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The settings of the bus's streams, from the command line.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// The most messages cached per receiver (the oldest are dropped).
    pub offline_per_user: usize,
    /// How long cached messages are kept.
    pub offline_ttl: Duration,
    /// The most bytes of cached messages in all; past it, new ones are refused.
    pub offline_max_bytes: u64,
    /// Messages per rate window per user.
    pub rate_limit: usize,
    /// The rate window.
    pub rate_window: Duration,
    /// How long a lease outlives the last refresh of the replica holding it.
    pub lease_ttl: Duration,
    /// How many NATS servers keep a copy of each stream.
    pub replicas: usize,
    /// The most delivered events kept per user in the event log.
    pub log_size: usize,
    /// How long a delivered event is kept in the event log.
    pub log_ttl: Duration,
    /// How long a send's client message ID is remembered.
    pub dedup_window: Duration,
}

/// A connection to NATS. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    /// Core NATS.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// The stream settings, to create the streams again after a NATS restart that
    /// lost the memory-backed ones.
    settings: Arc<BusSettings>,
    /// Counts (re)connections: after each, the streams are made sure of again, and a
    /// listener that may have missed core messages meanwhile reads the log.
    connections: watch::Receiver<u64>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A bus error as the caller sees it: UNAVAILABLE (retry), with the detail logged.
pub fn unavailable(what: &str, error: impl std::fmt::Display) -> Error {
    tracing::warn!(%error, "bus: {what}");
    Error::Unavailable(format!(
        "the message bus is not reachable ({what}); retry shortly"
    ))
}

impl Bus {
    /// Connects to the NATS server at `url` (or to one of the comma-separated servers
    /// of a cluster: `nats://a:4222,nats://b:4222`) and makes sure every stream exists
    /// with `settings`. Fails if no server can be reached now; once connected, the
    /// client reconnects by itself, to any of them, for as long as the process runs.
    pub async fn connect(url: &str, settings: BusSettings) -> Result<Self, Error> {
        let servers = server_addrs(url)?;
        let (count_connections, connections) = watch::channel(0u64);
        let count_connections = Arc::new(count_connections);
        let client = async_nats::ConnectOptions::new()
            .name("courier-server")
            .max_reconnects(None)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(Duration::from_secs(2))
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100 * (attempt as u64 + 1)).min(2_000))
            })
            .event_callback(move |event| {
                let count_connections = count_connections.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("bus: connected");
                            count_connections.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => tracing::warn!("bus: disconnected"),
                        other => tracing::info!(event = %other, "bus"),
                    }
                }
            })
            .connect(servers)
            .await
            .map_err(|e| Error::Internal(format!("cannot reach the bus at {url}: {e}")))?;
        let version = client.server_info().version;
        if !supported(&version) {
            return Err(Error::Internal(format!(
                "the bus at {url} runs nats-server {version}; courier needs 2.12 or later (atomic batches, batched direct gets)"
            )));
        }
        let js = jetstream::new(client.clone());
        let bus = Self {
            client,
            js,
            settings: Arc::new(settings),
            connections,
        };
        bus.ensure_streams().await?;
        bus.spawn_stream_keeper();
        Ok(bus)
    }

    /// Whether the connection to NATS is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Fails at once with UNAVAILABLE while the connection is down, rather than
    /// after a request's timeout.
    pub fn ensure_connected(&self) -> Result<(), Error> {
        if self.connected() {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "the message bus is not reachable; retry shortly".into(),
            ))
        }
    }

    /// The settings the streams were made with.
    pub fn settings(&self) -> &BusSettings {
        &self.settings
    }

    /// Creates or updates every stream to the settings.
    pub async fn ensure_streams(&self) -> Result<(), Error> {
        let s = &self.settings;
        let configs = [
            stream::Config {
                name: MEMBERS.into(),
                description: Some("courier: channel membership".into()),
                subjects: vec!["courier.member.*.*".into()],
                max_messages_per_subject: 1,
                storage: StorageType::File,
                allow_direct: true,
                ..Default::default()
            },
            stream::Config {
                name: OFFLINE.into(),
                description: Some("courier: each user's event log and offline cache".into()),
                subjects: vec!["courier.offline.*".into()],
                // Both kinds share one per-user cap (the cache's own cap is applied
                // when it is handed over).
                max_messages_per_subject: s.offline_per_user.max(s.log_size) as i64,
                max_bytes: s.offline_max_bytes as i64,
                // Cached messages live this long; delivered ones carry a shorter
                // `Nats-TTL`.
                max_age: s.offline_ttl.max(s.log_ttl),
                allow_message_ttl: true,
                // Past max_bytes a new message is refused (OFFLINE_CACHE_FULL); past
                // the per-user cap the user's oldest is dropped.
                discard: DiscardPolicy::New,
                duplicate_window: s.dedup_window.min(s.offline_ttl.max(s.log_ttl)),
                storage: StorageType::File,
                allow_direct: true,
                // Older versions stored a channel message's copies as atomic batches.
                allow_atomic_publish: true,
                // Each stored entry again on core NATS, for the replicas holding the
                // user's streams (see the module comment).
                republish: Some(stream::Republish {
                    source: "courier.offline.*".into(),
                    destination: format!("{LIVE_PREFIX}.{{{{wildcard(1)}}}}"),
                    headers_only: false,
                }),
                ..Default::default()
            },
            stream::Config {
                name: HANDED.into(),
                description: Some("courier: cached messages handed to a stream, per user".into()),
                subjects: vec!["courier.handed.*".into()],
                max_messages_per_subject: 1,
                max_age: s.offline_ttl.max(s.log_ttl),
                storage: StorageType::File,
                allow_direct: true,
                ..Default::default()
            },
            stream::Config {
                name: DEDUP.into(),
                description: Some("courier: the first answers of sends with an ID".into()),
                subjects: vec!["courier.dedup.*.*".into()],
                max_messages_per_subject: 1,
                max_age: s.dedup_window,
                storage: StorageType::File,
                allow_direct: true,
                ..Default::default()
            },
            stream::Config {
                name: LEASES.into(),
                description: Some("courier: transfer and stream leases".into()),
                subjects: vec!["courier.lease.*.*.*".into()],
                max_messages_per_subject: 1,
                max_age: s.lease_ttl,
                storage: StorageType::Memory,
                allow_direct: true,
                ..Default::default()
            },
            stream::Config {
                name: RATE.into(),
                description: Some("courier: messages sent per user in the rate window".into()),
                subjects: vec!["courier.rate.*".into()],
                max_messages_per_subject: s.rate_limit as i64,
                max_age: s.rate_window,
                discard: DiscardPolicy::New,
                discard_new_per_subject: true,
                storage: StorageType::Memory,
                ..Default::default()
            },
        ];
        for mut config in configs {
            config.num_replicas = s.replicas;
            let name = config.name.clone();
            self.js
                .create_or_update_stream(config)
                .await
                .map_err(|e| unavailable(&format!("creating stream {name}"), e))?;
        }
        Ok(())
    }

    /// After each reconnection, makes sure the streams exist: a NATS server that
    /// restarted has lost the memory-backed ones.
    fn spawn_stream_keeper(&self) {
        let bus = self.clone();
        let mut connections = self.connections();
        connections.mark_unchanged();
        tokio::spawn(async move {
            while connections.changed().await.is_ok() {
                for attempt in 0..10u32 {
                    match bus.ensure_streams().await {
                        Ok(()) => break,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1)))
                                .await
                        }
                    }
                }
            }
        });
    }

    /// Changes after every (re)connection to NATS.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.clone()
    }

    /// The entries of `subject` in stream `stream` from sequence `from` on, up to
    /// `most` of them, in sequence order, read by one batched direct get (NATS 2.11+)
    /// instead of a request per entry. Fewer than `most` means none are left.
    pub async fn direct_get_batch(
        &self,
        stream: &str,
        subject: &str,
        from: u64,
        most: usize,
    ) -> Result<Vec<Stored>, Error> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable("reading a log", e))?;
        let request = serde_json::json!({
            "seq": from.max(1),
            "next_by_subj": subject,
            "batch": most,
        });
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{stream}"),
                inbox,
                Bytes::from(request.to_string()),
            )
            .await
            .map_err(|e| unavailable("reading a log", e))?;
        let mut entries = Vec::new();
        loop {
            let reply = match tokio::time::timeout(REQUEST_TIMEOUT, replies.next()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Err(unavailable("reading a log", "the reply ended")),
                Err(_) => return Err(unavailable("reading a log", "timed out")),
            };
            // A status ends the batch: 204 after the last entry, 404 when none.
            if let Some(status) = reply.status {
                return match status.as_u16() {
                    204 | 404 => Ok(entries),
                    code => Err(unavailable(
                        "reading a log",
                        format!("status {code} {:?}", reply.description),
                    )),
                };
            }
            let headers = reply.headers.unwrap_or_default();
            let sequence = headers
                .get_last("Nats-Sequence")
                .and_then(|v| v.as_str().parse().ok())
                .ok_or_else(|| unavailable("reading a log", "an entry without a sequence"))?;
            entries.push(Stored {
                sequence,
                headers,
                payload: reply.payload,
            });
            if entries.len() >= most {
                return Ok(entries);
            }
        }
    }

    /// A stream's handle, without asking the server.
    pub async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream<()>, Error> {
        self.js
            .get_stream_no_info(name)
            .await
            .map_err(|e| unavailable(&format!("opening stream {name}"), e))
    }
}

/// An entry read from a stream by [`Bus::direct_get_batch`].
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its headers (the publisher's and the server's `Nats-*`).
    pub headers: async_nats::HeaderMap,
    /// Its payload.
    pub payload: Bytes,
}

/// The servers of `--bus`: one URL, or several separated by commas. A cluster whose
/// servers do not advertise each other to clients (`no_advertise`) is reachable
/// after the loss of the one first connected to only through the others listed here.
fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, Error> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| Error::Internal(format!("--bus: {u:?} is not a NATS URL: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(Error::Internal("--bus: no NATS URL given".into()));
    }
    Ok(servers)
}

/// Whether nats-server `version` (`2.15.2`, `2.12.0-beta.1`) is 2.12 or later.
fn supported(version: &str) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 12),
        _ => false,
    }
}

/// `id` as one subject token: hex, since IDs may hold `.`, `*` and `>`.
pub fn token(id: &str) -> String {
    hex::encode(id.as_bytes())
}

/// The ID a [`token`] came from.
pub fn from_token(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_2_12_or_later_is_supported() {
        for ok in ["2.12.0", "2.15.2", "2.12.0-beta.1", "3.0.0"] {
            assert!(supported(ok), "{ok}");
        }
        for old in ["2.11.9", "2.10.22", "1.4.1", "", "v2"] {
            assert!(!supported(old), "{old}");
        }
    }

    #[test]
    fn bus_takes_one_url_or_several_separated_by_commas() {
        // Unit test: these URLs are valid; an Err is the failure tested for.
        assert_eq!(server_addrs("nats://a:4222").expect("one").len(), 1);
        let several = server_addrs("nats://a:4222, nats://b:4223,nats://c:4224").expect("three");
        let ports: Vec<u16> = several.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        assert!(server_addrs("").is_err());
        assert!(server_addrs(" , ").is_err());
        assert!(server_addrs("nats://a:4222,not a url").is_err());
    }

    #[test]
    fn tokens_are_subject_safe_and_reversible() {
        for id in ["alice", "a.b", "*", ">", "x-y_z", "ünï"] {
            let t = token(id);
            assert!(t.chars().all(|c| c.is_ascii_hexdigit()), "{t}");
            assert_eq!(from_token(&t).as_deref(), Some(id));
        }
    }
}
