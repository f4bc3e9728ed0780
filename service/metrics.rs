//! Prometheus metrics: a few process-wide counters, served as text on their own port.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The server's counters. Relaxed ordering is enough: each value stands alone.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Uploads and downloads running now, over all users.
    pub transfers_in_flight: AtomicI64,
    /// Uploads that completed and were stored.
    pub uploads_completed: AtomicU64,
    /// Uploads refused, failed or cancelled (their data removed).
    pub uploads_failed: AtomicU64,
    /// Downloads started.
    pub downloads_started: AtomicU64,
    /// Bytes received by uploads.
    pub upload_bytes: AtomicU64,
    /// Bytes sent by downloads.
    pub download_bytes: AtomicU64,
    /// Transfers refused because the user had too many in flight.
    pub transfers_refused: AtomicU64,
    /// Expired media whose bytes the sweeper deleted.
    pub media_expired: AtomicU64,
    /// Subscribe streams open now.
    pub subscribers: AtomicI64,
    /// Messages accepted (peer and channel).
    pub messages: AtomicU64,
    /// Events queued onto Subscribe streams.
    pub deliveries: AtomicU64,
    /// Subscribe streams cut off for being too slow.
    pub subscribers_cut_off: AtomicU64,
}

/// The one set of counters of this process.
pub static METRICS: Metrics = Metrics {
    transfers_in_flight: AtomicI64::new(0),
    uploads_completed: AtomicU64::new(0),
    uploads_failed: AtomicU64::new(0),
    downloads_started: AtomicU64::new(0),
    upload_bytes: AtomicU64::new(0),
    download_bytes: AtomicU64::new(0),
    transfers_refused: AtomicU64::new(0),
    media_expired: AtomicU64::new(0),
    subscribers: AtomicI64::new(0),
    messages: AtomicU64::new(0),
    deliveries: AtomicU64::new(0),
    subscribers_cut_off: AtomicU64::new(0),
};

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let gauges = [
            (
                "courier_transfers_in_flight",
                "Uploads and downloads running now.",
                &self.transfers_in_flight,
            ),
            (
                "courier_subscribers",
                "Subscribe streams open now.",
                &self.subscribers,
            ),
        ];
        let counters = [
            (
                "courier_uploads_completed_total",
                "Uploads stored.",
                &self.uploads_completed,
            ),
            (
                "courier_uploads_failed_total",
                "Uploads refused, failed or cancelled.",
                &self.uploads_failed,
            ),
            (
                "courier_downloads_started_total",
                "Downloads started.",
                &self.downloads_started,
            ),
            (
                "courier_upload_bytes_total",
                "Bytes received by uploads.",
                &self.upload_bytes,
            ),
            (
                "courier_download_bytes_total",
                "Bytes sent by downloads.",
                &self.download_bytes,
            ),
            (
                "courier_transfers_refused_total",
                "Transfers refused for too many in flight.",
                &self.transfers_refused,
            ),
            (
                "courier_media_expired_total",
                "Expired media deleted by the sweeper.",
                &self.media_expired,
            ),
            (
                "courier_messages_total",
                "Messages accepted.",
                &self.messages,
            ),
            (
                "courier_deliveries_total",
                "Events queued onto Subscribe streams.",
                &self.deliveries,
            ),
            (
                "courier_subscribers_cut_off_total",
                "Subscribe streams cut off as too slow.",
                &self.subscribers_cut_off,
            ),
        ];
        let mut out = String::new();
        for (name, help, gauge) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", gauge.load(Ordering::Relaxed));
        }
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream)).await;
        });
    }
}

/// Reads one HTTP request head (at most 8 KiB) and answers it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let (status, body) = if line.starts_with("GET /metrics ") || line.starts_with("GET / ") {
        ("200 OK", METRICS.render())
    } else {
        (
            "404 Not Found",
            "only GET /metrics is served here\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
