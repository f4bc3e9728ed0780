//! Media over plain HTTP, black-box: GetMediaUrl mints a link over gRPC, and a plain
//! HTTP client (reqwest) fetches it from the same port, as an `<img>` tag, a video
//! player or a CDN would. Each rule of docs/http.md, on a local folder and on S3;
//! the operator's options (CORS, public URL, redirects, limits) in `ops`.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;
mod ops;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{Backend, Server, authed, expect_code, header, pattern, png, sha256, token};
use common::{token_with, upload_bytes};
use courier_server::pb::{self, MediaKind};
use reqwest::StatusCode;
use tonic::Code;

/// Uploads `data` as `kind` named `name`, optionally claiming `content_type`.
async fn upload(
    server: &Server,
    kind: MediaKind,
    name: &str,
    content_type: &str,
    data: &Bytes,
) -> pb::Media {
    let mut head = header(kind, name, data.len() as u64);
    head.content_type = content_type.into();
    upload_bytes(&mut server.media().await, &token("alice"), head, data)
        .await
        .expect("upload")
}

/// GetMediaUrl as alice's `token`, with `max_edge` and a lifetime in seconds (0: the
/// server's default).
async fn mint_as(
    server: &Server,
    token: &str,
    media_id: &str,
    max_edge: i32,
    lifetime: i64,
) -> Result<pb::GetMediaUrlResponse, tonic::Status> {
    let request = pb::GetMediaUrlRequest {
        media_id: media_id.into(),
        max_edge,
        lifetime: (lifetime != 0).then_some(prost_types::Duration {
            seconds: lifetime,
            nanos: 0,
        }),
    };
    server
        .media()
        .await
        .get_media_url(authed(token, request))
        .await
        .map(|r| r.into_inner())
}

async fn mint(server: &Server, media_id: &str, max_edge: i32) -> String {
    mint_as(server, &token("alice"), media_id, max_edge, 0)
        .await
        .expect("GetMediaUrl")
        .url
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("an HTTP answer")
}

fn header_of(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

on_every_backend!(
    whole_object_with_every_header,
    single_ranges_and_if_range,
    etag_and_not_modified,
    images_inline_with_their_detected_type,
    html_and_svg_are_attachments_that_cannot_run,
    thumbnails_through_the_same_path,
    bearer_header_on_the_same_path,
    refusals,
    expired_links_are_gone,
    revocation_ends_minted_links,
);

/// 300 KiB: more than one 256 KiB frame of the server's reads.
const SIZE: usize = 300 * 1024;

async fn whole_object_with_every_header(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(SIZE, 7);
    let media = upload(
        &server,
        MediaKind::File,
        "report 1.pdf",
        "application/pdf",
        &data,
    )
    .await;
    let minted = mint_as(&server, &token("alice"), &media.media_id, 0, 0)
        .await
        .expect("GetMediaUrl");
    assert!(minted.url.starts_with(&format!(
        "http://{}/media/v1/{}?",
        server.addr, media.media_id
    )));
    let response = get(&minted.url, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "accept-ranges"), "bytes");
    assert_eq!(
        header_of(&response, "etag"),
        format!("\"{}\"", hex(&media.sha256))
    );
    assert_eq!(header_of(&response, "content-length"), SIZE.to_string());
    assert_eq!(
        header_of(&response, "content-type"),
        "application/octet-stream"
    );
    assert_eq!(
        header_of(&response, "content-disposition"),
        "attachment; filename=\"report 1.pdf\"; filename*=UTF-8''report%201.pdf"
    );
    assert_eq!(header_of(&response, "x-content-type-options"), "nosniff");
    assert_eq!(header_of(&response, "content-security-policy"), "sandbox");
    assert!(!header_of(&response, "last-modified").is_empty());
    let cache = header_of(&response, "cache-control");
    let age: u64 = cache
        .strip_prefix("private, max-age=")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cache-control {cache}"));
    let left = minted.expire_time.map(|t| t.seconds as u64).unwrap_or(0) - now_secs();
    assert!(
        age <= left && age + 2 >= left && age <= 300,
        "{age} vs {left}"
    );
    assert!(
        header_of(&response, "vary").is_empty(),
        "no CORS configured"
    );
    let body = response.bytes().await.expect("body");
    assert_eq!(sha256(&body), sha256(&data), "byte-identical");
    let head = http().head(&minted.url).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header_of(&head, "content-length"), SIZE.to_string());
    assert!(head.bytes().await.expect("HEAD body").is_empty());
    let sent = server.metrics_text().await;
    assert!(
        sent.contains("courier_http_requests_total{status=\"200\"} 2"),
        "{sent}"
    );
    assert!(
        sent.contains(&format!("courier_http_sent_bytes_total {SIZE}")),
        "{sent}"
    );
    // The signature never reaches the log.
    let sig = minted
        .url
        .rsplit_once("sig=")
        .map(|(_, s)| s.to_owned())
        .unwrap_or_default();
    let logged = server.log_lines().join("\n");
    assert!(logged.contains("sig=REDACTED"), "the request is logged");
    assert!(!logged.contains(&sig), "the signature must not be logged");
}

async fn single_ranges_and_if_range(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(SIZE, 3);
    let media = upload(&server, MediaKind::File, "video.bin", "", &data).await;
    let url = mint(&server, &media.media_id, 0).await;
    let etag = format!("\"{}\"", hex(&media.sha256));
    // Across the boundary of the server's 256 KiB frames.
    for (range, start, end) in [
        ("bytes=100-199", 100, 200),
        ("bytes=262000-270000", 262_000, 270_001),
        ("bytes=300000-", 300_000, SIZE),
        ("bytes=-10", SIZE - 10, SIZE),
        ("bytes=0-999999999", 0, SIZE),
    ] {
        let response = get(&url, &[("range", range)]).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header_of(&response, "content-range"),
            format!("bytes {start}-{}/{SIZE}", end - 1)
        );
        assert_eq!(
            header_of(&response, "content-length"),
            (end - start).to_string()
        );
        let body = response.bytes().await.expect("body");
        assert_eq!(&body[..], &data[start..end], "{range}");
    }
    let response = get(&url, &[("range", "bytes=307200-")]).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header_of(&response, "content-range"),
        format!("bytes */{SIZE}")
    );
    // Several ranges: the whole object (documented).
    let response = get(&url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body").len(), SIZE);
    // If-Range: the range while the entity is the same, else the whole object.
    let response = get(&url, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let response = get(&url, &[("range", "bytes=0-9"), ("if-range", "\"other\"")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.expect("body").len(), SIZE);
}

async fn etag_and_not_modified(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = pattern(1000, 1);
    let media = upload(&server, MediaKind::File, "a.bin", "", &data).await;
    let url = mint(&server, &media.media_id, 0).await;
    let first = get(&url, &[]).await;
    let etag = header_of(&first, "etag");
    let modified = header_of(&first, "last-modified");
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let response = get(&url, &[("if-none-match", &value)]).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{value}");
        assert_eq!(header_of(&response, "etag"), etag);
        assert!(header_of(&response, "cache-control").starts_with("private, max-age="));
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let response = get(&url, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get(&url, &[("if-modified-since", &modified)]).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

async fn images_inline_with_their_detected_type(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = png(40, 30);
    // The uploader claims HTML: the detected type is served all the same.
    let media = upload(&server, MediaKind::Image, "cat.png", "text/html", &data).await;
    let response = get(&mint(&server, &media.media_id, 0).await, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-type"), "image/png");
    assert_eq!(
        header_of(&response, "content-disposition"),
        "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
    );
    // A range past the first bytes still knows the type (HEAD too).
    let url = mint(&server, &media.media_id, 0).await;
    let response = get(&url, &[("range", "bytes=10-20")]).await;
    assert_eq!(header_of(&response, "content-type"), "image/png");
    let head = http().head(&url).send().await.expect("HEAD");
    assert_eq!(header_of(&head, "content-type"), "image/png");
    // The same bytes sent as a file: an attachment, of its detected type.
    let file = upload(&server, MediaKind::File, "cat.png", "", &data).await;
    let response = get(&mint(&server, &file.media_id, 0).await, &[]).await;
    assert_eq!(header_of(&response, "content-type"), "image/png");
    assert!(header_of(&response, "content-disposition").starts_with("attachment;"));
}

async fn html_and_svg_are_attachments_that_cannot_run(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let cases = [
        (
            "page.html",
            "text/html",
            &b"<html><script>alert(1)</script></html>"[..],
        ),
        (
            "logo.svg",
            "image/svg+xml",
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
        ),
    ];
    for (name, claimed, bytes) in cases {
        for kind in [MediaKind::Image, MediaKind::File] {
            let data = Bytes::copy_from_slice(bytes);
            let media = upload(&server, kind, name, claimed, &data).await;
            let response = get(&mint(&server, &media.media_id, 0).await, &[]).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                header_of(&response, "content-type"),
                "application/octet-stream",
                "{name}"
            );
            assert!(header_of(&response, "content-disposition").starts_with("attachment;"));
            assert_eq!(header_of(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header_of(&response, "content-security-policy"), "sandbox");
        }
    }
}

async fn thumbnails_through_the_same_path(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = common::encode_image(common::ImageFormat::Jpeg, 1200, 800);
    let media = upload(&server, MediaKind::Image, "big.jpg", "", &data).await;
    let url = mint(&server, &media.media_id, 300).await;
    assert!(url.contains("edge=320&"), "rounded as GetThumbnail: {url}");
    let response = get(&url, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "content-type"), "image/jpeg");
    assert!(
        header_of(&response, "content-disposition").starts_with("inline; filename=\"big-320.jpg\"")
    );
    let etag = header_of(&response, "etag");
    assert_ne!(
        etag,
        format!("\"{}\"", hex(&media.sha256)),
        "a thumbnail's own ETag"
    );
    let body = response.bytes().await.expect("body");
    assert_eq!(etag, format!("\"{}\"", hex(&sha256(&body))));
    assert_eq!(common::decoded_size(&body), (320, 213));
    let ranged = get(&url, &[("range", "bytes=0-9")]).await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&ranged.bytes().await.expect("body")[..], &body[..10]);
    // A file has no thumbnail: refused at minting.
    let file = upload(&server, MediaKind::File, "f.txt", "", &pattern(10, 1)).await;
    let refused = mint_as(&server, &token("alice"), &file.media_id, 96, 0).await;
    expect_code(refused, Code::FailedPrecondition);
}

async fn bearer_header_on_the_same_path(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let data = common::encode_image(common::ImageFormat::Png, 200, 100);
    let media = upload(&server, MediaKind::Image, "p.png", "", &data).await;
    let path = format!("http://{}/media/v1/{}", server.addr, media.media_id);
    let bearer = format!("Bearer {}", token("bob"));
    let response = get(&path, &[("authorization", &bearer)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, "cache-control"), "private, no-cache");
    assert_eq!(response.bytes().await.expect("body"), data);
    let thumb = get(&format!("{path}?edge=90"), &[("authorization", &bearer)]).await;
    assert_eq!(thumb.status(), StatusCode::OK);
    assert_eq!(
        common::decoded_size(&thumb.bytes().await.expect("body")),
        (96, 48)
    );
    let forged = format!("Bearer {}", token_with("not-the-secret", "bob", 60));
    for headers in [vec![], vec![("authorization", forged.as_str())]] {
        let response = get(&path, &headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header_of(&response, "www-authenticate"), "Bearer");
    }
}

async fn refusals(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let url = mint(&server, &media.media_id, 0).await;
    let status = |url: String| async move { get(&url, &[]).await.status() };
    // Tampered: the signature, or a signed field.
    let (rest, sig) = url.rsplit_once("sig=").expect("a signature");
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    assert_eq!(
        status(format!("{rest}sig={flipped}{}", &sig[1..])).await,
        StatusCode::FORBIDDEN
    );
    let later = url.replace("exp=", "exp=1");
    assert_eq!(status(later).await, StatusCode::FORBIDDEN);
    let other = upload(&server, MediaKind::File, "b.bin", "", &pattern(100, 2)).await;
    let moved = url.replace(&media.media_id, &other.media_id);
    assert_eq!(status(moved).await, StatusCode::FORBIDDEN);
    // Malformed: a parameter missing or doubled, a bad path.
    assert_eq!(status(rest.to_owned()).await, StatusCode::NOT_FOUND);
    assert_eq!(status(format!("{url}&sig=AA")).await, StatusCode::NOT_FOUND);
    let bad_path = format!("http://{}/media/v1/not-an-id?x=1", server.addr);
    assert_eq!(status(bad_path).await, StatusCode::NOT_FOUND);
    // Bad methods.
    let response = http().post(&url).send().await.expect("POST");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header_of(&response, "allow"), "GET, HEAD, OPTIONS");
    // GetMediaUrl's own refusals.
    let alice = token("alice");
    expect_code(
        mint_as(&server, &alice, "nope", 0, 0).await,
        Code::InvalidArgument,
    );
    expect_code(
        mint_as(&server, &alice, &media.media_id, -1, 0).await,
        Code::InvalidArgument,
    );
    expect_code(
        mint_as(&server, &alice, &media.media_id, 0, -5).await,
        Code::InvalidArgument,
    );
    let unknown = "0123456789abcdef0123456789abcdef";
    expect_code(
        mint_as(&server, &alice, unknown, 0, 0).await,
        Code::NotFound,
    );
}

async fn expired_links_are_gone(backend: Backend) {
    let server = Server::start(&backend, &["--media-url-max-ttl", "10m"]);
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let alice = token("alice");
    // Capped by the server's maximum, and by the token's own expiry.
    let capped = mint_as(&server, &alice, &media.media_id, 0, 7200)
        .await
        .expect("mint");
    assert!(capped.expire_time.map(|t| t.seconds as u64).unwrap_or(0) <= now_secs() + 600);
    let short_token = token_with(common::SECRET, "alice", 2);
    let short = mint_as(&server, &short_token, &media.media_id, 0, 600)
        .await
        .expect("mint");
    assert!(short.expire_time.map(|t| t.seconds as u64).unwrap_or(0) <= now_secs() + 2);
    let minted = mint_as(&server, &alice, &media.media_id, 0, 1)
        .await
        .expect("mint");
    assert_eq!(get(&minted.url, &[]).await.status(), StatusCode::OK);
    let exp = [&minted, &short]
        .iter()
        .map(|m| m.expire_time.map(|t| t.seconds as u64).unwrap_or(0))
        .max()
        .unwrap_or(0);
    while now_secs() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&minted.url, &[]).await.status(), StatusCode::GONE);
    assert_eq!(get(&short.url, &[]).await.status(), StatusCode::GONE);
}

async fn revocation_ends_minted_links(backend: Backend) {
    let server = Server::start(&backend, &[]);
    let media = upload(&server, MediaKind::File, "a.bin", "", &pattern(100, 1)).await;
    let before = mint(&server, &media.media_id, 0).await;
    assert_eq!(get(&before, &[]).await.status(), StatusCode::OK);
    let revoked = std::process::Command::new(common::server_binary())
        .args(["revoke", "--user", "alice", "--data-dir"])
        .arg(server.data_dir.path())
        .status()
        .expect("revoke runs");
    assert!(revoked.success());
    common::eventually(Duration::from_secs(10), "the link is refused", || {
        let before = before.clone();
        async move { get(&before, &[]).await.status() == StatusCode::FORBIDDEN }
    })
    .await;
    // A token minted after the revocation mints links that work.
    let after = mint(&server, &media.media_id, 0).await;
    assert_eq!(get(&after, &[]).await.status(), StatusCode::OK);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
