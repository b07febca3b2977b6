//! The `rate_limit` stage: resolved leads wait in `admission_queue` until their tenant's
//! limits and calling window let them become calls (ADR 0016).
//!
//! - Consumes: `lead.resolved` (`leads.resolved.<tenant>` on `LEADS`).
//! - Routes first (a lead the scheduler did not fire): a lead matching the tenant's
//!   `stop_on` rules has its retries and follow-ups cancelled and is not called; one matching
//!   a follow-up campaign's trigger is enrolled in that campaign instead (ADR 0020).
//! - Writes: one `admission_queue` row per lead (in the claim's transaction), with
//!   `not_before` = now, or the start of the next calling window when the callee's local time
//!   or the tenant's business hours forbid a call now (the durable schedule the scheduler
//!   also drives). Nothing is emitted here: admission cycles ([`admitter`]) turn rows into
//!   `call.requested` events.
//! - Rejects (dead letter with the reason): the client does not exist; it has no caller
//!   numbers; its windows are unreadable; no allowed calling time exists within 14 days.
//! - Runs beside the consumer: the admission cycles and their relay ([`admitter::run`]), in
//!   every `rate_limit` process; several processes share the work through row locks.

pub mod admitter;

use chrono::Utc;
use chrono_tz::Tz;
use futures::future::BoxFuture;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::window::{Admission, CallingPolicy};
use crate::clock::Clock;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::lead_flow::LeadResolved;
use crate::ids::{CallId, EventId};
use crate::scheduling::stop;
use crate::shutdown::Shutdown;
use crate::stages::scheduler::plan;
use crate::store::admission::{self, NewQueued};
use crate::store::follow_up_campaigns::{self, Campaign};
use crate::store::scheduled_jobs;
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// Queues resolved leads for admission.
#[derive(Debug)]
pub struct RateLimit {
    directory: Directory,
    clock: Clock,
}

/// Returns the call a lead becomes: derived from the lead event, so every replay agrees.
#[must_use]
pub fn call_id_of(lead_event_id: EventId) -> CallId {
    CallId::from_uuid(EventId::derived(lead_event_id, &[b"call"]).as_uuid())
}

impl Stage for RateLimit {
    const NAME: &'static str = "rate_limit";
    type Input = LeadResolved;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
            clock: runtime.clock.clone(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    fn companion(
        runtime: &Runtime,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        Some(Box::pin(admitter::run(runtime.clone(), shutdown)))
    }

    async fn handle(
        &self,
        input: &Envelope<LeadResolved>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let lead = &input.payload;
        let Some(snapshot) = self.directory.tenant(tenant).await? else {
            return Err(StageError::rejected(format!(
                "client {tenant} does not exist"
            )));
        };
        if snapshot.configuration.caller_numbers.is_empty() {
            return Err(StageError::rejected(
                "the client has no caller numbers (configuration `caller_numbers`)",
            ));
        }
        let policy = CallingPolicy::from_config(&snapshot.configuration, snapshot.timezone)
            .map_err(|error| StageError::rejected(format!("unusable calling windows: {error}")))?;
        let (call_id, attempt_number) = match &lead.schedule {
            Some(schedule) => (
                schedule
                    .call_id
                    .unwrap_or_else(|| call_id_of(input.meta.event_id)),
                schedule.attempt_number.max(1),
            ),
            None => {
                if self.routed_elsewhere(input, &snapshot, &policy, cx).await? {
                    return Ok(());
                }
                (call_id_of(input.meta.event_id), 1)
            }
        };
        let timezone = lead.timezone.parse::<Tz>().unwrap_or(snapshot.timezone);
        let now = Utc::now();
        let (not_before, reason) = match policy.next_allowed(timezone, now) {
            Admission::Now => (now, None),
            Admission::Defer { until } => (until, Some("outside the calling window")),
            Admission::Never => {
                return Err(StageError::rejected(
                    "no time within 14 days is inside both the business hours and the \
                     callee's calling window (08:00-21:00 local and the configured windows)",
                ));
            }
        };
        let lead_json = serde_json::to_value(lead)
            .map_err(|error| StageError::rejected(format!("cannot store the lead: {error}")))?;
        let queued = NewQueued {
            tenant,
            lead_event_id: input.meta.event_id,
            call_id,
            lead: &lead_json,
            to: &lead.phone,
            timezone: timezone.name(),
            not_before,
            deferred_reason: reason,
            attempt_number,
        };
        if !admission::enqueue(cx.tx, &queued).await? {
            tracing::debug!(lead_event_id = %input.meta.event_id, "lead already queued");
        }
        Ok(())
    }
}

impl RateLimit {
    /// Applies the tenant's rules for inbound CRM events: a lead that matches a stop rule has
    /// its retries and follow-ups cancelled and is not called; one that matches a follow-up
    /// campaign's trigger is enrolled in it instead of being called now. Returns true when
    /// the lead went either way.
    async fn routed_elsewhere(
        &self,
        input: &Envelope<LeadResolved>,
        snapshot: &TenantSnapshot,
        policy: &CallingPolicy,
        cx: &mut StageContext<'_>,
    ) -> Result<bool, StageError> {
        let tenant = snapshot.id;
        let lead = &input.payload;
        let rules = &snapshot.configuration.stop_on;
        if let Some(reason) = stop::stop_reason(rules, lead) {
            let cancelled = scheduled_jobs::cancel_for_lead(
                cx.tx,
                tenant,
                Some(&lead.phone),
                lead.external_id.as_deref(),
                &reason,
            )
            .await?;
            tracing::info!(tenant_id = %tenant, %reason, cancelled, "lead stopped by a CRM event; not called");
            return Ok(true);
        }
        let campaigns: Vec<Campaign> = follow_up_campaigns::with_triggers(cx.tx, tenant).await?;
        let candidates = campaigns
            .iter()
            .enumerate()
            .map(|(index, campaign)| (index, campaign.triggers.as_slice()));
        let Some(index) = stop::enrolling(candidates, lead, rules) else {
            return Ok(false);
        };
        let campaign = &campaigns[index];
        let reason = format!("trigger: enrolled in `{}`", campaign.name);
        let written = plan::enroll(
            cx.tx,
            policy,
            snapshot,
            campaign,
            lead,
            &reason,
            input.meta.event_id,
            self.clock.now(),
        )
        .await?;
        tracing::info!(tenant_id = %tenant, campaign = %campaign.name, stages = written, "lead enrolled in a follow-up campaign by a CRM event");
        Ok(true)
    }
}
