//! Exactly-once drills (issue 18), with the Rust client, on one server and on three
//! replicas sharing NATS JetStream: a subscriber whose connection is cut while 1,000
//! messages are sent at full rate reconnects by itself (across replicas: to another
//! replica) and has every message once, in order per sender; a sender whose answers
//! are cut retries, and no message arrives twice. Toxiproxy puts faults on the wire;
//! the drills are skipped without it unless COURIER_TEST_REQUIRE_TOXIPROXY is set (and
//! the replicated ones without a nats-server unless COURIER_TEST_REQUIRE_NATS is).

#[macro_use]
mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{Backend, Nats, Server, Toxiproxy, token};
use courier_client::{Client, Event, Message, SendOptions};
use futures::StreamExt;
use serde_json::json;

/// The next event of `feed` within 30 s.
async fn next(feed: &mut courier_client::Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(30), feed.next())
        .await
        .expect("an event within 30 s")
        .expect("the feed stays open")
        .expect("no fatal error")
}

fn text_of(message: &Message) -> String {
    match message {
        Message::Text(text) => text.clone(),
        other => panic!("not a text: {other:?}"),
    }
}

/// Room for the whole run: no rate limit in the way, and an offline cache and log
/// that hold every message (past the cache's cap the oldest would be dropped, and
/// rightly reported lost).
const LIMITS: [&str; 6] = [
    "--rate-limit",
    "100000",
    "--offline-cache-size",
    "2000",
    "--event-log-size",
    "2000",
];

/// The servers of a drill: one, or three replicas sharing a nats-server.
struct Servers {
    servers: Vec<Server>,
    _nats: Option<Nats>,
    _media: Option<tempfile::TempDir>,
}

impl Servers {
    fn one() -> Self {
        Self {
            servers: vec![Server::start(&Backend::Local, &LIMITS)],
            _nats: None,
            _media: None,
        }
    }

    /// Three replicas, or `None` without a nats-server.
    fn replicas() -> Option<Self> {
        let nats = Nats::start()?;
        let media = tempfile::tempdir().expect("a shared media folder");
        let backend = Backend::shared(media.path());
        let url = nats.url();
        let mut args = vec!["--bus", url.as_str()];
        args.extend(LIMITS);
        let servers = (0..3).map(|_| Server::start(&backend, &args)).collect();
        Some(Self {
            servers,
            _nats: Some(nats),
            _media: Some(media),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_subscriber_gets_every_message_once_in_order() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    cut_subscriber(&toxiproxy, &Servers::one().servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_a_cut_subscriber_gets_every_message_once_in_order() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let Some(cluster) = Servers::replicas() else {
        return;
    };
    cut_subscriber(&toxiproxy, &cluster.servers).await;
}

/// The subscriber drill: the subscriber goes through a proxy to the first server,
/// the senders each to one of `servers`; each cut moves the proxy to the next server.
async fn cut_subscriber(toxiproxy: &Toxiproxy, servers: &[Server]) {
    let proxy = toxiproxy.proxy("exactly-once-sub", &servers[0].addr.to_string());
    let bob = Client::connect(&proxy.url(), &token("bob"))
        .await
        .expect("connects through the proxy");
    let mut feed = bob.subscribe();
    assert!(matches!(next(&mut feed).await, Event::Ready { .. }));

    const SENDERS: usize = 4;
    const EACH: usize = 250;
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let client = Client::connect(
            &servers[s % servers.len()].url(),
            &token(&format!("sender{s}")),
        )
        .await
        .expect("connects");
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                client
                    .send_peer_message(
                        "bob",
                        Message::text(format!("{s}:{i}")),
                        SendOptions::offline(),
                    )
                    .await
                    .expect("sends");
            }
        }));
    }
    let mut got: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ids = HashSet::new();
    let mut cursors = Vec::new();
    let mut disconnects = 0;
    let mut received = 0;
    let mut cuts = 0;
    for _ in 0..(SENDERS * EACH * 2 + 100) {
        if received == SENDERS * EACH {
            break;
        }
        // Cut the subscriber's connection twice mid-run: once by disabling the proxy
        // (every connection closed), once by a TCP reset.
        if (received == 200 && cuts == 0) || (received == 600 && cuts == 1) {
            cuts += 1;
            let next_server = servers[cuts % servers.len()].addr.to_string();
            if cuts == 1 {
                proxy.set_enabled(false);
                proxy.set_upstream(&next_server);
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.set_enabled(true);
            } else {
                proxy.set_upstream(&next_server);
                proxy.add_toxic("reset", "reset_peer", "downstream", json!({ "timeout": 0 }));
                tokio::time::sleep(Duration::from_millis(300)).await;
                proxy.remove_toxic("reset");
            }
        }
        match next(&mut feed).await {
            Event::Message(m) => {
                let text = text_of(&m.message);
                let (s, i) = text.split_once(':').expect("s:i");
                got.entry(s.parse().expect("s"))
                    .or_default()
                    .push(i.parse().expect("i"));
                assert!(ids.insert(m.message_id.clone()), "{text} arrived twice");
                cursors.push(m.cursor);
                received += 1;
            }
            Event::Disconnected { .. } => disconnects += 1,
            Event::Ready { events_lost, .. } => assert!(!events_lost, "at {received}"),
        }
    }
    for sender in senders {
        sender.await.expect("a sender finishes");
    }
    assert_eq!(cuts, 2);
    assert!(
        disconnects >= 2,
        "the cuts reached the client: {disconnects}"
    );
    for s in 0..SENDERS {
        assert_eq!(
            got.get(&s).cloned().unwrap_or_default(),
            (0..EACH).collect::<Vec<_>>(),
            "sender {s}: every message once, in order"
        );
    }
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors increase");
    assert_eq!(feed.cursor(), *cursors.last().expect("some"));
    eprintln!(
        "drill subscriber cut ({} server(s)): {received} messages from {SENDERS} senders, \
         {disconnects} disconnects, every one once and in order; last cursor {}",
        servers.len(),
        feed.cursor()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_answers_are_cut_retries_and_nothing_arrives_twice() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    cut_sender(&toxiproxy, &Servers::one().servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_a_sender_whose_answers_are_cut_retries_and_nothing_arrives_twice() {
    let Some(toxiproxy) = Toxiproxy::from_env() else {
        return;
    };
    let Some(cluster) = Servers::replicas() else {
        return;
    };
    cut_sender(&toxiproxy, &cluster.servers).await;
}

/// The sender drill: the sender goes through a proxy to the first server, the
/// receiver is on the last.
async fn cut_sender(toxiproxy: &Toxiproxy, servers: &[Server]) {
    let server = &servers[0];
    let proxy = toxiproxy.proxy("exactly-once-send", &server.addr.to_string());
    let bob = Client::connect(&servers[servers.len() - 1].url(), &token("bob"))
        .await
        .expect("connects");
    let mut feed = bob.subscribe();
    assert!(matches!(next(&mut feed).await, Event::Ready { .. }));
    let alice = Client::connect(&proxy.url(), &token("alice"))
        .await
        .expect("connects through the proxy");
    const TOTAL: usize = 300;
    let sender = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for i in 0..TOTAL {
            let receipt = alice
                .send_peer_message("bob", Message::text(i.to_string()), SendOptions::offline())
                .await
                .expect("sends, retrying by itself");
            receipts.push(receipt.message_id);
        }
        receipts
    });
    let mut texts = Vec::new();
    let mut ids = Vec::new();
    let mut cut = false;
    for _ in 0..TOTAL * 2 {
        if texts.len() == TOTAL {
            break;
        }
        if texts.len() == 100 && !cut {
            cut = true;
            // Requests still reach the server; its answers are held and the
            // connection closed after 400 ms, for a second.
            proxy.add_toxic(
                "no-answers",
                "timeout",
                "downstream",
                json!({ "timeout": 400 }),
            );
            tokio::time::sleep(Duration::from_millis(1000)).await;
            proxy.remove_toxic("no-answers");
        }
        match next(&mut feed).await {
            Event::Message(m) => {
                texts.push(text_of(&m.message));
                ids.push(m.message_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let receipts = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the sender finishes")
        .expect("the sender finishes");
    // Drain whatever else came (there must be nothing).
    let extra = tokio::time::timeout(Duration::from_millis(500), feed.next()).await;
    if let Ok(Some(Ok(Event::Message(m)))) = extra {
        panic!("a message arrived twice or late: {:?}", text_of(&m.message));
    }
    let expected: Vec<String> = (0..TOTAL).map(|i| i.to_string()).collect();
    assert_eq!(texts.len(), TOTAL);
    assert_eq!(texts, expected, "every message once, in order");
    assert_eq!(ids, receipts, "the answers name the delivered messages");
    let accepted = server.metric("courier_messages_total").await;
    assert!(
        accepted > TOTAL as i64,
        "some sends were retried after their answer was lost: {accepted} accepted"
    );
    eprintln!(
        "drill sender cut ({} server(s)): {TOTAL} messages, {accepted} sends reached the server ({} retries), each delivered once",
        servers.len(),
        accepted - TOTAL as i64
    );
}
