//! Wires the services together and runs them until shutdown: health, reflection (v1
//! and v1alpha), MediaService and MessagingService behind authentication, the sweeper
//! and the metrics endpoint.

use std::{future::Future, sync::Arc};

use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Server, server::TcpIncoming};

use crate::{
    auth::{self, Authenticator},
    config::ServeConfig,
    error::Error,
    media::{MediaLimits, MediaServer, MediaStore, TransferSlots, spawn_sweeper},
    messaging::{HubLimits, LocalHub, MessagingServer, OfflineCache, RateLimiter},
    metrics,
    pb::{
        self, media_service_server::MediaServiceServer,
        messaging_service_server::MessagingServiceServer,
    },
    storage::{self, Location},
};

/// HTTP/2 flow-control windows: large enough that a 30 MiB transfer over a fast link
/// is not throttled by window updates.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// The largest HTTP/2 frame the server accepts: fewer, larger frames per message.
const MAX_FRAME: u32 = 1024 * 1024;

/// How long aborted uploads get, after the grace period, to remove their data.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves gRPC on `grpc` and metrics on `metrics` until `shutdown` completes, then
/// stops gracefully: health goes NOT_SERVING, new calls are refused, and calls in
/// flight get `config.shutdown_grace` to finish before this returns.
pub async fn run(
    config: ServeConfig,
    grpc: TcpListener,
    metrics: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let secret = auth::resolve_secret(config.jwt_secret.as_deref(), &config.data_dir)
        .map_err(|e| Error::Internal(format!("reading or creating the JWT secret: {e}")))?;
    let authenticator = Authenticator::new(&secret);
    let location = Location::parse(config.storage.as_deref(), &config.data_dir)?;
    let store = storage::open(&location)?;
    tracing::info!(storage = ?location, "media storage opened");
    let media = MediaStore::new(
        store,
        MediaLimits {
            max_upload_size: config.max_upload_size,
            ttl: config.media_ttl,
            idle_timeout: config.idle_timeout,
            part_size: location.part_size(),
        },
    );
    let slots = TransferSlots::new(config.max_transfers_per_user);
    let cache = OfflineCache::open(
        &config.data_dir.join("offline.redb"),
        config.offline_cache_size,
        config.offline_ttl,
    )?;
    let router = LocalHub::new(
        cache,
        HubLimits {
            max_channels_per_user: config.max_channels_per_user,
            subscriber_buffer: config.subscriber_buffer,
        },
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MediaServiceServer<MediaServer>>()
        .await;
    health
        .set_serving::<MessagingServiceServer<MessagingServer>>()
        .await;
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("building reflection v1: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("building reflection v1alpha: {e}")))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (abort_tx, abort_rx) = watch::channel(false);
    let sweeper = spawn_sweeper(media.clone(), config.sweep_interval, stop_rx.clone());

    let addr = grpc
        .local_addr()
        .map_err(|e| Error::Internal(format!("the gRPC address: {e}")))?;
    let metrics_addr = metrics
        .local_addr()
        .map_err(|e| Error::Internal(format!("the metrics address: {e}")))?;
    let metrics_task = tokio::spawn(metrics::serve(metrics));
    let mut stop_serving = stop_rx.clone();
    let router = Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(Some(MAX_FRAME))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(MediaServiceServer::with_interceptor(
            MediaServer::new(media.clone(), slots.clone(), abort_rx),
            authenticator.clone(),
        ))
        .add_service(MessagingServiceServer::with_interceptor(
            MessagingServer::new(
                Arc::new(router),
                media.clone(),
                RateLimiter::new(config.rate_limit, config.rate_window),
                stop_rx.clone(),
            ),
            authenticator,
        ));
    // tonic does not set TCP_NODELAY on incoming sockets by itself; without it small
    // frames wait for delayed ACKs and uploads crawl.
    let incoming = TcpIncoming::from(grpc).with_nodelay(Some(true));
    let mut serving = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop_serving.wait_for(|stop| *stop).await;
    }));

    // Scripts and tests wait for this line: everything is ready when it is written.
    tracing::info!(%addr, %metrics_addr, data_dir = %config.data_dir.display(), "courier-server listening");

    tokio::select! {
        result = &mut serving => {
            sweeper.abort();
            metrics_task.abort();
            return flatten(result);
        }
        () = shutdown => {}
    }
    tracing::info!(
        grace_secs = config.shutdown_grace.as_secs_f64(),
        "shutting down"
    );
    health
        .set_not_serving::<MediaServiceServer<MediaServer>>()
        .await;
    health
        .set_not_serving::<MessagingServiceServer<MessagingServer>>()
        .await;
    let _ = stop_tx.send(true);
    let result = match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
        Ok(result) => flatten(result),
        Err(_) => {
            tracing::warn!("calls were still open when the grace period ended; aborting them");
            let _ = abort_tx.send(true);
            wait_for_transfers(&slots).await;
            serving.abort();
            Ok(())
        }
    };
    let _ = sweeper.await;
    metrics_task.abort();
    tracing::info!("stopped");
    result
}

/// Reflection over courier's services and health; built once per protocol version
/// (v1 and v1alpha, which many grpcurl builds still speak).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Waits (a bounded time) for aborted uploads to remove their partial data.
async fn wait_for_transfers(slots: &TransferSlots) {
    let deadline = tokio::time::Instant::now() + ABORT_WAIT;
    while slots.total() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
