//! The claim loop: due jobs go back into the pipeline, each exactly once.
//!
//! Every round, in one transaction: claim up to `scheduler.batch` pending jobs whose `due_at`
//! has come, earliest first, with `FOR UPDATE SKIP LOCKED` (several schedulers share the work
//! without coordination: each skips the rows another holds); check each again (its client
//! still active, its window open now: a closed window moves the job to the next opening);
//! publish the rest as `lead.resolved` events and await every PubAck; mark them `fired`; commit.
//!
//! Exactly once: a crash before the commit leaves the jobs `pending` and unlocked, and the
//! next round publishes them again with the same event ids, derived from the job ids. The
//! stream's duplicate window drops a copy published within two minutes; `rate_limit`'s
//! idempotency claim on the event id drops a later one. A job is marked fired only after the
//! stream stored its event, so none is lost.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use chrono_tz::Tz;
use uuid::Uuid;

use crate::bus::envelope::{Envelope, Meta};
use crate::bus::runner::Runtime;
use crate::calls::window::{Admission, CallingPolicy};
use crate::events::lead_flow::{JobKind, LeadResolved, ScheduledAttempt};
use crate::ids::{EventId, TenantId};
use crate::metrics;
use crate::settings::SchedulerSettings;
use crate::shutdown::Shutdown;
use crate::stages::rate_limit::call_id_of;
use crate::store::follow_up_campaigns::{self, Campaign};
use crate::store::scheduled_jobs::{self, Job};
use crate::tenancy::directory::TenantSnapshot;

/// A job whose window is closed now and that has no opening within two weeks waits this long.
const RECHECK: TimeDelta = TimeDelta::days(1);

/// An active tenant's snapshot and calling policy (`None`: unreadable windows).
type ActiveTenant = (Arc<TenantSnapshot>, Option<CallingPolicy>);

/// Runs claim rounds until shutdown; failures are logged and retried with backoff.
pub async fn run(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = runtime.stages.scheduler.clone();
    let mut backoff = settings.poll();
    loop {
        let counters = &runtime.metrics.scheduler;
        let outcome = round(&runtime, &settings).await;
        match &outcome {
            Ok(done) => {
                metrics::add(&counters.fired, done.fired);
                metrics::add(&counters.moved, done.moved);
                metrics::add(&counters.cancelled, done.cancelled);
            }
            Err(_) => metrics::bump(&counters.failed_rounds),
        }
        let pause = match outcome {
            // A full batch: more may be due at once.
            Ok(fired) if fired.claimed >= usize::try_from(settings.batch).unwrap_or(1) => {
                backoff = settings.poll();
                std::time::Duration::ZERO
            }
            Ok(_) => {
                backoff = settings.poll();
                settings.poll()
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "scheduler round failed; retrying"
                );
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Jobs claimed.
    pub claimed: usize,
    /// Jobs published and marked fired.
    pub fired: usize,
    /// Jobs moved to their next window.
    pub moved: usize,
    /// Jobs cancelled (their client was disabled or deleted).
    pub cancelled: usize,
}

/// Claims, checks, publishes and marks one batch of due jobs (one transaction).
///
/// # Errors
///
/// A database or publish failure; the transaction then rolls back and the jobs stay pending.
pub async fn round(runtime: &Runtime, settings: &SchedulerSettings) -> anyhow::Result<Round> {
    let now = runtime.clock.now();
    let mut tx = runtime.store.begin_platform().await?;
    let jobs = scheduled_jobs::claim_due(&mut tx, now, settings.batch.max(1)).await?;
    let mut result = Round {
        claimed: jobs.len(),
        ..Round::default()
    };
    if jobs.is_empty() {
        tx.commit().await?;
        return Ok(result);
    }
    let mut tenants: HashMap<TenantId, Option<ActiveTenant>> = HashMap::new();
    let mut campaigns: HashMap<Uuid, Option<Campaign>> = HashMap::new();
    let mut messages = Vec::with_capacity(jobs.len());
    let mut fired: Vec<(Uuid, Option<Uuid>)> = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if let std::collections::hash_map::Entry::Vacant(entry) = tenants.entry(job.tenant) {
            let snapshot = runtime.directory.tenant(job.tenant).await?;
            entry.insert(snapshot.filter(|snapshot| snapshot.active).map(|snapshot| {
                let policy = super::plan::calling_policy(&snapshot);
                (snapshot, policy)
            }));
        }
        let Some((snapshot, policy)) = tenants.get(&job.tenant).and_then(Option::as_ref) else {
            scheduled_jobs::cancel(&mut tx, job.tenant, job.id, "client disabled").await?;
            result.cancelled += 1;
            continue;
        };
        // The windows again: the tenant may have changed them since the job was planned.
        let tz = job.timezone.parse::<Tz>().unwrap_or(snapshot.timezone);
        let next = policy.as_ref().map(|policy| policy.next_allowed(tz, now));
        match next {
            Some(Admission::Now) => {}
            Some(Admission::Defer { until }) => {
                scheduled_jobs::move_due(&mut tx, job.id, until).await?;
                result.moved += 1;
                continue;
            }
            Some(Admission::Never) | None => {
                scheduled_jobs::move_due(&mut tx, job.id, now + RECHECK).await?;
                result.moved += 1;
                continue;
            }
        }
        let campaign = match job.campaign_id {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(entry) = campaigns.entry(id) {
                    entry.insert(follow_up_campaigns::get(&mut tx, job.tenant, id).await?);
                }
                campaigns.get(&id).and_then(Option::as_ref)
            }
            None => None,
        };
        let stage = campaign.and_then(|campaign| {
            let index = usize::try_from(job.stage_index?).ok()?;
            campaign.stages.get(index)
        });
        let campaign_name = campaign.map(|campaign| campaign.name.clone());
        match envelope(job, campaign_name, stage) {
            Ok(envelope) => {
                let call = match job.kind() {
                    JobKind::Retry => job.call_id,
                    JobKind::FollowUp | JobKind::Callback => {
                        Some(call_id_of(envelope.meta.event_id).as_uuid())
                    }
                };
                match envelope.to_message() {
                    Ok(message) => {
                        messages.push(message);
                        fired.push((job.id, call));
                    }
                    Err(error) => {
                        tracing::error!(%error, job_id = %job.id, "scheduled job cannot be published; cancelled");
                        scheduled_jobs::cancel(&mut tx, job.tenant, job.id, "unpublishable")
                            .await?;
                        result.cancelled += 1;
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), job_id = %job.id, "scheduled job unreadable; cancelled");
                scheduled_jobs::cancel(&mut tx, job.tenant, job.id, "unreadable lead").await?;
                result.cancelled += 1;
            }
        }
    }
    runtime.bus.publish_all(&messages).await?;
    fault_point(settings, "after_publish").await;
    scheduled_jobs::mark_fired(&mut tx, &fired, now).await?;
    tx.commit().await?;
    result.fired = fired.len();
    Ok(result)
}

/// Returns the event a job fires: the stored lead with the job as its `schedule`, under an id
/// derived from the job.
///
/// # Errors
///
/// The stored lead does not parse (only this build writes it).
pub fn envelope(
    job: &Job,
    campaign_name: Option<String>,
    stage: Option<&crate::scheduling::campaign::CampaignStage>,
) -> anyhow::Result<Envelope<LeadResolved>> {
    let mut lead: LeadResolved = serde_json::from_value(job.lead.clone())?;
    let kind = job.kind();
    lead.schedule = Some(ScheduledAttempt {
        job_id: job.id,
        kind,
        reason: job.reason.clone(),
        call_id: match kind {
            JobKind::Retry => job.call_id.map(crate::ids::CallId::from_uuid),
            JobKind::FollowUp | JobKind::Callback => None,
        },
        attempt_number: u32::try_from(job.attempt_number).unwrap_or(1),
        campaign_id: job.campaign_id,
        campaign_name,
        stage_index: job.stage_index.and_then(|index| u32::try_from(index).ok()),
        agent_variant: stage.and_then(|stage| stage.agent_variant.clone()),
        message: stage.and_then(|stage| stage.message.clone()),
    });
    let mut meta = Meta::new::<LeadResolved>(job.tenant, "caller/stage/scheduler");
    meta.event_id = fired_event_id(job.id);
    if kind == JobKind::Retry {
        meta.call_id = job.call_id.map(crate::ids::CallId::from_uuid);
    }
    Ok(Envelope {
        meta,
        payload: lead,
    })
}

/// Returns the id of the event a job fires as: the same on every try.
#[must_use]
pub fn fired_event_id(job: Uuid) -> EventId {
    EventId::derived(EventId::from_uuid(job), &[b"scheduler", b"fired"])
}

/// Stops here forever when the test-only fault point `point` is configured, so that a test
/// can kill the process at exactly this step.
async fn fault_point(settings: &SchedulerSettings, point: &str) {
    if settings.fault_pause_at == point {
        tracing::error!(point, "fault point reached; pausing until killed");
        std::future::pending::<()>().await;
    }
}
