//! Transfer benchmark (run it with `./bench/transfer`).
//!
//! Measures, for 30 MiB objects in 256 KiB frames, over loopback between two processes:
//! - upload and download MB/s through courier into its local store;
//! - the same through a bare tonic byte stream with no storage (the practical ceiling),
//!   served by a second process with the same HTTP/2 settings and TCP_NODELAY;
//! - the server's peak RSS (VmHWM) during 9 concurrent uploads of 1, 10, 30 and 90 MiB,
//!   each on a fresh server, to show whether memory grows with object size.

use std::{pin::Pin, time::Instant};

use bytes::Bytes;
use courier_server::pb::{
    self, download_media_response, media_service_client::MediaServiceClient, upload_media_request,
};
use futures::{Stream, StreamExt};
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Channel, Server, server::TcpIncoming},
};

#[path = "common.rs"]
mod common;
use common::{BareServer, memory_kib};
use courier_testkit::{Backend, Server as Courier, authed, token as mint};

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
/// Object sizes for the memory figures; 90 MiB (over the default limit, which the
/// benchmark raises) shows whether memory follows the object size or stays bounded.
const RSS_SIZES_MIB: [usize; 4] = [1, 10, 30, 90];

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
    let largest = RSS_SIZES_MIB[RSS_SIZES_MIB.len() - 1] * MIB;
    let all = Bytes::from(
        (0..largest)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let data = all.slice(..SIZE);

    let courier = Courier::start(&Backend::Local, &["--max-upload-size", "100000000"]);
    let token = mint("bench");
    let mut media = MediaServiceClient::connect(courier.url())
        .await
        .expect("connect courier")
        .max_decoding_message_size(8 * MIB);
    let bare = BareServer::start();
    let mut bare_client = BareStreamClient::connect(bare.url())
        .await
        .expect("connect bare")
        .max_decoding_message_size(8 * MIB);

    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut bare_up = Vec::new();
    let mut bare_down = Vec::new();
    let mut last_id = String::new();
    for _ in 0..ROUNDS {
        let (secs, id) = upload(&mut media, &token, &data).await;
        up.push(secs);
        down.push(download(&mut media, &token, &id).await);
        last_id = id;
        bare_up.push(push(&mut bare_client, &data).await);
        bare_down.push(pull(&mut bare_client).await);
    }
    let _ = last_id;
    let mbps = |secs: &mut Vec<f64>| {
        secs.sort_by(f64::total_cmp);
        SIZE as f64 / secs[secs.len() / 2] / 1e6
    };
    let (up, down, bare_up, bare_down) = (
        mbps(&mut up),
        mbps(&mut down),
        mbps(&mut bare_up),
        mbps(&mut bare_down),
    );
    println!("## 30 MiB transfers, 256 KiB frames, loopback, median of {ROUNDS}");
    println!("| path | upload MB/s | download MB/s |");
    println!("| --- | ---: | ---: |");
    println!("| courier -> local store | {up:.0} | {down:.0} |");
    println!("| bare tonic byte stream | {bare_up:.0} | {bare_down:.0} |");
    println!(
        "| ratio courier / bare | {:.2} | {:.2} |",
        up / bare_up,
        down / bare_down
    );
    drop(courier);
    drop(bare);

    println!();
    println!("## Server peak RSS (VmHWM) during 9 concurrent uploads, fresh server each");
    println!("| object size | idle RSS MiB | peak RSS MiB | peak - idle MiB |");
    println!("| ---: | ---: | ---: | ---: |");
    for size_mib in RSS_SIZES_MIB {
        let server = Courier::start(&Backend::Local, &["--max-upload-size", "100000000"]);
        let client = MediaServiceClient::connect(server.url())
            .await
            .expect("connect")
            .max_decoding_message_size(8 * MIB);
        let idle = memory_kib(server.pid(), "VmRSS");
        let object = all.slice(..size_mib * MIB);
        let tasks: Vec<_> = (0..9)
            .map(|_| {
                let mut client = client.clone();
                let object = object.clone();
                let token = token.clone();
                tokio::spawn(async move { upload(&mut client, &token, &object).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("upload task");
        }
        let peak = memory_kib(server.pid(), "VmHWM");
        println!(
            "| {size_mib} MiB | {:.1} | {:.1} | {:.1} |",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            (peak - idle) as f64 / 1024.0
        );
    }
}

/// Uploads `data` and returns the seconds it took and the media ID.
async fn upload(
    client: &mut MediaServiceClient<Channel>,
    token: &str,
    data: &Bytes,
) -> (f64, String) {
    let header = pb::UploadMediaRequest {
        frame: Some(upload_media_request::Frame::Header(pb::UploadHeader {
            kind: pb::MediaKind::File.into(),
            file_name: "bench.bin".into(),
            size: data.len() as u64,
            ..Default::default()
        })),
    };
    let data = data.clone();
    let frames = futures::stream::once(async { header }).chain(futures::stream::iter(
        (0..data.len())
            .step_by(CHUNK)
            .map(move |i| pb::UploadMediaRequest {
                frame: Some(upload_media_request::Frame::Data(
                    data.slice(i..(i + CHUNK).min(data.len())),
                )),
            }),
    ));
    let start = Instant::now();
    let media = client
        .upload_media(authed(token, frames))
        .await
        .expect("upload")
        .into_inner()
        .media
        .expect("media");
    (start.elapsed().as_secs_f64(), media.media_id)
}

async fn download(client: &mut MediaServiceClient<Channel>, token: &str, id: &str) -> f64 {
    let start = Instant::now();
    let request = pb::DownloadMediaRequest {
        media_id: id.into(),
        ..Default::default()
    };
    let mut stream = client
        .download_media(authed(token, request))
        .await
        .expect("download")
        .into_inner();
    let mut total = 0;
    while let Some(frame) = stream.message().await.expect("frame") {
        if let Some(download_media_response::Frame::Data(data)) = frame.frame {
            total += data.len();
        }
    }
    assert_eq!(total, SIZE);
    start.elapsed().as_secs_f64()
}

async fn push(client: &mut BareStreamClient<Channel>, data: &Bytes) -> f64 {
    let data = data.clone();
    let chunks = futures::stream::iter((0..data.len()).step_by(CHUNK).map(move |i| bare::Chunk {
        data: data.slice(i..(i + CHUNK).min(data.len())),
    }));
    let start = Instant::now();
    let total = client.push(chunks).await.expect("push").into_inner().bytes;
    assert_eq!(total as usize, SIZE);
    start.elapsed().as_secs_f64()
}

async fn pull(client: &mut BareStreamClient<Channel>) -> f64 {
    let start = Instant::now();
    let request = bare::PullRequest {
        size: SIZE as u64,
        chunk_size: CHUNK as u64,
    };
    let mut stream = client.pull(request).await.expect("pull").into_inner();
    let mut total = 0;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        total += chunk.data.len();
    }
    assert_eq!(total, SIZE);
    start.elapsed().as_secs_f64()
}

/// The bare byte stream: receives and counts, or sends a prebuilt buffer in slices.
struct Bare {
    data: Bytes,
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
        Ok(Response::new(bare::Total { bytes }))
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
}

/// Serves the bare stream with the same HTTP/2 windows and TCP_NODELAY as courier.
async fn serve_bare() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("listening {}", listener.local_addr().expect("addr"));
    let bare = Bare {
        data: Bytes::from(vec![7u8; SIZE]),
    };
    Server::builder()
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .max_frame_size(Some(1024 * 1024))
        .add_service(BareStreamServer::new(bare).max_decoding_message_size(8 * MIB))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .expect("serve");
}
