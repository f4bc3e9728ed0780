//! Drills against a three-node NATS cluster (issue 31): three courier replicas with
//! `--bus-replicas 3` over a [`NatsCluster`] whose routes each pass through their own
//! Toxiproxy proxy. Under a steady, bounded load of peer messages (to users online:
//! DELIVERED; to users offline: CACHED) and channel messages, each drill injects one
//! fault, then checks with Subscribe `after` cursors that every acknowledged message
//! is replayable exactly once, and prints a summary line (acknowledged, failed, lost,
//! duplicated, time to recover, send rate during the fault).
//!
//! Faults: the stream leader of COURIER_OFFLINE killed (`kill -9`) and restarted on its
//! store; a node cut off from the other two and healed; a node replaced by a new one
//! (membership change); the courier replicas restarted one after another; a NATS node
//! restarted under the memory-backed streams (leases, rate windows).
//!
//! The fsync policy is `sync_interval: always`, or NATS's default with
//! COURIER_TEST_NATS_SYNC=default (for BENCHMARKS.md). The drills run one at a time
//! (they share two cores). Skipped without a nats-server or Toxiproxy, unless
//! COURIER_TEST_REQUIRE_NATS / COURIER_TEST_REQUIRE_TOXIPROXY is set.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Backend, NatsCluster, Server, SyncPolicy, authed, text, token};
use courier_server::pb::{
    self, PeerMessageState, messaging_service_client::MessagingServiceClient,
    subscribe_response::Event as Kind,
};
use tonic::{Code, transport::Channel};

/// Every stream courier makes.
const STREAMS: [&str; 6] = [
    "COURIER_MEMBERS",
    "COURIER_OFFLINE",
    "COURIER_HANDED",
    "COURIER_DEDUP",
    "COURIER_LEASES",
    "COURIER_RATE",
];
/// Users with a Subscribe stream open during the load.
const ONLINE: [&str; 2] = ["on0", "on1"];
/// Users without one.
const OFFLINE: [&str; 2] = ["off0", "off1"];
/// The channel, its members besides the senders.
const ROOM: &str = "room";
const ROOM_READERS: [&str; 2] = ["on0", "off0"];
/// Parallel senders.
const SENDERS: usize = 4;
/// The most sends of one sender in a drill.
const MOST_EACH: usize = 4000;
/// How long the load goes on after a fault, at most, waiting for a send to succeed.
const RECOVERY_WAIT: Duration = Duration::from_secs(40);
/// How long a send may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One drill at a time: each runs six NATS and courier processes on two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sync_policy() -> SyncPolicy {
    match std::env::var("COURIER_TEST_NATS_SYNC").as_deref() {
        Ok("default") => SyncPolicy::Default,
        _ => SyncPolicy::Always,
    }
}

/// The NATS cluster and three courier replicas over it.
struct Rig {
    nats: NatsCluster,
    replicas: Vec<Server>,
    flags: Vec<String>,
    _media: tempfile::TempDir,
}

impl Rig {
    fn start(extra: &[&str]) -> Option<Self> {
        let nats = NatsCluster::start_with(sync_policy())?;
        let media = tempfile::tempdir().expect("a shared media folder");
        let backend = Backend::shared(media.path());
        let mut flags: Vec<String> = [
            "--bus",
            &nats.urls(),
            "--bus-replicas",
            "3",
            "--offline-cache-size",
            "5000",
            "--event-log-size",
            "5000",
        ]
        .map(str::to_owned)
        .to_vec();
        flags.extend(extra.iter().map(|f| (*f).to_owned()));
        if !extra.contains(&"--rate-limit") {
            flags.extend(["--rate-limit".to_owned(), "100000".to_owned()]);
        }
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let replicas = (0..3).map(|_| Server::start(&backend, &args)).collect();
        let rig = Self {
            nats,
            replicas,
            flags,
            _media: media,
        };
        rig.nats
            .wait_stream_leaders(&STREAMS, 3, Duration::from_secs(60));
        Some(rig)
    }

    fn urls(&self) -> Vec<String> {
        self.replicas.iter().map(Server::url).collect()
    }

    /// Stops replica `n` (0-based) gracefully and starts it again on its port.
    fn restart_replica(&mut self, n: usize) {
        let args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        self.replicas[n].terminate();
        self.replicas[n].wait_exit(Duration::from_secs(20));
        self.replicas[n].restart(&args);
    }
}

fn client(url: &str) -> MessagingServiceClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("a URL")
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    MessagingServiceClient::new(channel)
}

/// Retries `call` for up to `limit` (the cluster may still be settling).
async fn until_ok<T, F, Fut>(limit: Duration, what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(status) => {
                assert!(
                    Instant::now() < deadline,
                    "{what} failed for {limit:?}: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Subscribes `user` after `after` and returns the events replayed before `ready`,
/// the ready event, and the open stream.
async fn subscribe(
    url: &str,
    user: &str,
    after: u64,
) -> Result<
    (
        Vec<pb::SubscribeResponse>,
        pb::SubscribeReady,
        tonic::Streaming<pb::SubscribeResponse>,
    ),
    tonic::Status,
> {
    // Bounded: a replica whose bus has no quorum may hold the call.
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        client(url).subscribe(authed(&token(user), pb::SubscribeRequest { after })),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("no answer within 10 s"))??
    .into_inner();
    let mut replay = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no ready within 30 s"))??
            .ok_or_else(|| tonic::Status::unavailable("the stream ended"))?;
        match event.event {
            Some(Kind::Ready(ready)) => return Ok((replay, ready, stream)),
            Some(_) => replay.push(event),
            None => return Err(tonic::Status::internal("an empty event")),
        }
    }
}

/// The text of a replayed message.
fn text_of(event: &pb::SubscribeResponse) -> Option<String> {
    let message = match &event.event {
        Some(Kind::PeerMessage(m)) => m.message.as_ref(),
        Some(Kind::ChannelMessage(m)) => m.message.as_ref(),
        _ => None,
    }?;
    match &message.body {
        Some(pb::message::Body::Text(t)) => Some(t.text.clone()),
        _ => None,
    }
}

async fn online(url: &str, user: &str) -> bool {
    let request = pb::QueryPeersOnlineStatusRequest {
        user_ids: vec![user.to_owned()],
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client(url).query_peers_online_status(authed(&token("probe"), request)),
    )
    .await;
    match answer {
        Ok(Ok(r)) => r.into_inner().statuses.iter().any(|s| s.online),
        _ => true,
    }
}

/// What one send came to.
#[derive(Debug, Clone)]
struct Outcome {
    text: String,
    /// The users whose logs it goes to.
    receivers: Vec<String>,
    /// DELIVERED, CACHED, or a channel message's OK (None: not acknowledged).
    ack: Option<&'static str>,
    /// The refusal, when not acknowledged.
    failure: Option<String>,
    ended: Instant,
}

/// The receivers' cursors before the load, and the feeds kept open for the online ones.
struct Audience {
    baseline: BTreeMap<String, u64>,
    stop: Arc<AtomicBool>,
    feeds: Vec<tokio::task::JoinHandle<()>>,
}

/// Joins the senders and readers to the room, takes every receiver's cursor, and opens
/// a feed for each online user that reads everything and moves to another replica
/// when its stream ends (a client that stays connected through the others).
async fn audience(urls: &[String]) -> Audience {
    let limit = Duration::from_secs(30);
    let mut members: Vec<String> = (0..SENDERS).map(|s| format!("sender{s}")).collect();
    members.extend(ROOM_READERS.map(str::to_owned));
    for user in &members {
        until_ok(limit, "joining the room", || {
            let mut c = client(&urls[0]);
            let request = pb::JoinChannelRequest {
                channel_id: ROOM.into(),
            };
            let request = authed(&token(user), request);
            async move {
                tokio::time::timeout(Duration::from_secs(10), c.join_channel(request))
                    .await
                    .map_err(|_| tonic::Status::deadline_exceeded("no answer within 10 s"))?
            }
        })
        .await;
    }
    let mut baseline = BTreeMap::new();
    for user in OFFLINE {
        let (_, ready, stream) =
            until_ok(limit, "a baseline", || subscribe(&urls[1], user, 0)).await;
        baseline.insert(user.to_owned(), ready.cursor);
        drop(stream);
        let deadline = Instant::now() + limit;
        while online(&urls[2], user).await {
            assert!(Instant::now() < deadline, "{user} still online");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut feeds = Vec::new();
    for (k, user) in ONLINE.iter().enumerate() {
        let (_, ready, stream) = until_ok(limit, "a baseline", || {
            subscribe(&urls[k % urls.len()], user, 0)
        })
        .await;
        baseline.insert((*user).to_owned(), ready.cursor);
        let urls = urls.to_vec();
        let stop = stop.clone();
        let user = (*user).to_owned();
        feeds.push(tokio::spawn(async move {
            let mut stream = Some(stream);
            let mut cursor = ready.cursor;
            let mut at = k;
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = stream.as_mut() {
                    match tokio::time::timeout(Duration::from_millis(500), s.message()).await {
                        Ok(Ok(Some(event))) => {
                            if event.cursor > 0 {
                                cursor = cursor.max(event.cursor);
                            }
                            continue;
                        }
                        Err(_) => continue,
                        Ok(_) => stream = None,
                    }
                }
                at = (at + 1) % urls.len();
                match subscribe(&urls[at], &user, cursor).await {
                    Ok((replay, _, s)) => {
                        if let Some(last) = replay.last() {
                            cursor = cursor.max(last.cursor);
                        }
                        stream = Some(s);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }));
    }
    Audience {
        baseline,
        stop,
        feeds,
    }
}

/// The load: `SENDERS` senders, each sending in turn a peer message to an online user,
/// one to an offline user and a channel message, `pace` apart, through one replica,
/// moving to the next replica when a send fails; until `stop` or `MOST_EACH` sends.
fn start_load(
    urls: &[String],
    tag: &str,
    pace: Duration,
    stop: Arc<AtomicBool>,
    successes: Arc<std::sync::atomic::AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    (0..SENDERS)
        .map(|s| {
            let urls = urls.to_vec();
            let stop = stop.clone();
            let successes = successes.clone();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let me = format!("sender{s}");
                let token = token(&me);
                let mut at = s % urls.len();
                let mut c = client(&urls[at]);
                let mut outcomes = Vec::new();
                for i in 0..MOST_EACH {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let text_body = format!("{tag}:{s}:{i}");
                    let (receivers, result) = match i % 3 {
                        0 | 1 => {
                            let peer = if i % 3 == 0 {
                                ONLINE[s % 2]
                            } else {
                                OFFLINE[s % 2]
                            };
                            let request = pb::SendPeerMessageRequest {
                                peer_id: peer.into(),
                                message: Some(text(&text_body)),
                                options: Some(pb::SendMessageOptions {
                                    enable_offline_messaging: true,
                                }),
                                client_message_id: String::new(),
                            };
                            let sent = tokio::time::timeout(
                                SEND_TIMEOUT,
                                c.send_peer_message(authed(&token, request)),
                            )
                            .await;
                            let result = match sent {
                                Ok(Ok(r)) => match r.into_inner().state() {
                                    PeerMessageState::Delivered => Ok("delivered"),
                                    PeerMessageState::Cached => Ok("cached"),
                                    other => Err(format!("{other:?}")),
                                },
                                Ok(Err(status)) => Err(format!("{:?}", status.code())),
                                Err(_) => Err("timeout".to_owned()),
                            };
                            (vec![peer.to_owned()], result)
                        }
                        _ => {
                            let request = pb::SendChannelMessageRequest {
                                channel_id: ROOM.into(),
                                message: Some(text(&text_body)),
                                client_message_id: String::new(),
                            };
                            let sent = tokio::time::timeout(
                                SEND_TIMEOUT,
                                c.send_channel_message(authed(&token, request)),
                            )
                            .await;
                            let result = match sent {
                                Ok(Ok(_)) => Ok("channel"),
                                Ok(Err(status)) => Err(format!("{:?}", status.code())),
                                Err(_) => Err("timeout".to_owned()),
                            };
                            (ROOM_READERS.map(str::to_owned).to_vec(), result)
                        }
                    };
                    let failed = result.is_err();
                    if !failed {
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes.push(Outcome {
                        text: text_body,
                        receivers,
                        ack: result.as_ref().ok().copied(),
                        failure: result.err(),
                        ended: Instant::now(),
                    });
                    if failed {
                        // Another replica, after a breath.
                        at = (at + 1) % urls.len();
                        c = client(&urls[at]);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    tokio::time::sleep(pace).await;
                }
                outcomes
            })
        })
        .collect()
}

/// A drill under load: the load runs `before`, then `fault` (which returns when the
/// fault is over, healed or not), then `after`; then every acknowledged message is
/// checked. Returns the summary.
struct Run {
    name: String,
    started: Instant,
    fault_start: Instant,
    fault_end: Instant,
    outcomes: Vec<Outcome>,
    baseline: BTreeMap<String, u64>,
}

async fn under_load<F>(rig: &mut Rig, name: &str, pace: Duration, fault: F) -> Run
where
    F: FnOnce(&mut Rig),
{
    let urls = rig.urls();
    let audience = audience(&urls).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let successes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = start_load(&urls, name, pace, stop.clone(), successes.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fault_start = Instant::now();
    // The fault blocks this thread (process and proxy calls); the load runs on the
    // runtime's workers meanwhile.
    tokio::task::block_in_place(|| fault(rig));
    let fault_end = Instant::now();
    // The load goes on until a send succeeds after the fault (at most RECOVERY_WAIT:
    // recovery takes 4 to 8 s on two busy cores), then 5 s more, long enough for the
    // slow load of the memory-streams drill to show it.
    let before = successes.load(Ordering::Relaxed);
    while successes.load(Ordering::Relaxed) == before && fault_end.elapsed() < RECOVERY_WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for sender in load {
        outcomes.extend(sender.await.expect("a sender finishes"));
    }
    audience.stop.store(true, Ordering::Relaxed);
    for feed in audience.feeds {
        let _ = feed.await;
    }
    Run {
        name: name.to_owned(),
        started,
        fault_start,
        fault_end,
        outcomes,
        baseline: audience.baseline,
    }
}

/// Replays every receiver's log after its baseline and checks that each acknowledged
/// message is there exactly once; prints the summary line.
async fn check(rig: &Rig, run: &Run) {
    tokio::task::block_in_place(|| {
        rig.nats
            .wait_stream_leaders(&STREAMS, 3, Duration::from_secs(60))
    });
    let urls = rig.urls();
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut stored_unacked = 0;
    for (user, after) in &run.baseline {
        let (replay, _, _) = until_ok(Duration::from_secs(30), "the replay", || {
            subscribe(&urls[0], user, *after)
        })
        .await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for event in &replay {
            if let Some(t) = text_of(event) {
                *seen.entry(t).or_default() += 1;
            }
        }
        let acked: BTreeSet<&str> = run
            .outcomes
            .iter()
            .filter(|o| o.ack.is_some() && o.receivers.contains(user))
            .map(|o| o.text.as_str())
            .collect();
        for text in &acked {
            if !seen.contains_key(*text) {
                lost.push(format!("{user}:{text}"));
            }
        }
        for (text, n) in &seen {
            if *n > 1 {
                duplicated.push(format!("{user}:{text} x{n}"));
            }
            if !acked.contains(text.as_str()) {
                stored_unacked += 1;
            }
        }
    }
    let acked: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.ack.is_some()).collect();
    let count = |kind: &str| acked.iter().filter(|o| o.ack == Some(kind)).count();
    let failures: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.ack.is_none()).collect();
    let mut failure_kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &failures {
        *failure_kinds
            .entry(f.failure.as_deref().unwrap_or("?"))
            .or_default() += 1;
    }
    // Recovered: the first acknowledged send after the last failure since the fault
    // (or the first after the fault began, when none failed).
    let last_failure = failures
        .iter()
        .map(|f| f.ended)
        .filter(|t| *t >= run.fault_start)
        .max()
        .unwrap_or(run.fault_start);
    let recovered = acked
        .iter()
        .map(|o| o.ended)
        .filter(|t| *t > last_failure)
        .min()
        .map(|t| t - run.fault_start);
    let in_window = |from: Instant, to: Instant| {
        let n = acked
            .iter()
            .filter(|o| o.ended >= from && o.ended <= to)
            .count();
        n as f64 / (to - from).as_secs_f64().max(0.001)
    };
    let fault_rate = in_window(run.fault_start, run.fault_end);
    let before_rate = in_window(run.started, run.fault_start);
    let sync = match sync_policy() {
        SyncPolicy::Always => "always",
        SyncPolicy::Default => "default",
    };
    eprintln!(
        "drill {} (sync_interval {sync}): acknowledged {} (delivered {}, cached {}, channel {}), \
         failed {} {failure_kinds:?}, stored though not acknowledged {stored_unacked}, \
         lost {}, duplicated {}, recovered in {}, fault {:.1} s, send rate during the fault \
         {fault_rate:.0}/s (before it {before_rate:.0}/s)",
        run.name,
        acked.len(),
        count("delivered"),
        count("cached"),
        count("channel"),
        failures.len(),
        lost.len(),
        duplicated.len(),
        recovered.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
        (run.fault_end - run.fault_start).as_secs_f64(),
    );
    assert!(
        acked.len() > 50,
        "the load got through: {} acknowledged",
        acked.len()
    );
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "messages replayed twice: {duplicated:?}"
    );
    assert!(recovered.is_some(), "no send succeeded after the fault");
}

async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_and_restarted_loses_nothing_acknowledged() {
    let _one = lock().await;
    let Some(mut rig) = Rig::start(&[]) else {
        return;
    };
    let run = under_load(&mut rig, "leader-kill", Duration::from_millis(25), |rig| {
        let leader = rig.nats.stream_leader("COURIER_OFFLINE").expect("a leader");
        let i = rig.nats.index_of(&leader).expect("a node");
        rig.nats.kill(i);
        // Another leader is elected among the two left.
        let deadline = Instant::now() + Duration::from_secs(30);
        while rig
            .nats
            .stream_leader("COURIER_OFFLINE")
            .is_none_or(|l| l == leader)
        {
            assert!(
                Instant::now() < deadline,
                "no new leader of COURIER_OFFLINE"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        rig.nats.restart(i);
        rig.nats.wait_healthy(i, Duration::from_secs(60));
    })
    .await;
    check(&rig, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_and_healed_loses_nothing_acknowledged() {
    let _one = lock().await;
    let Some(mut rig) = Rig::start(&[]) else {
        return;
    };
    let run = under_load(&mut rig, "partition", Duration::from_millis(25), |rig| {
        // The leader of the log is the one cut off: a new one is elected on the other side.
        let leader = rig.nats.stream_leader("COURIER_OFFLINE").expect("a leader");
        let i = rig.nats.index_of(&leader).expect("a node");
        rig.nats.cut(i);
        rig.nats.wait_routes(i, 0, Duration::from_secs(20));
        for j in rig.nats.members() {
            if j != i {
                rig.nats.wait_routes(j, 1, Duration::from_secs(20));
                assert!(!rig.nats.routes(j).contains(&leader), "the cut holds");
            }
        }
        std::thread::sleep(Duration::from_secs(4));
        rig.nats.heal(i);
        for j in rig.nats.members() {
            rig.nats.wait_routes(j, 2, Duration::from_secs(30));
        }
    })
    .await;
    check(&rig, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaced_by_a_new_one_loses_nothing_acknowledged() {
    let _one = lock().await;
    let Some(mut rig) = Rig::start(&[]) else {
        return;
    };
    let run = under_load(&mut rig, "membership", Duration::from_millis(25), |rig| {
        // A node that is not the log's leader is lost, a new node with a fresh store
        // joins, and the lost one is removed from the meta group: its streams' copies
        // move to the new node.
        let leader = rig.nats.stream_leader("COURIER_OFFLINE").expect("a leader");
        let old = rig
            .nats
            .members()
            .into_iter()
            .find(|i| rig.nats.node(*i).name != leader)
            .expect("a follower");
        let old_name = rig.nats.node(old).name.clone();
        rig.nats.kill(old);
        let new = rig.nats.add_node();
        let new_name = rig.nats.node(new).name.clone();
        rig.nats.remove_node(old);
        rig.nats.wait_meta_leader(Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let moved = STREAMS.iter().all(|s| {
                let peers = rig.nats.stream_peers(s);
                peers.contains(&new_name) && !peers.contains(&old_name)
            });
            if moved {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "streams did not move from {old_name} to {new_name}: {:?}",
                rig.nats.stream_peers("COURIER_OFFLINE")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        rig.nats
            .wait_stream_leaders(&STREAMS, 3, Duration::from_secs(60));
    })
    .await;
    check(&rig, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_replicas_loses_nothing_acknowledged() {
    let _one = lock().await;
    let Some(mut rig) = Rig::start(&[]) else {
        return;
    };
    let run = under_load(
        &mut rig,
        "rolling-restart",
        Duration::from_millis(25),
        |rig| {
            for n in 0..3 {
                rig.restart_replica(n);
                std::thread::sleep(Duration::from_secs(1));
            }
        },
    )
    .await;
    check(&rig, &run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_rate_windows_work_again_after_a_nats_node_restart() {
    let _one = lock().await;
    const LIMIT: usize = 40;
    let limit = LIMIT.to_string();
    let Some(mut rig) = Rig::start(&[
        "--rate-limit",
        &limit,
        "--rate-window",
        "10s",
        "--max-streams-per-user",
        "2",
    ]) else {
        return;
    };
    // Slow enough that the senders stay under the rate limit.
    let run = under_load(
        &mut rig,
        "memory-streams",
        Duration::from_millis(300),
        |rig| {
            let leader = rig.nats.stream_leader("COURIER_LEASES").expect("a leader");
            let i = rig.nats.index_of(&leader).expect("a node");
            rig.nats.restart(i);
            rig.nats.wait_healthy(i, Duration::from_secs(60));
        },
    )
    .await;
    let restarted = Instant::now();
    let urls = rig.urls();
    // Leases: two streams of one user open, a third refused.
    let first = until_ok(Duration::from_secs(30), "a stream", || {
        subscribe(&urls[0], "dana", 0)
    })
    .await;
    let second = until_ok(Duration::from_secs(30), "a stream", || {
        subscribe(&urls[1], "dana", 0)
    })
    .await;
    let third = subscribe(&urls[2], "dana", 0).await.map(|_| ());
    assert_eq!(
        third.expect_err("a third stream is refused").code(),
        Code::ResourceExhausted
    );
    drop((first, second));
    // The rate window: a fresh sender gets LIMIT messages through in the window, no more.
    let mut accepted = 0;
    let mut refused = 0;
    let mut c = client(&urls[1]);
    for i in 0..LIMIT + 5 {
        let request = pb::SendPeerMessageRequest {
            peer_id: "sink".into(),
            message: Some(text(&format!("rate:{i}"))),
            options: Some(pb::SendMessageOptions {
                enable_offline_messaging: true,
            }),
            client_message_id: String::new(),
        };
        match c.send_peer_message(authed(&token("eve"), request)).await {
            Ok(_) => accepted += 1,
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            Err(s) => panic!("an unexpected refusal: {s:?}"),
        }
    }
    eprintln!(
        "drill memory-streams: leases and the rate window hold {:.2} s after the restart \
         ({accepted} accepted, {refused} refused past the limit of {LIMIT})",
        restarted.elapsed().as_secs_f64()
    );
    assert_eq!((accepted, refused), (LIMIT, 5));
    check(&rig, &run).await;
}
