//! Server processes: start, restart, terminate, and look at their metrics and store.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use courier_server::pb::media_service_client::MediaServiceClient;
use futures::StreamExt;
use object_store::{ObjectStore, aws::AmazonS3Builder, path::Path as StorePath};
use tonic::transport::Channel;

use crate::SECRET;

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
    /// A store several servers share (replicas): a folder, or a prefix of a bucket.
    Shared {
        /// The `--storage` flag of each server.
        storage: String,
        /// The bucket, for an S3 store (the folder's path otherwise is `storage`).
        bucket: Option<String>,
        /// The key prefix in the bucket.
        prefix: String,
    },
}

impl Backend {
    /// A store for replicas to share: a fresh prefix of the S3 bucket when the test
    /// script started an S3 server, else the folder `dir`.
    pub fn shared(dir: &Path) -> Self {
        match Self::s3() {
            Some(Self::S3 { bucket }) => {
                let prefix = unique("replicas");
                Self::Shared {
                    storage: format!("s3://{bucket}/{prefix}"),
                    bucket: Some(bucket),
                    prefix,
                }
            }
            _ => Self::Shared {
                storage: dir.display().to_string(),
                bucket: None,
                prefix: String::new(),
            },
        }
    }

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
    /// Extra environment variables of the process (kept for restarts).
    env: Vec<(String, String)>,
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
    /// The latest lines the server logged (at most [`LOG_LINES`]), for tests that check
    /// what is written to the log.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// How many log lines a [`Server`] keeps.
const LOG_LINES: usize = 10_000;

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

    /// Starts a server with extra environment variables (for example an AWS_ENDPOINT
    /// that goes through a fault-injecting proxy, while [`Server::store`] still reads
    /// the store directly).
    pub fn start_env(backend: &Backend, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::launch_env(backend, "127.0.0.1:0", extra, Some(SECRET), env)
    }

    fn launch(backend: &Backend, listen: &str, extra: &[&str], secret: Option<&str>) -> Self {
        Self::launch_env(backend, listen, extra, secret, Vec::new())
    }

    fn launch_env(
        backend: &Backend,
        listen: &str,
        extra: &[&str],
        secret: Option<&str>,
        env: Vec<(String, String)>,
    ) -> Self {
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
            Backend::Shared {
                storage,
                bucket: None,
                ..
            } => {
                let dir = PathBuf::from(storage);
                std::fs::create_dir_all(&dir).expect("shared media folder");
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .expect("local store");
                (Some(storage.clone()), Arc::new(store), Some(dir))
            }
            Backend::Shared {
                storage,
                bucket: Some(bucket),
                prefix,
            } => {
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .expect("S3 store");
                let store = object_store::prefix::PrefixStore::new(s3, prefix.as_str());
                (Some(storage.clone()), Arc::new(store), None)
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
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (child, addr, metrics_addr) = spawn(
            listen,
            data_dir.path(),
            storage.as_deref(),
            secret.as_deref(),
            extra,
            &env,
            log.clone(),
        );
        Self {
            log,
            child,
            addr,
            metrics_addr,
            storage,
            secret,
            env,
            data_dir,
            store,
            local_media,
        }
    }

    /// Kills the process (SIGKILL: no chance to clean up, as in a crash) and waits for
    /// it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
            &self.env,
            self.log.clone(),
        );
        self.child = child;
        self.addr = addr;
        self.metrics_addr = metrics_addr;
    }

    /// Like [`Server::restart`], with the process environment's extra variables
    /// replaced by `env`.
    pub fn restart_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.restart(extra);
    }

    /// The bucket and key prefix of an S3-backed server.
    pub fn s3_location(&self) -> Option<(String, String)> {
        let rest = self.storage.as_deref()?.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/')?;
        Some((bucket.to_owned(), prefix.to_owned()))
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

    /// The address of the metrics endpoint.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.metrics_addr
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

    /// The lines the server has logged so far (the latest few thousand).
    pub fn log_lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect()
    }

    /// Reads one value from the metrics endpoint.
    pub async fn metric(&self, name: &str) -> i64 {
        let body = self.metrics_text().await;
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} is missing from:\n{body}"))
    }

    /// The whole `/metrics` answer, headers included.
    pub async fn metrics_text(&self) -> String {
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
        body
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
    env: &[(String, String)],
    log: Arc<Mutex<VecDeque<String>>>,
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
        .envs(env.iter().map(|(k, v)| (k, v)))
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
                    let _ = tx.send(line.clone());
                }
            } else if std::env::var_os("COURIER_TEST_LOGS").is_some() {
                eprintln!("server: {line}");
            }
            let mut kept = log.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == LOG_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
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
