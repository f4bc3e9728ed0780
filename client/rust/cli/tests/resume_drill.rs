//! The resumable upload drill (issue 15): a ~20 MiB upload through Toxiproxy whose
//! connection is cut mid-upload completes from where it stopped with the Rust client;
//! and a server killed mid-upload of `courier upload --resume`, restarted on the same
//! store, lets the command run again finish with `resumed_from` > 0. Both
//! byte-identical on download. Skipped without Toxiproxy unless
//! COURIER_TEST_REQUIRE_TOXIPROXY is set (as `scripts/test` does).

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use courier_client::{Client, MediaKind, resumable_state_path};
use courier_testkit::{Backend, Server, Toxiproxy, eventually, pattern, token};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// The parts the server has stored of its one open resumable upload.
async fn stored_parts(server: &Server) -> usize {
    server
        .stored()
        .await
        .iter()
        .filter(|k| k.starts_with("resumable/") && k.contains("/parts/"))
        .count()
}

/// Downloads `media_id` through `client` and checks the bytes are `data`.
async fn assert_identical(client: &Client, media_id: &str, data: &[u8], dir: &std::path::Path) {
    let out = dir.join(format!("{media_id}.out"));
    client
        .download_to_file(media_id, &out)
        .expect("starts")
        .await
        .expect("downloads");
    let back = std::fs::read(&out).expect("reads");
    assert!(back == data, "the download is byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_resumes_where_it_stopped() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let server = Server::start(&Backend::Local, &["--upload-part-size", "1048576"]);
    let proxy = toxiproxy.proxy("resumable-cut", &server.addr.to_string());
    // About 8 MB/s toward the server, so that the cut lands mid-upload.
    proxy.add_toxic("slow", "bandwidth", "upstream", json!({ "rate": 8192 }));
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("big.bin");
    let data = pattern(20 * MIB + 12_345, 31);
    std::fs::write(&path, &data).expect("writes");
    let client = Client::connect(&proxy.url(), &token("alice"))
        .await
        .expect("connects");
    let transfer = client
        .upload_resumable(&path, MediaKind::File)
        .expect("starts");
    eventually(Duration::from_secs(30), "6 parts stored", || async {
        stored_parts(&server).await >= 6
    })
    .await;
    assert!(
        resumable_state_path(&path).exists(),
        "the state file is kept"
    );
    proxy.add_toxic("cut", "reset_peer", "upstream", json!({ "timeout": 0 }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_cut = stored_parts(&server).await;
    proxy.remove_toxic("cut");
    let done = tokio::time::timeout(Duration::from_secs(90), transfer)
        .await
        .expect("in time")
        .expect("the upload completes after the cut");
    assert_eq!(done.media.size, data.len() as u64);
    assert_eq!(done.resumed_from, 0, "one call: it started the upload");
    assert!(
        !resumable_state_path(&path).exists(),
        "the state file is removed"
    );
    // Every part was stored exactly once: nothing was sent again from 0.
    let received = server.metric("courier_upload_bytes_total").await;
    assert_eq!(received, data.len() as i64);
    proxy.remove_toxic("slow");
    assert_identical(&client, &done.media.media_id, &data, dir.path()).await;
    eprintln!(
        "drill a_cut_connection_resumes_where_it_stopped: cut with {at_cut} of 21 parts stored; the server received {received} bytes for a {}-byte file",
        data.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finishes_after_the_server_was_killed() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let flags = ["--upload-part-size", "1048576"];
    let mut server = Server::start(&Backend::Local, &flags);
    let proxy = toxiproxy.proxy("resumable-kill", &server.addr.to_string());
    proxy.add_toxic("slow", "bandwidth", "upstream", json!({ "rate": 8192 }));
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("big.bin");
    let data = pattern(20 * MIB, 32);
    std::fs::write(&path, &data).expect("writes");
    let courier = |server_url: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
        command
            .env("COURIER_SERVER", server_url)
            .env("COURIER_TOKEN", token("alice"))
            .args(["--json", "upload", "--resume"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut first = courier(&proxy.url()).spawn().expect("runs");
    eventually(Duration::from_secs(30), "5 parts stored", || async {
        stored_parts(&server).await >= 5
    })
    .await;
    // The server dies mid-upload; so does the first run.
    server.kill();
    let _ = first.kill();
    let _ = first.wait();
    let held = stored_parts(&server).await;
    assert!(
        resumable_state_path(&path).exists(),
        "the state file is kept"
    );
    // The same store, the same port (the proxy still points at it).
    server.restart(&flags);
    proxy.remove_toxic("slow");
    let output = courier(&proxy.url()).output().expect("runs again");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let line: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let resumed_from = line["resumed_from"].as_u64().expect("resumed_from");
    assert!(resumed_from > 0, "{line}");
    assert_eq!(resumed_from, held as u64 * MIB as u64, "{line}");
    assert_eq!(line["size"], data.len() as u64);
    assert_eq!(line["sha256"], hex::encode(courier_testkit::sha256(&data)));
    assert!(!resumable_state_path(&path).exists());
    // The restarted server received only the rest.
    let received = server.metric("courier_upload_bytes_total").await;
    assert_eq!(received, (data.len() as u64 - resumed_from) as i64);
    let client = Client::connect(&server.url(), &token("alice"))
        .await
        .expect("connects");
    let media_id = line["media_id"].as_str().expect("media_id");
    assert_identical(&client, media_id, &data, dir.path()).await;
    eprintln!(
        "drill the_cli_finishes_after_the_server_was_killed: killed with {held} of 20 parts stored; the second run resumed from byte {resumed_from}"
    );
}

/// `--stop-after-parts` pauses and keeps the state; the next run finishes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pauses_and_continues() {
    let server = Server::start(&Backend::Local, &["--upload-part-size", "65536"]);
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("f.bin");
    let data = pattern(300_000, 33);
    std::fs::write(&path, &data).expect("writes");
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_courier"))
            .env("COURIER_SERVER", server.url())
            .env("COURIER_TOKEN", token("alice"))
            .args(["--json", "upload", "--resume"])
            .args(extra)
            .arg(&path)
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<Value>(String::from_utf8_lossy(&output.stdout).trim())
            .expect("one JSON line")
    };
    let paused = run(&["--stop-after-parts", "2"]);
    assert_eq!(paused["event"], "paused", "{paused}");
    assert_eq!(paused["committed_size"], 131_072);
    let state: Value = serde_json::from_slice(
        &std::fs::read(resumable_state_path(&path)).expect("the state file"),
    )
    .expect("JSON");
    assert_eq!(state["upload_id"], paused["upload_id"]);
    assert_eq!(state["size"], 300_000);
    assert_eq!(state["part_size"], 65_536);
    assert_eq!(state["server"], server.url());
    assert_eq!(state["sha256"], hex::encode(courier_testkit::sha256(&data)));
    let paused = run(&["--stop-after-parts", "1"]);
    assert_eq!(paused["committed_size"], 196_608);
    let done = run(&[]);
    assert_eq!(done["resumed_from"], 196_608, "{done}");
    assert_eq!(done["size"], 300_000);
    assert!(!resumable_state_path(&path).exists());
    // A changed file is not resumed: a new upload from 0.
    let paused = run(&["--stop-after-parts", "1"]);
    std::fs::write(&path, pattern(300_000, 34)).expect("writes");
    let done = run(&[]);
    assert_eq!(done["resumed_from"], 0, "{done}");
    assert_ne!(done["media_id"], Value::Null);
    let _ = paused;
}
