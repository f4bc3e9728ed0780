//! The JSON an event webhook is posted: `{"type", "id", "timestamp", "data"}`, the
//! message's metadata in `data`, and its contents (text, raw payload, file name and
//! size, thumbnail) only when the operator asked for them (`--event-hook-contents`).

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Map, Value, json};

use crate::{
    messaging::outbox::{HookEvent, HookKind},
    pb::{message::Body, subscribe_response::Event as Kind},
};

/// The idempotency key of an event: the same for every attempt, before and after a
/// restart (its position in the log).
pub fn webhook_id(event: &HookEvent) -> String {
    format!("evt_{}", event.sequence)
}

/// The `type` of an event.
pub fn event_type(kind: HookKind) -> &'static str {
    match kind {
        HookKind::Cached => "message.cached",
        HookKind::Delivered => "message.delivered",
        HookKind::Channel => "channel.message",
    }
}

/// The body posted for `event`; with `contents`, the message's contents too.
pub fn render(event: &HookEvent, contents: bool) -> Vec<u8> {
    let mut data = Map::new();
    data.insert("sequence".into(), json!(event.sequence));
    let (time, body) = match &event.event.event {
        Some(Kind::PeerMessage(m)) => {
            data.insert("message_id".into(), json!(m.message_id));
            data.insert("sender_id".into(), json!(m.sender_id));
            data.insert("recipient_id".into(), json!(event.recipient));
            (
                m.server_time,
                m.message.as_ref().and_then(|m| m.body.as_ref()),
            )
        }
        Some(Kind::ChannelMessage(m)) => {
            data.insert("message_id".into(), json!(m.message_id));
            data.insert("sender_id".into(), json!(m.sender_id));
            data.insert("channel_id".into(), json!(m.channel_id));
            (
                m.server_time,
                m.message.as_ref().and_then(|m| m.body.as_ref()),
            )
        }
        _ => (None, None),
    };
    let time = time.map(|t| t.to_string()).unwrap_or_default();
    data.insert("sent_at".into(), json!(time));
    let state = match event.kind {
        HookKind::Cached => "cached",
        HookKind::Delivered => "delivered",
        HookKind::Channel => "stored",
    };
    data.insert("state".into(), json!(state));
    if let Some(body) = body {
        describe(body, contents, &mut data);
    }
    let value = json!({
        "type": event_type(event.kind),
        "id": webhook_id(event),
        "timestamp": time,
        "data": Value::Object(data),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The message's kind and media ID, and with `contents` what it holds.
fn describe(body: &Body, contents: bool, data: &mut Map<String, Value>) {
    let kind = match body {
        Body::Text(_) => "text",
        Body::Raw(_) => "raw",
        Body::Image(_) => "image",
        Body::File(_) => "file",
    };
    data.insert("kind".into(), json!(kind));
    match body {
        Body::Image(image) => {
            data.insert("media_id".into(), json!(image.media_id));
        }
        Body::File(file) => {
            data.insert("media_id".into(), json!(file.media_id));
        }
        _ => {}
    }
    if !contents {
        return;
    }
    match body {
        Body::Text(text) => {
            data.insert("text".into(), json!(text.text));
        }
        Body::Raw(raw) => {
            data.insert("payload".into(), json!(STANDARD.encode(&raw.payload)));
            data.insert("description".into(), json!(raw.description));
        }
        Body::Image(image) => {
            data.insert("file_name".into(), json!(image.file_name));
            data.insert("size".into(), json!(image.size));
            data.insert("width".into(), json!(image.width));
            data.insert("height".into(), json!(image.height));
            data.insert("thumbnail".into(), json!(STANDARD.encode(&image.thumbnail)));
        }
        Body::File(file) => {
            data.insert("file_name".into(), json!(file.file_name));
            data.insert("size".into(), json!(file.size));
            data.insert("thumbnail".into(), json!(STANDARD.encode(&file.thumbnail)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn cached_text() -> HookEvent {
        HookEvent {
            sequence: 42,
            kind: HookKind::Cached,
            recipient: "bob".into(),
            event: pb::SubscribeResponse {
                cursor: 0,
                event: Some(Kind::PeerMessage(pb::PeerMessageReceived {
                    sender_id: "alice".into(),
                    message_id: "m1".into(),
                    server_time: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    offline: true,
                    message: Some(pb::Message {
                        body: Some(Body::Text(pb::TextMessage {
                            text: "secret words".into(),
                        })),
                    }),
                })),
            },
            written_ms: 0,
        }
    }

    #[test]
    fn metadata_only_by_default() {
        let body = render(&cached_text(), false);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["type"], "message.cached");
        assert_eq!(value["id"], "evt_42");
        assert_eq!(value["timestamp"], "2023-11-14T22:13:20Z");
        let data = &value["data"];
        assert_eq!(data["sender_id"], "alice");
        assert_eq!(data["recipient_id"], "bob");
        assert_eq!(data["kind"], "text");
        assert_eq!(data["state"], "cached");
        assert!(data.get("text").is_none());
        assert!(!String::from_utf8_lossy(&body).contains("secret words"));
    }

    #[test]
    fn contents_when_asked() {
        let value: Value = serde_json::from_slice(&render(&cached_text(), true)).unwrap();
        assert_eq!(value["data"]["text"], "secret words");
    }
}
