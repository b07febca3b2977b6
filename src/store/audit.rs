//! `audit_log`: append-only record of management changes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::ids::TenantId;

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// Sequence.
    pub id: i64,
    /// Tenant, or `None` for platform actions.
    pub tenant_id: Option<uuid::Uuid>,
    /// Who: `key:<id>` or `operator:<name>`.
    pub actor: String,
    /// What, e.g. `client.update`.
    pub action: String,
    /// On what, e.g. `client/<id>`.
    pub target: String,
    /// SHA-256 of the target before.
    pub before_digest: Option<String>,
    /// SHA-256 of the target after.
    pub after_digest: Option<String>,
    /// Request id, when over HTTP.
    pub request_id: Option<String>,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// A new audit entry.
#[derive(Debug)]
pub struct NewAudit<'a> {
    /// Tenant, or `None` for platform actions.
    pub tenant_id: Option<TenantId>,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: &'a str,
    /// Digest before.
    pub before_digest: Option<&'a str>,
    /// Digest after.
    pub after_digest: Option<&'a str>,
    /// Request id.
    pub request_id: Option<&'a str>,
}

/// Appends an entry.
pub async fn append(conn: &mut PgConnection, entry: &NewAudit<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO audit_log (tenant_id, actor, action, target, before_digest, after_digest, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        entry.tenant_id.map(|t| t.as_uuid()),
        entry.actor,
        entry.action,
        entry.target,
        entry.before_digest,
        entry.after_digest,
        entry.request_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Lists a tenant's entries, newest first, before `before` (keyset pagination).
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        "SELECT id, tenant_id, actor, action, target, before_digest, after_digest, request_id, occurred_at
         FROM audit_log WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        tenant.as_uuid(),
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}
