//! A test double of Zoho: accounts (`POST /oauth/v2/token`), CRM v8 records of `Leads`,
//! `Contacts`, `Deals`, `Notes` and `Calls` (read, search, upsert, update, create, tags,
//! related notes), and Zoho Bookings (availability, book, reschedule, cancel), in the wire
//! format of `shared/specs/zoho-crm.*.json` and `shared/protocols/crm-calendar.md` B.
//!
//! - **Orgs**: each refresh token belongs to an org; the access tokens it mints read and
//!   write that org's records only. Limits are per org: a concurrency gate and a credit
//!   counter, both answering 429 `TOO_MANY_REQUESTS`.
//! - **Tokens**: access tokens live [`ZohoSimConfig::access_token_lifetime`]; an unknown or
//!   expired one is 401 `INVALID_TOKEN`. Token answers carry [`ZohoSimConfig::api_domain`]
//!   (the data center's); refused grants are HTTP 200 with an `error` key, as Zoho does.
//! - **Quirks**: 204 with no body for empty searches and missing records, per-record errors
//!   inside `data[]` (HTTP 202), Bookings' `reponse` typo.
//! - **Observability**: every request is recorded ([`Recorded`], secrets redacted) with the
//!   answer; [`Counters`] count notes, status changes, refreshes and bookings; [`spec`]
//!   checks the record against the official specs.
//! - **Faults**: added latency, the next N answers forced to a status, the next N tokens
//!   refused, the next N written records failing with a code.

mod accounts;
mod bookings;
mod crm;
#[cfg(any(test, feature = "test-util"))]
pub mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

/// How the simulator behaves; [`Default`] is one org with demo credentials.
#[derive(Debug, Clone)]
pub struct ZohoSimConfig {
    /// The platform app's client id the token endpoint requires.
    pub client_id: String,
    /// The platform app's client secret the token endpoint requires.
    pub client_secret: String,
    /// How long an access token lives (Zoho: one hour).
    pub access_token_lifetime: Duration,
    /// The `api_domain` token answers name (the data center's API host).
    pub api_domain: String,
    /// Requests one org may have in flight (Zoho Standard edition: 10).
    pub concurrency: usize,
    /// Credits one org may spend (one per CRM or Bookings request).
    pub credits: u64,
    /// The field whose changes count as status changes.
    pub status_field: String,
    /// The Bookings workspace.
    pub bookings: SimBookings,
}

/// A Bookings service with one staff member, open on weekdays.
#[derive(Debug, Clone)]
pub struct SimBookings {
    /// The service id `availableslots` and `appointment` require.
    pub service_id: String,
    /// The staff id they require.
    pub staff_id: String,
    /// The workspace's zone.
    pub time_zone: Tz,
    /// First slot start, local.
    pub opens: NaiveTime,
    /// No slot ends after this, local.
    pub closes: NaiveTime,
    /// Slot length.
    pub slot_minutes: u32,
}

impl Default for ZohoSimConfig {
    fn default() -> Self {
        Self {
            client_id: "1000.SIMCLIENTID".to_owned(),
            client_secret: "sim-zoho-client-secret".to_owned(),
            access_token_lifetime: Duration::from_secs(3_600),
            api_domain: "https://www.zohoapis.com".to_owned(),
            concurrency: 10,
            credits: 50_000,
            status_field: "Lead_Status".to_owned(),
            bookings: SimBookings {
                service_id: "4000000020030".to_owned(),
                staff_id: "4000000020001".to_owned(),
                time_zone: chrono_tz::America::Chicago,
                opens: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
                closes: NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default(),
                slot_minutes: 30,
            },
        }
    }
}

/// One request as received (authorization and secret form fields redacted) and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Headers, `authorization` reduced to its scheme.
    pub headers: Vec<(String, String)>,
    /// The body: JSON as sent, forms as an object of text fields.
    pub body: Option<Value>,
    /// The answer's status.
    pub status: u16,
    /// The answer's JSON body (`None` for 204 and non-JSON).
    pub response: Option<Value>,
}

impl Recorded {
    /// The query's pairs, decoded.
    #[must_use]
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_pairs(self.query.as_deref().unwrap_or_default())
    }
}

/// What the simulator counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Notes created.
    pub notes_written: u64,
    /// Changes of the status field's value.
    pub status_changes: u64,
    /// Refresh grants honoured.
    pub refreshes: u64,
    /// Authorization-code grants honoured.
    pub code_grants: u64,
    /// 401 `INVALID_TOKEN` answers.
    pub invalid_tokens: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Records inserted or updated (all modules but notes).
    pub records_written: u64,
    /// Calls logged.
    pub calls_logged: u64,
    /// Appointments booked.
    pub appointments_booked: u64,
    /// Appointments rescheduled.
    pub appointments_rescheduled: u64,
    /// Appointments cancelled.
    pub appointments_cancelled: u64,
}

#[derive(Debug, Default)]
struct Faults {
    latency: Duration,
    forced: VecDeque<u16>,
    refuse_tokens: u32,
    record_errors: VecDeque<String>,
}

#[derive(Debug, Default)]
struct Org {
    /// Records by module, in creation order.
    records: BTreeMap<String, Vec<Map<String, Value>>>,
    in_flight: usize,
    credits_used: u64,
    appointments: BTreeMap<String, Appointment>,
}

#[derive(Debug, Clone)]
struct Appointment {
    /// Local start in the workspace's zone.
    start: NaiveDateTime,
    cancelled: bool,
    customer: Value,
}

#[derive(Debug, Default)]
struct Inner {
    refresh_tokens: HashMap<String, String>,
    grant_codes: HashMap<String, String>,
    access: HashMap<String, (String, DateTime<Utc>)>,
    orgs: HashMap<String, Org>,
    next_id: u64,
    faults: Faults,
    requests: Vec<Recorded>,
    counters: Counters,
}

/// The simulator's state, shared by its handlers and the test holding it.
#[derive(Debug, Clone)]
pub struct ZohoSimState {
    config: Arc<ZohoSimConfig>,
    inner: Arc<Mutex<Inner>>,
}

/// The org a request's token belongs to (set by the gate).
#[derive(Debug, Clone)]
struct OrgId(String);

impl ZohoSimState {
    /// A simulator with no orgs yet.
    #[must_use]
    pub fn new(config: ZohoSimConfig) -> Self {
        Self {
            config: Arc::new(config),
            inner: Arc::new(Mutex::new(Inner {
                next_id: 4_876_876_000_001_300_000,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A handler that panicked mid-update leaves test data only: keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ZohoSimConfig {
        &self.config
    }

    /// Adds org `org` whose refresh token is `refresh_token`.
    pub fn add_org(&self, org: &str, refresh_token: &str) {
        let mut inner = self.lock();
        inner
            .refresh_tokens
            .insert(refresh_token.to_owned(), org.to_owned());
        inner.orgs.entry(org.to_owned()).or_default();
    }

    /// Forgets a refresh token, as a revocation (or a 21st refresh token) does.
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.lock().refresh_tokens.remove(refresh_token);
    }

    /// Accepts `code` once in an authorization-code grant for `org`.
    pub fn add_grant_code(&self, org: &str, code: &str) {
        self.lock()
            .grant_codes
            .insert(code.to_owned(), org.to_owned());
    }

    /// Mints an access token of `org` directly (as if granted), valid for the lifetime.
    #[must_use]
    pub fn issue_access_token(&self, org: &str) -> String {
        let mut inner = self.lock();
        self.mint(&mut inner, org)
    }

    fn mint(&self, inner: &mut Inner, org: &str) -> String {
        inner.next_id += 1;
        let token = format!(
            "1000.sim{:x}.{}",
            inner.next_id,
            uuid::Uuid::new_v4().simple()
        );
        let lifetime = chrono::Duration::from_std(self.config.access_token_lifetime)
            .unwrap_or(chrono::Duration::MAX);
        let expiry = Utc::now()
            .checked_add_signed(lifetime)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        inner.access.insert(token.clone(), (org.to_owned(), expiry));
        token
    }

    /// Makes every access token issued so far invalid (as a revocation or expiry would).
    pub fn expire_access_tokens(&self) {
        self.lock().access.clear();
    }

    /// Stores a record in `org`'s `module`; returns its id (given, or assigned).
    pub fn insert_record(&self, org: &str, module: &str, mut record: Map<String, Value>) -> String {
        let mut inner = self.lock();
        let id = match record.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => next_id(&mut inner),
        };
        record.insert("id".to_owned(), json!(id));
        crm::stamp(&mut record, true);
        inner
            .orgs
            .entry(org.to_owned())
            .or_default()
            .records
            .entry(module.to_owned())
            .or_default()
            .push(record);
        id
    }

    /// Returns record `id` of `org`'s `module`.
    #[must_use]
    pub fn record(&self, org: &str, module: &str, id: &str) -> Option<Map<String, Value>> {
        let inner = self.lock();
        inner
            .orgs
            .get(org)?
            .records
            .get(module)?
            .iter()
            .find(|record| record.get("id").and_then(Value::as_str) == Some(id))
            .cloned()
    }

    /// Returns every record of `org`'s `module`.
    #[must_use]
    pub fn records(&self, org: &str, module: &str) -> Vec<Map<String, Value>> {
        let inner = self.lock();
        inner
            .orgs
            .get(org)
            .and_then(|org| org.records.get(module))
            .cloned()
            .unwrap_or_default()
    }

    /// Every request received so far, oldest first.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().faults.latency = latency;
    }

    /// Answers the next `count` CRM or Bookings requests with `status` (429 with
    /// `TOO_MANY_REQUESTS` and `Retry-After`, 401 `INVALID_TOKEN`, 5xx `INTERNAL_ERROR`).
    pub fn fail_next(&self, status: u16, count: usize) {
        self.lock()
            .faults
            .forced
            .extend(std::iter::repeat_n(status, count));
    }

    /// Refuses the next `count` valid access tokens with 401 `INVALID_TOKEN`.
    pub fn refuse_next_tokens(&self, count: u32) {
        self.lock().faults.refuse_tokens += count;
    }

    /// Fails the next `count` written records with `code` (`INVALID_DATA`,
    /// `MANDATORY_NOT_FOUND`, `INTERNAL_ERROR`, …) inside a 202.
    pub fn fail_next_records(&self, code: &str, count: usize) {
        self.lock()
            .faults
            .record_errors
            .extend(std::iter::repeat_n(code.to_owned(), count));
    }
}

fn next_id(inner: &mut Inner) -> String {
    inner.next_id += 1;
    inner.next_id.to_string()
}

/// Returns the simulator's router.
pub fn router(state: ZohoSimState) -> Router {
    Router::new()
        .route("/oauth/v2/token", post(accounts::token))
        .route("/crm/v8/{module}", post(crm::create))
        .route("/crm/v8/{module}/search", get(crm::search))
        .route("/crm/v8/{module}/upsert", post(crm::upsert))
        .route("/crm/v8/{module}/{id}", get(crm::read).put(crm::update))
        .route("/crm/v8/{module}/{id}/{related}", get(crm::related))
        .route("/crm/v8/{module}/{id}/actions/{action}", post(crm::tags))
        .route("/bookings/v1/json/availableslots", get(bookings::available))
        .route("/bookings/v1/json/{endpoint}", post(bookings::post))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Serves the simulator on `listener`.
pub async fn serve(listener: tokio::net::TcpListener, state: ZohoSimState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// Records, delays, forces faults, checks the token and the org's limits.
async fn gate(State(state): State<ZohoSimState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 4 << 20).await.unwrap_or_default();
    let mut recorded = record_request(&parts, &bytes);
    let latency = state.lock().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = admit(&state, request, next).await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    recorded.status = parts.status.as_u16();
    recorded.response = serde_json::from_slice(&bytes)
        .ok()
        .map(|mut answer: Value| {
            // Token answers carry tokens: the record keeps their shape, not their values.
            if let Some(object) = answer.as_object_mut() {
                for (name, value) in object.iter_mut() {
                    if SECRET_FIELDS.contains(&name.as_str()) {
                        *value = json!("[redacted]");
                    }
                }
            }
            answer
        });
    let mut inner = state.lock();
    match parts.status {
        StatusCode::TOO_MANY_REQUESTS => inner.counters.rate_limited += 1,
        StatusCode::UNAUTHORIZED => inner.counters.invalid_tokens += 1,
        _ => {}
    }
    inner.requests.push(recorded);
    drop(inner);
    Response::from_parts(parts, Body::from(bytes))
}

async fn admit(state: &ZohoSimState, mut request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/oauth/") {
        return next.run(request).await;
    }
    let forced = state.lock().faults.forced.pop_front();
    if let Some(status) = forced {
        return forced_answer(status);
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Zoho-oauthtoken "))
        .map(str::to_owned);
    let org = {
        let mut inner = state.lock();
        let valid = token
            .and_then(|token| inner.access.get(&token).cloned())
            .filter(|(_, expiry)| *expiry > Utc::now())
            .map(|(org, _)| org);
        match valid {
            Some(_) if inner.faults.refuse_tokens > 0 => {
                inner.faults.refuse_tokens -= 1;
                None
            }
            other => other,
        }
    };
    let Some(org) = org else {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "invalid oauth token",
            json!({}),
        );
    };
    {
        let mut inner = state.lock();
        let concurrency = state.config.concurrency;
        let credits = state.config.credits;
        let org_state = inner.orgs.entry(org.clone()).or_default();
        if org_state.credits_used >= credits || org_state.in_flight >= concurrency {
            drop(inner);
            return too_many_requests();
        }
        org_state.credits_used += 1;
        org_state.in_flight += 1;
    }
    let _slot = InFlight {
        state: state.clone(),
        org: org.clone(),
    };
    request.extensions_mut().insert(OrgId(org));
    next.run(request).await
}

/// Gives the org's concurrency slot back, also when the handler's future is dropped.
struct InFlight {
    state: ZohoSimState,
    org: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(org) = self.state.lock().orgs.get_mut(&self.org) {
            org.in_flight = org.in_flight.saturating_sub(1);
        }
    }
}

fn forced_answer(status: u16) -> Response {
    match status {
        429 => too_many_requests(),
        401 => error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "invalid oauth token",
            json!({}),
        ),
        other => error(
            StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "INTERNAL_ERROR",
            "Internal server error occurred.",
            json!({}),
        ),
    }
}

fn too_many_requests() -> Response {
    // NOTE: Zoho's exact 429 body is UNCONFIRMED (protocols B.4); this is its error envelope.
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        "too many requests",
        json!({}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// Zoho's `API_Exception` envelope.
fn error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    let mut body = json!({"code": code, "message": message, "status": "error"});
    body["details"] = details;
    (status, Json(body)).into_response()
}

/// Names of form fields whose values are secrets.
const SECRET_FIELDS: &[&str] = &["client_secret", "refresh_token", "code", "access_token"];

fn record_request(parts: &axum::http::request::Parts, bytes: &Bytes) -> Recorded {
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != header::COOKIE)
        .map(|(name, value)| {
            let text = value.to_str().unwrap_or("<binary>");
            let shown = if *name == header::AUTHORIZATION {
                format!("{} [redacted]", text.split(' ').next().unwrap_or_default())
            } else {
                text.to_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    let query = parts.uri.query().map(|query| {
        let mut url = reqwest::Url::parse("http://form/").expect("a static url");
        url.query_pairs_mut()
            .extend_pairs(form_pairs(query).into_iter().map(|(name, value)| {
                if SECRET_FIELDS.contains(&name.as_str()) {
                    (name, "[redacted]".to_owned())
                } else {
                    (name, value)
                }
            }));
        url.query().unwrap_or_default().to_owned()
    });
    Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query,
        headers,
        body: body_value(&parts.headers, bytes),
        status: 0,
        response: None,
    }
}

/// The body as JSON, or a form (urlencoded or multipart) as an object with secrets redacted.
fn body_value(headers: &HeaderMap, bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let fields = if content_type.starts_with("multipart/form-data") {
        multipart_fields(content_type, bytes)?
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form_pairs(std::str::from_utf8(bytes).ok()?)
    } else {
        return serde_json::from_slice(bytes).ok();
    };
    let mut object = Map::new();
    for (name, value) in fields {
        let value = if SECRET_FIELDS.contains(&name.as_str()) {
            "[redacted]".to_owned()
        } else {
            value
        };
        object.insert(name, Value::String(value));
    }
    Some(Value::Object(object))
}

/// Decodes `a=1&b=2` (`+` is a space).
fn form_pairs(text: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://form/?{text}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The text fields of a `multipart/form-data` body; `None` when it is not one.
fn multipart_fields(content_type: &str, bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let boundary = content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let text = std::str::from_utf8(bytes).ok()?;
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n")?;
        let (head, value) = part.split_once("\r\n\r\n")?;
        let name = head
            .split(';')
            .find_map(|item| item.trim().strip_prefix("name="))?
            .lines()
            .next()?
            .trim_matches('"')
            .to_owned();
        fields.push((name, value.strip_suffix("\r\n").unwrap_or(value).to_owned()));
    }
    Some(fields)
}
