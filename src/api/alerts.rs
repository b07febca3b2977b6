//! `/v1/clients/{client_id}/alerts`: problems only the client can fix (a CRM that refuses our
//! credentials, a CRM that refuses our writes), open ones first.

use axum::Extension;
use axum::Json;
use axum::extract::State;

use super::AppState;
use super::auth::{ClientAccess, Principal};
use super::error::{ApiError, Problem};
use crate::store::alerts::{self, Alert};
use crate::tenancy::api_keys::Scope;

/// How many alerts one request lists at most.
const LIMIT: i64 = 200;

/// Lists the client's alerts: open ones first, newest first.
#[utoipa::path(get, path = "/v1/clients/{client_id}/alerts", tag = "alerts",
    params(("client_id" = String, Path, description = "client id")),
    responses((status = 200, body = Vec<Alert>), (status = 404, body = Problem),
        (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAccess(tenant)): Extension<ClientAccess>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    principal.require(Scope::ClientsRead)?;
    Ok(Json(alerts::list(&state.store, tenant, LIMIT).await?))
}
