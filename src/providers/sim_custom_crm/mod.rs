//! A generic REST CRM for the custom CRM adapter ([`crate::crm::custom`]): contacts, tags,
//! notes, deals and call logs under `/v1/contacts`, documented by `openapi.json` beside this
//! file, with every request recorded.
//!
//! - **Shape.** camelCase contacts (`firstName`, `doNotCall`, custom fields in `custom`),
//!   answers wrapped in `{"data": …}`, errors as `{"error", "message"}` with 400 (unreadable
//!   JSON), 401, 404 and 422. [`CustomCrmSimState::custom_settings`] is the `providers.custom`
//!   that maps it.
//! - **Authentication.** One scheme per simulator ([`SimAuth`]): bearer, basic, an API key
//!   header, or HMAC-SHA256 of `<timestamp>.<body>` (timestamp within five minutes). Anything
//!   else is 401 before the request is looked at.
//! - **Record.** Every request (method, path, query, JSON body, answered status) and counters:
//!   contacts created, status changes, notes written, deal moves, calls logged. Scripted faults
//!   ([`CustomCrmSimState::push_fault`]) answer the next authenticated requests first.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac as _};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// The simulator's OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How long an HMAC timestamp stays acceptable, either way.
const HMAC_TOLERANCE_SECS: i64 = 300;

/// The scheme requests must authenticate with.
#[derive(Clone, Debug)]
pub enum SimAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// HTTP Basic.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An API key in a header.
    Header {
        /// The header's name.
        name: String,
        /// The key.
        key: String,
    },
    /// Hex HMAC-SHA256 of `<timestamp>.<body>`.
    Hmac {
        /// The shared secret.
        secret: String,
        /// The timestamp's header.
        timestamp_header: String,
        /// The signature's header.
        signature_header: String,
    },
}

impl SimAuth {
    /// Returns the `auth` object of `providers.custom.crm` for this scheme.
    #[must_use]
    pub fn settings(&self) -> Value {
        match self {
            Self::Bearer { .. } => json!({"kind": "bearer"}),
            Self::Basic { username, .. } => json!({"kind": "basic", "username": username}),
            Self::Header { name, .. } => json!({"kind": "header", "header": name}),
            Self::Hmac {
                timestamp_header,
                signature_header,
                ..
            } => json!({
                "kind": "hmac",
                "timestamp_header": timestamp_header,
                "signature_header": signature_header
            }),
        }
    }

    /// Returns the credential the adapter needs: its kind and value.
    #[must_use]
    pub fn credential(&self) -> (&'static str, &str) {
        match self {
            Self::Bearer { token } => (crate::crm::custom::API_KEY_KIND, token),
            Self::Basic { password, .. } => (crate::crm::custom::PASSWORD_KIND, password),
            Self::Header { key, .. } => (crate::crm::custom::API_KEY_KIND, key),
            Self::Hmac { secret, .. } => (crate::crm::custom::HMAC_SECRET_KIND, secret),
        }
    }

    fn accepts(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        match self {
            Self::Bearer { token } => {
                header("authorization").and_then(|value| value.strip_prefix("Bearer "))
                    == Some(token.as_str())
            }
            Self::Basic { username, password } => header("authorization")
                .and_then(|value| value.strip_prefix("Basic "))
                .and_then(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()
                })
                .is_some_and(|pair| pair == format!("{username}:{password}").as_bytes()),
            Self::Header { name, key } => header(name) == Some(key.as_str()),
            Self::Hmac {
                secret,
                timestamp_header,
                signature_header,
            } => {
                let (Some(timestamp), Some(signature)) =
                    (header(timestamp_header), header(signature_header))
                else {
                    return false;
                };
                let fresh = timestamp.parse::<i64>().is_ok_and(|seconds| {
                    (Utc::now().timestamp() - seconds).abs() <= HMAC_TOLERANCE_SECS
                });
                let Ok(expected) = decode_hex(signature) else {
                    return false;
                };
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                fresh && mac.verify_slice(&expected).is_ok()
            }
        }
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, ()> {
    if !text.len().is_multiple_of(2) {
        return Err(());
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2).ok_or(())?, 16).map_err(|_| ()))
        .collect()
}

/// One request the simulator received.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRequest {
    /// The method.
    pub method: String,
    /// The path, percent-decoded per segment is left to the reader: as sent.
    pub path: String,
    /// Query pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    /// What the simulator answered.
    pub status: u16,
}

/// What the simulator counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Contacts created by upserts.
    pub contacts_created: u32,
    /// Changes of a contact's status to a different value.
    pub status_changes: u32,
    /// Notes written.
    pub notes_written: u32,
    /// Deal moves.
    pub deal_moves: u32,
    /// Calls logged (a repeated `call_id` is not counted again).
    pub calls_logged: u32,
    /// Requests refused with 401.
    pub unauthorized: u32,
}

#[derive(Debug, Default)]
struct Book {
    contacts: BTreeMap<String, Map<String, Value>>,
    notes: BTreeMap<String, Vec<Value>>,
    deals: BTreeMap<(String, String), Value>,
    calls: BTreeMap<String, String>,
    next_id: u64,
    requests: Vec<SimRequest>,
    counters: SimCounters,
    faults: VecDeque<(u16, Option<u64>)>,
}

impl Book {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:06}", self.next_id)
    }
}

/// The simulator's configuration and record; clones share the record.
#[derive(Clone, Debug)]
pub struct CustomCrmSimState {
    auth: Arc<SimAuth>,
    book: Arc<Mutex<Book>>,
}

impl CustomCrmSimState {
    /// Returns an empty CRM accepting `auth`.
    #[must_use]
    pub fn new(auth: SimAuth) -> Self {
        Self {
            auth: Arc::new(auth),
            book: Arc::default(),
        }
    }

    /// Returns the scheme requests must use.
    #[must_use]
    pub fn auth(&self) -> &SimAuth {
        &self.auth
    }

    /// Returns the `providers.custom` that maps this CRM, served at `base_url`.
    #[must_use]
    pub fn custom_settings(&self, base_url: &str) -> Value {
        json!({"base_url": base_url, "crm": self.crm_settings()})
    }

    /// Returns the `providers.custom.crm` that maps this CRM.
    #[must_use]
    pub fn crm_settings(&self) -> Value {
        json!({
            "auth": self.auth.settings(),
            "endpoints": {
                "get_contact": "GET /v1/contacts/{id}",
                "find_contact": "GET /v1/contacts?phone={phone}&email={email}",
                "upsert_contact": "POST /v1/contacts/upsert",
                "update_contact": "PATCH /v1/contacts/{id}",
                "add_tags": "POST /v1/contacts/{id}/tags",
                "remove_tags": "POST /v1/contacts/{id}/tags/remove",
                "add_note": "POST /v1/contacts/{id}/notes",
                "list_notes": "GET /v1/contacts/{id}/notes",
                "move_stage": "PUT /v1/contacts/{id}/deals/{pipeline}",
                "log_call": "POST /v1/contacts/{id}/calls"
            },
            "fields": {
                "id": "/id",
                "first_name": "/firstName",
                "last_name": "/lastName",
                "email": "/email",
                "phone": "/phone",
                "timezone": "/timezone",
                "status": "/status",
                "tags": "/tags",
                "do_not_call": "/doNotCall",
                "custom_fields": {"service": "/custom/service_type"},
                "custom_fields_object": "/custom"
            },
            "notes": {"id": "/id", "title": "/title", "body": "/body"},
            "envelopes": {
                "contact": "/data",
                "contacts": "/data",
                "note": "/data",
                "notes": "/data",
                "call_id": "/data/id"
            }
        })
    }

    /// Stores a contact as if created in the CRM's own UI; returns its id.
    pub fn seed_contact(&self, first_name: &str, last_name: &str, phone: &str) -> String {
        let mut book = self.book();
        let id = book.id("c");
        let contact = json!({
            "id": id, "firstName": first_name, "lastName": last_name, "phone": phone,
            "tags": [], "custom": {}, "doNotCall": false, "status": "New",
            "updatedAt": Utc::now().to_rfc3339()
        });
        if let Value::Object(contact) = contact {
            book.contacts.insert(id.clone(), contact);
        }
        id
    }

    /// Answers the next authenticated request with `status` (and `Retry-After` seconds).
    pub fn push_fault(&self, status: u16, retry_after_secs: Option<u64>) {
        self.book().faults.push_back((status, retry_after_secs));
    }

    /// Returns the contact `id` as stored.
    #[must_use]
    pub fn contact(&self, id: &str) -> Option<Value> {
        self.book().contacts.get(id).cloned().map(Value::Object)
    }

    /// Returns every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<SimRequest> {
        self.book().requests.clone()
    }

    /// Returns the counters.
    #[must_use]
    pub fn counters(&self) -> SimCounters {
        self.book().counters
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panicking test thread must not hide the record from the others.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> (StatusCode, Value, Option<u64>) {
        if !self.auth.accepts(headers, body) {
            self.book().counters.unauthorized += 1;
            return (
                StatusCode::UNAUTHORIZED,
                error("unauthorized", "missing or invalid credentials"),
                None,
            );
        }
        if let Some((status, retry_after)) = self.book().faults.pop_front() {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (status, error("fault", "simulated fault"), retry_after);
        }
        let parsed = if body.is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => Some(value),
                Err(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        error("bad_json", "the body is not json"),
                        None,
                    );
                }
            }
        };
        let segments: Vec<String> = uri.path().split('/').skip(1).map(percent_decode).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let query = query_pairs(uri);
        let mut book = self.book();
        let (status, value) = routes::route(&mut book, method, &segments, &query, parsed.as_ref());
        (status, value, None)
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": code, "message": message})
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(if bytes[index] == b'+' {
                    b' '
                } else {
                    bytes[index]
                });
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<CustomCrmSimState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, value, retry_after) = state.answer(&method, &uri, &headers, &body);
    let recorded = SimRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query_pairs(&uri),
        body: serde_json::from_slice(&body).ok(),
        status: status.as_u16(),
    };
    state.book().requests.push(recorded);
    let mut response = (status, axum::Json(value)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Returns the simulator's router over `state`.
pub fn router(state: CustomCrmSimState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(state: CustomCrmSimState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the custom crm simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %err, "custom crm simulator stopped");
        }
    });
    (addr, task)
}

/// Checks recorded requests against [`OPENAPI`]: each names a documented operation, sends only
/// documented query parameters (and the required ones), and a body that matches the
/// operation's schema. Returns every violation.
#[cfg(any(test, feature = "test-util"))]
pub fn spec_violations(requests: &[SimRequest]) -> Vec<String> {
    let spec: Value = serde_json::from_str(OPENAPI).expect("the simulator's openapi.json is json");
    let mut violations = Vec::new();
    for request in requests {
        let method = request.method.to_lowercase();
        let Some((template, operation)) = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(template, item)| {
                path_matches(template, &request.path) && item.get(&method).is_some()
            })
            .map(|(template, item)| (template.clone(), item[&method].clone()))
        else {
            violations.push(format!(
                "{} {}: no such operation",
                request.method, request.path
            ));
            continue;
        };
        let parameters: Vec<Value> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| match parameter["$ref"].as_str() {
                Some(pointer) => spec
                    .pointer(pointer.trim_start_matches('#'))
                    .cloned()
                    .unwrap_or(Value::Null),
                None => parameter.clone(),
            })
            .collect();
        let in_query = |parameter: &&Value| parameter["in"] == "query";
        for (key, value) in &request.query {
            match parameters
                .iter()
                .filter(in_query)
                .find(|parameter| parameter["name"] == key.as_str())
            {
                None => violations.push(format!(
                    "{} {}: undocumented query `{key}`",
                    request.method, request.path
                )),
                Some(parameter) => {
                    // Resolved inside the document, so a `$ref` in the parameter works.
                    let mut root = spec.clone();
                    root["x-parameter"] = parameter["schema"].clone();
                    if let Err(errors) =
                        crate::schema_check::validate_at(&root, "#/x-parameter", &json!(value))
                    {
                        violations.push(format!(
                            "{} {}: query `{key}`: {}",
                            request.method,
                            request.path,
                            errors.join("; ")
                        ));
                    }
                }
            }
        }
        for parameter in parameters
            .iter()
            .filter(in_query)
            .filter(|parameter| parameter["required"] == true)
        {
            let name = parameter["name"].as_str().unwrap_or_default();
            if !request.query.iter().any(|(key, _)| key == name) {
                violations.push(format!(
                    "{} {}: missing query `{name}`",
                    request.method, request.path
                ));
            }
        }
        let escaped = template.replace('~', "~0").replace('/', "~1");
        let schema =
            format!("#/paths/{escaped}/{method}/requestBody/content/application~1json/schema");
        match (&request.body, operation.get("requestBody")) {
            (Some(body), Some(_)) => {
                if let Err(errors) = crate::schema_check::validate_at(&spec, &schema, body) {
                    violations.push(format!(
                        "{} {}: body: {}",
                        request.method,
                        request.path,
                        errors.join("; ")
                    ));
                }
            }
            (None, Some(required)) if required["required"] == true => {
                violations.push(format!("{} {}: missing body", request.method, request.path));
            }
            (Some(_), None) => violations.push(format!(
                "{} {}: unexpected body",
                request.method, request.path
            )),
            _ => {}
        }
    }
    violations
}

#[cfg(any(test, feature = "test-util"))]
fn path_matches(template: &str, path: &str) -> bool {
    let expected: Vec<&str> = template.split('/').collect();
    let actual: Vec<&str> = path.split('/').collect();
    expected.len() == actual.len()
        && expected.iter().zip(&actual).all(|(expected, actual)| {
            (expected.starts_with('{') && expected.ends_with('}') && !actual.is_empty())
                || expected == actual
        })
}

mod routes;

#[cfg(test)]
mod tests;
