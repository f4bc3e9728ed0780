//! The event webhook (`--event-hook`), black-box: a real server process (one server
//! on redb, and three replicas on a real nats-server) posting to webhook servers the
//! tests start on 127.0.0.1, which check each Standard Webhooks signature themselves
//! (HMAC-SHA256 computed here with ring, not with the server's code) and record every
//! attempt by its `webhook-id`.
//!
//! The replica tests are skipped without a nats-server binary, unless
//! COURIER_TEST_REQUIRE_NATS is set.

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::{Backend, Feed, Nats, Server, messaging, send_peer, text, token};
use courier_server::pb::PeerMessageState;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use serde_json::Value;
use tokio::{net::TcpSocket, task::JoinHandle};

/// The signing secret of every test: `whsec_` and 32 bytes in base64.
const SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// One attempt the webhook received.
#[derive(Debug, Clone)]
struct Attempt {
    id: String,
    body: Value,
    status: u16,
}

/// What the webhook does and has seen.
#[derive(Default)]
struct State {
    attempts: Vec<Attempt>,
    /// Each ID's first this-many attempts are answered 503.
    fail_first: usize,
    /// IDs answered 400 every time.
    refuse: Vec<String>,
    /// Attempts whose signature did not verify.
    bad_signatures: usize,
}

/// A webhook server on 127.0.0.1 that can be stopped and started on the same port.
struct Webhook {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Option<JoinHandle<()>>,
}

impl Webhook {
    /// A webhook on a free port, answering 204 (after `fail_first` 503s per ID).
    async fn start(fail_first: usize) -> Self {
        let state = Arc::new(Mutex::new(State {
            fail_first,
            ..Default::default()
        }));
        let mut hook = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            state,
            task: None,
        };
        hook.listen().await;
        hook
    }

    /// A webhook that is not listening yet (a backend that is down), on a port
    /// reserved for it.
    async fn down() -> Self {
        let mut hook = Self::start(0).await;
        hook.stop();
        hook
    }

    fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(128).unwrap();
        self.addr = listener.local_addr().unwrap();
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    /// Stops listening and drops every connection: the backend is down.
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.state.lock().unwrap().attempts.clone()
    }

    /// The delivered events (answered 2xx), in the order they arrived.
    fn delivered(&self) -> Vec<Attempt> {
        self.attempts()
            .into_iter()
            .filter(|a| a.status < 300)
            .collect()
    }

    /// Waits (bounded) until `n` events were delivered; returns them.
    async fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Attempt> {
        let deadline = Instant::now() + limit;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= n || Instant::now() > deadline {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks the signature (with our own HMAC), records the attempt, answers.
async fn answer(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<bytes::Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, timestamp, signatures) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let key = STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &signed)));
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(unix_now()) < 300);
    let signed_ok = fresh && signatures.split(' ').any(|s| s == expected);
    let mut state = state.lock().unwrap();
    let tried = state.attempts.iter().filter(|a| a.id == id).count();
    let status = if !signed_ok {
        state.bad_signatures += 1;
        401
    } else if state.refuse.contains(&id) {
        400
    } else if tried < state.fail_first {
        503
    } else {
        204
    };
    state.attempts.push(Attempt {
        id,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    Ok(Response::builder()
        .status(status)
        .body(Full::new(bytes::Bytes::new()))
        .unwrap())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The flags of a server posting to `hook`, retrying fast.
fn hook_flags(hook: &Webhook) -> Vec<String> {
    [
        "--event-hook",
        &hook.url(),
        "--event-hook-secret",
        SECRET,
        "--event-hook-retry-min",
        "100ms",
        "--event-hook-retry-max",
        "1s",
        "--event-hook-timeout",
        "2s",
        "--rate-limit",
        "1000000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Sends `n` text messages from alice to offline bob (cached), each answered within
/// `within`; returns their message IDs.
async fn send_cached(server: &Server, n: usize, within: Duration) -> Vec<String> {
    let mut alice = messaging(server).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let sent = send_peer(
            &mut alice,
            &token("alice"),
            "bob",
            text(&format!("secret {i}")),
            true,
        )
        .await
        .expect("send");
        assert_eq!(sent.state(), PeerMessageState::Cached);
        assert!(
            started.elapsed() < within,
            "a send took {:?}: the webhook slowed it",
            started.elapsed()
        );
        ids.push(sent.message_id);
    }
    ids
}

/// Each webhook-id of `delivered` once, and their message IDs in order.
fn once_each(delivered: &[Attempt]) -> Vec<String> {
    let mut seen = HashMap::new();
    for attempt in delivered {
        *seen.entry(attempt.id.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    delivered
        .iter()
        .map(|a| {
            a.body["data"]["message_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The position in each webhook-id (`evt_<position>`), which must increase.
fn positions(delivered: &[Attempt]) -> Vec<u64> {
    delivered
        .iter()
        .map(|a| a.id.strip_prefix("evt_").unwrap().parse().unwrap())
        .collect()
}

async fn lag_seconds(server: &Server) -> f64 {
    let text = server.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("courier_event_hook_lag_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the lag gauge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_message_is_posted_signed_with_metadata_only() {
    let hook = Webhook::start(0).await;
    let server = Server::start(&Backend::Local, &strs(&hook_flags(&hook)));
    // Delivered to a live stream: not an event of `cached`.
    let mut carol = Feed::open(&server, "carol").await;
    let mut alice = messaging(&server).await;
    let live = send_peer(&mut alice, &token("alice"), "carol", text("live"), true)
        .await
        .unwrap();
    assert_eq!(live.state(), PeerMessageState::Delivered);
    carol.next_peer().await;
    let ids = send_cached(&server, 1, Duration::from_secs(2)).await;
    let delivered = hook.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(once_each(&delivered), ids);
    let event = &delivered[0].body;
    assert_eq!(event["type"], "message.cached");
    assert_eq!(event["id"], delivered[0].id.as_str());
    assert!(delivered[0].id.starts_with("evt_"));
    let data = &event["data"];
    assert_eq!(data["sender_id"], "alice");
    assert_eq!(data["recipient_id"], "bob");
    assert_eq!(data["kind"], "text");
    assert_eq!(data["state"], "cached");
    assert!(data["sent_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(data.get("text").is_none(), "contents were posted: {event}");
    assert!(!event.to_string().contains("secret 0"));
    // Nothing else was posted (the delivered message to carol is not subscribed to).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.attempts().len(), 1);
    assert_eq!(hook.state.lock().unwrap().bad_signatures, 0);
    assert_eq!(
        server
            .metric("courier_event_hook_posts_total{result=\"delivered\"}")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_with_contents_when_asked() {
    let hook = Webhook::start(0).await;
    let mut flags = hook_flags(&hook);
    flags.extend(["--event-hook-events", "all", "--event-hook-contents"].map(String::from));
    let server = Server::start(&Backend::Local, &strs(&flags));
    let mut carol = Feed::open(&server, "carol").await;
    let mut alice = messaging(&server).await;
    send_peer(
        &mut alice,
        &token("alice"),
        "carol",
        text("live words"),
        true,
    )
    .await
    .unwrap();
    carol.next_peer().await;
    send_cached(&server, 1, Duration::from_secs(2)).await;
    let delivered = hook.wait_delivered(2, Duration::from_secs(20)).await;
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0].body["type"], "message.delivered");
    assert_eq!(delivered[0].body["data"]["recipient_id"], "carol");
    assert_eq!(delivered[0].body["data"]["text"], "live words");
    assert_eq!(delivered[1].body["type"], "message.cached");
    assert_eq!(delivered[1].body["data"]["text"], "secret 0");
}

/// Each event's first three attempts fail: each is delivered once (one webhook-id,
/// the same on every attempt), in order, and the sends meanwhile were answered at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_three_times_then_succeeding_delivers_once() {
    let hook = Webhook::start(3).await;
    let server = Server::start(&Backend::Local, &strs(&hook_flags(&hook)));
    let ids = send_cached(&server, 5, Duration::from_millis(500)).await;
    let delivered = hook.wait_delivered(5, Duration::from_secs(40)).await;
    assert_eq!(once_each(&delivered), ids);
    let at = positions(&delivered);
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
    let attempts = hook.attempts();
    for attempt in &delivered {
        let tries: Vec<u16> = attempts
            .iter()
            .filter(|a| a.id == attempt.id)
            .map(|a| a.status)
            .collect();
        assert_eq!(tries, [503, 503, 503, 204], "{}", attempt.id);
    }
    assert_eq!(
        server
            .metric("courier_event_hook_posts_total{result=\"retried\"}")
            .await,
        15
    );
}

/// A 400 is not retried: the event is counted failed and skipped; the next one goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_skipped() {
    let hook = Webhook::start(0).await;
    let server = Server::start(&Backend::Local, &strs(&hook_flags(&hook)));
    // The first event's ID, known from a first run of the same log: the first
    // cached message on a fresh log takes position 2 (1 is reserved).
    hook.state.lock().unwrap().refuse.push("evt_2".into());
    let ids = send_cached(&server, 2, Duration::from_secs(2)).await;
    let delivered = hook.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(once_each(&delivered), ids[1..]);
    let refused: Vec<_> = hook
        .attempts()
        .into_iter()
        .filter(|a| a.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "a 400 was retried");
    assert_eq!(
        server
            .metric("courier_event_hook_posts_total{result=\"failed\"}")
            .await,
        1
    );
}

/// The backend is down while messages are cached (the sends are answered at once,
/// the lag grows); once it is back, every event arrives, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_for_a_while_loses_nothing() {
    let mut hook = Webhook::down().await;
    let server = Server::start(&Backend::Local, &strs(&hook_flags(&hook)));
    let ids = send_cached(&server, 30, Duration::from_millis(500)).await;
    // The gauge moves at each retry (up to a second apart, more on a loaded machine):
    // polled, within a bound, instead of read once at a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lag_seconds(&server).await < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lag_seconds(&server).await >= 1.0,
        "the lag gauge did not grow"
    );
    hook.listen().await;
    let delivered = hook.wait_delivered(30, Duration::from_secs(30)).await;
    assert_eq!(once_each(&delivered), ids);
    let at = positions(&delivered);
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lag_seconds(&server).await > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lag_seconds(&server).await, 0.0);
}

/// Events pending when the server stops are delivered after it restarts, and the
/// ones delivered before are not posted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_events_pending_delivers_them_after_it_none_twice() {
    let mut hook = Webhook::start(0).await;
    let flags = hook_flags(&hook);
    let mut server = Server::start(&Backend::Local, &strs(&flags));
    let first = send_cached(&server, 5, Duration::from_secs(2)).await;
    assert_eq!(
        hook.wait_delivered(5, Duration::from_secs(20)).await.len(),
        5
    );
    hook.stop();
    let pending = send_cached(&server, 5, Duration::from_secs(2)).await;
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
    hook.listen().await;
    server.restart(&strs(&flags));
    let delivered = hook.wait_delivered(10, Duration::from_secs(30)).await;
    // Settle: nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered_now = hook.delivered();
    assert_eq!(delivered_now.len(), delivered.len());
    let expected: Vec<String> = first.into_iter().chain(pending).collect();
    assert_eq!(once_each(&delivered_now), expected);
}

/// The replicas share one consumer: every event is posted by exactly one of them,
/// none lost while the backend is down, none twice when a replica stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_post_each_event_exactly_once() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let mut hook = Webhook::down().await;
    let media = tempfile::tempdir().unwrap();
    let backend = Backend::shared(media.path());
    let mut flags = vec!["--bus".to_owned(), nats.url()];
    flags.extend(hook_flags(&hook));
    let mut replicas: Vec<Server> = (0..3)
        .map(|_| Server::start(&backend, &strs(&flags)))
        .collect();
    let mut expected = Vec::new();
    // Sent through every replica while the backend is down.
    for replica in &replicas {
        expected.extend(send_cached(replica, 10, Duration::from_secs(2)).await);
    }
    hook.listen().await;
    let delivered = hook.wait_delivered(30, Duration::from_secs(60)).await;
    let mut got = once_each(&delivered);
    assert_eq!(got.len(), 30);
    // One replica stops; the others go on.
    replicas[0].terminate();
    assert!(replicas[0].wait_exit(Duration::from_secs(30)).is_some());
    for replica in &replicas[1..] {
        expected.extend(send_cached(replica, 5, Duration::from_secs(2)).await);
    }
    let delivered = hook.wait_delivered(40, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    got = once_each(&hook.delivered());
    assert_eq!(delivered.len(), 40);
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    got.sort();
    assert_eq!(got, sorted_expected);
    // Who posted is not visible to the webhook; the counters say each replica's share.
    let mut total = 0;
    for replica in &replicas[1..] {
        total += replica
            .metric("courier_event_hook_posts_total{result=\"delivered\"}")
            .await;
    }
    assert!(total <= 40);
    // A replica restarts while events are pending (the backend down): they are
    // posted after it, by one replica each.
    hook.stop();
    expected.extend(send_cached(&replicas[1], 5, Duration::from_secs(2)).await);
    replicas[1].terminate();
    assert!(replicas[1].wait_exit(Duration::from_secs(30)).is_some());
    replicas[1].restart(&strs(&flags));
    expected.extend(send_cached(&replicas[2], 5, Duration::from_secs(2)).await);
    hook.listen().await;
    let delivered = hook.wait_delivered(50, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivered.len(), 50);
    let mut got = once_each(&hook.delivered());
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
}

/// The figure of BENCHMARKS.md (run by hand: `cargo test --release --test event_hook
/// -- --ignored --nocapture`): cached messages at 1,000/s for 10 s, open loop, and
/// the webhook's lag sampled every 100 ms; then how long until every event arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn lag_at_1000_cached_messages_per_second() {
    const RATE: u64 = 1000;
    const SECS: u64 = 10;
    let hook = Webhook::start(0).await;
    let mut flags = hook_flags(&hook);
    flags.extend(
        [
            "--offline-cache-size",
            "100000",
            "--offline-quota-per-sender",
            "1000000",
        ]
        .map(String::from),
    );
    let server = Arc::new(Server::start(&Backend::Local, &strs(&flags)));
    let clients: Vec<_> = futures::future::join_all((0..8).map(|_| messaging(&server))).await;
    let sampler = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut lags = Vec::new();
            for _ in 0..(SECS * 10 + 50) {
                lags.push(lag_seconds(&server).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lags
        })
    };
    let started = Instant::now();
    let total = RATE * SECS;
    let mut sends = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * RATE as f64) as u64).min(total);
        while sent < due {
            let mut client = clients[(sent % 8) as usize].clone();
            let peer = format!("bob{}", sent % 100);
            sends.spawn(async move {
                let sender = token(&format!("alice{}", sent % 50));
                send_peer(&mut client, &sender, &peer, text("x"), true).await
            });
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut ok = 0;
    while let Some(result) = sends.join_next().await {
        ok += usize::from(matches!(result, Ok(Ok(_))));
    }
    let sending = started.elapsed();
    let delivered = hook.wait_delivered(ok, Duration::from_secs(120)).await;
    let drained = started.elapsed();
    let lags = sampler.await.unwrap();
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "sent {ok}/{total} in {:.2}s ({:.0}/s); delivered {} by {:.2}s; lag p50 {:.3}s p99 {:.3}s max {:.3}s",
        sending.as_secs_f64(),
        ok as f64 / sending.as_secs_f64(),
        delivered.len(),
        drained.as_secs_f64(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 99 / 100],
        sorted[sorted.len() - 1],
    );
    assert_eq!(delivered.len(), ok);
}
