//! Messaging benchmark (run it with `./bench/messaging`), on one server over loopback:
//! - peer send→receive latency (p50, p99) while alice sends to bob at 2,000 msg/s;
//! - channel fan-out: deliveries per second from one sender to 1,000 subscribers.
//!
//! With `--bus` (`./bench/messaging --bus`) the same run also measures three replicas
//! sharing a nats-server with JetStream (started by the benchmark, from the PATH):
//! alice on replica 1 sending to bob on replica 2, and the fan-out with the
//! subscribers spread over the three replicas, next to the one-server figures.

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

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "the messaging benchmark runs with `./bench/messaging` (cargo bench), not as a test"
        );
        return;
    }
    let one = Server::start(&Backend::Local, &["--rate-limit", "100000000"]);
    latency("one server", &one, &one).await;
    if !std::env::args().any(|a| a == "--bus") {
        fanout("one server", &[&one]).await;
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
    fanout("one server", &[&one]).await;
    let spread: Vec<&Server> = replicas.iter().collect();
    fanout("3 replicas through NATS", &spread).await;
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
        .subscribe(authed(&mint(user), pb::SubscribeRequest {}))
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

async fn fanout(label: &str, servers: &[&Server]) {
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        clients.push(connect(servers[i % servers.len()]).await);
    }
    let mut receivers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let user = format!("user{i}");
        let mut client = clients[i % CONNECTIONS].clone();
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
            while received < FANOUT_MESSAGES {
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
    let start = Instant::now();
    for _ in 0..FANOUT_MESSAGES {
        let request = pb::SendChannelMessageRequest {
            channel_id: "fanout".into(),
            message: Some(stamped()),
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
    println!();
    println!(
        "## Channel fan-out, one sender, {SUBSCRIBERS} subscribers on {CONNECTIONS} connections, {label}"
    );
    println!("| messages sent | deliveries | send time s | all received s | deliveries/s |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {FANOUT_MESSAGES} | {delivered} | {:.2} | {secs:.2} | {:.0} |",
        sent.as_secs_f64(),
        delivered as f64 / secs
    );
}
