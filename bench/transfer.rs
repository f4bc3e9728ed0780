//! Transfer benchmark: `./bench/transfer` (loopback) and `./bench/transfer --slow-link`
//! (through Toxiproxy). BENCHMARKS.md explains each figure and keeps past runs.
//!
//! Loopback, 30 MiB objects in 256 KiB frames, each path one transfer at a time and 9 in
//! parallel, interleaved round by round so that the machine's noise falls on all alike:
//! - courier upload/download into its local store and into MinIO (a raw gRPC client
//!   configured like the Rust client: its HTTP/2 windows and TCP_NODELAY);
//! - a bare tonic byte stream with tonic's default settings (the baseline), and the
//!   same with courier's HTTP/2 settings;
//! - for the upload, a minimal server doing the same work as courier's (SHA-256 and a
//!   file write on a thread of its own);
//! - MinIO PUT/GET of the same bytes with object_store, as courier's S3 store uses it;
//! - how the time grows with object size (1 to 30 MiB) and with parallel transfers;
//! - the server's peak RSS above idle during 9 × 30 MiB uploads and downloads.
//!
//! `--http`: media over plain HTTP (issue 29), in http.rs.
//!
//! `--slow-link`: the same transfers, one at a time and 10 MiB each, through a
//! Toxiproxy proxy with 25 ms latency each way and a 20 MB/s bandwidth limit; the
//! ceiling is a plain TCP byte stream through the same proxy.
//!
//! Tables are printed as Markdown; rows named `ratio ...` carry ratios of medians, and
//! every figure is also written as JSON to `target/bench/transfer-<mode>.json` for the
//! chart (`bench/chart.py`).

use std::{
    collections::BTreeMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use courier_server::pb::{
    self, download_media_response, media_service_client::MediaServiceClient, upload_media_request,
};
use futures::{Stream, StreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Channel, Endpoint, Server, server::TcpIncoming},
};

#[path = "common.rs"]
mod common;
#[path = "http.rs"]
mod http;
use common::{BareServer, memory_kib};
use courier_testkit::{Backend, Server as Courier, Toxiproxy, authed, token as mint};

mod bare {
    tonic::include_proto!("courierbench");
}
use bare::{
    bare_stream_client::BareStreamClient,
    bare_stream_server::{BareStream, BareStreamServer},
};

const MIB: usize = 1024 * 1024;
const SIZE: usize = 30 * MIB;
const CHUNK: usize = 256 * 1024;
const ROUNDS: usize = 7;
const PARALLEL_ROUNDS: usize = 5;
const PARALLEL: usize = 9;
const SWEEP_MIB: [usize; 4] = [1, 4, 10, 30];
const SWEEP_PARALLEL: [usize; 3] = [1, 3, 9];
const SWEEP_ROUNDS: usize = 5;
/// Slow link: object size, rounds, latency each way and bandwidth (KB/s, Toxiproxy's unit).
const SLOW_SIZE: usize = 10 * MIB;
const SLOW_ROUNDS: usize = 3;
/// (BENCH_SLOW_LATENCY_MS and BENCH_SLOW_RATE_KBPS override the last two.)
const SLOW_LATENCY_MS: u64 = 25;
const SLOW_RATE_KBPS: u64 = 20_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare-server") {
        return serve_bare().await;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "the transfer benchmark runs with `./bench/transfer` (cargo bench), not as a test"
        );
        return;
    }
    if args.iter().any(|a| a == "--slow-link") {
        slow_link().await;
    } else if args.iter().any(|a| a == "--http") {
        http::run().await;
    } else if args.iter().any(|a| a == "--hook") {
        hook_cost().await;
    } else if args.iter().any(|a| a == "--resumable") {
        resumable().await;
    } else if let Some(i) = args.iter().position(|a| a == "--upload-loop") {
        // For profiling the server: `--upload-loop N MIB` uploads N objects of MIB MiB
        // into a local store and prints the server's pid first and the median after.
        let count: usize = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(300);
        let mib: usize = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(1);
        upload_loop(count, mib).await;
    } else {
        loopback().await;
    }
}

/// Uploads `data` (with a unique stamp, made before the clock starts) with the
/// resumable API: CreateUpload, WriteUpload of each part in turn, CommitUpload with
/// the SHA-256. Returns the seconds it took.
async fn upload_resumable(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    data: &Bytes,
) -> f64 {
    let mut unique = data.to_vec();
    let stamp = UNIQUE.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    let n = unique.len().min(8);
    unique[..n].copy_from_slice(&stamp[..n]);
    let data = Bytes::from(unique);
    let sha256 = Bytes::from(Sha256::digest(&data).to_vec());
    let start = Instant::now();
    let header = pb::UploadHeader {
        kind: pb::MediaKind::File.into(),
        file_name: "bench.bin".into(),
        size: data.len() as u64,
        ..Default::default()
    };
    let created = client
        .create_upload(authed(
            token,
            pb::CreateUploadRequest {
                header: Some(header),
            },
        ))
        .await
        .expect("create upload")
        .into_inner();
    let part = created.part_size as usize;
    for offset in (0..data.len()).step_by(part) {
        let piece = data.slice(offset..(offset + part).min(data.len()));
        let request = pb::WriteUploadRequest {
            upload_id: created.upload_id.clone(),
            offset: offset as u64,
            crc32c: crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &piece) as u32,
            data: piece,
        };
        client
            .write_upload(authed(token, request))
            .await
            .expect("write a part");
    }
    let media = client
        .commit_upload(authed(
            token,
            pb::CommitUploadRequest {
                upload_id: created.upload_id,
                sha256,
            },
        ))
        .await
        .expect("commit")
        .into_inner()
        .media
        .expect("media");
    assert_eq!(media.size as usize, data.len());
    start.elapsed().as_secs_f64()
}

/// `--resumable`: 30 MiB uploads one at a time, streaming (UploadMedia) against the
/// resumable API (a unary WriteUpload per part), rounds interleaved, on a local folder
/// (1 MiB parts) and, with MinIO, on S3 (5 MiB parts, each an S3 multipart part).
async fn resumable() {
    let data = pattern(SIZE);
    let local = Courier::start(&Backend::Local, &[]);
    let s3_server = std::env::var("COURIER_TEST_S3_BUCKET")
        .ok()
        .map(|bucket| Courier::start(&Backend::S3 { bucket }, &[]));
    let mut servers = vec![("local folder", &local)];
    if let Some(server) = &s3_server {
        servers.push(("MinIO", server));
    } else {
        println!("(no MinIO: run ./bench/transfer --resumable, which starts one, for its rows)");
    }
    let mut paths = Vec::new();
    for (store, server) in &servers {
        let streaming = Target::courier(&server.url(), &[], &data).await;
        let Target::Courier { client, token, .. } = streaming.clone() else {
            unreachable!("a courier target");
        };
        paths.push((*store, streaming, client, token));
    }
    let mut figures = Figures::default();
    for _ in 0..ROUNDS {
        sync();
        for (store, streaming, client, token) in &mut paths {
            let secs = streaming.timed(true, &data, 1).await;
            figures.add(&format!("{store} streaming"), "upload", 1, mbps(SIZE, secs));
            let secs = upload_resumable(client, token, &data).await;
            figures.add(&format!("{store} resumable"), "upload", 1, mbps(SIZE, secs));
        }
    }
    println!();
    println!("## 30 MiB uploads, streaming vs resumable: MB/s, median of {ROUNDS} (min–max)");
    println!();
    println!(
        "| store | UploadMedia (streaming) | CreateUpload + WriteUpload parts + CommitUpload | ratio resumable / streaming |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for (store, ..) in &paths {
        let streaming = format!("{store} streaming");
        let resumable = format!("{store} resumable");
        println!(
            "| {store} | {} | {} | {} |",
            figures.cell(&streaming, "upload", 1),
            figures.cell(&resumable, "upload", 1),
            figures.ratio(&resumable, &streaming, "upload", 1)
        );
    }
}

/// The bytes of every object: a pattern, sliced to size.
fn pattern(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>())
}

/// A counter stamped into each upload's first frame, so that no two uploads carry the
/// same content (courier stores content by hash; a repeat would skip the write).
static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// The frame size of uploads: CHUNK, or BENCH_CHUNK_KIB for an experiment.
fn chunk() -> usize {
    std::env::var("BENCH_CHUNK_KIB")
        .ok()
        .and_then(|k| k.parse::<usize>().ok())
        .map_or(CHUNK, |k| k * 1024)
}

/// `data` cut into frames, the first a fresh copy with a unique stamp.
fn frames(data: &Bytes) -> Vec<Bytes> {
    let stamp = UNIQUE.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    let chunk = chunk();
    (0..data.len())
        .step_by(chunk)
        .map(|i| {
            let frame = data.slice(i..(i + chunk).min(data.len()));
            if i == 0 {
                let mut first = frame.to_vec();
                let n = first.len().min(8);
                first[..n].copy_from_slice(&stamp[..n]);
                Bytes::from(first)
            } else {
                frame
            }
        })
        .collect()
}

/// One way to move bytes, up or down.
#[derive(Clone)]
enum Target {
    /// courier's MediaService, with the ID of one stored object of each size.
    Courier {
        client: MediaServiceClient<Channel>,
        token: String,
        stored: Arc<BTreeMap<usize, String>>,
    },
    /// The bare byte stream (Push, Pull).
    Bare(BareStreamClient<Channel>),
    /// The bare server's PushStore (hash and write); upload only.
    Minimal(BareStreamClient<Channel>),
    /// An S3 bucket through object_store, with one stored object of each size.
    S3 {
        store: Arc<dyn ObjectStore>,
        stored: Arc<BTreeMap<usize, Path>>,
    },
    /// A plain TCP byte stream to the bare server's TCP listener.
    Tcp(String),
}

impl Target {
    async fn courier(url: &str, sizes: &[usize], data: &Bytes) -> Self {
        let options = courier_client::ClientOptions::default();
        let channel = Endpoint::from_shared(url.to_owned())
            .expect("url")
            .tcp_nodelay(true)
            .initial_stream_window_size(options.stream_window)
            .initial_connection_window_size(options.connection_window)
            .http2_adaptive_window(options.adaptive_window)
            .connect()
            .await
            .expect("connect courier");
        let mut target = Target::Courier {
            client: MediaServiceClient::new(channel).max_decoding_message_size(8 * MIB),
            token: mint("bench"),
            stored: Arc::default(),
        };
        let mut stored = BTreeMap::new();
        for &size in sizes {
            stored.insert(size, target.upload_id(&data.slice(..size)).await);
        }
        if let Target::Courier { stored: s, .. } = &mut target {
            *s = Arc::new(stored);
        }
        target
    }

    async fn bare(url: &str, minimal: bool) -> Self {
        let client = BareStreamClient::connect(url.to_owned())
            .await
            .expect("connect bare")
            .max_decoding_message_size(8 * MIB);
        if minimal {
            Target::Minimal(client)
        } else {
            Target::Bare(client)
        }
    }

    /// The bucket of `scripts/lib.sh`'s MinIO, at `endpoint` (a proxy) when given.
    async fn s3(endpoint: Option<&str>, sizes: &[usize], data: &Bytes) -> Option<Self> {
        let bucket = std::env::var("COURIER_TEST_S3_BUCKET").ok()?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().expect("S3 store"));
        let mut stored = BTreeMap::new();
        for &size in sizes {
            let path = Path::from(format!("bench/stored-{size}"));
            store
                .put(&path, PutPayload::from(data.slice(..size)))
                .await
                .expect("put");
            stored.insert(size, path);
        }
        Some(Target::S3 {
            store,
            stored: Arc::new(stored),
        })
    }

    fn can_download(&self) -> bool {
        !matches!(self, Target::Minimal(_))
    }

    /// Uploads `data`; returns the media ID for courier.
    async fn upload_id(&mut self, data: &Bytes) -> String {
        let size = data.len();
        let minimal = matches!(self, Target::Minimal(_));
        match self {
            Target::Courier { client, token, .. } => {
                let header = pb::UploadMediaRequest {
                    frame: Some(upload_media_request::Frame::Header(pb::UploadHeader {
                        kind: pb::MediaKind::File.into(),
                        file_name: "bench.bin".into(),
                        size: size as u64,
                        ..Default::default()
                    })),
                };
                let stream = futures::stream::once(async { header }).chain(
                    futures::stream::iter(frames(data)).map(|d| pb::UploadMediaRequest {
                        frame: Some(upload_media_request::Frame::Data(d)),
                    }),
                );
                let media = client
                    .upload_media(authed(token, stream))
                    .await
                    .expect("upload")
                    .into_inner()
                    .media
                    .expect("media");
                assert_eq!(media.size as usize, size);
                media.media_id
            }
            Target::Bare(client) | Target::Minimal(client) => {
                let stream = futures::stream::iter(frames(data)).map(|d| bare::Chunk { data: d });
                let total = if minimal {
                    client.push_store(stream).await
                } else {
                    client.push(stream).await
                }
                .expect("push")
                .into_inner();
                assert_eq!(total.bytes as usize, size);
                String::new()
            }
            Target::S3 { store, .. } => {
                let key = UNIQUE.fetch_add(1, Ordering::Relaxed);
                let path = Path::from(format!("bench/put-{key}"));
                let payload: PutPayload = frames(data).into_iter().collect();
                store.put(&path, payload).await.expect("put");
                String::new()
            }
            Target::Tcp(addr) => {
                let mut socket = tcp(addr).await;
                socket.write_u8(b'U').await.expect("write");
                socket.write_u64(size as u64).await.expect("write");
                for frame in frames(data) {
                    socket.write_all(&frame).await.expect("write");
                }
                assert_eq!(socket.read_u64().await.expect("ack"), size as u64);
                String::new()
            }
        }
    }

    /// Downloads the stored object of `size` bytes.
    async fn download(&mut self, size: usize) {
        let mut total = 0;
        match self {
            Target::Courier {
                client,
                token,
                stored,
            } => {
                let request = pb::DownloadMediaRequest {
                    media_id: stored[&size].clone(),
                    ..Default::default()
                };
                let mut stream = client
                    .download_media(authed(token, request))
                    .await
                    .expect("download")
                    .into_inner();
                while let Some(frame) = stream.message().await.expect("frame") {
                    if let Some(download_media_response::Frame::Data(data)) = frame.frame {
                        total += data.len();
                    }
                }
            }
            Target::Bare(client) => {
                let request = bare::PullRequest {
                    size: size as u64,
                    chunk_size: CHUNK as u64,
                };
                let mut stream = client.pull(request).await.expect("pull").into_inner();
                while let Some(chunk) = stream.message().await.expect("chunk") {
                    total += chunk.data.len();
                }
            }
            Target::Minimal(_) => unreachable!("upload only"),
            Target::S3 { store, stored } => {
                let mut stream = store.get(&stored[&size]).await.expect("get").into_stream();
                while let Some(chunk) = stream.next().await {
                    total += chunk.expect("chunk").len();
                }
            }
            Target::Tcp(addr) => {
                let mut socket = tcp(addr).await;
                socket.write_u8(b'D').await.expect("write");
                socket.write_u64(size as u64).await.expect("write");
                let mut buffer = vec![0u8; CHUNK];
                loop {
                    let n = socket.read(&mut buffer).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
            }
        }
        assert_eq!(total, size);
    }

    /// Seconds for `n` transfers at once (uploads of `data`, or downloads of its size).
    async fn timed(&self, up: bool, data: &Bytes, n: usize) -> f64 {
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let mut target = self.clone();
                let data = data.clone();
                tokio::spawn(async move {
                    if up {
                        target.upload_id(&data).await;
                    } else {
                        target.download(data.len()).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("transfer task");
        }
        start.elapsed().as_secs_f64()
    }
}

async fn tcp(addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect tcp");
    socket.set_nodelay(true).expect("nodelay");
    socket
}

/// Throughputs (MB/s, one per round) of each path, direction and parallelism.
#[derive(Default)]
struct Figures(BTreeMap<(String, &'static str, usize), Vec<f64>>);

impl Figures {
    fn add(&mut self, path: &str, direction: &'static str, parallel: usize, mbps: f64) {
        self.0
            .entry((path.to_owned(), direction, parallel))
            .or_default()
            .push(mbps);
    }

    /// Median, min and max.
    fn stats(&self, path: &str, direction: &'static str, parallel: usize) -> Option<[f64; 3]> {
        let mut v = self.0.get(&(path.to_owned(), direction, parallel))?.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some([median, v[0], v[n - 1]])
    }

    fn cell(&self, path: &str, direction: &'static str, parallel: usize) -> String {
        match self.stats(path, direction, parallel) {
            Some([m, lo, hi]) => format!("{m:.0} ({lo:.0}–{hi:.0})"),
            None => "–".into(),
        }
    }

    fn ratio(&self, a: &str, b: &str, direction: &'static str, parallel: usize) -> String {
        match (
            self.stats(a, direction, parallel),
            self.stats(b, direction, parallel),
        ) {
            (Some([x, ..]), Some([y, ..])) => format!("{:.2}", x / y),
            _ => "–".into(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .0
            .keys()
            .map(|(path, direction, parallel)| {
                let [median, min, max] = self.stats(path, direction, *parallel).expect("stats");
                json!({"path": path, "direction": direction, "parallel": parallel,
                       "median_mbps": median, "min_mbps": min, "max_mbps": max})
            })
            .collect();
        json!(rows)
    }
}

/// Writes dirty pages out between rounds (outside the timings): a run writes several
/// GB into the stores, and past the kernel's dirty limits every writer would be
/// throttled to the disk's speed, by an amount that depends on what ran before.
fn sync() {
    let _ = std::process::Command::new("sync").status();
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

const COURIER_LOCAL: &str = "courier, local store";
const COURIER_S3: &str = "courier, MinIO store";
const BARE: &str = "bare tonic, default settings";
const BARE_TUNED: &str = "bare tonic, tuned (4/8 MiB windows, 1 MiB frames, nodelay)";
const MINIMAL: &str = "minimal server (SHA-256 + file write on a thread)";
const MINIO: &str = "MinIO PUT/GET (object_store)";
const TCP: &str = "plain TCP byte stream (ceiling)";

async fn loopback() {
    let data = pattern(SIZE);
    let local = Courier::start(&Backend::Local, &[]);
    let s3_backend = std::env::var("COURIER_TEST_S3_BUCKET")
        .ok()
        .map(|bucket| Backend::S3 { bucket });
    let s3_server = s3_backend.as_ref().map(|b| Courier::start(b, &[]));
    let bare = BareServer::start();
    let mut targets = vec![
        (
            COURIER_LOCAL,
            Target::courier(&local.url(), &SWEEP_MIB.map(|m| m * MIB), &data).await,
        ),
        (BARE, Target::bare(&bare.url(), false).await),
        (BARE_TUNED, Target::bare(&bare.tuned_url(), false).await),
        (MINIMAL, Target::bare(&bare.tuned_url(), true).await),
    ];
    if let Some(server) = &s3_server {
        targets.push((
            COURIER_S3,
            Target::courier(&server.url(), &[SIZE], &data).await,
        ));
    }
    if let Some(s3) = Target::s3(None, &[SIZE], &data).await {
        targets.push((MINIO, s3));
    } else {
        println!("(no MinIO: run ./bench/transfer, which starts one, for its rows)");
    }

    let mut figures = Figures::default();
    for (rounds, parallel) in [(ROUNDS, 1), (PARALLEL_ROUNDS, PARALLEL)] {
        for _ in 0..rounds {
            sync();
            for (name, target) in &targets {
                for up in [true, false] {
                    if !up && !target.can_download() {
                        continue;
                    }
                    let secs = target.timed(up, &data, parallel).await;
                    let direction = if up { "upload" } else { "download" };
                    figures.add(name, direction, parallel, mbps(SIZE * parallel, secs));
                }
            }
        }
    }
    for parallel in [1, PARALLEL] {
        println!();
        if parallel == 1 {
            println!("## 30 MiB transfers, one at a time: MB/s, median of {ROUNDS} (min–max)");
        } else {
            println!(
                "## 30 MiB transfers, {PARALLEL} in parallel: total MB/s, median of {PARALLEL_ROUNDS} (min–max)"
            );
        }
        println!();
        println!("| path | upload MB/s | download MB/s |");
        println!("| --- | ---: | ---: |");
        for (name, _) in &targets {
            println!(
                "| {name} | {} | {} |",
                figures.cell(name, "upload", parallel),
                figures.cell(name, "download", parallel)
            );
        }
        for (label, other) in [
            ("ratio courier / bare", BARE),
            ("ratio courier / bare tuned", BARE_TUNED),
            ("ratio courier / minimal", MINIMAL),
            ("ratio courier / MinIO", MINIO),
            ("ratio courier MinIO store / MinIO", MINIO),
        ] {
            let ours = if label.contains("MinIO store") {
                COURIER_S3
            } else {
                COURIER_LOCAL
            };
            println!(
                "| {label} | {} | {} |",
                figures.ratio(ours, other, "upload", parallel),
                figures.ratio(ours, other, "download", parallel)
            );
        }
    }

    // How the cost grows with object size and with parallel transfers (courier's local
    // store and the tuned bare stream, interleaved).
    let sweep_targets = [&targets[0], &targets[2]];
    let mut sweep = Figures::default();
    for _ in 0..SWEEP_ROUNDS {
        sync();
        for mib in SWEEP_MIB {
            let object = data.slice(..mib * MIB);
            for (name, target) in sweep_targets {
                for up in [true, false] {
                    let secs = target.timed(up, &object, 1).await;
                    let direction = if up { "upload" } else { "download" };
                    sweep.add(&format!("{name} {mib}"), direction, 1, secs * 1e3);
                }
            }
        }
        for parallel in SWEEP_PARALLEL {
            sync();
            for (name, target) in sweep_targets {
                for up in [true, false] {
                    let secs = target.timed(up, &data, parallel).await;
                    let direction = if up { "upload" } else { "download" };
                    sweep.add(
                        &format!("{name} x{parallel}"),
                        direction,
                        1,
                        mbps(SIZE * parallel, secs),
                    );
                }
            }
        }
    }
    println!();
    println!("## Object size: ms per transfer, median of {SWEEP_ROUNDS} (MB/s from the median)");
    println!();
    println!(
        "| size | courier upload ms | bare upload ms | courier download ms | bare download ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for mib in SWEEP_MIB {
        let cell = |name: &str, direction| {
            let [ms, ..] = sweep
                .stats(&format!("{name} {mib}"), direction, 1)
                .expect("stats");
            format!("{ms:.1} ({:.0} MB/s)", mbps(mib * MIB, ms / 1e3))
        };
        println!(
            "| {mib} MiB | {} | {} | {} | {} |",
            cell(COURIER_LOCAL, "upload"),
            cell(BARE_TUNED, "upload"),
            cell(COURIER_LOCAL, "download"),
            cell(BARE_TUNED, "download")
        );
    }
    println!();
    println!("## Parallel 30 MiB transfers: total MB/s, median of {SWEEP_ROUNDS}");
    println!();
    println!("| transfers | courier upload | bare upload | courier download | bare download |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for parallel in SWEEP_PARALLEL {
        let cell = |name: &str, direction| sweep.cell(&format!("{name} x{parallel}"), direction, 1);
        println!(
            "| {parallel} | {} | {} | {} | {} |",
            cell(COURIER_LOCAL, "upload"),
            cell(BARE_TUNED, "upload"),
            cell(COURIER_LOCAL, "download"),
            cell(BARE_TUNED, "download")
        );
    }
    drop(targets);
    drop(local);
    drop(s3_server);
    drop(bare);

    // Memory: a fresh server, its idle RSS, then its high-water mark after 9 × 30 MiB
    // uploads and then after 9 × 30 MiB downloads.
    println!();
    println!("## courier-server RSS, {PARALLEL} × 30 MiB in parallel, fresh server");
    println!();
    println!("| | idle RSS MiB | peak RSS MiB | peak - idle MiB |");
    println!("| --- | ---: | ---: | ---: |");
    sync();
    let server = Courier::start(&Backend::Local, &[]);
    let idle = memory_kib(server.pid(), "VmRSS");
    let target = Target::courier(&server.url(), &[], &data).await;
    let mut rss = serde_json::Map::new();
    target.timed(true, &data, PARALLEL).await;
    let after_up = memory_kib(server.pid(), "VmHWM");
    let target = Target::courier(&server.url(), &[SIZE], &data).await;
    target.timed(false, &data, PARALLEL).await;
    let after_down = memory_kib(server.pid(), "VmHWM");
    for (label, peak) in [("uploads", after_up), ("then downloads", after_down)] {
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} |",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            (peak - idle) as f64 / 1024.0
        );
        rss.insert(label.into(), json!((peak - idle) as f64 / 1024.0));
    }
    write_json(
        "loopback",
        json!({"size_mib": SIZE / MIB, "figures": figures.json(), "sweep": sweep.json(),
               "rss_above_idle_mib": rss}),
    );
}

async fn upload_loop(count: usize, mib: usize) {
    let data = pattern(mib * MIB);
    let server = Courier::start(&Backend::Local, &[]);
    eprintln!("server pid {}", server.pid());
    let mut target = Target::courier(&server.url(), &[], &data).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ms = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        target.upload_id(&data).await;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{count} uploads of {mib} MiB: median {:.2} ms, min {:.2} ms",
        ms[count / 2],
        ms[0]
    );
}

async fn slow_link() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        panic!("--slow-link needs Toxiproxy: run it as `./bench/transfer --slow-link`");
    };
    let data = pattern(SLOW_SIZE);
    let latency_ms = env_or("BENCH_SLOW_LATENCY_MS", SLOW_LATENCY_MS);
    let rate_kbps = env_or("BENCH_SLOW_RATE_KBPS", SLOW_RATE_KBPS);
    let local = Courier::start(&Backend::Local, &[]);
    let s3_server = std::env::var("COURIER_TEST_S3_BUCKET")
        .ok()
        .map(|bucket| Courier::start(&Backend::S3 { bucket }, &[]));
    let bare = BareServer::start();
    let slow = |name: &str, upstream: &str| {
        let proxy = toxiproxy.proxy(name, upstream);
        for stream in ["upstream", "downstream"] {
            proxy.add_toxic(
                &format!("latency-{stream}"),
                "latency",
                stream,
                json!({ "latency": latency_ms }),
            );
            proxy.add_toxic(
                &format!("bandwidth-{stream}"),
                "bandwidth",
                stream,
                json!({ "rate": rate_kbps }),
            );
        }
        proxy
    };
    let host = |url: String| url.trim_start_matches("http://").to_owned();
    let mut proxies = vec![
        slow("bench-tcp", &bare.tcp_addr()),
        slow("bench-courier", &host(local.url())),
        slow("bench-bare", &host(bare.url())),
        slow("bench-bare-tuned", &host(bare.tuned_url())),
    ];
    let mut targets = vec![
        (TCP, Target::Tcp(proxies[0].listen.clone())),
        (
            COURIER_LOCAL,
            Target::courier(&proxies[1].url(), &[SLOW_SIZE], &data).await,
        ),
        (BARE, Target::bare(&proxies[2].url(), false).await),
        (BARE_TUNED, Target::bare(&proxies[3].url(), false).await),
    ];
    if let Some(server) = &s3_server {
        let proxy = slow("bench-courier-s3", &host(server.url()));
        targets.push((
            COURIER_S3,
            Target::courier(&proxy.url(), &[SLOW_SIZE], &data).await,
        ));
        proxies.push(proxy);
    }
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT") {
        let proxy = slow("bench-minio", &host(endpoint));
        if let Some(s3) = Target::s3(Some(&proxy.url()), &[SLOW_SIZE], &data).await {
            targets.push((MINIO, s3));
        }
        proxies.push(proxy);
    }
    let mut figures = Figures::default();
    for _ in 0..SLOW_ROUNDS {
        for (name, target) in &targets {
            for up in [true, false] {
                let secs =
                    tokio::time::timeout(Duration::from_secs(120), target.timed(up, &data, 1))
                        .await
                        .expect("a slow-link transfer took over 2 minutes");
                let direction = if up { "upload" } else { "download" };
                figures.add(name, direction, 1, mbps(SLOW_SIZE, secs));
            }
        }
    }
    println!();
    println!(
        "## Slow link: {} MiB, one transfer, {latency_ms} ms each way, {} MB/s: MB/s, median of {SLOW_ROUNDS} (min–max)",
        SLOW_SIZE / MIB,
        rate_kbps / 1000
    );
    println!();
    println!("| path | upload MB/s | download MB/s | upload / ceiling | download / ceiling |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, _) in &targets {
        println!(
            "| {name} | {} | {} | {} | {} |",
            figures.cell(name, "upload", 1),
            figures.cell(name, "download", 1),
            figures.ratio(name, TCP, "upload", 1),
            figures.ratio(name, TCP, "download", 1),
        );
    }
    println!(
        "| ratio courier / ceiling | {} | {} | | |",
        figures.ratio(COURIER_LOCAL, TCP, "upload", 1),
        figures.ratio(COURIER_LOCAL, TCP, "download", 1)
    );
    println!(
        "| ratio courier / MinIO | {} | {} | | |",
        figures.ratio(COURIER_LOCAL, MINIO, "upload", 1),
        figures.ratio(COURIER_LOCAL, MINIO, "download", 1)
    );
    write_json(
        "slow-link",
        json!({"size_mib": SLOW_SIZE / MIB, "latency_ms_each_way": latency_ms,
               "rate_kbps": rate_kbps, "figures": figures.json()}),
    );
    drop(proxies);
}

fn write_json(mode: &str, value: serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join(format!("transfer-{mode}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&value).expect("json")).expect("write json");
    eprintln!("figures written to {}", path.display());
}

/// The bare byte stream: receives and counts, or sends a prebuilt buffer in slices.
struct Bare {
    data: Bytes,
    dir: std::path::PathBuf,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<bare::Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl BareStream for Bare {
    async fn push(
        &self,
        request: Request<Streaming<bare::Chunk>>,
    ) -> Result<Response<bare::Total>, Status> {
        let mut stream = request.into_inner();
        let mut bytes = 0;
        while let Some(chunk) = stream.message().await? {
            bytes += chunk.data.len() as u64;
        }
        Ok(Response::new(bare::Total {
            bytes,
            sha256: Bytes::new(),
        }))
    }

    type PullStream = ChunkStream;

    async fn pull(
        &self,
        request: Request<bare::PullRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let request = request.into_inner();
        let size = (request.size as usize).min(self.data.len());
        let chunk = (request.chunk_size as usize).clamp(1, 4 * MIB);
        let data = self.data.slice(..size);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for i in (0..size).step_by(chunk) {
                let frame = bare::Chunk {
                    data: data.slice(i..(i + chunk).min(size)),
                };
                if tx.send(Ok(frame)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx).boxed(),
        ))
    }

    async fn push_store(
        &self,
        request: Request<Streaming<bare::Chunk>>,
    ) -> Result<Response<bare::Total>, Status> {
        use std::io::Write;
        let mut stream = request.into_inner();
        let path = self
            .dir
            .join(format!("{}", UNIQUE.fetch_add(1, Ordering::Relaxed)));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(8);
        let file_path = path;
        let worker = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&file_path).expect("create");
            let mut hasher = Sha256::new();
            let mut bytes = 0u64;
            for chunk in rx {
                hasher.update(&chunk);
                file.write_all(&chunk).expect("write");
                bytes += chunk.len() as u64;
            }
            (bytes, hasher.finalize().to_vec())
        });
        while let Some(chunk) = stream.message().await? {
            tokio::task::block_in_place(|| tx.send(chunk.data)).expect("worker");
        }
        drop(tx);
        // Kept, as a store keeps it (the folder is removed when the server exits).
        let (bytes, sha256) = worker.await.expect("worker");
        Ok(Response::new(bare::Total {
            bytes,
            sha256: sha256.into(),
        }))
    }
}

/// Serves the bare stream three ways: gRPC with tonic's default settings, gRPC with
/// courier's HTTP/2 settings and TCP_NODELAY, and a plain TCP byte stream.
async fn serve_bare() {
    let default = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tuned = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "listening {} {} {}",
        default.local_addr().expect("addr"),
        tuned.local_addr().expect("addr"),
        plain.local_addr().expect("addr")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data = pattern(SIZE);
    let service = |data: Bytes| {
        BareStreamServer::new(Bare {
            data,
            dir: dir.path().to_owned(),
        })
        .max_decoding_message_size(8 * MIB)
    };
    let defaults = Server::builder()
        .add_service(service(data.clone()))
        .serve_with_incoming(TcpIncoming::from(default));
    let tuned = Server::builder()
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .max_frame_size(Some(1024 * 1024))
        .add_service(service(data.clone()))
        .serve_with_incoming(TcpIncoming::from(tuned).with_nodelay(Some(true)));
    let plain = async move {
        loop {
            let (mut socket, _) = plain.accept().await.expect("accept");
            socket.set_nodelay(true).expect("nodelay");
            let data = data.clone();
            tokio::spawn(async move {
                let op = socket.read_u8().await.expect("op");
                let size = socket.read_u64().await.expect("size") as usize;
                if op == b'U' {
                    let mut buffer = vec![0u8; CHUNK];
                    let mut left = size;
                    while left > 0 {
                        let n = socket
                            .read(&mut buffer[..left.min(CHUNK)])
                            .await
                            .expect("read");
                        assert!(n > 0, "closed early");
                        left -= n;
                    }
                    socket.write_u64(size as u64).await.expect("ack");
                } else {
                    let mut left = size;
                    while left > 0 {
                        let n = left.min(data.len());
                        socket.write_all(&data[..n]).await.expect("write");
                        left -= n;
                    }
                    socket.shutdown().await.expect("shutdown");
                }
            });
        }
    };
    tokio::select! {
        r = defaults => r.expect("serve"),
        r = tuned => r.expect("serve"),
        () = plain => {},
    }
}

/// A hook that accepts at once: HTTP/1.1 with keep-alive on 127.0.0.1, answering every
/// POST `{"verdict":"accept"}` without reading the bytes. Returns its URL.
async fn accepting_hook() -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if socket.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let answer = r#"{"verdict":"accept"}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if socket
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// `./bench/transfer --hook`: the cost of an upload hook that accepts at once. 1 MiB
/// uploads of new content (a unique stamp each, made before the clock starts, so the
/// hook is asked every time) to a server without a hook and to one with it, on a
/// folder, interleaved one by one; p50 and p99 of each and their ratio.
async fn hook_cost() {
    const UPLOADS: usize = 300;
    let data = pattern(MIB);
    let hook = accepting_hook().await;
    let plain = Courier::start(&Backend::Local, &[]);
    let hooked = Courier::start(
        &Backend::Local,
        &[
            "--upload-hook",
            &hook,
            "--upload-hook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
    );
    let mut without = Target::courier(&plain.url(), &[], &data).await;
    let mut with = Target::courier(&hooked.url(), &[], &data).await;
    let (mut a, mut b) = (Vec::with_capacity(UPLOADS), Vec::with_capacity(UPLOADS));
    for i in 0..UPLOADS {
        for (target, times) in [(&mut without, &mut a), (&mut with, &mut b)] {
            let mut unique = data.to_vec();
            unique[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let unique = Bytes::from(unique);
            let start = Instant::now();
            target.upload_id(&unique).await;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let (a50, a99, b50, b99) = (
        pct(&mut a, 0.5),
        pct(&mut a, 0.99),
        pct(&mut b, 0.5),
        pct(&mut b, 0.99),
    );
    println!(
        "\n## Upload hook cost (issue 30), {UPLOADS} uploads of 1 MiB each way, interleaved, folder"
    );
    println!("| path | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    println!("| no hook | {a50:.2} | {a99:.2} |");
    println!("| hook that accepts at once | {b50:.2} | {b99:.2} |");
    println!(
        "| ratio hook / none | {:.2} | {:.2} |",
        b50 / a50,
        b99 / a99
    );
}
