//! `/v1/clients/{client_id}/credentials`: set, rotate and delete sealed provider secrets, list
//! them masked, and check each configured provider with them.

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
use crate::providers::health::{self, HealthInput, HealthReport};
use crate::store::credentials;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::service::{self, CredentialInput};

/// Path parameters of a route under a client with a second segment.
#[derive(Debug, serde::Deserialize)]
pub struct KindPath {
    /// Client id (already checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The second path segment.
    kind: String,
}

/// A credential as shown: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct Credential {
    /// Kind, e.g. `twilio.auth_token`.
    pub kind: String,
    /// The last characters at most, e.g. `••••1234`.
    pub masked: Option<String>,
    /// Master key id that sealed it.
    pub key_id: String,
    /// Expiry, for tokens.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last set or rotated.
    pub updated_at: DateTime<Utc>,
}

/// Lists a client's credentials, masked.
#[utoipa::path(get, path = "/v1/clients/{client_id}/credentials", tag = "credentials",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<Credential>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<Credential>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let rows = credentials::list(&mut tx, tenant).await?;
    tx.commit().await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| Credential {
                kind: row.kind,
                masked: row.hint,
                key_id: row.key_id,
                expires_at: row.expires_at,
                updated_at: row.updated_at,
            })
            .collect(),
    ))
}

/// Sets a credential, or rotates it when one of that kind exists.
#[utoipa::path(put, path = "/v1/clients/{client_id}/credentials/{kind}", tag = "credentials",
    request_body = CredentialInput,
    params(("client_id" = String, Path, description = "client id"),
        ("kind" = String, Path, description = "credential kind, e.g. twilio.auth_token")),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(KindPath { kind, .. }): Path<KindPath>,
    ApiJson(input): ApiJson<CredentialInput>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::CredentialsWrite)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::put_credential(
        &mut tx,
        &principal.actor(),
        &state.keyring,
        tenant,
        &kind,
        &input,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a credential.
#[utoipa::path(delete, path = "/v1/clients/{client_id}/credentials/{kind}", tag = "credentials",
    params(("client_id" = String, Path, description = "client id"), ("kind" = String, Path, description = "credential kind")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(KindPath { kind, .. }): Path<KindPath>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::CredentialsWrite)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::delete_credential(&mut tx, &principal.actor(), tenant, &kind).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs each configured provider's cheapest authenticated call with the client's credentials.
#[utoipa::path(post, path = "/v1/clients/{client_id}/healthcheck", tag = "credentials",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<HealthReport>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn healthcheck(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<HealthReport>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    service::client(&mut tx, tenant).await?;
    let config = service::configuration(&mut tx, tenant).await?;
    let opened = service::open_credentials(&mut tx, &state.keyring, tenant).await?;
    tx.commit().await?;
    let providers = [
        config.crm.and_then(|k| serde_json::to_value(k).ok()),
        config.telephony.and_then(|k| serde_json::to_value(k).ok()),
        config.voice.and_then(|k| serde_json::to_value(k).ok()),
        config.calendar.and_then(|k| serde_json::to_value(k).ok()),
    ];
    let empty = serde_json::json!({});
    let mut reports = Vec::new();
    for provider in providers.iter().flatten().filter_map(|v| v.as_str()) {
        let settings = config.providers.get(provider).unwrap_or(&empty);
        let input = HealthInput {
            provider,
            settings,
            credentials: &opened,
        };
        reports.push(health::check(&state.http, input).await);
    }
    Ok(Json(reports))
}
