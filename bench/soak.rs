//! The soak run (`./bench/soak`, see its header): drives one courier-server for a given
//! time with a realistic mix and samples it once a second.
//!
//! The mix:
//! - `--users` users (1,000), every one subscribed. The first 90 % stay subscribed and
//!   are members of one of 50 channels; the last 10 % come and go: online for 5–20 s,
//!   offline for 1–5 s, each return a new Subscribe on a new connection (a reconnect).
//! - peer messages at `--peer-rate` a second (with offline messaging, so a message to an
//!   offline user is CACHED and must arrive on its next stream) and channel messages at
//!   `--channel-rate` a second, from random users to random users or their channel;
//! - `--transfers` workers each uploading a file of 100 KiB to 30 MiB (log-uniform)
//!   every `--transfer-interval` and downloading it back (media live for 2 minutes, so
//!   the sweeper runs too).
//!
//! Nothing may be lost: every peer message answered DELIVERED or CACHED must be
//! received, every channel message by each other member, and every upload must
//! download byte-identical. A user about to go offline first stops being a target,
//! waits for the sends to it in flight, and reads up to a marker message, so that a
//! DELIVERED message is never dropped unread by the driver itself.
//!
//! Once a second it writes a CSV row: the server's RSS, open file descriptors, threads,
//! live Tokio tasks (`courier_runtime_alive_tasks`), Subscribe streams, the p99
//! send→receive latency of live messages, transfer throughput, and the counts. At the
//! end it prints a summary (also `summary.txt`) and exits non-zero if anything was lost.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use courier_server::pb::{
    self, MediaKind, PeerMessageState, media_service_client::MediaServiceClient,
    messaging_service_client::MessagingServiceClient, subscribe_response::Event,
};
use courier_testkit::{
    Backend, Server, authed, data_frames, download, header, header_frame, pattern, token,
    upload_frames,
};
use rand::Rng;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

/// The command line.
struct Args {
    duration: Duration,
    users: usize,
    peer_rate: u32,
    channel_rate: u32,
    transfers: usize,
    transfer_interval: Duration,
    out: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(600),
        users: 1000,
        peer_rate: 100,
        channel_rate: 10,
        transfers: 2,
        transfer_interval: Duration::from_secs(2),
        out: PathBuf::from("target/soak"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => {
                args.duration = humantime::parse_duration(&value()).expect("a duration")
            }
            "--users" => args.users = value().parse().expect("a count"),
            "--peer-rate" => args.peer_rate = value().parse().expect("a rate"),
            "--channel-rate" => args.channel_rate = value().parse().expect("a rate"),
            "--transfers" => args.transfers = value().parse().expect("a count"),
            "--transfer-interval" => {
                args.transfer_interval = humantime::parse_duration(&value()).expect("a duration");
            }
            "--out" => args.out = PathBuf::from(value()),
            // cargo bench passes --bench.
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.users >= 100, "--users must be at least 100");
    args
}

/// One sample: seconds, RSS MiB, fds, threads, tasks, subscribers, p99 ms, MiB/s.
type Row = (f64, f64, u64, u64, i64, i64, f64, f64);

const CHANNELS: usize = 50;
const USERS_PER_CONNECTION: usize = 20;
const MARKER: &str = "soak-marker";

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn user(i: usize) -> String {
    format!("u{i:04}")
}

fn channel_of(i: usize) -> String {
    format!("c{:02}", i % CHANNELS)
}

/// Whether a user may be sent to now.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Subscribed, or offline with its messages cached.
    Target,
    /// About to go offline: no new sends until its stream is gone.
    Closing,
}

struct UserState {
    mode: Mode,
    in_flight: u32,
}

/// What is owed and what arrived. A message enters when its send is acknowledged or
/// when it arrives, whichever is first, and leaves when both happened.
#[derive(Default)]
struct Ledger {
    /// Peer messages: seq → +1 when acknowledged DELIVERED/CACHED, -1 when received.
    peer: HashMap<u64, i64>,
    /// Channel messages: seq → the receipts still owed (acknowledgement adds the
    /// members but the sender, each receipt takes one).
    channel: HashMap<u64, i64>,
}

impl Ledger {
    fn settle(map: &mut HashMap<u64, i64>, seq: u64, delta: i64) {
        let entry = map.entry(seq).or_insert(0);
        *entry += delta;
        if *entry == 0 {
            map.remove(&seq);
        }
    }
}

/// Counters of one sampling second (swapped out by the sampler) and of the run.
#[derive(Default)]
struct Stats {
    peer_sent: AtomicU64,
    peer_cached: AtomicU64,
    peer_unreachable: AtomicU64,
    channel_sent: AtomicU64,
    received: AtomicU64,
    send_errors: AtomicU64,
    reconnects: AtomicU64,
    transfer_bytes: AtomicU64,
    transfers_done: AtomicU64,
    transfer_mismatches: AtomicU64,
    transfer_errors: AtomicU64,
    /// Send→receive latencies (µs) of live messages in the current second.
    latencies: Mutex<Vec<u64>>,
}

struct World {
    users: usize,
    states: Vec<Mutex<UserState>>,
    ledger: Mutex<Ledger>,
    stats: Stats,
    seq: AtomicU64,
    server: Server,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl World {
    fn persistent(&self) -> usize {
        self.users * 9 / 10
    }

    /// Channel members per channel (all persistent users), the sender included.
    fn channel_size(&self, channel: usize) -> usize {
        (0..self.persistent())
            .filter(|i| i % CHANNELS == channel)
            .count()
    }

    /// Takes one event off a stream and books it. Returns the marker's text if it was one.
    fn book(&self, event: Event) -> Option<String> {
        let now = micros_now();
        let (text, offline, kind) = match event {
            Event::PeerMessage(m) => (text_of(&m.message), m.offline, 'p'),
            Event::ChannelMessage(m) => (text_of(&m.message), false, 'c'),
            Event::Ready(_) => return None,
        };
        if text.starts_with("m:") {
            return Some(text);
        }
        let mut parts = text.split(':');
        let (Some(_), Some(seq), Some(sent)) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let (Ok(seq), Ok(sent)) = (seq.parse::<u64>(), sent.parse::<u64>()) else {
            return None;
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if !offline {
            self.stats
                .latencies
                .lock()
                .expect("latencies")
                .push(now.saturating_sub(sent));
        }
        let mut ledger = self.ledger.lock().expect("ledger");
        match kind {
            'p' => Ledger::settle(&mut ledger.peer, seq, -1),
            _ => Ledger::settle(&mut ledger.channel, seq, -1),
        }
        None
    }
}

fn text_of(message: &Option<pb::Message>) -> String {
    match message.as_ref().and_then(|m| m.body.as_ref()) {
        Some(pb::message::Body::Text(t)) => t.text.clone(),
        _ => String::new(),
    }
}

fn text(text: String) -> pb::Message {
    pb::Message {
        body: Some(pb::message::Body::Text(pb::TextMessage { text })),
    }
}

/// Opens a Subscribe stream for `user` on `channel`, books the offline messages, and
/// returns it after `ready`.
async fn subscribe(
    world: &World,
    channel: Channel,
    user: &str,
) -> Result<tonic::Streaming<pb::SubscribeResponse>, tonic::Status> {
    let mut client = MessagingServiceClient::new(channel);
    let mut stream = client
        .subscribe(authed(&token(user), pb::SubscribeRequest { after: 0 }))
        .await?
        .into_inner();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(response))) => match response.event {
                Some(Event::Ready(_)) => return Ok(stream),
                Some(event) => {
                    world.book(event);
                }
                None => {}
            },
            Ok(Ok(None)) => return Err(tonic::Status::unavailable("the stream ended")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(tonic::Status::deadline_exceeded("no ready in 30 s")),
        }
    }
}

/// Reads a stream until it ends (the run aborts it once everything has arrived).
async fn reader(world: Arc<World>, mut stream: tonic::Streaming<pb::SubscribeResponse>) {
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                if let Some(event) = response.event {
                    world.book(event);
                }
            }
            other => {
                eprintln!("soak: a persistent stream ended: {other:?}");
                world.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// A user that comes and goes until the run stops.
async fn roaming_user(world: Arc<World>, index: usize) {
    let name = user(index);
    let mut stop = world.stop.clone();
    let mut marker = messaging_client(&world).await;
    let mut n = 0u64;
    while !*stop.borrow() {
        // Online: a new connection and stream.
        let channel = world.server.channel().await;
        let mut stream = match subscribe(&world, channel.clone(), &name).await {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("soak: {name} could not subscribe: {e}");
                world.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        world.states[index].lock().expect("state").mode = Mode::Target;
        let online_for = Duration::from_millis(rand::rng().random_range(5_000..20_000));
        let until = tokio::time::Instant::now() + online_for;
        let mut alive = true;
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(response)) => {
                        if let Some(event) = response.event {
                            world.book(event);
                        }
                    }
                    _ => { alive = false; break; }
                },
                () = tokio::time::sleep_until(until) => break,
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Closing: no new sends; wait for those in flight, then read up to a marker.
        world.states[index].lock().expect("state").mode = Mode::Closing;
        for _ in 0..500 {
            if world.states[index].lock().expect("state").in_flight == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if alive {
            n += 1;
            let tag = format!("m:{n}");
            let sent = marker
                .send_peer_message(authed(
                    &token(MARKER),
                    pb::SendPeerMessageRequest {
                        peer_id: name.clone(),
                        message: Some(text(tag.clone())),
                        options: None,
                        client_message_id: String::new(),
                    },
                ))
                .await;
            if sent.is_ok() {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                loop {
                    match tokio::time::timeout_at(deadline, stream.message()).await {
                        Ok(Ok(Some(response))) => {
                            if let Some(event) = response.event
                                && world.book(event).as_deref() == Some(tag.as_str())
                            {
                                break;
                            }
                        }
                        _ => {
                            eprintln!("soak: {name}'s marker did not arrive");
                            break;
                        }
                    }
                }
            }
        }
        drop(stream);
        drop(channel);
        world.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        if *stop.borrow() {
            break;
        }
        // Offline once the server knows it (so nothing is DELIVERED to the old stream).
        for _ in 0..100 {
            let status = marker
                .query_peers_online_status(authed(
                    &token(MARKER),
                    pb::QueryPeersOnlineStatusRequest {
                        user_ids: vec![name.clone()],
                    },
                ))
                .await;
            if matches!(&status, Ok(r) if r.get_ref().statuses.iter().all(|s| !s.online)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        world.states[index].lock().expect("state").mode = Mode::Target;
        let offline_for = Duration::from_millis(rand::rng().random_range(1_000..5_000));
        tokio::select! {
            () = tokio::time::sleep(offline_for) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

async fn messaging_client(world: &World) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(world.server.channel().await)
}

/// Sends peer messages at `rate` a second until the run stops.
async fn peer_sender(world: Arc<World>, rate: u32) {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(messaging_client(&world).await);
    }
    let limit = Arc::new(Semaphore::new(256));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0usize;
    while !*world.stop.borrow() {
        tick.tick().await;
        let (from, to) = {
            let mut rng = rand::rng();
            let from = rng.random_range(0..world.users);
            let mut to = rng.random_range(0..world.users - 1);
            if to >= from {
                to += 1;
            }
            (from, to)
        };
        {
            let mut state = world.states[to].lock().expect("state");
            if state.mode == Mode::Closing {
                continue;
            }
            state.in_flight += 1;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        n += 1;
        let mut client = clients[n % clients.len()].clone();
        let world = world.clone();
        tokio::spawn(async move {
            let seq = world.seq.fetch_add(1, Ordering::Relaxed);
            let request = pb::SendPeerMessageRequest {
                peer_id: user(to),
                message: Some(text(format!("p:{seq}:{}", micros_now()))),
                options: Some(pb::SendMessageOptions {
                    enable_offline_messaging: true,
                }),
                client_message_id: String::new(),
            };
            let result = client
                .send_peer_message(authed(&token(&user(from)), request))
                .await;
            match result.map(|r| r.into_inner().state()) {
                Ok(PeerMessageState::Delivered) => {
                    Ledger::settle(&mut world.ledger.lock().expect("ledger").peer, seq, 1);
                }
                Ok(PeerMessageState::Cached) => {
                    world.stats.peer_cached.fetch_add(1, Ordering::Relaxed);
                    Ledger::settle(&mut world.ledger.lock().expect("ledger").peer, seq, 1);
                }
                Ok(_) => {
                    world.stats.peer_unreachable.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    eprintln!("soak: a peer send failed: {e}");
                    world.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            world.stats.peer_sent.fetch_add(1, Ordering::Relaxed);
            world.states[to].lock().expect("state").in_flight -= 1;
            drop(permit);
        });
    }
    // Every send answered before the run settles its ledger.
    let _ = limit.acquire_many(256).await;
}

/// Sends channel messages at `rate` a second until the run stops.
async fn channel_sender(world: Arc<World>, rate: u32) {
    let mut client = messaging_client(&world).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*world.stop.borrow() {
        tick.tick().await;
        let from = rand::rng().random_range(0..world.persistent());
        let seq = world.seq.fetch_add(1, Ordering::Relaxed);
        let owed = world.channel_size(from % CHANNELS) as i64 - 1;
        let request = pb::SendChannelMessageRequest {
            channel_id: channel_of(from),
            message: Some(text(format!("c:{seq}:{}", micros_now()))),
            client_message_id: String::new(),
        };
        match client
            .send_channel_message(authed(&token(&user(from)), request))
            .await
        {
            Ok(_) => {
                Ledger::settle(&mut world.ledger.lock().expect("ledger").channel, seq, owed);
                world.stats.channel_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("soak: a channel send failed: {e}");
                world.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Uploads and downloads back files of 100 KiB to 30 MiB until the run stops.
async fn transfer_worker(world: Arc<World>, worker: usize, interval: Duration) {
    let mut client = MediaServiceClient::new(world.server.channel().await)
        .max_decoding_message_size(8 * 1024 * 1024);
    let owner = format!("transfer{worker}");
    let token = token(&owner);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u8;
    while !*world.stop.borrow() {
        tick.tick().await;
        n = n.wrapping_add(1);
        let size = {
            let exp = rand::rng()
                .random_range((100.0f64 * 1024.0).ln()..(30.0f64 * 1024.0 * 1024.0).ln());
            exp.exp() as usize
        };
        let data: Bytes = pattern(size, n ^ (worker as u8).wrapping_mul(31));
        let mut frames = vec![header_frame(header(
            MediaKind::File,
            "soak.bin",
            size as u64,
        ))];
        frames.extend(data_frames(&data, 256 * 1024));
        let uploaded = match upload_frames(&mut client, &token, frames).await {
            Ok(media) => media,
            Err(e) => {
                eprintln!("soak: an upload failed: {e}");
                world.stats.transfer_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        world
            .stats
            .transfer_bytes
            .fetch_add(size as u64, Ordering::Relaxed);
        match download(&mut client, &token, &uploaded.media_id, 0, 0).await {
            Ok((_, bytes)) if bytes == data => {
                world
                    .stats
                    .transfer_bytes
                    .fetch_add(size as u64, Ordering::Relaxed);
                world.stats.transfers_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                eprintln!(
                    "soak: download of {} differs from its upload",
                    uploaded.media_id
                );
                world
                    .stats
                    .transfer_mismatches
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("soak: a download failed: {e}");
                world.stats.transfer_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn p99(latencies: &mut [u64]) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() as f64) * 0.99).ceil() as usize;
    latencies[i.clamp(1, latencies.len()) - 1] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("the output folder");
    let backend = Backend::s3().unwrap_or(Backend::Local);
    let server = Server::start(
        &backend,
        &[
            "--media-ttl",
            "2m",
            "--sweep-interval",
            "30s",
            "--content-grace",
            "1m",
            "--max-streams-per-user",
            "4",
        ],
    );
    let pid = server.pid();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let world = Arc::new(World {
        users: args.users,
        states: (0..args.users)
            .map(|_| {
                Mutex::new(UserState {
                    mode: Mode::Target,
                    in_flight: 0,
                })
            })
            .collect(),
        ledger: Mutex::default(),
        stats: Stats::default(),
        seq: AtomicU64::new(0),
        server,
        stop,
    });
    eprintln!(
        "soak: server pid {pid}; {} users, {} peer + {} channel messages/s, {} transfer workers every {:?}, for {:?}",
        args.users,
        args.peer_rate,
        args.channel_rate,
        args.transfers,
        args.transfer_interval,
        args.duration
    );

    // The persistent users: join their channel, subscribe (20 per connection).
    let persistent = world.persistent();
    let mut join = messaging_client(&world).await;
    for i in 0..persistent {
        join.join_channel(authed(
            &token(&user(i)),
            pb::JoinChannelRequest {
                channel_id: channel_of(i),
            },
        ))
        .await
        .expect("joins its channel");
    }
    let mut tasks = Vec::new();
    let mut connection = None;
    for i in 0..persistent {
        if i.is_multiple_of(USERS_PER_CONNECTION) {
            connection = Some(world.server.channel().await);
        }
        let connection = connection.clone().expect("a connection");
        let stream = subscribe(&world, connection, &user(i))
            .await
            .expect("a persistent user subscribes");
        tasks.push(tokio::spawn(reader(world.clone(), stream)));
    }
    let mut roaming = Vec::new();
    for i in persistent..args.users {
        roaming.push(tokio::spawn(roaming_user(world.clone(), i)));
    }
    eprintln!("soak: {persistent} users subscribed and in channels; starting the load");
    let started = Instant::now();
    let mut load = vec![
        tokio::spawn(peer_sender(world.clone(), args.peer_rate)),
        tokio::spawn(channel_sender(world.clone(), args.channel_rate)),
    ];
    for w in 0..args.transfers {
        load.push(tokio::spawn(transfer_worker(
            world.clone(),
            w,
            args.transfer_interval,
        )));
    }

    // Sampling, once a second.
    let csv_path = args.out.join("soak.csv");
    let mut csv = std::fs::File::create(&csv_path).expect("the CSV");
    writeln!(
        csv,
        "t_s,rss_mib,fds,threads,tasks,subscribers,p99_ms,transfer_mib_s,peer_sent,channel_sent,received,reconnects,owed_peer,owed_channel,errors"
    )
    .expect("write");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_bytes = 0u64;
    let mut rows: Vec<Row> = Vec::new();
    while started.elapsed() < args.duration {
        tick.tick().await;
        let mut latencies = std::mem::take(&mut *world.stats.latencies.lock().expect("latencies"));
        let bytes = world.stats.transfer_bytes.load(Ordering::Relaxed);
        let (owed_peer, owed_channel) = {
            let ledger = world.ledger.lock().expect("ledger");
            (ledger.peer.len(), ledger.channel.len())
        };
        let row = (
            started.elapsed().as_secs_f64(),
            proc_status(pid, "VmRSS") as f64 / 1024.0,
            open_fds(pid),
            proc_status(pid, "Threads"),
            world.server.metric("courier_runtime_alive_tasks").await,
            world.server.metric("courier_subscribers").await,
            p99(&mut latencies),
            (bytes - last_bytes) as f64 / (1024.0 * 1024.0),
        );
        last_bytes = bytes;
        let s = &world.stats;
        writeln!(
            csv,
            "{:.1},{:.1},{},{},{},{},{:.2},{:.2},{},{},{},{},{},{},{}",
            row.0,
            row.1,
            row.2,
            row.3,
            row.4,
            row.5,
            row.6,
            row.7,
            s.peer_sent.load(Ordering::Relaxed),
            s.channel_sent.load(Ordering::Relaxed),
            s.received.load(Ordering::Relaxed),
            s.reconnects.load(Ordering::Relaxed),
            owed_peer,
            owed_channel,
            s.send_errors.load(Ordering::Relaxed) + s.transfer_errors.load(Ordering::Relaxed),
        )
        .expect("write");
        rows.push(row);
        if rows.len().is_multiple_of(30) {
            eprintln!(
                "soak: {:>5.0}s rss {:.1} MiB, fds {}, threads {}, tasks {}, p99 {:.1} ms",
                row.0, row.1, row.2, row.3, row.4, row.6
            );
        }
    }
    let _ = stop_tx.send(true);
    for task in load {
        let _ = task.await;
    }
    // Roaming users go offline (reading up to their marker), then every one comes back
    // once to take what was cached for it.
    for task in roaming {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    for i in persistent..args.users {
        let channel = world.server.channel().await;
        match subscribe(&world, channel, &user(i)).await {
            Ok(stream) => tasks.push(tokio::spawn(reader(world.clone(), stream))),
            Err(e) => eprintln!("soak: {} could not come back: {e}", user(i)),
        }
    }
    // Let what was sent arrive (bounded).
    let drain = Instant::now();
    loop {
        let owed = {
            let ledger = world.ledger.lock().expect("ledger");
            ledger.peer.values().filter(|v| **v > 0).count()
                + ledger.channel.values().filter(|v| **v > 0).count()
        };
        if owed == 0 || drain.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.abort();
    }

    let ledger = world.ledger.lock().expect("ledger");
    let lost_peer = ledger.peer.values().filter(|v| **v > 0).count();
    let lost_channel: i64 = ledger.channel.values().filter(|v| **v > 0).sum();
    let unexpected: i64 = ledger
        .peer
        .values()
        .chain(ledger.channel.values())
        .filter(|v| **v < 0)
        .map(|v| -v)
        .sum();
    let s = &world.stats;
    let summary = summarise(&rows);
    let report = format!(
        "duration {:.0} s; {} users ({} roaming)\n\
         peer messages sent {} (cached {}, unreachable {}), channel messages sent {}, events received {}\n\
         reconnects {}, transfers {} ({} MiB moved), mismatched downloads {}, failed transfers {}, failed sends {}\n\
         lost peer messages {}, lost channel receipts {}, unexpected receipts {}\n\
         {summary}",
        started.elapsed().as_secs_f64(),
        args.users,
        args.users - persistent,
        s.peer_sent.load(Ordering::Relaxed),
        s.peer_cached.load(Ordering::Relaxed),
        s.peer_unreachable.load(Ordering::Relaxed),
        s.channel_sent.load(Ordering::Relaxed),
        s.received.load(Ordering::Relaxed),
        s.reconnects.load(Ordering::Relaxed),
        s.transfers_done.load(Ordering::Relaxed),
        s.transfer_bytes.load(Ordering::Relaxed) / (1024 * 1024),
        s.transfer_mismatches.load(Ordering::Relaxed),
        s.transfer_errors.load(Ordering::Relaxed),
        s.send_errors.load(Ordering::Relaxed),
        lost_peer,
        lost_channel,
        unexpected,
    );
    println!("{report}");
    std::fs::write(args.out.join("summary.txt"), &report).expect("the summary");
    let lost =
        lost_peer > 0 || lost_channel > 0 || s.transfer_mismatches.load(Ordering::Relaxed) > 0;
    if lost {
        eprintln!("soak: something was lost");
        std::process::exit(1);
    }
}

/// Early (after the first minute's warm-up, or the first quarter) against late (the
/// last minute, or the last quarter) medians of RSS, fds, threads and tasks, and the
/// overall p99 and throughput.
fn summarise(rows: &[Row]) -> String {
    if rows.len() < 8 {
        return "too short to summarise".into();
    }
    let window = (rows.len() / 4).min(60);
    let early = &rows[window..2 * window];
    let late = &rows[rows.len() - window..];
    let median = |xs: Vec<f64>| {
        let mut xs: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
        xs.sort_by(|a, b| a.total_cmp(b));
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let pair = |f: &dyn Fn(&Row) -> f64| {
        (
            median(early.iter().map(f).collect()),
            median(late.iter().map(f).collect()),
        )
    };
    let rss = pair(&|r| r.1);
    let fds = pair(&|r| r.2 as f64);
    let threads = pair(&|r| r.3 as f64);
    let tasks = pair(&|r| r.4 as f64);
    let p99s = median(rows.iter().map(|r| r.6).collect());
    let worst = rows
        .iter()
        .map(|r| r.6)
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    let peak_rss = rows.iter().map(|r| r.1).fold(0.0f64, f64::max);
    let throughput: f64 = rows.iter().map(|r| r.7).sum::<f64>() / rows.len() as f64;
    format!(
        "medians early (s {:.0}-{:.0}) -> late (last {window} s): rss {:.1} -> {:.1} MiB (peak {:.1}), fds {:.0} -> {:.0}, threads {:.0} -> {:.0}, tasks {:.0} -> {:.0}\n\
         p99 send->receive per second: median {:.2} ms, worst {:.2} ms; transfer throughput mean {:.2} MiB/s",
        early[0].0,
        early[early.len() - 1].0,
        rss.0,
        rss.1,
        peak_rss,
        fds.0,
        fds.1,
        threads.0,
        threads.1,
        tasks.0,
        tasks.1,
        p99s,
        worst,
        throughput
    )
}
