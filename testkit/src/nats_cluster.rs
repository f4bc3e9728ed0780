//! A three-node NATS cluster on 127.0.0.1 for the cluster drills (tests/cluster.rs):
//! three `nats-server` processes, JetStream on each with its own store folder, and
//! every route between two nodes through its own Toxiproxy proxy, so that a drill can
//! cut a node off and heal it, kill any node (SIGKILL) and start it again on its
//! store, or replace one by a new node with a fresh store (a membership change).
//!
//! Routes are all explicit: node A reaches node B only through the proxy A->B (and B
//! reaches A through B->A). NATS gossips the route address of each server it meets
//! to the others, which would open a direct (implicit) route around the proxies; each
//! node therefore advertises a route address where nothing listens
//! (`cluster.advertise`), and the implicit routes fail. Clients are not told of the
//! other servers either (`no_advertise`): a client reaches the nodes it was given.
//!
//! Accounts: `COURIER` (JetStream enabled; the user that connects without
//! credentials, `no_auth_user`) and the system account `SYS` (user `sys`), whose
//! `$JS.API.SERVER.REMOVE` takes a peer out of the JetStream meta group.
//!
//! Needs a nats-server binary (see [`crate::Nats`]) and Toxiproxy
//! (COURIER_TEST_TOXIPROXY); without either the drills are skipped, unless
//! COURIER_TEST_REQUIRE_NATS / COURIER_TEST_REQUIRE_TOXIPROXY is set.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    Proxy, Toxiproxy,
    nats::{find_binary, free_port},
};

/// The cluster's name (`cluster.name`).
const CLUSTER: &str = "courier";
/// The route address every node advertises: nothing listens there, so the routes NATS
/// would open from gossip fail and every route stays one of the proxied ones.
const NOWHERE: &str = "127.0.0.1:1";

/// How JetStream flushes its file store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `sync_interval: always`: every write fsynced before it is acknowledged (the
    /// README's recommendation).
    Always,
    /// NATS's default (a flush every two minutes).
    Default,
}

/// One nats-server of the cluster.
pub struct ClusterNode {
    /// `server_name`, `n1`, `n2`, ...
    pub name: String,
    /// The client port.
    pub port: u16,
    /// The monitoring port (`/routez`, `/jsz`, `/healthz`).
    pub monitor: u16,
    /// The route port, which only the proxies connect to.
    route_port: u16,
    /// The configuration file and the JetStream store.
    dir: tempfile::TempDir,
    /// The process, while it runs.
    child: Option<Child>,
}

impl ClusterNode {
    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether its process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three (or, during a membership change, more) nats-servers clustered through
/// proxies; every process is killed when dropped.
pub struct NatsCluster {
    /// The nodes, by index; a removed node is `None` (indexes stay stable).
    nodes: Vec<Option<ClusterNode>>,
    /// The proxy of each route, (from, to).
    routes: BTreeMap<(usize, usize), Proxy>,
    toxiproxy: Toxiproxy,
    binary: PathBuf,
    sync: SyncPolicy,
    /// The next node's number (for its `server_name`).
    next_name: usize,
}

impl NatsCluster {
    /// Three nodes with `sync_interval: always`, their JetStream meta group formed, or
    /// `None` without a nats-server or Toxiproxy.
    pub fn start() -> Option<Self> {
        Self::start_with(SyncPolicy::Always)
    }

    /// Three nodes with `sync` as their fsync policy.
    pub fn start_with(sync: SyncPolicy) -> Option<Self> {
        let toxiproxy = Toxiproxy::from_env()?;
        let Some(binary) = find_binary() else {
            assert!(
                std::env::var_os("COURIER_TEST_REQUIRE_NATS").is_none(),
                "COURIER_TEST_REQUIRE_NATS is set but no nats-server was found"
            );
            eprintln!("skipped: no nats-server (run ./scripts/test to build one)");
            return None;
        };
        let mut cluster = Self {
            nodes: Vec::new(),
            routes: BTreeMap::new(),
            toxiproxy,
            binary,
            sync,
            next_name: 1,
        };
        for _ in 0..3 {
            cluster.new_node();
        }
        for i in 0..3 {
            cluster.write_config(i);
        }
        for i in 0..3 {
            cluster.launch(i);
        }
        cluster.wait_meta_leader(Duration::from_secs(60));
        for i in 0..3 {
            cluster.wait_routes(i, 2, Duration::from_secs(30));
        }
        Some(cluster)
    }

    /// The fsync policy.
    pub fn sync(&self) -> SyncPolicy {
        self.sync
    }

    /// Node `i`; panics if it was removed.
    pub fn node(&self, i: usize) -> &ClusterNode {
        self.nodes[i].as_ref().expect("a node of the cluster")
    }

    /// The indexes of the nodes not removed.
    pub fn members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.members()
            .into_iter()
            .find(|i| self.node(*i).name == name)
    }

    /// The client URLs of the nodes not removed, separated by commas (for `--bus`).
    pub fn urls(&self) -> String {
        self.members()
            .iter()
            .map(|i| self.node(*i).url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `i` at once (SIGKILL), keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].as_mut() {
            node.kill();
        }
    }

    /// Kills node `i` and starts it again on the same ports and store; returns once
    /// its JetStream is enabled (it may still be catching up: see
    /// [`NatsCluster::wait_healthy`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
    }

    /// Cuts node `i` off from the others: every proxy of a route from it or to it is
    /// disabled (its connections closed, new ones refused).
    pub fn cut(&self, i: usize) {
        self.set_links(i, false);
    }

    /// Undoes [`NatsCluster::cut`].
    pub fn heal(&self, i: usize) {
        self.set_links(i, true);
    }

    fn set_links(&self, i: usize, enabled: bool) {
        for ((from, to), proxy) in &self.routes {
            if *from == i || *to == i {
                proxy.set_enabled(enabled);
            }
        }
    }

    /// Adds a node with a fresh store and a new `server_name`, routed to and from
    /// every other node (their configurations are rewritten and reloaded), and waits
    /// until it has routes to all the running ones. Returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.new_node();
        for j in self.members() {
            self.write_config(j);
        }
        self.launch(i);
        for j in self.members() {
            if j != i && self.node(j).running() {
                self.reload(j);
            }
        }
        let peers = self.running().len() - 1;
        self.wait_routes(i, peers, Duration::from_secs(30));
        i
    }

    /// Kills node `i`, takes it out of the JetStream meta group (`$JS.API.SERVER.REMOVE`
    /// through the system account of another node), deletes its proxies and its store,
    /// and drops the routes to it from the others' configurations.
    pub fn remove_node(&mut self, i: usize) {
        self.kill(i);
        let name = self.node(i).name.clone();
        let via = self
            .members()
            .into_iter()
            .find(|j| *j != i && self.node(*j).running())
            .expect("a running node to ask");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The meta leader may be moving: try until it answers success.
            match self.system_request(
                via,
                "$JS.API.SERVER.REMOVE",
                &format!(r#"{{"peer":"{name}"}}"#),
            ) {
                Ok(answer) if answer["success"].as_bool() == Some(true) => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "removing peer {name} from the meta group: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        self.routes.retain(|(from, to), _| *from != i && *to != i);
        self.nodes[i] = None;
        for j in self.members() {
            self.write_config(j);
            if self.node(j).running() {
                self.reload(j);
            }
        }
    }

    /// The server names node `i` has routes to now, from its `/routez` (empty when it
    /// does not answer).
    pub fn routes(&self, i: usize) -> BTreeSet<String> {
        let Some(routez) = self.monitor_json(i, "/routez") else {
            return BTreeSet::new();
        };
        routez["routes"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .filter_map(|r| r["remote_name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until node `i` has routes to exactly `peers` other servers.
    pub fn wait_routes(&self, i: usize, peers: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let routes = self.routes(i);
            if routes.len() == peers {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} has routes to {routes:?}, not {peers} servers, after {limit:?}",
                self.node(i).name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The JetStream meta leader as node `i` sees it.
    pub fn meta_leader_seen_by(&self, i: usize) -> Option<String> {
        let jsz = self.monitor_json(i, "/jsz")?;
        jsz["meta_cluster"]["leader"]
            .as_str()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// Waits until the running nodes agree on a JetStream meta leader, and returns it.
    pub fn wait_meta_leader(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let seen: BTreeSet<Option<String>> = self
                .running()
                .into_iter()
                .map(|i| self.meta_leader_seen_by(i))
                .collect();
            if let [Some(leader)] = seen.iter().collect::<Vec<_>>()[..] {
                return leader.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no agreed JetStream meta leader after {limit:?}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The leader of stream `stream` (the server name), as the node leading it reports
    /// in its `/jsz`; `None` while there is none.
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        self.running().into_iter().find_map(|i| {
            let cluster = self.stream_cluster(i, stream)?;
            let leader = cluster["leader"].as_str()?;
            (leader == self.node(i).name).then(|| leader.to_owned())
        })
    }

    /// Waits until each of `streams` has a leader and as many current replicas as
    /// `replicas` (the leader included), and returns the leaders.
    pub fn wait_stream_leaders(
        &self,
        streams: &[&str],
        replicas: usize,
        limit: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let leaders: Vec<Option<String>> = streams
                .iter()
                .map(|s| {
                    let leader = self.stream_leader(s)?;
                    let i = self.index_of(&leader)?;
                    let cluster = self.stream_cluster(i, s)?;
                    let current = cluster["replicas"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .filter(|p| p["current"].as_bool() == Some(true))
                                .count()
                        })
                        .unwrap_or(0);
                    (current + 1 >= replicas).then_some(leader)
                })
                .collect();
            if leaders.iter().all(Option::is_some) {
                return leaders.into_iter().flatten().collect();
            }
            assert!(
                Instant::now() < deadline,
                "streams {streams:?} without a leader and {replicas} current replicas after {limit:?}: {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The peers that hold stream `stream` (leader first), as its leader reports.
    pub fn stream_peers(&self, stream: &str) -> Vec<String> {
        let Some(leader) = self.stream_leader(stream) else {
            return Vec::new();
        };
        let Some(cluster) = self
            .index_of(&leader)
            .and_then(|i| self.stream_cluster(i, stream))
        else {
            return Vec::new();
        };
        let mut peers = vec![leader];
        if let Some(replicas) = cluster["replicas"].as_array() {
            peers.extend(
                replicas
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned)),
            );
        }
        peers
    }

    /// Waits until node `i` reports healthy on `/healthz` (JetStream enabled and every
    /// stream and consumer it holds current).
    pub fn wait_healthy(&self, i: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.healthy(i, "/healthz") {
            assert!(
                Instant::now() < deadline,
                "{} not healthy after {limit:?}",
                self.node(i).name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The running nodes.
    fn running(&self) -> Vec<usize> {
        self.members()
            .into_iter()
            .filter(|i| self.node(*i).running())
            .collect()
    }

    /// The `cluster` object of stream `stream` in node `i`'s `/jsz`.
    fn stream_cluster(&self, i: usize, stream: &str) -> Option<Value> {
        let jsz = self.monitor_json(i, "/jsz?accounts=true&streams=true")?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"].as_str() == Some(stream))
            .map(|s| s["cluster"].clone())
    }

    /// A new node's folder and ports (not started), with a proxy for each route
    /// between it and every other node.
    fn new_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("n{}", self.next_name);
        self.next_name += 1;
        let node = ClusterNode {
            name,
            port: free_port(),
            monitor: free_port(),
            route_port: free_port(),
            dir: tempfile::tempdir().expect("a folder for nats-server"),
            child: None,
        };
        let upstream = format!("127.0.0.1:{}", node.route_port);
        self.nodes.push(Some(node));
        for j in self.members() {
            if j == i {
                continue;
            }
            let (from, to) = (&self.node(j).name, &self.node(i).name);
            let to_new = self
                .toxiproxy
                .proxy(&format!("nats-{from}-{to}"), &upstream);
            let back = format!("127.0.0.1:{}", self.node(j).route_port);
            let from_new = self.toxiproxy.proxy(&format!("nats-{to}-{from}"), &back);
            self.routes.insert((j, i), to_new);
            self.routes.insert((i, j), from_new);
        }
        i
    }

    fn write_config(&self, i: usize) {
        let node = self.node(i);
        let store = node.dir.path().join("jetstream");
        let sync = match self.sync {
            SyncPolicy::Always => "sync_interval: always",
            SyncPolicy::Default => "",
        };
        let routes: Vec<String> = self
            .routes
            .iter()
            .filter(|((from, _), _)| *from == i)
            .map(|(_, proxy)| format!("    \"nats-route://{}\"", proxy.listen))
            .collect();
        let config = format!(
            r#"server_name: "{name}"
listen: "127.0.0.1:{port}"
http: "127.0.0.1:{monitor}"
ping_interval: "1s"
ping_max: 2
accounts {{
  SYS {{ users: [ {{ user: "sys", password: "sys" }} ] }}
  COURIER {{ jetstream: enabled, users: [ {{ user: "courier", password: "courier" }} ] }}
}}
system_account: SYS
no_auth_user: "courier"
jetstream {{
  store_dir: "{store}"
  {sync}
  max_memory_store: 256MB
  max_file_store: 4GB
}}
cluster {{
  name: "{CLUSTER}"
  listen: "127.0.0.1:{route_port}"
  advertise: "{NOWHERE}"
  no_advertise: true
  routes: [
{routes}
  ]
}}
"#,
            name = node.name,
            port = node.port,
            monitor = node.monitor,
            route_port = node.route_port,
            store = store.display(),
            routes = routes.join("\n"),
        );
        std::fs::write(node.config_path(), config).expect("nats.conf");
    }

    fn launch(&mut self, i: usize) {
        let binary = self.binary.clone();
        let node = self.nodes[i].as_mut().expect("a node of the cluster");
        node.child = Some(crate::nats::spawn_server(&binary, &node.config_path()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy(i, "/healthz?js-enabled-only=true") {
            assert!(
                Instant::now() < deadline,
                "{} did not enable JetStream within 30 s",
                self.node(i).name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes node `i` read its configuration again (SIGHUP): new or removed routes.
    fn reload(&self, i: usize) {
        let pid = self.node(i).child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "reloading {}", self.node(i).name);
    }

    fn healthy(&self, i: usize, path: &str) -> bool {
        http_get(self.node(i).monitor, path).is_some_and(|(status, _)| status == 200)
    }

    fn monitor_json(&self, i: usize, path: &str) -> Option<Value> {
        let (status, body) = http_get(self.node(i).monitor, path)?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// A request on the system account of node `i` (core NATS protocol over a plain
    /// socket), and its JSON answer.
    fn system_request(&self, i: usize, subject: &str, payload: &str) -> Result<Value, String> {
        nats_request(self.node(i).port, ("sys", "sys"), subject, payload)
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.kill();
        }
    }
}

/// `GET path` on 127.0.0.1:`port`: the status and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// One request/reply over the core NATS protocol with `user`'s credentials.
fn nats_request(
    port: u16,
    (user, pass): (&str, &str),
    subject: &str,
    payload: &str,
) -> Result<Value, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("INFO") {
        return Err(format!("not a NATS server: {line}"));
    }
    let connect = serde_json::json!({
        "user": user, "pass": pass, "verbose": false, "pedantic": false, "protocol": 1,
    });
    let inbox = "_INBOX.courier_testkit";
    let request = format!(
        "CONNECT {connect}\r\nSUB {inbox} 1\r\nPUB {subject} {inbox} {}\r\n{payload}\r\nPING\r\n",
        payload.len()
    );
    writer
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // The server's PINGs keep the socket busy: the whole exchange is bounded here.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Instant::now() > deadline {
            return Err(format!("no answer to {subject} within 10 s"));
        }
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed".into());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("PING") => writer.write_all(b"PONG\r\n").map_err(|e| e.to_string())?,
            Some("-ERR") => return Err(line.trim().to_owned()),
            Some("MSG") => {
                let len: usize = words
                    .last()
                    .and_then(|l| l.parse().ok())
                    .ok_or("a MSG without a size")?;
                let mut body = vec![0; len + 2];
                reader.read_exact(&mut body).map_err(|e| e.to_string())?;
                body.truncate(len);
                return serde_json::from_slice(&body).map_err(|e| e.to_string());
            }
            _ => {}
        }
    }
}
