//! The example scanner (`examples/scanner/scanner.py`) run as the upload hook of a
//! real server: the EICAR test file is rejected, an image over `--max-pixels` is
//! rejected, a plain file is accepted. Needs `python3` (3.11+). No clamd runs here:
//! `--clamd` is not exercised by this test.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use bytes::Bytes;
use common::{Backend, Server, header, png, token, upload_bytes};
use courier_server::pb::MediaKind;
use tonic::Code;
use tonic_types::StatusExt;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The scanner process, killed on drop.
struct Scanner(Child);

impl Drop for Scanner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the scanner on a free port; returns it and its URL.
fn scanner(max_pixels: u32) -> (Scanner, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/scanner/scanner.py");
    let mut child = Command::new("python3")
        .args([
            script,
            "--listen",
            "127.0.0.1:0",
            "--max-pixels",
            &max_pixels.to_string(),
        ])
        .env("COURIER_UPLOAD_HOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the scanner");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reads");
    let addr = line
        .trim()
        .strip_prefix("scanner listening on ")
        .unwrap_or_else(|| panic!("the scanner said {line:?}"))
        .to_owned();
    (Scanner(child), format!("http://{addr}/"))
}

/// The EICAR test file, put together here so that no file of the repository holds it.
fn eicar() -> Bytes {
    let pieces = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-",
        "ANTIVIRUS-TEST-",
        "FILE!$H+H*",
    ];
    let text = pieces.concat();
    assert_eq!(text.len(), 68);
    Bytes::from(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scanner_as_the_hook() {
    let (_scanner, url) = scanner(50_000);
    let server = Server::start(
        &Backend::Local,
        &["--upload-hook", &url, "--upload-hook-secret", SECRET],
    );
    let mut client = server.media().await;
    let alice = token("alice");
    let reason = |status: &tonic::Status| {
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    };

    let virus = eicar();
    let refused = upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::File, "eicar.com", 68),
        &virus,
    )
    .await
    .expect_err("EICAR is refused");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::FailedPrecondition, "MEDIA_REJECTED")
    );
    assert!(refused.message().contains("EICAR"), "{}", refused.message());

    let big = png(300, 200);
    let refused = upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::Image, "big.png", big.len() as u64),
        &big,
    )
    .await
    .expect_err("too many pixels");
    assert_eq!(reason(&refused), "MEDIA_REJECTED");
    assert!(refused.message().contains("60000"), "{}", refused.message());

    let plain = Bytes::from_static(b"just a note\n");
    upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::File, "note.txt", plain.len() as u64),
        &plain,
    )
    .await
    .expect("a plain file is accepted");
    let small = png(100, 100);
    upload_bytes(
        &mut client,
        &alice,
        header(MediaKind::Image, "small.png", small.len() as u64),
        &small,
    )
    .await
    .expect("an image under the limit is accepted");
    let kept: Vec<_> = server
        .stored()
        .await
        .into_iter()
        .filter(|k| k.starts_with("records/"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
}
