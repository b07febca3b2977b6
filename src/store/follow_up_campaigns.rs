//! `follow_up_campaigns` and `retry_schedules`: a tenant's follow-up campaigns and the retry
//! policies of its calling campaigns.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::TenantId;
use crate::scheduling::campaign::{CampaignSpec, CampaignStage, Trigger};
use crate::tenancy::config::RetryPolicy;

/// A campaign as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Campaign {
    /// The campaign.
    pub id: Uuid,
    /// Unique per client.
    pub name: String,
    /// The stages, in order.
    pub stages: Vec<CampaignStage>,
    /// CRM events that enroll a lead.
    pub triggers: Vec<Trigger>,
    /// `active` or `paused`.
    pub state: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Campaign {
    /// Returns true when it is paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.state == "paused"
    }
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: Uuid,
    name: String,
    stages: serde_json::Value,
    triggers: serde_json::Value,
    state: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<CampaignRow> for Campaign {
    type Error = sqlx::Error;

    fn try_from(row: CampaignRow) -> Result<Self, Self::Error> {
        let decode = |error: serde_json::Error| sqlx::Error::Decode(Box::new(error));
        Ok(Self {
            id: row.id,
            name: row.name,
            stages: serde_json::from_value(row.stages).map_err(decode)?,
            triggers: serde_json::from_value(row.triggers).map_err(decode)?,
            state: row.state,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "id, name, stages, triggers, state, created_at, updated_at";

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Creates a campaign; a name already used is a unique violation (`follow_up_campaigns_
/// tenant_id_name_key`).
pub async fn create(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    spec: &CampaignSpec,
) -> Result<Campaign, sqlx::Error> {
    let row: CampaignRow = sqlx::query_as(&format!(
        "INSERT INTO follow_up_campaigns (tenant_id, id, name, stages, triggers)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(&spec.name)
    .bind(json(&spec.stages))
    .bind(json(&spec.triggers))
    .fetch_one(conn)
    .await?;
    Campaign::try_from(row)
}

/// Replaces a campaign's name, stages and triggers (jobs already scheduled keep their times).
pub async fn replace(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    spec: &CampaignSpec,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = sqlx::query_as(&format!(
        "UPDATE follow_up_campaigns SET name = $3, stages = $4, triggers = $5, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(&spec.name)
    .bind(json(&spec.stages))
    .bind(json(&spec.triggers))
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Returns a campaign by id.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM follow_up_campaigns WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Returns a campaign by name.
pub async fn by_name(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM follow_up_campaigns WHERE tenant_id = $1 AND name = $2"
    ))
    .bind(tenant.as_uuid())
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Lists a tenant's campaigns by name.
pub async fn list(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<Campaign>, sqlx::Error> {
    let rows: Vec<CampaignRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM follow_up_campaigns WHERE tenant_id = $1 ORDER BY name"
    ))
    .bind(tenant.as_uuid())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Campaign::try_from).collect()
}

/// Lists a tenant's active campaigns that CRM events can enroll a lead in (with triggers),
/// by name: what rate_limit matches every new lead against, so it reads nothing else.
pub async fn with_triggers(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Campaign>, sqlx::Error> {
    let rows: Vec<CampaignRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM follow_up_campaigns
          WHERE tenant_id = $1 AND state = 'active' AND triggers <> '[]'::jsonb ORDER BY name"
    ))
    .bind(tenant.as_uuid())
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Campaign::try_from).collect()
}

/// Sets a campaign's state (`active` or `paused`); returns it.
pub async fn set_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    state: &str,
) -> Result<Option<Campaign>, sqlx::Error> {
    let row: Option<CampaignRow> = sqlx::query_as(&format!(
        "UPDATE follow_up_campaigns SET state = $3, updated_at = now()
          WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(state)
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::try_from).transpose()
}

/// Deletes a campaign (its jobs keep its id as history); false when it did not exist.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM follow_up_campaigns WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A calling campaign's retry policy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetrySchedule {
    /// The calling campaign (`campaign_id` of its leads).
    pub campaign_id: String,
    /// Its policy.
    pub policy: RetryPolicy,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Returns the retry policy of a calling campaign, if it has its own.
pub async fn retry_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign_id: &str,
) -> Result<Option<RetryPolicy>, sqlx::Error> {
    let policy = sqlx::query_scalar!(
        "SELECT policy FROM retry_schedules WHERE tenant_id = $1 AND campaign_id = $2",
        tenant.as_uuid(),
        campaign_id,
    )
    .fetch_optional(conn)
    .await?;
    policy
        .map(|policy| {
            serde_json::from_value(policy).map_err(|error| sqlx::Error::Decode(Box::new(error)))
        })
        .transpose()
}

/// Sets a calling campaign's retry policy.
pub async fn put_retry_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign_id: &str,
    policy: &RetryPolicy,
) -> Result<RetrySchedule, sqlx::Error> {
    let updated_at = sqlx::query_scalar!(
        "INSERT INTO retry_schedules (tenant_id, campaign_id, policy) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, campaign_id)
         DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()
         RETURNING updated_at",
        tenant.as_uuid(),
        campaign_id,
        json(policy),
    )
    .fetch_one(conn)
    .await?;
    Ok(RetrySchedule {
        campaign_id: campaign_id.to_owned(),
        policy: policy.clone(),
        updated_at,
    })
}

/// Removes a calling campaign's own policy; false when it had none.
pub async fn delete_retry_policy(
    conn: &mut PgConnection,
    tenant: TenantId,
    campaign_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM retry_schedules WHERE tenant_id = $1 AND campaign_id = $2",
        tenant.as_uuid(),
        campaign_id,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Lists a tenant's calling-campaign retry policies.
pub async fn retry_schedules(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<RetrySchedule>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT campaign_id, policy, updated_at FROM retry_schedules WHERE tenant_id = $1
         ORDER BY campaign_id",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RetrySchedule {
                campaign_id: row.campaign_id,
                policy: serde_json::from_value(row.policy)
                    .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
                updated_at: row.updated_at,
            })
        })
        .collect()
}
