//! `/v1/clients/{client_id}/configuration` and `/features`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::store::tenants;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::config::ClientConfiguration;
use crate::tenancy::service::{self, FeatureInput};

/// Path parameters of a route under a client with a second segment.
#[derive(Debug, serde::Deserialize)]
pub struct FlagPath {
    /// Client id (already checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The second path segment.
    flag: String,
}

/// Returns a client's configuration.
#[utoipa::path(get, path = "/v1/clients/{client_id}/configuration", tag = "configuration",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = ClientConfiguration), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_configuration(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<ClientConfiguration>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let config = service::configuration(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(config))
}

/// Replaces a client's configuration.
#[utoipa::path(put, path = "/v1/clients/{client_id}/configuration", tag = "configuration",
    request_body = ClientConfiguration,
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = ClientConfiguration), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn put_configuration(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    ApiJson(config): ApiJson<ClientConfiguration>,
) -> Result<Json<ClientConfiguration>, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let config = service::put_configuration(
        &mut tx,
        &principal.actor(),
        tenant,
        &config,
        principal.is_operator(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(config))
}

/// A feature flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feature {
    /// Flag name.
    pub flag: String,
    /// On or off.
    pub enabled: bool,
    /// Variant weights or parameters.
    #[schema(value_type = Object)]
    pub variants: serde_json::Value,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Lists a client's feature flags.
#[utoipa::path(get, path = "/v1/clients/{client_id}/features", tag = "features",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<Feature>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list_features(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<Feature>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let rows = tenants::features(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| Feature {
                flag: row.flag,
                enabled: row.enabled,
                variants: row.variants,
                updated_at: row.updated_at,
            })
            .collect(),
    ))
}

/// Sets a feature flag.
#[utoipa::path(put, path = "/v1/clients/{client_id}/features/{flag}", tag = "features",
    request_body = FeatureInput,
    params(("client_id" = String, Path, description = "client id"), ("flag" = String, Path, description = "flag name")),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn put_feature(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(FlagPath { flag, .. }): Path<FlagPath>,
    ApiJson(input): ApiJson<FeatureInput>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::put_feature(&mut tx, &principal.actor(), tenant, &flag, &input).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a feature flag.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/features/{flag}", tag = "features",
    params(("client_id" = String, Path, description = "client id"), ("flag" = String, Path, description = "flag name")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete_feature(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(FlagPath { flag, .. }): Path<FlagPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ClientsAdmin)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::delete_feature(&mut tx, &principal.actor(), tenant, &flag).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
