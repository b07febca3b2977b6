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

use chrono::Utc;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::state::{AttemptState, CallState, Event, Outcome, Transition};
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::call_flow::{CallOutcome, CallStatusReported};
use crate::ids::EventId;
use crate::store::calls::{self, Attempt, AttemptFacts};

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

/// Applies `event` to the attempt and, when it is the call's current attempt, to the call;
/// emits `call.outcome` when the call settles. The dial stage applies its own facts (the
/// provider accepted or refused the call) through it too.
pub(crate) async fn apply(
    cx: &mut StageContext<'_>,
    attempt: &Attempt,
    event: &Event,
    facts: &AttemptFacts,
    cause: EventId,
) -> Result<(AttemptState, CallState), StageError> {
    let mut attempt_state = attempt.state;
    let current = attempt.attempt_number == attempt.current_attempt;
    match attempt.state.apply(event) {
        Transition::Move { from, to } => {
            if !calls::move_attempt(cx.tx, attempt, from, to, facts, Some(cause)).await? {
                return Err(StageError::retryable("attempt state changed concurrently"));
            }
            attempt_state = to;
            // Asynchronous machine detection may report after the call ended (a short call,
            // or one whose media never connected): the settled call's outcome was `human`
            // and is corrected, with a second `call.outcome` for the same attempt.
            if from == AttemptState::Completed
                && to == AttemptState::Voicemail
                && current
                && attempt.call_state.is_settled()
            {
                settle(cx, attempt, to, facts).await?;
            }
        }
        Transition::Ignore { reason } => {
            tracing::debug!(%reason, state = %attempt.state, "attempt: event ignored");
            calls::record_facts(cx.tx, attempt.id, facts).await?;
        }
    }
    let mut call_state = attempt.call_state;
    // Provider facts of an older attempt must not move the call (calls::state contract).
    if current {
        match attempt.call_state.apply(event) {
            Transition::Move { from, to } => {
                if !calls::move_call(cx.tx, attempt, from, to, Some(cause)).await? {
                    return Err(StageError::retryable("call state changed concurrently"));
                }
                call_state = to;
                if to.is_settled() {
                    settle(cx, attempt, attempt_state, facts).await?;
                }
            }
            Transition::Ignore { reason } => {
                tracing::debug!(%reason, state = %attempt.call_state, "call: event ignored");
            }
        }
    }
    Ok((attempt_state, call_state))
}

/// Stores the outcome of a call that just settled and emits it.
async fn settle(
    cx: &mut StageContext<'_>,
    attempt: &Attempt,
    attempt_state: AttemptState,
    facts: &AttemptFacts,
) -> Result<(), StageError> {
    let answered_by = facts.answered_by.or(attempt.answered_by);
    let outcome = Outcome::of_attempt(attempt_state, answered_by, facts.failure.clone())
        // The call settled while the attempt is not final (e.g. a call-level failure):
        // report what the call says.
        .unwrap_or(Outcome::Unknown);
    calls::set_outcome(cx.tx, attempt.call_id, outcome.as_str()).await?;
    let duration_secs = match facts.duration_secs {
        Some(secs) => Some(secs),
        None => calls::duration_of(cx.tx, attempt.id).await?,
    };
    let to = crate::ids::PhoneNumber::parse(&attempt.to_number)
        .map_err(|_| StageError::rejected("the call's number is not E.164"))?;
    let mut meta = cx.outbox.next_meta::<CallOutcome>()?;
    meta.call_id = Some(attempt.call_id);
    cx.outbox.push_with_meta(
        meta,
        CallOutcome {
            call_id: attempt.call_id,
            attempt_id: attempt.id,
            attempt_number: attempt.attempt_number,
            outcome,
            to,
            answered_by,
            duration_secs,
            ended_at: Utc::now(),
        },
    )?;
    Ok(())
}

/// Applies one of our own decisions about a call (`Readmitted`, `CancelledByUs`,
/// `RetryScheduled`) under the call's row lock, logged; returns true when the call moved. A
/// call that is gone, or in a state the decision does not leave, is left alone.
pub(crate) async fn decide_call(
    conn: &mut sqlx::PgConnection,
    tenant: crate::ids::TenantId,
    call: crate::ids::CallId,
    event: &Event,
    cause: EventId,
) -> Result<bool, sqlx::Error> {
    let Some(state) = calls::lock_call_state(conn, tenant, call).await? else {
        return Ok(false);
    };
    match state.apply(event) {
        Transition::Move { from, to } => {
            calls::move_call_by_id(conn, tenant, call, from, to, Some(cause)).await
        }
        Transition::Ignore { reason } => {
            tracing::debug!(%reason, %state, ?event, "call: decision ignored");
            Ok(false)
        }
    }
}
