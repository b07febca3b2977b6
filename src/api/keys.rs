//! `/v1/clients/{client_id}/api-keys`: issue, list, rotate (with overlap) and revoke keys.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::ids::ApiKeyId;
use crate::store::api_keys::{self, ApiKeyRow};
use crate::tenancy::api_keys::Scope;
use crate::tenancy::service::{self, IssuedKey, KeyRequest};

/// Path parameters of a route under a client with a second segment.
#[derive(Debug, serde::Deserialize)]
pub struct KeyPath {
    /// Client id (already checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The second path segment.
    key_id: String,
}

/// An API key as listed (never its text).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Key id.
    #[schema(value_type = String, format = Uuid)]
    pub id: ApiKeyId,
    /// Label.
    pub name: String,
    /// Readable start of the key.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Requests per minute.
    pub rate_limit_per_minute: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Stops working at (set by rotation).
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last used (minute precision).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            prefix: row.display_prefix,
            scopes: row.scopes,
            rate_limit_per_minute: row.rate_limit_per_minute,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// A newly issued key: the only response that ever contains its text.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedApiKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The key text; shown once, store it now.
    pub secret: String,
}

impl From<IssuedKey> for IssuedApiKey {
    fn from(issued: IssuedKey) -> Self {
        Self {
            secret: issued.text.expose().clone(),
            key: issued.row.into(),
        }
    }
}

/// Rotation options.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key keeps working, in seconds (default: the server's setting).
    #[serde(default)]
    pub overlap_seconds: Option<i64>,
}

/// Lists a client's API keys.
#[utoipa::path(get, path = "/v1/clients/{client_id}/api-keys", tag = "api-keys",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<ApiKey>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    principal.require(Scope::KeysAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let rows = api_keys::list(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(rows.into_iter().map(ApiKey::from).collect()))
}

/// Issues a key for the client; its text is in this response only.
#[utoipa::path(post, path = "/v1/clients/{client_id}/api-keys", tag = "api-keys", request_body = KeyRequest,
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 201, body = IssuedApiKey), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(request): ApiJson<KeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Scope::KeysAdmin)?;
    principal.may_grant(
        &request.scopes,
        request.rate_limit_per_minute.unwrap_or(600),
    )?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let issued = service::issue_key(&mut tx, &principal.actor(), Some(tenant), &request).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(IssuedApiKey::from(issued))))
}

fn key_id(text: &str) -> Result<ApiKeyId, ApiError> {
    ApiKeyId::parse(text).map_err(|_| ApiError::NotFound)
}

/// Rotates a key: a successor with the same scopes; the old key works until the overlap ends.
#[utoipa::path(post, path = "/v1/clients/{client_id}/api-keys/{key_id}/rotate", tag = "api-keys",
    request_body = RotateRequest,
    params(("client_id" = String, Path, description = "client id"), ("key_id" = String, Path, description = "key id")),
    responses((status = 201, body = IssuedApiKey), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("api_key" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(KeyPath { key_id: key, .. }): Path<KeyPath>,
    ApiJson(request): ApiJson<RotateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(Scope::KeysAdmin)?;
    let key = key_id(&key)?;
    let overlap = request
        .overlap_seconds
        .unwrap_or(i64::try_from(state.key_rotation_overlap_secs).unwrap_or(86_400));
    let mut tx = state.store.begin_tenant(tenant).await?;
    // Rotating hands out the successor's text: only for keys the caller could have issued.
    let old = api_keys::get(&mut tx, tenant, key)
        .await?
        .ok_or(ApiError::NotFound)?;
    principal.may_grant(&old.scopes, old.rate_limit_per_minute)?;
    let issued = service::rotate_key(
        &mut tx,
        &principal.actor(),
        tenant,
        key,
        chrono::Duration::seconds(overlap),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(IssuedApiKey::from(issued))))
}

/// Revokes a key; it stops working at once.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/api-keys/{key_id}", tag = "api-keys",
    params(("client_id" = String, Path, description = "client id"), ("key_id" = String, Path, description = "key id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("api_key" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(KeyPath { key_id: key, .. }): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::KeysAdmin)?;
    let key = key_id(&key)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::revoke_key(&mut tx, &principal.actor(), tenant, key).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
