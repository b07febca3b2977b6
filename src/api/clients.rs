//! `/v1/clients`: onboard, list, read, change, disable and enable clients.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::store::tenants;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::service::{self, Client, ClientPatch, OnboardRequest};
use axum::Json;

/// A page of clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientPage {
    /// Clients, by slug.
    pub items: Vec<Client>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Paging of `GET /v1/clients`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ClientListQuery {
    /// Return clients whose slug sorts after this one.
    pub after: Option<String>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<i64>,
}

/// Onboards a client with its configuration, features and credentials in one request.
#[utoipa::path(post, path = "/v1/clients", tag = "clients", request_body = OnboardRequest,
    responses((status = 201, body = Client), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<OnboardRequest>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    principal.require_operator()?;
    let mut tx = state.store.begin_platform().await?;
    let client = service::onboard(&mut tx, &principal.actor(), &state.keyring, request).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(client)))
}

/// Lists the clients the key can see: all for an operator, its own for a client key.
#[utoipa::path(get, path = "/v1/clients", tag = "clients", params(ClientListQuery),
    responses((status = 200, body = ClientPage), (status = 401, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ClientListQuery>,
) -> Result<Json<ClientPage>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::Invalid(vec![crate::tenancy::FieldError::new(
            "limit",
            "must be 1-200",
        )]));
    }
    // Both walls: the transaction's tenant (row-level security) and the explicit filter.
    let mut tx = match principal.tenant() {
        Some(tenant) => state.store.begin_tenant(tenant).await?,
        None => state.store.begin_platform().await?,
    };
    let rows = tenants::list(&mut tx, query.after.as_deref(), limit + 1).await?;
    tx.commit().await?;
    let mut items: Vec<Client> = rows
        .into_iter()
        .filter(|row| principal.tenant().is_none_or(|own| own == row.id))
        .map(Client::from)
        .collect();
    let next = if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(50));
        items.last().map(|c| c.slug.clone())
    } else {
        None
    };
    Ok(Json(ClientPage { items, next }))
}

/// Returns one client.
#[utoipa::path(get, path = "/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Client), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Client>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let client = service::client(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(client))
}

/// Changes a client's name or time zone.
#[utoipa::path(patch, path = "/v1/clients/{client_id}", tag = "clients", request_body = ClientPatch,
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Client), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(patch): ApiJson<ClientPatch>,
) -> Result<Json<Client>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let client = service::update_client(&mut tx, &principal.actor(), tenant, &patch).await?;
    tx.commit().await?;
    Ok(Json(client))
}

/// Disables a client: its API keys stop working at once (403) until an operator re-enables it.
#[utoipa::path(post, path = "/v1/clients/{client_id}/disable", tag = "clients",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Client), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Client>, ApiError> {
    set_status(state, principal, tenant, false).await
}

/// Re-enables a disabled client (operators only).
#[utoipa::path(post, path = "/v1/clients/{client_id}/enable", tag = "clients",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Client), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Client>, ApiError> {
    principal.require_operator()?;
    set_status(state, principal, tenant, true).await
}

async fn set_status(
    state: AppState,
    principal: Principal,
    tenant: crate::ids::TenantId,
    active: bool,
) -> Result<Json<Client>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let client = service::set_status(&mut tx, &principal.actor(), tenant, active).await?;
    tx.commit().await?;
    Ok(Json(client))
}
