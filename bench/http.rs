//! `./bench/transfer --http`: media over plain HTTP (issue 29), on a folder and on
//! MinIO when `scripts/lib.sh` started one (`COURIER_TEST_S3_BUCKET`):
//! - a 30 MiB GET through courier's link against a bare file server (hyper serving the
//!   same bytes from a file, streamed in 256 KiB reads) and against DownloadMedia,
//!   interleaved round by round, medians of MB/s;
//! - 1,000 GETs of a 200 KiB image by 50 concurrent clients through courier's link and
//!   from the bare file server: p50 and p99 of each GET.

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, time::Instant};

use bytes::Bytes;
use courier_server::pb::{self, media_service_client::MediaServiceClient};
use courier_testkit::{Backend, Server as Courier, authed, token as mint};
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, body::Frame, service::service_fn};
use tokio_util::io::ReaderStream;

use super::{MIB, Target, mbps, pattern};

const BIG: usize = 30 * MIB;
const SMALL: usize = 200 * 1024;
const ROUNDS: usize = 5;
const GETS: usize = 1_000;
const CLIENTS: usize = 50;

/// A bare HTTP/1 file server on 127.0.0.1: `GET /<name>` streams the file `dir/<name>`.
async fn file_server(dir: PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let _ = socket.set_nodelay(true);
            let dir = dir.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let path = dir.join(request.uri().path().trim_start_matches('/'));
                    async move {
                        let file = tokio::fs::File::open(&path).await.expect("the file");
                        let length = file.metadata().await.expect("metadata").len();
                        let stream = ReaderStream::with_capacity(file, 256 * 1024)
                            .map(|chunk| chunk.map(Frame::data));
                        let body: BoxBody<Bytes, std::io::Error> =
                            BodyExt::boxed(StreamBody::new(stream));
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-length", length)
                                .header("content-type", "application/octet-stream")
                                .body(body)
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

/// A link to `media_id` living an hour.
async fn link(server: &Courier, media_id: &str) -> String {
    let mut client = MediaServiceClient::new(server.channel().await);
    let request = pb::GetMediaUrlRequest {
        media_id: media_id.into(),
        max_edge: 0,
        lifetime: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
    };
    client
        .get_media_url(authed(&mint("bench"), request))
        .await
        .expect("a link")
        .into_inner()
        .url
}

/// Seconds to GET `url` whole, checking its length.
async fn get(http: &reqwest::Client, url: &str, size: usize) -> f64 {
    let started = Instant::now();
    let body = http
        .get(url)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), size);
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * p) as usize).min(values.len() - 1)]
}

/// `GETS` GETs of `url` by `CLIENTS` concurrent clients: each GET's milliseconds.
async fn many(url: &str) -> Vec<f64> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut times = Vec::new();
                for _ in 0..GETS / CLIENTS {
                    times.push(get(&http, &url, SMALL).await * 1e3);
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a client"));
    }
    all
}

/// Runs the figures on a folder and, when MinIO is there, on S3.
pub async fn run() {
    let data = pattern(BIG);
    let mut backends = vec![("folder", Backend::Local)];
    if let Some(s3) = Backend::s3() {
        backends.push(("MinIO", s3));
    }
    let files = tempfile::tempdir().expect("a folder");
    std::fs::write(files.path().join("big"), &data).expect("write");
    std::fs::write(files.path().join("small"), data.slice(..SMALL)).expect("write");
    let bare = file_server(files.path().to_owned()).await;
    println!("\n## Media over HTTP (issue 29), medians of {ROUNDS} rounds, interleaved");
    println!(
        "| store | 30 MiB GET via link MB/s | bare file server MB/s | DownloadMedia MB/s | link / bare | link / DownloadMedia | 200 KiB ×{GETS} by {CLIENTS}: link p50 / p99 ms | bare p50 / p99 ms | p99 link / bare |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, backend) in backends {
        let server = Courier::start(&backend, &["--http-max-requests", "1024"]);
        let mut courier = Target::courier(&server.url(), &[SMALL, BIG], &data).await;
        let Target::Courier { stored, .. } = &courier else {
            unreachable!("a courier target")
        };
        let (big_url, small_url) = (
            link(&server, &stored[&BIG]).await,
            link(&server, &stored[&SMALL]).await,
        );
        let http = reqwest::Client::new();
        let (mut via_link, mut via_bare, mut via_grpc) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            via_link.push(mbps(BIG, get(&http, &big_url, BIG).await));
            via_bare.push(mbps(
                BIG,
                get(&http, &format!("http://{bare}/big"), BIG).await,
            ));
            let started = Instant::now();
            courier.download(BIG).await;
            via_grpc.push(mbps(BIG, started.elapsed().as_secs_f64()));
        }
        let link_small = many(&small_url).await;
        let bare_small = many(&format!("http://{bare}/small")).await;
        let (l, b, g) = (median(via_link), median(via_bare), median(via_grpc));
        let (lp99, bp99) = (
            percentile(link_small.clone(), 0.99),
            percentile(bare_small.clone(), 0.99),
        );
        println!(
            "| {name} | {l:.0} | {b:.0} | {g:.0} | {:.2} | {:.2} | {:.1} / {lp99:.1} | {:.1} / {bp99:.1} | {:.2} |",
            l / b,
            l / g,
            percentile(link_small, 0.5),
            percentile(bare_small, 0.5),
            lp99 / bp99
        );
    }
}
