//! What the commands print: a short line for people, or one JSON object per line.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use courier_client::{
    Delivery, Error, Event, Media, MediaKind, Message, MessageSource, OnlineStatus, SendReceipt,
};
use serde_json::{Value, json};

/// Prints results as text or JSON lines.
pub struct Output {
    /// One JSON object per line instead of text.
    json: bool,
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn media_json(media: &Media) -> Value {
    json!({
        "media_id": media.media_id,
        "kind": match media.kind { MediaKind::Image => "image", MediaKind::File => "file" },
        "file_name": media.file_name,
        "size": media.size,
        "sha256": media.sha256_hex(),
        "content_type": media.content_type,
        "width": media.width,
        "height": media.height,
        "created_ms": millis(media.created),
        "expires_ms": millis(media.expires),
    })
}

fn message_json(message: &Message) -> Value {
    match message {
        Message::Text(text) => json!({"type": "text", "text": text}),
        Message::Raw {
            payload,
            description,
        } => {
            json!({"type": "raw", "payload_hex": hex::encode(payload), "description": description})
        }
        Message::Image(i) => json!({
            "type": "image", "media_id": i.media_id, "file_name": i.file_name, "size": i.size,
            "width": i.width, "height": i.height, "thumbnail_bytes": i.thumbnail.len(),
        }),
        Message::File(f) => json!({
            "type": "file", "media_id": f.media_id, "file_name": f.file_name, "size": f.size,
            "width": 0, "height": 0, "thumbnail_bytes": f.thumbnail.len(),
        }),
    }
}

fn message_text(message: &Message) -> String {
    match message {
        Message::Text(text) => text.clone(),
        Message::Raw { payload, .. } => format!("[raw, {} bytes]", payload.len()),
        Message::Image(i) => format!(
            "[image {} {}x{}, {} bytes, media {}]",
            i.file_name, i.width, i.height, i.size, i.media_id
        ),
        Message::File(f) => format!(
            "[file {}, {} bytes, media {}]",
            f.file_name, f.size, f.media_id
        ),
    }
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn line(&self, value: Value, text: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    pub fn media(&self, media: &Media) {
        let text = format!(
            "{} {} ({} bytes, {}{}) sha256 {}",
            media.media_id,
            media.file_name,
            media.size,
            media.content_type,
            if media.width > 0 {
                format!(", {}x{}", media.width, media.height)
            } else {
                String::new()
            },
            media.sha256_hex()
        );
        self.line(media_json(media), text);
    }

    /// A resumable upload's media record, with how many bytes the server already
    /// held when this run started.
    pub fn resumed(&self, media: &Media, resumed_from: u64) {
        let mut value = media_json(media);
        value["resumed_from"] = json!(resumed_from);
        let text = format!(
            "{} {} ({} bytes, resumed from byte {resumed_from}) sha256 {}",
            media.media_id,
            media.file_name,
            media.size,
            media.sha256_hex()
        );
        self.line(value, text);
    }

    /// A resumable upload stopped on purpose after some parts, not committed.
    pub fn paused(&self, upload_id: &str, committed_size: u64) {
        self.line(
            json!({"event": "paused", "upload_id": upload_id, "committed_size": committed_size}),
            format!("paused upload {upload_id} at byte {committed_size}; run again with --resume to finish"),
        );
    }

    pub fn sent(&self, receipt: &SendReceipt) {
        let state = match receipt.delivery {
            Delivery::Delivered => "delivered",
            Delivery::Cached => "cached",
        };
        let value = json!({"message_id": receipt.message_id, "state": state, "server_time_ms": millis(receipt.server_time)});
        self.line(value, format!("{state} (message {})", receipt.message_id));
    }

    pub fn done(&self, what: &str, channel: &str) {
        self.line(
            json!({"channel": channel, "result": what}),
            format!("{what} {channel}"),
        );
    }

    pub fn deleted(&self, media_id: &str) {
        self.line(
            json!({"media_id": media_id, "deleted": true}),
            format!("deleted {media_id}"),
        );
    }

    pub fn members(&self, channel: &str, members: &[String]) {
        self.line(
            json!({"channel": channel, "members": members}),
            members.join("\n"),
        );
    }

    pub fn online(&self, statuses: &[OnlineStatus]) {
        for status in statuses {
            let value = json!({"user_id": status.user_id, "online": status.online});
            let text = format!(
                "{} {}",
                status.user_id,
                if status.online { "online" } else { "offline" }
            );
            self.line(value, text);
        }
    }

    pub fn event(&self, event: &Event) {
        match event {
            Event::Message(m) => {
                let channel = match &m.source {
                    MessageSource::Peer => None,
                    MessageSource::Channel(channel) => Some(channel.clone()),
                };
                let value = json!({
                    "event": "message", "from": m.from, "channel": channel, "message_id": m.message_id,
                    "server_time_ms": millis(m.server_time), "offline": m.offline, "message": message_json(&m.message),
                    "cursor": m.cursor,
                });
                let place = channel.map(|c| format!(" in {c}")).unwrap_or_default();
                let offline = if m.offline {
                    " (sent while you were offline)"
                } else {
                    ""
                };
                self.line(
                    value,
                    format!("{}{place}: {}{offline}", m.from, message_text(&m.message)),
                );
            }
            Event::Ready {
                offline_count,
                cursor,
                events_lost,
            } => {
                let value = json!({
                    "event": "ready", "offline_count": offline_count, "cursor": cursor,
                    "events_lost": events_lost,
                });
                let lost = if *events_lost {
                    "; some earlier messages are no longer held and were missed"
                } else {
                    ""
                };
                self.line(
                    value,
                    format!(
                        "listening ({offline_count} offline messages delivered, cursor {cursor}{lost})"
                    ),
                );
            }
            Event::Disconnected { reason } => {
                let value = json!({"event": "disconnected", "reason": reason});
                self.line(value, format!("disconnected ({reason}); reconnecting"));
            }
        }
    }

    /// The thumbnail of image `media_id`, saved at `path`.
    pub fn thumbnail(&self, media_id: &str, thumb: &courier_client::Thumbnail, path: &Path) {
        let value = json!({
            "event": "thumbnail",
            "media_id": media_id,
            "content_type": thumb.content_type,
            "width": thumb.width,
            "height": thumb.height,
            "size": thumb.data.len(),
            "path": path.display().to_string(),
        });
        self.line(
            value,
            format!(
                "thumbnail of {media_id}: {}x{} {} saved to {}",
                thumb.width,
                thumb.height,
                thumb.content_type,
                path.display()
            ),
        );
    }

    /// A signed HTTP link: the URL alone in text mode, so that `curl "$(courier url ID)"`
    /// works.
    pub fn url(&self, url: &courier_client::MediaUrl) {
        let expire_time = humantime::format_rfc3339_seconds(url.expires).to_string();
        let value = json!({"url": url.url, "expire_time": expire_time});
        self.line(value, url.url.clone());
    }

    /// A file saved at `path`; `sha256` is the digest of the bytes on disk.
    pub fn saved(&self, media: &Media, path: &Path, sha256: &str) {
        let mut value = media_json(media);
        value["event"] = json!("saved");
        value["path"] = json!(path.display().to_string());
        value["sha256"] = json!(sha256);
        self.line(
            value,
            format!("saved {} to {}", media.file_name, path.display()),
        );
    }
}

impl Output {
    /// A peer message that was neither delivered nor kept: with `--json`, its line on
    /// stdout (the exit status says it failed).
    pub fn unreachable(&self, message_id: &str) {
        if self.json {
            println!(
                "{}",
                json!({"message_id": message_id, "state": "unreachable"})
            );
        }
    }

    /// A failed command: with `--json`, `{"error": {"code", "reason", "message"}}` on
    /// stdout, `code` being the gRPC status name and `reason` the ErrorInfo reason ("" for
    /// none). The human-readable line goes to stderr either way.
    pub fn error(&self, error: &Error) {
        if self.json {
            let reason = error.reason().map(|r| r.as_str_name()).unwrap_or_default();
            let value = json!({"error": {
                "code": code_name(error.code()),
                "reason": reason,
                "message": error.to_string(),
            }});
            println!("{value}");
        }
    }
}

/// The canonical name of a gRPC status code, as in `grpc-status` documentation.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
