//! The upload hook (`--upload-hook`), black-box: a real server process calling a
//! real HTTP hook server started here (on 127.0.0.1:0), which checks the Standard
//! Webhooks signature, fetches the bytes through the link it was given, and answers
//! the verdict the test wants; on a local folder and on S3.

#[macro_use]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use common::{Backend, Server, header, png, sha256, token, upload_bytes, upload_frames};
use courier_server::pb::{self, MediaKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The hook's secret (24 bytes of key).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the test hook answers.
#[derive(Clone)]
enum Mode {
    /// This JSON, with 200.
    Verdict(String),
    /// Nothing, ever (the connection stays open).
    Silent,
}

/// One call the hook received, checked.
#[derive(Debug, Clone)]
struct Call {
    /// The JSON body.
    body: serde_json::Value,
    /// Whether one of the signatures matched.
    signed: bool,
    /// The bytes fetched through `fetch_url`.
    fetched: Vec<u8>,
}

/// A hook server answering `mode`; returns its URL and the calls it received.
async fn hook(mode: Mode) -> (String, Arc<Mutex<Vec<Call>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (mode, seen) = (mode.clone(), seen.clone());
            tokio::spawn(async move { answer(socket, mode, seen).await });
        }
    });
    (url, calls)
}

async fn answer(mut socket: TcpStream, mode: Mode, seen: Arc<Mutex<Vec<Call>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, body) = loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = header_value(&head, "content-length").parse().unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            break (head, buf[end + 4..end + 4 + length].to_vec());
        }
    };
    let field = |name: &str| header_value(&head, name);
    let (id, timestamp) = (field("webhook-id"), field("webhook-timestamp"));
    let key = STANDARD.decode(&SECRET[6..]).expect("base64");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed_text = format!("{id}.{timestamp}.").into_bytes();
    signed_text.extend_from_slice(&body);
    let expected = format!(
        "v1,{}",
        STANDARD.encode(ring::hmac::sign(&key, &signed_text))
    );
    let signed = field("webhook-signature").split(' ').any(|s| s == expected);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let fetched = match json["fetch_url"].as_str() {
        Some(url) => reqwest::get(url)
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|r| async { r.bytes().await.map(|b| b.to_vec()).unwrap_or_default() }),
        None => None,
    };
    let fetched = match fetched {
        Some(f) => f.await,
        None => Vec::new(),
    };
    seen.lock().expect("calls").push(Call {
        body: json,
        signed,
        fetched,
    });
    match mode {
        Mode::Verdict(verdict) => {
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{verdict}",
                verdict.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
        Mode::Silent => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
}

/// The value of header `name` (case-blind) in a request head, or "".
fn header_value(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

fn start(backend: &Backend, url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--upload-hook", url, "--upload-hook-secret", SECRET];
    args.extend_from_slice(extra);
    Server::start(backend, &args)
}

async fn put(server: &Server, user: &str, name: &str, data: &Bytes) -> Result<pb::Media, Status> {
    let mut client = server.media().await;
    let kind = if name.ends_with(".png") {
        MediaKind::Image
    } else {
        MediaKind::File
    };
    upload_bytes(
        &mut client,
        &token(user),
        header(kind, name, data.len() as u64),
        data,
    )
    .await
}

/// The gRPC code, ErrorInfo reason and message of a refusal.
fn refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String, String) {
    let status = result.expect_err("refused");
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    (status.code(), reason, status.message().to_owned())
}

/// Keys of the store under one of the prefixes of an upload's traces.
async fn upload_traces(server: &Server) -> Vec<String> {
    server
        .stored()
        .await
        .into_iter()
        .filter(|k| {
            [
                "uploads", "content", "records", "owners", "usage", "verdicts",
            ]
            .iter()
            .any(|p| k.starts_with(p) || k.contains(&format!("/{p}/")))
        })
        .collect()
}

async fn accept_is_asked_once_per_content(backend: Backend) {
    let (url, calls) = hook(Mode::Verdict(r#"{"verdict":"accept"}"#.into())).await;
    let server = start(&backend, &url, &[]);
    let data = png(40, 30);
    let media = put(&server, "alice", "cat.png", &data)
        .await
        .expect("accepted");
    let first = calls.lock().expect("calls")[0].clone();
    assert!(first.signed, "the request is signed: {first:?}");
    assert_eq!(first.body["type"], "media.upload");
    assert_eq!(first.body["media_id"], media.media_id.as_str());
    assert_eq!(first.body["owner"], "alice");
    assert_eq!(first.body["file_name"], "cat.png");
    assert_eq!(first.body["size"], data.len() as u64);
    assert_eq!(first.body["sha256"], hex::encode(sha256(&data)).as_str());
    assert_eq!(
        (first.body["width"].clone(), first.body["height"].clone()),
        (40.into(), 30.into())
    );
    assert_eq!(
        first.fetched,
        data.to_vec(),
        "the link serves the staged bytes"
    );
    // The link stops working once the verdict is given (the bytes are no longer staged),
    // and a changed signature never works.
    let link = first.body["fetch_url"].as_str().expect("a link").to_owned();
    assert_eq!(reqwest::get(&link).await.expect("answers").status(), 404);
    let forged = link.replace("exp=", "exp=1");
    assert_eq!(reqwest::get(&forged).await.expect("answers").status(), 403);
    let as_media = link.replace("/media/v1/staged/", "/media/v1/");
    assert_eq!(
        reqwest::get(&as_media).await.expect("answers").status(),
        404
    );
    // The verdict belongs to the content: the same bytes by someone else are not sent.
    put(&server, "bob", "same.png", &data)
        .await
        .expect("accepted");
    assert_eq!(calls.lock().expect("calls").len(), 1);
    assert_eq!(
        server
            .metric("courier_upload_hook_calls_total{verdict=\"accept\"}")
            .await,
        1
    );
    let mut client = server.media().await;
    common::download(&mut client, &token("alice"), &media.media_id, 0, 0)
        .await
        .expect("downloadable");
}

async fn reject_keeps_nothing_and_shows_the_message(backend: Backend) {
    let message = format!("infected: {}", "x".repeat(300));
    let verdict = serde_json::json!({"verdict": "reject", "message": message}).to_string();
    let (url, calls) = hook(Mode::Verdict(verdict)).await;
    let server = start(&backend, &url, &["--quota-bytes", "100000000"]);
    let data = Bytes::from(vec![7u8; 300_000]);
    let (code, reason, shown) = refusal(put(&server, "alice", "bad.bin", &data).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "MEDIA_REJECTED")
    );
    assert_eq!(shown.chars().count(), 200, "{shown}");
    assert!(shown.starts_with("infected: x"), "{shown}");
    assert_eq!(upload_traces(&server).await, Vec::<String>::new());
    // Rejection stores no verdict: the same bytes are asked about again.
    let _ = put(&server, "alice", "bad.bin", &data).await;
    assert_eq!(calls.lock().expect("calls").len(), 2);
    // A resumable upload's commit passes the hook too, and keeps nothing either.
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("bad.bin");
    std::fs::write(&path, &data).expect("written");
    let client = courier_client::Client::connect(&server.url(), &token("carol"))
        .await
        .expect("connects");
    let resumed = client
        .upload_resumable(&path, courier_client::MediaKind::File)
        .expect("starts")
        .await
        .expect_err("rejected");
    assert!(
        matches!(resumed, courier_client::Error::MediaRejected(_)),
        "{resumed:?}"
    );
    assert_eq!(calls.lock().expect("calls").len(), 3);
    let left: Vec<_> = server
        .stored()
        .await
        .into_iter()
        .filter(|k| {
            !k.starts_with("jwt")
                && (k.contains("resumable")
                    || k.contains("uploads")
                    || k.contains("records")
                    || k.contains("content"))
        })
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

async fn quarantine_keeps_the_record_and_holds_for_everyone(backend: Backend) {
    let verdict = r#"{"verdict":"quarantine","message":"needs review"}"#.to_owned();
    let (url, calls) = hook(Mode::Verdict(verdict)).await;
    let server = start(&backend, &url, &[]);
    let data = png(20, 20);
    let status = put(&server, "alice", "odd.png", &data)
        .await
        .expect_err("quarantined");
    let details = status.get_error_details();
    let info = details.error_info().expect("error info");
    assert_eq!(
        (status.code(), info.reason.as_str()),
        (Code::FailedPrecondition, "MEDIA_QUARANTINED")
    );
    let id = info.metadata.get("media_id").expect("the media ID").clone();
    let record = format!("records/{id}.json");
    assert!(server.has(&record).await, "the record is kept");
    let hex_sha = hex::encode(sha256(&data));
    assert!(server.has(&format!("verdicts/{hex_sha}.json")).await);
    let mut client = server.media().await;
    let fetched = common::download(&mut client, &token("alice"), &id, 0, 0).await;
    assert_eq!(refusal(fetched).1, "MEDIA_QUARANTINED");
    // Anyone uploading it again is refused without asking the hook; nothing more kept.
    let before = server.stored().await;
    assert_eq!(
        refusal(put(&server, "bob", "again.png", &data).await).1,
        "MEDIA_QUARANTINED"
    );
    assert_eq!(server.stored().await, before);
    assert_eq!(calls.lock().expect("calls").len(), 1);
}

async fn a_silent_hook_fails_closed_by_default(backend: Backend) {
    let (url, _calls) = hook(Mode::Silent).await;
    let server = start(&backend, &url, &["--upload-hook-timeout", "1s"]);
    let data = Bytes::from_static(b"hello, scanner");
    let (code, _, message) = refusal(put(&server, "alice", "a.txt", &data).await);
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(message.contains("nothing was kept"), "{message}");
    assert_eq!(upload_traces(&server).await, Vec::<String>::new());
    assert_eq!(
        server
            .metric("courier_upload_hook_calls_total{verdict=\"failed_closed\"}")
            .await,
        1
    );
}

async fn a_silent_hook_fails_open_when_asked(backend: Backend) {
    let (url, _calls) = hook(Mode::Silent).await;
    let server = start(
        &backend,
        &url,
        &[
            "--upload-hook-timeout",
            "1s",
            "--upload-hook-failure",
            "open",
        ],
    );
    let data = Bytes::from_static(b"hello, scanner");
    put(&server, "alice", "a.txt", &data)
        .await
        .expect("accepted");
    assert_eq!(
        server
            .metric("courier_upload_hook_calls_total{verdict=\"failed_open\"}")
            .await,
        1
    );
    // Not judged: no verdict is stored.
    let hex_sha = hex::encode(sha256(&data));
    assert!(!server.has(&format!("verdicts/{hex_sha}.json")).await);
}

async fn a_hook_that_is_down_refuses_uploads(backend: Backend) {
    // A port that was free a moment ago: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/hook", free.local_addr().expect("addr"));
    drop(free);
    let server = start(&backend, &url, &[]);
    let data = png(8, 8);
    assert_eq!(
        refusal(put(&server, "alice", "a.png", &data).await).0,
        Code::Unavailable
    );
    // A header-only offer cannot bypass the hook either.
    let mut client = server.media().await;
    let mut offer = header(MediaKind::Image, "a.png", data.len() as u64);
    offer.sha256 = sha256(&data).into();
    let offered = upload_frames(
        &mut client,
        &token("alice"),
        vec![common::header_frame(offer)],
    )
    .await;
    assert!(offered.is_err());
    assert_eq!(upload_traces(&server).await, Vec::<String>::new());
}

on_every_backend!(
    accept_is_asked_once_per_content,
    reject_keeps_nothing_and_shows_the_message,
    quarantine_keeps_the_record_and_holds_for_everyone,
    a_silent_hook_fails_closed_by_default,
    a_silent_hook_fails_open_when_asked,
    a_hook_that_is_down_refuses_uploads,
);

/// Two replicas sharing one store (and a bus when a nats-server is at hand), both
/// with the same hook: a verdict given through one holds on the other, which does not
/// ask the hook again — accepted content is served, quarantined content refused and
/// not taken again from anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_hold_across_replicas_sharing_a_store() {
    let nats = common::Nats::start();
    let bus: Vec<String> = nats
        .iter()
        .flat_map(|n| ["--bus".to_owned(), n.url()])
        .collect();
    let flags: Vec<&str> = bus.iter().map(String::as_str).collect();
    for verdict in ["accept", "quarantine"] {
        let dir = tempfile::tempdir().expect("a shared folder");
        let backend = Backend::shared(dir.path());
        let answer = format!(r#"{{"verdict":"{verdict}"}}"#);
        let (url, calls) = hook(Mode::Verdict(answer)).await;
        let one = start(&backend, &url, &flags);
        let two = start(&backend, &url, &flags);
        let data = png(30, 20);
        let first = put(&one, "alice", "cat.png", &data).await;
        let again = put(&two, "bob", "same.png", &data).await;
        assert_eq!(
            calls.lock().expect("calls").len(),
            1,
            "{verdict}: the other replica reads the verdict instead of asking"
        );
        let mut client = two.media().await;
        match verdict {
            "accept" => {
                let id = first.expect("accepted").media_id;
                again.expect("accepted through the other");
                let (_, bytes) = common::download(&mut client, &token("bob"), &id, 0, 0)
                    .await
                    .expect("served by the other");
                assert_eq!(bytes, data.to_vec());
            }
            _ => {
                let status = first.expect_err("quarantined");
                let id = status
                    .get_error_details()
                    .error_info()
                    .and_then(|i| i.metadata.get("media_id").cloned())
                    .expect("the media ID");
                assert_eq!(refusal(again).1, "MEDIA_QUARANTINED");
                let fetched = common::download(&mut client, &token("alice"), &id, 0, 0).await;
                assert_eq!(refusal(fetched).1, "MEDIA_QUARANTINED");
            }
        }
    }
}
