//! `courier delete MEDIA_ID`, run as a real process against a real server: the
//! interop contract's `delete` line, and the errors that follow a deletion.

use std::time::Duration;

use assert_cmd::Command;
use courier_testkit::{Backend, Server, png, token};
use serde_json::Value;

fn courier(server: &Server, user: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
    command
        .env("COURIER_SERVER", server.url())
        .env("COURIER_TOKEN", token(user))
        .timeout(Duration::from_secs(60));
    command
}

/// Runs `courier --json ARGS` as `user`; returns its exit code and last stdout line.
fn json(server: &Server, user: &str, args: &[&str]) -> (Option<i32>, Value) {
    let output = courier(server, user)
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("a JSON line on stdout");
    (
        output.status.code(),
        serde_json::from_str(last).expect("JSON"),
    )
}

#[test]
fn delete_prints_the_contract_line_and_later_calls_fail_with_the_reason() {
    let server = Server::start(&Backend::Local, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cat.png");
    std::fs::write(&path, png(32, 24)).expect("write");
    let (code, media) = json(
        &server,
        "alice",
        &["upload", "--image", path.to_str().expect("utf-8")],
    );
    assert_eq!(code, Some(0));
    let id = media["media_id"].as_str().expect("a media ID").to_owned();
    // Another user's media: NOT_FOUND, and it stays.
    let (code, refused) = json(&server, "bob", &["delete", &id]);
    assert_eq!(code, Some(1));
    assert_eq!(refused["error"]["code"], "NOT_FOUND");
    let (code, deleted) = json(&server, "alice", &["delete", &id]);
    assert_eq!(code, Some(0));
    assert_eq!(
        deleted,
        serde_json::json!({"media_id": id, "deleted": true})
    );
    // Twice prints the same.
    assert_eq!(json(&server, "alice", &["delete", &id]), (Some(0), deleted));
    let out = dir.path().join("copy.png");
    let (code, gone) = json(
        &server,
        "bob",
        &["download", &id, "-o", out.to_str().expect("utf-8")],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        (&gone["error"]["code"], &gone["error"]["reason"]),
        (&"NOT_FOUND".into(), &"MEDIA_DELETED".into())
    );
    assert!(!out.exists(), "nothing left at PATH");
    // A send by media ID looks the record up for its kind first.
    let (code, unsendable) = json(
        &server,
        "alice",
        &["send", "--to", "bob", "--media-id", &id],
    );
    assert_eq!(code, Some(1));
    assert_eq!(unsendable["error"]["reason"], "MEDIA_DELETED");
    // Without --json: one readable line.
    let (_, again) = json(&server, "alice", &["upload", path.to_str().expect("utf-8")]);
    let again = again["media_id"].as_str().expect("a media ID").to_owned();
    courier(&server, "alice")
        .args(["delete", &again])
        .assert()
        .success()
        .stdout(format!("deleted {again}\n"));
}
