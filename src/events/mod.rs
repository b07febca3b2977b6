//! Every bus event type, and the catalogue of them.
//!
//! An event is a past-tense fact with a stable type name and a schema version. The catalogue
//! ([`catalogue`]) is the single list that schema export, golden fixtures and the pipeline
//! graph check iterate over: an event missing from it cannot be declared as a stage output.

pub mod call_flow;
pub mod canary;
pub mod conversation;
pub mod fact;
pub mod lead;
pub mod lead_flow;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::envelope::{EnvelopeError, Meta};

/// A bus event type.
///
/// Implementations MUST keep `TYPE` stable forever, MUST only add fields with
/// `#[serde(default)]` within one `VERSION`, and MUST build their subject through
/// `bus::subjects`.
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// Dot-separated type name, e.g. `canary.requested`.
    const TYPE: &'static str;
    /// Payload schema version, starting at 1.
    const VERSION: u32;

    /// Returns the subject this event is published on.
    fn subject(meta: &Meta) -> String;

    /// Returns the subject pattern of this event for every tenant (`*` in the tenant token).
    fn subject_pattern() -> String;

    /// Returns true when a message of `event_type` is this type. A family of events consumed
    /// as one stage input ([`fact::Fact`]) accepts several.
    fn accepts(event_type: &str) -> bool {
        event_type == Self::TYPE
    }

    /// Decodes the payload of an accepted message: refuses a version newer than this build
    /// knows (or 0), then reads the MessagePack body.
    fn decode_payload(meta: &Meta, payload: &[u8]) -> Result<Self, EnvelopeError> {
        if meta.version > Self::VERSION || meta.version == 0 {
            return Err(EnvelopeError::UnsupportedVersion {
                event_type: Self::TYPE,
                found: meta.version,
                supported: Self::VERSION,
            });
        }
        Ok(crate::bus::codec::decode(payload)?)
    }
}

/// Static facts about one event type, for tooling that iterates over all of them.
#[derive(Clone, Copy)]
pub struct EventSpec {
    /// `Event::TYPE`.
    pub event_type: &'static str,
    /// `Event::VERSION`.
    pub version: u32,
    /// Returns the subject pattern for every tenant.
    pub subject_pattern: fn() -> String,
    /// Returns the JSON Schema of the payload.
    pub schema: fn() -> schemars::schema::RootSchema,
    /// Decodes a JSON fixture, re-encodes it as MessagePack and decodes that again.
    pub round_trip_fixture: fn(&serde_json::Value) -> Result<serde_json::Value, String>,
    /// Decodes a JSON fixture and encodes it as a bus payload (MessagePack).
    pub encode_fixture: fn(&serde_json::Value) -> Result<Vec<u8>, String>,
}

impl std::fmt::Debug for EventSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSpec")
            .field("event_type", &self.event_type)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl EventSpec {
    /// Returns the spec of event type `E`.
    pub fn of<E: Event>() -> Self {
        Self {
            event_type: E::TYPE,
            version: E::VERSION,
            subject_pattern: E::subject_pattern,
            schema: || schemars::schema_for!(E),
            round_trip_fixture: round_trip_fixture::<E>,
            encode_fixture: encode_fixture::<E>,
        }
    }

    /// Returns the file stem used under `schemas/`: `<type>.v<version>`.
    pub fn file_stem(&self) -> String {
        format!("{}.v{}", self.event_type, self.version)
    }
}

fn encode_fixture<E: Event>(fixture: &serde_json::Value) -> Result<Vec<u8>, String> {
    let event: E = serde_json::from_value(fixture.clone()).map_err(|e| e.to_string())?;
    crate::bus::codec::encode(&event).map_err(|e| e.to_string())
}

fn round_trip_fixture<E: Event>(fixture: &serde_json::Value) -> Result<serde_json::Value, String> {
    let event: E = serde_json::from_value(fixture.clone()).map_err(|e| e.to_string())?;
    let bytes = crate::bus::codec::encode(&event).map_err(|e| e.to_string())?;
    let decoded: E = crate::bus::codec::decode(&bytes).map_err(|e| e.to_string())?;
    serde_json::to_value(decoded).map_err(|e| e.to_string())
}

/// Returns every event type the bus carries.
pub fn catalogue() -> Vec<EventSpec> {
    vec![
        EventSpec::of::<canary::CanaryRequested>(),
        EventSpec::of::<canary::CanaryAnswered>(),
        EventSpec::of::<lead::LeadReceived>(),
        EventSpec::of::<lead_flow::LeadUnique>(),
        EventSpec::of::<lead_flow::LeadResolved>(),
        EventSpec::of::<call_flow::CallRequested>(),
        EventSpec::of::<call_flow::CallStatusReported>(),
        EventSpec::of::<call_flow::CallOutcome>(),
        EventSpec::of::<conversation::CallAnswered>(),
        EventSpec::of::<conversation::ConversationEnded>(),
        EventSpec::of::<conversation::PostCallReported>(),
        EventSpec::of::<conversation::ConversationSummarized>(),
    ]
}

/// Returns the spec of one event type by name.
pub fn find(event_type: &str) -> Option<EventSpec> {
    catalogue()
        .into_iter()
        .find(|spec| spec.event_type == event_type)
}
