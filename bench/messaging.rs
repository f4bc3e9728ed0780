//! Messaging benchmark, on one server over loopback.
//!
//! `./bench/messaging`:
//! - peer send→receive latency (p50, p99) while alice sends to bob at 2,000 msg/s;
//! - channel fan-out: deliveries per second from one sender to 1,000 subscribers.
//!
//! `./bench/messaging --scale`:
//! - channel fan-out to 10,000 subscribers, against the same server with its event log
//!   in memory (`--event-log-in-memory`), interleaved, two rounds (`--only fanout`);
//! - the highest peer-message rate with p99 send→receive under 10 ms, against a bare
//!   tonic unary echo driven by the same load generator (this file's `open_loop`);
//! - server memory per idle Subscribe stream, 100,000 streams of 100,000 users over
//!   many HTTP/2 connections (`--streams N` to change the count).
//!
//! `./bench/messaging --replay`: the per-user event log (issue 18): its disk and
//! memory cost per entry (100 users × 1,000 channel messages of 100 bytes of text,
//! each logged once per member), and the replay rate of Subscribe `after` (events
//! per second from the log, one stream and ten at once). With `--bus` as well, the same
//! on the JetStream log: sent through replica 1, replayed from replica 2, disk and
//! memory read from the nats-server (its store folder, its RSS, the stream's bytes).
//!
//! `./bench/messaging --groups [--bus] [--only channels|relay]`: group commit (issue
//! 26), in groups.rs.
//!
//! `./bench/messaging --bus`: the default figures, and the same with three replicas
//! sharing a nats-server with JetStream (started by the benchmark, from the PATH):
//! alice on replica 1 sending to bob on replica 2, and the fan-out with the subscribers
//! spread over the three replicas, next to the one-server figures of the same run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use courier_server::pb::{
    self, message::Body, messaging_service_client::MessagingServiceClient,
    subscribe_response::Event,
};
use courier_testkit::{Backend, Nats, Server, authed, token as mint};
use tonic::transport::Channel;

const RATE: u64 = 2_000;
const LATENCY_SECS: u64 = 5;
const SUBSCRIBERS: usize = 1_000;
const CONNECTIONS: usize = 10;
const FANOUT_MESSAGES: usize = 200;
/// Scale: fan-out subscribers and their connections, messages sent.
const SCALE_SUBSCRIBERS: usize = 10_000;
const SCALE_CONNECTIONS: usize = 20;
const SCALE_FANOUT_MESSAGES: usize = 100;
/// Scale: the rates tried (messages/s), how long each, the latency bound, and the
/// sender's connections.
const RATES: [u64; 12] = [
    2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000, 25_000, 30_000, 40_000, 60_000,
];
const WINDOWS: usize = 3;
const RATE_SECS: f64 = 2.0;
const P99_BOUND_MS: f64 = 10.0;
const SENDER_CONNECTIONS: usize = 4;
/// Scale: idle streams, and streams per HTTP/2 connection.
const IDLE_STREAMS: usize = 100_000;
const STREAMS_PER_CONNECTION: usize = 1_000;

#[path = "common.rs"]
mod common;
#[path = "groups.rs"]
mod groups;
use common::{BareServer, memory_kib};

mod bare {
    tonic::include_proto!("courierbench");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-server") {
        return serve_echo().await;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "the messaging benchmark runs with `./bench/messaging` (cargo bench), not as a test"
        );
        return;
    }
    if args.iter().any(|a| a == "--groups") {
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str);
        return groups::run(args.iter().any(|a| a == "--bus"), only).await;
    }
    if args.iter().any(|a| a == "--replay") {
        let bus = args.iter().any(|a| a == "--bus");
        channel_disk(bus).await;
        return replay(bus).await;
    }
    if args.iter().any(|a| a == "--scale") {
        let streams = args
            .iter()
            .position(|a| a == "--streams")
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse().expect("--streams N"))
            .unwrap_or(IDLE_STREAMS);
        // `--only fanout|rate|idle` runs one part.
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str);
        if only.is_none_or(|o| o == "fanout") {
            // The durable log against the same server with its log in memory,
            // interleaved: a ratio inside one run.
            for round in 0..2 {
                for (label, extra) in [
                    ("one server", None),
                    ("one server, log in memory", Some("--event-log-in-memory")),
                ] {
                    let mut args = vec!["--rate-limit", "100000000"];
                    args.extend(extra);
                    let server = Server::start(&Backend::Local, &args);
                    fanout(
                        &format!("{label} (round {})", round + 1),
                        &[&server],
                        SCALE_SUBSCRIBERS,
                        SCALE_CONNECTIONS,
                        SCALE_FANOUT_MESSAGES,
                    )
                    .await;
                }
            }
        }
        if only.is_none_or(|o| o == "rate") {
            peer_rate().await;
        }
        if only.is_none_or(|o| o == "idle") {
            idle_streams(streams).await;
        }
        return;
    }
    let one = Server::start(&Backend::Local, &["--rate-limit", "100000000"]);
    latency("one server", &one, &one).await;
    fanout(
        "one server",
        &[&one],
        SUBSCRIBERS,
        CONNECTIONS,
        FANOUT_MESSAGES,
    )
    .await;
    if !args.iter().any(|a| a == "--bus") {
        return;
    }
    let nats = Nats::start().expect("a nats-server on the PATH (scripts/lib.sh builds one)");
    let media = tempfile::tempdir().expect("shared media folder");
    let backend = Backend::shared(media.path());
    let url = nats.url();
    let replicas: Vec<Server> = (0..3)
        .map(|_| Server::start(&backend, &["--rate-limit", "100000000", "--bus", &url]))
        .collect();
    latency(
        "replica 1 -> replica 2 through NATS",
        &replicas[0],
        &replicas[1],
    )
    .await;
    let spread: Vec<&Server> = replicas.iter().collect();
    fanout(
        "3 replicas through NATS",
        &spread,
        SUBSCRIBERS,
        CONNECTIONS,
        FANOUT_MESSAGES,
    )
    .await;
}

/// CPU seconds (user + system) that process `pid` has used, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which ends with ')'): utime and stime are the
    // 12th and 13th, in clock ticks of 1/100 s.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn connect(server: &Server) -> MessagingServiceClient<Channel> {
    let channel = Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    MessagingServiceClient::new(channel)
}

/// Opens a Subscribe stream and waits for `ready`.
async fn subscribe(
    client: &mut MessagingServiceClient<Channel>,
    user: &str,
) -> tonic::Streaming<pb::SubscribeResponse> {
    let mut stream = client
        .subscribe(authed(&mint(user), pb::SubscribeRequest { after: 0 }))
        .await
        .expect("subscribe")
        .into_inner();
    while let Some(event) = stream.message().await.expect("event") {
        if matches!(event.event, Some(Event::Ready(_))) {
            return stream;
        }
    }
    panic!("the stream ended before ready");
}

/// The send time (µs since the epoch) carried in a raw message's payload.
fn sent_micros(event: &pb::SubscribeResponse) -> Option<u64> {
    let message = match &event.event {
        Some(Event::PeerMessage(m)) => m.message.as_ref(),
        Some(Event::ChannelMessage(m)) => m.message.as_ref(),
        _ => None,
    }?;
    match &message.body {
        Some(Body::Raw(raw)) => raw
            .payload
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]))),
        _ => None,
    }
}

fn stamped() -> pb::Message {
    pb::Message {
        body: Some(Body::Raw(pb::RawMessage {
            payload: Bytes::copy_from_slice(&micros_now().to_be_bytes()),
            description: String::new(),
        })),
    }
}

async fn latency(label: &str, sender: &Server, receiver: &Server) {
    let mut bob_client = connect(receiver).await;
    let mut bob = subscribe(&mut bob_client, "bob").await;
    let total = (RATE * LATENCY_SECS) as usize;
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total);
        while latencies.len() < total {
            let Some(event) = bob.message().await.expect("event") else {
                break;
            };
            if let Some(sent) = sent_micros(&event) {
                latencies.push(micros_now().saturating_sub(sent));
            }
        }
        latencies
    });
    let alice = connect(sender).await;
    let token = mint("alice");
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let per_tick = RATE / 1000;
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..(total as u64 / per_tick) {
        ticks.tick().await;
        for _ in 0..per_tick {
            let mut client = alice.clone();
            let token = token.clone();
            sends.spawn(async move {
                let request = pb::SendPeerMessageRequest {
                    peer_id: "bob".into(),
                    message: Some(stamped()),
                    options: None,
                    client_message_id: String::new(),
                };
                client
                    .send_peer_message(authed(&token, request))
                    .await
                    .expect("send");
            });
        }
        while sends.try_join_next().is_some() {}
    }
    while sends.join_next().await.is_some() {}
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    let mut latencies = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("all received")
        .expect("task");
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    println!();
    println!("## Peer send -> receive latency, alice -> bob, {label}");
    println!("| target rate | achieved rate | messages | p50 ms | p99 ms | max ms |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {RATE}/s | {achieved:.0}/s | {} | {:.2} | {:.2} | {:.2} |",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

async fn fanout(
    label: &str,
    servers: &[&Server],
    subscribers: usize,
    connections: usize,
    messages: usize,
) {
    let mut clients = Vec::new();
    for i in 0..connections {
        clients.push(connect(servers[i % servers.len()]).await);
    }
    let mut receivers = Vec::new();
    for i in 0..subscribers {
        let user = format!("user{i}");
        let mut client = clients[i % connections].clone();
        let join = pb::JoinChannelRequest {
            channel_id: "fanout".into(),
        };
        client
            .join_channel(authed(&mint(&user), join))
            .await
            .expect("join");
        let mut stream = subscribe(&mut client, &user).await;
        receivers.push(tokio::spawn(async move {
            let mut received = 0;
            while received < messages {
                match stream.message().await.expect("event") {
                    Some(_) => received += 1,
                    None => break,
                }
            }
            (received, Instant::now())
        }));
    }
    let mut sender = connect(servers[0]).await;
    let token = mint("sender");
    let join = pb::JoinChannelRequest {
        channel_id: "fanout".into(),
    };
    sender
        .join_channel(authed(&token, join))
        .await
        .expect("join");
    let servers_cpu = || servers.iter().map(|s| cpu_secs(s.pid())).sum::<f64>();
    let cpu_before = (servers_cpu(), cpu_secs(std::process::id()));
    let start = Instant::now();
    for _ in 0..messages {
        let request = pb::SendChannelMessageRequest {
            channel_id: "fanout".into(),
            message: Some(stamped()),
            client_message_id: String::new(),
        };
        sender
            .send_channel_message(authed(&token, request))
            .await
            .expect("send");
    }
    let sent = start.elapsed();
    let mut delivered = 0;
    let mut last = start;
    for receiver in receivers {
        let (received, at) = receiver.await.expect("receiver");
        delivered += received;
        last = last.max(at);
    }
    let secs = (last - start).as_secs_f64();
    let server_cpu = servers_cpu() - cpu_before.0;
    let client_cpu = cpu_secs(std::process::id()) - cpu_before.1;
    println!();
    println!(
        "## Channel fan-out, one sender, {subscribers} subscribers on {connections} connections, {label}"
    );
    println!(
        "| messages sent | deliveries | send time s | all received s | deliveries/s | server CPU µs per delivery | client CPU µs per delivery |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {messages} | {delivered} | {:.2} | {secs:.2} | {:.0} | {:.2} | {:.2} |",
        sent.as_secs_f64(),
        delivered as f64 / secs,
        server_cpu * 1e6 / delivered as f64,
        client_cpu * 1e6 / delivered as f64
    );
}

/// The load generator used for both courier and the bare echo: an open loop that
/// starts `rate` calls per second for `secs` (a batch every millisecond, whatever the
/// calls in flight), each `call` returning its send→receive latency in µs when it
/// measures one itself. Returns the achieved start rate.
async fn open_loop<F, Fut>(rate: u64, secs: f64, call: F) -> (f64, Vec<u64>)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<u64>> + Send + 'static,
{
    let total = (rate as f64 * secs) as u64;
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = tokio::task::JoinSet::new();
    let mut started = 0u64;
    let mut latencies = Vec::with_capacity(total as usize);
    while started < total {
        ticks.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while started < due {
            calls.spawn(call(started));
            started += 1;
        }
        while let Some(done) = calls.try_join_next() {
            latencies.extend(done.expect("call"));
        }
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    while let Some(done) = calls.join_next().await {
        latencies.extend(done.expect("call"));
    }
    (achieved, latencies)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

/// One window at one rate: achieved rate, messages lost or failed, p50 and p99 ms.
type Window = (f64, usize, f64, f64);

/// The window with the median p99 of `windows`.
fn median_window(mut windows: Vec<Window>) -> Window {
    windows.sort_by(|a, b| a.3.total_cmp(&b.3));
    windows[windows.len() / 2]
}

/// alice → bob at `rate` for RATE_SECS; latency from send to bob's receipt.
async fn courier_window(
    server: &Server,
    channels: &[MessagingServiceClient<Channel>],
    token: &str,
    rate: u64,
) -> Window {
    let mut bob_client = connect(server).await;
    let mut bob = subscribe(&mut bob_client, "bob").await;
    let expected = (rate as f64 * RATE_SECS) as usize;
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(expected);
        while latencies.len() < expected {
            match tokio::time::timeout(Duration::from_secs(10), bob.message()).await {
                Ok(Ok(Some(event))) => {
                    if let Some(sent) = sent_micros(&event) {
                        latencies.push(micros_now().saturating_sub(sent));
                    }
                }
                _ => break,
            }
        }
        latencies
    });
    let channels = channels.to_vec();
    let token = token.to_owned();
    let (achieved, _) = open_loop(rate, RATE_SECS, move |i| {
        let mut client = channels[i as usize % channels.len()].clone();
        let token = token.clone();
        async move {
            let request = pb::SendPeerMessageRequest {
                peer_id: "bob".into(),
                message: Some(stamped()),
                options: None,
                client_message_id: String::new(),
            };
            // A failed send is counted as lost (bob never receives it).
            let _ = client.send_peer_message(authed(&token, request)).await;
            None
        }
    })
    .await;
    let mut latencies = receiver.await.expect("receiver");
    let lost = expected - latencies.len();
    latencies.sort_unstable();
    (
        achieved,
        lost,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// Unary echoes at `rate` for RATE_SECS; latency from call to answer.
async fn echo_window(
    channels: &[bare::bare_echo_client::BareEchoClient<Channel>],
    rate: u64,
) -> Window {
    let channels = channels.to_vec();
    let (achieved, mut latencies) = open_loop(rate, RATE_SECS, move |i| {
        let mut client = channels[i as usize % channels.len()].clone();
        async move {
            let sent = Instant::now();
            let echoed = client
                .echo(bare::Chunk {
                    data: Bytes::copy_from_slice(&micros_now().to_be_bytes()),
                })
                .await;
            // A failed call counts as never answered: u64::MAX, past any bound.
            Some(match echoed {
                Ok(_) => sent.elapsed().as_micros() as u64,
                Err(_) => u64::MAX,
            })
        }
    })
    .await;
    latencies.sort_unstable();
    let failed = latencies.iter().filter(|&&l| l == u64::MAX).count();
    latencies.retain(|&l| l != u64::MAX);
    (
        achieved,
        failed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// Peer messages alice → bob at rising rates, then a bare unary echo at the same
/// rates, from the same generator; the highest rate of each whose median window (of
/// WINDOWS) has p99 < 10 ms, the rate achieved and nothing lost.
async fn peer_rate() {
    println!();
    println!(
        "## Peer messages: rate against p99 send→receive, one server, {SENDER_CONNECTIONS} sender connections, median of {WINDOWS} windows of {RATE_SECS} s per rate"
    );
    let server = Server::start(&Backend::Local, &["--rate-limit", "1000000000"]);
    let echo_server = BareServer::start();
    let mut courier_channels = Vec::new();
    let mut echo_channels = Vec::new();
    for _ in 0..SENDER_CONNECTIONS {
        courier_channels.push(connect(&server).await);
        echo_channels.push(
            bare::bare_echo_client::BareEchoClient::connect(echo_server.url())
                .await
                .expect("connect echo"),
        );
    }
    let token = mint("alice");
    rate_race(
        "echo",
        &RATES,
        async |rate| courier_window(&server, &courier_channels, &token, rate).await,
        async |rate| echo_window(&echo_channels, rate).await,
    )
    .await;
}

/// Courier's peer messages and a bare `baseline` at rising `rates`, WINDOWS windows
/// of each per rate, interleaved (one of each in turn) so that the noise falls on
/// both alike; prints each rate's median window and the highest rate of each whose
/// median window has p99 < 10 ms, the rate achieved and nothing lost.
async fn rate_race(
    baseline: &str,
    rates: &[u64],
    courier: impl AsyncFn(u64) -> Window,
    bare: impl AsyncFn(u64) -> Window,
) {
    println!();
    println!(
        "| target rate/s | courier achieved/s | courier p50 ms | courier p99 ms | {baseline} achieved/s | {baseline} p50 ms | {baseline} p99 ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut best = [0u64; 2];
    let mut done = [false; 2];
    for &rate in rates {
        if done == [true, true] {
            break;
        }
        let mut windows: [Vec<Window>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..WINDOWS {
            for which in 0..2 {
                if !done[which] {
                    windows[which].push(if which == 0 {
                        courier(rate).await
                    } else {
                        bare(rate).await
                    });
                }
            }
        }
        let mut row = format!("| {rate} |");
        for which in 0..2 {
            if done[which] {
                row.push_str(" – | – | – |");
                continue;
            }
            let (achieved, lost, p50, p99) = median_window(std::mem::take(&mut windows[which]));
            let lost_note = if lost > 0 {
                format!(" ({lost} lost)")
            } else {
                String::new()
            };
            row.push_str(&format!(
                " {achieved:.0}{lost_note} | {p50:.2} | {p99:.2} |"
            ));
            if p99 < P99_BOUND_MS && achieved >= 0.95 * rate as f64 && lost == 0 {
                best[which] = rate;
            } else {
                done[which] = true;
            }
        }
        println!("{row}");
    }
    println!();
    println!(
        "| highest rate with p99 < {P99_BOUND_MS} ms | courier | {baseline} | ratio courier / {baseline} |"
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| messages/s | {} | {} | {:.2} |",
        best[0],
        best[1],
        best[0] as f64 / best[1].max(1) as f64
    );
}

/// Opens `count` idle Subscribe streams of as many users over connections of
/// STREAMS_PER_CONNECTION streams, and reads the server's RSS as they grow.
async fn idle_streams(count: usize) {
    let server = Server::start(&Backend::Local, &["--rate-limit", "1000000000"]);
    // One call first, so that the idle figure includes what the first call allocates.
    let mut warm = connect(&server).await;
    drop(subscribe(&mut warm, "warm").await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = memory_kib(server.pid(), "VmRSS");
    println!();
    println!(
        "## Idle Subscribe streams: server RSS, one stream per user, {STREAMS_PER_CONNECTION} streams per HTTP/2 connection"
    );
    println!();
    println!("| streams | connections | RSS MiB | above idle MiB | KiB per stream |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!("| 0 | 0 | {:.1} | 0 | – |", idle as f64 / 1024.0);
    let mut streams = Vec::with_capacity(count);
    let mut connections = Vec::new();
    let step = (count / 5).max(1);
    let started = Instant::now();
    while streams.len() < count {
        let batch_end = (streams.len() + step).min(count);
        let mut opening = tokio::task::JoinSet::new();
        let mut next = streams.len();
        while next < batch_end || !opening.is_empty() {
            while next < batch_end && opening.len() < 256 {
                if next % STREAMS_PER_CONNECTION == 0 {
                    connections.push(connect(&server).await);
                }
                let mut client = connections[next / STREAMS_PER_CONNECTION].clone();
                let user = format!("idle{next}");
                opening.spawn(async move {
                    tokio::time::timeout(Duration::from_secs(60), subscribe(&mut client, &user))
                        .await
                        .expect("subscribe in time")
                });
                next += 1;
            }
            if let Some(stream) = opening.join_next().await {
                streams.push(stream.expect("subscribe"));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = memory_kib(server.pid(), "VmRSS");
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} |",
            streams.len(),
            connections.len(),
            rss as f64 / 1024.0,
            (rss - idle) as f64 / 1024.0,
            (rss - idle) as f64 / streams.len() as f64
        );
    }
    eprintln!(
        "opened {} streams in {:.1} s",
        streams.len(),
        started.elapsed().as_secs_f64()
    );
}

struct Echo;

#[tonic::async_trait]
impl bare::bare_echo_server::BareEcho for Echo {
    async fn echo(
        &self,
        request: tonic::Request<bare::Chunk>,
    ) -> Result<tonic::Response<bare::Chunk>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

/// The bare relay: one listener at a time, fed by pushes.
#[derive(Default)]
struct Relay {
    listener:
        std::sync::Mutex<Option<tokio::sync::mpsc::Sender<Result<bare::Chunk, tonic::Status>>>>,
}

#[tonic::async_trait]
impl bare::bare_relay_server::BareRelay for Relay {
    async fn push_one(
        &self,
        request: tonic::Request<bare::Chunk>,
    ) -> Result<tonic::Response<bare::Total>, tonic::Status> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(listener) = listener {
            let _ = listener.send(Ok(request.into_inner())).await;
        }
        Ok(tonic::Response::new(bare::Total::default()))
    }

    type ListenStream = tokio_stream::wrappers::ReceiverStream<Result<bare::Chunk, tonic::Status>>;

    async fn listen(
        &self,
        _: tonic::Request<bare::Total>,
    ) -> Result<tonic::Response<Self::ListenStream>, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let _ = tx.try_send(Ok(bare::Chunk::default()));
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}

/// The bare unary echo (and the bare relay), with tonic's default settings.
async fn serve_echo() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!("listening {addr} {addr} {addr}");
    // TCP_NODELAY as courier sets it, so that small messages are not held back.
    tonic::transport::Server::builder()
        .add_service(bare::bare_echo_server::BareEchoServer::new(Echo))
        .add_service(bare::bare_relay_server::BareRelayServer::new(
            Relay::default(),
        ))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .expect("serve");
}

/// The size of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The disk a channel message takes, for 10 and for 1,000 members (`--replay`): 5,000
/// messages of 100 bytes of text each, on a fresh server (with `bus`, on a fresh
/// nats-server, through one replica).
async fn channel_disk(bus: bool) {
    const MESSAGES: usize = 5_000;
    let mut per_message = Vec::new();
    for members in [10usize, 1_000] {
        let nats = bus.then(|| Nats::start().expect("a nats-server on the PATH"));
        let media = tempfile::tempdir().expect("shared media folder");
        let url = nats.as_ref().map(|n| n.url()).unwrap_or_default();
        let server = match &nats {
            None => Server::start(&Backend::Local, &["--rate-limit", "100000000"]),
            Some(_) => Server::start(
                &Backend::shared(media.path()),
                &["--rate-limit", "100000000", "--bus", &url],
            ),
        };
        let disk_now = || match &nats {
            None => std::fs::metadata(server.data_dir.path().join("offline.redb"))
                .map(|m| m.len())
                .unwrap_or(0),
            Some(nats) => dir_bytes(&nats.store_dir()),
        };
        let mut client = connect(&server).await;
        for user in (0..members).map(|u| format!("disk{u}")) {
            let join = pb::JoinChannelRequest {
                channel_id: "disk".into(),
            };
            client
                .join_channel(authed(&mint(&user), join))
                .await
                .expect("join");
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = disk_now();
        let sender = mint("disk0");
        for _ in 0..MESSAGES {
            let request = pb::SendChannelMessageRequest {
                channel_id: "disk".into(),
                message: Some(pb::Message {
                    body: Some(Body::Text(pb::TextMessage {
                        text: "x".repeat(100),
                    })),
                }),
                client_message_id: String::new(),
            };
            client
                .send_channel_message(authed(&sender, request))
                .await
                .expect("send");
        }
        // Past the flush interval: the entries are on disk.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let bytes = disk_now().saturating_sub(before) as f64 / MESSAGES as f64;
        println!(
            "channel disk{}: {members} members, {MESSAGES} messages: {bytes:.0} bytes per message",
            if bus { " (JetStream)" } else { "" }
        );
        per_message.push(bytes);
    }
    println!(
        "channel disk: 1,000 members / 10 members = {:.2}",
        per_message[1] / per_message[0].max(1.0)
    );
}

/// The event log's cost per entry and the replay rate (`--replay`); with `bus`, the
/// JetStream log of two replicas (sent through the first, replayed from the second).
async fn replay(bus: bool) {
    const USERS: usize = 100;
    const EVENTS: usize = 1_000;
    let nats = bus.then(|| Nats::start().expect("a nats-server on the PATH"));
    let media = tempfile::tempdir().expect("shared media folder");
    let servers: Vec<Server> = match &nats {
        None => vec![Server::start(
            &Backend::Local,
            &["--rate-limit", "100000000"],
        )],
        Some(nats) => {
            let backend = Backend::shared(media.path());
            let url = nats.url();
            (0..2)
                .map(|_| Server::start(&backend, &["--rate-limit", "100000000", "--bus", &url]))
                .collect()
        }
    };
    let server = &servers[0];
    let replayer = servers.last().expect("a server");
    // What holds the log: the redb file and the server, or JetStream's store and the
    // nats-server.
    let disk_now = || match &nats {
        None => std::fs::metadata(server.data_dir.path().join("offline.redb"))
            .map(|m| m.len())
            .unwrap_or(0),
        Some(nats) => dir_bytes(&nats.store_dir()),
    };
    let holder_pid = match &nats {
        None => server.pid(),
        Some(nats) => nats.pid().expect("nats-server runs"),
    };
    let mut client = connect(server).await;
    let sender = mint("log-sender");
    for user in
        std::iter::once("log-sender".to_owned()).chain((0..USERS).map(|u| format!("log{u}")))
    {
        client
            .join_channel(authed(
                &mint(&user),
                pb::JoinChannelRequest {
                    channel_id: "log".into(),
                },
            ))
            .await
            .expect("join");
    }
    let rss_before = memory_kib(holder_pid, "VmRSS:");
    let disk_before = disk_now();
    let text = "x".repeat(100);
    let started = Instant::now();
    let cpu_before = cpu_secs(holder_pid);
    for _ in 0..EVENTS {
        let request = pb::SendChannelMessageRequest {
            channel_id: "log".into(),
            message: Some(pb::Message {
                body: Some(Body::Text(pb::TextMessage { text: text.clone() })),
            }),
            client_message_id: String::new(),
        };
        client
            .send_channel_message(authed(&sender, request))
            .await
            .expect("send");
    }
    let send_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs(holder_pid) - cpu_before;
    // Past the flush interval: the entries are on disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let entries = (USERS * EVENTS) as f64;
    let disk = disk_now().saturating_sub(disk_before);
    let rss = memory_kib(holder_pid, "VmRSS:") - rss_before;
    let holder = if bus { "nats-server" } else { "server" };
    println!(
        "event log{}: {USERS} users x {EVENTS} channel messages (100-byte text), {:.0} messages/s sent ({:.0} log entries/s), {holder} CPU {:.2} s",
        if bus {
            " (JetStream, two replicas)"
        } else {
            ""
        },
        EVENTS as f64 / send_secs,
        entries / send_secs,
        cpu
    );
    println!(
        "event log: disk {:.1} MB = {:.0} bytes per entry = {:.0} KB per user of {EVENTS} events; {holder} RSS +{:.1} MB = {:.0} bytes per entry",
        disk as f64 / 1e6,
        disk as f64 / entries,
        disk as f64 / entries * EVENTS as f64 / 1e3,
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / entries
    );
    if let Some(nats) = &nats {
        let js = async_nats::jetstream::new(
            async_nats::connect(nats.url()).await.expect("nats connect"),
        );
        let mut log = js
            .get_stream(courier_server::bus::OFFLINE)
            .await
            .expect("the log stream");
        let state = log.info().await.expect("stream info").state.clone();
        println!(
            "event log: JetStream's own count for {}: {} messages, {:.1} MB = {:.0} bytes per message",
            courier_server::bus::OFFLINE,
            state.messages,
            state.bytes as f64 / 1e6,
            state.bytes as f64 / state.messages.max(1) as f64
        );
        for replica in &servers {
            println!(
                "event log: replica RSS {:.1} MB (holds no log entries)",
                memory_kib(replica.pid(), "VmRSS:") as f64 / 1024.0
            );
        }
    }
    let server = replayer;
    // Replay: Subscribe after cursor 1 sends events 2..=1000 before ready.
    async fn replay_one(server: &Server, user: &str) -> usize {
        let mut client = connect(server).await;
        let mut stream = client
            .subscribe(authed(&mint(user), pb::SubscribeRequest { after: 1 }))
            .await
            .expect("subscribe")
            .into_inner();
        let mut n = 0;
        while let Some(event) = stream.message().await.expect("event") {
            if matches!(event.event, Some(Event::Ready(_))) {
                return n;
            }
            n += 1;
        }
        panic!("the stream ended before ready")
    }
    let started = Instant::now();
    let mut one = 0;
    for u in 0..10 {
        one += replay_one(server, &format!("log{u}")).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: one stream at a time, {one} events in {:.3} s = {:.0} events/s ({:.1} ms per 1,000-event replay)",
        secs,
        one as f64 / secs,
        secs * 1000.0 / 10.0
    );
    let started = Instant::now();
    let handles: Vec<_> = (10..20)
        .map(|u| {
            let url = server.url();
            let user = format!("log{u}");
            tokio::spawn(async move {
                let channel = Channel::from_shared(url)
                    .expect("url")
                    .connect()
                    .await
                    .expect("connect");
                let mut client = MessagingServiceClient::new(channel);
                let mut stream = client
                    .subscribe(authed(&mint(&user), pb::SubscribeRequest { after: 1 }))
                    .await
                    .expect("subscribe")
                    .into_inner();
                let mut n = 0usize;
                while let Some(event) = stream.message().await.expect("event") {
                    if matches!(event.event, Some(Event::Ready(_))) {
                        return n;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut all = 0;
    for handle in handles {
        all += handle.await.expect("replay");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: ten streams at once, {all} events in {:.3} s = {:.0} events/s",
        secs,
        all as f64 / secs
    );
}
