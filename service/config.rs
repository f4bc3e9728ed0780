//! The command line: `serve` (the default) and `token`, each flag also read from a
//! `COURIER_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// courier-server: real-time messaging with image and file messages, over gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "courier-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of `serve`, so that `courier-server --listen ..` works without it.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default). Boxed: the flags are many, the token's few.
    Serve(Box<ServeConfig>),
    /// Print a token for a user, signed with the server's secret.
    Token(TokenArgs),
    /// Make every token of a user issued before now invalid, on every server that
    /// shares the data folder (or, with --bus, on every replica), at once.
    Revoke(RevokeArgs),
    /// Write a throwaway CA, server certificate and client certificate for trying
    /// TLS out (not for production).
    TlsDev(TlsDevArgs),
    /// Admin actions on stored media: list a user's, delete, quarantine, release.
    Media(crate::admin::MediaArgs),
}

/// The flags of `revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The user whose tokens to revoke.
    #[arg(long)]
    pub user: String,

    /// The server's data folder, where `revocations.json` lives.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// With several replicas: the bus they share; the revocation is written there.
    #[arg(long, env = "COURIER_BUS")]
    pub bus: Option<String>,
}

/// The flags of `tls-dev`.
#[derive(Debug, Clone, Args)]
pub struct TlsDevArgs {
    /// The folder to write ca.pem, server.pem, server.key, client.pem, client.key into.
    #[arg(long, default_value = "./tls")]
    pub out: PathBuf,

    /// The names the server certificate is for (DNS names or IP addresses).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub hosts: Vec<String>,

    /// How many days the certificates are valid.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// Everything `serve` needs to know.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// The address the gRPC server listens on (port 0 picks a free one).
    #[arg(long, env = "COURIER_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// The folder for the JWT secret and, by default, the media.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where media are stored: a folder path, or `s3://bucket/prefix` (configured by
    /// the usual AWS_* variables). Default: `<data-dir>/media`.
    #[arg(long, env = "COURIER_STORAGE")]
    pub storage: Option<String>,

    /// Serve gRPC over TLS with this certificate chain (PEM); reloaded when the file
    /// changes. Needs --tls-key.
    #[arg(long, env = "COURIER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM); reloaded when the file changes.
    #[arg(long, env = "COURIER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// With TLS: require clients to present a certificate signed by a CA in this PEM
    /// file.
    #[arg(long, env = "COURIER_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// The address of the Prometheus metrics endpoint (port 0 picks a free one).
    #[arg(long, env = "COURIER_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// Serve the operator's AdminService (list, delete, quarantine and release media)
    /// on this address, a listener of its own (plain gRPC: bind it to loopback or a
    /// private network). Off by default; needs --admin-secret.
    #[arg(long, env = "COURIER_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The bearer secret of the AdminService (32 characters or more), apart from the
    /// users' token secret: calls need `authorization: Bearer <secret>`.
    #[arg(long, env = "COURIER_ADMIN_SECRET", hide_env_values = true)]
    pub admin_secret: Option<String>,

    /// The secret that signs tokens. Default: one made at first start in the data
    /// folder (file `jwt-secret`, mode 0600).
    #[arg(long, env = "COURIER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The largest upload accepted, in bytes.
    #[arg(long, env = "COURIER_MAX_UPLOAD_SIZE", default_value_t = 30 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_size: u64,

    /// How long media are kept after upload (for example 7d, 36h, 90s).
    #[arg(long, env = "COURIER_MEDIA_TTL", default_value = "7d", value_parser = positive_duration)]
    pub media_ttl: Duration,

    /// The most bytes of live (unexpired) media one user may hold; an upload that
    /// would pass it is refused at its header with QUOTA_EXCEEDED. Default: no quota.
    #[arg(long, env = "COURIER_QUOTA_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_bytes: Option<u64>,

    /// The most bytes one user may upload in any hour; past it, uploads are refused at
    /// their header with QUOTA_EXCEEDED. Default: no quota.
    #[arg(long, env = "COURIER_QUOTA_BYTES_PER_HOUR", value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_bytes_per_hour: Option<u64>,

    /// The upload hook: POST each new content's record (signed JSON, with a link to
    /// its bytes) to this http(s) URL before its media ID is usable, and act on the
    /// verdict (accept, reject, quarantine). See README "Upload hook". Default: none.
    #[arg(long, env = "COURIER_UPLOAD_HOOK", requires = "upload_hook_secrets")]
    pub upload_hook: Option<String>,

    /// The upload hook's Standard Webhooks secrets (`whsec_<base64>`; two, comma
    /// separated, while rotating).
    #[arg(
        long = "upload-hook-secret",
        env = "COURIER_UPLOAD_HOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub upload_hook_secrets: Vec<String>,

    /// How long the upload hook may take to answer.
    #[arg(long, env = "COURIER_UPLOAD_HOOK_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub upload_hook_timeout: Duration,

    /// What a hook that fails or times out means: `closed` (the upload fails with
    /// UNAVAILABLE, nothing kept) or `open` (accepted, logged, counted).
    #[arg(long, env = "COURIER_UPLOAD_HOOK_FAILURE", default_value = "closed", value_parser = ["open", "closed"])]
    pub upload_hook_failure: String,

    /// A PEM CA certificate trusted for the upload hook's https:// URL, beside the
    /// system's roots.
    #[arg(long, env = "COURIER_UPLOAD_HOOK_CA_FILE")]
    pub upload_hook_ca_file: Option<PathBuf>,

    /// The part size of resumable uploads (CreateUpload/WriteUpload), in bytes: every
    /// WriteUpload carries exactly this many bytes but the last. Default: 1 MiB on a
    /// local folder, 5 MiB on S3 (whose parts must be at least 5 MiB). At most 7 MiB,
    /// so that a part and its envelope fit the server's 8 MiB message limit.
    #[arg(long, env = "COURIER_UPLOAD_PART_SIZE", value_parser = clap::value_parser!(u64).range(1024..=7 * 1024 * 1024))]
    pub upload_part_size: Option<u64>,

    /// How long a resumable upload may stay idle (no part written) before it is
    /// removed with its parts; it holds one of its owner's transfer slots until then.
    #[arg(long, env = "COURIER_RESUMABLE_UPLOAD_TTL", default_value = "15m", value_parser = positive_duration)]
    pub resumable_upload_ttl: Duration,

    /// How many uploads and downloads one user may have in flight at once.
    #[arg(long, env = "COURIER_MAX_TRANSFERS_PER_USER", default_value_t = 9, value_parser = positive_count)]
    pub max_transfers_per_user: usize,

    /// A transfer that moves no bytes for this long is ended and cleaned up.
    #[arg(long, env = "COURIER_IDLE_TIMEOUT", default_value = "120s", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// How often expired media and expired offline messages are deleted.
    #[arg(long, env = "COURIER_SWEEP_INTERVAL", default_value = "10m", value_parser = positive_duration)]
    pub sweep_interval: Duration,

    /// How old shared content no media names, and an upload a crash left staged, must
    /// be before the sweeper deletes them; longer than any upload takes from storing
    /// its bytes to writing its record.
    #[arg(long, env = "COURIER_CONTENT_GRACE", default_value = "1h", value_parser = positive_duration)]
    pub content_grace: Duration,

    /// How many messages one receiver may have cached while offline (oldest dropped).
    #[arg(long, env = "COURIER_OFFLINE_CACHE_SIZE", default_value_t = 200, value_parser = positive_count)]
    pub offline_cache_size: usize,

    /// How many messages one sender may have waiting for offline receivers, all
    /// receivers together; more are refused with OFFLINE_CACHE_FULL.
    #[arg(long, env = "COURIER_OFFLINE_QUOTA_PER_SENDER", default_value_t = 1000, value_parser = positive_count)]
    pub offline_quota_per_sender: usize,

    /// The most bytes the offline cache holds in all; past it, offline messages are
    /// refused with OFFLINE_CACHE_FULL.
    #[arg(long, env = "COURIER_OFFLINE_CACHE_MAX_BYTES", default_value_t = 1024 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub offline_cache_max_bytes: u64,

    /// How long cached offline messages are kept.
    #[arg(long, env = "COURIER_OFFLINE_TTL", default_value = "7d", value_parser = positive_duration)]
    pub offline_ttl: Duration,

    /// How many events (delivered peer messages and channel messages together) a
    /// replay on Subscribe `after` returns at most: the newest, with `events_lost`
    /// when there were more; also how many delivered peer messages each user's own log
    /// keeps.
    #[arg(long, env = "COURIER_EVENT_LOG_SIZE", default_value_t = 1000, value_parser = positive_count)]
    pub event_log_size: usize,

    /// How long each user's event log keeps a delivered event.
    #[arg(long, env = "COURIER_EVENT_LOG_TTL", default_value = "1h", value_parser = positive_duration)]
    pub event_log_ttl: Duration,

    /// Keeps one server's event log in memory instead of `offline.redb`: nothing
    /// survives a restart. For benchmarks that compare against the durable log.
    #[arg(long, env = "COURIER_EVENT_LOG_IN_MEMORY", hide = true)]
    pub event_log_in_memory: bool,

    /// How many messages each channel's history keeps for replay (the oldest are
    /// dropped). One server; on the bus, channel messages live in each member's log.
    #[arg(long, env = "COURIER_CHANNEL_HISTORY_SIZE", default_value_t = 1000, value_parser = positive_count)]
    pub channel_history_size: usize,

    /// How long each channel's history keeps a message.
    #[arg(long, env = "COURIER_CHANNEL_HISTORY_TTL", default_value = "1h", value_parser = positive_duration)]
    pub channel_history_ttl: Duration,

    /// How long a send's client_message_id is remembered: a retry within it gets the
    /// first answer and delivers nothing again.
    #[arg(long, env = "COURIER_DEDUP_WINDOW", default_value = "10m", value_parser = positive_duration)]
    pub dedup_window: Duration,

    /// How many channels one user may be a member of.
    #[arg(long, env = "COURIER_MAX_CHANNELS_PER_USER", default_value_t = 20, value_parser = positive_count)]
    pub max_channels_per_user: usize,

    /// How many messages one user may send per rate window.
    #[arg(long, env = "COURIER_RATE_LIMIT", default_value_t = 180, value_parser = positive_count)]
    pub rate_limit: usize,

    /// The rate window.
    #[arg(long, env = "COURIER_RATE_WINDOW", default_value = "3s", value_parser = positive_duration)]
    pub rate_window: Duration,

    /// How many Subscribe streams (devices) one user may have open at once.
    #[arg(long, env = "COURIER_MAX_STREAMS_PER_USER", default_value_t = 16, value_parser = positive_count)]
    pub max_streams_per_user: usize,

    /// How many events a Subscribe stream may have queued before it is ended as too slow.
    #[arg(long, env = "COURIER_SUBSCRIBER_BUFFER", default_value_t = 1024, value_parser = positive_count)]
    pub subscriber_buffer: usize,

    /// How often readiness checks that the media store answers (the overall health
    /// status is NOT_SERVING while it does not).
    #[arg(long, env = "COURIER_HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = positive_duration)]
    pub health_check_interval: Duration,

    /// Run as one of several replicas sharing NATS JetStream at this URL (for example
    /// `nats://nats:4222`, or several servers of one NATS cluster separated by commas):
    /// messages, presence, channel membership, the offline cache and the per-user
    /// limits are then shared. Default: everything in this process.
    #[arg(long, env = "COURIER_BUS")]
    pub bus: Option<String>,

    /// With --bus: how many NATS servers keep a copy of each of courier's streams
    /// (1 for a single NATS server; 3 on a three-node JetStream cluster survives the
    /// loss of one node).
    #[arg(long, env = "COURIER_BUS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub bus_replicas: u8,

    /// With --bus: how long a replica's hold on a transfer or stream slot outlives
    /// the replica (it is renewed every third of this while the replica runs).
    #[arg(long, env = "COURIER_BUS_LEASE_TTL", default_value = "15s", value_parser = positive_duration)]
    pub bus_lease_ttl: Duration,

    /// How many thumbnails are decoded at once (each on a blocking thread, taking up
    /// to 192 MiB); further GetThumbnail calls wait for a turn.
    #[arg(long, env = "COURIER_THUMBNAIL_CONCURRENCY", default_value_t = 2, value_parser = positive_count)]
    pub thumbnail_concurrency: usize,

    /// Let HTTP/2 size its flow-control windows from the measured bandwidth-delay
    /// product of each connection (from 64 KiB up to 16 MiB), so that a transfer over a
    /// link with a long round trip is not capped near window / round trip; `false`
    /// uses the two fixed windows below instead.
    #[arg(long, env = "COURIER_HTTP2_ADAPTIVE_WINDOW", default_value_t = true, action = clap::ArgAction::Set)]
    pub http2_adaptive_window: bool,

    /// HTTP/2 flow-control window of one stream, in bytes, when the adaptive window is
    /// off: how much of one transfer may be in flight unacknowledged. It caps a stream
    /// near window / round trip (4 MiB over 100 ms: ~40 MB/s) and bounds what one
    /// upload can buffer here.
    #[arg(long, env = "COURIER_HTTP2_STREAM_WINDOW", default_value_t = 4 * 1024 * 1024, value_parser = window_size)]
    pub http2_stream_window: u32,

    /// HTTP/2 flow-control window of one connection (all its streams), in bytes, when
    /// the adaptive window is off.
    #[arg(long, env = "COURIER_HTTP2_CONNECTION_WINDOW", default_value_t = 8 * 1024 * 1024, value_parser = window_size)]
    pub http2_connection_window: u32,

    /// The largest HTTP/2 frame the server accepts, in bytes (16384 to 16777215):
    /// larger frames mean fewer frames per chunk.
    #[arg(long, env = "COURIER_HTTP2_MAX_FRAME_SIZE", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(16_384..=16_777_215))]
    pub http2_max_frame_size: u32,

    /// Let web pages from this origin (for example `http://localhost:8080`; repeat the
    /// flag for more, or `*` for any) call the server from a browser over gRPC-Web:
    /// answers CORS preflights and exposes the grpc-status, grpc-message and
    /// grpc-status-details-bin headers to the page. gRPC-Web itself (over HTTP/1.1 or
    /// HTTP/2, on the gRPC port) is always on; without this flag only pages served from
    /// the server's own origin may use it.
    #[arg(long = "cors-allow-origin", env = "COURIER_CORS_ALLOW_ORIGIN", value_delimiter = ',', value_parser = cors_origin)]
    pub cors_allow_origins: Vec<String>,

    /// The lifetime of a GetMediaUrl link whose request names none.
    #[arg(long, env = "COURIER_MEDIA_URL_TTL", default_value = "5m", value_parser = positive_duration)]
    pub media_url_ttl: Duration,

    /// The longest lifetime a GetMediaUrl link may be given; longer requests are cut
    /// to it.
    #[arg(long, env = "COURIER_MEDIA_URL_MAX_TTL", default_value = "1h", value_parser = positive_duration)]
    pub media_url_max_ttl: Duration,

    /// The `Cache-Control` of media served through signed links: `private` (the
    /// default: only the fetching browser keeps a copy) or `public` (a CDN or shared
    /// proxy may keep it too, for the link's life; such a copy outlives a revocation
    /// or a deletion).
    #[arg(long, env = "COURIER_MEDIA_URL_CACHE", default_value = "private", value_parser = ["private", "public"])]
    pub media_url_cache: String,

    /// The base of the links GetMediaUrl mints (for example `https://chat.example.com`,
    /// when a proxy or load balancer is in front). Default: built from the address
    /// each call came to, `https://` when TLS is on.
    #[arg(long, env = "COURIER_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,

    /// Let web pages from this origin read media links with `fetch` or XHR (CORS on
    /// `/media/v1/`; repeat the flag for more, or `*` for any). `<img>` and `<video>`
    /// need none.
    #[arg(long = "http-cors-origin", env = "COURIER_HTTP_CORS_ORIGIN", value_delimiter = ',', value_parser = cors_origin)]
    pub http_cors_origins: Vec<String>,

    /// On S3: answer each GET of a media link, after the same checks, with a redirect
    /// to a presigned S3 URL living at most 60 s, so that the bytes need not pass
    /// through the server. Refused at start on a local folder.
    #[arg(long, env = "COURIER_HTTP_REDIRECT_TO_STORE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub http_redirect_to_store: bool,

    /// How many HTTP media requests (GET and HEAD, bodies included) the server serves
    /// at once, over all users; more are answered 503 with `Retry-After`.
    #[arg(long, env = "COURIER_HTTP_MAX_REQUESTS", default_value_t = 256, value_parser = positive_count)]
    pub http_max_requests: usize,

    /// An HTTP media response whose client reads nothing for this long is ended.
    #[arg(long, env = "COURIER_HTTP_IDLE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,

    /// How long a shutdown waits for calls in flight before the process exits.
    #[arg(long, env = "COURIER_SHUTDOWN_GRACE", default_value = "25s", value_parser = positive_duration)]
    pub shutdown_grace: Duration,

    /// Export OpenTelemetry traces over OTLP/gRPC to this collector (for example
    /// `http://otel-collector:4317`): a span for every gRPC call and the work behind
    /// it, continuing the caller's W3C `traceparent` and carried across replicas.
    /// Default: no traces.
    #[arg(long, env = "COURIER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The event webhook (--event-hook and its flags).
    #[command(flatten)]
    pub event_hook: crate::hooks::events::EventHookArgs,
}

/// The flags of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user ID to put in the token's `sub` claim.
    #[arg(long)]
    pub user: String,

    /// The server's data folder, where its secret lives.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The secret, when the server is given one instead of keeping it in its data folder.
    #[arg(long, env = "COURIER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// How long the token is valid (for example 24h, 30m, 7d).
    #[arg(long, default_value = "24h", value_parser = positive_duration)]
    pub ttl: Duration,
}

/// A duration of more than zero (humantime syntax: 90s, 10m, 7d): a zero sweep
/// interval, TTL, idle timeout or rate window would break the server, so it is refused
/// at start with exit status 2.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(duration)
}

/// An HTTP/2 window size: at least the protocol's initial 65535 bytes and at most its
/// largest, 2^31 - 1.
fn window_size(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (65_535..=0x7fff_ffff).contains(&n) => Ok(n),
        Ok(_) => Err("must be between 65535 and 2147483647".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A count of at least 1: a limit of 0 would refuse everything.
fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A CORS origin: `*`, or `http(s)://host[:port]` exactly as a browser sends it in its
/// `Origin` header (no path, no trailing slash), so that a typo is refused at start
/// rather than silently matching nothing.
fn cors_origin(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok(text.into());
    }
    let url = url::Url::parse(text)
        .map_err(|e| format!("not an origin ({e}): use http(s)://host[:port] or *"))?;
    let origin = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || origin != text {
        return Err(format!(
            "not an origin: use http(s)://host[:port] (no path or trailing slash) or *, for example {origin}"
        ));
    }
    Ok(origin)
}

/// The base of minted links: `http(s)://host[:port]` with an optional path prefix,
/// without a query; stored without a trailing slash.
fn public_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http(s)://host[:port] URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must have no query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}
