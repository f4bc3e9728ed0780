//! The upload hook's links to an upload's staged bytes (`uploads/<id>`), minted by
//! `media/hook.rs` for each call to the hook and living for the hook's timeout and a
//! minute: `GET /media/v1/staged/<media_id>?exp=..&sig=..` answers the bytes, as
//! `application/octet-stream`, while the upload waits for its verdict, and 404 before
//! and after. Such a link opens nothing else, and no media link opens staged bytes.

use http::{Method, Request, Response, StatusCode, header};
use tonic::body::Body;

use super::{
    MediaHttp,
    serve::{Refusal, built, now_secs, refusal, refusal_of, stream_body},
};
use crate::{
    link::{self, parse_staged},
    media::open_staged,
    metrics,
};

/// Answers a request under [`link::STAGED_PREFIX`], counts it and logs it.
pub async fn handle(http: &MediaHttp, request: Request<Body>) -> Response<Body> {
    let (request, _) = request.into_parts();
    let response = match respond(http, &request).await {
        Ok(response) => response,
        Err(Refusal(status, text)) => refusal(status, text),
    };
    metrics::http_request(response.status().as_u16());
    tracing::info!(
        method = %request.method,
        path = request.uri.path(),
        query = %link::redact(request.uri.query().unwrap_or_default()),
        status = response.status().as_u16(),
        "http staged upload request"
    );
    response
}

async fn respond(
    http: &MediaHttp,
    request: &http::request::Parts,
) -> Result<Response<Body>, Refusal> {
    let shared = &http.shared;
    if request.method != Method::GET {
        return Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "only GET"));
    }
    let not_a_link = || Refusal(StatusCode::NOT_FOUND, "not a link to staged bytes");
    let (id, exp, sig) =
        parse_staged(request.uri.path(), request.uri.query()).map_err(|_| not_a_link())?;
    if !shared.key.verify_staged(&id, exp, &sig) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "the link's signature is wrong",
        ));
    }
    if exp < now_secs() {
        return Err(Refusal(StatusCode::GONE, "the link has expired"));
    }
    let permit = shared.permits.clone().try_acquire_owned().map_err(|_| {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many media requests; retry",
        )
    })?;
    let (size, data) = open_staged(&shared.media, &id).await.map_err(refusal_of)?;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .header(header::CACHE_CONTROL, "no-store");
    let body = stream_body(data, None, permit, shared.settings.idle_timeout);
    Ok(built(response, body))
}
