//! The `courier` command-line tool, run as a real process against a real server.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command as StdCommand, Stdio},
    sync::mpsc,
    time::Duration,
};

use assert_cmd::Command;
use bytes::Bytes;
use courier_client::Client;
use courier_testkit::{
    Backend, Server, decoded_size, pattern, png, token, two_tone_jpeg, with_exif_orientation,
};
use predicates::prelude::PredicateBooleanExt;
use serde_json::Value;

fn courier(server: &Server, user: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
    command
        .env("COURIER_SERVER", server.url())
        .env("COURIER_TOKEN", token(user))
        .timeout(Duration::from_secs(60));
    command
}

/// Runs `courier send --to bob --image PICTURE` as alice and checks it succeeds.
fn send_image_to_bob(server: &Server, picture: &Path) -> assert_cmd::assert::Assert {
    let picture = picture.to_str().expect("utf-8");
    courier(server, "alice")
        .args(["send", "--to", "bob", "--image", picture])
        .assert()
        .success()
}

/// Runs `courier --json ARGS` as `user` and returns its one JSON line.
fn json(server: &Server, user: &str, args: &[&str]) -> Value {
    let output = courier(server, user)
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "courier {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per line: {stdout}");
    serde_json::from_str(lines[0]).expect("JSON")
}

/// A `courier --json listen` process whose output lines are read on a thread.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Listener {
    /// Starts listening and waits until the feed is live.
    fn start(server: &Server, user: &str, save: &Path) -> Self {
        let mut listener = Self::start_without_ready(server, user, save);
        listener.wait_for("ready");
        listener
    }

    /// The next line whose "event" is `event`, within 15 s.
    fn wait_for(&mut self, event: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(15))
                .expect("listen prints in time");
            if line["event"] == event {
                return line;
            }
        }
    }
}

impl Listener {
    /// Starts `courier --json listen --save SAVE` as `user`.
    fn start_without_ready(server: &Server, user: &str, save: &Path) -> Self {
        Self::start_with(server, user, save, &[])
    }

    /// Starts `courier --json listen --save SAVE EXTRA..` as `user`.
    fn start_with(server: &Server, user: &str, save: &Path, extra: &[&str]) -> Self {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_courier"))
            .args(["--json", "listen", "--save"])
            .arg(save)
            .args(extra)
            .env("COURIER_SERVER", server.url())
            .env("COURIER_TOKEN", token(user))
            .stdout(Stdio::piped())
            .spawn()
            .expect("listen starts");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).expect("listen prints JSON lines");
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn upload_prints_the_media_record() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cat.png");
    std::fs::write(&path, png(32, 24)).expect("write");
    let media = json(
        &server,
        "alice",
        &["upload", "--image", path.to_str().expect("utf-8")],
    );
    assert_eq!(media["kind"], "image");
    assert_eq!(media["file_name"], "cat.png");
    assert_eq!(
        (media["width"].as_u64(), media["height"].as_u64()),
        (Some(32), Some(24))
    );
    assert_eq!(media["media_id"].as_str().map(str::len), Some(32));
    assert_eq!(media["sha256"].as_str().map(str::len), Some(64));
    // Without --json: one readable line.
    courier(&server, "alice")
        .args(["upload", path.to_str().expect("utf-8")])
        .assert()
        .success()
        .stdout(predicates::str::contains("cat.png").and(predicates::str::contains("bytes")));
}

#[test]
fn send_an_image_and_listen_saves_it() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let picture = dir.path().join("cat.png");
    std::fs::write(&picture, png(64, 48)).expect("write");
    let mut bob = Listener::start(&server, "bob", &inbox);

    send_image_to_bob(&server, &picture).stdout(predicates::str::starts_with("delivered"));
    let message = bob.wait_for("message");
    assert_eq!(message["from"], "alice");
    assert_eq!(message["message"]["type"], "image");
    assert_eq!(
        (
            message["message"]["width"].as_u64(),
            message["message"]["height"].as_u64()
        ),
        (Some(64), Some(48))
    );
    let saved = bob.wait_for("saved");
    assert_eq!(saved["path"], inbox.join("cat.png").display().to_string());
    assert_eq!(
        std::fs::read(inbox.join("cat.png")).expect("saved"),
        std::fs::read(&picture).expect("read")
    );

    // The same name again gets a suffix instead of overwriting.
    send_image_to_bob(&server, &picture);
    let saved = bob.wait_for("saved");
    assert_eq!(
        saved["path"],
        inbox.join("cat (1).png").display().to_string()
    );

    // A hostile file name cannot escape the folder.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let alice = Client::connect(&server.url(), &token("alice"))
            .await
            .expect("connects");
        let media = alice
            .upload_file_bytes("../../escape.txt", Bytes::from_static(b"gotcha"))
            .expect("starts")
            .await
            .expect("uploads");
        alice
            .send_peer_message("bob", media.file_message(), Default::default())
            .await
            .expect("sends");
    });
    let saved = bob.wait_for("saved");
    let path = saved["path"].as_str().expect("path");
    assert!(
        Path::new(path).starts_with(&inbox),
        "{path} is outside the inbox"
    );
    assert_eq!(std::fs::read(path).expect("saved"), b"gotcha");
    assert!(!dir.path().join("escape.txt").exists());
}

#[test]
fn send_by_media_id_to_a_channel_and_download() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.bin");
    let data = pattern(600_000, 3);
    std::fs::write(&path, &data).expect("write");
    let media = json(&server, "alice", &["upload", path.to_str().expect("utf-8")]);
    let id = media["media_id"].as_str().expect("id").to_owned();

    assert_eq!(
        json(&server, "alice", &["join", "team"])["result"],
        "joined"
    );
    assert_eq!(json(&server, "bob", &["join", "team"])["result"], "joined");
    assert_eq!(
        json(&server, "bob", &["members", "team"])["members"],
        serde_json::json!(["alice", "bob"])
    );
    let mut bob = Listener::start(&server, "bob", &dir.path().join("inbox"));
    let sent = json(
        &server,
        "alice",
        &["send", "--channel", "team", "--media-id", &id],
    );
    assert_eq!(sent["state"], "delivered");
    let message = bob.wait_for("message");
    assert_eq!(
        (
            message["channel"].as_str(),
            message["message"]["type"].as_str()
        ),
        (Some("team"), Some("file"))
    );
    assert_eq!(message["message"]["media_id"], id.as_str());

    let online = courier(&server, "alice")
        .args(["--json", "online", "bob", "carol"])
        .output()
        .expect("runs");
    let lines: Vec<Value> = String::from_utf8_lossy(&online.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"user_id": "bob", "online": true}),
            serde_json::json!({"user_id": "carol", "online": false})
        ]
    );

    let out = dir.path().join("copy.bin");
    let saved = json(
        &server,
        "carol",
        &["download", &id, "-o", out.to_str().expect("utf-8")],
    );
    assert_eq!(saved["event"], "saved");
    assert!(std::fs::read(&out).expect("downloaded") == data);
    assert_eq!(json(&server, "bob", &["leave", "team"])["result"], "left");
}

#[test]
fn offline_messages_wait_for_listen() {
    let server = Server::start(&Backend::Local, &[]);
    let sent = json(
        &server,
        "alice",
        &["send", "--to", "bob", "--text", "call me", "--offline"],
    );
    assert_eq!(sent["state"], "cached");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bob = Listener::start_without_ready(&server, "bob", dir.path());
    let message = bob.wait_for("message");
    assert_eq!(
        (
            message["offline"].as_bool(),
            message["message"]["text"].as_str()
        ),
        (Some(true), Some("call me"))
    );
    assert_eq!(bob.wait_for("ready")["offline_count"], 1);
}

#[test]
fn errors_are_one_line_and_a_failing_exit_code() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x");
    let assert = courier(&server, "alice")
        .args([
            "download",
            "0123456789abcdef0123456789abcdef",
            "-o",
            out.to_str().expect("utf-8"),
        ])
        .assert()
        .failure()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("courier: not found"), "{stderr}");
    assert!(!out.exists());

    courier(&server, "alice")
        .args(["send", "--to", "bob", "--text", "anyone?"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("peer unreachable"));
    Command::new(env!("CARGO_BIN_EXE_courier"))
        .env_remove("COURIER_TOKEN")
        .env("COURIER_SERVER", server.url())
        .args(["online", "bob"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no token"));
    courier(&server, "alice")
        .args(["send", "--to", "bob", "--text", &"x".repeat(32 * 1024 + 1)])
        .assert()
        .failure()
        .stderr(predicates::str::contains("message too large"));
}

/// Runs `courier --json ARGS` as `user`, expecting exit status 1; returns its last
/// stdout line.
fn json_failure(server: &Server, user: &str, args: &[&str]) -> Value {
    let output = courier(server, user)
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "courier {args:?}: {output:?}"
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(last).expect("JSON")
}

#[test]
fn json_errors_follow_the_interop_contract() {
    let server = Server::start(&Backend::Local, &["--max-upload-size", "1000"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, pattern(1001, 1)).expect("write");
    let error = json_failure(&server, "alice", &["upload", big.to_str().expect("utf-8")]);
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(error["error"]["reason"], "MEDIA_TOO_LARGE");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1000"))
    );

    let out = dir.path().join("x");
    let args = [
        "download",
        "0123456789abcdef0123456789abcdef",
        "-o",
        out.to_str().expect("utf-8"),
    ];
    let error = json_failure(&server, "alice", &args);
    assert_eq!(error["error"]["code"], "NOT_FOUND");
    assert_eq!(error["error"]["reason"], "");
    assert!(!out.exists());

    let unreachable = json_failure(&server, "alice", &["send", "--to", "bob", "--text", "hi"]);
    assert_eq!(unreachable["state"], "unreachable");
    assert_eq!(
        unreachable["message_id"].as_str().map(str::is_empty),
        Some(false)
    );

    let error = json_failure(
        &server,
        "alice",
        &["send", "--to", "bob", "--text", &"x".repeat(32 * 1024 + 1)],
    );
    assert_eq!(
        (&error["error"]["code"], &error["error"]["reason"]),
        (
            &Value::from("INVALID_ARGUMENT"),
            &Value::from("MESSAGE_TOO_LARGE")
        )
    );

    // Nothing listens here: UNAVAILABLE, found by the client.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let output = courier(&server, "alice")
        .env("COURIER_SERVER", url)
        .args(["--json", "join", "team"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let line: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(line["error"]["code"], "UNAVAILABLE");

    // A file that is not there is the caller's input: INVALID_ARGUMENT.
    let missing = dir.path().join("missing.bin");
    let error = json_failure(
        &server,
        "alice",
        &["upload", missing.to_str().expect("utf-8")],
    );
    assert_eq!(error["error"]["code"], "INVALID_ARGUMENT");

    // Usage errors exit 2.
    courier(&server, "alice").arg("--json").assert().code(2);
    courier(&server, "alice")
        .args(["--json", "send", "--to", "bob"])
        .assert()
        .code(2);
}

#[test]
fn listen_count_exits_after_the_saves() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let picture = dir.path().join("cat.png");
    std::fs::write(&picture, png(40, 30)).expect("write");
    let mut bob = StdCommand::new(env!("CARGO_BIN_EXE_courier"))
        .args(["--json", "listen", "--count", "2", "--save"])
        .arg(&inbox)
        .env("COURIER_SERVER", server.url())
        .env("COURIER_TOKEN", token("bob"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("listen starts");
    let mut lines = BufReader::new(bob.stdout.take().expect("stdout")).lines();
    let ready: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON");
    assert_eq!(ready["event"], "ready");

    send_image_to_bob(&server, &picture);
    json(
        &server,
        "alice",
        &["send", "--to", "bob", "--text", "that's all"],
    );
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.expect("read")).expect("JSON"))
        .collect();
    assert!(bob.wait().expect("exits").success());
    let events: Vec<&str> = rest.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(events, ["message", "saved", "message"]);
    let saved = &rest[1];
    let bytes = std::fs::read(inbox.join("cat.png")).expect("saved");
    assert_eq!(bytes, std::fs::read(&picture).expect("read"));
    assert_eq!(
        saved["sha256"],
        hex::encode(courier_testkit::sha256(&bytes))
    );
}

/// A peer that accepts connections and never answers: uploads to it stall on flow
/// control, for as long as a test needs.
fn silent_server() -> std::net::SocketAddr {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten().take(4) {
            let mut reader = stream.try_clone().expect("clone");
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            held.push(stream);
        }
    });
    addr
}

#[test]
fn ctrl_c_cancels_a_transfer_and_exits_130() {
    let addr = silent_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    std::fs::write(&path, pattern(4 * 1024 * 1024, 7)).expect("write");
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_courier"))
        .args(["upload"])
        .arg(&path)
        .env("COURIER_SERVER", format!("http://{addr}"))
        .env("COURIER_TOKEN", token("alice"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("status").is_none(),
        "the upload should be stalled, not finished"
    );
    let interrupted = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let output = child.wait_with_output().expect("exits");
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "courier: cancelled"
    );
}

#[test]
fn a_terminal_gets_a_progress_bar() {
    // `script` gives the tool a terminal; the upload stalls until `timeout` sends
    // Ctrl-C, so the bar is drawn whatever the machine's speed.
    let addr = silent_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.bin");
    std::fs::write(&path, pattern(4 * 1024 * 1024, 8)).expect("write");
    let inner = format!(
        "timeout --preserve-status -s INT 2 {} upload {}",
        env!("CARGO_BIN_EXE_courier"),
        path.display()
    );
    let output = StdCommand::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("COURIER_SERVER", format!("http://{addr}"))
        .env("COURIER_TOKEN", token("alice"))
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains(&format!("uploading {}", path.display())),
        "no progress bar drawn: {screen:?}"
    );
    assert!(screen.contains("courier: cancelled"), "{screen:?}");
    assert_eq!(output.status.code(), Some(130), "{screen:?}");
}

#[test]
fn listen_saves_the_thumbnails_of_images() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    let thumbs = dir.path().join("thumbs");
    let thumbs_arg = thumbs.to_str().expect("utf-8");
    let mut bob = Listener::start_with(
        &server,
        "bob",
        &inbox,
        &["--thumbnails", thumbs_arg, "--thumbnail-size", "96"],
    );
    bob.wait_for("ready");
    // Stored 300 x 150 with EXIF orientation 6: upright 150 x 300.
    let picture = dir.path().join("turned.jpg");
    std::fs::write(&picture, with_exif_orientation(&two_tone_jpeg(300, 150), 6)).expect("write");
    send_image_to_bob(&server, &picture);
    let thumb = bob.wait_for("thumbnail");
    assert_eq!(thumb["content_type"], "image/jpeg");
    assert_eq!(
        (thumb["width"].as_u64(), thumb["height"].as_u64()),
        (Some(48), Some(96))
    );
    let path = thumbs.join("turned.thumb.jpg");
    assert_eq!(thumb["path"], path.display().to_string());
    let data = std::fs::read(&path).expect("saved");
    assert_eq!(thumb["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(decoded_size(&data), (48, 96));
    // The original is saved as before.
    bob.wait_for("saved");
    assert!(inbox.join("turned.jpg").exists());

    // A file message gets no thumbnail; the next image still does.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"words").expect("write");
    courier(&server, "alice")
        .args([
            "send",
            "--to",
            "bob",
            "--file",
            notes.to_str().expect("utf-8"),
        ])
        .assert()
        .success();
    let cat = dir.path().join("cat.png");
    std::fs::write(&cat, png(64, 48)).expect("write");
    send_image_to_bob(&server, &cat);
    let thumb = bob.wait_for("thumbnail");
    assert_eq!(
        thumb["path"],
        thumbs.join("cat.thumb.jpg").display().to_string()
    );
    assert_eq!(
        (thumb["width"].as_u64(), thumb["height"].as_u64()),
        (Some(64), Some(48)),
        "not enlarged"
    );
    let entries = std::fs::read_dir(&thumbs).expect("thumbs").count();
    assert_eq!(entries, 2, "one thumbnail per image, none for the file");
}

#[test]
fn thumbnail_saves_the_servers_thumbnail() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let picture = dir.path().join("wide.png");
    std::fs::write(&picture, png(400, 200)).expect("write");
    let media = json(
        &server,
        "alice",
        &["upload", "--image", picture.to_str().expect("utf-8")],
    );
    let media_id = media["media_id"].as_str().expect("media_id");
    let output = dir.path().join("thumb.jpg");
    let output_arg = output.to_str().expect("utf-8");
    let thumb = json(
        &server,
        "bob",
        &["thumbnail", media_id, "--max-edge", "100", "-o", output_arg],
    );
    assert_eq!(thumb["event"], "thumbnail");
    assert_eq!(thumb["content_type"], "image/jpeg");
    assert_eq!(
        (thumb["width"].as_u64(), thumb["height"].as_u64()),
        (Some(320), Some(160)),
        "100 rounds up to 320"
    );
    let data = std::fs::read(&output).expect("saved");
    assert_eq!(decoded_size(&data), (320, 160));
    // A file: NOT_AN_IMAGE, as one JSON error line and exit status 1.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"words").expect("write");
    let file = json(
        &server,
        "alice",
        &["upload", notes.to_str().expect("utf-8")],
    );
    let file_id = file["media_id"].as_str().expect("media_id");
    let error = json_failure(&server, "bob", &["thumbnail", file_id, "-o", output_arg]);
    assert_eq!(error["error"]["code"], "FAILED_PRECONDITION");
    assert_eq!(error["error"]["reason"], "NOT_AN_IMAGE");
}
