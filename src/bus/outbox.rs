//! The outbox: where a handler puts the events it emits.
//!
//! A handler never publishes. It pushes typed events here; the runner stores the encoded
//! messages with the stage's idempotency claim (same transaction), then publishes them and
//! awaits every PubAck before acking the input. Output ids are derived from
//! `(stage, input event id, event type, ordinal)`, so a replayed input re-emits identical ids.
//!
//! Only event types declared for the stage in `pipelines/` may be pushed; anything else is
//! refused with [`StageError::Rejected`], which dead-letters the input instead of emitting an
//! event no consumer was provisioned for.

use super::envelope::{BusMessage, Envelope, Meta};
use crate::error::StageError;
use crate::events::Event;
use crate::ids::EventId;

/// Events emitted by one handler invocation, not yet published.
#[derive(Debug)]
pub struct Outbox {
    stage: String,
    declared: Vec<String>,
    input: Meta,
    messages: Vec<BusMessage>,
}

impl Outbox {
    /// Returns an empty outbox for one input of `stage`, accepting only `declared` types.
    pub fn new(stage: &str, declared: &[String], input: &Meta) -> Self {
        Self {
            stage: stage.to_owned(),
            declared: declared.to_vec(),
            input: input.clone(),
            messages: Vec::new(),
        }
    }

    /// Adds an event caused by the input (same tenant, call and trace), returning its id.
    pub fn push<E: Event>(&mut self, payload: E) -> Result<EventId, StageError> {
        let meta = self.next_meta::<E>()?;
        self.push_with_meta(meta, payload)
    }

    /// Adds an event whose attributes the handler adjusted (e.g. a newly assigned call id).
    ///
    /// `meta` MUST come from [`Outbox::next_meta`] (adjusted, never with a fresh event id), so
    /// a replayed input re-emits the same ids.
    pub fn push_with_meta<E: Event>(
        &mut self,
        meta: Meta,
        payload: E,
    ) -> Result<EventId, StageError> {
        self.check_declared::<E>()?;
        let event_id = meta.event_id;
        let message = Envelope { meta, payload }.to_message().map_err(|error| {
            StageError::rejected(format!("cannot encode output `{}`: {error}", E::TYPE))
        })?;
        self.messages.push(message);
        Ok(event_id)
    }

    /// Returns the attributes the next pushed event gets (deterministic id, caused by the input).
    pub fn next_meta<E: Event>(&self) -> Result<Meta, StageError> {
        self.check_declared::<E>()?;
        let ordinal = self.messages.len().to_string();
        let event_id = EventId::derived(
            self.input.event_id,
            &[
                self.stage.as_bytes(),
                E::TYPE.as_bytes(),
                ordinal.as_bytes(),
            ],
        );
        Ok(self
            .input
            .caused::<E>(event_id, format!("caller/stage/{}", self.stage)))
    }

    fn check_declared<E: Event>(&self) -> Result<(), StageError> {
        if self.declared.iter().any(|declared| declared == E::TYPE) {
            return Ok(());
        }
        Err(StageError::rejected(format!(
            "stage `{}` emitted undeclared output `{}` (declared: {})",
            self.stage,
            E::TYPE,
            if self.declared.is_empty() {
                "none".to_owned()
            } else {
                self.declared.join(", ")
            }
        )))
    }

    /// Returns the encoded messages, in push order.
    pub fn messages(&self) -> &[BusMessage] {
        &self.messages
    }

    /// Takes the encoded messages out.
    pub fn into_messages(self) -> Vec<BusMessage> {
        self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::canary::{CanaryAnswered, CanaryRequested};
    use crate::ids::TenantId;

    fn answered() -> CanaryAnswered {
        CanaryAnswered {
            origin: "t".into(),
            requested_at: chrono::Utc::now(),
            answered_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn output_ids_are_derived_from_stage_input_and_ordinal() {
        let input = Meta::new::<CanaryRequested>(TenantId::PLATFORM, "test");
        let declared = vec!["canary.answered".to_owned()];
        let mut first = Outbox::new("canary", &declared, &input);
        let mut second = Outbox::new("canary", &declared, &input);
        let id_a = first.push(answered()).unwrap();
        let id_b = first.push(answered()).unwrap();
        assert_ne!(id_a, id_b);
        assert_eq!(second.push(answered()).unwrap(), id_a);
        let meta =
            crate::bus::envelope::Meta::from_headers(Some(&first.messages()[0].header_map()))
                .unwrap();
        assert_eq!(meta.causation_id, Some(input.event_id));
        assert_eq!(meta.tenant_id, TenantId::PLATFORM);
    }

    #[test]
    fn undeclared_output_is_refused() {
        let input = Meta::new::<CanaryRequested>(TenantId::PLATFORM, "test");
        let mut outbox = Outbox::new("canary", &[], &input);
        let error = outbox.push(answered()).unwrap_err();
        assert!(matches!(error, StageError::Rejected { .. }));
        assert!(
            error
                .to_string()
                .contains("undeclared output `canary.answered`"),
            "{error}"
        );
        assert!(outbox.messages().is_empty());
    }
}
