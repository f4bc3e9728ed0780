//! Thumbnail benchmark (run it with `./bench/thumbnails`).
//!
//! Prints thumbnails per second for 12-megapixel JPEGs (4000 x 3000, generated here,
//! each different so none shares a stored thumbnail), through the Rust client against
//! a release courier-server on a local store:
//! - first request: the server reads the original, decodes it, scales, encodes and
//!   stores the thumbnail; one client at a time, then two at once (the default
//!   `--thumbnail-concurrency` of 2, on this machine's 2 cores);
//! - stored: the same requests again, served from the store without decoding.

use std::time::{Duration, Instant};

use courier_client::Client;
use courier_testkit::{Backend, Server, token};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// How many distinct photos each first-request run thumbnails.
const PHOTOS: usize = 8;
/// How many times the stored run asks for each photo's thumbnail.
const STORED_ROUNDS: usize = 25;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "the thumbnail benchmark runs with `./bench/thumbnails` (cargo bench), not as a test"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&Backend::Local, &[]);
    let client = Client::connect(&server.url(), &token("alice"))
        .await
        .expect("connects");
    let mut rng = StdRng::seed_from_u64(16);
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    for n in 0..PHOTOS * 2 {
        let path = dir.path().join(format!("photo{n}.jpg"));
        let jpeg = photo(&mut rng);
        sizes.push(jpeg.len());
        std::fs::write(&path, &jpeg).expect("write");
        let media = client
            .upload_image(&path)
            .expect("starts")
            .await
            .expect("uploads");
        assert_eq!((media.width, media.height), (4000, 3000));
        ids.push(media.media_id);
    }
    let mean_mib = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64 / (1024.0 * 1024.0);
    println!(
        "## Thumbnails of 12-megapixel JPEGs (4000 x 3000, {mean_mib:.1} MiB each on average), 320 px"
    );
    println!("| request | clients at once | thumbnails | seconds | thumbnails/s | ms each |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let (first_one, second_half) = ids.split_at(PHOTOS);
    row(
        "first (decode, scale, encode, store)",
        1,
        run(&client, first_one, 1).await,
        first_one.len(),
    );
    row(
        "first (decode, scale, encode, store)",
        2,
        run(&client, second_half, 2).await,
        second_half.len(),
    );
    let stored: Vec<String> = (0..STORED_ROUNDS)
        .flat_map(|_| ids.iter().cloned())
        .collect();
    row(
        "stored (read from the store)",
        1,
        run(&client, &stored, 1).await,
        stored.len(),
    );
    row(
        "stored (read from the store)",
        2,
        run(&client, &stored, 2).await,
        stored.len(),
    );
    let made = server.metric("courier_thumbnails_made_total").await;
    let served = server
        .metric("courier_thumbnails_served_stored_total")
        .await;
    println!();
    println!("Server counters: {made} made, {served} served from the store.");
}

/// Asks for the 320-pixel thumbnail of each of `ids`, `parallel` at a time.
async fn run(client: &Client, ids: &[String], parallel: usize) -> Duration {
    let started = Instant::now();
    for batch in ids.chunks(parallel) {
        let calls = batch.iter().map(|id| client.thumbnail(id, 320));
        for thumb in futures::future::join_all(calls).await {
            let thumb = thumb.expect("thumbnail");
            assert_eq!((thumb.width, thumb.height), (320, 240));
        }
    }
    started.elapsed()
}

fn row(what: &str, parallel: usize, took: Duration, count: usize) {
    let secs = took.as_secs_f64();
    println!(
        "| {what} | {parallel} | {count} | {secs:.2} | {:.1} | {:.1} |",
        count as f64 / secs,
        secs * 1000.0 / count as f64
    );
}

/// A 4000 x 3000 photo-like JPEG: smooth gradients with a random tint and grain, so
/// that it compresses like a photo (a few MiB at quality 90).
fn photo(rng: &mut StdRng) -> Vec<u8> {
    let tint: [u8; 3] = rng.random();
    let mut grain = StdRng::seed_from_u64(rng.random());
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        let noise: u8 = grain.random_range(0..24);
        image::Rgb([
            ((x / 16) as u8).wrapping_add(tint[0]).wrapping_add(noise),
            ((y / 12) as u8).wrapping_add(tint[1]).wrapping_add(noise),
            (((x + y) / 28) as u8)
                .wrapping_add(tint[2])
                .wrapping_add(noise),
        ])
    });
    let mut out = Vec::new();
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut out, 90,
    ))
    .expect("encodes");
    out
}
