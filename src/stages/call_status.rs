//! The `call_status` stage: provider reports move calls through the state machine.
//!
//! - Consumes: `call.status_reported` (`calls.status.<tenant>` on `CALLS`), one per verified
//!   telephony callback.
//! - Writes, in the claim's transaction, under row locks of the attempt and its call: the
//!   provider's call id when the dial stage never recorded it (the callback carries our
//!   attempt id: this is how a crashed dial reconciles), then compare-and-set transitions of
//!   the attempt and (for its current attempt) the call, each logged in
//!   `call_state_transitions`. Late, repeated and out-of-order reports are ignored by the
//!   state machine's ranking (`calls::state`), never applied backwards.
//! - Emits: `call.outcome` when the call settles (human, machine, no answer, busy, failed,
//!   cancelled), for the scheduler and analytics.
//! - Drops, with a log line: reports for attempts we do not know (another system's call, a
//!   deleted tenant), and reports naming another provider call than the attempt's.

use super::dial::apply;
use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::state::Event;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::call_flow::{CallOutcome, CallStatusReported};
use crate::store::calls::{self, AttemptFacts};

/// Applies provider reports.
#[derive(Debug)]
pub struct CallStatus;

impl Stage for CallStatus {
    const NAME: &'static str = "call_status";
    type Input = CallStatusReported;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<CallOutcome>()]
    }

    async fn handle(
        &self,
        input: &Envelope<CallStatusReported>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let report = &input.payload;
        let Some(mut attempt) = calls::lock_attempt(cx.tx, tenant, report.attempt_id).await? else {
            tracing::warn!(tenant_id = %tenant, attempt_id = %report.attempt_id, "status report for an unknown call; ignored");
            return Ok(());
        };
        let cause = input.meta.event_id;
        let facts = AttemptFacts {
            answered_by: report.answered_by,
            duration_secs: report.duration_secs,
            failure: report.failure.clone(),
        };
        match &attempt.provider_call_id {
            Some(known) if *known != report.provider_call_id => {
                tracing::warn!(tenant_id = %tenant, attempt_id = %attempt.id, "status report names another call than the attempt's; ignored");
                return Ok(());
            }
            Some(_) => {}
            None => {
                // The dial stage did not record the call id (it crashed, or the create's
                // answer was lost): the callback tells us, and the attempt is reconciled.
                calls::set_provider_call_id(cx.tx, attempt.id, &report.provider_call_id).await?;
                let accepted = Event::ProviderAccepted {
                    provider_call_id: report.provider_call_id.clone(),
                };
                let (attempt_state, call_state) =
                    apply(cx, &attempt, &accepted, &AttemptFacts::default(), cause).await?;
                attempt.state = attempt_state;
                attempt.call_state = call_state;
                attempt.provider_call_id = Some(report.provider_call_id.clone());
            }
        }
        let mut events = Vec::with_capacity(2);
        if let Some(answered_by) = report.answered_by {
            events.push(Event::Answered(answered_by));
        }
        if let Some(status) = report.status {
            events.push(Event::Status(status));
        }
        for event in events {
            let (attempt_state, call_state) = apply(cx, &attempt, &event, &facts, cause).await?;
            attempt.state = attempt_state;
            attempt.call_state = call_state;
            if facts.answered_by.is_some() {
                attempt.answered_by = facts.answered_by;
            }
        }
        Ok(())
    }
}
