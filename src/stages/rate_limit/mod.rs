//! The `rate_limit` stage: resolved leads wait in `admission_queue` until their tenant's
//! limits and calling window let them become calls (ADR 0016).
//!
//! - Consumes: `lead.resolved` (`leads.resolved.<tenant>` on `LEADS`).
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
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::lead_flow::LeadResolved;
use crate::ids::{CallId, EventId};
use crate::shutdown::Shutdown;
use crate::store::admission::{self, NewQueued};
use crate::tenancy::directory::Directory;

/// Queues resolved leads for admission.
#[derive(Debug)]
pub struct RateLimit {
    directory: Directory,
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
            call_id: call_id_of(input.meta.event_id),
            lead: &lead_json,
            to: &lead.phone,
            timezone: timezone.name(),
            not_before,
            deferred_reason: reason,
        };
        if !admission::enqueue(cx.tx, &queued).await? {
            tracing::debug!(lead_event_id = %input.meta.event_id, "lead already queued");
        }
        Ok(())
    }
}
