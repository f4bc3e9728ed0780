//! `grpc.health.v1.Health` with shutdown in mind: when shutdown starts, every name —
//! the overall status `""` (readiness) and each service's — turns NOT_SERVING at once,
//! and every `Watch` stream ends right after telling its watcher so, instead of holding
//! the process open for the whole grace period. One name is the exception:
//! [`LIVENESS`] answers SERVING for as long as the process answers at all, shutdown
//! included, so that a liveness probe never restarts a pod that is draining.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt, path::Path as StorePath};
use tokio::{sync::watch, task::JoinHandle};
use tonic::{Request, Response, Status};
use tonic_health::{
    ServingStatus,
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_check_response::ServingStatus as WireStatus, health_server,
    },
    server::{HealthReporter, HealthService},
};

use crate::pb::{
    media_service_server::MediaServiceServer, messaging_service_server::MessagingServiceServer,
};
use crate::{bus::Bus, media::MediaServer, messaging::MessagingServer};

/// The health name of liveness: SERVING from start to exit, depending on nothing but
/// the process (not the store, not the bus, not shutdown). Kubernetes' liveness probe
/// asks for it; readiness asks for the overall status `""`.
pub const LIVENESS: &str = "courier.v1.Liveness";

/// The health of the server: a reporter for the statuses and a flag for shutdown.
#[derive(Clone)]
pub struct Health {
    /// Sets the status of each name.
    reporter: HealthReporter,
    /// Turns true when shutdown starts, before any status changes.
    closing: watch::Sender<bool>,
}

impl Health {
    /// Every name SERVING, and the gRPC service that reports them.
    pub async fn new() -> (Self, health_server::HealthServer<ClosingHealth>) {
        let reporter = HealthReporter::new();
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        reporter
            .set_serving::<MediaServiceServer<MediaServer>>()
            .await;
        reporter
            .set_serving::<MessagingServiceServer<MessagingServer>>()
            .await;
        let (closing, closing_rx) = watch::channel(false);
        let service = ClosingHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            closing: closing_rx,
        };
        (
            Self { reporter, closing },
            health_server::HealthServer::new(service),
        )
    }

    /// Readiness follows the media store and the bus: every `interval` a HEAD of a key
    /// that need not exist tells whether the store answers, and the NATS connection's
    /// state whether the bus is there; the overall status `""` turns NOT_SERVING while
    /// either is missing (a refused connection, a timeout) and SERVING again once both
    /// are back. Liveness is not touched: a NATS blip must not restart every replica.
    /// Abort the task before [`Health::close`].
    pub fn spawn_store_check(
        &self,
        store: Arc<dyn ObjectStore>,
        bus: Option<Bus>,
        interval: Duration,
    ) -> JoinHandle<()> {
        let reporter = self.reporter.clone();
        tokio::spawn(async move {
            let mut ready = true;
            loop {
                tokio::time::sleep(interval).await;
                let reachable = store_answers(store.as_ref(), interval).await
                    && bus.as_ref().is_none_or(Bus::connected);
                if reachable == ready {
                    continue;
                }
                ready = reachable;
                if ready {
                    tracing::info!("the media store and the bus answer again; ready");
                    reporter
                        .set_service_status("", ServingStatus::Serving)
                        .await;
                } else {
                    tracing::warn!("the media store or the bus does not answer; not ready");
                    reporter
                        .set_service_status("", ServingStatus::NotServing)
                        .await;
                }
            }
        })
    }

    /// Shutdown has started: every name but [`LIVENESS`] NOT_SERVING, every watcher
    /// told and let go.
    pub async fn close(&self) {
        // First the flag, so that a watcher who sees NOT_SERVING from here on ends.
        let _ = self.closing.send(true);
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.reporter
            .set_not_serving::<MediaServiceServer<MediaServer>>()
            .await;
        self.reporter
            .set_not_serving::<MessagingServiceServer<MessagingServer>>()
            .await;
    }
}

/// Whether `store` answers a HEAD (found or not found) within `limit` (at least 1 s).
async fn store_answers(store: &dyn ObjectStore, limit: Duration) -> bool {
    let probe = StorePath::from("health-probe");
    match tokio::time::timeout(limit.max(Duration::from_secs(1)), store.head(&probe)).await {
        Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

/// tonic-health's service, whose `Watch` streams end once shutdown has started and
/// the watcher has been sent NOT_SERVING.
pub struct ClosingHealth {
    /// Answers checks and feeds watches.
    inner: HealthService,
    /// True once shutdown has started.
    closing: watch::Receiver<bool>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl health_server::Health for ClosingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let liveness = request.get_ref().service == LIVENESS;
        let statuses = self.inner.watch(request).await?.into_inner();
        let closing = self.closing.clone();
        if liveness {
            // Liveness never turns NOT_SERVING: its watches end when shutdown starts.
            let mut closing = closing;
            let closed = async move {
                let _ = closing.wait_for(|closing| *closing).await;
            };
            return Ok(Response::new(statuses.take_until(closed).boxed()));
        }
        // After the item that tells a closing server's watcher NOT_SERVING, the stream
        // ends without waiting for another status.
        let stream = futures::stream::unfold((statuses, false), move |(mut statuses, told)| {
            let closing = closing.clone();
            async move {
                if told {
                    return None;
                }
                let item = statuses.next().await?;
                let not_serving = matches!(&item, Ok(r) if r.status() == WireStatus::NotServing);
                let told = not_serving && *closing.borrow();
                Some((item, (statuses, told)))
            }
        });
        Ok(Response::new(stream.boxed()))
    }
}
