//! Logs and traces: the JSON log lines on stdout, and, when `--otlp-endpoint` is set,
//! OpenTelemetry spans exported over OTLP/gRPC.
//!
//! The spans of traces are `tracing` spans of the target [`TARGET`] (made with
//! [`otel_span!`]): one per gRPC call ([`rpc_span`], taking the W3C `traceparent` of the
//! caller's metadata as its parent), and children for the work behind it (storage
//! writes, bus requests and publishes). Across replicas the context travels in the
//! NATS message headers ([`inject`] on the sending side, [`continue_remote`] on the
//! delivering one), so a message's path from sender to receiver is one trace.
//!
//! Without `--otlp-endpoint` no layer is interested in [`TARGET`]: its spans are
//! disabled at their call sites (one cached check each), no context is extracted or
//! injected, and the log lines are those of a server without tracing.

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt,
};

/// The `tracing` target of every span that is exported as a trace span.
pub const TARGET: &str = "courier::otel";

/// A span exported as an OpenTelemetry span (target [`TARGET`], level INFO); disabled,
/// at no cost beyond a cached check, when traces are off.
macro_rules! otel_span {
    ($name:expr $(, $($fields:tt)*)?) => {
        tracing::info_span!(target: "courier::otel", $name $(, $($fields)*)?)
    };
}
pub(crate) use otel_span;

/// The tracer provider while traces are exported; flushes them on [`Telemetry::shutdown`].
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (bounded by the exporter's timeout), on a
    /// blocking thread: the export itself runs on the runtime.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "exporting the last trace spans"),
            Err(e) => tracing::warn!(error = %e, "exporting the last trace spans"),
        }
    }
}

/// Installs the global subscriber: JSON logs filtered by RUST_LOG (default `info`), and
/// with `otlp_endpoint` (for example `http://otel-collector:4317`) the trace spans,
/// exported in batches over OTLP/gRPC. Call within the Tokio runtime.
pub fn init(otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            format!("{TARGET}=off")
                .parse()
                .map_err(|e| format!("{e}"))?,
        );
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_filter(filter);
    let (provider, traces) = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| format!("the OTLP exporter for {endpoint}: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder()
                        .with_service_name("courier-server")
                        .build(),
                )
                .build();
            global::set_text_map_propagator(TraceContextPropagator::new());
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("courier-server"))
                .with_filter(Targets::new().with_target(TARGET, Level::INFO));
            (Some(provider), Some(layer))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    Ok(Telemetry { provider })
}

/// The span of one gRPC call (for tonic's `Server::trace_fn`), named after its path
/// (`courier.v1.MediaService/UploadMedia`), a child of the caller's `traceparent` if
/// the metadata carries one.
pub fn rpc_span(request: &http::Request<()>) -> Span {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = otel_span!(
        "rpc",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    if !span.is_disabled() {
        let parent =
            global::get_text_map_propagator(|p| p.extract(&HttpHeaders(request.headers())));
        let _ = span.set_parent(parent);
    }
    span
}

/// Writes the current span's context (`traceparent`) into the headers of a NATS
/// message about to be sent; nothing when traces are off.
pub fn inject(headers: &mut async_nats::HeaderMap) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut NatsHeaders(headers)));
}

/// Makes `span` (the handling of a NATS message on this replica) a child of the span
/// that sent the message, whose context its headers carry.
pub fn continue_remote(span: &Span, headers: Option<&async_nats::HeaderMap>) {
    let Some(headers) = headers else { return };
    if span.is_disabled() {
        return;
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&NatsHeadersRef(headers)));
    let _ = span.set_parent(parent);
}

/// gRPC metadata, read by the propagator.
struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// NATS headers, written by the propagator.
struct NatsHeaders<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

/// NATS headers, read by the propagator.
struct NatsHeadersRef<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}
