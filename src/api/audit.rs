//! `/v1/clients/{client_id}/audit`: the client's audit log, newest first.

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use crate::store::audit;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::service;

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence (pass as `before` to page).
    pub id: i64,
    /// `key:<id>` or `operator:<name>`.
    pub actor: String,
    /// What happened, e.g. `credential.rotate`.
    pub action: String,
    /// On what.
    pub target: String,
    /// SHA-256 of the target's state before.
    pub before_digest: Option<String>,
    /// SHA-256 of the target's state after.
    pub after_digest: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries older than this id.
    pub before: Option<i64>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<i64>,
}

/// Lists the client's audit log.
#[utoipa::path(get, path = "/v1/clients/{client_id}/audit", tag = "audit",
    params(("client_id" = String, Path, description = "client id"), AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    principal.require(Scope::AuditRead)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let rows = audit::list(&mut tx, tenant, query.before, limit).await?;
    tx.commit().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| AuditEntry {
                id: row.id,
                actor: row.actor,
                action: row.action,
                target: row.target,
                before_digest: row.before_digest,
                after_digest: row.after_digest,
                request_id: row.request_id,
                occurred_at: row.occurred_at,
            })
            .collect(),
    ))
}
