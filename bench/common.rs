//! What the benchmarks share beyond the testkit (which starts courier-server and
//! mints tokens): the bare byte-stream server process, and memory readings.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

/// This benchmark binary started again as the bare stream server; killed on drop. It
/// listens three times: gRPC with tonic's defaults, gRPC with courier's HTTP/2
/// settings, and a plain TCP byte stream.
pub struct BareServer {
    child: Child,
    addrs: Vec<String>,
}

impl BareServer {
    /// Starts it and waits for its `listening ADDR` line.
    pub fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .arg("--bare-server")
            .stdout(Stdio::piped())
            .spawn()
            .expect("bare server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.starts_with("listening "))
            .expect("address line");
        std::thread::spawn(move || for _ in lines {});
        let addrs = line
            .trim_start_matches("listening ")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Self { child, addrs }
    }

    /// The URL of the gRPC server with tonic's default settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.addrs[0])
    }

    /// The URL of the gRPC server with courier's HTTP/2 settings and TCP_NODELAY.
    pub fn tuned_url(&self) -> String {
        format!("http://{}", self.addrs[1])
    }

    /// The `host:port` of the plain TCP byte stream.
    pub fn tcp_addr(&self) -> String {
        self.addrs[2].clone()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure (`VmRSS`, `VmHWM`, ...) of process `pid` from /proc, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.trim_start_matches(':').trim().strip_suffix(" kB"))
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("memory field")
}
