//! Traces (`--otlp-endpoint`): each test runs a small OTLP receiver of its own (a gRPC
//! server of the OTLP TraceService, from opentelemetry-proto's generated types), points
//! real `courier-server` processes at it, and checks the spans they export: an upload
//! is an RPC span with storage spans under it, and a message sent on one replica and
//! delivered by another (through a real nats-server) is one trace, continuing the
//! caller's `traceparent`.

#[macro_use]
mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    Backend, Feed, Nats, Server, authed, body, data_frames, header, header_frame, messaging,
    pattern, text, token,
};
use courier_server::pb::{self, MediaKind, PeerMessageState, message::Body};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// One exported span, as the receiver saw it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An OTLP/gRPC trace receiver on 127.0.0.1 that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|kv| {
                            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(Value::StringValue(s)) => s.clone(),
                                Some(Value::IntValue(i)) => i.to_string(),
                                Some(Value::BoolValue(b)) => b.to_string(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), value)
                        })
                        .collect();
                    spans.push(Span {
                        name: span.name,
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        attributes,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Starts a receiver; returns it and its endpoint URL.
    async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the OTLP receiver");
        let addr: SocketAddr = listener.local_addr().expect("its address");
        let receiver = Self::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (receiver, format!("http://{addr}"))
    }

    /// Waits (at most 20 s) until a span matching `pick` has arrived, and returns it.
    async fn wait_for(&self, what: &str, pick: impl Fn(&Span) -> bool) -> Span {
        let start = Instant::now();
        loop {
            if let Some(span) = self
                .spans
                .lock()
                .expect("not poisoned")
                .iter()
                .find(|s| pick(s))
            {
                return span.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no span {what} within 20 s; got {:#?}",
                self.spans.lock().expect("not poisoned")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn all(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

/// The flags and environment of a server exporting to `endpoint` (batches every 100 ms,
/// so that the test need not wait the default 5 s).
fn traced(endpoint: &str) -> (Vec<String>, [(&'static str, &'static str); 1]) {
    (
        vec!["--otlp-endpoint".to_owned(), endpoint.to_owned()],
        [("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
}

/// A W3C traceparent of a caller's own trace: (header, trace ID, span ID).
fn caller_context(seed: u8) -> (String, String, String) {
    let trace_id = hex::encode([seed; 16]);
    let span_id = hex::encode([seed.wrapping_add(1); 8]);
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

/// `request` with the caller's `traceparent` in its metadata.
fn with_traceparent<T>(mut request: Request<T>, traceparent: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    request
}

/// Whether `span` descends from `ancestor` among `spans`.
fn descends_from(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..16 {
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = next.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

async fn upload_is_an_rpc_span_with_storage_spans_under_it(backend: Backend) {
    let (receiver, endpoint) = Receiver::start().await;
    let (flags, env) = traced(&endpoint);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_env(&backend, &flags, &env);
    let (traceparent, trace_id, caller_span) = caller_context(0x4a);

    // 12 MiB: a multipart upload on S3 (parts of 5 MiB), one put on a folder.
    let data = pattern(12 * 1024 * 1024, 7);
    let mut frames = vec![header_frame(header(
        MediaKind::File,
        "traced.bin",
        data.len() as u64,
    ))];
    frames.extend(data_frames(&data, 256 * 1024));
    let request = with_traceparent(
        authed(&token("alice"), futures::stream::iter(frames)),
        &traceparent,
    );
    let media = server
        .media()
        .await
        .upload_media(request)
        .await
        .expect("the upload succeeds")
        .into_inner()
        .media
        .expect("a record");
    assert_eq!(media.size, data.len() as u64);

    let rpc = receiver
        .wait_for("of the UploadMedia call", |s| {
            s.name == "courier.v1.MediaService/UploadMedia"
        })
        .await;
    assert_eq!(rpc.trace_id, trace_id, "the caller's trace is continued");
    assert_eq!(
        rpc.parent_span_id, caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(rpc.attribute("rpc.system"), Some("grpc"));
    assert_eq!(rpc.attribute("rpc.method"), Some("UploadMedia"));
    // The object is written (one put, or a multipart upload completed), then published
    // under its media ID; both under the call's span.
    let write = receiver
        .wait_for("of the storage write", |s| {
            s.name == "storage.put" || s.name == "storage.complete_multipart"
        })
        .await;
    let publish = receiver
        .wait_for("of the record's publication", |s| {
            s.name == "storage.publish"
        })
        .await;
    let spans = receiver.all();
    for span in [&write, &publish] {
        assert_eq!(span.trace_id, trace_id, "{span:?} is in the call's trace");
        assert!(
            descends_from(&spans, span, &rpc),
            "{span:?} descends from the RPC span {rpc:?}"
        );
    }
    assert_eq!(
        publish.attribute("media_id"),
        Some(media.media_id.as_str()),
        "the publication names the media"
    );
    if matches!(backend, Backend::S3 { .. }) {
        let parts: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "storage.put_part")
            .collect();
        assert!(parts.len() >= 2, "12 MiB goes up in parts: {spans:#?}");
        assert!(parts.iter().all(|p| p.parent_span_id == rpc.span_id));
    }
}

on_every_backend!(upload_is_an_rpc_span_with_storage_spans_under_it);

/// A message from alice on r1 to bob on r2 (peer and channel), through a real
/// nats-server: r2's delivery span is in the same trace as r1's RPC span, the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_across_replicas_is_one_trace() {
    let Some(nats) = Nats::start() else { return };
    let media = tempfile::tempdir().expect("a shared media folder");
    let backend = Backend::shared(media.path());
    let (receiver1, endpoint1) = Receiver::start().await;
    let (receiver2, endpoint2) = Receiver::start().await;
    let start = |endpoint: &str| {
        let (mut flags, env) = traced(endpoint);
        flags.extend(["--bus".to_owned(), nats.url()]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_env(&backend, &flags, &env)
    };
    let r1 = start(&endpoint1);
    let r2 = start(&endpoint2);

    let mut bob = Feed::open(&r2, "bob").await;
    let mut alice = messaging(&r1).await;

    // A peer message.
    let (traceparent, trace_id, caller_span) = caller_context(0x21);
    let request = pb::SendPeerMessageRequest {
        peer_id: "bob".to_owned(),
        message: Some(text("traced hello")),
        options: None,
        client_message_id: String::new(),
    };
    let sent = alice
        .send_peer_message(with_traceparent(
            authed(&token("alice"), request),
            &traceparent,
        ))
        .await
        .expect("sends")
        .into_inner();
    assert_eq!(sent.state(), PeerMessageState::Delivered);
    let got = bob.next_peer().await;
    assert!(matches!(body(&got.message), Body::Text(t) if t.text == "traced hello"));

    let rpc = receiver1
        .wait_for("of SendPeerMessage on r1", |s| {
            s.name == "courier.v1.MessagingService/SendPeerMessage"
        })
        .await;
    assert_eq!(rpc.trace_id, trace_id, "the caller's trace is continued");
    assert_eq!(rpc.parent_span_id, caller_span);
    let request_span = receiver1
        .wait_for("of the bus request on r1", |s| {
            s.name == "bus.request" && s.attribute("op") == Some("deliver")
        })
        .await;
    assert_eq!(request_span.trace_id, trace_id);
    assert!(descends_from(&receiver1.all(), &request_span, &rpc));
    let delivery = receiver2
        .wait_for("of the delivery on r2", |s| {
            s.name == "bus.receive" && s.attribute("op") == Some("deliver")
        })
        .await;
    assert_eq!(
        delivery.trace_id, trace_id,
        "the delivery on r2 is in the sender's trace"
    );
    assert_eq!(
        delivery.parent_span_id, request_span.span_id,
        "r2's delivery continues r1's bus request"
    );

    // A channel message.
    let mut bob_client = messaging(&r2).await;
    for (client, user) in [(&mut alice, "alice"), (&mut bob_client, "bob")] {
        client
            .join_channel(authed(
                &token(user),
                pb::JoinChannelRequest {
                    channel_id: "traced".to_owned(),
                },
            ))
            .await
            .expect("joins");
    }
    let (traceparent, trace_id, _) = caller_context(0x63);
    alice
        .send_channel_message(with_traceparent(
            authed(
                &token("alice"),
                pb::SendChannelMessageRequest {
                    channel_id: "traced".to_owned(),
                    message: Some(text("traced to the channel")),
                    client_message_id: String::new(),
                },
            ),
            &traceparent,
        ))
        .await
        .expect("sends to the channel");
    let got = bob.next_channel().await;
    assert!(matches!(body(&got.message), Body::Text(t) if t.text == "traced to the channel"));
    let publish = receiver1
        .wait_for("of the channel publish on r1", |s| {
            s.name == "bus.publish" && s.trace_id == trace_id
        })
        .await;
    let delivery = receiver2
        .wait_for("of the channel delivery on r2", |s| {
            s.name == "bus.receive"
                && s.attribute("op") == Some("channel")
                && s.trace_id == trace_id
        })
        .await;
    assert_eq!(delivery.parent_span_id, publish.span_id);
    drop(nats);
}
