//! `/v1/clients/{client_id}/dead-letters`: the client's leads and events a stage gave up on,
//! with the reason (a lead without a usable phone number, a blocked number, …).

use axum::Extension;
use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use crate::bus::dead_letter;
use crate::tenancy::api_keys::Scope;

/// Dead letters read per request at most (the stream is scanned oldest first).
const SCAN_LIMIT: usize = 10_000;

/// One dead letter of the client.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterEntry {
    /// Position in the dead-letter stream (for `caller dlq replay`).
    pub sequence: u64,
    /// The stage that gave up.
    pub stage: String,
    /// Why.
    pub reason: String,
    /// The event's type, e.g. `lead.unique`.
    pub event_type: Option<String>,
    /// The event's id.
    pub event_id: Option<String>,
    /// When it was dead-lettered.
    pub stored_at: DateTime<Utc>,
    /// The event's payload, as JSON.
    #[schema(value_type = Object)]
    pub payload: Option<serde_json::Value>,
}

/// Paging of dead letters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeadLetterQuery {
    /// Only this stage's, e.g. `resolve_tenant`.
    pub stage: Option<String>,
    /// Most entries returned, 1-500 (default 100).
    pub limit: Option<usize>,
}

/// Lists the client's dead letters, oldest first.
#[utoipa::path(get, path = "/v1/clients/{client_id}/dead-letters", tag = "dead-letters",
    params(("client_id" = String, Path, description = "client id"), DeadLetterQuery),
    responses((status = 200, body = Vec<DeadLetterEntry>), (status = 404, body = Problem),
        (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Query(query): Query<DeadLetterQuery>,
) -> Result<Json<Vec<DeadLetterEntry>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let ingress = state.ingress.as_ref().ok_or(ApiError::Unavailable)?;
    if query
        .stage
        .as_deref()
        .is_some_and(|stage| !stage.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    {
        return Err(ApiError::BadRequest("unknown stage".to_owned()));
    }
    let letters = dead_letter::list(&ingress.bus, query.stage.as_deref(), SCAN_LIMIT)
        .await
        .map_err(|error| {
            tracing::warn!(error = format!("{error:#}"), "dead letters unreadable");
            ApiError::Unavailable
        })?;
    let tenant_text = tenant.to_string();
    Ok(Json(
        letters
            .into_iter()
            .filter(|letter| {
                letter
                    .headers
                    .iter()
                    .any(|(name, value)| name == "ce-tenantid" && *value == tenant_text)
            })
            .take(limit)
            .map(|letter| DeadLetterEntry {
                payload: letter.payload_as_json(),
                sequence: letter.sequence,
                stage: letter.stage,
                reason: letter.reason,
                event_type: letter.event_type,
                event_id: letter.event_id,
                stored_at: letter.stored_at,
            })
            .collect(),
    ))
}
