//! `scheduled_jobs`: retries and follow-up stages waiting for their time (ADR 0020).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::events::lead_flow::JobKind;
use crate::ids::{CallId, EventId, PhoneNumber, TenantId};

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// Derived from what scheduled it.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: TenantId,
    /// Retry or follow-up.
    pub kind: JobKind,
    /// The callee.
    pub to: &'a PhoneNumber,
    /// The lead's CRM id.
    pub crm_contact_id: Option<&'a str>,
    /// A retry: the call dialed again.
    pub call_id: Option<CallId>,
    /// The attempt it becomes.
    pub attempt_number: u32,
    /// A follow-up: its campaign and stage.
    pub campaign: Option<(Uuid, u32)>,
    /// Inserted `paused` (its campaign is paused) instead of `pending`.
    pub paused: bool,
    /// When it may fire (inside the windows).
    pub due_at: DateTime<Utc>,
    /// What the ladder step or stage asked for.
    pub earliest_at: DateTime<Utc>,
    /// Why.
    pub reason: &'a str,
    /// The lead's zone.
    pub timezone: &'a str,
    /// The zone is the tenant's fallback.
    pub timezone_fallback: bool,
    /// The lead (LeadResolved as JSON, without `schedule`).
    pub lead: &'a serde_json::Value,
    /// The event whose handling scheduled it.
    pub source_event_id: EventId,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    /// The job.
    pub id: Uuid,
    /// Its tenant.
    #[serde(skip)]
    pub tenant: TenantId,
    /// `retry`, `follow_up` or `callback`.
    pub kind: String,
    /// `pending`, `paused`, `fired` or `cancelled`.
    pub state: String,
    /// The callee (E.164).
    pub to_number: String,
    /// The lead's CRM id.
    pub crm_contact_id: Option<String>,
    /// A retry: the call dialed again; a fired follow-up: the call it became.
    pub call_id: Option<Uuid>,
    /// The attempt it becomes.
    pub attempt_number: i32,
    /// A follow-up: its campaign.
    pub campaign_id: Option<Uuid>,
    /// A follow-up: its stage, from 0.
    pub stage_index: Option<i32>,
    /// When it fires (inside the lead's windows).
    pub due_at: DateTime<Utc>,
    /// What the ladder step or stage asked for, before windows moved it.
    pub earliest_at: DateTime<Utc>,
    /// Why it exists.
    pub reason: String,
    /// The lead's zone its times are computed in.
    pub timezone: String,
    /// True when the lead's zone was unknown and the tenant's was used.
    pub timezone_fallback: bool,
    /// The lead as resolved.
    #[serde(skip)]
    pub lead: serde_json::Value,
    /// When it fired.
    pub fired_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
}

impl Job {
    /// Returns its kind.
    #[must_use]
    pub fn kind(&self) -> JobKind {
        JobKind::parse(&self.kind).unwrap_or(JobKind::Retry)
    }
}

/// Every column of a job, in [`Job`]'s order.
macro_rules! job_columns {
    () => {
        "id, tenant_id, kind, state, to_number, crm_contact_id, call_id, attempt_number, \
         campaign_id, stage_index, due_at, earliest_at, reason, timezone, timezone_fallback, \
         lead, fired_at, cancelled_at, cancel_reason, created_at"
    };
}

/// A row as read.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    tenant_id: Uuid,
    kind: String,
    state: String,
    to_number: String,
    crm_contact_id: Option<String>,
    call_id: Option<Uuid>,
    attempt_number: i32,
    campaign_id: Option<Uuid>,
    stage_index: Option<i32>,
    due_at: DateTime<Utc>,
    earliest_at: DateTime<Utc>,
    reason: String,
    timezone: String,
    timezone_fallback: bool,
    lead: serde_json::Value,
    fired_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.id,
            tenant: TenantId::from_uuid(row.tenant_id),
            kind: row.kind,
            state: row.state,
            to_number: row.to_number,
            crm_contact_id: row.crm_contact_id,
            call_id: row.call_id,
            attempt_number: row.attempt_number,
            campaign_id: row.campaign_id,
            stage_index: row.stage_index,
            due_at: row.due_at,
            earliest_at: row.earliest_at,
            reason: row.reason,
            timezone: row.timezone,
            timezone_fallback: row.timezone_fallback,
            lead: row.lead,
            fired_at: row.fired_at,
            cancelled_at: row.cancelled_at,
            cancel_reason: row.cancel_reason,
            created_at: row.created_at,
        }
    }
}

/// Inserts a job; false when a job with its id exists (a replayed decision).
pub async fn insert(conn: &mut PgConnection, job: &NewJob<'_>) -> Result<bool, sqlx::Error> {
    let (campaign_id, stage_index) = job.campaign.map_or((None, None), |(id, stage)| {
        (Some(id), Some(i32::try_from(stage).unwrap_or(i32::MAX)))
    });
    let inserted = sqlx::query!(
        "INSERT INTO scheduled_jobs
             (id, tenant_id, kind, to_number, crm_contact_id, call_id, attempt_number,
              campaign_id, stage_index, due_at, earliest_at, reason, timezone,
              timezone_fallback, lead, source_event_id, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO NOTHING",
        job.id,
        job.tenant.as_uuid(),
        job.kind.as_str(),
        job.to.as_str(),
        job.crm_contact_id,
        job.call_id.map(|call| call.as_uuid()),
        i32::try_from(job.attempt_number).unwrap_or(i32::MAX),
        campaign_id,
        stage_index,
        job.due_at,
        job.earliest_at,
        job.reason,
        job.timezone,
        job.timezone_fallback,
        job.lead,
        job.source_event_id.as_uuid(),
        if job.paused { "paused" } else { "pending" },
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Claims up to `limit` pending jobs due at `now`, earliest first, platform-wide: locked
/// until the transaction ends, and skipped by every other scheduler meanwhile.
///
/// Turns sequential scans off for the rest of the transaction (see the note inside).
pub async fn claim_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    // NOTE: the planner cannot estimate the row-level security filter
    // (`app_is_platform() OR tenant_id = app_tenant_id()`, opaque settings), guesses that
    // well under 1 % of the due rows pass it, and concludes that reading the whole table and
    // sorting it beats walking `scheduled_jobs_due` in order until `limit` rows. With 100,000
    // jobs due that is a sequential scan and a 50 MB on-disk sort per claim, 120 ms instead of
    // under 1 ms (docs/benchmarks.md, scheduler). `SET LOCAL` lasts until the transaction
    // ends; the round's other statements are lookups and updates by id, which never want a
    // sequential scan either.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *conn)
        .await?;
    let rows: Vec<JobRow> = sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM scheduled_jobs WHERE state = 'pending' AND due_at <= $1
          ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Job::from).collect())
}

/// Marks claimed jobs fired; a follow-up records the call it became.
pub async fn mark_fired(
    conn: &mut PgConnection,
    fired: &[(Uuid, Option<Uuid>)],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = fired.iter().map(|(id, _)| *id).collect();
    let calls: Vec<Option<Uuid>> = fired.iter().map(|(_, call)| *call).collect();
    sqlx::query!(
        "UPDATE scheduled_jobs j
            SET state = 'fired', fired_at = $3, updated_at = now(),
                call_id = coalesce(j.call_id, f.call_id)
           FROM unnest($1::uuid[], $2::uuid[]) AS f (id, call_id)
          WHERE j.id = f.id AND j.state = 'pending'",
        &ids,
        &calls as &[Option<Uuid>],
        at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a claimed job's time (its window closed, or its tenant's windows changed).
pub async fn move_due(
    conn: &mut PgConnection,
    id: Uuid,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE scheduled_jobs SET due_at = $2, updated_at = now()
          WHERE id = $1 AND state = 'pending'",
        id,
        due_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels one job that has not fired; returns it, or `None` when it does not exist or
/// already fired or was cancelled.
pub async fn cancel(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    reason: &str,
) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(concat!(
        "UPDATE scheduled_jobs SET state = 'cancelled', cancelled_at = now(),
                cancel_reason = $3, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 AND state IN ('pending', 'paused')
          RETURNING ",
        job_columns!()
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    let job = row.map(Job::from);
    if let Some(job) = &job
        && job.kind() == JobKind::Retry
        && let Some(call) = job.call_id
    {
        settle_calls(conn, &[call]).await?;
    }
    Ok(job)
}

/// Cancels every job of a lead that has not dialed, found by its number or its CRM id, and
/// drops the lead's first calls still waiting for admission; returns how many jobs.
///
/// "Not dialed" includes a job that fired but whose attempt has no intent row yet (its lead
/// waits in admission, or its `call.requested` waits for the dial stage): the dial stage
/// finds it cancelled and does not dial. The dial stage holds a share lock on the job while it
/// dials, so this waits for a dial in progress and then sees its attempt.
pub async fn cancel_for_lead(
    conn: &mut PgConnection,
    tenant: TenantId,
    phone: Option<&PhoneNumber>,
    crm_contact_id: Option<&str>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    if phone.is_none() && crm_contact_id.is_none() {
        return Ok(0);
    }
    let retried = sqlx::query_scalar!(
        r#"UPDATE scheduled_jobs j SET state = 'cancelled', cancelled_at = now(),
                cancel_reason = $4, updated_at = now()
          WHERE j.tenant_id = $1 AND (j.to_number = $2 OR j.crm_contact_id = $3)
            AND (j.state IN ('pending', 'paused')
                 OR (j.state = 'fired'
                     AND NOT EXISTS (SELECT 1 FROM call_attempts a
                                      WHERE a.call_id = j.call_id
                                        AND a.attempt_number >= j.attempt_number)))
          RETURNING CASE WHEN j.kind = 'retry' THEN j.call_id END AS "call_id?""#,
        tenant.as_uuid(),
        phone.map(PhoneNumber::as_str),
        crm_contact_id,
        reason,
    )
    .fetch_all(&mut *conn)
    .await?;
    let cancelled = u64::try_from(retried.len()).unwrap_or(u64::MAX);
    settle_calls(conn, &retried.into_iter().flatten().collect::<Vec<_>>()).await?;
    if let Some(phone) = phone {
        // A first call still waiting for its window has no call row yet: it simply goes.
        sqlx::query!(
            "DELETE FROM admission_queue
              WHERE tenant_id = $1 AND to_number = $2 AND state = 'waiting'
                AND attempt_number = 1 AND lead->'schedule' IS NULL",
            tenant.as_uuid(),
            phone.as_str(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(cancelled)
}

/// Moves the calls of cancelled retries from `retry_scheduled` to `cancelled`, logged (the
/// `CancelledByUs` edge of `calls::state`): a call whose retry will never come is settled.
async fn settle_calls(conn: &mut PgConnection, calls: &[Uuid]) -> Result<(), sqlx::Error> {
    if calls.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "WITH moved AS (
             UPDATE calls SET state = 'cancelled'
              WHERE id = ANY($1) AND state = 'retry_scheduled'
              RETURNING id, tenant_id)
         INSERT INTO call_state_transitions (tenant_id, call_id, machine, from_state, to_state)
         SELECT tenant_id, id, 'call', 'retry_scheduled', 'cancelled' FROM moved",
        calls,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels every job of a tenant that has not fired; returns how many.
pub async fn cancel_for_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let retried = sqlx::query_scalar!(
        r#"UPDATE scheduled_jobs SET state = 'cancelled', cancelled_at = now(),
                cancel_reason = $2, updated_at = now()
          WHERE tenant_id = $1 AND state IN ('pending', 'paused')
          RETURNING CASE WHEN kind = 'retry' THEN call_id END AS "call_id?""#,
        tenant.as_uuid(),
        reason,
    )
    .fetch_all(&mut *conn)
    .await?;
    let cancelled = u64::try_from(retried.len()).unwrap_or(u64::MAX);
    settle_calls(conn, &retried.into_iter().flatten().collect::<Vec<_>>()).await?;
    Ok(cancelled)
}

/// Moves a job that has not fired to `due_at` (already inside the windows); returns it.
pub async fn reschedule(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    due_at: DateTime<Utc>,
    earliest_at: DateTime<Utc>,
) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(concat!(
        "UPDATE scheduled_jobs SET due_at = $3, earliest_at = $4, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 AND state IN ('pending', 'paused')
          RETURNING ",
        job_columns!()
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(due_at)
    .bind(earliest_at)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Job::from))
}

/// Cancels the open jobs of a campaign (it is being deleted); returns how many.
pub async fn cancel_for_campaign(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE scheduled_jobs SET state = 'cancelled', cancelled_at = now(),
                cancel_reason = $3, updated_at = now()
          WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('pending', 'paused')",
        tenant.as_uuid(),
        campaign,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Pauses (`pending` → `paused`) or resumes (`paused` → `pending`) a campaign's jobs;
/// returns how many moved.
///
/// Resuming does not call a lead once per stage it missed: of a lead's stages that fell due
/// while the campaign was paused, only the last one is kept; the earlier ones are cancelled as
/// skipped.
pub async fn set_campaign_paused(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    paused: bool,
) -> Result<u64, sqlx::Error> {
    let (from, to) = if paused {
        ("pending", "paused")
    } else {
        ("paused", "pending")
    };
    if !paused {
        sqlx::query!(
            "UPDATE scheduled_jobs j
                SET state = 'cancelled', cancelled_at = now(), updated_at = now(),
                    cancel_reason = 'skipped: fell due while the campaign was paused'
              WHERE j.tenant_id = $1 AND j.campaign_id = $2 AND j.state = 'paused'
                AND j.due_at < now()
                AND EXISTS (SELECT 1 FROM scheduled_jobs k
                             WHERE k.tenant_id = j.tenant_id AND k.campaign_id = j.campaign_id
                               AND k.to_number = j.to_number AND k.state = 'paused'
                               AND k.due_at < now() AND k.due_at > j.due_at)",
            tenant.as_uuid(),
            campaign,
        )
        .execute(&mut *conn)
        .await?;
    }
    let done = sqlx::query!(
        "UPDATE scheduled_jobs SET state = $4, updated_at = now()
          WHERE tenant_id = $1 AND campaign_id = $2 AND state = $3",
        tenant.as_uuid(),
        campaign,
        from,
        to,
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Returns a job's state and cancel reason, share-locked until the transaction ends (the
/// dial stage holds it while it dials, so a cancel waits and then sees the attempt).
pub async fn lock_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT state, cancel_reason FROM scheduled_jobs WHERE tenant_id = $1 AND id = $2
         FOR SHARE",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| (row.state, row.cancel_reason)))
}

/// Returns one job, locked until the transaction ends (the claim loop skips it meanwhile), so
/// a change computed from it applies to the job as read.
pub async fn get_for_update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM scheduled_jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Job::from))
}

/// Returns a job's state (`None`: no such job).
pub async fn state_of(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT state, cancel_reason FROM scheduled_jobs WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| (row.state, row.cancel_reason)))
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// The lead's number.
    pub phone: Option<PhoneNumber>,
    /// The lead's CRM id.
    pub crm_contact_id: Option<String>,
    /// A follow-up campaign.
    pub campaign_id: Option<Uuid>,
    /// A call.
    pub call_id: Option<Uuid>,
    /// Only jobs in this state.
    pub state: Option<String>,
}

/// Lists up to `limit` of a tenant's jobs matching `filter`, by due time.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &JobFilter,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(concat!(
        "SELECT ",
        job_columns!(),
        " FROM scheduled_jobs
          WHERE tenant_id = $1
            AND ($2::text IS NULL OR to_number = $2)
            AND ($3::text IS NULL OR crm_contact_id = $3)
            AND ($4::uuid IS NULL OR campaign_id = $4)
            AND ($5::uuid IS NULL OR call_id = $5)
            AND ($6::text IS NULL OR state = $6)
          ORDER BY due_at, id LIMIT $7"
    ))
    .bind(tenant.as_uuid())
    .bind(filter.phone.as_ref().map(PhoneNumber::as_str))
    .bind(filter.crm_contact_id.as_deref())
    .bind(filter.campaign_id)
    .bind(filter.call_id)
    .bind(filter.state.as_deref())
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Job::from).collect())
}

/// Returns how many pending jobs are due now, and how many of those have been due for more
/// than `late_after` (the scheduler is behind, or not running): platform-wide.
pub async fn backlog(
    conn: &mut PgConnection,
    late_after: chrono::TimeDelta,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "due!",
                  count(*) FILTER (WHERE due_at < now() - make_interval(secs => $1))
                      AS "overdue!"
             FROM scheduled_jobs WHERE state = 'pending' AND due_at <= now()"#,
        late_after.as_seconds_f64(),
    )
    .fetch_one(conn)
    .await?;
    Ok((row.due, row.overdue))
}

/// Returns whether the lead (by number) has open (pending or paused) stages of `campaign`.
pub async fn enrolled(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign: Uuid,
    phone: &PhoneNumber,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM scheduled_jobs
                           WHERE tenant_id = $1 AND to_number = $2 AND campaign_id = $3
                             AND state IN ('pending', 'paused')) AS "enrolled!""#,
        tenant.as_uuid(),
        phone.as_str(),
        campaign,
    )
    .fetch_one(conn)
    .await
}
