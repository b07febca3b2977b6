//! The dead-letter stream: messages a stage will never process, with the reason why.
//!
//! A dead letter is the original message (headers and payload untouched) published to
//! `dlq.<stage>` in the `DLQ` stream, plus `caller-dlq-*` headers naming the stage, the
//! reason, and where the message came from. Its `Nats-Msg-Id` is derived from the original
//! stream and sequence, so dead-lettering the same delivery twice stores it once.
//!
//! Operators list, inspect, replay and purge them (`caller dlq …`). A replay republishes to
//! the original subject with a **new** event id (the stage's idempotency claim is per event
//! id, so the old id would be skipped) and `caller-replay-of` naming the dead-lettered id.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::StreamMessage};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Bus;
use super::delivery::DeliveryInfo;
use super::envelope::{BusMessage, header as ce};
use super::subjects;
use crate::ids::EventId;

/// Headers added to a dead letter.
pub mod header {
    /// Why the stage gave up.
    pub const REASON: &str = "caller-dlq-reason";
    /// Stage that gave up.
    pub const STAGE: &str = "caller-dlq-stage";
    /// Subject the message was originally published on.
    pub const SUBJECT: &str = "caller-dlq-subject";
    /// Stream it was consumed from.
    pub const STREAM: &str = "caller-dlq-stream";
    /// Its sequence in that stream.
    pub const SEQUENCE: &str = "caller-dlq-sequence";
    /// How many deliveries were made.
    pub const DELIVERIES: &str = "caller-dlq-deliveries";
    /// When it was dead-lettered.
    pub const AT: &str = "caller-dlq-at";
    /// On a replayed message: the event id of the dead letter it replays.
    pub const REPLAY_OF: &str = "caller-replay-of";
}

/// Longest reason stored in a header.
const MAX_REASON_CHARS: usize = 1_000;

/// Builds the dead letter of a delivered message.
pub fn dead_letter_message(
    stage: &str,
    original: &jetstream::Message,
    info: Option<&DeliveryInfo>,
    reason: &str,
) -> BusMessage {
    let mut headers: Vec<(String, String)> = original
        .headers
        .iter()
        .flat_map(|map| map.iter())
        .filter(|(name, _)| {
            let name: &str = name.as_ref();
            !name.eq_ignore_ascii_case(ce::NATS_MSG_ID) && !name.starts_with("caller-dlq-")
        })
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    let (stream, sequence, deliveries) = info.map_or_else(
        || ("unknown".to_owned(), 0, 0),
        |i| (i.stream.clone(), i.stream_sequence, i.delivered),
    );
    let message_id = match info {
        Some(_) => format!("dlq.{stage}.{stream}.{sequence}"),
        // Without a stream position, derive the id from the content, so two different
        // messages never collapse into one in the duplicate window.
        None => {
            let mut hasher = Sha256::new();
            hasher.update(original.subject.as_bytes());
            for (name, value) in &headers {
                hasher.update(name.as_bytes());
                hasher.update(value.as_bytes());
            }
            hasher.update(&original.payload);
            let digest = hasher.finalize();
            format!("dlq.{stage}.content.{}", crate::hex::encode(&digest[..16]))
        }
    };
    let one_line: String = reason
        .replace(['\r', '\n'], " ")
        .chars()
        .take(MAX_REASON_CHARS)
        .collect();
    headers.extend([
        (ce::NATS_MSG_ID.to_owned(), message_id),
        (header::REASON.to_owned(), one_line),
        (header::STAGE.to_owned(), stage.to_owned()),
        (header::SUBJECT.to_owned(), original.subject.to_string()),
        (header::STREAM.to_owned(), stream),
        (header::SEQUENCE.to_owned(), sequence.to_string()),
        (header::DELIVERIES.to_owned(), deliveries.to_string()),
        (
            header::AT.to_owned(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    ]);
    BusMessage {
        subject: subjects::dead_letter(stage),
        headers,
        payload: original.payload.to_vec(),
    }
}

/// One entry of the dead-letter stream, as operators see it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// Sequence in the `DLQ` stream (the handle for show, replay).
    pub sequence: u64,
    /// Stage that gave up.
    pub stage: String,
    /// Why.
    pub reason: String,
    /// Original subject.
    pub original_subject: String,
    /// Original event id, when the message had one.
    pub event_id: Option<String>,
    /// Original event type, when the message had one.
    pub event_type: Option<String>,
    /// Deliveries made before giving up.
    pub deliveries: String,
    /// When it was stored in the DLQ stream.
    pub stored_at: DateTime<Utc>,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The untouched payload.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.as_str().to_owned())
}

impl DeadLetter {
    fn from_stream_message(message: &StreamMessage) -> Self {
        let headers = &message.headers;
        let stored_at =
            DateTime::from_timestamp(message.time.unix_timestamp(), message.time.nanosecond())
                .unwrap_or_default();
        Self {
            sequence: message.sequence,
            stage: header_value(headers, header::STAGE).unwrap_or_default(),
            reason: header_value(headers, header::REASON).unwrap_or_default(),
            original_subject: header_value(headers, header::SUBJECT).unwrap_or_default(),
            event_id: header_value(headers, ce::ID),
            event_type: header_value(headers, ce::TYPE),
            deliveries: header_value(headers, header::DELIVERIES).unwrap_or_default(),
            stored_at,
            headers: headers
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect(),
            payload: message.payload.to_vec(),
        }
    }

    /// Returns the payload as JSON when it is MessagePack, for display.
    pub fn payload_as_json(&self) -> Option<serde_json::Value> {
        super::codec_json::decode_as_json(&self.payload).ok()
    }

    /// Returns the message a replay publishes: original subject and headers, a new event id.
    pub fn replay_message(&self) -> Result<BusMessage, String> {
        if self.original_subject.is_empty() {
            return Err(format!(
                "dead letter {} has no original subject",
                self.sequence
            ));
        }
        // Deterministic: replaying the same entry twice publishes the same id, deduplicated.
        let new_id = EventId::derived_at(
            u64::try_from(self.stored_at.timestamp_millis()).unwrap_or(0),
            &[
                b"replay",
                subjects::DEAD_LETTER_STREAM.as_bytes(),
                &self.sequence.to_be_bytes(),
            ],
        );
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| {
                !name.starts_with("caller-dlq-")
                    && name != header::REPLAY_OF
                    && name != ce::ID
                    && !name.eq_ignore_ascii_case(ce::NATS_MSG_ID)
            })
            .cloned()
            .collect();
        headers.push((ce::ID.to_owned(), new_id.to_string()));
        headers.push((ce::NATS_MSG_ID.to_owned(), new_id.to_string()));
        let replay_of = self
            .event_id
            .clone()
            .unwrap_or_else(|| format!("dlq-sequence-{}", self.sequence));
        headers.push((header::REPLAY_OF.to_owned(), replay_of));
        Ok(BusMessage {
            subject: self.original_subject.clone(),
            headers,
            payload: self.payload.clone(),
        })
    }
}

async fn dead_letter_stream(bus: &Bus) -> anyhow::Result<jetstream::stream::Stream> {
    bus.jetstream()
        .get_stream(subjects::DEAD_LETTER_STREAM)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "stream `{}` unavailable: {e} (run `caller provision`)",
                subjects::DEAD_LETTER_STREAM
            )
        })
}

/// Lists up to `limit` dead letters, oldest first, of one stage or of all.
pub async fn list(bus: &Bus, stage: Option<&str>, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let stream = dead_letter_stream(bus).await?;
    let filter = stage.map_or_else(subjects::dead_letter_any, subjects::dead_letter);
    let mut next = 1;
    let mut out = Vec::new();
    while out.len() < limit {
        match stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(filter.clone())
            .send()
            .await
        {
            Ok(message) => {
                next = message.sequence + 1;
                out.push(DeadLetter::from_stream_message(&message));
            }
            Err(error) if is_not_found(&error) => break,
            Err(error) => anyhow::bail!("read `{}`: {error}", subjects::DEAD_LETTER_STREAM),
        }
    }
    Ok(out)
}

fn is_not_found(error: &jetstream::stream::RawMessageError) -> bool {
    matches!(
        error.kind(),
        jetstream::stream::LastRawMessageErrorKind::NoMessageFound
    )
}

/// Returns one dead letter by its sequence.
pub async fn get(bus: &Bus, sequence: u64) -> anyhow::Result<DeadLetter> {
    let stream = dead_letter_stream(bus).await?;
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(DeadLetter::from_stream_message(&message)),
        Err(error) if is_not_found(&error) => {
            anyhow::bail!("no dead letter with sequence {sequence}")
        }
        Err(error) => anyhow::bail!("read dead letter {sequence}: {error}"),
    }
}

/// Republishes one dead letter to its original subject, then removes it from the DLQ.
///
/// Returns the replayed message's new event id.
pub async fn replay(bus: &Bus, sequence: u64) -> anyhow::Result<String> {
    let entry = get(bus, sequence).await?;
    let message = entry.replay_message().map_err(anyhow::Error::msg)?;
    bus.publish_all(std::slice::from_ref(&message)).await?;
    // Only after the PubAck: a crash in between leaves the entry, and a second replay
    // publishes the same id, which the duplicate window drops.
    dead_letter_stream(bus)
        .await?
        .delete_message(sequence)
        .await?;
    Ok(message.message_id().unwrap_or_default().to_owned())
}

/// Deletes every dead letter of one stage, or all; returns how many.
pub async fn purge(bus: &Bus, stage: Option<&str>) -> anyhow::Result<u64> {
    let stream = dead_letter_stream(bus).await?;
    let response = match stage {
        Some(stage) => stream.purge().filter(subjects::dead_letter(stage)).await?,
        None => stream.purge().await?,
    };
    Ok(response.purged)
}
