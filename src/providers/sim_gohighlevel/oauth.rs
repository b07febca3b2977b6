//! `POST /oauth/token` (form body, `GetAccessCodebodyDto`): the `authorization_code` and
//! `refresh_token` grants of the simulator's one app. A refresh token works once: the answer
//! carries a new one (rotation).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Caller, GoHighLevelSimState, error, lock, unauthorized, unprocessable};

pub(super) async fn token(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let form = &caller.body;
    let field = |name: &str| form.get(name).and_then(Value::as_str);
    let (Some(client_id), Some(client_secret), Some(grant_type)) = (
        field("client_id"),
        field("client_secret"),
        field("grant_type"),
    ) else {
        return unprocessable(&[
            "client_id, client_secret and grant_type should not be empty".to_owned(),
        ]);
    };
    let app = &sim.inner.app;
    let client_ok = subtle::ConstantTimeEq::ct_eq(client_id.as_bytes(), app.client_id.as_bytes())
        & subtle::ConstantTimeEq::ct_eq(client_secret.as_bytes(), app.client_secret.as_bytes());
    if !bool::from(client_ok) {
        return unauthorized();
    }
    if field("user_type").is_some_and(|kind| kind != "Location") {
        return error(
            StatusCode::BAD_REQUEST,
            "This simulator issues Location tokens only",
        );
    }
    let mut world = lock(&sim.inner.world);
    let location = match grant_type {
        "authorization_code" => field("code").and_then(|code| world.codes.remove(code)),
        "refresh_token" => field("refresh_token").and_then(|old| world.refresh_tokens.remove(old)),
        _ => {
            return unprocessable(&[
                "grant_type must be one of the following values: authorization_code, refresh_token, client_credentials".to_owned(),
            ]);
        }
    };
    let Some(location) = location else {
        drop(world);
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid grant: the code or refresh token is invalid",
        );
    };
    let (access, refresh, expires_in) = sim.grant_tokens(&mut world, &location);
    drop(world);
    sim.count(|counters| {
        if grant_type == "refresh_token" {
            counters.token_refreshes += 1;
        } else {
            counters.codes_exchanged += 1;
        }
    });
    (
        StatusCode::OK,
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
            "scope": "contacts.readonly contacts.write calendars.readonly calendars/events.write opportunities.write conversations/message.write locations/customFields.readonly",
            "userType": "Location",
            "locationId": location,
            "companyId": "simCompany000000000a",
            "userId": "simUser0000000000000",
            "isBulkInstallation": false,
        })),
    )
        .into_response()
}
