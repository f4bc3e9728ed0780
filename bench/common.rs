//! What the benchmarks share: starting server processes, and tokens.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tonic::Request;

/// The secret the benchmark servers sign tokens with.
pub const SECRET: &str = "bench-secret";

pub fn mint(user: &str) -> String {
    courier_server::auth::mint(SECRET.as_bytes(), user, Duration::from_secs(3600)).expect("mint")
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// A server process that is killed on drop.
pub struct Spawned {
    child: Child,
    addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Spawned {
    /// Starts courier-server with `extra` flags on a fresh data folder.
    pub fn courier(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(env!("CARGO_BIN_EXE_courier-server"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .env("COURIER_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn,courier_server=info")
            .stdout(Stdio::piped())
            .spawn()
            .expect("courier-server");
        Self::wait_addr(child, "courier-server listening", Some(dir))
    }

    /// Starts this benchmark binary again as the bare stream server.
    pub fn bare() -> Self {
        let child = Command::new(std::env::current_exe().expect("exe"))
            .arg("--bare-server")
            .stdout(Stdio::piped())
            .spawn()
            .expect("bare server");
        Self::wait_addr(child, "listening", None)
    }

    fn wait_addr(mut child: Child, marker: &str, dir: Option<tempfile::TempDir>) -> Self {
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains(marker))
            .expect("address line");
        std::thread::spawn(move || for _ in lines {});
        let addr = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(log) => log["addr"].as_str().expect("addr").to_owned(),
            Err(_) => line.trim_start_matches("listening ").trim().to_owned(),
        };
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A memory figure of the process from /proc, in KiB.
    pub fn rss_kib(&self, field: &str) -> i64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim_start_matches(':').trim().strip_suffix(" kB"))
            })
            .and_then(|v| v.trim().parse().ok())
            .expect("memory field")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
