//! The protobuf codec of every courier service: prost's, except that a request that
//! does not decode (a string that is not UTF-8, a truncated field) or is larger than
//! the gRPC message limit is the client's fault and says so, instead of INTERNAL. A
//! message past the transport's own ceiling, which tonic refuses by its length prefix
//! with OUT_OF_RANGE and its own words, gets the same refusal as one the codec refuses
//! ([`OversizeLayer`] for unary calls, [`transport_refusal`] for client streams).

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder};

/// The largest message the server decodes: gRPC's customary 4 MiB, which every
/// language's default accepts. (The transport refuses frames past
/// [`TRANSPORT_MESSAGE_LIMIT`] before they are read; between the two, the codec refuses
/// them with a message that names the limit.)
pub const MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

/// The transport's own ceiling (tonic's `max_decoding_message_size`): past it a
/// message is refused by the length in its prefix, without reading it.
pub const TRANSPORT_MESSAGE_LIMIT: usize = 8 * 1024 * 1024;

/// The buffer each response stream encodes into, allocated when the stream opens and
/// grown as a message needs: tonic's default of 8 KiB was most of an idle Subscribe
/// stream's memory (BENCHMARKS.md), while events are a few hundred bytes and a
/// download's 256 KiB frames grow it anyway. Encoded messages are still sent in
/// batches of up to 32 KiB (tonic's default yield threshold).
fn encode_buffer() -> BufferSettings {
    BufferSettings::new(512, 32 * 1024)
}

/// prost encoding and decoding with client-fault statuses for bad requests.
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(encode_buffer())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder {
            inner: ProstDecoder::default(),
        }
    }
}

/// Decodes with prost; refuses oversized and malformed messages as the caller's fault.
#[derive(Debug)]
pub struct StrictDecoder<U> {
    inner: ProstDecoder<U>,
}

/// The largest WriteUpload request: one part of a resumable upload (at most 7 MiB,
/// `--upload-part-size`; S3 needs 5 MiB) and its envelope, within the transport's
/// ceiling.
pub const WRITE_UPLOAD_LIMIT: usize = TRANSPORT_MESSAGE_LIMIT;

impl<U: Message + Default + 'static> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        let len = buf.remaining();
        let limit = if std::any::TypeId::of::<U>()
            == std::any::TypeId::of::<crate::pb::WriteUploadRequest>()
        {
            WRITE_UPLOAD_LIMIT
        } else {
            MESSAGE_LIMIT
        };
        if len > limit {
            return Err(too_large(len, limit));
        }
        self.inner.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "the message could not be decoded as {}: {}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("protobuf"),
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The status of a message over its `limit` ([`MESSAGE_LIMIT`], or
/// [`WRITE_UPLOAD_LIMIT`] for a part of a resumable upload).
pub fn too_large(len: usize, limit: usize) -> Status {
    let advice = if limit == MESSAGE_LIMIT {
        "send media in smaller data frames (64 KiB to 1 MiB)"
    } else {
        "write parts of the upload's part_size"
    };
    Status::resource_exhausted(format!(
        "a message of {len} bytes is over the limit of {limit} bytes ({} MiB); {advice}",
        limit / (1024 * 1024)
    ))
}

/// The refusal of a message the transport turned away by its length prefix (tonic's
/// OUT_OF_RANGE "decoded message length too large"), worded as [`too_large`] words the
/// codec's for the same call (`path`); `None` for any other status.
pub fn transport_refusal(status: &Status, path: &str) -> Option<Status> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    let found = status
        .message()
        .strip_prefix("Error, decoded message length too large: found ")?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let limit = if path.ends_with("/WriteUpload") {
        WRITE_UPLOAD_LIMIT
    } else {
        MESSAGE_LIMIT
    };
    Some(too_large(found, limit))
}

/// Rewrites the transport's refusal of an oversized unary request into the codec's
/// ([`transport_refusal`]), so that every oversize refusal reads alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S> tower_layer::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Oversize { inner }
    }
}

/// The service [`OversizeLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Oversize<S> {
    /// The routes.
    inner: S,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Oversize<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A unary refusal comes in the headers (trailers-only).
            let headers = response.headers_mut();
            if let Some(refusal) = Status::from_header_map(headers)
                .and_then(|status| transport_refusal(&status, &path))
            {
                headers.remove("grpc-status-details-bin");
                let _ = refusal.add_header(headers);
            }
            Ok(response)
        })
    }
}
