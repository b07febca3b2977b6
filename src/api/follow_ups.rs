//! `/v1/clients/{client_id}/follow-up-campaigns` and `/retry-schedules`: the client's
//! follow-up campaigns (stages on the lead's clock, the CRM events that enroll a lead) and the
//! retry policies of its calling campaigns. The rules are in `tenancy::follow_ups`, shared with
//! `caller campaign`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::scheduling::campaign::CampaignSpec;
use crate::store::follow_up_campaigns::{Campaign, RetrySchedule};
use crate::tenancy::api_keys::Scope;
use crate::tenancy::config::RetryPolicy;
use crate::tenancy::follow_ups::{self, CampaignStateChange};

/// Path of one follow-up campaign.
#[derive(Debug, Deserialize)]
pub struct CampaignPath {
    /// Client id (checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The campaign's id or name.
    campaign: String,
}

/// Path of one calling campaign's retry schedule.
#[derive(Debug, Deserialize)]
pub struct RetryPath {
    /// Client id (checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The calling campaign (`campaign_id` of its leads).
    campaign_id: String,
}

/// Lists the client's follow-up campaigns by name.
#[utoipa::path(get, path = "/v1/clients/{client_id}/follow-up-campaigns",
    tag = "follow-up-campaigns",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<Campaign>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<Campaign>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let campaigns = follow_ups::list(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(campaigns))
}

/// Creates a follow-up campaign.
#[utoipa::path(post, path = "/v1/clients/{client_id}/follow-up-campaigns",
    tag = "follow-up-campaigns", request_body = CampaignSpec,
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 201, body = Campaign), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the name is taken"),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(spec): ApiJson<CampaignSpec>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let created = follow_ups::create(&mut tx, &principal.actor(), tenant, &spec).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Returns one follow-up campaign, by id or name.
#[utoipa::path(get, path = "/v1/clients/{client_id}/follow-up-campaigns/{campaign}",
    tag = "follow-up-campaigns",
    params(("client_id" = String, Path, description = "client id"),
        ("campaign" = String, Path, description = "campaign id or name")),
    responses((status = 200, body = Campaign), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CampaignPath>,
) -> Result<Json<Campaign>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let campaign = follow_ups::find(&mut tx, tenant, &path.campaign).await?;
    tx.commit().await?;
    Ok(Json(campaign))
}

/// Replaces a follow-up campaign; attempts already scheduled keep their times.
#[utoipa::path(put, path = "/v1/clients/{client_id}/follow-up-campaigns/{campaign}",
    tag = "follow-up-campaigns", request_body = CampaignSpec,
    params(("client_id" = String, Path, description = "client id"),
        ("campaign" = String, Path, description = "campaign id or name")),
    responses((status = 200, body = Campaign), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the name is taken"),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CampaignPath>,
    ApiJson(spec): ApiJson<CampaignSpec>,
) -> Result<Json<Campaign>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let replaced =
        follow_ups::replace(&mut tx, &principal.actor(), tenant, &path.campaign, &spec).await?;
    tx.commit().await?;
    Ok(Json(replaced))
}

/// Deletes a follow-up campaign with every attempt it scheduled.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/follow-up-campaigns/{campaign}",
    tag = "follow-up-campaigns",
    params(("client_id" = String, Path, description = "client id"),
        ("campaign" = String, Path, description = "campaign id or name")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CampaignPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    follow_ups::delete(&mut tx, &principal.actor(), tenant, &path.campaign).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a follow-up campaign: its pending attempts (and new enrollments) wait as `paused`.
#[utoipa::path(post, path = "/v1/clients/{client_id}/follow-up-campaigns/{campaign}/pause",
    tag = "follow-up-campaigns",
    params(("client_id" = String, Path, description = "client id"),
        ("campaign" = String, Path, description = "campaign id or name")),
    responses((status = 200, body = CampaignStateChange), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CampaignPath>,
) -> Result<Json<CampaignStateChange>, ApiError> {
    set_paused(&state, &principal, tenant, &path.campaign, true).await
}

/// Resumes a paused follow-up campaign: its paused attempts are pending again.
#[utoipa::path(post, path = "/v1/clients/{client_id}/follow-up-campaigns/{campaign}/resume",
    tag = "follow-up-campaigns",
    params(("client_id" = String, Path, description = "client id"),
        ("campaign" = String, Path, description = "campaign id or name")),
    responses((status = 200, body = CampaignStateChange), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CampaignPath>,
) -> Result<Json<CampaignStateChange>, ApiError> {
    set_paused(&state, &principal, tenant, &path.campaign, false).await
}

async fn set_paused(
    state: &AppState,
    principal: &Principal,
    tenant: crate::ids::TenantId,
    campaign: &str,
    paused: bool,
) -> Result<Json<CampaignStateChange>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let change =
        follow_ups::set_paused(&mut tx, &principal.actor(), tenant, campaign, paused).await?;
    tx.commit().await?;
    Ok(Json(change))
}

/// Lists the retry policies of the client's calling campaigns.
#[utoipa::path(get, path = "/v1/clients/{client_id}/retry-schedules", tag = "retry-schedules",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<RetrySchedule>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list_retry_schedules(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<RetrySchedule>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let schedules = follow_ups::retry_schedules(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(schedules))
}

/// Sets a calling campaign's retry policy, overriding the client's for its leads.
#[utoipa::path(put, path = "/v1/clients/{client_id}/retry-schedules/{campaign_id}",
    tag = "retry-schedules", request_body = RetryPolicy,
    params(("client_id" = String, Path, description = "client id"),
        ("campaign_id" = String, Path, description = "calling campaign (`campaign_id` of its leads)")),
    responses((status = 200, body = RetrySchedule), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn put_retry_schedule(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<RetryPath>,
    ApiJson(policy): ApiJson<RetryPolicy>,
) -> Result<Json<RetrySchedule>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let stored = follow_ups::put_retry_schedule(
        &mut tx,
        &principal.actor(),
        tenant,
        &path.campaign_id,
        &policy,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(stored))
}

/// Removes a calling campaign's retry policy: its leads follow the client's again.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/retry-schedules/{campaign_id}",
    tag = "retry-schedules",
    params(("client_id" = String, Path, description = "client id"),
        ("campaign_id" = String, Path, description = "calling campaign (`campaign_id` of its leads)")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete_retry_schedule(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<RetryPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    follow_ups::delete_retry_schedule(&mut tx, &principal.actor(), tenant, &path.campaign_id)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
