//! `Fact`: every event of the pipeline as one stage input, for the analytics sink.
//!
//! The analytics sink consumes the FACTS stream (a mirror of LEADS and CALLS, ADR 0021), in
//! which every event type arrives. `Fact` accepts any of them: a type this build knows is
//! decoded into its variant (a newer version of it is refused, so it is dead-lettered with
//! the reason instead of being misread); a type it does not know yet is kept as
//! [`Fact::Other`], whose envelope alone still lands in `analytics.event_facts`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use super::call_flow::{CallOutcome, CallRequested, CallStatusReported};
use super::conversation::{
    CallAnswered, ConversationEnded, ConversationSummarized, PostCallReported,
};
use super::lead::LeadReceived;
use super::lead_flow::{LeadResolved, LeadUnique};
use crate::bus::envelope::{EnvelopeError, Meta};

/// One event of the pipeline, whatever its type.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::large_enum_variant)] // decoded once per message and never stored
pub enum Fact {
    /// `lead.received`.
    LeadReceived(LeadReceived),
    /// `lead.unique`.
    LeadUnique(LeadUnique),
    /// `lead.resolved`.
    LeadResolved(LeadResolved),
    /// `call.requested`.
    CallRequested(CallRequested),
    /// `call.status_reported`.
    CallStatusReported(CallStatusReported),
    /// `call.outcome`.
    CallOutcome(CallOutcome),
    /// `call.answered`.
    CallAnswered(CallAnswered),
    /// `conversation.ended`.
    ConversationEnded(ConversationEnded),
    /// `conversation.post_call_reported`.
    PostCallReported(PostCallReported),
    /// `conversation.summarized`.
    ConversationSummarized(ConversationSummarized),
    /// A type this build does not know: only its envelope is recorded.
    Other,
}

/// Decodes `payload` as `E` (with `E`'s version check) into a variant.
fn variant<E: Event>(
    meta: &Meta,
    payload: &[u8],
    wrap: fn(E) -> Fact,
) -> Result<Fact, EnvelopeError> {
    E::decode_payload(meta, payload).map(wrap)
}

impl Event for Fact {
    /// Not a bus type of its own: the family's name, as stage inputs and the pipeline check
    /// show it.
    const TYPE: &'static str = "fact";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        // Never published; named after the wrapped event for completeness.
        format!("facts.{}", meta.event_type)
    }

    fn subject_pattern() -> String {
        ">".to_owned()
    }

    fn accepts(_event_type: &str) -> bool {
        true
    }

    fn decode_payload(meta: &Meta, payload: &[u8]) -> Result<Self, EnvelopeError> {
        match meta.event_type.as_str() {
            LeadReceived::TYPE => variant(meta, payload, Fact::LeadReceived),
            LeadUnique::TYPE => variant(meta, payload, Fact::LeadUnique),
            LeadResolved::TYPE => variant(meta, payload, Fact::LeadResolved),
            CallRequested::TYPE => variant(meta, payload, Fact::CallRequested),
            CallStatusReported::TYPE => variant(meta, payload, Fact::CallStatusReported),
            CallOutcome::TYPE => variant(meta, payload, Fact::CallOutcome),
            CallAnswered::TYPE => variant(meta, payload, Fact::CallAnswered),
            ConversationEnded::TYPE => variant(meta, payload, Fact::ConversationEnded),
            PostCallReported::TYPE => variant(meta, payload, Fact::PostCallReported),
            ConversationSummarized::TYPE => variant(meta, payload, Fact::ConversationSummarized),
            _ => Ok(Fact::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(event_type: &str, version: u32) -> Meta {
        Meta {
            event_id: crate::ids::EventId::new_v7(),
            event_type: event_type.to_owned(),
            version,
            source: "test".to_owned(),
            tenant_id: crate::ids::TenantId::PLATFORM,
            call_id: None,
            occurred_at: chrono::Utc::now(),
            causation_id: None,
            traceparent: None,
        }
    }

    /// Every catalogued event that travels on LEADS or CALLS (so reaches the FACTS mirror)
    /// decodes from its golden fixture into its own variant, not into `Other`: an event
    /// added to the catalogue without a variant fails here.
    #[test]
    fn every_pipeline_event_decodes_into_its_variant() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/fixtures");
        for spec in super::super::catalogue() {
            let pattern = (spec.subject_pattern)();
            if !(pattern.starts_with("leads.") || pattern.starts_with("calls.")) {
                continue;
            }
            let path = root
                .join(spec.event_type)
                .join(format!("v{}.json", spec.version));
            let fixture: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture"))
                    .expect("fixture JSON");
            let payload = (spec.encode_fixture)(&fixture).expect("encode");
            let meta = meta(spec.event_type, spec.version);
            let fact = Fact::decode_payload(&meta, &payload)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.event_type));
            assert!(
                !matches!(fact, Fact::Other),
                "{} travels on {pattern} but Fact has no variant for it",
                spec.event_type
            );
        }
    }

    #[test]
    fn an_unknown_type_is_other_and_a_newer_version_is_refused() {
        let mut meta = meta("lead.teleported", 1);
        assert!(matches!(
            Fact::decode_payload(&meta, b"\x80"),
            Ok(Fact::Other)
        ));
        meta.event_type = CallOutcome::TYPE.to_owned();
        meta.version = CallOutcome::VERSION + 1;
        assert!(matches!(
            Fact::decode_payload(&meta, b"\x80"),
            Err(EnvelopeError::UnsupportedVersion { .. })
        ));
    }
}
