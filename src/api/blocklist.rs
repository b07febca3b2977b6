//! `/v1/clients/{client_id}/blocklist`: the numbers a client must not call (its do-not-call
//! list and the people who opted out). resolve_tenant checks every lead against it.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::ids::PhoneNumber;
use crate::store::call_blocklist::{self, BlockList, BlockedNumber};
use crate::tenancy::FieldError;
use crate::tenancy::api_keys::Scope;

/// A number to block.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// The number, E.164.
    pub phone: String,
    /// Which list (default `do_not_call`).
    #[serde(default)]
    pub list: Option<BlockList>,
    /// Why (at most 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Path of one blocked number.
#[derive(Debug, Deserialize)]
pub struct BlockedPath {
    /// Client id (checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// `do_not_call` or `opt_out`.
    list: String,
    /// The number, E.164.
    phone: String,
}

/// Lists the client's blocked numbers (newest first, at most 1,000).
#[utoipa::path(get, path = "/v1/clients/{client_id}/blocklist", tag = "blocklist",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<BlockedNumber>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<BlockedNumber>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let rows = call_blocklist::list(&mut tx, tenant, 1_000).await?;
    tx.commit().await?;
    Ok(Json(rows))
}

/// Blocks a number (idempotent: blocking it again updates the reason).
#[utoipa::path(post, path = "/v1/clients/{client_id}/blocklist", tag = "blocklist",
    params(("client_id" = String, Path, description = "client id")),
    request_body = BlockRequest,
    responses((status = 201, body = BlockedNumber), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn add(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(request): ApiJson<BlockRequest>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut errors = Vec::new();
    let phone = PhoneNumber::parse(&request.phone)
        .inspect_err(|error| errors.push(FieldError::new("phone", error.to_string())))
        .ok();
    if request
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        errors.push(FieldError::new("reason", "must be at most 500 characters"));
    }
    let Some(phone) = phone.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Invalid(errors));
    };
    let list = request.list.unwrap_or(BlockList::DoNotCall);
    let mut tx = state.store.begin_tenant(tenant).await?;
    let row = call_blocklist::add(&mut tx, tenant, &phone, list, request.reason.as_deref()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Unblocks a number on one list.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/blocklist/{list}/{phone}", tag = "blocklist",
    params(("client_id" = String, Path, description = "client id"),
        ("list" = String, Path, description = "`do_not_call` or `opt_out`"),
        ("phone" = String, Path, description = "E.164 number")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<BlockedPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let list = match path.list.as_str() {
        "do_not_call" => BlockList::DoNotCall,
        "opt_out" => BlockList::OptOut,
        _ => return Err(ApiError::NotFound),
    };
    let phone = PhoneNumber::parse(&path.phone).map_err(|_| ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let removed = call_blocklist::remove(&mut tx, tenant, &phone, list).await?;
    tx.commit().await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
