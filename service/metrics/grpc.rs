//! A tower layer on the tonic server that measures every gRPC call: calls finished by
//! method and status code, latency (headers in to the end of the response, so a
//! stream's whole life), calls open now, message bytes in and out, and refusals by
//! the `google.rpc.ErrorInfo` reason they carry. It sits in front of authentication
//! and the services, so every call is seen, refused or not.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{counter, gauge, histogram};
use prost::Message as _;
use tonic::{Code, Status, body::Body};
use tonic_types::StatusExt;
use tower_layer::Layer;
use tower_service::Service;

use super::names;
use crate::pb::ErrorReason;

/// Adds [`GrpcMetrics`] to a tonic server (`Server::builder().layer(..)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service that [`GrpcMetricsLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    /// The routes.
    inner: S,
}

impl<S, ResBody> Service<Request<Body>> for GrpcMetrics<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (service, method) = labels(request.uri().path());
        let received =
            counter!(names::GRPC_RECEIVED_BYTES, "service" => service, "method" => method);
        let request = request.map(|body| {
            Body::new(Counted {
                inner: body,
                bytes: received,
            })
        });
        // Dropped with the future if the call ends before its response headers.
        let mut call = Call::start(service, method);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            call.saw(response.headers());
            Ok(response.map(|body| {
                Body::new(Observed {
                    inner: Body::new(body),
                    call: Some(call),
                })
            }))
        })
    }
}

/// Known `/service/method` paths and their labels. A path that is not one of them is
/// labelled `unknown`, so a client cannot grow the label sets without bound.
fn labels(path: &str) -> (&'static str, &'static str) {
    static KNOWN: OnceLock<HashMap<String, (&'static str, &'static str)>> = OnceLock::new();
    KNOWN
        .get_or_init(known_methods)
        .get(path)
        .copied()
        .unwrap_or(("unknown", "unknown"))
}

/// Every method the server serves, from the descriptor sets it was built with. The
/// names are leaked once: a fixed, small set for the life of the process.
fn known_methods() -> HashMap<String, (&'static str, &'static str)> {
    let mut known = HashMap::new();
    for set in [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                let service_label: &'static str = Box::leak(full.clone().into_boxed_str());
                for method in &service.method {
                    let method_label: &'static str =
                        Box::leak(method.name().to_owned().into_boxed_str());
                    known.insert(
                        format!("/{full}/{method_label}"),
                        (service_label, method_label),
                    );
                }
            }
        }
    }
    for service in [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        known.insert(
            format!("/{service}/ServerReflectionInfo"),
            (service, "ServerReflectionInfo"),
        );
    }
    known
}

/// One call being measured; recorded when dropped (the response ended, failed or the
/// client went away).
struct Call {
    service: &'static str,
    method: &'static str,
    started: Instant,
    /// The status, once the headers or trailers carried one.
    code: Option<Code>,
    /// The ErrorInfo reason of a refusal, when it is one of courier's.
    reason: Option<&'static str>,
    /// True once the response body ended (a call dropped before is CANCELLED).
    ended: bool,
}

impl Call {
    fn start(service: &'static str, method: &'static str) -> Self {
        gauge!(names::GRPC_IN_FLIGHT, "service" => service, "method" => method).increment(1.0);
        Self {
            service,
            method,
            started: Instant::now(),
            code: None,
            reason: None,
            ended: false,
        }
    }

    /// Reads the status from response headers (a trailers-only answer) or trailers.
    fn saw(&mut self, headers: &HeaderMap) {
        let Some(status) = Status::from_header_map(headers) else {
            return;
        };
        self.code = Some(status.code());
        if status.code() != Code::Ok {
            self.reason = status
                .get_error_details()
                .error_info()
                .and_then(|info| ErrorReason::from_str_name(&info.reason))
                .map(|reason| reason.as_str_name());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(code), _) => code,
            // The body ended without a grpc-status: not a gRPC answer.
            (None, true) => Code::Unknown,
            (None, false) => Code::Cancelled,
        };
        let code = code_name(code);
        let (service, method) = (self.service, self.method);
        gauge!(names::GRPC_IN_FLIGHT, "service" => service, "method" => method).decrement(1.0);
        counter!(names::GRPC_REQUESTS, "service" => service, "method" => method, "code" => code)
            .increment(1);
        histogram!(names::GRPC_DURATION, "service" => service, "method" => method, "code" => code)
            .record(self.started.elapsed().as_secs_f64());
        if let Some(reason) = self.reason {
            counter!(names::REFUSALS, "reason" => reason).increment(1);
        }
    }
}

/// A request body whose data bytes are counted as they arrive.
struct Counted {
    inner: Body,
    bytes: metrics::Counter,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts data bytes, reads the status from the trailers and
/// records the call when it ends or is dropped.
struct Observed {
    inner: Body,
    call: Option<Call>,
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(call) = &mut self.call {
                    if let Some(data) = frame.data_ref() {
                        counter!(names::GRPC_SENT_BYTES, "service" => call.service, "method" => call.method)
                            .increment(data.len() as u64);
                    } else if let Some(trailers) = frame.trailers_ref() {
                        call.saw(trailers);
                    }
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(mut call) = self.call.take() {
                    call.ended = true;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The canonical name of a gRPC status code, as in the gRPC spec (`OK`,
/// `RESOURCE_EXHAUSTED`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_keep_their_names_and_others_are_unknown() {
        assert_eq!(
            labels("/courier.v1.MediaService/UploadMedia"),
            ("courier.v1.MediaService", "UploadMedia")
        );
        assert_eq!(
            labels("/courier.v1.MessagingService/Subscribe"),
            ("courier.v1.MessagingService", "Subscribe")
        );
        assert_eq!(
            labels("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            labels("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        for path in ["/courier.v1.MediaService/Made-up-1", "/x/y", "/", ""] {
            assert_eq!(labels(path), ("unknown", "unknown"), "{path}");
        }
    }

    #[test]
    fn codes_are_named_as_in_the_grpc_spec() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
