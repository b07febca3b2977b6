//! Writing decisions as jobs: a retry of a call, or a lead's enrollment in a campaign. Used by
//! the scheduler stage (outcomes) and by rate_limit (CRM events that enroll a lead).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::calls::window::CallingPolicy;
use crate::events::lead_flow::{JobKind, LeadResolved};
use crate::ids::{CallId, EventId};
use crate::scheduling::{campaign, timing, zone};
use crate::store::follow_up_campaigns::Campaign;
use crate::store::scheduled_jobs::{self, NewJob};
use crate::tenancy::directory::TenantSnapshot;

/// When nothing is allowed within the windows' two-week horizon (a long run of holidays), the
/// job is parked this far ahead and fitted again when it comes due.
const PARK: TimeDelta = TimeDelta::days(14);

/// Returns the instant a job planned for `earliest` fires: inside the windows.
pub fn due(
    policy: &CallingPolicy,
    tz: chrono_tz::Tz,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    timing::fit(policy, tz, earliest, now).unwrap_or_else(|| earliest.max(now) + PARK)
}

/// Returns the lead stored with a job: without its own `schedule` (the job adds a fresh one
/// when it fires).
pub fn lead_json(lead: &LeadResolved) -> serde_json::Value {
    let mut lead = lead.clone();
    lead.schedule = None;
    serde_json::to_value(lead).unwrap_or(serde_json::Value::Null)
}

/// A retry to write.
pub struct Retry<'a> {
    /// The tenant.
    pub snapshot: &'a TenantSnapshot,
    /// The call dialed again.
    pub call_id: CallId,
    /// Its lead.
    pub lead: &'a LeadResolved,
    /// The lead's CRM id.
    pub crm_contact_id: Option<&'a str>,
    /// The attempt it becomes.
    pub attempt_number: u32,
    /// The ladder step's instant.
    pub earliest: DateTime<Utc>,
    /// Why.
    pub reason: &'a str,
    /// The event deciding it (its id keys the job).
    pub source: EventId,
    /// Now, on the scheduler's clock.
    pub now: DateTime<Utc>,
}

/// Writes a retry job; returns its id and due time (`None` when a replay already wrote it).
pub async fn retry(
    conn: &mut PgConnection,
    policy: &CallingPolicy,
    retry: &Retry<'_>,
) -> Result<Option<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    let zone = zone::of(retry.lead, retry.snapshot.timezone);
    let due_at = due(policy, zone.tz, retry.earliest, retry.now);
    let id = EventId::derived(retry.source, &[b"scheduler", b"retry"]).as_uuid();
    let inserted = scheduled_jobs::insert(
        conn,
        &NewJob {
            id,
            tenant: retry.snapshot.id,
            kind: JobKind::Retry,
            to: &retry.lead.phone,
            crm_contact_id: retry.crm_contact_id,
            call_id: Some(retry.call_id),
            attempt_number: retry.attempt_number,
            campaign: None,
            paused: false,
            due_at,
            earliest_at: retry.earliest,
            reason: retry.reason,
            timezone: zone.tz.name(),
            timezone_fallback: zone.fallback,
            lead: &lead_json(retry.lead),
            source_event_id: retry.source,
        },
    )
    .await?;
    Ok(inserted.then_some((id, due_at)))
}

/// Enrolls a lead in every stage of `campaign`, from `now`; returns how many jobs were
/// written (none when a replay already enrolled it for this `source`, or when the lead still
/// has open stages of this campaign).
#[allow(clippy::too_many_arguments)]
pub async fn enroll(
    conn: &mut PgConnection,
    policy: &CallingPolicy,
    snapshot: &TenantSnapshot,
    campaign: &Campaign,
    lead: &LeadResolved,
    reason: &str,
    source: EventId,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    // A lead already on its way through this campaign (a second CRM event, a second
    // escalation) is not enrolled again: it would be called twice per stage.
    if scheduled_jobs::enrolled(conn, snapshot.id, campaign.id, &lead.phone).await? {
        return Ok(0);
    }
    let zone = zone::of(lead, snapshot.timezone);
    let stored = lead_json(lead);
    let mut written = 0;
    for (index, stage) in campaign.stages.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let earliest = campaign::stage_time(now, zone.tz, stage);
        let due_at = due(policy, zone.tz, earliest, now);
        let id = EventId::derived(
            source,
            &[
                b"scheduler",
                b"follow_up",
                campaign.id.as_bytes(),
                &index.to_be_bytes(),
            ],
        )
        .as_uuid();
        let inserted = scheduled_jobs::insert(
            conn,
            &NewJob {
                id,
                tenant: snapshot.id,
                kind: JobKind::FollowUp,
                to: &lead.phone,
                crm_contact_id: lead.external_id.as_deref(),
                call_id: None,
                attempt_number: 1,
                campaign: Some((campaign.id, index)),
                paused: campaign.is_paused(),
                due_at,
                earliest_at: earliest,
                reason,
                timezone: zone.tz.name(),
                timezone_fallback: zone.fallback,
                lead: &stored,
                source_event_id: source,
            },
        )
        .await?;
        written += usize::from(inserted);
    }
    Ok(written)
}

/// Returns the tenant's calling policy, or `None` when its windows are unreadable (a
/// validated configuration has none such).
pub fn calling_policy(snapshot: &TenantSnapshot) -> Option<CallingPolicy> {
    CallingPolicy::from_config(&snapshot.configuration, snapshot.timezone).ok()
}
