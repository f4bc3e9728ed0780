//! Wires the services together and runs them until shutdown: health, reflection (v1
//! and v1alpha), MediaService and MessagingService behind authentication, the media
//! sweeper, the offline-cache purger and the metrics endpoint.

use std::{future::Future, sync::Arc, time::Duration};

use ::http::{HeaderName, HeaderValue, Method};
use object_store::signer::Signer;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::task::TaskTracker;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Server, server::Router, server::TcpIncoming},
};
use tonic_web::GrpcWebLayer;
use tower::util::Either;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::{Identity, Stack};

use crate::{
    auth::{self, Authenticator},
    bus::{
        Bus, BusSettings,
        limits::{BusRate, Leases},
    },
    codec::{OversizeLayer, TRANSPORT_MESSAGE_LIMIT},
    config::ServeConfig,
    error::Error,
    health::Health,
    hooks,
    http::{HttpLayer, HttpSettings, LinkKey, LinkSettings, MediaHttp},
    media::{
        HookFailure, MediaLimits, MediaServer, MediaStore, QuotaLimits, ResumableSettings,
        Thumbnailer, TransferSlots, UploadHook, spawn_sweeper,
    },
    messaging::{
        Engine, Feed, HubLimits, LogLimits, MessagingServer, NatsStore, RateLimit, RateLimiter,
        RedbStore, Router as MessageRouter, spawn_purger,
    },
    metrics::{self, GrpcMetricsLayer},
    pb::{
        self, media_service_server::MediaServiceServer,
        messaging_service_server::MessagingServiceServer,
    },
    revocation::Revocations,
    storage::{self, Location},
    tls::{Tls, TlsFiles},
};

/// The most request metadata (all headers together) the server reads: room for a
/// token of [`auth::MAX_TOKEN_BYTES`] and more, so that a long token is refused with a
/// status that says so; past this, HTTP/2 itself refuses the headers.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// How long aborted transfers get, after the grace period, to remove their data.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// The router of every service, behind the layers that answer CORS (when configured),
/// translate gRPC-Web and measure each call, outermost first.
type MeasuredRouter = Router<
    Stack<
        OversizeLayer,
        Stack<
            GrpcMetricsLayer,
            Stack<GrpcWebLayer, Stack<Either<CorsLayer, Identity>, Stack<HttpLayer, Identity>>>,
        >,
    >,
>;

/// The server's state, opened from the configuration.
struct Parts {
    /// Verifies bearer tokens.
    authenticator: Authenticator,
    /// The media library.
    media: MediaStore,
    /// Per-user transfer slots.
    slots: TransferSlots,
    /// Where messages go: this process, or the bus shared with other replicas.
    messages: Messages,
    /// The Subscribe streams on this process, fed by the messaging store.
    feed: Feed,
    /// Every upload and download task.
    transfers: TaskTracker,
    /// Revoked tokens, followed from the data folder and the bus.
    revocations: Revocations,
    /// The tasks that follow them.
    revocation_watchers: Vec<JoinHandle<()>>,
    /// Signs and checks media links: a key derived from the token secret.
    link_key: LinkKey,
    /// With `--http-redirect-to-store` on S3: presigns the redirects.
    signer: Option<Arc<dyn Signer>>,
}

/// What messaging runs on.
enum Messages {
    /// One server: the event log (with the offline cache) on disk, everything else in
    /// memory.
    Local(RedbStore),
    /// Several replicas: NATS, and this replica's cluster-wide leases (one set, with
    /// one refresher, for transfers and streams alike).
    Bus(Box<Replicated>),
}

/// The bus and this replica's leases on it.
struct Replicated {
    /// NATS.
    bus: Bus,
    /// Transfer and stream leases.
    leases: Leases,
}

impl Messages {
    fn bus(&self) -> Option<&Bus> {
        match self {
            Self::Local(_) => None,
            Self::Bus(replicated) => Some(&replicated.bus),
        }
    }
}

/// The signals of a shutdown.
struct Signals {
    /// Turns true when shutdown starts: Subscribe streams end, background tasks stop.
    stop: watch::Receiver<bool>,
    /// Turns true when the grace period is over: open uploads abort.
    abort: watch::Receiver<bool>,
}

impl Parts {
    /// Reads the secret, opens the media store and the offline cache, and connects to
    /// the bus if there is one.
    async fn open(config: &ServeConfig) -> Result<Self, Error> {
        let secret = auth::resolve_secret(config.jwt_secret.as_deref(), &config.data_dir)
            .map_err(|e| Error::Internal(format!("reading or creating the JWT secret: {e}")))?;
        let location = Location::parse(config.storage.as_deref(), &config.data_dir)?;
        let (store, multipart) = storage::open_with_parts(&location)?;
        tracing::info!(storage = ?location, "media storage opened");
        let limits = MediaLimits {
            quota: QuotaLimits {
                live_bytes: config.quota_bytes,
                bytes_per_hour: config.quota_bytes_per_hour,
            },
            max_upload_size: config.max_upload_size,
            ttl: config.media_ttl,
            idle_timeout: config.idle_timeout,
            part_size: location.part_size(),
            grace: config.content_grace,
        };
        let feed = Feed::new(config.subscriber_buffer);
        let messages = match &config.bus {
            Some(url) => {
                let bus = Bus::connect(url, bus_settings(config)).await?;
                tracing::info!(%url, "connected to the bus: running as one of several replicas");
                let leases = Leases::new(bus.clone());
                Messages::Bus(Box::new(Replicated { bus, leases }))
            }
            // The file keeps its name: an older server's offline cache moves into the log.
            None => Messages::Local(RedbStore::open_with_hook(
                (!config.event_log_in_memory)
                    .then(|| config.data_dir.join("offline.redb"))
                    .as_deref(),
                LogLimits {
                    max_per_user: config.offline_cache_size,
                    max_per_sender: config.offline_quota_per_sender as u64,
                    max_bytes: config.offline_cache_max_bytes,
                    ttl: config.offline_ttl,
                    log_size: config.event_log_size,
                    log_ttl: config.event_log_ttl,
                    channel_size: config.channel_history_size,
                    channel_ttl: config.channel_history_ttl,
                },
                feed.clone(),
                config.event_hook.recorded(),
            )?),
        };
        let mut slots = TransferSlots::new(config.max_transfers_per_user);
        if let Messages::Bus(replicated) = &messages {
            slots = slots.cluster_wide(replicated.leases.clone());
        }
        let revocations = Revocations::default();
        let mut revocation_watchers = vec![revocations.watch_file(&config.data_dir)];
        if let Some(bus) = messages.bus() {
            revocation_watchers.push(revocations.watch_bus(bus).await?);
        }
        let signer = match (config.http_redirect_to_store, storage::signer(&location)?) {
            (false, _) => None,
            (true, Some(signer)) => Some(signer),
            (true, None) => {
                return Err(Error::invalid(
                    "--http-redirect-to-store needs S3 storage (--storage s3://bucket/prefix)",
                ));
            }
        };
        Ok(Self {
            link_key: LinkKey::derive(&secret),
            signer,
            authenticator: Authenticator::with_revocations(&secret, revocations.clone()),
            revocations,
            revocation_watchers,
            media: MediaStore::new(store, limits)
                .with_resumable(resumable_settings(config, &location)?, multipart),
            slots,
            messages,
            feed,
            transfers: TaskTracker::new(),
        })
    }

    /// Every gRPC service, and the health reporter to flip at shutdown.
    async fn router(
        &self,
        config: &ServeConfig,
        signals: Signals,
    ) -> Result<(MeasuredRouter, Health), Error> {
        let (health, health_service) = Health::new().await;
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| Error::Internal(format!("building reflection v1: {e}")))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| Error::Internal(format!("building reflection v1alpha: {e}")))?;
        let hub_limits = HubLimits {
            max_channels_per_user: config.max_channels_per_user,
            max_streams_per_user: config.max_streams_per_user,
            subscriber_buffer: config.subscriber_buffer,
        };
        let (router, rate): (Arc<dyn MessageRouter>, RateLimit) = match &self.messages {
            Messages::Bus(bus) => (
                Arc::new(Engine::new(
                    Arc::new(NatsStore::start(
                        bus.bus.clone(),
                        bus.leases.clone(),
                        self.feed.clone(),
                    )),
                    self.feed.clone(),
                    hub_limits,
                )),
                RateLimit::Cluster(Box::new(BusRate::new(bus.bus.clone()))),
            ),
            Messages::Local(cache) => (
                Arc::new(Engine::new(
                    Arc::new(cache.clone()),
                    self.feed.clone(),
                    hub_limits,
                )),
                RateLimit::Local(RateLimiter::new(config.rate_limit, config.rate_window)),
            ),
        };
        let thumbnailer = Thumbnailer::new(config.thumbnail_concurrency);
        let media = MediaServer::new(
            self.media.clone(),
            self.slots.clone(),
            signals.abort,
            self.transfers.clone(),
        )
        .with_thumbnailer(thumbnailer.clone())
        .with_revocations(self.revocations.clone())
        .with_links(self.link_key.clone(), link_settings(config));
        let messaging = MessagingServer::new(
            router,
            self.media.clone(),
            rate,
            signals.stop,
            self.revocations.clone(),
        )
        .with_dedup_window(config.dedup_window);
        let router = transport(Server::builder(), config)
            // gRPC-Web on the same port: browsers speak it over HTTP/1.1 (or HTTP/2
            // through TLS); native gRPC over HTTP/2 passes through untouched.
            .accept_http1(true)
            // Media over plain HTTP (`/media/v1/`) on the same port, answered before
            // any gRPC layer sees the request.
            .layer(HttpLayer::new(self.media_http(config, thumbnailer)))
            .layer(cors(&config.cors_allow_origins)?)
            .layer(GrpcWebLayer::new())
            .layer(GrpcMetricsLayer)
            .layer(OversizeLayer)
            .trace_fn(crate::telemetry::rpc_span)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                MediaServiceServer::new(media).max_decoding_message_size(TRANSPORT_MESSAGE_LIMIT),
                self.authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                MessagingServiceServer::new(messaging)
                    .max_decoding_message_size(TRANSPORT_MESSAGE_LIMIT),
                self.authenticator.clone(),
            ));
        Ok((router, health))
    }
}

/// Serves gRPC on `grpc` and metrics on `metrics` until `shutdown` completes, then
/// stops gracefully: health goes NOT_SERVING, Subscribe streams end, new calls are
/// refused, and calls in flight get `config.shutdown_grace` to finish; uploads still
/// open after that are aborted and cleaned up before this returns.
pub async fn run(
    config: ServeConfig,
    grpc: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut parts = Parts::open(&config).await?;
    let addr = grpc
        .local_addr()
        .map_err(|e| Error::Internal(format!("the gRPC address: {e}")))?;
    if let Some(hook) = upload_hook(&config, &parts.link_key, addr)? {
        parts.media = parts.media.with_hook(hook);
    }
    let (stop_tx, stop) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    let signals = Signals {
        stop: stop.clone(),
        abort,
    };
    let prometheus = metrics::install();
    let (router, health) = parts.router(&config, signals).await?;
    let metrics_addr = metrics
        .local_addr()
        .map_err(|e| Error::Internal(format!("the metrics address: {e}")))?;
    let mut store_check = health.spawn_store_check(
        parts.media.object_store().clone(),
        parts.messages.bus().cloned(),
        config.health_check_interval,
    );
    let (offline_chore, gauges) = match &parts.messages {
        Messages::Local(cache) => (
            spawn_purger(cache.clone(), config.sweep_interval, stop.clone()),
            offline_gauges(cache.clone()),
        ),
        // JetStream expires cached messages itself; the gauges follow its stream.
        Messages::Bus(bus) => (
            spawn_bus_gauges(bus.bus.clone(), stop.clone()),
            Arc::new(|| {}) as Arc<dyn Fn() + Send + Sync>,
        ),
    };
    let background: [JoinHandle<()>; 3] = [
        spawn_sweeper(parts.media.clone(), config.sweep_interval, stop.clone()),
        offline_chore,
        tokio::spawn(metrics::serve(metrics, prometheus, gauges)),
    ];
    let local = match &parts.messages {
        Messages::Local(cache) => Some(cache),
        Messages::Bus(_) => None,
    };
    let event_hook = hooks::events::start(
        &config.event_hook,
        local,
        parts.messages.bus(),
        stop.clone(),
    )
    .await?;
    let mut stop_serving = stop;
    let stopped = async move {
        let _ = stop_serving.wait_for(|stop| *stop).await;
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::new(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca.clone(),
        })?),
        _ => None,
    };
    let mut serving = match &tls {
        Some(tls) => tokio::spawn(router.serve_with_incoming_shutdown(tls.incoming(grpc), stopped)),
        // tonic does not set TCP_NODELAY on incoming sockets by itself; without it
        // small frames wait for delayed ACKs and uploads crawl.
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped,
        )),
    };
    // Scripts and tests wait for this line: everything is ready when it is written.
    tracing::info!(%addr, %metrics_addr, tls = tls.is_some(), data_dir = %config.data_dir.display(), "courier-server listening");

    let result = tokio::select! {
        result = &mut serving => flatten(result),
        () = shutdown => {
            tracing::info!(grace_secs = config.shutdown_grace.as_secs_f64(), "shutting down");
            // Stopped (and waited for) first, so that it cannot turn readiness back to
            // SERVING.
            store_check.abort();
            let _ = (&mut store_check).await;
            health.close().await;
            let _ = stop_tx.send(true);
            match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
                Ok(result) => flatten(result),
                Err(_) => {
                    tracing::warn!("calls were still open when the grace period ended; aborting them");
                    let _ = abort_tx.send(true);
                    // Aborted uploads remove their partial data; wait for exactly the
                    // transfer tasks still running (bounded).
                    parts.transfers.close();
                    if tokio::time::timeout(ABORT_WAIT, parts.transfers.wait()).await.is_err() {
                        tracing::warn!(left = parts.transfers.len(), "transfers did not stop in time");
                    }
                    serving.abort();
                    Ok(())
                }
            }
        }
    };
    store_check.abort();
    if let Some(task) = event_hook {
        // It finishes the post in flight and saves its cursor.
        let _ = stop_tx.send(true);
        let wait = config.event_hook.timeout + ABORT_WAIT;
        let _ = tokio::time::timeout(wait, task).await;
    }
    for task in background.into_iter().chain(parts.revocation_watchers) {
        task.abort();
    }
    tracing::info!("stopped");
    result
}

/// The HTTP/2 transport settings (flags in config.rs; figures in BENCHMARKS.md): flow
/// control windows that follow each connection's bandwidth-delay product by default
/// (fixed ones otherwise), so that window updates do not throttle a transfer on a
/// fast link or one with a long round trip; large frames; the header list limit.
/// TCP_NODELAY is set on the incoming sockets in [`run`].
fn transport(builder: Server, config: &ServeConfig) -> Server {
    builder
        .initial_stream_window_size(config.http2_stream_window)
        .initial_connection_window_size(config.http2_connection_window)
        .http2_adaptive_window(Some(config.http2_adaptive_window))
        .max_frame_size(config.http2_max_frame_size)
        .http2_max_header_list_size(MAX_HEADER_LIST)
}

impl Parts {
    /// The HTTP side of media links.
    fn media_http(&self, config: &ServeConfig, thumbnailer: Thumbnailer) -> MediaHttp {
        let http = MediaHttp::new(
            self.media.clone(),
            thumbnailer,
            self.link_key.clone(),
            self.authenticator.clone(),
            self.revocations.clone(),
            HttpSettings {
                cache_public: config.media_url_cache == "public",
                cors_origins: config.http_cors_origins.clone(),
                idle_timeout: config.http_idle_timeout,
                max_requests: config.http_max_requests,
            },
        );
        match &self.signer {
            Some(signer) => http.with_redirects(signer.clone()),
            None => http,
        }
    }
}

/// The upload hook of `--upload-hook`, whose links to staged bytes start with
/// `--public-url`, else this server's own address (`addr`; 127.0.0.1 for 0.0.0.0).
fn upload_hook(
    config: &ServeConfig,
    key: &LinkKey,
    addr: std::net::SocketAddr,
) -> Result<Option<UploadHook>, Error> {
    let Some(url) = &config.upload_hook else {
        return Ok(None);
    };
    let signer = hooks::Signer::new(&config.upload_hook_secrets).map_err(Error::invalid)?;
    let timeout = config.upload_hook_timeout;
    let client = hooks::Hook::new(url, signer, timeout, config.upload_hook_ca_file.as_deref())
        .map_err(Error::invalid)?;
    let failure = match config.upload_hook_failure.as_str() {
        "open" => HookFailure::Open,
        _ => HookFailure::Closed,
    };
    let base = match &config.public_url {
        Some(base) => base.clone(),
        None => {
            let mut local = addr;
            if local.ip().is_unspecified() {
                local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{local}")
        }
    };
    tracing::info!(url = %client.url(), ?failure, %base, "upload hook configured");
    Ok(Some(UploadHook::new(
        client,
        timeout,
        failure,
        key.clone(),
        &base,
    )))
}

/// The lifetime rules and base of GetMediaUrl's links.
fn link_settings(config: &ServeConfig) -> LinkSettings {
    LinkSettings {
        default_ttl: config.media_url_ttl,
        max_ttl: config.media_url_max_ttl.max(config.media_url_ttl),
        public_url: config.public_url.clone(),
        tls: config.tls_cert.is_some(),
    }
}

/// The request headers a gRPC-Web page may send: its token, the protocol's own, and a
/// deadline.
const CORS_ALLOW_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];

/// The response headers a page may read: a refusal's status, message and details
/// (which a trailers-only answer carries as headers).
const CORS_EXPOSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// How long a browser may cache a preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The CORS layer of `--cors-allow-origin` (`*` for any origin); none without the flag,
/// so that only pages of the server's own origin can call it from a browser.
fn cors(origins: &[String]) -> Result<Either<CorsLayer, Identity>, Error> {
    if origins.is_empty() {
        return Ok(Either::Right(Identity::new()));
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(format!("a CORS origin is not a header value: {e}")))?;
        AllowOrigin::list(values)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(CORS_ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(CORS_EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(CORS_MAX_AGE);
    Ok(Either::Left(layer))
}

/// The part size and idle expiry of resumable uploads: `--upload-part-size`, else the
/// store's own part size (1 MiB on a folder, 5 MiB on S3, whose parts but the last must
/// be at least 5 MiB: a smaller flag is refused there).
fn resumable_settings(
    config: &ServeConfig,
    location: &Location,
) -> Result<ResumableSettings, Error> {
    let part_size = config
        .upload_part_size
        .unwrap_or(location.part_size() as u64);
    if matches!(location, Location::S3 { .. }) && part_size < 5 * 1024 * 1024 {
        return Err(Error::invalid(format!(
            "--upload-part-size {part_size}: S3 needs parts of at least 5 MiB (5242880 bytes)"
        )));
    }
    Ok(ResumableSettings {
        part_size,
        ttl: config.resumable_upload_ttl,
    })
}

/// The bus's stream settings, from the command line.
fn bus_settings(config: &ServeConfig) -> BusSettings {
    BusSettings {
        offline_per_user: config.offline_cache_size,
        offline_ttl: config.offline_ttl,
        offline_max_bytes: config.offline_cache_max_bytes,
        rate_limit: config.rate_limit,
        rate_window: config.rate_window,
        lease_ttl: config.bus_lease_ttl,
        replicas: usize::from(config.bus_replicas),
        log_size: config.event_log_size,
        log_ttl: config.event_log_ttl,
        dedup_window: config.dedup_window,
    }
}

/// With a bus: the offline cache's gauges from its JetStream stream, every 5 s.
fn spawn_bus_gauges(bus: Bus, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    crate::periodic::spawn_periodic("bus gauges", Duration::from_secs(5), stop, move || {
        let bus = bus.clone();
        async move {
            let info = bus
                .stream(crate::bus::OFFLINE)
                .await?
                .get_info()
                .await
                .map_err(|e| crate::bus::unavailable("reading the offline cache's size", e))?;
            metrics::set_offline_cache(info.state.messages, info.state.bytes);
            Ok(0)
        }
    })
}

/// Samples the offline cache's size into its gauges before each scrape (one server;
/// with a bus, [`spawn_bus_gauges`] sets them).
fn offline_gauges(cache: RedbStore) -> Arc<dyn Fn() + Send + Sync> {
    Arc::new(move || match cache.size() {
        Ok((messages, bytes)) => metrics::set_offline_cache(messages, bytes),
        Err(e) => tracing::warn!(error = %e, "reading the offline cache's size"),
    })
}

/// Reflection over courier's services, health and the error details; built once per protocol version
/// (v1 and v1alpha, which many grpcurl builds still speak).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.ErrorInfo and the other error details, so that grpcurl and other
        // reflection clients show a refusal's reason instead of its bytes.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

fn flatten(
    result: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), Error> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Internal(format!("the gRPC server failed: {e}"))),
        Err(e) => Err(Error::Internal(format!("the gRPC server task failed: {e}"))),
    }
}
