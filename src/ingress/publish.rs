//! Publishing accepted leads: the 202 is only ever sent after the PubAck.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::bus::envelope::{BusMessage, Envelope};
use crate::bus::{Bus, PublishError};
use crate::events::lead::LeadReceived;
use crate::ids::{EventId, TenantId};

/// The answer to an accepted lead.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
    /// The `lead.received` event's id.
    #[schema(value_type = String)]
    pub event_id: EventId,
    /// The lead's dedupe key: another request with the same key within the dedupe horizon
    /// causes no second call.
    pub dedupe_key: String,
    /// True when the stream already held this lead (a retry within its 2-minute window).
    pub duplicate: bool,
}

/// Returns the `Nats-Msg-Id` of a lead: the same delivery (same tenant key and dedupe key)
/// always gets the same one, whenever and however often it is received, so the stream's
/// duplicate window drops retries. Unlike other events it is not the event id: each receipt
/// of a delivery is its own event, and the dedupe stage decides which one passes.
pub fn message_id(lead: &LeadReceived) -> String {
    content_message_id(
        "lead",
        &[
            lead.tenant_key.scope().as_bytes(),
            lead.dedupe_key.as_bytes(),
        ],
    )
}

/// Returns `<prefix>-` and the hex of the first 16 bytes of a SHA-256 over `parts`, each
/// length-prefixed (so `("ab", "c")` and `("a", "bc")` differ): the `Nats-Msg-Id` of a
/// delivery recognized by its content, identical whenever its sender retries it.
pub fn content_message_id(prefix: &str, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    format!("{prefix}-{}", crate::hex::encode(&digest[..16]))
}

/// Encodes a lead for `tenant` (the platform tenant while it is unknown), with its
/// deduplicating message id.
pub fn lead_message(
    tenant: TenantId,
    source: &str,
    lead: LeadReceived,
) -> Result<(EventId, BusMessage), ApiError> {
    let message_id = message_id(&lead);
    let envelope = Envelope::new(tenant, format!("caller/ingress/{source}"), lead);
    let mut message = envelope.to_message().map_err(|error| {
        tracing::error!(%error, "lead does not encode");
        ApiError::Internal
    })?;
    message.set_message_id(&message_id);
    Ok((envelope.meta.event_id, message))
}

/// Publishes one lead and waits for its PubAck; NATS down or slow → 503 with `Retry-After`.
pub async fn publish_lead(
    bus: &Bus,
    tenant: TenantId,
    lead: LeadReceived,
) -> Result<Accepted, ApiError> {
    let source = lead.source.as_str();
    let dedupe_key = lead.dedupe_key.clone();
    let (event_id, message) = lead_message(tenant, source, lead)?;
    let mut published = publish_messages(bus, std::slice::from_ref(&message)).await;
    let duplicate = published.pop().unwrap_or(Err(ApiError::Unavailable))?;
    Ok(Accepted {
        status: "accepted",
        event_id,
        dedupe_key,
        duplicate,
    })
}

/// Publishes messages pipelined; returns, per message, whether the stream dropped it as a
/// duplicate, or 503 when it got no PubAck.
pub async fn publish_messages(bus: &Bus, messages: &[BusMessage]) -> Vec<Result<bool, ApiError>> {
    if !bus.is_connected() {
        return messages
            .iter()
            .map(|_| Err(ApiError::Unavailable))
            .collect();
    }
    let pending = messages.iter().map(|message| async move {
        let ack = bus.send(message).await?;
        ack.await.map_err(|error| PublishError {
            subject: message.subject.clone(),
            reason: error.to_string(),
        })
    });
    futures::future::join_all(pending)
        .await
        .into_iter()
        .map(|result| match result {
            Ok(ack) => Ok(ack.duplicate),
            Err(error) => {
                tracing::warn!(%error, "lead not published");
                Err(ApiError::Unavailable)
            }
        })
        .collect()
}

/// Publishes one event of `tenant` under `message_id` and waits for its PubAck: how the
/// provider callback routes store what a vendor told them before answering 200.
pub async fn publish_event<E: crate::events::Event>(
    bus: &Bus,
    tenant: crate::ids::TenantId,
    source: &str,
    payload: E,
    message_id: &str,
) -> Result<(), ApiError> {
    let envelope = crate::bus::envelope::Envelope::new(tenant, source, payload);
    let mut message = envelope.to_message().map_err(|error| {
        tracing::error!(%error, event_type = E::TYPE, "event does not encode");
        ApiError::Internal
    })?;
    message.set_message_id(message_id);
    let mut published = publish_messages(bus, std::slice::from_ref(&message)).await;
    published.pop().unwrap_or(Err(ApiError::Unavailable))?;
    Ok(())
}
