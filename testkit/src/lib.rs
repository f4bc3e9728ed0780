//! Test harness: starts the real `courier-server` binary on 127.0.0.1:0 against a
//! local folder or a real S3-compatible server, and talks gRPC to it.
//!
//! The binary is found next to the running test (`target/<profile>/courier-server`),
//! where `cargo test --workspace` builds it, or at `$COURIER_SERVER_BIN`.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use courier_server::pb::{
    self, download_media_response, media_service_client::MediaServiceClient,
    messaging_service_client::MessagingServiceClient, subscribe_response, upload_media_request,
};
use futures::StreamExt;
use object_store::{ObjectStore, aws::AmazonS3Builder, path::Path as StorePath};
use serde::Serialize;
use tonic::{Code, Request, Status, transport::Channel};

/// The secret every test server signs with, so tests can mint and forge tokens.
pub const SECRET: &str = "test-secret-of-courier";

/// Where a test server stores media.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A folder inside the server's data folder.
    Local,
    /// A bucket of the S3-compatible server that the test script started.
    S3 {
        /// The bucket name.
        bucket: String,
    },
}

impl Backend {
    /// The S3 backend, when the test script has started an S3-compatible server
    /// (it sets COURIER_TEST_S3_BUCKET and the AWS_* variables). Without one the S3
    /// tests are skipped, unless COURIER_TEST_REQUIRE_S3 is set, as `.ci/run` does.
    pub fn s3() -> Option<Self> {
        match std::env::var("COURIER_TEST_S3_BUCKET") {
            Ok(bucket) if !bucket.is_empty() => Some(Self::S3 { bucket }),
            _ => {
                assert!(
                    std::env::var_os("COURIER_TEST_REQUIRE_S3").is_none(),
                    "COURIER_TEST_REQUIRE_S3 is set but no S3 server was configured"
                );
                eprintln!("skipped: no S3-compatible server (run ./scripts/test to start one)");
                None
            }
        }
    }
}

/// A running `courier-server` process; killed when dropped.
pub struct Server {
    child: Child,
    /// The `--storage` flag, when not the default local folder.
    storage: Option<String>,
    /// The secret in COURIER_JWT_SECRET, if any.
    secret: Option<String>,
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The metrics address.
    pub metrics_addr: SocketAddr,
    /// The data folder (removed when dropped).
    pub data_dir: tempfile::TempDir,
    /// The object store the server writes media to, for inspecting it from outside.
    pub store: Arc<dyn ObjectStore>,
    /// The local media folder, when the backend is local.
    pub local_media: Option<PathBuf>,
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

impl Server {
    /// Starts a server on `backend` with extra command-line flags, signing tokens with
    /// [`SECRET`].
    pub fn start(backend: &Backend, extra: &[&str]) -> Self {
        Self::start_with(backend, extra, Some(SECRET))
    }

    /// Starts a server; with no `secret` it makes its own in its data folder.
    pub fn start_with(backend: &Backend, extra: &[&str], secret: Option<&str>) -> Self {
        Self::launch(backend, "127.0.0.1:0", extra, secret)
    }

    /// Starts a server listening on `listen` (for tests that need a known address).
    pub fn start_at(backend: &Backend, listen: &str, extra: &[&str]) -> Self {
        Self::launch(backend, listen, extra, Some(SECRET))
    }

    fn launch(backend: &Backend, listen: &str, extra: &[&str], secret: Option<&str>) -> Self {
        let data_dir = tempfile::tempdir().expect("a temporary data folder");
        let (storage, store, local_media): (Option<String>, Arc<dyn ObjectStore>, _) = match backend
        {
            Backend::Local => {
                let dir = data_dir.path().join("media");
                std::fs::create_dir_all(&dir).expect("media folder");
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .expect("local store");
                (None, Arc::new(store), Some(dir))
            }
            Backend::S3 { bucket } => {
                let prefix = unique("test");
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .expect("S3 store");
                let store = object_store::prefix::PrefixStore::new(s3, prefix.as_str());
                (
                    Some(format!("s3://{bucket}/{prefix}")),
                    Arc::new(store),
                    None,
                )
            }
        };
        let secret = secret.map(str::to_owned);
        let (child, addr, metrics_addr) = spawn(
            listen,
            data_dir.path(),
            storage.as_deref(),
            secret.as_deref(),
            extra,
        );
        Self {
            child,
            addr,
            metrics_addr,
            storage,
            secret,
            data_dir,
            store,
            local_media,
        }
    }

    /// Stops the process (SIGKILL: no chance to clean up, as in a crash) and starts a
    /// new one on the same address, data folder and storage, with `extra` flags.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The same port when it can be had, so that clients can reconnect.
        let listen = self.addr.to_string();
        let (child, addr, metrics_addr) = spawn(
            &listen,
            self.data_dir.path(),
            self.storage.as_deref(),
            self.secret.as_deref(),
            extra,
        );
        self.child = child;
        self.addr = addr;
        self.metrics_addr = metrics_addr;
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connection to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connects")
    }

    /// A MediaService client connected to the server.
    pub async fn media(&self) -> MediaServiceClient<Channel> {
        MediaServiceClient::connect(self.url())
            .await
            .expect("connects")
    }

    /// The process ID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an operator or Kubernetes does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; returns its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Reads one value from the metrics endpoint.
    pub async fn metric(&self, name: &str) -> i64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .expect("metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("request");
        let mut body = String::new();
        stream.read_to_string(&mut body).await.expect("response");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} is missing from:\n{body}"))
    }

    /// Waits (at most 10 s) until the number of transfers in flight is `n`.
    pub async fn wait_in_flight(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.metric("courier_transfers_in_flight").await;
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "transfers in flight stayed {now}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every key in the media store, plus (for a local store) every file on disk,
    /// staging files of unfinished uploads included.
    pub async fn stored(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .list(None)
            .map(|m| m.expect("listing").location.to_string())
            .collect()
            .await;
        if let Some(dir) = &self.local_media {
            files_under(dir, dir, &mut keys);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Waits (at most 10 s) until the store holds exactly `expected` keys.
    pub async fn wait_stored(&self, expected: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.stored().await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the store holds {now:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the store has the object at `key`.
    pub async fn has(&self, key: &str) -> bool {
        use object_store::ObjectStoreExt;
        self.store.head(&StorePath::from(key)).await.is_ok()
    }
}

/// The `courier-server` binary: `$COURIER_SERVER_BIN`, or the one cargo built into
/// the same target folder as the running test.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("COURIER_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/courier-server
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a target folder");
    let path = dir.join("courier-server");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p courier-server` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// Starts `courier-server serve` and waits for its listening line.
fn spawn(
    listen: &str,
    data_dir: &Path,
    storage: Option<&str>,
    secret: Option<&str>,
    extra: &[&str],
) -> (Child, SocketAddr, SocketAddr) {
    let mut command = Command::new(server_binary());
    command
        .arg("serve")
        .args(["--listen", listen, "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("COURIER_JWT_SECRET")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(secret) = secret {
        command.env("COURIER_JWT_SECRET", secret);
    }
    if let Some(storage) = storage {
        command.args(["--storage", storage]);
    }
    let mut child = command.spawn().expect("courier-server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log: reports the listening line, then keeps draining so the server
    // never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("courier-server listening") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            } else if std::env::var_os("COURIER_TEST_LOGS").is_some() {
                eprintln!("server: {line}");
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server reports its address");
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let addr = log["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("addr");
    let metrics_addr = log["metrics_addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("metrics_addr");
    (child, addr, metrics_addr)
}

fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
}

/// A token for `user` signed with `secret`, expiring `ttl_secs` from now (negative: in
/// the past).
pub fn token_with(secret: &str, user: &str, ttl_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: user,
        exp: (now as i64 + ttl_secs) as u64,
        iat: now,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signs")
}

/// A valid token for `user`.
pub fn token(user: &str) -> String {
    token_with(SECRET, user, 3600)
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// An upload header.
pub fn header(kind: pb::MediaKind, name: &str, size: u64) -> pb::UploadHeader {
    pb::UploadHeader {
        kind: kind.into(),
        file_name: name.to_owned(),
        size,
        ..Default::default()
    }
}

/// A header frame.
pub fn header_frame(header: pb::UploadHeader) -> pb::UploadMediaRequest {
    pb::UploadMediaRequest {
        frame: Some(upload_media_request::Frame::Header(header)),
    }
}

/// A data frame.
pub fn data_frame(data: Bytes) -> pb::UploadMediaRequest {
    pb::UploadMediaRequest {
        frame: Some(upload_media_request::Frame::Data(data)),
    }
}

/// `data` split into frames of `chunk` bytes.
pub fn data_frames(data: &Bytes, chunk: usize) -> Vec<pb::UploadMediaRequest> {
    (0..data.len())
        .step_by(chunk.max(1))
        .map(|i| data_frame(data.slice(i..(i + chunk).min(data.len()))))
        .collect()
}

/// Sends exactly `frames` as one upload.
pub async fn upload_frames(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    frames: Vec<pb::UploadMediaRequest>,
) -> Result<pb::Media, Status> {
    let response = client
        .upload_media(authed(token, futures::stream::iter(frames)))
        .await?;
    Ok(response
        .into_inner()
        .media
        .expect("the response holds the media record"))
}

/// Uploads `data` as one header and 256 KiB frames.
pub async fn upload_bytes(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    header: pb::UploadHeader,
    data: &Bytes,
) -> Result<pb::Media, Status> {
    let mut frames = vec![header_frame(header)];
    frames.extend(data_frames(data, 256 * 1024));
    upload_frames(client, token, frames).await
}

/// Downloads a range and returns the record and the bytes.
pub async fn download(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    media_id: &str,
    offset: u64,
    length: u64,
) -> Result<(pb::Media, Vec<u8>), Status> {
    let request = pb::DownloadMediaRequest {
        media_id: media_id.to_owned(),
        offset,
        length,
    };
    let mut stream = client
        .download_media(authed(token, request))
        .await?
        .into_inner();
    let mut record = None;
    let mut bytes = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.frame {
            Some(download_media_response::Frame::Media(media)) => {
                assert!(record.is_none(), "the record must come once");
                assert!(bytes.is_empty(), "the record must come first");
                record = Some(media);
            }
            Some(download_media_response::Frame::Data(data)) => bytes.extend_from_slice(&data),
            None => panic!("an empty download frame"),
        }
    }
    Ok((record.expect("the download starts with the record"), bytes))
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    let mut x: u32 = 0x9e37_79b9 ^ seed as u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Asserts that `result` failed with `code`, and returns the status message.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> String {
    match result {
        Ok(value) => panic!("expected {code:?}, got success: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status.message().to_owned()
        }
    }
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// A MessagingService client on its own connection.
pub async fn messaging(server: &Server) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(server.channel().await)
}

/// A text message.
pub fn text(text: &str) -> pb::Message {
    pb::Message {
        body: Some(pb::message::Body::Text(pb::TextMessage {
            text: text.to_owned(),
        })),
    }
}

/// Sends `message` from the holder of `token` to `peer`.
pub async fn send_peer(
    client: &mut MessagingServiceClient<Channel>,
    token: &str,
    peer: &str,
    message: pb::Message,
    offline: bool,
) -> Result<pb::SendPeerMessageResponse, Status> {
    let request = pb::SendPeerMessageRequest {
        peer_id: peer.to_owned(),
        message: Some(message),
        options: Some(pb::SendMessageOptions {
            enable_offline_messaging: offline,
        }),
    };
    Ok(client
        .send_peer_message(authed(token, request))
        .await?
        .into_inner())
}

/// An open Subscribe stream, past its cached messages and `ready` event.
pub struct Feed {
    stream: tonic::Streaming<pb::SubscribeResponse>,
    /// The cached messages delivered before `ready`, in order.
    pub offline: Vec<pb::PeerMessageReceived>,
    /// The count that `ready` reported.
    pub ready_count: u32,
}

impl Feed {
    /// Subscribes as `user` on a connection of its own.
    pub async fn open(server: &Server, user: &str) -> Self {
        let mut client = messaging(server).await;
        let mut stream = client
            .subscribe(authed(&token(user), pb::SubscribeRequest {}))
            .await
            .expect("subscribes")
            .into_inner();
        let mut offline = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the ready event comes")
                .expect("the stream stays open")
                .expect("the stream stays open");
            match event.event {
                Some(subscribe_response::Event::PeerMessage(message)) => offline.push(message),
                Some(subscribe_response::Event::Ready(ready)) => {
                    return Self {
                        stream,
                        offline,
                        ready_count: ready.offline_message_count,
                    };
                }
                other => panic!("unexpected event before ready: {other:?}"),
            }
        }
    }

    /// The next event; panics if none comes within 10 s.
    pub async fn next(&mut self) -> subscribe_response::Event {
        tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("an event comes within 10 s")
            .expect("the stream is healthy")
            .expect("the stream is open")
            .event
            .expect("an event")
    }

    /// The next event, which must be a peer message.
    pub async fn next_peer(&mut self) -> pb::PeerMessageReceived {
        match self.next().await {
            subscribe_response::Event::PeerMessage(message) => message,
            other => panic!("expected a peer message, got {other:?}"),
        }
    }

    /// The next event, which must be a channel message.
    pub async fn next_channel(&mut self) -> pb::ChannelMessageReceived {
        match self.next().await {
            subscribe_response::Event::ChannelMessage(message) => message,
            other => panic!("expected a channel message, got {other:?}"),
        }
    }

    /// What the stream yields next, however it ends: an event, a clean end (None) or
    /// an error status.
    pub async fn end(&mut self) -> Result<Option<pb::SubscribeResponse>, Status> {
        tokio::time::timeout(Duration::from_secs(15), self.stream.message())
            .await
            .expect("the stream yields within 15 s")
    }
}

/// The body of a received message.
pub fn body(message: &Option<pb::Message>) -> &pb::message::Body {
    message
        .as_ref()
        .and_then(|m| m.body.as_ref())
        .expect("a message body")
}
