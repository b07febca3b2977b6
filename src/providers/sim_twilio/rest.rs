//! The Calls REST handlers: create, fetch and update (hang up, cancel, redirect), and the Call
//! resource they answer with.
//!
//! A create request is recorded (and counted as active) the moment it arrives; the answer
//! waits [`SimBehaviour::create_latency`](super::SimBehaviour::create_latency), like a slow
//! Twilio API. Updates follow A3 of `shared/protocols/telephony-voice.md`: `Status=completed`
//! ends a call in any live state, `Status=canceled` ends a `queued` or `ringing` one and
//! leaves an answered call alone (UNCONFIRMED: remembered from the "modify live calls" page),
//! and a call canceled while `queued` fires no status callback (TW-CALL).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::lifecycle::{self, Instructions};
use super::{Control, SimArrival, SimCall, TwilioSimState};
use crate::ids::PhoneNumber;

/// The first non-empty value of `name` in form `params`.
fn first(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty())
}

pub(super) async fn create_call(
    State(state): State<TwilioSimState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = tokio::time::Instant::now();
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    if let Some(refusal) = state.gate(&account, &headers, &path) {
        return refusal;
    }
    let params = crate::http::form::parse(&body);
    if let Err((code, message)) = validate_create(&state, &params) {
        return twilio_error(StatusCode::BAD_REQUEST, code, &message);
    }
    let call = record_call(&state, params, arrived);
    let resource = call_resource(&state.account_sid, &call);
    tokio::time::sleep(state.behaviour.create_latency).await;
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// Checks a create request the way Twilio does; `Err` is the first failed check's code and
/// message.
fn validate_create(
    state: &TwilioSimState,
    params: &[(String, String)],
) -> Result<(), (u32, String)> {
    let refuse = |code, message: &str| Err((code, message.to_owned()));
    let Some(to) = first(params, "To") else {
        return refuse(21201, "No 'To' number is specified");
    };
    let Some(from) = first(params, "From") else {
        return refuse(21603, "A 'From' phone number is required.");
    };
    if !is_endpoint(&to) {
        return refuse(21211, &format!("Invalid 'To' Phone Number: {to}"));
    }
    if !is_endpoint(&from) {
        return refuse(21212, &format!("Invalid 'From' Phone Number: {from}"));
    }
    if state.geo_blocked_prefixes.iter().any(|p| to.starts_with(p)) {
        let message = format!(
            "Account not authorized to call {to}. Perhaps you need to enable some \
             international permissions: https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"
        );
        return refuse(21215, &message);
    }
    if ["Url", "Twiml", "ApplicationSid"]
        .iter()
        .all(|name| first(params, name).is_none())
    {
        return refuse(
            21205,
            "A 'Url', 'Twiml' or 'ApplicationSid' parameter is required.",
        );
    }
    Ok(())
}

/// Records a validated create request as a `queued` call and starts its lifecycle.
fn record_call(
    state: &TwilioSimState,
    params: Vec<(String, String)>,
    arrived: tokio::time::Instant,
) -> SimCall {
    let now = Utc::now();
    let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
    let to = first(&params, "To").unwrap_or_default();
    let from = first(&params, "From").unwrap_or_default();
    let (instructions, watched) = tokio::sync::watch::channel(Instructions::from_params(&params));
    let hangup = CancellationToken::new();
    let call = {
        let mut book = state.book();
        let outcome = book.picker.pick(&to);
        let call = SimCall {
            sid: sid.clone(),
            to: to.clone(),
            from,
            status: "queued".to_owned(),
            params,
            redirects: Vec::new(),
            date_created: now.to_rfc2822(),
            date_updated: now.to_rfc2822(),
            outcome,
            created_at: now,
            started_at: None,
            answered_at: None,
            ended_at: None,
            answered_by: None,
        };
        let control = Control {
            arrival: book.arrivals.len(),
            hangup: hangup.clone(),
            instructions,
            silent: false,
        };
        book.controls.insert(sid.clone(), control);
        let arrival = SimArrival {
            instant: arrived,
            at: now,
        };
        book.arrivals.push((sid.clone(), to.clone(), arrival));
        *book.per_callee.entry(to).or_default() += 1;
        book.active += 1;
        book.max_concurrency = book.max_concurrency.max(book.active);
        book.calls.insert(sid, call.clone());
        call
    };
    let plan = lifecycle::Plan::new(&call, hangup, watched);
    tokio::spawn(lifecycle::run(state.clone(), plan));
    call
}

pub(super) async fn fetch_call(
    State(state): State<TwilioSimState>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/Calls/{call}");
    if let Some(refusal) = state.gate(&account, &headers, &path) {
        return refusal;
    }
    let sid = call.strip_suffix(".json").unwrap_or_default();
    match state.call(sid) {
        Some(found) => Json(call_resource(&state.account_sid, &found)).into_response(),
        None => not_found(&path),
    }
}

pub(super) async fn update_call(
    State(state): State<TwilioSimState>,
    Path((account, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/Calls/{call}");
    if let Some(refusal) = state.gate(&account, &headers, &path) {
        return refusal;
    }
    let sid = call.strip_suffix(".json").unwrap_or_default();
    let params = crate::http::form::parse(&body);
    let mut book = state.book();
    let Some(found) = book.calls.get(sid) else {
        return not_found(&path);
    };
    let status = found.status.clone();
    let mut hangup = None;
    match first(&params, "Status").as_deref() {
        Some("completed") => {
            if book.end(sid, "completed") {
                hangup = book.controls.get(sid).map(|c| c.hangup.clone());
            }
        }
        Some("canceled") => {
            if matches!(status.as_str(), "queued" | "ringing")
                && book.end(sid, "canceled")
                && let Some(control) = book.controls.get_mut(sid)
            {
                control.silent = status == "queued";
                hangup = Some(control.hangup.clone());
            }
        }
        Some(other) => {
            let message = format!("Invalid 'Status' value: {other}");
            return twilio_error(StatusCode::BAD_REQUEST, 21218, &message);
        }
        None => {
            let Some(redirect) = Instructions::from_params(&params) else {
                let message = "A 'Url', 'Twiml' or 'Status' parameter is required.";
                return twilio_error(StatusCode::BAD_REQUEST, 21205, message);
            };
            if super::is_terminal(&status) {
                let message = "Call is not in-progress. Cannot redirect.";
                return twilio_error(StatusCode::BAD_REQUEST, 21220, message);
            }
            if let Some(control) = book.controls.get(sid) {
                control.instructions.send_replace(Some(redirect.clone()));
            }
            if let Some(found) = book.calls.get_mut(sid) {
                found.redirects.push(redirect.value().to_owned());
                found.date_updated = Utc::now().to_rfc2822();
            }
        }
    }
    let resource = book
        .calls
        .get(sid)
        .map(|found| call_resource(&state.account_sid, found));
    drop(book);
    if let Some(token) = hangup {
        token.cancel();
    }
    match resource {
        Some(resource) => Json(resource).into_response(),
        None => not_found(&path),
    }
}

/// Returns whole seconds between answer and end, rounded; 0 for a call never answered.
pub(super) fn talk_secs(call: &SimCall) -> u64 {
    let (Some(answered), Some(ended)) = (call.answered_at, call.ended_at) else {
        return 0;
    };
    let millis = (ended - answered).num_milliseconds().max(0);
    u64::try_from((millis + 500) / 1000).unwrap_or(0)
}

/// The Call resource (`api.v2010.account.call`) of `call` as it stands, an outbound API call.
pub(super) fn call_resource(account_sid: &str, call: &SimCall) -> Value {
    let sid = &call.sid;
    let base = format!("/2010-04-01/Accounts/{account_sid}/Calls/{sid}");
    let subresource = |name: &str| format!("{base}/{name}.json");
    let rfc2822 = |time: Option<DateTime<Utc>>| time.map(|time| time.to_rfc2822());
    json!({
        "account_sid": account_sid,
        "answered_by": call.answered_by,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": call.date_created,
        "date_updated": call.date_updated,
        "direction": "outbound-api",
        "duration": call.has_ended().then(|| talk_secs(call).to_string()),
        "end_time": rfc2822(call.ended_at),
        "forwarded_from": null,
        "from": call.from,
        "from_formatted": call.from,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": rfc2822(call.started_at),
        "status": call.status,
        "subresource_uris": {
            "notifications": subresource("Notifications"),
            "recordings": subresource("Recordings"),
            "payments": subresource("Payments"),
            "events": subresource("Events"),
            "siprec": subresource("Siprec"),
            "streams": subresource("Streams"),
            "transcriptions": subresource("Transcriptions"),
            "user_defined_message_subscriptions": subresource("UserDefinedMessageSubscriptions"),
            "user_defined_messages": subresource("UserDefinedMessages"),
        },
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": null,
        "uri": format!("{base}.json"),
    })
}

/// Returns true for what Twilio accepts as an endpoint: `sip:…`, `client:…`, or an E.164
/// number that is plausible (a North American `+1` number has exactly 10 digits after `+1`).
pub(super) fn is_endpoint(value: &str) -> bool {
    if value.starts_with("sip:") || value.starts_with("client:") {
        return true;
    }
    let e164 = PhoneNumber::parse(value).is_ok_and(|number| number.as_str() == value);
    let north_american_length_ok = !value.starts_with("+1") || value.len() == 12;
    e164 && north_american_length_ok
}

pub(super) fn not_found(path: &str) -> Response {
    let message = format!("The requested resource {path} was not found");
    twilio_error(StatusCode::NOT_FOUND, 20404, &message)
}

/// Twilio's REST error body (fields as read by twilio-node `RestException`).
pub(super) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}
