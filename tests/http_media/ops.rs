//! The operator's side of media over HTTP: CORS, `--public-url` and a public cache,
//! records read on each request, redirects to S3, and the bounds on stalled clients.

use std::time::Duration;

use object_store::ObjectStoreExt;
use reqwest::{StatusCode, header as h};

use super::{SIZE, common, get, header_of, hex, http, mint, mint_as, upload};
use common::{Backend, Server, pattern, sha256, token};
use courier_server::pb::MediaKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_configured_origins() {
    let server = Server::start(
        &Backend::Local,
        &["--http-cors-origin", "http://app.example"],
    );
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let url = mint(&server, &media.media_id, 0).await;
    let preflight = http()
        .request(reqwest::Method::OPTIONS, &url)
        .header(h::ORIGIN, "http://app.example")
        .header(h::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(h::ACCESS_CONTROL_REQUEST_HEADERS, "range")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header_of(&preflight, "access-control-allow-origin"),
        "http://app.example"
    );
    assert!(header_of(&preflight, "access-control-allow-methods").contains("GET"));
    assert!(header_of(&preflight, "access-control-allow-headers").contains("range"));
    assert_eq!(header_of(&preflight, "vary"), "Origin");
    let response = get(&url, &[("origin", "http://app.example")]).await;
    assert_eq!(
        header_of(&response, "access-control-allow-origin"),
        "http://app.example"
    );
    assert!(header_of(&response, "access-control-expose-headers").contains("content-range"));
    assert_eq!(header_of(&response, "vary"), "Origin");
    let stranger = get(&url, &[("origin", "http://evil.example")]).await;
    assert_eq!(stranger.status(), StatusCode::OK);
    assert!(header_of(&stranger, "access-control-allow-origin").is_empty());
    assert_eq!(header_of(&stranger, "vary"), "Origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_and_public_cache() {
    let server = Server::start(
        &Backend::Local,
        &[
            "--public-url",
            "https://cdn.example/chat/",
            "--media-url-cache",
            "public",
        ],
    );
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let url = mint(&server, &media.media_id, 0).await;
    let prefix = format!("https://cdn.example/chat/media/v1/{}?", media.media_id);
    assert!(url.starts_with(&prefix), "{url}");
    // Fetched through the server itself, as the proxy would.
    let direct = url.replace(
        "https://cdn.example/chat",
        &format!("http://{}", server.addr),
    );
    let response = get(&direct, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header_of(&response, "cache-control").starts_with("public, max-age="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_or_expired_media_end_links_at_once() {
    let server = Server::start(&Backend::Local, &["--media-ttl", "3s"]);
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let minted = mint_as(&server, &token("alice"), &media.media_id, 0, 600)
        .await
        .expect("mint");
    let media_exp = media.expire_time.map(|t| t.seconds).unwrap_or(0);
    assert!(
        minted.expire_time.map(|t| t.seconds).unwrap_or(0) <= media_exp,
        "never past the media"
    );
    assert_eq!(get(&minted.url, &[]).await.status(), StatusCode::OK);
    // The record is read on each request: its removal is seen at once.
    let record = object_store::path::Path::from(format!("records/{}.json", media.media_id));
    server
        .store
        .delete(&record)
        .await
        .expect("delete the record");
    let response = get(&minted.url, &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// On S3 with `--http-redirect-to-store`: a GET is answered with a redirect to a
/// presigned URL of the store, after the same checks; the bytes there are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_the_store_on_s3() {
    let Some(backend) = Backend::s3() else { return };
    let server = Server::start(&backend, &["--http-redirect-to-store"]);
    let data = pattern(SIZE, 9);
    let media = upload(&server, MediaKind::File, "v.webm", "", &data).await;
    let url = mint(&server, &media.media_id, 0).await;
    let response = get(&url, &[]).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header_of(&response, "cache-control"), "no-store");
    let location = header_of(&response, "location");
    let expires: u64 = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-Expires="))
        .and_then(|v| v.parse().ok())
        .expect("a presigned URL");
    assert!(expires <= 60);
    let fetched = get(&location, &[]).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(
        header_of(&fetched, "content-disposition"),
        "attachment; filename=\"v.webm\"; filename*=UTF-8''v.webm"
    );
    assert_eq!(sha256(&fetched.bytes().await.expect("body")), sha256(&data));
    let part = get(&location, &[("range", "bytes=5-9")]).await;
    assert_eq!(&part.bytes().await.expect("body")[..], &data[5..10]);
    // The checks come first: a tampered link is refused, not redirected.
    let tampered = url.replace("exp=", "exp=9");
    assert_eq!(get(&tampered, &[]).await.status(), StatusCode::FORBIDDEN);
    // HEAD and conditionals are answered here.
    let etag = format!("\"{}\"", hex(&media.sha256));
    assert_eq!(
        get(&url, &[("if-none-match", &etag)]).await.status(),
        StatusCode::NOT_MODIFIED
    );
}

/// A client that stops reading holds one of the `--http-max-requests` slots (others
/// get 503) only until `--http-idle-timeout`; then its response is ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_bounded_and_cut_off() {
    let server = Server::start(
        &Backend::Local,
        &["--http-max-requests", "1", "--http-idle-timeout", "1s"],
    );
    // Far more than the loopback socket buffers hold, so that the stalled response
    // cannot be written out in full.
    let data = pattern(24 * 1024 * 1024, 4);
    let media = upload(&server, MediaKind::File, "big.bin", "", &data).await;
    let url = mint(&server, &media.media_id, 0).await;
    let stalled = get(&url, &[]).await;
    assert_eq!(stalled.status(), StatusCode::OK);
    let busy = get(&url, &[("range", "bytes=0-0")]).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header_of(&busy, "retry-after"), "1");
    common::eventually(
        Duration::from_secs(10),
        "the stalled response is ended",
        || {
            let url = url.clone();
            async move {
                get(&url, &[("range", "bytes=0-0")]).await.status() == StatusCode::PARTIAL_CONTENT
            }
        },
    )
    .await;
    // The stalled response ends short of its length: its reader sees an error.
    assert!(
        stalled.bytes().await.is_err(),
        "a cut-off body must not look complete"
    );
}
