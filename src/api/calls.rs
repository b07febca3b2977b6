//! `/v1/clients/{client_id}/calls`: the client's calls, each with its attempts, every
//! accepted state change and its conversations (transcript, tool calls, recording), so a
//! client (or its support) can follow a call without database access.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use crate::calls::state::CallState;
use crate::ids::CallId;
use crate::store::call_views::{self, AttemptView, CallView, TransitionView};
use crate::store::conversation_views::{self, ConversationView};
use crate::tenancy::api_keys::Scope;

/// Filters of the call list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CallQuery {
    /// Only calls in this state, e.g. `connected`.
    pub state: Option<String>,
    /// Most calls returned, 1-1000 (default 100).
    pub limit: Option<i64>,
}

/// Path of one call.
#[derive(Debug, Deserialize)]
pub struct CallPath {
    /// Client id (checked by the scoping layer).
    #[allow(dead_code)]
    // NOTE: read by `auth::scope_to_client`, present here so the path parses.
    client_id: String,
    /// The call.
    call_id: String,
}

/// A call with its attempts and transitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetail {
    /// The call.
    #[serde(flatten)]
    pub call: CallView,
    /// Its dials, in order.
    pub attempts: Vec<AttemptView>,
    /// Every accepted state change of the call and its attempts, in order.
    pub transitions: Vec<TransitionView>,
    /// The conversation of each answered attempt: transcript, tool calls, recording.
    pub conversations: Vec<ConversationView>,
}

/// Lists the client's calls, newest first.
#[utoipa::path(get, path = "/v1/clients/{client_id}/calls", tag = "calls",
    params(("client_id" = String, Path, description = "client id"), CallQuery),
    responses((status = 200, body = Vec<CallView>), (status = 400, body = Problem),
        (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Query(query): Query<CallQuery>,
) -> Result<Json<Vec<CallView>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    if let Some(wanted) = &query.state
        && wanted.parse::<CallState>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "unknown call state `{wanted}`"
        )));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    let mut tx = state.store.begin_tenant(tenant).await?;
    let calls = call_views::list(&mut tx, tenant, query.state.as_deref(), limit).await?;
    tx.commit().await?;
    Ok(Json(calls))
}

/// Returns one call with its attempts and transitions.
#[utoipa::path(get, path = "/v1/clients/{client_id}/calls/{call_id}", tag = "calls",
    params(("client_id" = String, Path, description = "client id"),
        ("call_id" = String, Path, description = "call id")),
    responses((status = 200, body = CallDetail), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
    Path(path): Path<CallPath>,
) -> Result<Json<CallDetail>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    let call_id = CallId::parse(&path.call_id).map_err(|_| ApiError::NotFound)?;
    let mut tx = state.store.begin_tenant(tenant).await?;
    let Some(call) = call_views::get(&mut tx, tenant, call_id).await? else {
        return Err(ApiError::NotFound);
    };
    let attempts = call_views::attempts(&mut tx, tenant, call_id).await?;
    let transitions = call_views::transitions(&mut tx, tenant, call_id).await?;
    let conversations = conversation_views::of_call(&mut tx, tenant, call_id).await?;
    tx.commit().await?;
    Ok(Json(CallDetail {
        call,
        attempts,
        transitions,
        conversations,
    }))
}
