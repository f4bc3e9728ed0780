//! Answers one request to a media path: the method, the link or token, the record
//! (read on every request), conditionals, the range, the headers, then the bytes.

use std::{
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use object_store::signer::SignedUrlOptions;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;

use super::{
    MediaHttp, Shared,
    headers::{self, DETECT_BYTES, Wanted},
};
use crate::{
    error::Error,
    ids::MediaId,
    link::{self, Link},
    media::{MediaKind, MediaStore, Record, open_download, thumbnail, thumbnail_size},
    metrics,
};

/// The methods a media path answers.
const ALLOW: &str = "GET, HEAD, OPTIONS";

/// How long a redirect to the store lives.
const REDIRECT_LIFE: Duration = Duration::from_secs(60);

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: &str = "3600";

/// A refusal: its status and the short text of its body.
pub(super) struct Refusal(pub(super) StatusCode, pub(super) &'static str);

/// Who may fetch: a signed link until its expiry, or a token's holder.
enum Grant {
    /// A signed link, expiring at this second.
    Link(u64),
    /// `Authorization: Bearer`: nothing may be cached for others.
    Bearer,
}

/// The entity served: an object, or one of its thumbnails.
struct Entity {
    /// The record (read on this request).
    record: Record,
    /// The thumbnail's bytes, when one was asked for.
    thumbnail: Option<(Bytes, &'static str)>,
    /// The quoted SHA-256 of the bytes served.
    etag: String,
    /// The size of the bytes served.
    size: u64,
    /// The thumbnail size, or 0 for the object.
    edge: u32,
}

/// Answers `request`, counts it and logs it (with the signature redacted).
pub async fn handle(http: &MediaHttp, request: Request<Body>) -> Response<Body> {
    let shared = &http.shared;
    // The body (none for GET and HEAD) is dropped: only the head is read.
    let (request, _) = request.into_parts();
    let method = request.method.clone();
    let mut response = match respond(shared, &request).await {
        Ok(response) => response,
        Err(Refusal(status, text)) => refusal(status, text),
    };
    common_headers(shared, &request.headers, response.headers_mut());
    let status = response.status();
    metrics::http_request(status.as_u16());
    tracing::info!(
        %method,
        path = request.uri.path(),
        query = %link::redact(request.uri.query().unwrap_or_default()),
        status = status.as_u16(),
        "http media request"
    );
    response
}

async fn respond(shared: &Shared, request: &Parts) -> Result<Response<Body>, Refusal> {
    let method = &request.method;
    if method == Method::OPTIONS {
        return Ok(preflight(shared, &request.headers));
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"));
    }
    let not_a_link = Refusal(StatusCode::NOT_FOUND, "not a media link");
    let id = link::parse_path(request.uri.path()).map_err(|_| not_a_link)?;
    let params = link::parse_query(request.uri.query())
        .map_err(|_| Refusal(StatusCode::NOT_FOUND, "not a media link"))?;
    let (grant, edge) = authorize(shared, &request.headers, &id, params)?;
    let permit = shared.permits.clone().try_acquire_owned().map_err(|_| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many media requests; retry",
        )
    })?;
    let entity = entity(shared, &id, edge).await.map_err(refusal_of)?;
    let head = method == Method::HEAD;
    serve_entity(shared, request, &id, &grant, entity, head, permit).await
}

/// Answers a checked request for `entity`: conditionals, the range, the type, then a
/// redirect, the headers alone (HEAD) or the bytes.
async fn serve_entity(
    shared: &Shared,
    request: &Parts,
    id: &MediaId,
    grant: &Grant,
    entity: Entity,
    head: bool,
    permit: OwnedSemaphorePermit,
) -> Result<Response<Body>, Refusal> {
    let modified = UNIX_EPOCH + Duration::from_millis(entity.record.created_ms);
    let mut response = Response::builder()
        .header(header::ETAG, &entity.etag)
        .header(header::LAST_MODIFIED, httpdate::fmt_http_date(modified))
        .header(header::CACHE_CONTROL, cache_control(shared, grant))
        .header(header::ACCEPT_RANGES, "bytes");
    if headers::not_modified(&request.headers, &entity.etag, modified) {
        return Ok(built(response.status(StatusCode::NOT_MODIFIED), empty()));
    }
    let range = match headers::wanted(&request.headers, entity.size, &entity.etag, modified) {
        Wanted::Unsatisfiable => {
            return Ok(built(
                response
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{}", entity.size)),
                empty(),
            ));
        }
        Wanted::Whole => None,
        Wanted::Part(range) => Some(range),
    };
    let (start, end) = range.clone().map_or((0, entity.size), |r| (r.start, r.end));
    let redirect = shared
        .signer
        .as_ref()
        .filter(|_| !head && entity.thumbnail.is_none());
    // The first bytes tell the served type; a GET from the start reads them anyway.
    let keep = !head && start == 0 && redirect.is_none();
    let (content_type, opened) = match &entity.thumbnail {
        Some((_, content_type)) => (Some(*content_type), None),
        None => sniff(&shared.media, id, keep.then_some(end))
            .await
            .map_err(refusal_of)?,
    };
    let inline = content_type.is_some_and(|t| t.starts_with("image/"))
        && (entity.thumbnail.is_some() || entity.record.kind == MediaKind::Image);
    let file_name = match &entity.thumbnail {
        Some((_, t)) => thumbnail_name(&entity.record.file_name, entity.edge, t),
        None => entity.record.file_name.clone(),
    };
    response = response
        .header(
            header::CONTENT_TYPE,
            content_type.unwrap_or("application/octet-stream"),
        )
        .header(
            header::CONTENT_DISPOSITION,
            headers::disposition(inline, &file_name),
        );
    if let Some(signer) = redirect {
        let location = presign(signer.as_ref(), &entity.record, content_type, inline)
            .await
            .map_err(refusal_of)?;
        return Ok(built(
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, location)
                .header(header::CACHE_CONTROL, "no-store"),
            empty(),
        ));
    }
    if range.is_some() {
        response = response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", end - 1, entity.size),
        );
    }
    response = response.header(header::CONTENT_LENGTH, end - start);
    if head {
        return Ok(built(response, empty()));
    }
    let body = body_of(shared, id, entity.thumbnail, opened, start..end, permit).await?;
    Ok(built(response, body))
}

/// The bytes `range` of a thumbnail (in memory), or of the object: the download
/// `opened` while sniffing, or one opened now.
async fn body_of(
    shared: &Shared,
    id: &MediaId,
    thumbnail: Option<(Bytes, &'static str)>,
    opened: Option<Opened>,
    range: std::ops::Range<u64>,
    permit: OwnedSemaphorePermit,
) -> Result<Body, Refusal> {
    if let Some((data, _)) = thumbnail {
        let part = data.slice(range.start as usize..range.end as usize);
        metrics::http_sent_bytes(part.len() as u64);
        return Ok(Body::new(Full::new(part)));
    }
    let (first, data) = match opened {
        Some((first, rest)) => (Some(first), rest),
        None => {
            let download = open_download(&shared.media, id, range.start, range.end - range.start)
                .await
                .map_err(refusal_of)?;
            (None, download.data)
        }
    };
    Ok(stream_body(
        data,
        first,
        permit,
        shared.settings.idle_timeout,
    ))
}

/// Checks the link's signature, expiry and minter, or the bearer token, and returns
/// the grant and the thumbnail size (0: the object).
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    id: &MediaId,
    params: link::Params,
) -> Result<(Grant, u32), Refusal> {
    match params.signed {
        Some(signed) => {
            let link = Link {
                media_id: id.clone(),
                edge: params.edge,
                exp: signed.exp,
                user: signed.user,
                iat: signed.iat,
            };
            if !shared.key.verify(&link, &signed.sig) {
                return Err(Refusal(
                    StatusCode::FORBIDDEN,
                    "the link's signature is wrong",
                ));
            }
            if now_secs() >= link.exp {
                return Err(Refusal(StatusCode::GONE, "the link has expired"));
            }
            let iat = (link.iat != 0).then_some(link.iat);
            if shared.revocations.is_revoked(&link.user, iat) {
                return Err(Refusal(StatusCode::FORBIDDEN, "the link was revoked"));
            }
            Ok((Grant::Link(link.exp), link.edge))
        }
        None => {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if authorization.is_none() {
                return Err(Refusal(
                    StatusCode::UNAUTHORIZED,
                    "a signed link or an Authorization: Bearer token is needed",
                ));
            }
            shared
                .authenticator
                .verify_token(authorization)
                .map_err(|_| Refusal(StatusCode::UNAUTHORIZED, "the token is not valid"))?;
            let edge = match params.edge {
                0 => 0,
                n => thumbnail_size(i32::try_from(n).unwrap_or(i32::MAX))
                    .map_err(|_| Refusal(StatusCode::NOT_FOUND, "not a media link"))?,
            };
            Ok((Grant::Bearer, edge))
        }
    }
}

/// Reads the record (and the thumbnail when `edge` is not 0).
async fn entity(shared: &Shared, id: &MediaId, edge: u32) -> Result<Entity, Error> {
    let record = shared.media.get(id).await?;
    if edge == 0 {
        return Ok(Entity {
            etag: format!("\"{}\"", record.sha256),
            size: record.size,
            edge,
            record,
            thumbnail: None,
        });
    }
    let made = thumbnail(&shared.media, &shared.thumbnailer, id, edge as i32).await?;
    Ok(Entity {
        etag: format!("\"{}\"", hex::encode(Sha256::digest(&made.data))),
        size: made.data.len() as u64,
        edge,
        record,
        thumbnail: Some((made.data, made.content_type)),
    })
}

/// The served type of an object from its first bytes. With `keep` (a GET of the
/// first `keep` bytes), the download is opened for all of them and its first frame and
/// the rest are returned, to be sent; otherwise only the first bytes are read.
async fn sniff(
    media: &MediaStore,
    id: &MediaId,
    keep: Option<u64>,
) -> Result<(Option<&'static str>, Option<Opened>), Error> {
    let mut download = open_download(media, id, 0, keep.unwrap_or(DETECT_BYTES)).await?;
    let first = download.data.next().await.transpose()?.unwrap_or_default();
    let detected = headers::detect_type(&first);
    Ok((detected, keep.map(|_| (first, download.data))))
}

/// A download's first frame and the rest of it.
type Opened = (Bytes, BoxStream<'static, Result<Bytes, Error>>);

/// A presigned GET of the record's bytes, carrying the served type, disposition and
/// the safety headers the store should answer with.
async fn presign(
    signer: &dyn object_store::signer::Signer,
    record: &Record,
    content_type: Option<&str>,
    inline: bool,
) -> Result<String, Error> {
    let options = SignedUrlOptions::new().with_query([
        (
            "response-content-type",
            content_type
                .unwrap_or("application/octet-stream")
                .to_owned(),
        ),
        (
            "response-content-disposition",
            headers::disposition(inline, &record.file_name),
        ),
        ("response-cache-control", "private, no-store".to_owned()),
    ]);
    let key = MediaStore::bytes_key(record)?;
    let url = signer
        .signed_url_opts(http::Method::GET, &key, REDIRECT_LIFE, &options)
        .await?;
    Ok(url.to_string())
}

/// The body of a download: `first` then `data`, fed by a task that gives up when the
/// client reads nothing for `idle` (or leaves), and holds `permit` until then.
pub(super) fn stream_body(
    mut data: BoxStream<'static, Result<Bytes, Error>>,
    first: Option<Bytes>,
    permit: OwnedSemaphorePermit,
    idle: Duration,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, io::Error>>(2);
    tokio::spawn(async move {
        let _permit = permit;
        let mut next = first.map(Ok);
        loop {
            let chunk = match next.take() {
                Some(chunk) => chunk,
                None => match data.next().await {
                    Some(chunk) => chunk,
                    None => return,
                },
            };
            let frame = match chunk {
                Ok(bytes) => {
                    metrics::http_sent_bytes(bytes.len() as u64);
                    Ok(http_body::Frame::data(bytes))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading media for an HTTP response");
                    Err(io::Error::other("reading the media failed"))
                }
            };
            let failed = frame.is_err();
            match tokio::time::timeout(idle, tx.send(frame)).await {
                Ok(Ok(())) if !failed => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::info!(
                        "an HTTP media client read nothing for the idle timeout; ending it"
                    );
                    return;
                }
            }
        }
    });
    Body::new(StreamBody::new(ReceiverStream::new(rx)))
}

/// The `Cache-Control` of a grant: a link's remaining life, never more.
fn cache_control(shared: &Shared, grant: &Grant) -> String {
    match grant {
        Grant::Link(exp) => format!(
            "{}, max-age={}",
            if shared.settings.cache_public {
                "public"
            } else {
                "private"
            },
            exp.saturating_sub(now_secs())
        ),
        Grant::Bearer => "private, no-cache".into(),
    }
}

/// A preflight's answer: 204, with the CORS grant when the origin may read.
fn preflight(shared: &Shared, headers: &HeaderMap) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ALLOW, ALLOW);
    if allowed_origin(shared, headers).is_some() {
        response = response
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD")
            .header(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, range, if-range, if-none-match, if-modified-since",
            )
            .header(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    }
    built(response, empty())
}

/// The origin to grant, when the request's `Origin` is configured.
fn allowed_origin(shared: &Shared, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let origins = &shared.settings.cors_origins;
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let text = origin.to_str().ok()?;
    origins.iter().any(|o| o == text).then(|| origin.clone())
}

/// Headers every answer carries: the safety ones, CORS, and `Allow` on a 405.
fn common_headers(shared: &Shared, request: &HeaderMap, response: &mut HeaderMap) {
    response.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if !shared.settings.cors_origins.is_empty() {
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = allowed_origin(shared, request) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        response.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "content-length, content-range, content-disposition, accept-ranges, etag, last-modified",
            ),
        );
    }
}

/// The HTTP status of an error reading media: gone or unavailable media is 404, a
/// store that cannot be reached 503; anything else is logged and 500.
pub(super) fn refusal_of(e: Error) -> Refusal {
    use tonic::Code;
    match e.code() {
        Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument | Code::OutOfRange => {
            Refusal(StatusCode::NOT_FOUND, "no such media")
        }
        Code::Unavailable => {
            tracing::warn!(error = %e, "serving media over HTTP");
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is unavailable; retry",
            )
        }
        _ => {
            tracing::error!(error = %e, "serving media over HTTP");
            Refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A refusal's response: a line of text, never cached.
pub(super) fn refusal(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store");
    match status {
        StatusCode::METHOD_NOT_ALLOWED => builder = builder.header(header::ALLOW, ALLOW),
        StatusCode::UNAUTHORIZED => builder = builder.header(header::WWW_AUTHENTICATE, "Bearer"),
        StatusCode::SERVICE_UNAVAILABLE => builder = builder.header(header::RETRY_AFTER, "1"),
        _ => {}
    }
    built(
        builder,
        Body::new(Full::new(Bytes::from(format!("{text}\n")))),
    )
}

/// The name of a thumbnail's file: the original's stem and the thumbnail's type.
fn thumbnail_name(original: &str, edge: u32, content_type: &str) -> String {
    let stem = original.rsplit_once('.').map_or(original, |(stem, _)| stem);
    let extension = if content_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    format!("{stem}-{edge}.{extension}")
}

fn empty() -> Body {
    Body::new(Empty::<Bytes>::new().map_err(|never| match never {}))
}

/// The response of `builder` and `body`; headers built here are all valid, and a
/// failure (which would be a bug) is a 500 rather than a panic.
pub(super) fn built(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|e| {
        tracing::error!(error = %e, "building an HTTP media response");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
