//! A simulator of Twilio's Calls REST endpoints, recording what it is asked to do.
//!
//! - `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`: validates like Twilio (21201 no
//!   `To`, 21603 no `From`, 21211 invalid `To`, 21212 invalid `From`, 21215 no geographic
//!   permission for [`TwilioSimState::geo_blocked_prefixes`], 21205 no `Url`/`Twiml`/
//!   `ApplicationSid`) and answers 201 with a Call resource (`status` `queued`).
//! - `GET …/Calls/{Sid}.json`: the Call resource, or 404 with 20404.
//! - `POST …/Calls/{Sid}.json`: `Status=completed|canceled` ends the call; `Url`/`Twiml`
//!   redirects a call that has not ended (21220 otherwise).
//!
//! Every request needs HTTP Basic with the configured sid and token, else 401 with 20003.
//! Scripted faults ([`TwilioSimState::push_fault`]) answer the next requests before anything
//! else, e.g. a 429 with `Retry-After`. The state counts calls per callee and the highest
//! number of calls not yet ended at once. Codes 21201, 21205, 21212, 21218, 21220 and 21603
//! and their messages are best recollections (UNCONFIRMED in `shared/protocols/`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use crate::ids::PhoneNumber;

/// A call the simulator created, with the parameters it was created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    /// The Call SID (`CA` + 32 hex digits).
    pub sid: String,
    /// The callee as sent in `To`.
    pub to: String,
    /// The caller id as sent in `From`.
    pub from: String,
    /// The REST status (`queued`, then `completed` or `canceled`).
    pub status: String,
    /// Every form parameter of the create request, in order (repeated keys repeat).
    pub params: Vec<(String, String)>,
    /// Every redirect (`Url` or `Twiml` value) applied to the call, in order.
    pub redirects: Vec<String>,
    /// RFC 2822 creation time.
    pub date_created: String,
    /// RFC 2822 time of the last change.
    pub date_updated: String,
}

impl SimCall {
    /// Returns the values of form parameter `name`, in order.
    #[must_use]
    pub fn param(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// A scripted answer to the next request: HTTP status, Twilio code and `Retry-After` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimFault {
    /// The HTTP status to answer, e.g. 429 or 503.
    pub status: u16,
    /// The Twilio error code in the body, e.g. 20429.
    pub code: u32,
    /// The `Retry-After` header, in seconds, when set.
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Default)]
struct Book {
    calls: BTreeMap<String, SimCall>,
    per_callee: BTreeMap<String, u32>,
    active: u32,
    max_concurrency: u32,
    faults: VecDeque<SimFault>,
}

/// The simulator's configuration and record; clones share the record.
#[derive(Debug, Clone)]
pub struct TwilioSimState {
    account_sid: String,
    auth_token: String,
    geo_blocked_prefixes: Vec<String>,
    book: Arc<Mutex<Book>>,
}

impl Default for TwilioSimState {
    /// Returns a simulator accepting [`super::sim::SimAccounts`]' default Twilio credentials.
    fn default() -> Self {
        let accounts = super::sim::SimAccounts::default();
        Self::new(&accounts.twilio_account_sid, &accounts.twilio_auth_token)
    }
}

impl TwilioSimState {
    /// Returns a simulator accepting Basic `account_sid:auth_token`, with no geographic
    /// permission for the international networks `+881`, `+882` and `+883`.
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        Self {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            geo_blocked_prefixes: ["+881", "+882", "+883"].map(str::to_owned).to_vec(),
            book: Arc::default(),
        }
    }

    /// Returns the Account SID the simulator accepts.
    #[must_use]
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// Returns the `To` prefixes answered with 21215 (no geographic permission).
    #[must_use]
    pub fn geo_blocked_prefixes(&self) -> &[String] {
        &self.geo_blocked_prefixes
    }

    /// Answers the next request (any endpoint, after authentication) with `fault`.
    pub fn push_fault(&self, fault: SimFault) {
        self.book().faults.push_back(fault);
    }

    /// Returns every created call, ordered by sid.
    #[must_use]
    pub fn calls(&self) -> Vec<SimCall> {
        self.book().calls.values().cloned().collect()
    }

    /// Returns the call `sid`, if it was created.
    #[must_use]
    pub fn call(&self, sid: &str) -> Option<SimCall> {
        self.book().calls.get(sid).cloned()
    }

    /// Returns how many calls were created to `to` (as sent in `To`).
    #[must_use]
    pub fn calls_to(&self, to: &str) -> u32 {
        self.book().per_callee.get(to).copied().unwrap_or(0)
    }

    /// Returns how many created calls have not ended.
    #[must_use]
    pub fn active_calls(&self) -> u32 {
        self.book().active
    }

    /// Returns the highest number of calls that had not ended at the same time.
    #[must_use]
    pub fn max_concurrency(&self) -> u32 {
        self.book().max_concurrency
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panicking test thread must not hide the record from the others.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let expected = format!("{}:{}", self.account_sid, self.auth_token);
        decoded == expected.as_bytes()
    }

    /// Answers authentication, account and scripted-fault checks; `None` lets the request on.
    fn gate(&self, account: &str, headers: &HeaderMap, path: &str) -> Option<Response> {
        if !self.authenticated(headers) {
            let refusal = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
            let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"Twilio API\"")];
            return Some((challenge, refusal).into_response());
        }
        if account != self.account_sid {
            return Some(not_found(path));
        }
        let fault = self.book().faults.pop_front()?;
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = twilio_error(status, fault.code, "Simulated fault");
        if let Some(seconds) = fault.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        Some(response)
    }
}

/// Returns the simulator's router over `state`.
pub fn router(state: TwilioSimState) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls.json",
            post(create_call),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            post(update_call).get(fetch_call),
        )
        .with_state(state)
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(state: TwilioSimState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the twilio simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %err, "twilio simulator stopped");
        }
    });
    (addr, task)
}

async fn create_call(
    State(state): State<TwilioSimState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    if let Some(refusal) = state.gate(&account, &headers, &path) {
        return refusal;
    }
    let params = crate::http::form::parse(&body);
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let Some(to) = first("To") else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To' number is specified",
        );
    };
    let Some(from) = first("From") else {
        let message = "A 'From' phone number is required.";
        return twilio_error(StatusCode::BAD_REQUEST, 21603, message);
    };
    if !is_endpoint(&to) {
        let message = format!("Invalid 'To' Phone Number: {to}");
        return twilio_error(StatusCode::BAD_REQUEST, 21211, &message);
    }
    if !is_endpoint(&from) {
        let message = format!("Invalid 'From' Phone Number: {from}");
        return twilio_error(StatusCode::BAD_REQUEST, 21212, &message);
    }
    if state.geo_blocked_prefixes.iter().any(|p| to.starts_with(p)) {
        let message = format!(
            "Account not authorized to call {to}. Perhaps you need to enable some \
             international permissions: https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"
        );
        return twilio_error(StatusCode::BAD_REQUEST, 21215, &message);
    }
    if ["Url", "Twiml", "ApplicationSid"]
        .iter()
        .all(|name| first(name).is_none())
    {
        let message = "A 'Url', 'Twiml' or 'ApplicationSid' parameter is required.";
        return twilio_error(StatusCode::BAD_REQUEST, 21205, message);
    }
    let now = chrono::Utc::now().to_rfc2822();
    let call = SimCall {
        sid: format!("CA{}", uuid::Uuid::new_v4().simple()),
        to: to.clone(),
        from,
        status: "queued".to_owned(),
        params,
        redirects: Vec::new(),
        date_created: now.clone(),
        date_updated: now,
    };
    let resource = call_resource(&state.account_sid, &call);
    {
        let mut book = state.book();
        *book.per_callee.entry(to).or_default() += 1;
        book.active += 1;
        book.max_concurrency = book.max_concurrency.max(book.active);
        book.calls.insert(call.sid.clone(), call);
    }
    (StatusCode::CREATED, Json(resource)).into_response()
}

async fn fetch_call(
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

async fn update_call(
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
    let first = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let mut book = state.book();
    let Some(found) = book.calls.get_mut(sid) else {
        return not_found(&path);
    };
    let ended = matches!(
        found.status.as_str(),
        "completed" | "canceled" | "failed" | "busy" | "no-answer"
    );
    let mut ends_now = false;
    match first("Status").as_deref() {
        Some(status @ ("completed" | "canceled")) => {
            if !ended {
                status.clone_into(&mut found.status);
                ends_now = true;
            }
        }
        Some(other) => {
            let message = format!("Invalid 'Status' value: {other}");
            return twilio_error(StatusCode::BAD_REQUEST, 21218, &message);
        }
        None => {
            let Some(redirect) = first("Url").or_else(|| first("Twiml")) else {
                let message = "A 'Url', 'Twiml' or 'Status' parameter is required.";
                return twilio_error(StatusCode::BAD_REQUEST, 21205, message);
            };
            if ended {
                let message = "Call is not in-progress. Cannot redirect.";
                return twilio_error(StatusCode::BAD_REQUEST, 21220, message);
            }
            found.redirects.push(redirect);
        }
    }
    found.date_updated = chrono::Utc::now().to_rfc2822();
    let resource = call_resource(&state.account_sid, found);
    if ends_now {
        book.active = book.active.saturating_sub(1);
    }
    Json(resource).into_response()
}

/// The Call resource (`api.v2010.account.call`) of `call`, as a just-placed outbound call.
fn call_resource(account_sid: &str, call: &SimCall) -> Value {
    let sid = &call.sid;
    let base = format!("/2010-04-01/Accounts/{account_sid}/Calls/{sid}");
    let subresource = |name: &str| format!("{base}/{name}.json");
    let ended = call.status == "completed" || call.status == "canceled";
    json!({
        "account_sid": account_sid,
        "answered_by": null,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": call.date_created,
        "date_updated": call.date_updated,
        "direction": "outbound-api",
        "duration": if ended { Some("0") } else { None },
        "end_time": if ended { Some(&call.date_updated) } else { None },
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
        "start_time": null,
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
fn is_endpoint(value: &str) -> bool {
    if value.starts_with("sip:") || value.starts_with("client:") {
        return true;
    }
    let e164 = PhoneNumber::parse(value).is_ok_and(|number| number.as_str() == value);
    let north_american_length_ok = !value.starts_with("+1") || value.len() == 12;
    e164 && north_american_length_ok
}

fn not_found(path: &str) -> Response {
    let message = format!("The requested resource {path} was not found");
    twilio_error(StatusCode::NOT_FOUND, 20404, &message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_repeated_keys_and_escapes() {
        let pairs = crate::http::form::parse(b"To=%2B14155551212&StatusCallbackEvent=initiated&Twiml=%3CSay%3Ehi+there%3C%2FSay%3E&StatusCallbackEvent=completed");
        assert_eq!(pairs[0], ("To".to_owned(), "+14155551212".to_owned()));
        assert_eq!(pairs[2].1, "<Say>hi there</Say>");
        let events: Vec<_> = pairs
            .iter()
            .filter(|(key, _)| key == "StatusCallbackEvent")
            .collect();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn endpoints_are_e164_sip_or_client() {
        assert!(is_endpoint("+14155551212"));
        assert!(is_endpoint("sip:agent@example.com"));
        assert!(is_endpoint("client:agent"));
        assert!(!is_endpoint("+1555"));
        assert!(!is_endpoint("+1555123"));
        assert!(!is_endpoint("4155551212"));
        assert!(!is_endpoint("+1 415 555 1212"));
    }
}
