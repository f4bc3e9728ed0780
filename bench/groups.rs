//! `./bench/messaging --groups [--bus]` (issue 26): what group commit buys.
//! - the disk's fsync latency on this machine (p50, p99 of 4 KiB writes each followed
//!   by `fdatasync`, in the folder the servers keep their data in);
//! - channel sends to 100 members from 64 concurrent senders (each a member, so each
//!   message reaches 99), on one server, with the group sizes the event log's writer
//!   committed (its `courier_event_log_group_size` summary); with `--bus`, the same on
//!   JetStream (one nats-server, `sync_interval: always`) through three replicas;
//! - peer messages against a bare relay (a tonic server that takes a unary call and
//!   pushes it to another client's server stream, no storage), at rising rates: the
//!   highest rate whose p99 send→receive stays under 10 ms, for each.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use courier_server::pb;
use courier_testkit::{Backend, Nats, Server, authed, token as mint};
use tonic::transport::Channel;

use super::{
    RATE_SECS, SENDER_CONNECTIONS, WINDOWS, Window, bare, common::BareServer, connect,
    courier_window, micros_now, open_loop, percentile, rate_race, stamped, subscribe,
};

/// Channel members, and how many of them send at once.
const MEMBERS: usize = 100;
const SENDERS: usize = 64;
/// How long the senders send.
const SEND_SECS: f64 = 4.0;
/// The relay comparison's rates.
const RELAY_RATES: [u64; 13] = [
    2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000,
    60_000,
];

/// `only`: `channels` or `relay` runs that part alone (`--only NAME`).
pub async fn run(bus: bool, only: Option<&str>) {
    let part = |name: &str| only.is_none_or(|o| o == name);
    if part("channels") {
        fsync_latency();
        let one = Server::start(&Backend::Local, &["--rate-limit", "100000000"]);
        channel_sends("one server (redb, fsync per group)", &[&one], Some(&one)).await;
    }
    if bus && part("channels") {
        let nats = Nats::start().expect("a nats-server on the PATH (scripts/lib.sh builds one)");
        let media = tempfile::tempdir().expect("shared media folder");
        let backend = Backend::shared(media.path());
        let url = nats.url();
        let replicas: Vec<Server> = (0..3)
            .map(|_| Server::start(&backend, &["--rate-limit", "100000000", "--bus", &url]))
            .collect();
        let spread: Vec<&Server> = replicas.iter().collect();
        channel_sends(
            "3 replicas on JetStream (sync_interval: always)",
            &spread,
            None,
        )
        .await;
    }
    relay_rate().await;
}

/// 500 writes of 4 KiB, each followed by `fdatasync`, in `target/`.
fn fsync_latency() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a folder on the disk");
    let mut file = std::fs::File::create(dir.path().join("fsync")).expect("file");
    let block = vec![7u8; 4096];
    let mut micros = Vec::new();
    for _ in 0..500 {
        let start = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        micros.push(start.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    println!();
    println!("## The disk's fsync (4 KiB write + fdatasync, 500 times)");
    println!();
    println!("| p50 ms | p99 ms | max ms |");
    println!("| ---: | ---: | ---: |");
    println!(
        "| {:.3} | {:.3} | {:.3} |",
        percentile(&micros, 0.5),
        percentile(&micros, 0.99),
        micros.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// SENDERS members send channel messages as fast as they are answered for SEND_SECS;
/// every member reads its stream.
async fn channel_sends(label: &str, servers: &[&Server], local: Option<&Server>) {
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push(connect(servers[i % servers.len()]).await);
    }
    let mut receivers = Vec::new();
    for i in 0..MEMBERS {
        let user = format!("member{i}");
        let mut client = clients[i % clients.len()].clone();
        let join = pb::JoinChannelRequest {
            channel_id: "room".into(),
        };
        client
            .join_channel(authed(&mint(&user), join))
            .await
            .expect("join");
        let mut stream = subscribe(&mut client, &user).await;
        receivers.push(tokio::spawn(async move {
            let mut received = 0u64;
            while let Ok(Ok(Some(_))) =
                tokio::time::timeout(Duration::from_secs(5), stream.message()).await
            {
                received += 1;
            }
            received
        }));
    }
    let before = match local {
        Some(server) => group_sizes(server).await,
        None => (0.0, 0.0),
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(SEND_SECS);
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let mut client = clients[i % clients.len()].clone();
        let token = mint(&format!("member{i}"));
        senders.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut failed = 0u64;
            while Instant::now() < deadline {
                let request = pb::SendChannelMessageRequest {
                    channel_id: "room".into(),
                    message: Some(stamped()),
                    client_message_id: String::new(),
                };
                match client.send_channel_message(authed(&token, request)).await {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                }
            }
            (sent, failed)
        }));
    }
    let (mut sent, mut failed) = (0, 0);
    for sender in senders {
        let (s, f) = sender.await.expect("sender");
        sent += s;
        failed += f;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut delivered = 0;
    for receiver in receivers {
        delivered += receiver.await.expect("receiver");
    }
    let groups = match local {
        Some(server) => {
            let after = group_sizes(server).await;
            let (changes, commits) = (after.0 - before.0, after.1 - before.1);
            format!("{:.1}", changes / commits.max(1.0))
        }
        None => "–".into(),
    };
    println!();
    println!("## Channel sends to {MEMBERS} members from {SENDERS} concurrent senders, {label}");
    println!();
    println!(
        "| sends answered | failed | secs | sends/s | deliveries | deliveries/s | changes per group commit (mean) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {sent} | {failed} | {secs:.2} | {:.0} | {delivered} | {:.0} | {groups} |",
        sent as f64 / secs,
        delivered as f64 / secs
    );
}

/// The writer's (changes committed, groups committed) so far, from `/metrics`.
async fn group_sizes(server: &Server) -> (f64, f64) {
    let body = server.metrics_text().await;
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("courier_event_log_group_size_sum"),
        value("courier_event_log_group_size_count"),
    )
}

/// Peer messages through courier and through the bare relay at rising rates, the
/// median of WINDOWS windows each, from the same open-loop generator.
async fn relay_rate() {
    println!();
    println!(
        "## Peer messages against a bare relay: p99 send→receive, one server, {SENDER_CONNECTIONS} sender connections, median of {WINDOWS} windows of {RATE_SECS} s per rate"
    );
    let server = Server::start(&Backend::Local, &["--rate-limit", "1000000000"]);
    let relay = BareServer::start();
    let mut courier_channels = Vec::new();
    let mut relay_channels = Vec::new();
    for _ in 0..SENDER_CONNECTIONS {
        courier_channels.push(connect(&server).await);
        relay_channels.push(
            bare::bare_relay_client::BareRelayClient::connect(relay.url())
                .await
                .expect("connect relay"),
        );
    }
    let token = mint("alice");
    rate_race(
        "relay",
        &RELAY_RATES,
        async |rate| courier_window(&server, &courier_channels, &token, rate).await,
        async |rate| relay_window(&relay_channels, rate).await,
    )
    .await;
}

/// Unary pushes through the relay at `rate` for RATE_SECS; latency from the push to
/// the listener's receipt.
async fn relay_window(
    channels: &[bare::bare_relay_client::BareRelayClient<Channel>],
    rate: u64,
) -> Window {
    let mut listener = channels[0]
        .clone()
        .listen(bare::Total::default())
        .await
        .expect("listen")
        .into_inner();
    // The first message says the listener is registered.
    let _ = listener.message().await;
    let expected = (rate as f64 * RATE_SECS) as usize;
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(expected);
        while latencies.len() < expected {
            match tokio::time::timeout(Duration::from_secs(10), listener.message()).await {
                Ok(Ok(Some(chunk))) => {
                    if let Some(sent) = chunk.data.get(..8) {
                        let sent = u64::from_be_bytes(sent.try_into().unwrap_or([0; 8]));
                        latencies.push(micros_now().saturating_sub(sent));
                    }
                }
                _ => break,
            }
        }
        latencies
    });
    let channels = channels.to_vec();
    let (achieved, _) = open_loop(rate, RATE_SECS, move |i| {
        let mut client = channels[i as usize % channels.len()].clone();
        async move {
            let chunk = bare::Chunk {
                data: bytes::Bytes::copy_from_slice(&micros_now().to_be_bytes()),
            };
            let _ = client.push_one(chunk).await;
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
