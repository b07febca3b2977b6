//! Tenant alerts (`tenant_alerts`): problems only the tenant can fix (reconnect a CRM, fix a
//! field mapping), one open alert per (kind, provider), counted while it repeats.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::TenantId;
use crate::store::Store;

/// An alert as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Alert {
    /// Its id.
    pub id: i64,
    /// What kind of problem: `crm_unauthorized`, `crm_rejected`, …
    pub kind: String,
    /// Which provider: `gohighlevel`, `zoho`, `custom`, …
    pub provider: String,
    /// What happened, without secrets.
    pub message: String,
    /// How many times it happened while open.
    pub occurrences: i32,
    /// First time.
    pub first_at: DateTime<Utc>,
    /// Latest time.
    pub last_at: DateTime<Utc>,
    /// When it was resolved (the provider worked again), if it was.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Opens the alert, or counts one more occurrence of the open one.
///
/// # Errors
///
/// The database failed.
pub async fn raise(
    store: &Store,
    tenant: TenantId,
    kind: &str,
    provider: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "INSERT INTO tenant_alerts (tenant_id, kind, provider, message) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, kind, provider) WHERE resolved_at IS NULL \
         DO UPDATE SET occurrences = tenant_alerts.occurrences + 1, last_at = now(), \
                       message = EXCLUDED.message",
    )
    .bind(tenant.as_uuid())
    .bind(kind)
    .bind(provider)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Resolves the open alerts of `provider` whose kind starts with `kind_prefix` (the provider
/// worked again).
///
/// # Errors
///
/// The database failed.
pub async fn resolve(
    store: &Store,
    tenant: TenantId,
    kind_prefix: &str,
    provider: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "UPDATE tenant_alerts SET resolved_at = now() \
         WHERE tenant_id = $1 AND provider = $2 AND starts_with(kind, $3) AND resolved_at IS NULL",
    )
    .bind(tenant.as_uuid())
    .bind(provider)
    .bind(kind_prefix)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The tenant's alerts, open ones first, newest first.
///
/// # Errors
///
/// The database failed.
pub async fn list(store: &Store, tenant: TenantId, limit: i64) -> Result<Vec<Alert>, sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    let alerts = sqlx::query_as(
        "SELECT id, kind, provider, message, occurrences, first_at, last_at, resolved_at \
         FROM tenant_alerts WHERE tenant_id = $1 \
         ORDER BY resolved_at IS NOT NULL, last_at DESC LIMIT $2",
    )
    .bind(tenant.as_uuid())
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(alerts)
}

/// Returns how many alerts are open, by kind, across every tenant (for `/metrics`).
pub async fn open_by_kind(store: &Store) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut tx = store.begin_platform().await?;
    let rows = sqlx::query_as(
        "SELECT kind, count(*) FROM tenant_alerts WHERE resolved_at IS NULL \
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}
