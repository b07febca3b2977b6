//! Management of a client's follow-up campaigns and of the retry policies of its calling
//! campaigns (ADR 0020), shared by the management API and `caller campaign`.
//!
//! Like [`service`], each change validates, writes and appends its audit entry in the
//! caller's transaction. Pausing a campaign holds its pending stages (`paused`) until it is
//! resumed; a stage whose time passed meanwhile fires at the next window once resumed.

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::FieldError;
use super::audit::{Actor, digest};
use super::config::RetryPolicy;
use super::service::{self, ServiceError, audit};
use crate::ids::TenantId;
use crate::scheduling::campaign::CampaignSpec;
use crate::store::follow_up_campaigns::{self as campaigns, Campaign, RetrySchedule};
use crate::store::scheduled_jobs;

/// The constraint a second campaign of the same name violates.
const NAME_TAKEN: &str = "follow_up_campaigns_tenant_id_name_key";

/// A campaign paused or resumed, with how many of its attempts moved.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CampaignStateChange {
    /// The campaign as it is now.
    #[serde(flatten)]
    pub campaign: Campaign,
    /// Attempts that went from `pending` to `paused` (pause) or back (resume).
    pub jobs_moved: u64,
}

/// Lists a client's follow-up campaigns by name.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Campaign>, ServiceError> {
    Ok(campaigns::list(conn, tenant).await?)
}

/// Returns a campaign by its id or its name.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<Campaign, ServiceError> {
    let found = match Uuid::parse_str(key) {
        Ok(id) => campaigns::get(conn, tenant, id).await?,
        Err(_) => campaigns::by_name(conn, tenant, key).await?,
    };
    found.ok_or(ServiceError::NotFound)
}

/// Creates a campaign; a name the client already uses is a conflict.
pub async fn create(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    spec: &CampaignSpec,
) -> Result<Campaign, ServiceError> {
    validate(conn, tenant, spec).await?;
    let created = campaigns::create(conn, tenant, Uuid::now_v7(), spec)
        .await
        .map_err(|error| name_conflict(error, &spec.name))?;
    audit(
        conn,
        actor,
        Some(tenant),
        "follow_up_campaign.create",
        &target(tenant, created.id),
        None,
        Some(digest(&created)),
    )
    .await?;
    Ok(created)
}

/// Replaces a campaign's name, stages and triggers; attempts already scheduled keep their
/// times.
pub async fn replace(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    key: &str,
    spec: &CampaignSpec,
) -> Result<Campaign, ServiceError> {
    let before = find(conn, tenant, key).await?;
    validate(conn, tenant, spec).await?;
    let after = campaigns::replace(conn, tenant, before.id, spec)
        .await
        .map_err(|error| name_conflict(error, &spec.name))?
        .ok_or(ServiceError::NotFound)?;
    audit(
        conn,
        actor,
        Some(tenant),
        "follow_up_campaign.replace",
        &target(tenant, after.id),
        Some(digest(&before)),
        Some(digest(&after)),
    )
    .await?;
    Ok(after)
}

/// Deletes a campaign with every attempt it scheduled, fired ones included.
pub async fn delete(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    key: &str,
) -> Result<(), ServiceError> {
    let before = find(conn, tenant, key).await?;
    // Its open attempts go; the fired and cancelled ones stay as history.
    scheduled_jobs::cancel_for_campaign(conn, tenant, before.id, "campaign deleted").await?;
    if !campaigns::delete(conn, tenant, before.id).await? {
        return Err(ServiceError::NotFound);
    }
    audit(
        conn,
        actor,
        Some(tenant),
        "follow_up_campaign.delete",
        &target(tenant, before.id),
        Some(digest(&before)),
        None,
    )
    .await
}

/// Pauses a campaign (its pending attempts wait as `paused`, new enrollments too) or resumes
/// it (they are pending again). Pausing a paused campaign changes nothing and is no error.
pub async fn set_paused(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    key: &str,
    paused: bool,
) -> Result<CampaignStateChange, ServiceError> {
    let before = find(conn, tenant, key).await?;
    let state = if paused { "paused" } else { "active" };
    let campaign = campaigns::set_state(conn, tenant, before.id, state)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let jobs_moved = scheduled_jobs::set_campaign_paused(conn, tenant, campaign.id, paused).await?;
    let action = if paused {
        "follow_up_campaign.pause"
    } else {
        "follow_up_campaign.resume"
    };
    audit(
        conn,
        actor,
        Some(tenant),
        action,
        &target(tenant, campaign.id),
        Some(digest(&before)),
        Some(digest(&campaign)),
    )
    .await?;
    Ok(CampaignStateChange {
        campaign,
        jobs_moved,
    })
}

/// Lists the retry policies of the client's calling campaigns.
pub async fn retry_schedules(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<RetrySchedule>, ServiceError> {
    Ok(campaigns::retry_schedules(conn, tenant).await?)
}

/// Sets the retry policy of a calling campaign (the `campaign_id` its leads name), which then
/// overrides the client's `configuration.retry_policy` for them.
pub async fn put_retry_schedule(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    campaign_id: &str,
    policy: &RetryPolicy,
) -> Result<RetrySchedule, ServiceError> {
    let mut errors = Vec::new();
    if !(1..=200).contains(&campaign_id.chars().count()) {
        errors.push(FieldError::new(
            "campaign_id",
            "must be 1 to 200 characters",
        ));
    }
    errors.extend(policy.validate(""));
    // A typo would only show when the first lead runs out of attempts: refuse it now.
    if let Some(name) = &policy.escalate_to
        && errors.is_empty()
        && campaigns::by_name(conn, tenant, name).await?.is_none()
    {
        errors.push(FieldError::new(
            "escalate_to",
            format!("the client has no follow-up campaign `{name}`"),
        ));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    service::client(conn, tenant).await?;
    let before = campaigns::retry_policy(conn, tenant, campaign_id).await?;
    let stored = campaigns::put_retry_policy(conn, tenant, campaign_id, policy).await?;
    audit(
        conn,
        actor,
        Some(tenant),
        "retry_schedule.put",
        &format!("client/{tenant}/retry-schedules/{campaign_id}"),
        before.as_ref().map(digest),
        Some(digest(policy)),
    )
    .await?;
    Ok(stored)
}

/// Removes a calling campaign's own retry policy (its leads follow the client's again).
pub async fn delete_retry_schedule(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    campaign_id: &str,
) -> Result<(), ServiceError> {
    let Some(before) = campaigns::retry_policy(conn, tenant, campaign_id).await? else {
        return Err(ServiceError::NotFound);
    };
    campaigns::delete_retry_policy(conn, tenant, campaign_id).await?;
    audit(
        conn,
        actor,
        Some(tenant),
        "retry_schedule.delete",
        &format!("client/{tenant}/retry-schedules/{campaign_id}"),
        Some(digest(&before)),
        None,
    )
    .await
}

/// Checks a campaign against the client's agent variants.
async fn validate(
    conn: &mut PgConnection,
    tenant: TenantId,
    spec: &CampaignSpec,
) -> Result<(), ServiceError> {
    let variants = service::configuration(conn, tenant)
        .await?
        .agent_variant_names();
    let mut errors = spec.validate(&variants);
    // Campaigns are found by id or by name: a name that reads as an id would be ambiguous.
    if Uuid::parse_str(&spec.name).is_ok() {
        errors.push(FieldError::new("name", "must not be a UUID"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Invalid(errors))
    }
}

fn name_conflict(error: sqlx::Error, name: &str) -> ServiceError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some(NAME_TAKEN) => ServiceError::Conflict(
            format!("the client already has a follow-up campaign `{name}`"),
        ),
        _ => ServiceError::Database(error),
    }
}

fn target(tenant: TenantId, campaign: Uuid) -> String {
    format!("client/{tenant}/follow-up-campaigns/{campaign}")
}
