//! The envelope: attributes every bus message carries, as CloudEvents-style NATS headers.
//!
//! | header            | meaning                                              |
//! |-------------------|------------------------------------------------------|
//! | `ce-specversion`  | `1.0`                                                |
//! | `ce-id`           | event id (UUIDv7), also the `Nats-Msg-Id`            |
//! | `ce-type`         | event type, e.g. `canary.requested`                  |
//! | `ce-typeversion`  | version of the payload schema (`1`, `2`, …)          |
//! | `ce-source`       | who emitted it: `caller/stage/<name>`, `caller/cli`  |
//! | `ce-time`         | occurred-at, RFC 3339                                |
//! | `ce-tenantid`     | tenant id                                            |
//! | `ce-callid`       | call id, when there is one                           |
//! | `ce-causationid`  | id of the event that caused this one                 |
//! | `ce-traceparent`  | W3C trace context                                    |
//! | `content-type`    | `application/msgpack`                                |
//!
//! The payload is the event body alone, MessagePack with named fields (`bus::codec`).

use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{self, CONTENT_TYPE};
use crate::events::Event;
use crate::ids::{CallId, EventId, TenantId};

/// Header names of the envelope.
pub mod header {
    /// CloudEvents spec version.
    pub const SPEC_VERSION: &str = "ce-specversion";
    /// Event id.
    pub const ID: &str = "ce-id";
    /// Event type.
    pub const TYPE: &str = "ce-type";
    /// Payload schema version.
    pub const TYPE_VERSION: &str = "ce-typeversion";
    /// Emitter.
    pub const SOURCE: &str = "ce-source";
    /// Occurred-at.
    pub const TIME: &str = "ce-time";
    /// Tenant id.
    pub const TENANT_ID: &str = "ce-tenantid";
    /// Call id.
    pub const CALL_ID: &str = "ce-callid";
    /// Causing event.
    pub const CAUSATION_ID: &str = "ce-causationid";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "ce-traceparent";
    /// Payload encoding.
    pub const CONTENT_TYPE: &str = "content-type";
    /// JetStream deduplication id.
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
}

/// The CloudEvents spec version we write.
const SPEC_VERSION: &str = "1.0";

/// Attributes of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Unique id (UUIDv7); also the message's `Nats-Msg-Id`.
    pub event_id: EventId,
    /// Event type, e.g. `canary.requested`.
    pub event_type: String,
    /// Payload schema version.
    pub version: u32,
    /// Emitter, e.g. `caller/stage/canary`.
    pub source: String,
    /// Tenant the event belongs to.
    pub tenant_id: TenantId,
    /// Call the event belongs to, if any.
    pub call_id: Option<CallId>,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
    /// The event that caused this one.
    pub causation_id: Option<EventId>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
}

/// A typed event with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<E> {
    /// Attributes.
    pub meta: Meta,
    /// Body.
    pub payload: E,
}

/// A message ready to publish: subject, headers and encoded payload.
///
/// It is also what the outbox stores, so a redelivered input re-emits byte-identical messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMessage {
    /// Subject to publish on.
    pub subject: String,
    /// Headers, including `Nats-Msg-Id`.
    pub headers: Vec<(String, String)>,
    /// Encoded payload.
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
}

/// Why a message is not a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// A header is present but unreadable.
    #[error("invalid header `{name}`: {reason}")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The message is another event type than this subject carries.
    #[error("unexpected event type `{found}` (expected `{expected}`)")]
    UnexpectedType {
        /// What the message says.
        found: String,
        /// What the consumer takes.
        expected: &'static str,
    },
    /// The payload schema version is newer than this build understands.
    #[error("unsupported version {found} of `{event_type}` (this build reads up to {supported})")]
    UnsupportedVersion {
        /// Event type.
        event_type: &'static str,
        /// Version found.
        found: u32,
        /// Newest version known.
        supported: u32,
    },
    /// The payload could not be encoded or decoded.
    #[error("payload: {0}")]
    Payload(#[from] codec::CodecError),
}

impl Meta {
    /// Returns attributes for a new event of type `E` with a fresh id, occurring now.
    pub fn new<E: Event>(tenant_id: TenantId, source: impl Into<String>) -> Self {
        Self {
            event_id: EventId::new_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            source: source.into(),
            tenant_id,
            call_id: None,
            occurred_at: Utc::now(),
            causation_id: None,
            traceparent: None,
        }
    }

    /// Writes the attributes as headers (plus `Nats-Msg-Id` and `content-type`).
    pub fn to_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            (header::SPEC_VERSION.to_owned(), SPEC_VERSION.to_owned()),
            (header::ID.to_owned(), self.event_id.to_string()),
            (header::NATS_MSG_ID.to_owned(), self.event_id.to_string()),
            (header::TYPE.to_owned(), self.event_type.clone()),
            (header::TYPE_VERSION.to_owned(), self.version.to_string()),
            (header::SOURCE.to_owned(), self.source.clone()),
            (
                header::TIME.to_owned(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            (header::TENANT_ID.to_owned(), self.tenant_id.to_string()),
            (header::CONTENT_TYPE.to_owned(), CONTENT_TYPE.to_owned()),
        ];
        if let Some(call_id) = self.call_id {
            headers.push((header::CALL_ID.to_owned(), call_id.to_string()));
        }
        if let Some(causation_id) = self.causation_id {
            headers.push((header::CAUSATION_ID.to_owned(), causation_id.to_string()));
        }
        if let Some(traceparent) = &self.traceparent {
            headers.push((header::TRACEPARENT.to_owned(), traceparent.clone()));
        }
        headers
    }

    /// Reads the attributes from NATS headers.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Result<Self, EnvelopeError> {
        let get = |name: &'static str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let required = |name: &'static str| get(name).ok_or(EnvelopeError::Missing(name));
        let invalid = |name: &'static str, reason: String| EnvelopeError::Invalid { name, reason };

        let event_id = EventId::parse(required(header::ID)?)
            .map_err(|e| invalid(header::ID, e.to_string()))?;
        let tenant_id = TenantId::parse(required(header::TENANT_ID)?)
            .map_err(|e| invalid(header::TENANT_ID, e.to_string()))?;
        let version = required(header::TYPE_VERSION)?
            .parse::<u32>()
            .map_err(|e| invalid(header::TYPE_VERSION, e.to_string()))?;
        let occurred_at = DateTime::parse_from_rfc3339(required(header::TIME)?)
            .map_err(|e| invalid(header::TIME, e.to_string()))?
            .with_timezone(&Utc);
        let call_id = get(header::CALL_ID)
            .map(CallId::parse)
            .transpose()
            .map_err(|e| invalid(header::CALL_ID, e.to_string()))?;
        let causation_id = get(header::CAUSATION_ID)
            .map(EventId::parse)
            .transpose()
            .map_err(|e| invalid(header::CAUSATION_ID, e.to_string()))?;
        Ok(Self {
            event_id,
            event_type: required(header::TYPE)?.to_owned(),
            version,
            source: get(header::SOURCE).unwrap_or("unknown").to_owned(),
            tenant_id,
            call_id,
            occurred_at,
            causation_id,
            traceparent: get(header::TRACEPARENT).map(str::to_owned),
        })
    }

    /// Returns attributes for an event caused by this one: same tenant, call and trace.
    pub fn caused<E: Event>(&self, event_id: EventId, source: impl Into<String>) -> Self {
        Self {
            event_id,
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            source: source.into(),
            tenant_id: self.tenant_id,
            call_id: self.call_id,
            occurred_at: Utc::now(),
            causation_id: Some(self.event_id),
            traceparent: self.traceparent.clone(),
        }
    }
}

impl<E: Event> Envelope<E> {
    /// Returns a new event of tenant `tenant_id` with a fresh id.
    pub fn new(tenant_id: TenantId, source: impl Into<String>, payload: E) -> Self {
        Self {
            meta: Meta::new::<E>(tenant_id, source),
            payload,
        }
    }

    /// Encodes the envelope into a message on the event's subject.
    pub fn to_message(&self) -> Result<BusMessage, EnvelopeError> {
        Ok(BusMessage {
            subject: E::subject(&self.meta),
            headers: self.meta.to_headers(),
            payload: codec::encode(&self.payload)?,
        })
    }

    /// Decodes a message, checking that it carries event type `E` in a version we read.
    pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Self, EnvelopeError> {
        let meta = Meta::from_headers(headers)?;
        if !E::accepts(&meta.event_type) {
            return Err(EnvelopeError::UnexpectedType {
                found: meta.event_type,
                expected: E::TYPE,
            });
        }
        let payload = E::decode_payload(&meta, payload)?;
        Ok(Self { meta, payload })
    }
}

impl BusMessage {
    /// Returns the deduplication id (`Nats-Msg-Id`).
    pub fn message_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(name, _)| name == header::NATS_MSG_ID)
            .map(|(_, v)| v.as_str())
    }

    /// Replaces the deduplication id, for messages whose duplicates are recognized by their
    /// content rather than their event id (a webhook delivery retried by its sender).
    pub fn set_message_id(&mut self, message_id: &str) {
        for (name, value) in &mut self.headers {
            if name == header::NATS_MSG_ID {
                message_id.clone_into(value);
            }
        }
    }

    /// Returns the headers as a NATS header map.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.insert(name.as_str(), value.as_str());
        }
        map
    }
}

/// Stores payload bytes as a MessagePack `bin` instead of an array of integers.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::canary::CanaryRequested;

    fn header_map(pairs: &[(String, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.as_str(), value.as_str());
        }
        map
    }

    #[test]
    fn envelope_round_trips_through_headers_and_payload() {
        let mut envelope = Envelope::new(
            TenantId::PLATFORM,
            "caller/test",
            CanaryRequested { origin: "t".into() },
        );
        envelope.meta.call_id = Some(CallId::from_uuid(uuid::Uuid::now_v7()));
        envelope.meta.causation_id = Some(EventId::new_v7());
        envelope.meta.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
        let message = envelope.to_message().unwrap();
        assert_eq!(
            message.message_id(),
            Some(envelope.meta.event_id.to_string().as_str())
        );
        let headers = header_map(&message.headers);
        let decoded =
            Envelope::<CanaryRequested>::decode(Some(&headers), &message.payload).unwrap();
        // RFC 3339 keeps microseconds: compare at that precision.
        assert_eq!(
            decoded.meta.occurred_at.timestamp_micros(),
            envelope.meta.occurred_at.timestamp_micros()
        );
        assert_eq!(decoded.payload, envelope.payload);
        assert_eq!(decoded.meta.call_id, envelope.meta.call_id);
        assert_eq!(decoded.meta.traceparent, envelope.meta.traceparent);
    }

    #[test]
    fn missing_tenant_and_wrong_type_are_named() {
        let envelope = Envelope::new(
            TenantId::PLATFORM,
            "caller/test",
            CanaryRequested { origin: "t".into() },
        );
        let message = envelope.to_message().unwrap();
        let without_tenant: Vec<_> = message
            .headers
            .iter()
            .filter(|(n, _)| n != header::TENANT_ID)
            .cloned()
            .collect();
        let error = Envelope::<CanaryRequested>::decode(
            Some(&header_map(&without_tenant)),
            &message.payload,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "missing header `ce-tenantid`");

        let retyped: Vec<_> = message
            .headers
            .iter()
            .map(|(n, v)| {
                if n == header::TYPE {
                    (n.clone(), "other.thing".to_owned())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect();
        let error =
            Envelope::<CanaryRequested>::decode(Some(&header_map(&retyped)), &message.payload)
                .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unexpected event type `other.thing`")
        );
    }

    #[test]
    fn stored_messages_round_trip_through_the_codec() {
        let message = BusMessage {
            subject: "a.b".to_owned(),
            headers: vec![("k".to_owned(), "v".to_owned())],
            payload: vec![0, 1, 2, 255],
        };
        let bytes = codec::encode(&vec![message.clone()]).unwrap();
        let decoded: Vec<BusMessage> = codec::decode(&bytes).unwrap();
        assert_eq!(decoded, vec![message]);
    }
}
