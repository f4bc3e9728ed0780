//! The metrics endpoint: `GET /metrics` in the Prometheus text format, served by hyper
//! (HTTP/1.1, one request per connection) on the `--metrics-listen` socket.
//!
//! Not the exporter's own HTTP listener (`PrometheusBuilder::with_http_listener`):
//! that one renders on each scrape but offers no hook before it, and the offline
//! cache's gauges are sampled just before each render ([`Refresh`]).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{net::TcpListener, sync::Semaphore};

/// How many scrapes are answered at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// How long one connection may take, from accept to the last byte.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// How often histograms are folded and idle state is cleaned, scraped or not.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Work done before each render: sets gauges that are sampled rather than counted
/// (the offline cache's size). Runs on the blocking pool.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Serves `GET /metrics` (and `GET /`) on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, refresh: Refresh) {
    let upkeep = {
        let handle = handle.clone();
        async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        }
    };
    tokio::select! {
        () = accept(listener, handle, refresh) => {}
        () = upkeep => {}
    }
}

async fn accept(listener: TcpListener, handle: PrometheusHandle, refresh: Refresh) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let handle = handle.clone();
        let refresh = refresh.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |request| answer(request, handle.clone(), refresh.clone()));
            // keep_alive(false): the response ends with the connection, so a reader
            // that reads to end of stream (the Rust testkit does) finishes at once.
            let connection = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(permit);
        });
    }
}

/// Answers one request.
async fn answer(
    request: Request<Incoming>,
    handle: PrometheusHandle,
    refresh: Refresh,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics" | "/") => {
            // A panic or a cancelled blocking task leaves the last sampled values.
            let _ = tokio::task::spawn_blocking(move || refresh()).await;
            super::set_runtime_tasks();
            (StatusCode::OK, handle.render())
        }
        (_, "/metrics" | "/") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
