//! Prometheus metrics on the standard crates: the `metrics` facade, recorded by
//! `metrics-exporter-prometheus`. This module holds every series' name (names are part
//! of the contract once tests or dashboards read them), the recorder, and the counters
//! the media and messaging code bump; [`endpoint`] serves them over HTTP and [`grpc`]
//! measures every gRPC call (count, latency, bytes, refusals by reason).

mod endpoint;
mod grpc;

use std::sync::{OnceLock, atomic::Ordering};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use endpoint::serve;
pub use grpc::GrpcMetricsLayer;

use crate::pb::ErrorReason;

/// The name of every series. Tests, the client suites, the benchmarks and the Grafana
/// dashboard (k8s/monitoring) read these: rename one only with every reader updated.
pub mod names {
    pub const TRANSFERS_IN_FLIGHT: &str = "courier_transfers_in_flight";
    pub const SUBSCRIBERS: &str = "courier_subscribers";
    pub const UPLOADS_COMPLETED: &str = "courier_uploads_completed_total";
    pub const UPLOADS_FAILED: &str = "courier_uploads_failed_total";
    pub const UPLOAD_OFFERS_MISSED: &str = "courier_upload_offers_missed_total";
    pub const DOWNLOADS_STARTED: &str = "courier_downloads_started_total";
    pub const UPLOAD_BYTES: &str = "courier_upload_bytes_total";
    pub const DOWNLOAD_BYTES: &str = "courier_download_bytes_total";
    pub const TRANSFERS_REFUSED: &str = "courier_transfers_refused_total";
    pub const MEDIA_EXPIRED: &str = "courier_media_expired_total";
    pub const MESSAGES: &str = "courier_messages_total";
    pub const DELIVERIES: &str = "courier_deliveries_total";
    pub const LOG_ENTRIES_WRITTEN: &str = "courier_event_log_entries_written_total";
    pub const SUBSCRIBERS_CUT_OFF: &str = "courier_subscribers_cut_off_total";
    pub const OFFLINE_MESSAGES: &str = "courier_offline_messages_cached";
    pub const OFFLINE_BYTES: &str = "courier_offline_cache_bytes";
    pub const REFUSALS: &str = "courier_refusals_total";
    pub const GRPC_REQUESTS: &str = "courier_grpc_requests_total";
    pub const GRPC_DURATION: &str = "courier_grpc_request_duration_seconds";
    pub const GRPC_IN_FLIGHT: &str = "courier_grpc_requests_in_flight";
    pub const GRPC_RECEIVED_BYTES: &str = "courier_grpc_received_bytes_total";
    pub const GRPC_SENT_BYTES: &str = "courier_grpc_sent_bytes_total";
    pub const HTTP_REQUESTS: &str = "courier_http_requests_total";
    pub const HTTP_SENT_BYTES: &str = "courier_http_sent_bytes_total";
    pub const BUILD_INFO: &str = "courier_build_info";
    pub const THUMBNAILS_MADE: &str = "courier_thumbnails_made_total";
    pub const THUMBNAILS_STORED: &str = "courier_thumbnails_served_stored_total";
    pub const THUMBNAILS_REFUSED: &str = "courier_thumbnails_refused_total";
    pub const UPLOAD_HOOK_CALLS: &str = "courier_upload_hook_calls_total";
    pub const UPLOAD_HOOK_DURATION: &str = "courier_upload_hook_duration_seconds";

    pub const RUNTIME_TASKS: &str = "courier_runtime_alive_tasks";
    pub const LOG_GROUP_SIZE: &str = "courier_event_log_group_size";
    pub const LOG_COMMIT: &str = "courier_event_log_commit_seconds";
    pub const EVENT_HOOK_LAG: &str = "courier_event_hook_lag_seconds";
    pub const EVENT_HOOK_POSTS: &str = "courier_event_hook_posts_total";
}

/// The latency buckets of gRPC calls, in seconds: sub-millisecond unary calls up to
/// 30 MiB transfers; long Subscribe streams land in `+Inf`.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 300.0,
];

/// A counter of the facade. `fetch_add` keeps the shape of the atomics these counters
/// were before the facade, so that the code that bumps them reads the same.
#[derive(Debug)]
pub struct Counter(&'static str);

impl Counter {
    /// Adds `n`. The ordering is ignored: the recorder's own atomics are relaxed.
    pub fn fetch_add(&self, n: u64, _: Ordering) {
        counter!(self.0).increment(n);
    }
}

/// A gauge of the facade that counts things open now.
#[derive(Debug)]
pub struct Gauge(&'static str);

impl Gauge {
    /// One more (or `n` more) open.
    pub fn fetch_add(&self, n: i64, _: Ordering) {
        gauge!(self.0).increment(n as f64);
    }

    /// `n` fewer open.
    pub fn fetch_sub(&self, n: i64, _: Ordering) {
        gauge!(self.0).decrement(n as f64);
    }
}

/// The series that the media and messaging code bump directly.
#[derive(Debug)]
pub struct Metrics {
    /// Uploads and downloads running now, over all users.
    pub transfers_in_flight: Gauge,
    /// Uploads that completed and were stored.
    pub uploads_completed: Counter,
    /// Uploads refused, failed or cancelled (their data removed).
    pub uploads_failed: Counter,
    /// Header-only offers of content the caller has not stored (the client then sends
    /// the bytes): not failures.
    pub upload_offers_missed: Counter,
    /// Downloads started.
    pub downloads_started: Counter,
    /// Bytes received by uploads.
    pub upload_bytes: Counter,
    /// Bytes sent by downloads.
    pub download_bytes: Counter,
    /// Transfers refused because the user had too many in flight.
    pub transfers_refused: Counter,
    /// Expired media whose bytes the sweeper deleted.
    pub media_expired: Counter,
    /// Subscribe streams open now.
    pub subscribers: Gauge,
    /// Messages accepted (peer and channel).
    pub messages: Counter,
    /// Events queued onto Subscribe streams.
    pub deliveries: Counter,
    /// Entries written to one server's event log (a channel message is one).
    pub log_entries_written: Counter,
    /// Subscribe streams cut off for being too slow.
    pub subscribers_cut_off: Counter,
    /// Thumbnails decoded and made (then stored).
    pub thumbnails_made: Counter,
    /// Thumbnails served from the store, made earlier.
    pub thumbnails_stored: Counter,
    /// Thumbnails refused: not an image, over the limits, truncated or corrupt.
    pub thumbnails_refused: Counter,
}

/// The one set of series of this process.
pub static METRICS: Metrics = Metrics {
    transfers_in_flight: Gauge(names::TRANSFERS_IN_FLIGHT),
    uploads_completed: Counter(names::UPLOADS_COMPLETED),
    uploads_failed: Counter(names::UPLOADS_FAILED),
    upload_offers_missed: Counter(names::UPLOAD_OFFERS_MISSED),
    downloads_started: Counter(names::DOWNLOADS_STARTED),
    upload_bytes: Counter(names::UPLOAD_BYTES),
    download_bytes: Counter(names::DOWNLOAD_BYTES),
    transfers_refused: Counter(names::TRANSFERS_REFUSED),
    media_expired: Counter(names::MEDIA_EXPIRED),
    subscribers: Gauge(names::SUBSCRIBERS),
    messages: Counter(names::MESSAGES),
    deliveries: Counter(names::DELIVERIES),
    log_entries_written: Counter(names::LOG_ENTRIES_WRITTEN),
    subscribers_cut_off: Counter(names::SUBSCRIBERS_CUT_OFF),
    thumbnails_made: Counter(names::THUMBNAILS_MADE),
    thumbnails_stored: Counter(names::THUMBNAILS_STORED),
    thumbnails_refused: Counter(names::THUMBNAILS_REFUSED),
};

/// Installs the Prometheus recorder as the process's metrics recorder (once; a second
/// server in the same process shares it) and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Only an empty bucket list is refused; ours is a non-empty constant.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(names::GRPC_DURATION.into()), DURATION_BUCKETS)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "latency buckets refused; latency is a summary");
                    PrometheusBuilder::new()
                });
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Describes every series and makes the unlabelled ones (and the refusal reasons)
/// appear at zero from the start, so a reader never meets a missing line.
fn describe() {
    let counters = [
        (names::UPLOADS_COMPLETED, "Uploads stored."),
        (
            names::UPLOADS_FAILED,
            "Uploads refused, failed or cancelled.",
        ),
        (
            names::UPLOAD_OFFERS_MISSED,
            "Header-only offers of content the caller has not stored.",
        ),
        (names::DOWNLOADS_STARTED, "Downloads started."),
        (names::UPLOAD_BYTES, "Bytes received by uploads."),
        (names::DOWNLOAD_BYTES, "Bytes sent by downloads."),
        (
            names::TRANSFERS_REFUSED,
            "Transfers refused for too many in flight.",
        ),
        (
            names::MEDIA_EXPIRED,
            "Expired media deleted by the sweeper.",
        ),
        (names::MESSAGES, "Messages accepted."),
        (names::DELIVERIES, "Events queued onto Subscribe streams."),
        (
            names::LOG_ENTRIES_WRITTEN,
            "Entries written to the event log of one server (a channel message is one, whatever its members).",
        ),
        (
            names::SUBSCRIBERS_CUT_OFF,
            "Subscribe streams cut off as too slow.",
        ),
        (
            names::THUMBNAILS_MADE,
            "Thumbnails decoded, made and stored.",
        ),
        (
            names::THUMBNAILS_STORED,
            "Thumbnails served from the store.",
        ),
        (
            names::THUMBNAILS_REFUSED,
            "Thumbnails refused (not an image, over the limits, corrupt).",
        ),
        (
            names::HTTP_SENT_BYTES,
            "Body bytes sent by HTTP media responses (/media/v1/).",
        ),
    ];
    for (name, help) in counters {
        describe_counter!(name, help);
        counter!(name).increment(0);
    }
    let gauges = [
        (
            names::TRANSFERS_IN_FLIGHT,
            "Uploads and downloads running now.",
        ),
        (names::SUBSCRIBERS, "Subscribe streams open now."),
        (
            names::OFFLINE_MESSAGES,
            "Messages waiting in the offline cache.",
        ),
        (names::OFFLINE_BYTES, "Bytes held by the offline cache."),
        (
            names::RUNTIME_TASKS,
            "Tokio tasks alive in the server now (sampled at each scrape): a count that only grows is a leak.",
        ),
    ];
    for (name, help) in gauges {
        describe_gauge!(name, help);
        gauge!(name).increment(0.0);
    }
    describe_counter!(
        names::REFUSALS,
        "Calls refused with a google.rpc.ErrorInfo, by its reason."
    );
    for reason in (1..=64).filter_map(|n| ErrorReason::try_from(n).ok()) {
        counter!(names::REFUSALS, "reason" => reason.as_str_name()).increment(0);
    }
    describe_counter!(
        names::GRPC_REQUESTS,
        "gRPC calls finished, by method and status code."
    );
    describe_histogram!(
        names::GRPC_DURATION,
        Unit::Seconds,
        "gRPC call latency, from the request headers to the end of the response (a stream's whole life)."
    );
    describe_gauge!(
        names::GRPC_IN_FLIGHT,
        "gRPC calls open now (streams included), by method."
    );
    describe_counter!(
        names::GRPC_RECEIVED_BYTES,
        Unit::Bytes,
        "gRPC message bytes received, by method."
    );
    describe_counter!(
        names::GRPC_SENT_BYTES,
        Unit::Bytes,
        "gRPC message bytes sent, by method."
    );
    describe_histogram!(
        names::LOG_GROUP_SIZE,
        "Changes committed together in one transaction of one server's event log (group commit)."
    );
    describe_histogram!(
        names::LOG_COMMIT,
        Unit::Seconds,
        "Time to apply and commit (with its fsync) one group of one server's event log."
    );
    describe_counter!(
        names::HTTP_REQUESTS,
        "HTTP media requests (/media/v1/) answered, by status."
    );
    describe_gauge!(
        names::EVENT_HOOK_LAG,
        "How far the event webhook is behind: the age in seconds of the oldest event not yet posted (0 when caught up)."
    );
    describe_counter!(
        names::EVENT_HOOK_POSTS,
        "Event webhook posts by result: delivered, retried (one failed attempt), failed (a permanent 4xx, skipped), expired (past the log's retention, skipped)."
    );
    describe_counter!(
        names::UPLOAD_HOOK_CALLS,
        "Calls to the upload hook, by verdict (accept, reject, quarantine, failed_open, failed_closed)."
    );
    describe_histogram!(
        names::UPLOAD_HOOK_DURATION,
        Unit::Seconds,
        "Time from posting to the upload hook to its verdict (or failure)."
    );
    describe_gauge!(names::BUILD_INFO, "Always 1; the version is a label.");
    gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Sets the gauge of the server's live Tokio tasks (called at each scrape, on the
/// runtime).
pub fn set_runtime_tasks() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        gauge!(names::RUNTIME_TASKS).set(handle.metrics().num_alive_tasks() as f64);
    }
}

/// Records one group commit of the event log: how many changes, and how long it took.
pub fn record_group(size: usize, took: std::time::Duration) {
    metrics::histogram!(names::LOG_GROUP_SIZE).record(size as f64);
    metrics::histogram!(names::LOG_COMMIT).record(took.as_secs_f64());
}

/// Sets the gauges of the offline cache (called before each scrape).
pub fn set_offline_cache(messages: u64, bytes: u64) {
    gauge!(names::OFFLINE_MESSAGES).set(messages as f64);
    gauge!(names::OFFLINE_BYTES).set(bytes as f64);
}

/// Counts one event webhook attempt or outcome (`delivered`, `retried`, `failed`,
/// `expired`).
pub fn event_hook_post(result: &'static str) {
    counter!(names::EVENT_HOOK_POSTS, "result" => result).increment(1);
}

/// Shows an event webhook counter at 0 before its first event.
pub fn event_hook_post_init(result: &'static str) {
    counter!(names::EVENT_HOOK_POSTS, "result" => result).increment(0);
}

/// Sets the event webhook's lag, in seconds.
pub fn set_event_hook_lag(seconds: f64) {
    gauge!(names::EVENT_HOOK_LAG).set(seconds);
}

/// Counts one HTTP media request answered with `status`.
pub fn http_request(status: u16) {
    counter!(names::HTTP_REQUESTS, "status" => status.to_string()).increment(1);
}

/// Counts body bytes handed to an HTTP media response.
pub fn http_sent_bytes(n: u64) {
    counter!(names::HTTP_SENT_BYTES).increment(n);
}

/// Counts one call to the upload hook ending in `verdict`, which took `took`.
pub fn upload_hook_call(verdict: &'static str, took: std::time::Duration) {
    counter!(names::UPLOAD_HOOK_CALLS, "verdict" => verdict).increment(1);
    metrics::histogram!(names::UPLOAD_HOOK_DURATION).record(took.as_secs_f64());
}
