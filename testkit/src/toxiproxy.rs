//! Faults on the wire: a client of Toxiproxy's HTTP API (a few JSON requests over a
//! plain TCP socket), for drills that put a proxy between two real processes and then
//! cut, slow or reset the connection.
//!
//! The test script starts Toxiproxy on 127.0.0.1 and exports its API address in
//! COURIER_TEST_TOXIPROXY. Each test makes its own uniquely named proxies, listening on
//! 127.0.0.1:0, and deletes them when they are dropped, so tests can run in parallel.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

/// The Toxiproxy server the test script started.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    /// The API's `host:port`.
    api: String,
}

/// One proxy: connections to [`Proxy::listen`] are forwarded to its upstream, through
/// whatever toxics it has. Deleted when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// The API it belongs to.
    api: String,
    /// Its unique name.
    pub name: String,
    /// The `127.0.0.1:port` it listens on.
    pub listen: String,
}

impl Toxiproxy {
    /// The server named by COURIER_TEST_TOXIPROXY. Without one, drills that need it
    /// are skipped, unless COURIER_TEST_REQUIRE_TOXIPROXY is set, as `scripts/test` does.
    pub fn from_env() -> Option<Self> {
        match std::env::var("COURIER_TEST_TOXIPROXY") {
            Ok(api) if !api.is_empty() => Some(Self { api }),
            _ => {
                assert!(
                    std::env::var_os("COURIER_TEST_REQUIRE_TOXIPROXY").is_none(),
                    "COURIER_TEST_REQUIRE_TOXIPROXY is set but COURIER_TEST_TOXIPROXY is not"
                );
                eprintln!("skipped: no Toxiproxy (run ./scripts/test to start one)");
                None
            }
        }
    }

    /// A new proxy to `upstream` (`host:port`) on a free port of 127.0.0.1.
    pub fn proxy(&self, name: &str, upstream: &str) -> Proxy {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{name}-{}-{nanos}", std::process::id());
        let body = json!({
            "name": name,
            "listen": "127.0.0.1:0",
            "upstream": upstream,
            "enabled": true,
        });
        let created = request(&self.api, "POST", "/proxies", Some(&body));
        let listen = created["listen"]
            .as_str()
            .expect("Toxiproxy reports the listening address")
            .to_owned();
        Proxy {
            api: self.api.clone(),
            name,
            listen,
        }
    }
}

impl Proxy {
    /// `http://<listen>`, for a gRPC client or an S3 endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Enables or disables the proxy: disabled, it closes every connection and
    /// refuses new ones; enabled again, it listens on the same address.
    pub fn set_enabled(&self, enabled: bool) {
        let path = format!("/proxies/{}", self.name);
        request(
            &self.api,
            "POST",
            &path,
            Some(&json!({ "enabled": enabled })),
        );
    }

    /// Points the proxy at another upstream (`host:port`), for connections made from
    /// now on.
    pub fn set_upstream(&self, upstream: &str) {
        let path = format!("/proxies/{}", self.name);
        request(
            &self.api,
            "POST",
            &path,
            Some(&json!({ "upstream": upstream })),
        );
    }

    /// Adds a toxic of `kind` (latency, bandwidth, reset_peer, timeout, ...) to the
    /// `stream` (upstream: toward the server; downstream: toward the client) of every
    /// connection, current and future.
    pub fn add_toxic(&self, name: &str, kind: &str, stream: &str, attributes: Value) {
        let path = format!("/proxies/{}/toxics", self.name);
        let body = json!({
            "name": name,
            "type": kind,
            "stream": stream,
            "toxicity": 1.0,
            "attributes": attributes,
        });
        request(&self.api, "POST", &path, Some(&body));
    }

    /// Removes the toxic `name`.
    pub fn remove_toxic(&self, name: &str) {
        let path = format!("/proxies/{}/toxics/{name}", self.name);
        request(&self.api, "DELETE", &path, None);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let path = format!("/proxies/{}", self.name);
        // Best effort: a proxy left over dies with the Toxiproxy of this test run.
        let _ = try_request(&self.api, "DELETE", &path, None);
    }
}

/// Sends one request and returns the JSON answer (null for an empty one); panics on
/// anything but a 2xx status.
fn request(api: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    match try_request(api, method, path, body) {
        Ok(value) => value,
        Err(e) => panic!("Toxiproxy {method} {path}: {e}"),
    }
}

fn try_request(api: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(api).map_err(|e| format!("connecting to {api}: {e}"))?;
    let limit = Some(Duration::from_secs(10));
    stream.set_read_timeout(limit).map_err(|e| e.to_string())?;
    stream.set_write_timeout(limit).map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("sending: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading: {e}"))?;
    let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("a malformed answer: {head}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("status {status}: {payload}"));
    }
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(payload)
    } else {
        payload.to_owned()
    };
    if payload.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&payload).map_err(|e| format!("a JSON answer expected ({e}): {payload}"))
}

/// Decodes a chunked HTTP body.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
