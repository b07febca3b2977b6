//! A minimal simulator of the vendor endpoints that [`super::health`] calls, in each vendor's
//! wire format, on one port.
//!
//! - Twilio: `GET /2010-04-01/Accounts/{sid}.json` (Basic); refusal 401
//!   `{code: 20003, message, more_info, status}` with `WWW-Authenticate`.
//! - ElevenLabs: `GET /v1/convai/conversations` (`xi-api-key`); refusal 401
//!   `{detail: {status, message}}`.
//! - HighLevel: `GET /locations/{location_id}` (Bearer, `Version`); refusal 401
//!   `UnauthorizedDTO`.
//! - Zoho CRM: `GET /crm/v8/Leads?fields=…` and `GET /crm/v8/{module}/{id}` (records from
//!   [`SimAccounts::zoho_records`]; 204 when absent) with `Zoho-oauthtoken`, refusal 401
//!   `INVALID_TOKEN`; Zoho accounts `POST /oauth/v2/token` (refresh grant).
//! - custom: `GET /custom/health` (Bearer when a key is set); refusal 401 `{error}`.
//!
//! Point every provider's `base_url` (Zoho: `api_domain`) at the simulator's address; a
//! custom provider's `healthcheck_url` is `http://<addr>/custom/health`. Shapes come from
//! `shared/specs/` and `shared/protocols/`; bodies marked UNCONFIRMED there are best guesses.
//! Scripted faults and request recording belong to the per-vendor simulators, not here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

/// The credentials and ids the simulator accepts; anything else is refused in the vendor's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccounts {
    /// The Twilio Account SID (`AC` + 32 hex digits), the Basic auth user name.
    pub twilio_account_sid: String,
    /// The Twilio auth token, the Basic auth password.
    pub twilio_auth_token: String,
    /// The ElevenLabs `xi-api-key`.
    pub elevenlabs_api_key: String,
    /// The HighLevel Bearer token (Private Integration Token or OAuth access token).
    pub gohighlevel_token: String,
    /// The HighLevel location the token may read.
    pub gohighlevel_location_id: String,
    /// The Zoho CRM OAuth access token.
    pub zoho_access_token: String,
    /// The Bearer key a custom provider's healthcheck requires; `None` accepts any request.
    pub custom_api_key: Option<String>,
    /// The Zoho refresh token `POST /oauth/v2/token` exchanges for `zoho_access_token`.
    pub zoho_refresh_token: String,
    /// The Zoho app's client id the token endpoint requires.
    pub zoho_client_id: String,
    /// The Zoho app's client secret the token endpoint requires.
    pub zoho_client_secret: String,
    /// Zoho CRM records by `<module>/<id>`, as JSON text (`GET /crm/v8/{module}/{id}`).
    pub zoho_records: std::collections::BTreeMap<String, String>,
}

impl Default for SimAccounts {
    /// Returns fixed, obviously fake demo credentials.
    fn default() -> Self {
        Self {
            twilio_account_sid: "AC00000000000000000000000000000001".to_owned(),
            twilio_auth_token: "sim-twilio-auth-token".to_owned(),
            elevenlabs_api_key: "sim-elevenlabs-api-key".to_owned(),
            gohighlevel_token: "pit-sim-gohighlevel-token".to_owned(),
            gohighlevel_location_id: "ve9EPM428h8vShlRW1KT".to_owned(),
            zoho_access_token: "1000.sim-zoho-access-token".to_owned(),
            custom_api_key: Some("sim-custom-api-key".to_owned()),
            zoho_refresh_token: "1000.sim-zoho-refresh-token".to_owned(),
            zoho_client_id: "1000.SIMCLIENTID".to_owned(),
            zoho_client_secret: "sim-zoho-client-secret".to_owned(),
            zoho_records: std::collections::BTreeMap::from([(
                "Leads/4876876000001234567".to_owned(),
                ZOHO_LEAD_EXAMPLE.to_owned(),
            )]),
        }
    }
}

/// The record of `crm-calendar.md` B.3 ("Get record"), with a time zone and a mobile number.
pub const ZOHO_LEAD_EXAMPLE: &str = r##"{"id": "4876876000001234567", "First_Name": "Jane",
 "Last_Name": "Doe", "Phone": "+1 512-555-0142", "Mobile": "+1 512-555-0199",
 "Email": "jane.doe@example.com", "Lead_Status": "Not Contacted", "Time_Zone": "America/Chicago",
 "Owner": {"name": "Sam Owner", "id": "4876876000000330001", "email": "sam.owner@example.com"},
 "Tag": [{"name": "ai-call-requested", "id": "4876876000000889001", "color_code": "#57B1FD"}],
 "Created_Time": "2025-03-04T09:21:09-06:00", "Modified_Time": "2025-03-04T09:21:09-06:00"}"##;

type Accounts = Arc<SimAccounts>;

/// Returns the simulator's router, for in-process use with `tower::ServiceExt::oneshot`.
pub fn router(accounts: SimAccounts) -> Router {
    routes()
        .route("/v1/convai/conversations", get(elevenlabs_conversations))
        .with_state(Arc::new(accounts))
}

/// Returns the router without ElevenLabs' endpoint, to serve beside the full ElevenLabs
/// simulator (`sim_elevenlabs`), which answers it itself.
pub fn router_beside_elevenlabs(accounts: SimAccounts) -> Router {
    routes().with_state(Arc::new(accounts))
}

fn routes() -> Router<Accounts> {
    Router::new()
        .route("/2010-04-01/Accounts/{account}", get(twilio_account))
        .route("/locations/{location_id}", get(gohighlevel_location))
        .route("/crm/v8/Leads", get(zoho_leads))
        .route("/crm/v8/{module}/{id}", get(zoho_record))
        .route("/oauth/v2/token", axum::routing::post(zoho_token))
        .route("/custom/health", get(custom_health))
}

/// Serves the simulator on `listener` until the task is dropped or the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    accounts: SimAccounts,
) -> std::io::Result<()> {
    axum::serve(listener, router(accounts)).await
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(accounts: SimAccounts) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the provider simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(err) = serve(listener, accounts).await {
            tracing::error!(error = %err, "provider simulator stopped");
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------
// Twilio: Account resource (`FetchAccount`, twilio_api_v2010.json `api.v2010.account`).

async fn twilio_account(
    State(accounts): State<Accounts>,
    Path(account): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let authenticated = basic_credentials(&headers).is_some_and(|(user, password)| {
        user == accounts.twilio_account_sid && password == accounts.twilio_auth_token
    });
    if !authenticated {
        let body = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        return (
            [(header::WWW_AUTHENTICATE, "Basic realm=\"Twilio API\"")],
            body,
        )
            .into_response();
    }
    let sid = &accounts.twilio_account_sid;
    if account.strip_suffix(".json") != Some(sid.as_str()) {
        let message = format!("The requested resource {} was not found", uri.path());
        return twilio_error(StatusCode::NOT_FOUND, 20404, &message);
    }
    // NOTE: the real resource also returns `auth_token`; the simulator never echoes a secret.
    Json(json!({
        "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
        "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000",
        "friendly_name": "caller simulator",
        "owner_account_sid": sid,
        "sid": sid,
        "status": "active",
        "subresource_uris": {
            "calls": format!("/2010-04-01/Accounts/{sid}/Calls.json"),
            "notifications": format!("/2010-04-01/Accounts/{sid}/Notifications.json"),
            "recordings": format!("/2010-04-01/Accounts/{sid}/Recordings.json"),
        },
        "type": "Full",
        "uri": format!("/2010-04-01/Accounts/{sid}.json"),
    }))
    .into_response()
}

/// Twilio's REST error body (fields as read by twilio-node `RestException`).
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = authorization(headers)?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// ElevenLabs: `GET /v1/convai/conversations` (`GetConversationsPageResponseModel`).

async fn elevenlabs_conversations(
    State(accounts): State<Accounts>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // The 401 bodies are UNCONFIRMED: not in the spec; the observed shape is
    // `{detail: {status, message}}`.
    match headers.get("xi-api-key").and_then(|v| v.to_str().ok()) {
        None => {
            return elevenlabs_unauthorized(
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            );
        }
        Some(key) if key != accounts.elevenlabs_api_key => {
            return elevenlabs_unauthorized("invalid_api_key", "Invalid API key");
        }
        Some(_) => {}
    }
    let page_size = query.get("page_size").map(|raw| raw.parse::<u32>());
    if page_size.is_some_and(|size| !matches!(size, Ok(1..=100))) {
        return elevenlabs_invalid_page_size(query.get("page_size"));
    }
    // One finished call: every `page_size` from 1 to 100 returns it, and `has_more` is false.
    let conversations = [json!({
        "agent_id": "agent_01jz8xsimulator000000000",
        "agent_name": "Simulated agent",
        "conversation_id": "conv_01jz9simulator0000000000",
        "start_time_unix_secs": 1_756_000_000,
        "call_duration_secs": 42,
        "message_count": 6,
        "status": "done",
        "call_successful": "success",
        "direction": "outbound",
        "tag_ids": [],
    })];
    Json(json!({ "conversations": conversations, "has_more": false, "next_cursor": null }))
        .into_response()
}

fn elevenlabs_unauthorized(status: &str, message: &str) -> Response {
    let body = json!({ "detail": { "status": status, "message": message } });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// FastAPI's 422 (`HTTPValidationError` in the spec).
fn elevenlabs_invalid_page_size(raw: Option<&String>) -> Response {
    let body = json!({ "detail": [{
        "type": "less_than_equal",
        "loc": ["query", "page_size"],
        "msg": "Input should be a valid integer between 1 and 100",
        "input": raw,
    }] });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// HighLevel: `GET /locations/{locationId}` (`get-location`, ghl.locations.subset.json).

async fn gohighlevel_location(
    State(accounts): State<Accounts>,
    Path(location_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let bearer = authorization(&headers).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(accounts.gohighlevel_token.as_str()) {
        // `UnauthorizedDTO` example from the spec.
        let body = json!({
            "statusCode": 401,
            "message": "Invalid token: access token is invalid",
            "error": "Unauthorized",
        });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    // The real answer to a missing or unknown `Version` is UNCONFIRMED; `BadRequestDTO` here.
    if headers.get("version").and_then(|v| v.to_str().ok()) != Some("2021-07-28") {
        let body = json!({ "statusCode": 400, "message": "Bad Request" });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    if location_id != accounts.gohighlevel_location_id {
        // UNCONFIRMED wording; a token for another location is refused, not "not found".
        let body = json!({
            "statusCode": 403,
            "message": "The token does not have access to this location.",
            "error": "Forbidden",
        });
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    // `GetLocationByIdSuccessfulResponseDto`, values from the spec's examples.
    Json(json!({ "location": {
        "id": location_id,
        "companyId": "5DP4iH6HLkQsiKESj6rh",
        "name": "Simulated Dental",
        "domain": "sim.msgsndr.com",
        "address": "100 Congress Ave",
        "city": "Austin",
        "state": "TX",
        "country": "US",
        "postalCode": "78701",
        "website": "https://example.com/",
        "timezone": "America/Chicago",
        "firstName": "Sam",
        "lastName": "Owner",
        "email": "owner@example.com",
        "phone": "+15125550100",
        "business": {
            "name": "Simulated Dental",
            "address": "100 Congress Ave",
            "city": "Austin",
            "state": "TX",
            "country": "US",
            "postalCode": "78701",
            "website": "https://example.com/",
            "timezone": "America/Chicago",
        },
        "social": {},
        "settings": {
            "allowDuplicateContact": false,
            "allowDuplicateOpportunity": false,
            "allowFacebookNameMerge": false,
            "disableContactTimezone": false,
        },
    } }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Zoho CRM: `GET /crm/v8/Leads` (`Response_Wrapper` / `API_Exception`, zoho-crm.records.json).

async fn zoho_leads(
    State(accounts): State<Accounts>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = authorization(&headers).and_then(|v| v.strip_prefix("Zoho-oauthtoken "));
    if token != Some(accounts.zoho_access_token.as_str()) {
        return zoho_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            &json!({}),
            "invalid oauth token",
        );
    }
    if query.get("fields").is_none_or(String::is_empty) {
        // The message wording is UNCONFIRMED.
        return zoho_error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            &json!({ "param": "fields" }),
            "One of the expected parameter is missing",
        );
    }
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(200);
    Json(json!({
        "data": [{ "id": "4876876000001234567" }],
        "info": {
            "per_page": per_page,
            "count": 1,
            "page": 1,
            "sort_by": "id",
            "sort_order": "desc",
            "more_records": false,
            "next_page_token": null,
            "previous_page_token": null,
            "page_token_expiry": null,
        },
    }))
    .into_response()
}

/// Zoho's `API_Exception` envelope.
/// `GET /crm/v8/{module}/{id}`: 200 `{"data":[record]}`, or 204 with no body when absent.
async fn zoho_record(
    State(accounts): State<Accounts>,
    Path((module, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = authorization(&headers).and_then(|v| v.strip_prefix("Zoho-oauthtoken "));
    if token != Some(accounts.zoho_access_token.as_str()) {
        return zoho_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            &json!({}),
            "invalid oauth token",
        );
    }
    match accounts
        .zoho_records
        .get(&format!("{module}/{id}"))
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    {
        Some(record) => Json(json!({ "data": [record] })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `POST /oauth/v2/token` (`grant_type=refresh_token`, form or query): a new access token, or
/// 200 `{"error": "invalid_code"}` as Zoho answers a bad refresh token.
async fn zoho_token(
    State(accounts): State<Accounts>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut fields: HashMap<String, String> = query;
    fields.extend(crate::http::form::parse(body.as_bytes()));
    let field = |name: &str| fields.get(name).map(String::as_str);
    let valid = field("grant_type") == Some("refresh_token")
        && field("refresh_token") == Some(accounts.zoho_refresh_token.as_str())
        && field("client_id") == Some(accounts.zoho_client_id.as_str())
        && field("client_secret") == Some(accounts.zoho_client_secret.as_str());
    if !valid {
        return Json(json!({ "error": "invalid_code" })).into_response();
    }
    Json(json!({
        "access_token": accounts.zoho_access_token,
        "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.fields.READ ZohoCRM.notifications.ALL",
        "api_domain": "https://www.zohoapis.com",
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

fn zoho_error(status: StatusCode, code: &str, details: &Value, message: &str) -> Response {
    let body = json!({ "code": code, "details": details, "message": message, "status": "error" });
    (status, Json(body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Custom: any tenant-run endpoint that answers 2xx to an authorised GET.

async fn custom_health(State(accounts): State<Accounts>, headers: HeaderMap) -> Response {
    if let Some(key) = &accounts.custom_api_key {
        let bearer = authorization(&headers).and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(key.as_str()) {
            let body = json!({ "error": "unauthorized" });
            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    }
    Json(json!({ "status": "ok" })).into_response()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
