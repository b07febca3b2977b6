//! The `scheduler` stage: ended attempts become retries or follow-up enrollments; due jobs
//! go back into the pipeline (ADR 0020).
//!
//! - Consumes: `call.outcome` (`calls.outcome.<tenant>` on `CALLS`).
//! - Writes, in the claim's transaction: a `scheduled_jobs` row (a retry keyed by the outcome
//!   event, due inside the lead's windows) and the call's move to `retry_scheduled`; or, when
//!   an unanswered call used its attempts and its policy names a campaign, one row per stage
//!   of that campaign. The decision itself is `scheduling::retry::decide`.
//! - Schedules nothing for: a cancelled call; an outcome of an older attempt than the call's
//!   current one; a disabled client; a number on a do-not-call or opt-out list; a lead who
//!   booked.
//! - Runs beside the consumer, in every `scheduler` process: the claim loop ([`claimer`]),
//!   which fires due jobs as `lead.resolved` events for `rate_limit`.

pub mod claimer;
pub mod plan;

use futures::future::BoxFuture;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::state::{CallState, Event};
use crate::clock::Clock;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::call_flow::CallOutcome;
use crate::events::lead_flow::{JobKind, LeadResolved};
use crate::scheduling::retry::{self, Decision};
use crate::shutdown::Shutdown;
use crate::stages::call_status::decide_call;
use crate::store::{alerts, call_blocklist, calls, follow_up_campaigns};
use crate::tenancy::directory::Directory;

/// The tenant alert raised when a retry policy escalates to a campaign that does not exist.
pub const ESCALATION_ALERT: &str = "schedule_escalation_missing";

/// Turns outcomes into scheduled attempts.
#[derive(Debug)]
pub struct Scheduler {
    directory: Directory,
    clock: Clock,
    /// For tenant alerts, written outside the claim's transaction.
    store: crate::store::Store,
}

impl Stage for Scheduler {
    const NAME: &'static str = "scheduler";
    type Input = CallOutcome;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
            clock: runtime.clock.clone(),
            store: runtime.store.detached(2),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    fn companion(
        runtime: &Runtime,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        Some(Box::pin(claimer::run(runtime.clone(), shutdown)))
    }

    async fn handle(
        &self,
        input: &Envelope<CallOutcome>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let outcome = &input.payload;
        let Some(call) = calls::for_schedule(cx.tx, tenant, outcome.call_id).await? else {
            tracing::warn!(tenant_id = %tenant, call_id = %outcome.call_id, "outcome of an unknown call; nothing scheduled");
            return Ok(());
        };
        if call.state == CallState::Cancelled || outcome.attempt_number < call.current_attempt {
            return Ok(());
        }
        let Some(snapshot) = self.directory.tenant(tenant).await?.filter(|s| s.active) else {
            return Ok(());
        };
        let lead: LeadResolved = serde_json::from_value(call.lead.clone()).map_err(|error| {
            StageError::rejected(format!("the call's lead is unreadable: {error}"))
        })?;
        if !call_blocklist::lists_of(cx.tx, tenant, &lead.phone)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        if booked(cx, outcome).await? {
            return Ok(());
        }
        let follow_up = lead
            .schedule
            .as_ref()
            .is_some_and(|schedule| schedule.kind == JobKind::FollowUp);
        let policy = match &lead.campaign_id {
            Some(campaign) => follow_up_campaigns::retry_policy(cx.tx, tenant, campaign).await?,
            None => None,
        }
        .unwrap_or_else(|| snapshot.configuration.retry_policy.clone());
        let now = self.clock.now();
        let decision = retry::decide(
            &policy,
            &outcome.outcome,
            outcome.attempt_number,
            now,
            follow_up,
            outcome.attempt_id.as_uuid(),
        );
        let Some(windows) = plan::calling_policy(&snapshot) else {
            return Err(StageError::rejected(
                "the client's calling windows are unreadable",
            ));
        };
        match decision {
            Decision::Done { reason } => {
                tracing::debug!(tenant_id = %tenant, call_id = %outcome.call_id, %reason, "no retry");
            }
            Decision::Retry {
                attempt_number,
                earliest,
                reason,
            } => {
                let retry = plan::Retry {
                    snapshot: &snapshot,
                    call_id: outcome.call_id,
                    lead: &lead,
                    crm_contact_id: call.crm_contact_id.as_deref(),
                    attempt_number,
                    earliest,
                    reason: &reason,
                    source: input.meta.event_id,
                    now,
                };
                if let Some((job, due_at)) = plan::retry(cx.tx, &windows, &retry).await? {
                    tracing::info!(tenant_id = %tenant, call_id = %outcome.call_id, %job, %due_at, %reason, "retry scheduled");
                }
                let retry_scheduled = Event::RetryScheduled;
                decide_call(
                    cx.tx,
                    tenant,
                    outcome.call_id,
                    &retry_scheduled,
                    input.meta.event_id,
                )
                .await?;
            }
            Decision::Escalate { campaign, reason } => {
                let Some(found) = follow_up_campaigns::by_name(cx.tx, tenant, &campaign).await?
                else {
                    tracing::warn!(tenant_id = %tenant, %campaign, "retry policy escalates to a campaign that does not exist; nothing scheduled");
                    let message = format!(
                        "a lead's attempts ran out, but the retry policy escalates to the \
                         follow-up campaign `{campaign}`, which does not exist: create it, or \
                         change `retry_policy.escalate_to`"
                    );
                    // Best effort: the alert is for people; the decision stands either way.
                    if let Err(error) =
                        alerts::raise(&self.store, tenant, ESCALATION_ALERT, "scheduler", &message)
                            .await
                    {
                        tracing::warn!(%error, "could not raise the escalation alert");
                    }
                    return Ok(());
                };
                let written = plan::enroll(
                    cx.tx,
                    &windows,
                    &snapshot,
                    &found,
                    &lead,
                    &reason,
                    input.meta.event_id,
                    now,
                )
                .await?;
                tracing::info!(tenant_id = %tenant, call_id = %outcome.call_id, %campaign, stages = written, "escalated to a follow-up campaign");
            }
        }
        Ok(())
    }
}

/// Returns true when the call booked an appointment (the lead converted: nothing more).
async fn booked(cx: &mut StageContext<'_>, outcome: &CallOutcome) -> Result<bool, StageError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM appointments WHERE call_id = $1 AND status = 'booked'",
    )
    .bind(outcome.call_id.as_uuid())
    .fetch_one(&mut *cx.tx)
    .await?;
    Ok(count > 0)
}
