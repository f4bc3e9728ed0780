//! Media over plain HTTP, on the gRPC port: `GET`/`HEAD /media/v1/<media_id>` with a
//! signed link (minted by GetMediaUrl) or `Authorization: Bearer <token>`, for loaders
//! that speak HTTP rather than gRPC (an `<img>` tag, a video player that seeks, a CDN).
//!
//! # Layout
//! - here: the tower layer that sends requests under `/media/v1/` to this module and
//!   every other request to the gRPC services, and the shared state.
//! - `crate::link`: what a signed link says, its URL form, and its signature (apart,
//!   so that the upload hook in `media` signs its links without importing this module).
//! - [`mint`]: GetMediaUrl's logic (the link's lifetime and base URL).
//! - [`serve`]: answering one request: checks, conditionals, ranges, headers, body.
//! - [`staged`]: the upload hook's links to an upload's bytes before its verdict.
//! - [`headers`]: the pure header rules (ranges, entity tags, content disposition).
//!
//! The contract (statuses, headers) is written up in `docs/http.md`.

mod headers;
pub mod mint;
mod serve;
mod staged;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http::{Request, Response};
use object_store::signer::Signer;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

pub use crate::link::LinkKey;
pub use mint::{Authority, LinkSettings};

use crate::{
    auth::Authenticator,
    link,
    media::{MediaStore, Thumbnailer},
    revocation::Revocations,
};

/// The gRPC path of GetMediaUrl (plain gRPC and gRPC-Web alike).
const GET_MEDIA_URL: &str = "/courier.v1.MediaService/GetMediaUrl";

/// How the HTTP side behaves, from the command line.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `Cache-Control: public` instead of `private` on signed links.
    pub cache_public: bool,
    /// The origins whose pages may read responses (`*`: any); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// A response whose client reads nothing for this long is ended.
    pub idle_timeout: Duration,
    /// How many requests are served at once, bodies included.
    pub max_requests: usize,
}

/// The state of the HTTP side. Cheap to clone.
#[derive(Clone)]
pub struct MediaHttp {
    /// Everything, shared by every connection.
    shared: Arc<Shared>,
}

/// What every request reads.
struct Shared {
    /// The media library: each request reads the record, so deletion and expiry take
    /// effect at once.
    media: MediaStore,
    /// Makes (or reads) thumbnails, bounded like GetThumbnail's.
    thumbnailer: Thumbnailer,
    /// Checks link signatures.
    key: LinkKey,
    /// Checks `Authorization: Bearer` tokens.
    authenticator: Authenticator,
    /// Revoked users: links they minted before are refused.
    revocations: Revocations,
    /// The flags.
    settings: HttpSettings,
    /// One permit per request being served; none left: 503.
    permits: Arc<Semaphore>,
    /// With `--http-redirect-to-store` on S3: presigns the redirects.
    signer: Option<Arc<dyn Signer>>,
}

impl MediaHttp {
    /// The HTTP side over `media`.
    pub fn new(
        media: MediaStore,
        thumbnailer: Thumbnailer,
        key: LinkKey,
        authenticator: Authenticator,
        revocations: Revocations,
        settings: HttpSettings,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                media,
                thumbnailer,
                key,
                authenticator,
                revocations,
                permits: Arc::new(Semaphore::new(settings.max_requests.max(1))),
                settings,
                signer: None,
            }),
        }
    }

    /// The same, answering GETs of originals with redirects presigned by `signer`.
    /// Call before the first clone.
    pub fn with_redirects(mut self, signer: Arc<dyn Signer>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.signer = Some(signer);
        }
        self
    }
}

/// The layer that routes `/media/v1/` to [`MediaHttp`] and the rest to gRPC.
#[derive(Clone)]
pub struct HttpLayer {
    /// The HTTP side.
    http: MediaHttp,
}

impl HttpLayer {
    /// A layer serving `http` beside the services it wraps.
    pub fn new(http: MediaHttp) -> Self {
        Self { http }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpRouting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRouting {
            inner,
            http: self.http.clone(),
        }
    }
}

/// The gRPC services, with media paths answered over plain HTTP in front of them.
#[derive(Clone)]
pub struct HttpRouting<S> {
    /// Everything else: gRPC, gRPC-Web, health, reflection.
    inner: S,
    /// The HTTP side.
    http: MediaHttp,
}

impl<S, B> Service<Request<Body>> for HttpRouting<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(link::STAGED_PREFIX) {
            let http = self.http.clone();
            return Box::pin(async move { Ok(staged::handle(&http, request).await) });
        }
        if path.starts_with(link::PREFIX) || path == link::PREFIX.trim_end_matches('/') {
            let http = self.http.clone();
            return Box::pin(async move { Ok(serve::handle(&http, request).await) });
        }
        // The address the call came to, for the links GetMediaUrl builds (only that
        // call: no other pays for it).
        if path == GET_MEDIA_URL
            && let Some(authority) = mint::authority_of(&request)
        {
            request.extensions_mut().insert(authority);
        }
        // The ready service serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(response.map(Body::new))
        })
    }
}
