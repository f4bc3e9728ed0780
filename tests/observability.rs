//! What a Kubernetes kubelet and a Prometheus scraper see: the liveness health name
//! (SERVING from start to exit, shutdown included) beside readiness (the overall
//! status), and the `/metrics` endpoint's series, scraped over HTTP from a real server.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    Backend, Server, data_frames, download, expect_code, header, header_frame, messaging, pattern,
    send_peer, text, token, upload_frames,
};
use courier_server::pb::MediaKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The health name that Kubernetes' liveness probe asks for (k8s/base/deployment.yaml).
const LIVENESS: &str = "courier.v1.Liveness";

fn check(name: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: name.into(),
    }
}

#[tokio::test]
async fn liveness_stays_serving_through_shutdown_while_readiness_turns_not_serving() {
    let mut server = Server::start(&Backend::Local, &["--shutdown-grace", "20s"]);
    let mut health = HealthClient::new(server.channel().await);
    let live = health.check(check(LIVENESS)).await.expect("liveness");
    assert_eq!(live.into_inner().status(), ServingStatus::Serving);
    let ready = health.check(check("")).await.expect("readiness");
    assert_eq!(ready.into_inner().status(), ServingStatus::Serving);
    let unknown = health.check(check("courier.v1.NoSuchThing")).await;
    expect_code(unknown, Code::NotFound);

    let mut liveness = health
        .watch(check(LIVENESS))
        .await
        .expect("watch")
        .into_inner();
    let first = liveness.message().await.expect("status").expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let mut readiness = health.watch(check("")).await.expect("watch").into_inner();
    let first = readiness
        .message()
        .await
        .expect("status")
        .expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    server.terminate();
    // Readiness turns NOT_SERVING, so the pod leaves the Service's endpoints ...
    let next = tokio::time::timeout(Duration::from_secs(5), readiness.message())
        .await
        .expect("a status change")
        .expect("the watch stays open")
        .expect("a status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    // ... while liveness never says NOT_SERVING (the kubelet must not restart a pod
    // that is draining): its watch ends without another status.
    let end = tokio::time::timeout(Duration::from_secs(5), liveness.message())
        .await
        .expect("the liveness watch ends at shutdown");
    assert!(matches!(end, Ok(None) | Err(_)), "liveness said {end:?}");
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .expect("waits")
        .expect("the server exits without waiting for the grace period");
    assert!(status.success(), "exit status {status:?}");
}

/// One scrape: the HTTP status line, the content type and the body.
async fn scrape(server: &Server, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(server.metrics_addr)
        .await
        .expect("connect to the metrics port");
    let request = format!("GET {path} HTTP/1.1\r\nhost: courier\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    // The server closes the connection after one response.
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("the response ends with the connection")
        .expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} is missing; have {:#?}", samples.keys()))
}

#[tokio::test]
async fn metrics_endpoint_serves_grpc_calls_bytes_refusals_and_gauges() {
    let server = Server::start(&Backend::Local, &[]);
    let (status, content_type, body) = scrape(&server, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    // The series that tests and clients read as plain `name value` lines are there,
    // at zero, before anything happened.
    for name in [
        "courier_transfers_in_flight",
        "courier_download_bytes_total",
        "courier_upload_bytes_total",
        "courier_uploads_completed_total",
        "courier_uploads_failed_total",
        "courier_subscribers_cut_off_total",
        "courier_subscribers",
        "courier_offline_messages_cached",
    ] {
        assert!(
            body.lines().any(|l| l == format!("{name} 0")),
            "no plain `{name} 0` line in:\n{body}"
        );
    }
    // The server's live Tokio tasks: at least the listeners and the sweeper.
    let tasks: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("courier_runtime_alive_tasks "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no courier_runtime_alive_tasks line in:\n{body}"));
    assert!(tasks >= 2.0, "courier_runtime_alive_tasks is {tasks}");

    // Calls: an upload and a download of 300 KiB, a message cached for an offline
    // peer, and one refused as too large.
    let data = pattern(300 * 1024, 7);
    let mut media = server.media().await;
    let mut frames = vec![header_frame(header(
        MediaKind::File,
        "a.bin",
        data.len() as u64,
    ))];
    frames.extend(data_frames(&data, 64 * 1024));
    let stored = upload_frames(&mut media, &token("alice"), frames)
        .await
        .expect("upload");
    let (_, bytes) = download(&mut media, &token("bob"), &stored.media_id, 0, 0)
        .await
        .expect("download");
    assert_eq!(bytes.len(), data.len());
    let mut client = messaging(&server).await;
    send_peer(&mut client, &token("alice"), "carol", text("hi"), true)
        .await
        .expect("cached for carol");
    let too_large = send_peer(
        &mut client,
        &token("alice"),
        "carol",
        text(&"x".repeat(40_000)),
        true,
    )
    .await;
    expect_code(too_large, Code::InvalidArgument);

    let (_, _, body) = scrape(&server, "/metrics").await;
    let got = samples(&body);
    let size = data.len() as f64;
    let media_labels =
        |method: &str| format!("service=\"courier.v1.MediaService\",method=\"{method}\"");
    let send = "service=\"courier.v1.MessagingService\",method=\"SendPeerMessage\"";
    assert_eq!(value(&got, "courier_download_bytes_total"), size);
    assert_eq!(value(&got, "courier_upload_bytes_total"), size);
    assert_eq!(value(&got, "courier_uploads_completed_total"), 1.0);
    assert_eq!(value(&got, "courier_offline_messages_cached"), 1.0);
    assert!(value(&got, "courier_offline_cache_bytes") > 0.0);
    for (labels, code) in [
        (media_labels("UploadMedia"), "OK"),
        (media_labels("DownloadMedia"), "OK"),
        (send.to_owned(), "OK"),
        (send.to_owned(), "INVALID_ARGUMENT"),
    ] {
        assert_eq!(
            value(
                &got,
                &format!("courier_grpc_requests_total{{{labels},code=\"{code}\"}}")
            ),
            1.0,
            "{labels} {code}"
        );
        let count =
            format!("courier_grpc_request_duration_seconds_count{{{labels},code=\"{code}\"}}");
        assert_eq!(value(&got, &count), 1.0, "{count}");
        let inf = format!(
            "courier_grpc_request_duration_seconds_bucket{{{labels},code=\"{code}\",le=\"+Inf\"}}"
        );
        assert_eq!(value(&got, &inf), 1.0, "{inf}");
        assert_eq!(
            value(
                &got,
                &format!("courier_grpc_requests_in_flight{{{labels}}}")
            ),
            0.0,
            "{labels}"
        );
    }
    // gRPC message bytes: the payload plus framing, in the direction of the transfer.
    let received = value(
        &got,
        &format!(
            "courier_grpc_received_bytes_total{{{}}}",
            media_labels("UploadMedia")
        ),
    );
    assert!(
        received > size && received < size + 4096.0,
        "received {received}"
    );
    let sent = value(
        &got,
        &format!(
            "courier_grpc_sent_bytes_total{{{}}}",
            media_labels("DownloadMedia")
        ),
    );
    assert!(sent > size && sent < size + 4096.0, "sent {sent}");
    assert_eq!(
        value(&got, "courier_refusals_total{reason=\"MESSAGE_TOO_LARGE\"}"),
        1.0
    );
    assert_eq!(
        value(&got, "courier_refusals_total{reason=\"RATE_LIMITED\"}"),
        0.0
    );
    assert!(body.contains("# TYPE courier_grpc_request_duration_seconds histogram"));
    assert!(body.contains("# TYPE courier_grpc_requests_total counter"));

    let (status, _, _) = scrape(&server, "/nothing-here").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}
