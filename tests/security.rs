//! Serving on the open internet: TLS on the gRPC port (certificates from
//! `courier-server tls-dev`, rotated in place, client certificates), and token
//! revocation (`courier-server revoke`), each against a real server process.

mod common;

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    Backend, Feed, SECRET, Server, authed, data_frames, header, header_frame, messaging, now_secs,
    pattern, server_binary, token, token_with_claims, upload_frames,
};
use courier_client::{Client, ClientOptions, Error};
use courier_server::pb;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;
use tokio::net::TcpStream;
use tonic::Code;

/// Runs `courier-server ARGS` to completion and checks it succeeded.
/// Runs `courier-server ARGS`; its standard output.
fn run_server_command(args: &[&str]) -> String {
    let output = Command::new(server_binary())
        .args(args)
        .output()
        .expect("courier-server runs");
    assert!(
        output.status.success(),
        "courier-server {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes a CA, server and client certificates in `dir` with `courier-server tls-dev`.
fn dev_certificates(dir: &Path) {
    let out = dir.display().to_string();
    run_server_command(&["tls-dev", "--out", &out, "--hosts", "localhost,127.0.0.1"]);
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("certificate file")
}

fn https(server: &Server) -> String {
    format!("https://localhost:{}", server.addr.port())
}

fn tls_options(dir: &Path) -> ClientOptions {
    ClientOptions {
        tls_ca_pem: Some(read(dir, "ca.pem")),
        retries: 0,
        ..ClientOptions::default()
    }
}

/// The certificate a TLS handshake with `server` presents, trusting `ca_pem`.
async fn served_certificate(server: &Server, ca_pem: &[u8]) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .ok_or_else(|| "no certificate".into())
}

/// Replaces `name` in `into` with the same file from `from`, atomically.
fn replace(from: &Path, into: &Path, name: &str) {
    let staged = into.join(format!(".{name}.new"));
    std::fs::copy(from.join(name), &staged).expect("copy");
    std::fs::rename(&staged, into.join(name)).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_plaintext_fails_and_a_rotated_certificate_is_served_without_restart() {
    let certs = tempfile::tempdir().expect("dir");
    dev_certificates(certs.path());
    let cert = certs.path().join("server.pem").display().to_string();
    let key = certs.path().join("server.key").display().to_string();
    let server = Server::start(&Backend::Local, &["--tls-cert", &cert, "--tls-key", &key]);
    let pid = server.pid();

    // A TLS call with the CA works.
    let alice = Client::connect_with(&https(&server), &token("alice"), tls_options(certs.path()))
        .await
        .expect("TLS connects");
    let statuses = alice
        .query_online_status(&["bob"])
        .await
        .expect("a call over TLS");
    assert_eq!(statuses.len(), 1);

    // Plaintext to the TLS port fails cleanly and at once: the client sees the TLS
    // alert where HTTP/2 was expected and the connection closed (UNAVAILABLE,
    // CANCELLED or INTERNAL "h2 protocol error", by when it notices), never a hang.
    let started = Instant::now();
    let plain = ClientOptions {
        retries: 0,
        deadline: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let result = Client::connect_with(&server.url(), &token("alice"), plain.clone()).await;
    let error = match result {
        Err(e) => e,
        Ok(client) => client
            .query_online_status(&["bob"])
            .await
            .expect_err("plaintext must not work"),
    };
    assert!(
        matches!(
            error.code(),
            Code::Unavailable | Code::Internal | Code::Cancelled
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    // And the server still serves TLS clients.
    alice
        .query_online_status(&["bob"])
        .await
        .expect("TLS still works after a plaintext attempt");
    // TLS without the CA (the system's roots do not know it) is refused too.
    let result = Client::connect_with(&https(&server), &token("alice"), plain).await;
    let error = match result {
        Err(e) => e,
        Ok(client) => client
            .query_online_status(&["bob"])
            .await
            .expect_err("an unknown CA must not be trusted"),
    };
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");

    // Rotation: new files written over the old ones are served to new connections.
    let first = served_certificate(&server, &read(certs.path(), "ca.pem"))
        .await
        .expect("handshake");
    assert_eq!(
        first,
        CertificateDer::from_pem_file(certs.path().join("server.pem"))
            .expect("pem")
            .to_vec()
    );
    let renewed = tempfile::tempdir().expect("dir");
    dev_certificates(renewed.path());
    replace(renewed.path(), certs.path(), "server.key");
    replace(renewed.path(), certs.path(), "server.pem");
    let expected = CertificateDer::from_pem_file(renewed.path().join("server.pem"))
        .expect("pem")
        .to_vec();
    let new_ca = read(renewed.path(), "ca.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_certificate(&server, &new_ca).await.ok().as_ref() == Some(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.pid(), pid, "no restart");
    // A client trusting the new CA works; the old connection's CA no longer matches.
    let renewed_client =
        Client::connect_with(&https(&server), &token("bob"), tls_options(renewed.path()))
            .await
            .expect("TLS with the renewed certificate");
    renewed_client
        .query_online_status(&["alice"])
        .await
        .expect("a call over the renewed certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let certs = tempfile::tempdir().expect("dir");
    dev_certificates(certs.path());
    let path = |name: &str| certs.path().join(name).display().to_string();
    let server = Server::start(
        &Backend::Local,
        &[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server.key"),
            "--tls-client-ca",
            &path("ca.pem"),
        ],
    );
    let without =
        Client::connect_with(&https(&server), &token("alice"), tls_options(certs.path())).await;
    let refused = match without {
        Err(e) => e,
        Ok(client) => client
            .query_online_status(&["bob"])
            .await
            .expect_err("no client certificate"),
    };
    // Refused in the handshake (TLS 1.3 reports it on the client's first read, which
    // may surface as an HTTP/2 error rather than a failed connect).
    assert!(
        matches!(
            refused.code(),
            Code::Unavailable | Code::Internal | Code::Cancelled
        ),
        "{refused:?}"
    );
    let with = ClientOptions {
        tls_identity: Some((
            read(certs.path(), "client.pem"),
            read(certs.path(), "client.key"),
        )),
        ..tls_options(certs.path())
    };
    let client = Client::connect_with(&https(&server), &token("alice"), with)
        .await
        .expect("with a client certificate");
    client.query_online_status(&["bob"]).await.expect("a call");
}

#[tokio::test]
async fn bad_tls_files_stop_the_server_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").expect("write");
    let output = Command::new(server_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(dir.path().join("bad.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("bad.pem"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.pem"), "{stderr}");
    // A certificate without a key is a usage error.
    let output = Command::new(server_binary())
        .args(["serve", "--tls-cert", "x.pem"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
}

/// A token of `user` issued `ago` seconds ago (negative: in the future).
fn issued(user: &str, ago: i64) -> String {
    let now = now_secs();
    token_with_claims(&json!({ "sub": user, "exp": now + 3600, "iat": now - ago }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_refused_and_their_streams_end_while_new_tokens_work() {
    let server = Server::start(&Backend::Local, &[]);
    let old = issued("alice", 10);
    let mut client = messaging(&server).await;
    let mut stream = client
        .subscribe(authed(&old, pb::SubscribeRequest { after: 0 }))
        .await
        .expect("subscribes")
        .into_inner();
    // Past the ready event.
    stream.message().await.expect("ready").expect("ready");
    let _bob = Feed::open(&server, "bob").await;

    let data_dir = server.data_dir.path().display().to_string();
    run_server_command(&["revoke", "--user", "alice", "--data-dir", &data_dir]);

    // The open stream ends with UNAUTHENTICATED, within the reload interval.
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends within 5 s")
        .expect_err("ends with an error");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("revoked"), "{ended:?}");
    // Calls with the old token are refused; a token issued after works; bob is
    // untouched.
    let query = || pb::QueryPeersOnlineStatusRequest {
        user_ids: vec!["bob".into()],
    };
    let refused = client
        .query_peers_online_status(authed(&old, query()))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // A token issued in the revocation's own second is revoked too.
    let revocations: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(server.data_dir.path().join("revocations.json"))
            .expect("revocations.json"),
    )
    .expect("json");
    let at = revocations["alice"]
        .as_u64()
        .expect("alice's revocation time");
    let same_second = token_with_claims(&json!({ "sub": "alice", "exp": at + 3600, "iat": at }));
    let refused = client
        .query_peers_online_status(authed(&same_second, query()))
        .await
        .expect_err("minted in the revocation's second");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // A token minted once `revoke` has returned works at once.
    let fresh = run_server_command(&["token", "--user", "alice", "--jwt-secret", SECRET]);
    let answer = client
        .query_peers_online_status(authed(fresh.trim(), query()))
        .await
        .expect("a token minted after revoke returned works")
        .into_inner();
    assert!(answer.statuses[0].online, "bob's stream was not ended");
    // Revocation survives a restart: it lives in the data folder.
    let mut server = server;
    server.restart(&[]);
    let mut client = messaging(&server).await;
    let refused = client
        .query_peers_online_status(authed(&old, query()))
        .await
        .expect_err("still revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_of_a_revoked_token_end_and_keep_nothing() {
    let server = Server::start(&Backend::Local, &[]);
    let data_dir = server.data_dir.path().display().to_string();
    let old = issued("alice", 10);
    // A download running on the old token: 30 MiB, of which it reads one frame first.
    let data = pattern(30 * 1024 * 1024, 5);
    let mut media = server.media().await;
    let stored = upload_frames(
        &mut media,
        &old,
        std::iter::once(header_frame(header(
            pb::MediaKind::File,
            "big.bin",
            data.len() as u64,
        )))
        .chain(data_frames(&data, 256 * 1024))
        .collect(),
    )
    .await
    .expect("uploads");
    let kept = server.stored().await;
    let mut download = media
        .download_media(authed(
            &old,
            pb::DownloadMediaRequest {
                media_id: stored.media_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("downloads")
        .into_inner();
    download.message().await.expect("a first frame");
    // An upload running on the old token: its header and one frame of 10 MiB.
    let (frames, rx) = tokio::sync::mpsc::channel(4);
    frames
        .send(header_frame(header(
            pb::MediaKind::File,
            "half.bin",
            10 << 20,
        )))
        .await
        .expect("queued");
    for frame in data_frames(&pattern(256 * 1024, 6), 256 * 1024) {
        frames.send(frame).await.expect("queued");
    }
    let mut uploads = server.media().await;
    let uploader = old.clone();
    let upload = tokio::spawn(async move {
        uploads
            .upload_media(authed(
                &uploader,
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .await
    });

    run_server_command(&["revoke", "--user", "alice", "--data-dir", &data_dir]);
    // Once the server has read the revocation (a new call is refused)...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut probe = server.media().await;
    while probe
        .get_media(authed(
            &old,
            pb::GetMediaRequest {
                media_id: stored.media_id.clone(),
            },
        ))
        .await
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation was not read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...both transfers end with UNAUTHENTICATED, the download before its end.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match download.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the download completed after the revocation"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the download ends within 5 s");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let refused = tokio::time::timeout(Duration::from_secs(5), upload)
        .await
        .expect("the upload ends within 5 s")
        .expect("the upload task")
        .expect_err("the upload is refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    drop(frames);
    // Nothing of the cut upload is kept: only what the first upload stored.
    server.wait_stored(&kept).await;
}
