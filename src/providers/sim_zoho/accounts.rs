//! Zoho accounts: `POST /oauth/v2/token` with the `authorization_code` and `refresh_token`
//! grants, parameters in the query string (as Zoho's docs show) or a urlencoded body.
//! A refused grant is HTTP 200 `{"error": "invalid_code"}` (or `invalid_client`), as Zoho
//! reportedly answers (UNCONFIRMED in the protocol notes; the adapter checks the key).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ZohoSimState, form_pairs};

const SCOPE: &str = "ZohoCRM.modules.ALL ZohoCRM.settings.fields.READ ZohoCRM.notifications.ALL zohobookings.data.CREATE";

pub(super) async fn token(State(state): State<ZohoSimState>, uri: Uri, body: Bytes) -> Response {
    let mut fields = form_pairs(uri.query().unwrap_or_default());
    fields.extend(form_pairs(std::str::from_utf8(&body).unwrap_or_default()));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let config = state.config();
    if field("client_id") != Some(config.client_id.as_str())
        || field("client_secret") != Some(config.client_secret.as_str())
    {
        return Json(json!({"error": "invalid_client"})).into_response();
    }
    let mut inner = state.lock();
    let lifetime = config.access_token_lifetime.as_secs();
    match field("grant_type") {
        Some("refresh_token") => {
            let org =
                field("refresh_token").and_then(|token| inner.refresh_tokens.get(token).cloned());
            let Some(org) = org else {
                return Json(json!({"error": "invalid_code"})).into_response();
            };
            inner.counters.refreshes += 1;
            let access = state.mint(&mut inner, &org);
            Json(json!({
                "access_token": access, "scope": SCOPE, "api_domain": config.api_domain,
                "token_type": "Bearer", "expires_in": lifetime
            }))
            .into_response()
        }
        Some("authorization_code") => {
            let org = field("code").and_then(|code| inner.grant_codes.remove(code));
            let Some(org) = org else {
                return Json(json!({"error": "invalid_code"})).into_response();
            };
            inner.counters.code_grants += 1;
            let refresh = format!("1000.simrefresh.{}", uuid::Uuid::new_v4().simple());
            inner.refresh_tokens.insert(refresh.clone(), org.clone());
            let access = state.mint(&mut inner, &org);
            Json(json!({
                "access_token": access, "refresh_token": refresh, "scope": SCOPE,
                "api_domain": config.api_domain, "token_type": "Bearer", "expires_in": lifetime
            }))
            .into_response()
        }
        _ => Json(json!({"error": "unsupported_grant_type"})).into_response(),
    }
}
