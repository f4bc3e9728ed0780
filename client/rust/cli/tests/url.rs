//! `courier url`: a signed HTTP link that a plain HTTP client fetches, whole and by
//! range (scenario 13 of tests/scenarios.md, through the CLI).

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use assert_cmd::Command;
use courier_testkit::{Backend, Server, pattern, png, token};
use serde_json::Value;

/// Runs `courier --json ARGS` as `user`; its one JSON line and whether it succeeded.
fn json(server: &Server, user: &str, args: &[&str]) -> (Value, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_courier"))
        .env("COURIER_SERVER", server.url())
        .env("COURIER_TOKEN", token(user))
        .timeout(Duration::from_secs(60))
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let line = stdout.lines().next().unwrap_or_default();
    (
        serde_json::from_str(line).expect("a JSON line"),
        output.status.success(),
    )
}

/// A plain HTTP/1.1 GET of `url` (http://host:port/path?query) with extra header
/// lines: the status, the raw head, and the body.
fn get(url: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http:// link");
    let (host, target) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = TcpStream::connect(host).expect("connects");
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{extra}\r\n"
    )
    .expect("request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head[9..12].parse().expect("a status");
    (status, head, answer[split + 4..].to_vec())
}

#[test]
fn url_prints_a_link_any_http_client_fetches() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(300 * 1024, 5);
    let path = dir.path().join("data.bin");
    std::fs::write(&path, &data).expect("write");
    let (media, ok) = json(&server, "alice", &["upload", path.to_str().expect("utf-8")]);
    assert!(ok);
    let media_id = media["media_id"].as_str().expect("media_id");
    let (link, ok) = json(&server, "bob", &["url", media_id, "--ttl", "60s"]);
    assert!(ok, "{link}");
    let url = link["url"].as_str().expect("url");
    assert!(url.starts_with(&format!("http://{}/media/v1/{media_id}?", server.addr)));
    assert!(
        link["expire_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let (status, _, body) = get(url, "");
    assert_eq!(status, 200);
    assert!(body == data, "byte-identical");
    let (status, head, body) = get(url, "range: bytes=262000-270000\r\n");
    assert_eq!(status, 206);
    assert!(
        head.contains("content-range: bytes 262000-270000/307200"),
        "{head}"
    );
    assert!(body == data[262_000..270_001], "the right slice");
    // A thumbnail link of an image; of a file, NOT_AN_IMAGE.
    let picture = dir.path().join("p.png");
    std::fs::write(&picture, png(200, 100)).expect("write");
    let (image, _) = json(
        &server,
        "alice",
        &["upload", "--image", picture.to_str().expect("utf-8")],
    );
    let image_id = image["media_id"].as_str().expect("media_id");
    let (link, ok) = json(&server, "bob", &["url", image_id, "--max-edge", "90"]);
    assert!(ok);
    let (status, head, _) = get(link["url"].as_str().expect("url"), "");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: image/"), "{head}");
    let (error, ok) = json(&server, "bob", &["url", media_id, "--max-edge", "90"]);
    assert!(!ok);
    assert_eq!(error["error"]["reason"], "NOT_AN_IMAGE");
}
