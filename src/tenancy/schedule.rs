//! Management of a client's scheduled attempts (retries and follow-up stages, ADR 0020):
//! listing them, cancelling one or every one of a lead, moving one to another time.
//!
//! The management API and `caller schedule` both call these, so validation, the time a moved
//! attempt lands at and the cancel semantics live here once. Like [`service`], each change
//! appends its audit entry in the caller's transaction.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use sqlx::PgConnection;
use utoipa::IntoParams;
use uuid::Uuid;

use super::FieldError;
use super::audit::{Actor, digest};
use super::follow_ups;
use super::service::{self, ServiceError, audit};
use crate::calls::window::CallingPolicy;
use crate::ids::{PhoneNumber, TenantId};
use crate::stages::scheduler::plan;
use crate::store::scheduled_jobs::{self, Job, JobFilter};

/// Attempts listed when no limit is given.
pub const DEFAULT_LIMIT: i64 = 100;

/// Most attempts one list returns.
pub const MAX_LIMIT: i64 = 1_000;

/// Longest cancel reason (the column's limit).
const MAX_REASON_CHARS: usize = 500;

/// Furthest ahead an attempt may be moved: the furthest a campaign stage may be planned.
const MAX_RESCHEDULE_AHEAD: TimeDelta = TimeDelta::days(366);

/// The reason recorded when a person cancels without giving one.
const MANUAL_REASON: &str = "cancelled manually";

/// The states an attempt can be in.
const STATES: [&str; 4] = ["pending", "paused", "fired", "cancelled"];

/// Filters of the attempt list as given (a query string, command-line flags): parsed and
/// checked by [`list`].
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only this lead's number: E.164, or national in the client's region.
    pub phone: Option<String>,
    /// Only the lead with this CRM id.
    pub crm_contact_id: Option<String>,
    /// Only this follow-up campaign's stages: its id or its name.
    pub campaign_id: Option<String>,
    /// Only this call's retries (or the follow-up that became it).
    pub call_id: Option<String>,
    /// Only attempts in this state: `pending`, `paused`, `fired` or `cancelled`.
    pub state: Option<String>,
    /// Most attempts returned, 1-1000 (default 100).
    pub limit: Option<i64>,
}

/// Lists a client's attempts matching `query`, by due time.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    query: &JobQuery,
) -> Result<Vec<Job>, ServiceError> {
    let mut errors = Vec::new();
    let phone = match given(query.phone.as_deref()) {
        Some(raw) => lead_phone(conn, tenant, "phone", raw, &mut errors).await?,
        None => None,
    };
    let campaign_id = match given(query.campaign_id.as_deref()) {
        Some(key) => match follow_ups::find(conn, tenant, key).await {
            Ok(campaign) => Some(campaign.id),
            Err(ServiceError::NotFound) => {
                errors.push(FieldError::new(
                    "campaign_id",
                    format!("the client has no follow-up campaign `{key}`"),
                ));
                None
            }
            Err(error) => return Err(error),
        },
        None => None,
    };
    let call_id = given(query.call_id.as_deref()).and_then(|raw| {
        Uuid::parse_str(raw)
            .inspect_err(|_| errors.push(FieldError::new("call_id", "must be a call id (UUID)")))
            .ok()
    });
    let state = given(query.state.as_deref()).map(str::to_owned);
    if let Some(state) = &state
        && !STATES.contains(&state.as_str())
    {
        errors.push(FieldError::new(
            "state",
            format!("must be one of {}", STATES.join(", ")),
        ));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let filter = JobFilter {
        phone,
        crm_contact_id: given(query.crm_contact_id.as_deref()).map(str::to_owned),
        campaign_id,
        call_id,
        state,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok(scheduled_jobs::list(conn, tenant, &filter, limit).await?)
}

/// Cancels one attempt that has not fired; `NotFound` when there is none, `Conflict` when it
/// already fired or was cancelled.
pub async fn cancel(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    job: Uuid,
    reason: Option<&str>,
) -> Result<Job, ServiceError> {
    let mut errors = Vec::new();
    let reason = checked_reason(reason, &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let Some(cancelled) = scheduled_jobs::cancel(conn, tenant, job, reason).await? else {
        return Err(settled(conn, tenant, job).await);
    };
    audit(
        conn,
        actor,
        Some(tenant),
        "scheduled_attempt.cancel",
        &format!("client/{tenant}/scheduled-attempts/{job}"),
        None,
        Some(digest(&cancelled)),
    )
    .await?;
    Ok(cancelled)
}

/// Moves an attempt that has not fired to `at`, or to the first instant after it inside the
/// lead's windows (on the lead's clock, as every scheduled attempt); `at` is kept as the
/// attempt's `earliest_at`. `at` must not be before `now`.
pub async fn reschedule(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    job: Uuid,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Job, ServiceError> {
    if at < now {
        return Err(invalid("at", "must not be in the past"));
    }
    if at > now + MAX_RESCHEDULE_AHEAD {
        return Err(invalid("at", "must be within 366 days"));
    }
    let Some(before) = scheduled_jobs::get_for_update(conn, tenant, job).await? else {
        return Err(ServiceError::NotFound);
    };
    if !matches!(before.state.as_str(), "pending" | "paused") {
        return Err(already(&before.state));
    }
    let (policy, business_tz) = calling_policy(conn, tenant).await?;
    // The zone the job was planned in; one that no longer parses falls back like a lead's.
    let lead_tz = before.timezone.parse().unwrap_or(business_tz);
    let due_at = plan::due(&policy, lead_tz, at, now);
    let Some(after) = scheduled_jobs::reschedule(conn, tenant, job, due_at, at).await? else {
        return Err(settled(conn, tenant, job).await);
    };
    audit(
        conn,
        actor,
        Some(tenant),
        "scheduled_attempt.reschedule",
        &format!("client/{tenant}/scheduled-attempts/{job}"),
        Some(digest(&before)),
        Some(digest(&after)),
    )
    .await?;
    Ok(after)
}

/// Cancels every attempt of a lead that has not fired, found by its number, its CRM id or
/// either; returns how many.
pub async fn cancel_for_lead(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    phone: Option<&str>,
    crm_contact_id: Option<&str>,
    reason: Option<&str>,
) -> Result<u64, ServiceError> {
    let mut errors = Vec::new();
    let (raw_phone, contact) = (given(phone), given(crm_contact_id));
    if raw_phone.is_none() && contact.is_none() {
        for field in ["phone", "crm_contact_id"] {
            errors.push(FieldError::new(
                field,
                "give the lead's phone, its crm_contact_id or both",
            ));
        }
    }
    let phone = match raw_phone {
        Some(raw) => lead_phone(conn, tenant, "phone", raw, &mut errors).await?,
        None => None,
    };
    let reason = checked_reason(reason, &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let cancelled =
        scheduled_jobs::cancel_for_lead(conn, tenant, phone.as_ref(), contact, reason).await?;
    if cancelled > 0 {
        // The lead's identity goes into the digest only: the audit log holds no phone numbers.
        let lead = serde_json::json!({
            "phone": phone,
            "crm_contact_id": contact,
            "cancelled": cancelled,
        });
        audit(
            conn,
            actor,
            Some(tenant),
            "lead.cancel_scheduled",
            &format!("client/{tenant}/scheduled-attempts"),
            None,
            Some(digest(&lead)),
        )
        .await?;
    }
    Ok(cancelled)
}

/// Returns the client's calling policy and the business's zone (what a lead's zone falls back
/// to).
pub async fn calling_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<(CallingPolicy, chrono_tz::Tz), ServiceError> {
    let client = service::client(conn, tenant).await?;
    let configuration = service::configuration(conn, tenant).await?;
    let business_tz = configuration.business_timezone(&client.timezone);
    let policy = CallingPolicy::from_config(&configuration, business_tz)
        .map_err(|error| ServiceError::Internal(format!("calling windows unreadable: {error}")))?;
    Ok((policy, business_tz))
}

/// Parses a lead's number the way leads' numbers are read (national numbers in the client's
/// region); a bad one is a field error.
async fn lead_phone(
    conn: &mut PgConnection,
    tenant: TenantId,
    field: &str,
    raw: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Option<PhoneNumber>, ServiceError> {
    let region = service::configuration(conn, tenant).await?.lead_region();
    Ok(crate::phone::parse(raw, Some(&region))
        .inspect_err(|error| errors.push(FieldError::new(field, error.to_string())))
        .ok())
}

/// Explains why a change to `job` matched nothing: it does not exist, or it is settled.
async fn settled(conn: &mut PgConnection, tenant: TenantId, job: Uuid) -> ServiceError {
    match scheduled_jobs::state_of(conn, tenant, job).await {
        Ok(Some((state, _))) => already(&state),
        Ok(None) => ServiceError::NotFound,
        Err(error) => error.into(),
    }
}

fn already(state: &str) -> ServiceError {
    ServiceError::Conflict(format!("the attempt is already {state}"))
}

/// Returns the reason to record: the one given, else [`MANUAL_REASON`]; one too long is a
/// field error.
fn checked_reason<'a>(reason: Option<&'a str>, errors: &mut Vec<FieldError>) -> &'a str {
    let reason = given(reason).unwrap_or(MANUAL_REASON);
    if reason.chars().count() > MAX_REASON_CHARS {
        errors.push(FieldError::new("reason", "must be at most 500 characters"));
    }
    reason
}

/// Returns the text unless it is absent or blank (an empty query parameter means no filter).
fn given(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|text| !text.is_empty())
}

fn invalid(field: &str, message: &str) -> ServiceError {
    ServiceError::Invalid(vec![FieldError::new(field, message)])
}
