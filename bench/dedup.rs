//! Content-addressed storage benchmark (run it with `./bench/dedup`).
//!
//! Prints, on a local store, through the Rust client (which hashes first and offers
//! the content by header alone):
//! - the storage used by 100 uploads of one 10 MiB file by 10 users (10 each), against
//!   the 1000 MiB that one copy per upload (store layout 1) took;
//! - the time to upload a 30 MiB file the user already uploaded, against a full
//!   upload of a 30 MiB file the server has never seen (median of 7 each).

use std::{path::Path, time::Instant};

use courier_client::Client;
use courier_testkit::{Backend, Server, pattern, token};

const MIB: usize = 1024 * 1024;
const ROUNDS: usize = 7;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("the dedup benchmark runs with `./bench/dedup` (cargo bench), not as a test");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    storage(dir.path()).await;
    reupload_time(dir.path()).await;
}

async fn client(server: &Server, user: &str) -> Client {
    Client::connect(&server.url(), &token(user))
        .await
        .expect("connects")
}

async fn storage(dir: &Path) {
    let server = Server::start(&Backend::Local, &[]);
    let path = dir.join("ten.bin");
    std::fs::write(&path, pattern(10 * MIB, 3)).expect("write");
    let mut records = 0;
    for user in 0..10 {
        let client = client(&server, &format!("user{user}")).await;
        for _ in 0..10 {
            client
                .upload_file(&path)
                .expect("starts")
                .await
                .expect("uploads");
            records += 1;
        }
    }
    let root = server.local_media.as_ref().expect("a local store");
    let (bytes, files) = usage(root);
    println!("## Storage: {records} uploads of one 10 MiB file by 10 users");
    println!("| layout | stored MiB | objects |");
    println!("| --- | ---: | ---: |");
    println!(
        "| 1: a copy per upload (computed) | {:.1} | {} |",
        (records * 10) as f64,
        records * 2
    );
    println!(
        "| 2: content-addressed (measured) | {:.2} | {files} |",
        bytes as f64 / MIB as f64
    );
}

/// The bytes and number of files under `dir`.
fn usage(dir: &Path) -> (u64, usize) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (b, f) = usage(&path);
            total = (total.0 + b, total.1 + f);
        } else {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            total = (total.0 + len, total.1 + 1);
        }
    }
    total
}

async fn reupload_time(dir: &Path) {
    let server = Server::start(&Backend::Local, &[]);
    let alice = client(&server, "alice").await;
    let mut full = Vec::new();
    let mut again = Vec::new();
    for round in 0..ROUNDS {
        // Fresh content each round, so the full upload really sends it all.
        let path = dir.join(format!("thirty-{round}.bin"));
        std::fs::write(&path, pattern(30 * MIB, round as u8 + 10)).expect("write");
        let started = Instant::now();
        alice
            .upload_file(&path)
            .expect("starts")
            .await
            .expect("uploads");
        full.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        alice
            .upload_file(&path)
            .expect("starts")
            .await
            .expect("uploads");
        again.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (full, again) = (median(full), median(again));
    println!();
    println!("## Uploading a 30 MiB file through the Rust client, median of {ROUNDS}");
    println!("| upload | ms |");
    println!("| --- | ---: |");
    println!("| full (new content: hash, offer, send 30 MiB) | {full:.1} |");
    println!("| repeated (same user: hash, offer, done) | {again:.1} |");
    println!("| ratio repeated / full | {:.3} |", again / full);
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
