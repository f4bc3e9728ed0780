//! gRPC-Web on the gRPC port (issue 15), black-box over raw HTTP/1.1 as a browser
//! sends it: a unary call, a server stream and a refusal with its reason, each beside
//! native gRPC over HTTP/2 on the same port; and CORS preflights, answered for the
//! origins of `--cors-allow-origin` (or any with `*`) and for no other, nor at all
//! without the flag.

mod common;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use bytes::Bytes;
use common::{Backend, Server, header, pattern, png, token, upload_bytes};
use courier_server::pb::{self, ErrorReason, MediaKind, download_media_response};
use http::HeaderMap;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

/// An HTTP/1.1 response, its body de-chunked.
struct Response {
    status: u16,
    /// Header names lowercased.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
fn http1(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut socket = TcpStream::connect(server.addr).expect("connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        server.addr,
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).expect("writes");
    socket.write_all(body).expect("writes the body");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).expect("reads the response");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&raw[..end]).expect("ascii headers");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a chunked transfer encoding.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&raw[..line_end]).expect("ascii");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A gRPC-Web request body: one uncompressed message frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    body
}

/// A gRPC-Web answer: its message frames and its trailers (from the trailer frame, or
/// from the headers of a trailers-only answer).
struct Answer {
    messages: Vec<Vec<u8>>,
    trailers: HeaderMap,
}

impl Answer {
    fn status(&self) -> tonic::Status {
        tonic::Status::from_header_map(&self.trailers).expect("a grpc-status")
    }
}

fn split(response: &Response) -> Answer {
    assert_eq!(response.status, 200, "HTTP status");
    let mut trailers = HeaderMap::new();
    for (name, value) in &response.headers {
        if name.starts_with("grpc-") {
            trailers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
    }
    let mut messages = Vec::new();
    let mut body = &response.body[..];
    while !body.is_empty() {
        let flag = body[0];
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + length];
        if flag & 0x80 != 0 {
            for line in std::str::from_utf8(payload)
                .expect("ascii trailers")
                .split("\r\n")
            {
                if let Some((name, value)) = line.split_once(':') {
                    trailers.insert(
                        http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                            .expect("name"),
                        value.trim().parse().expect("value"),
                    );
                }
            }
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + length..];
    }
    Answer { messages, trailers }
}

/// Calls `path` over gRPC-Web (binary, HTTP/1.1) as `user` (or without a token).
fn grpc_web(server: &Server, path: &str, user: Option<&str>, request: &impl Message) -> Answer {
    let bearer = user.map(|u| format!("Bearer {}", token(u)));
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("accept", "application/grpc-web+proto"),
    ];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    split(&http1(server, "POST", path, &headers, &frame(request)))
}

/// Uploads `data` over native gRPC (HTTP/2) as alice.
async fn upload(server: &Server, kind: MediaKind, data: &Bytes) -> pb::Media {
    let mut client = server.media().await;
    upload_bytes(
        &mut client,
        &token("alice"),
        header(kind, "thing", data.len() as u64),
        data,
    )
    .await
    .expect("native gRPC upload on the same port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_server_streaming_calls_work_over_grpc_web_beside_native_grpc() {
    let server = Server::start(&Backend::Local, &[]);
    let image = png(40, 30);
    let media = upload(&server, MediaKind::Image, &image).await;

    // Unary: GetMedia, as bob.
    let answer = grpc_web(
        &server,
        "/courier.v1.MediaService/GetMedia",
        Some("bob"),
        &pb::GetMediaRequest {
            media_id: media.media_id.clone(),
        },
    );
    assert_eq!(answer.status().code(), Code::Ok, "{:?}", answer.status());
    assert_eq!(answer.messages.len(), 1);
    let got = pb::GetMediaResponse::decode(&answer.messages[0][..]).expect("decodes");
    let record = got.media.expect("a record");
    assert_eq!(record.media_id, media.media_id);
    assert_eq!((record.width, record.height), (40, 30));

    // Server streaming: DownloadMedia, the record then the bytes, byte-identical.
    let data = pattern(700 * 1024, 7);
    let file = upload(&server, MediaKind::File, &data).await;
    let answer = grpc_web(
        &server,
        "/courier.v1.MediaService/DownloadMedia",
        Some("bob"),
        &pb::DownloadMediaRequest {
            media_id: file.media_id.clone(),
            offset: 0,
            length: 0,
        },
    );
    assert_eq!(answer.status().code(), Code::Ok, "{:?}", answer.status());
    assert!(answer.messages.len() >= 2, "a record and data frames");
    let mut received = Vec::new();
    for (i, message) in answer.messages.iter().enumerate() {
        match pb::DownloadMediaResponse::decode(&message[..])
            .expect("decodes")
            .frame
        {
            Some(download_media_response::Frame::Media(m)) => {
                assert_eq!(i, 0, "the record comes first");
                assert_eq!(m.media_id, file.media_id);
            }
            Some(download_media_response::Frame::Data(d)) => received.extend_from_slice(&d),
            None => panic!("an empty frame"),
        }
    }
    assert_eq!(received, data.to_vec());

    // The Subscribe stream (server streaming with no end) opens with its ready event;
    // checked by the browser test, which keeps it open. Native gRPC still works after
    // all this on the same port.
    let mut client = server.media().await;
    let again = client
        .get_media(common::authed(
            &token("alice"),
            pb::GetMediaRequest {
                media_id: media.media_id,
            },
        ))
        .await
        .expect("native gRPC after gRPC-Web");
    assert!(again.into_inner().media.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_code_message_and_reason_over_grpc_web() {
    let server = Server::start(&Backend::Local, &[]);
    let file = upload(&server, MediaKind::File, &pattern(1000, 1)).await;

    // A thumbnail of a file: FAILED_PRECONDITION, reason NOT_AN_IMAGE in the details.
    let answer = grpc_web(
        &server,
        "/courier.v1.MediaService/GetThumbnail",
        Some("bob"),
        &pb::GetThumbnailRequest {
            media_id: file.media_id,
            max_edge: 96,
        },
    );
    let status = answer.status();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(!status.message().is_empty());
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("an ErrorInfo in grpc-status-details-bin");
    assert_eq!(info.reason, ErrorReason::NotAnImage.as_str_name());
    assert_eq!(info.domain, "courier.v1");
    assert!(answer.messages.is_empty());

    // No token: UNAUTHENTICATED.
    let answer = grpc_web(
        &server,
        "/courier.v1.MediaService/GetMedia",
        None,
        &pb::GetMediaRequest {
            media_id: "0".repeat(32),
        },
    );
    assert_eq!(answer.status().code(), Code::Unauthenticated);

    // An unknown media ID: NOT_FOUND.
    let answer = grpc_web(
        &server,
        "/courier.v1.MediaService/GetMedia",
        Some("bob"),
        &pb::GetMediaRequest {
            media_id: "0".repeat(32),
        },
    );
    assert_eq!(answer.status().code(), Code::NotFound);
}

/// A browser's preflight for a gRPC-Web call from `origin`.
fn preflight(server: &Server, origin: &str) -> Response {
    http1(
        server,
        "OPTIONS",
        "/courier.v1.MediaService/GetMedia",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web,x-user-agent",
            ),
        ],
        b"",
    )
}

/// A gRPC-Web call from a page of `origin`.
fn call_from(server: &Server, origin: &str) -> Response {
    let bearer = format!("Bearer {}", token("bob"));
    http1(
        server,
        "POST",
        "/courier.v1.MediaService/GetMedia",
        &[
            ("origin", origin),
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &bearer),
        ],
        &frame(&pb::GetMediaRequest {
            media_id: "0".repeat(32),
        }),
    )
}

#[test]
fn cors_preflights_are_answered_for_configured_origins_only() {
    let allowed = "http://127.0.0.1:8123";
    let server = Server::start(
        &Backend::Local,
        &[
            "--cors-allow-origin",
            allowed,
            "--cors-allow-origin",
            "http://localhost:9000",
        ],
    );
    let answer = preflight(&server, allowed);
    assert!(answer.status < 300, "preflight status {}", answer.status);
    assert_eq!(
        answer
            .headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some(allowed)
    );
    let allow_headers = answer
        .headers
        .get("access-control-allow-headers")
        .expect("allowed headers")
        .to_ascii_lowercase();
    for needed in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
    ] {
        assert!(
            allow_headers.contains(needed),
            "{needed} in {allow_headers}"
        );
    }
    assert!(
        answer
            .headers
            .get("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    // The second configured origin too.
    let answer = preflight(&server, "http://localhost:9000");
    assert_eq!(
        answer
            .headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("http://localhost:9000")
    );
    // The call itself exposes the status headers to the page.
    let answer = call_from(&server, allowed);
    assert_eq!(
        answer
            .headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some(allowed)
    );
    let exposed = answer
        .headers
        .get("access-control-expose-headers")
        .expect("exposed headers")
        .to_ascii_lowercase();
    for needed in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(needed), "{needed} in {exposed}");
    }
    assert_eq!(split(&answer).status().code(), Code::NotFound);

    // Another origin: no allow-origin header, so the browser refuses the call.
    for other in ["http://127.0.0.1:8124", "http://evil.example"] {
        let answer = preflight(&server, other);
        assert_eq!(
            answer.headers.get("access-control-allow-origin"),
            None,
            "{other}"
        );
        let answer = call_from(&server, other);
        assert_eq!(
            answer.headers.get("access-control-allow-origin"),
            None,
            "{other}"
        );
    }
}

#[test]
fn without_the_flag_no_origin_is_allowed_and_star_allows_any() {
    let server = Server::start(&Backend::Local, &[]);
    let answer = preflight(&server, "http://127.0.0.1:8123");
    assert_eq!(answer.headers.get("access-control-allow-origin"), None);

    let server = Server::start(&Backend::Local, &["--cors-allow-origin", "*"]);
    let answer = preflight(&server, "http://anything.example:1234");
    assert_eq!(
        answer
            .headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("*")
    );
}

#[test]
fn a_malformed_origin_is_refused_at_start() {
    for bad in [
        "localhost:8080",
        "http://localhost:8080/",
        "ftp://x.example",
    ] {
        let output = std::process::Command::new(common::server_binary())
            .args(["--cors-allow-origin", bad, "--listen", "127.0.0.1:0"])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cors-allow-origin"), "{bad}: {stderr}");
    }
}
