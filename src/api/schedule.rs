//! `/v1/clients/{client_id}/scheduled-attempts` and `/leads/cancel-scheduled`: the retries
//! and follow-up stages waiting for their time, and the manual ways to stop or move them.
//! The rules are in `tenancy::schedule`, shared with `caller schedule`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::store::scheduled_jobs::Job;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::schedule::{self, JobQuery};

/// Path of one scheduled attempt.
#[derive(Debug, Deserialize)]
pub struct JobPath {
    /// Client id (checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The attempt.
    job_id: String,
}

impl JobPath {
    /// Returns the attempt's id; one that is not a UUID names no attempt (404).
    fn job(&self) -> Result<Uuid, ApiError> {
        Uuid::parse_str(&self.job_id).map_err(|_| ApiError::NotFound)
    }
}

/// Why an attempt is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Recorded with the attempt (at most 500 characters; default `cancelled manually`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where an attempt moves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// The new time (RFC 3339), not in the past; the attempt fires then, or at the first
    /// instant after it inside the lead's windows.
    pub at: DateTime<Utc>,
}

/// The lead whose attempts are cancelled: its number, its CRM id, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadCancelRequest {
    /// The lead's number (E.164, or national in the client's region).
    #[serde(default)]
    pub phone: Option<String>,
    /// The lead's CRM id.
    #[serde(default)]
    pub crm_contact_id: Option<String>,
    /// Recorded with each attempt (at most 500 characters; default `cancelled manually`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// How many attempts were cancelled.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeadCancelled {
    /// Attempts that were pending or paused and are now cancelled.
    pub cancelled: u64,
}

/// Lists the client's scheduled attempts by due time.
#[utoipa::path(get, path = "/v1/clients/{client_id}/scheduled-attempts", tag = "schedule",
    params(("client_id" = String, Path, description = "client id"), JobQuery),
    responses((status = 200, body = Vec<Job>), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Query(query): Query<JobQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let jobs = schedule::list(&mut tx, tenant, &query).await?;
    tx.commit().await?;
    Ok(Json(jobs))
}

/// Cancels a scheduled attempt that has not fired.
#[utoipa::path(post, path = "/v1/clients/{client_id}/scheduled-attempts/{job_id}/cancel",
    tag = "schedule", request_body(content = CancelRequest, description = "optional"),
    params(("client_id" = String, Path, description = "client id"),
        ("job_id" = String, Path, description = "attempt id")),
    responses((status = 200, body = Job), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "it already fired or was cancelled"),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<JobPath>,
    request: Option<ApiJson<CancelRequest>>,
) -> Result<Json<Job>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let job = path.job()?;
    let request = request.map(|ApiJson(request)| request).unwrap_or_default();
    let mut tx = state.store.begin_tenant(tenant).await?;
    let cancelled = schedule::cancel(
        &mut tx,
        &principal.actor(),
        tenant,
        job,
        request.reason.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(cancelled))
}

/// Moves a scheduled attempt that has not fired; the answer shows where it landed.
#[utoipa::path(post, path = "/v1/clients/{client_id}/scheduled-attempts/{job_id}/reschedule",
    tag = "schedule", request_body = RescheduleRequest,
    params(("client_id" = String, Path, description = "client id"),
        ("job_id" = String, Path, description = "attempt id")),
    responses((status = 200, body = Job), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "it already fired or was cancelled"),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn reschedule(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<JobPath>,
    ApiJson(request): ApiJson<RescheduleRequest>,
) -> Result<Json<Job>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let job = path.job()?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let moved = schedule::reschedule(
        &mut tx,
        &principal.actor(),
        tenant,
        job,
        request.at,
        Utc::now(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(moved))
}

/// Cancels every scheduled attempt of a lead that has not fired.
#[utoipa::path(post, path = "/v1/clients/{client_id}/leads/cancel-scheduled", tag = "schedule",
    request_body = LeadCancelRequest,
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = LeadCancelled), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn cancel_for_lead(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(request): ApiJson<LeadCancelRequest>,
) -> Result<Json<LeadCancelled>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let cancelled = schedule::cancel_for_lead(
        &mut tx,
        &principal.actor(),
        tenant,
        request.phone.as_deref(),
        request.crm_contact_id.as_deref(),
        request.reason.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(LeadCancelled { cancelled }))
}
