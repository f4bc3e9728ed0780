//! Scenario 15 of `tests/scenarios.md` through the Rust client: given three replicas'
//! addresses it spreads its calls over all of them, and when the replica holding the
//! live feed is killed the feed moves to another and resumes after its last cursor,
//! while sends are retried elsewhere.

use std::time::Duration;

use courier_client::{Client, Event, Message, SendOptions, Subscription};
use courier_testkit::{Replicas, Server, token};
use futures::StreamExt;

/// Every gRPC call a server answered, all methods and codes together.
async fn calls(server: &Server) -> f64 {
    server
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with("courier_grpc_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn next_text(feed: &mut Subscription) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), feed.next())
            .await
            .expect("a message within 20 s")
            .expect("the feed is open")
            .expect("no error");
        if let Event::Message(message) = event
            && let Message::Text(text) = message.message
        {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas() {
    let Some(mut replicas) = Replicas::start(&[]) else {
        assert!(
            std::env::var_os("COURIER_TEST_REQUIRE_NATS").is_none(),
            "no nats-server"
        );
        return;
    };
    let urls = replicas.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let alice = Client::connect_any(&urls, &token("alice"))
        .await
        .expect("connects");
    let bob = Client::connect_any(&urls, &token("bob"))
        .await
        .expect("connects");
    let before = [
        calls(replicas.r(1)).await,
        calls(replicas.r(2)).await,
        calls(replicas.r(3)).await,
    ];
    for _ in 0..30 {
        alice.query_online_status(&["bob"]).await.expect("presence");
    }
    for (n, was) in before.iter().enumerate() {
        assert!(
            calls(replicas.r(n + 1)).await > *was,
            "replica {} got none of 30 calls",
            n + 1
        );
    }
    let mut feed = bob.subscribe();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("ready")
            .expect("open")
            .expect("no error");
        if matches!(event, Event::Ready { .. }) {
            break;
        }
    }
    for i in 0..5 {
        alice
            .send_peer_message(
                "bob",
                Message::text(format!("m{i}")),
                SendOptions::default(),
            )
            .await
            .expect("sends");
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next_text(&mut feed).await);
    }
    // Kill the replica holding bob's stream.
    let mut holder = 0;
    for n in 1..=3 {
        if replicas.r(n).metric("courier_subscribers").await > 0 {
            holder = n;
        }
    }
    assert!(holder > 0, "some replica holds bob's stream");
    replicas.r_mut(holder).kill();
    for i in 5..10 {
        alice
            .send_peer_message(
                "bob",
                Message::text(format!("m{i}")),
                SendOptions { offline: true },
            )
            .await
            .expect("sends through another replica");
    }
    for _ in 5..10 {
        got.push(next_text(&mut feed).await);
    }
    let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(
        got, expected,
        "every message once, in order, across the move"
    );
    // Transfers still work.
    let media = alice
        .upload_file_bytes("after.bin", vec![7u8; 10_000])
        .expect("starts")
        .await
        .expect("uploads");
    let downloaded = bob
        .download_to_memory(&media.media_id)
        .expect("starts")
        .await
        .expect("downloads");
    assert_eq!(downloaded.bytes.len(), 10_000);
}
