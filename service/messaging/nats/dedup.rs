//! Sends with a client message ID on the bus: the ID is claimed in [`DEDUP`] first
//! (`courier.dedup.<sender>.<client message ID>`, expecting no record), the first
//! answer recorded on the claim, and a retry through any replica gets that answer
//! (after waiting, bounded, while the first send is still in progress elsewhere).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    context::PublishErrorKind, message::PublishMessage as Publish, stream::DirectGetErrorKind,
};
use bytes::Bytes;
use prost::Message as _;

use super::NatsStore;
use crate::{
    bus::{DEDUP, token, unavailable},
    error::Error,
    messaging::event::{Dedup, Sent, reused},
    pb,
};

/// The header of a dedup record holding the request's fingerprint (hex).
const FINGERPRINT: &str = "Courier-Fingerprint";
/// How long a retry waits for the answer of a first send still in progress.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// What claiming a client message ID found.
enum Claim {
    /// The ID is this send's; the claim's stream sequence.
    Mine(u64),
    /// An earlier send with the ID got this answer.
    Answered(Sent),
}

/// `courier.dedup.<sender>.<client message ID>`.
fn dedup_subject(sender: &str, id: &str) -> String {
    format!("courier.dedup.{}.{}", token(sender), token(id))
}

impl NatsStore {
    /// Claims `sender`'s `dedup` ID, or returns the first answer given for it (after
    /// waiting, bounded, while the first send is still in progress elsewhere).
    async fn claim(&self, sender: &str, dedup: &Dedup) -> Result<Claim, Error> {
        let subject = dedup_subject(sender, &dedup.client_message_id);
        let fingerprint = hex::encode(dedup.fingerprint);
        let stream = self.bus.stream(DEDUP).await?;
        let deadline = Instant::now() + ANSWER_WAIT;
        loop {
            let publish = Publish::build()
                .header(FINGERPRINT, fingerprint.as_str())
                .expected_last_subject_sequence(0);
            let claimed = match self.bus.js.send_publish(subject.clone(), publish).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(ack) => return Ok(Claim::Mine(ack.sequence)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => return Err(unavailable("recording a client message ID", e)),
            }
            match stream.direct_get_last_for_subject(subject.clone()).await {
                Ok(record) => {
                    let theirs = record
                        .headers
                        .get(FINGERPRINT)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    if theirs != fingerprint {
                        return Err(reused(&dedup.client_message_id));
                    }
                    if !record.payload.is_empty() {
                        let answer = pb::SendPeerMessageResponse::decode(record.payload)
                            .map_err(|e| Error::Internal(format!("a dedup record: {e}")))?;
                        return Ok(Claim::Answered(Sent::from_response(answer)));
                    }
                }
                // Gone in between (expired, or released by a failed first send).
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(unavailable("reading a client message ID", e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the first send with this client_message_id is still in progress; retry shortly"
                        .into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Records the answer of a claimed send, or releases the claim when it failed (a
    /// retry then sends afresh).
    async fn settle(&self, sender: &str, dedup: &Dedup, claim: u64, result: &Result<Sent, Error>) {
        let subject = dedup_subject(sender, &dedup.client_message_id);
        match result {
            Ok(sent) => {
                let answer = sent.response();
                let publish = Publish::build()
                    .payload(Bytes::from(answer.encode_to_vec()))
                    .header(FINGERPRINT, hex::encode(dedup.fingerprint).as_str())
                    .expected_last_subject_sequence(claim);
                let recorded = match self.bus.js.send_publish(subject, publish).await {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = recorded {
                    tracing::warn!(error = %e, "bus: recording the answer of a send");
                }
            }
            Err(_) => {
                let released = match self.bus.stream(DEDUP).await {
                    Ok(stream) => stream
                        .purge()
                        .filter(subject)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = released {
                    tracing::warn!(error = %e, "bus: releasing a client message ID");
                }
            }
        }
    }

    /// Runs `send` once per `dedup` ID: a retry gets the first answer.
    pub(super) async fn once<F>(
        &self,
        sender: &str,
        dedup: Option<Dedup>,
        send: F,
    ) -> Result<Sent, Error>
    where
        F: Future<Output = Result<Sent, Error>> + Send,
    {
        self.bus.ensure_connected()?;
        let Some(dedup) = dedup else {
            return send.await;
        };
        let claim = match self.claim(sender, &dedup).await? {
            Claim::Answered(first) => return Ok(first),
            Claim::Mine(claim) => claim,
        };
        let result = send.await;
        self.settle(sender, &dedup, claim, &result).await;
        result
    }
}
