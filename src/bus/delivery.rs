//! A delivery from a durable consumer, with explicit settlement.
//!
//! Every message taken from JetStream is wrapped in a [`Delivery`] that MUST be settled with
//! exactly one of ack, NAK, or TERM. A delivery dropped unsettled (a panic, an early return)
//! NAKs itself so the message is redelivered at once instead of waiting out `ack_wait`.
//! Calling `async_nats::jetstream::Message::ack*` anywhere else is banned by `clippy.toml`.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind};

/// Facts about the delivery, read from the JetStream reply subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// Stream name.
    pub stream: String,
    /// Consumer name.
    pub consumer: String,
    /// Sequence of the message in the stream.
    pub stream_sequence: u64,
    /// How many times this message has been delivered, this one included.
    pub delivered: i64,
    /// Messages still waiting behind this one.
    pub pending: u64,
}

/// A message that must be settled.
#[derive(Debug)]
pub struct Delivery {
    message: Option<jetstream::Message>,
}

/// Settling failed: the server did not get the ack (it will redeliver after `ack_wait`).
#[derive(Debug, thiserror::Error)]
#[error("settle {kind}: {reason}")]
pub struct SettleError {
    kind: &'static str,
    reason: String,
}

#[allow(clippy::disallowed_methods)] // NOTE: the one wrapper allowed to ack JetStream messages.
impl Delivery {
    /// Wraps a message taken from a consumer.
    pub fn new(message: jetstream::Message) -> Self {
        Self {
            message: Some(message),
        }
    }

    /// Returns the underlying message (subject, headers, payload).
    pub fn message(&self) -> &jetstream::Message {
        self.message
            .as_ref()
            .expect("a delivery is readable until it is settled")
    }

    /// Decodes the typed envelope; an error means the message is poison for this consumer.
    pub fn decode<E: crate::events::Event>(
        &self,
    ) -> Result<super::envelope::Envelope<E>, super::envelope::EnvelopeError> {
        let message = self.message();
        super::envelope::Envelope::decode(message.headers.as_ref(), &message.payload)
    }

    /// Returns stream, consumer, sequence and delivery count.
    pub fn info(&self) -> Option<DeliveryInfo> {
        let info = self.message().info().ok()?;
        Some(DeliveryInfo {
            stream: info.stream.to_owned(),
            consumer: info.consumer.to_owned(),
            stream_sequence: info.stream_sequence,
            delivered: info.delivered,
            pending: info.pending,
        })
    }

    /// Acknowledges: the message's effects are durable and it must never come back.
    pub async fn ack(mut self) -> Result<(), SettleError> {
        self.settle(AckKind::Ack, "ack").await
    }

    /// Negatively acknowledges: redeliver after `delay` (at once when `None`).
    pub async fn nak(mut self, delay: Option<Duration>) -> Result<(), SettleError> {
        self.settle(AckKind::Nak(delay), "nak").await
    }

    /// Terminates: the message is never redelivered (it was dead-lettered first).
    pub async fn term(mut self) -> Result<(), SettleError> {
        self.settle(AckKind::Term, "term").await
    }

    /// Tells the server work is still in progress, resetting `ack_wait`.
    pub async fn in_progress(&self) -> Result<(), SettleError> {
        self.message()
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| SettleError {
                kind: "in-progress",
                reason: e.to_string(),
            })
    }

    async fn settle(&mut self, kind: AckKind, name: &'static str) -> Result<(), SettleError> {
        let message = self.message.take().expect("a delivery is settled once");
        message.ack_with(kind).await.map_err(|e| SettleError {
            kind: name,
            reason: e.to_string(),
        })
    }
}

#[allow(clippy::disallowed_methods)] // NOTE: NAK-on-drop is part of the one ack wrapper.
impl Drop for Delivery {
    fn drop(&mut self) {
        let Some(message) = self.message.take() else {
            return;
        };
        // Drop cannot await: hand the NAK to the runtime. Without a runtime (process exiting)
        // the server redelivers after `ack_wait`, which is still correct, only slower.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                    tracing::warn!(%error, "nak of an unsettled delivery failed");
                }
            });
        }
    }
}
