//! The event webhook (`--event-hook URL`): a signed POST to the operator's backend
//! for each message event subscribed to (by default a peer message cached for an
//! offline receiver, so that the backend can send a push notification).
//!
//! The poster runs in its own task, behind the log's writer: it reads the events
//! after its own durable cursor from the store ([`EventSource`]: an outbox table on
//! one server, a durable JetStream consumer shared by the replicas), posts each in
//! order (retrying with backoff, [`retry`]), and moves the cursor past it once it was
//! delivered or refused for good. Sends never wait for it; a backend that is down
//! loses nothing the log still keeps. Delivery is at least once: receivers dedup by
//! `webhook-id` (`evt_<position>`, the same on every attempt and after a restart).

mod body;
mod retry;

use std::{path::PathBuf, time::Duration};

use clap::Args;
use tokio::{sync::watch, task::JoinHandle};

pub use body::{render, webhook_id};
pub use retry::{Backoff, Outcome};

use super::{Hook, Signer};
use crate::{
    bus::Bus,
    error::Error,
    messaging::{
        NatsEvents, RedbStore,
        outbox::{EventSource, HookEvents},
    },
    metrics,
};

/// The most events read from the store at once.
const BATCH: usize = 256;
/// How long the poster waits for new events before looking again.
const IDLE: Duration = Duration::from_secs(1);

/// The flags of the event webhook.
#[derive(Debug, Clone, Args)]
pub struct EventHookArgs {
    /// POST a signed JSON event (Standard Webhooks) to this URL for each message
    /// event subscribed to (--event-hook-events). Default: none.
    #[arg(long = "event-hook", env = "COURIER_EVENT_HOOK")]
    pub url: Option<String>,

    /// The event hook's signing secret, `whsec_<base64>`; two (comma-separated or
    /// the flag twice) while rotating.
    #[arg(
        long = "event-hook-secret",
        env = "COURIER_EVENT_HOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub secrets: Vec<String>,

    /// Which events are posted: `cached` (peer messages cached for an offline
    /// receiver) or `all` (every peer and channel message).
    #[arg(
        long = "event-hook-events",
        env = "COURIER_EVENT_HOOK_EVENTS",
        value_enum,
        default_value = "cached"
    )]
    pub events: HookEvents,

    /// Include the message's contents (text, raw payload, file name, thumbnail) in
    /// each event; by default only its metadata is sent.
    #[arg(long = "event-hook-contents", env = "COURIER_EVENT_HOOK_CONTENTS")]
    pub contents: bool,

    /// How long one POST may take.
    #[arg(long = "event-hook-timeout", env = "COURIER_EVENT_HOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// The delay before the first retry of a failed POST; it doubles (with jitter)
    /// up to --event-hook-retry-max.
    #[arg(long = "event-hook-retry-min", env = "COURIER_EVENT_HOOK_RETRY_MIN", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_min: Duration,

    /// The longest delay between retries.
    #[arg(long = "event-hook-retry-max", env = "COURIER_EVENT_HOOK_RETRY_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,

    /// A PEM CA certificate to trust for the event hook, beside the system's.
    #[arg(long = "event-hook-ca-file", env = "COURIER_EVENT_HOOK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Starts posting events as `args` say (nothing without `--event-hook`): from the
/// outbox of `local`, or from the consumer on `bus`. The task ends after `stop`.
pub async fn start(
    args: &EventHookArgs,
    local: Option<&RedbStore>,
    bus: Option<&Bus>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, Error> {
    let Some(poster) = args.poster()? else {
        return Ok(None);
    };
    let task = match (local, bus) {
        (Some(store), _) => poster.spawn(store.hook_events()?, stop),
        (None, Some(bus)) => {
            let source = NatsEvents::open(bus.clone(), args.events, args.timeout).await?;
            poster.spawn(source, stop)
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(task))
}

/// What posts events: the hook, and how.
#[derive(Debug, Clone)]
pub struct Poster {
    /// The backend.
    hook: Hook,
    /// Whether events carry the message's contents.
    contents: bool,
    /// The delays between attempts.
    backoff: Backoff,
}

impl EventHookArgs {
    /// The poster these flags configure; `None` without `--event-hook`.
    pub fn poster(&self) -> Result<Option<Poster>, Error> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let signer = Signer::new(&self.secrets)
            .map_err(|e| Error::invalid(format!("--event-hook-secret: {e}")))?;
        let hook = Hook::new(url, signer, self.timeout, self.ca_file.as_deref())
            .map_err(|e| Error::invalid(format!("--event-hook: {e}")))?;
        Ok(Some(Poster {
            hook,
            contents: self.contents,
            backoff: Backoff {
                first: self.retry_min,
                most: self.retry_max.max(self.retry_min),
            },
        }))
    }

    /// The events the store records: `None` without a hook.
    pub fn recorded(&self) -> Option<HookEvents> {
        self.url.as_ref().map(|_| self.events)
    }
}

impl Poster {
    /// Posts `source`'s events until `stop` turns true, then saves the cursor.
    pub fn spawn<S: EventSource>(self, source: S, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        for result in ["delivered", "retried", "failed", "expired"] {
            metrics::event_hook_post_init(result);
        }
        metrics::set_event_hook_lag(0.0);
        tracing::info!(url = %self.hook.url(), "event hook: posting events");
        tokio::spawn(self.run(source, stop))
    }

    async fn run<S: EventSource>(self, mut source: S, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let batch = tokio::select! {
                batch = source.next(BATCH, IDLE) => batch,
                _ = stop.wait_for(|s| *s) => break,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "event hook: reading events failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(IDLE) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                metrics::set_event_hook_lag(0.0);
            }
            let mut batch = batch.into_iter();
            while let Some((event, held)) = batch.next() {
                let lag = crate::media::now_millis().saturating_sub(event.written_ms);
                metrics::set_event_hook_lag(lag as f64 / 1000.0);
                let id = webhook_id(&event);
                let body = render(&event, self.contents);
                let held_ms = event.written_ms;
                let outcome = {
                    let held = &held;
                    retry::deliver(
                        || self.hook.post(&id, body.clone()),
                        self.backoff,
                        &mut stop,
                        || {
                            let lag = crate::media::now_millis().saturating_sub(held_ms);
                            metrics::set_event_hook_lag(lag as f64 / 1000.0);
                            S::working(held)
                        },
                    )
                    .await
                };
                match outcome {
                    Outcome::Delivered(_) => metrics::event_hook_post("delivered"),
                    Outcome::Failed(status) => {
                        metrics::event_hook_post("failed");
                        tracing::error!(%id, status, "event hook: the hook refused an event for good; skipped");
                    }
                    Outcome::Stopped => {
                        // Handed back at once, for another replica to take.
                        S::release(held).await;
                        for (_, held) in batch.by_ref() {
                            S::release(held).await;
                        }
                        break;
                    }
                }
                if let Err(error) = source.settle(held).await {
                    tracing::warn!(%error, "event hook: settling an event failed");
                }
            }
            if let Err(error) = source.flush(false).await {
                tracing::warn!(%error, "event hook: saving the cursor failed");
            }
        }
        if let Err(error) = source.flush(true).await {
            tracing::warn!(%error, "event hook: saving the cursor at shutdown failed");
        }
    }
}
