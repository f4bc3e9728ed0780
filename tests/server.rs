//! The server as an operator sees it: authentication, the `token` command, health,
//! reflection, metrics and graceful shutdown.

mod common;

use std::{process::Command, time::Duration};

use common::{
    Backend, SECRET, Server, authed, expect_code, header, header_frame, token, token_with,
    upload_frames,
};
use courier_server::pb::{self, MediaKind};
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Asks a reflection service (module `v1` or `v1alpha`) for its list of services and
/// for the file defining grpc.health.v1.Health; yields (names, health described).
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new($channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
        ]
        .map(|request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        });
        let mut responses = client
            .server_reflection_info(futures::stream::iter(requests))
            .await
            .expect("reflection answers")
            .into_inner();
        let mut names = Vec::new();
        let mut health_described = false;
        while let Some(response) = responses.message().await.expect("a response") {
            match response.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    names.extend(list.service.into_iter().map(|s| s.name));
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    health_described = !files.file_descriptor_proto.is_empty();
                }
                other => panic!("unexpected reflection answer {other:?}"),
            }
        }
        (names, health_described)
    }};
}

const SOME_ID: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_unauthenticated() {
    let server = Server::start(&Backend::Local, &[]);
    let mut client = server.media().await;
    let get = |media_id: &str| pb::GetMediaRequest {
        media_id: media_id.into(),
    };

    let message = expect_code(
        client.get_media(Request::new(get(SOME_ID))).await,
        Code::Unauthenticated,
    );
    assert!(message.contains("missing"), "{message}");
    let forged = token_with("not-the-server-secret", "alice", 3600);
    let message = expect_code(
        client.get_media(authed(&forged, get(SOME_ID))).await,
        Code::Unauthenticated,
    );
    assert!(message.contains("invalid"), "{message}");
    let expired = token_with(SECRET, "alice", -120);
    let message = expect_code(
        client.get_media(authed(&expired, get(SOME_ID))).await,
        Code::Unauthenticated,
    );
    assert!(message.contains("expired"), "{message}");
    let bad_user = token_with(SECRET, "has space", 3600);
    expect_code(
        client.get_media(authed(&bad_user, get(SOME_ID))).await,
        Code::Unauthenticated,
    );
    let mut raw = Request::new(get(SOME_ID));
    raw.metadata_mut().insert(
        "authorization",
        "Basic YWxpY2U6cHc=".parse().expect("ascii"),
    );
    expect_code(client.get_media(raw).await, Code::Unauthenticated);

    // Uploads and downloads are guarded too, and a refused upload keeps nothing.
    let frames = vec![header_frame(header(MediaKind::File, "x", 1))];
    expect_code(
        upload_frames(&mut client, &forged, frames).await,
        Code::Unauthenticated,
    );
    let download = pb::DownloadMediaRequest {
        media_id: SOME_ID.into(),
        ..Default::default()
    };
    expect_code(
        client.download_media(authed(&expired, download)).await,
        Code::Unauthenticated,
    );
    // MessagingService sits behind the same check.
    let mut messaging = pb::messaging_service_client::MessagingServiceClient::connect(server.url())
        .await
        .expect("connects");
    let query = pb::QueryPeersOnlineStatusRequest {
        user_ids: vec!["bob".into()],
    };
    expect_code(
        messaging
            .query_peers_online_status(Request::new(query))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(server.stored().await, Vec::<String>::new());
    // And a good token passes.
    let result = client
        .get_media(authed(&token("alice"), get(SOME_ID)))
        .await;
    expect_code(result, Code::NotFound);
}

#[tokio::test]
async fn token_command_mints_with_the_servers_own_secret() {
    let server = Server::start_with(&Backend::Local, &[], None);
    let secret_file = server.data_dir.path().join("jwt-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .expect("the secret file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret is private to its owner");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_courier-server"))
        .args(["token", "--user", "alice", "--ttl", "1h", "--data-dir"])
        .arg(server.data_dir.path())
        .env_remove("COURIER_JWT_SECRET")
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let mut client = server.media().await;
    let get = pb::GetMediaRequest {
        media_id: SOME_ID.into(),
    };
    expect_code(
        client.get_media(authed(&minted, get.clone())).await,
        Code::NotFound,
    );
    // The test suite's own secret is not this server's.
    expect_code(
        client.get_media(authed(&token("alice"), get)).await,
        Code::Unauthenticated,
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_courier-server"))
        .args(["token", "--user", "not valid", "--data-dir"])
        .arg(server.data_dir.path())
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("user ID"));
}

#[tokio::test]
async fn health_reflection_and_metrics() {
    let server = Server::start(&Backend::Local, &[]);
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "courier.v1.MediaService", "courier.v1.MessagingService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check needs no token")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    // Both reflection versions list every service and describe the health service
    // (many grpcurl builds speak only v1alpha).
    let v1 = reflect!(v1, server.channel().await);
    let v1alpha = reflect!(v1alpha, server.channel().await);
    for (names, health_described) in [v1, v1alpha] {
        for expected in [
            "courier.v1.MediaService",
            "courier.v1.MessagingService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            health_described,
            "reflection cannot describe grpc.health.v1.Health"
        );
    }
    assert_eq!(server.metric("courier_transfers_in_flight").await, 0);
    assert_eq!(server.metric("courier_uploads_completed_total").await, 0);
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    // A long grace period: the server must not need it when nothing real is open.
    let mut server = Server::start(&Backend::Local, &["--shutdown-grace", "20s"]);
    // One connection and one reader task per watch, each reading as events come: a
    // watcher must get NOT_SERVING and then the end of its stream.
    let mut readers = Vec::new();
    for name in ["", "courier.v1.MediaService", "courier.v1.MessagingService"] {
        let mut health = HealthClient::new(server.channel().await);
        let request = HealthCheckRequest {
            service: name.into(),
        };
        let mut watch = health.watch(request).await.expect("watch").into_inner();
        let first = watch.message().await.expect("status").expect("a status");
        assert_eq!(first.status(), ServingStatus::Serving, "{name:?}");
        readers.push(tokio::spawn(async move {
            let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await;
            let end = tokio::time::timeout(Duration::from_secs(5), watch.message()).await;
            (name, next, end)
        }));
    }
    let started = std::time::Instant::now();
    server.terminate();
    // Every name, the overall one included, turns NOT_SERVING at once, so load
    // balancers stop sending new calls; then each watch ends.
    for reader in readers {
        let (name, next, end) = reader.await.expect("reader");
        let next = next
            .expect("a status change")
            .expect("the watch stays open")
            .expect("a status");
        assert_eq!(next.status(), ServingStatus::NotServing, "{name:?}");
        let end = end.expect("the watch ends");
        assert!(matches!(end, Ok(None) | Err(_)), "{name:?}: {end:?}");
    }
    // Open watches do not hold the process for the grace period.
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .expect("waits")
        .expect("the server exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server took {:?} to exit with only health watches open",
        started.elapsed()
    );
}

#[test]
fn zero_durations_and_limits_are_refused_at_start_with_status_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (flag, value) in [
        ("--sweep-interval", "0s"),
        ("--idle-timeout", "0s"),
        ("--media-ttl", "0s"),
        ("--offline-ttl", "0s"),
        ("--rate-window", "0s"),
        ("--rate-limit", "0"),
        ("--max-transfers-per-user", "0"),
        ("--max-upload-size", "0"),
        ("--subscriber-buffer", "0"),
        ("--sweep-interval", "soon"),
        ("--http2-stream-window", "65534"),
        ("--http2-connection-window", "2147483648"),
        ("--http2-max-frame-size", "16383"),
        ("--http2-max-frame-size", "16777216"),
        ("--http2-adaptive-window", "maybe"),
    ] {
        let output = Command::new(common::server_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args([flag, value])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

#[test]
fn the_defaults_are_the_designs() {
    // Read from --help, so that the limits DESIGN.md names are checked without a
    // test racing the clock.
    let output = Command::new(common::server_binary())
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&output.stdout).replace('\n', " ");
    for (flag, default) in [
        ("--rate-limit", "180"),
        ("--rate-window", "3s"),
        ("--max-upload-size", "31457280"),
        ("--media-ttl", "7d"),
        ("--max-transfers-per-user", "9"),
        ("--idle-timeout", "120s"),
        ("--offline-cache-size", "200"),
        ("--offline-ttl", "7d"),
        ("--max-channels-per-user", "20"),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} in {help}"));
        let rest = &help[at..];
        let end = rest[2..]
            .find("      --")
            .map(|i| i + 2)
            .unwrap_or(rest.len());
        assert!(
            rest[..end].contains(&format!("[default: {default}]")),
            "{flag}: {}",
            &rest[..end]
        );
    }
}

/// What a server announces when an HTTP/2 connection opens: its SETTINGS
/// (identifier -> value) and the increment of its first connection WINDOW_UPDATE.
fn announced_settings(url: &str) -> (std::collections::HashMap<u16, u32>, Option<u32>) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(addr).expect("connects");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    // The client preface and an empty SETTINGS frame.
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("writes the preface");
    let mut settings = std::collections::HashMap::new();
    let mut window_update = None;
    // Frames until the server's SETTINGS and the WINDOW_UPDATE that follows it, or a
    // second of silence (a server that keeps the protocol's initial window sends none).
    for _ in 0..8 {
        let mut head = [0u8; 9];
        if socket.read_exact(&mut head).is_err() {
            break;
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let mut payload = vec![0u8; length];
        socket.read_exact(&mut payload).expect("reads a frame");
        match kind {
            0x4 if flags & 0x1 == 0 => {
                for entry in payload.chunks_exact(6) {
                    settings.insert(
                        u16::from_be_bytes([entry[0], entry[1]]),
                        u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]),
                    );
                }
            }
            0x8 => {
                window_update = Some(
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff,
                );
                break;
            }
            _ => {}
        }
    }
    (settings, window_update)
}

const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_FRAME_SIZE: u16 = 0x5;

#[test]
fn http2_windows_are_adaptive_by_default_and_frame_size_and_fixed_windows_set_by_flags() {
    // The defaults: adaptive windows, which start from the protocol's 65535 bytes (and
    // grow with the measured bandwidth-delay product), and 1 MiB frames.
    let server = Server::start(&Backend::Local, &[]);
    let (settings, window_update) = announced_settings(&server.url());
    assert_eq!(
        settings.get(&INITIAL_WINDOW_SIZE),
        Some(&65_535),
        "{settings:?}"
    );
    assert_eq!(
        settings.get(&MAX_FRAME_SIZE),
        Some(&(1 << 20)),
        "{settings:?}"
    );
    assert_eq!(window_update, None);

    // Fixed windows when the adaptive window is off: 4 MiB and 8 MiB by default.
    let server = Server::start(&Backend::Local, &["--http2-adaptive-window", "false"]);
    let (settings, window_update) = announced_settings(&server.url());
    assert_eq!(
        settings.get(&INITIAL_WINDOW_SIZE),
        Some(&(4 << 20)),
        "{settings:?}"
    );
    assert_eq!(window_update, Some((8 << 20) - 65_535));

    let server = Server::start(
        &Backend::Local,
        &[
            "--http2-adaptive-window",
            "false",
            "--http2-stream-window",
            "1000000",
            "--http2-connection-window",
            "3000000",
            "--http2-max-frame-size",
            "65536",
        ],
    );
    let (settings, window_update) = announced_settings(&server.url());
    assert_eq!(
        settings.get(&INITIAL_WINDOW_SIZE),
        Some(&1_000_000),
        "{settings:?}"
    );
    assert_eq!(settings.get(&MAX_FRAME_SIZE), Some(&65_536), "{settings:?}");
    assert_eq!(window_update, Some(3_000_000 - 65_535));
}

#[tokio::test]
async fn transfers_work_with_the_smallest_and_the_adaptive_http2_settings() {
    let data = common::pattern(3 * 1024 * 1024 + 7, 5);
    for flags in [
        &[
            "--http2-adaptive-window",
            "false",
            "--http2-stream-window",
            "65535",
            "--http2-connection-window",
            "65535",
            "--http2-max-frame-size",
            "16384",
        ][..],
        &["--http2-adaptive-window", "true"][..],
    ] {
        let server = Server::start(&Backend::Local, flags);
        let client = courier_client::Client::connect(&server.url(), &token("alice"))
            .await
            .expect("connects");
        let media = client
            .upload_file_bytes("data.bin", data.clone())
            .expect("starts")
            .await
            .expect("uploads");
        let back = client
            .download_to_memory(&media.media_id)
            .expect("starts")
            .await
            .expect("downloads");
        assert_eq!(back.bytes, data, "{flags:?}");
    }
}
