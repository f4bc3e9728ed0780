//! A real `nats-server` with JetStream on 127.0.0.1, for the replica drills: each
//! test starts its own on a free port with its own store folder, and may stop and
//! start it again on the same port and store.
//!
//! The binary is `$COURIER_TEST_NATS_SERVER`, or `nats-server` on the PATH (the test
//! script builds it with `go install` and puts it there). Without one the drills are
//! skipped, unless COURIER_TEST_REQUIRE_NATS is set, as `scripts/test` does.
//!
//! The configuration is the one the README recommends for operators: every write to
//! JetStream's file store is fsynced before it is acknowledged (`sync_interval:
//! always`), and clients are pinged every second so that a replica that vanishes
//! without closing its connection is noticed within a few seconds.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running nats-server; killed when dropped.
pub struct Nats {
    /// The process, while it runs.
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The monitoring port (health).
    monitor: u16,
    /// The configuration file and the JetStream store.
    dir: tempfile::TempDir,
    /// The binary.
    binary: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("COURIER_TEST_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    })
}

impl Nats {
    /// Starts a nats-server with JetStream, or `None` when there is no binary (and
    /// COURIER_TEST_REQUIRE_NATS is not set).
    pub fn start() -> Option<Self> {
        let Some(binary) = find_binary() else {
            assert!(
                std::env::var_os("COURIER_TEST_REQUIRE_NATS").is_none(),
                "COURIER_TEST_REQUIRE_NATS is set but no nats-server was found"
            );
            eprintln!("skipped: no nats-server (run ./scripts/test to build one)");
            return None;
        };
        let dir = tempfile::tempdir().expect("a folder for nats-server");
        let mut nats = Self {
            child: None,
            port: free_port(),
            monitor: free_port(),
            dir,
            binary,
        };
        nats.write_config();
        nats.launch();
        Some(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process ID, while it runs (for the benchmarks' memory readings).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store folder (for the benchmarks' disk readings).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    fn write_config(&self) {
        let store = self.store_dir();
        let config = format!(
            r#"listen: "127.0.0.1:{port}"
http: "127.0.0.1:{monitor}"
server_name: "courier-test"
ping_interval: "1s"
ping_max: 2
jetstream {{
  store_dir: "{store}"
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 4GB
}}
"#,
            port = self.port,
            monitor = self.monitor,
            store = store.display(),
        );
        std::fs::write(self.config_path(), config).expect("nats.conf");
    }

    fn launch(&mut self) {
        self.child = Some(spawn_server(&self.binary, &self.config_path()));
        self.wait_ready();
    }

    /// Waits (up to 20 s) until JetStream answers its health check.
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.healthy() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not become healthy within 20 s");
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.monitor)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request =
            "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".to_string();
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
    }

    /// Stops the server at once (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `binary` with the configuration at `config` (its log on stderr when
/// COURIER_TEST_LOGS is set).
pub(crate) fn spawn_server(binary: &std::path::Path, config: &std::path::Path) -> Child {
    Command::new(binary)
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("COURIER_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("nats-server starts")
}
