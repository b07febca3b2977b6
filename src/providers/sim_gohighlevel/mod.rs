//! A test double of HighLevel API v2 (`shared/protocols/crm-calendar.md` section A): the
//! contact, custom field, tag, note, opportunity, calendar, appointment, conversation and
//! OAuth endpoints the `crm::gohighlevel` adapter calls, per location, in HighLevel's wire
//! format and with its quirks. It records every request and counts what tests assert on.
//!
//! - **Auth**: Private Integration Tokens ([`GoHighLevelSimState::add_private_token`]) and
//!   OAuth (`POST /oauth/token`: `authorization_code` and `refresh_token` grants; access tokens
//!   live [`GoHighLevelSimState::with_access_token_lifetime`], 24 h by default; a refresh token
//!   rotates and the old one stops working). A bad token: 401 `UnauthorizedDTO`.
//! - **`Version`**: `2021-07-28` for contacts, opportunities and locations, `2021-04-15` for
//!   calendars and conversations; a missing or wrong one is a 400.
//! - **Rate limit**: a token bucket per location, 100 requests refilled over 10 s; every API
//!   answer carries `X-RateLimit-Max`, `-Remaining`, `-Interval-Milliseconds` and the daily
//!   pair; an empty bucket answers 429.
//! - **Quirks**: custom fields written as `{id|key, field_value}` (a `value` is accepted too)
//!   and read as `{id, value}`; `PUT /contacts/{id}` answers `succeded`; 422 bodies carry a
//!   `message` array; free-slots are keyed by `YYYY-MM-DD` in the asked `timezone` with a
//!   `traceId` sibling; appointments need a free slot unless `ignoreFreeSlotValidation`.
//! - **Faults**: added latency, and 429 / 5xx / 401 for the next N API requests
//!   ([`GoHighLevelSimState::fail_next`]).
//!
//! Unknown records answer 404 `{statusCode, message, error: "Not Found"}` (NestJS' shape; the
//! real status is UNCONFIRMED, so the adapter also reads a 400 "… not found" as absent).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

mod handlers;
mod oauth;
#[cfg(any(test, feature = "test-util"))]
pub mod spec;
mod world;

use world::{Bucket, Calendar, Contact, CustomField, Grant, Location, Pipeline, World};

/// The `Version` of contacts, opportunities and locations.
pub const VERSION_CONTACTS: &str = "2021-07-28";
/// The `Version` of calendars and conversations.
pub const VERSION_CALENDARS: &str = "2021-04-15";
/// Requests per location per [`RATE_INTERVAL`].
pub const RATE_CAPACITY: u32 = 100;
/// The interval of the rate limit.
pub const RATE_INTERVAL: Duration = Duration::from_secs(10);
/// The fixed `location_id` of the demo location.
pub const DEMO_LOCATION: &str = "ve9EPM428h8vShlRW1KT";
/// The fixed id of the demo location's calendar, so a demo client can name it in its
/// configuration (`providers.gohighlevel.calendar_id`) before the simulator starts.
pub const DEMO_CALENDAR: &str = "DemoCalendar00000001";

/// One request the simulator received, secrets removed.
#[derive(Clone, Debug)]
pub struct SimRequest {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers (lowercase names) except `Authorization`.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (a form body as an object of strings); secret fields are replaced
    /// by `<redacted>`.
    pub body: Option<Value>,
    /// The status answered.
    pub status: u16,
    /// The answer's body as JSON (tokens replaced by `<redacted>`).
    pub response: Option<Value>,
}

/// What the simulator counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Notes created.
    pub notes_written: u64,
    /// Custom field values changed, by field key (`contact.<key>`).
    pub field_changes: BTreeMap<String, u64>,
    /// Tags added (new ones only).
    pub tags_added: u64,
    /// Tags removed.
    pub tags_removed: u64,
    /// Opportunities created or moved to another stage or status.
    pub stage_changes: u64,
    /// Appointments created.
    pub appointments_booked: u64,
    /// Appointments moved.
    pub appointments_rescheduled: u64,
    /// Appointments cancelled.
    pub appointments_cancelled: u64,
    /// Calls logged in conversations.
    pub calls_logged: u64,
    /// Successful `refresh_token` grants.
    pub token_refreshes: u64,
    /// Successful `authorization_code` grants.
    pub codes_exchanged: u64,
    /// 429s answered because a location's bucket was empty (not injected ones).
    pub rate_limited: u64,
    /// 401s answered for a missing, unknown or expired token (not injected ones).
    pub unauthorized: u64,
}

/// An injected failure of the next API requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFault {
    /// 429 with `X-RateLimit-Remaining: 0`.
    RateLimited,
    /// 500.
    ServerError,
    /// 401 `UnauthorizedDTO`, whatever the token.
    Unauthorized,
}

/// Ids of what [`GoHighLevelSimState::add_location`] seeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimLocationSeed {
    /// The location.
    pub location_id: String,
    /// The calendar (Mon–Fri 09:00–17:00 in the location's zone, 30-minute slots).
    pub calendar_id: String,
    /// The pipeline.
    pub pipeline_id: String,
    /// Its stages, in order.
    pub stage_ids: Vec<String>,
    /// The conversation provider calls may be logged with.
    pub conversation_provider_id: String,
}

/// A contact to seed.
#[derive(Clone, Debug, Default)]
pub struct SimContactSeed {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone, as HighLevel would hold it.
    pub phone: Option<String>,
    /// IANA zone.
    pub timezone: Option<String>,
    /// `dnd`.
    pub dnd: bool,
    /// `dndSettings.Call.status`.
    pub dnd_call: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// The platform app the token endpoint accepts.
#[derive(Clone, Debug)]
struct App {
    client_id: String,
    client_secret: String,
}

#[derive(Debug)]
struct Inner {
    app: App,
    access_token_lifetime: Mutex<Duration>,
    latency: Mutex<Duration>,
    world: Mutex<World>,
    faults: Mutex<VecDeque<SimFault>>,
    requests: Mutex<Vec<SimRequest>>,
    counters: Mutex<SimCounters>,
}

/// The simulator: configuration, data and record. Clones share everything.
#[derive(Clone, Debug)]
pub struct GoHighLevelSimState {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the record from the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GoHighLevelSimState {
    /// Returns an empty simulator whose token endpoint accepts this app.
    #[must_use]
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: App {
                    client_id: client_id.to_owned(),
                    client_secret: client_secret.to_owned(),
                },
                access_token_lifetime: Mutex::new(Duration::from_secs(86_399)),
                latency: Mutex::new(Duration::ZERO),
                world: Mutex::new(World::default()),
                faults: Mutex::new(VecDeque::new()),
                requests: Mutex::new(Vec::new()),
                counters: Mutex::new(SimCounters::default()),
            }),
        }
    }

    /// Returns the demo simulator: location [`DEMO_LOCATION`] with calendar [`DEMO_CALENDAR`],
    /// reachable with the healthcheck simulator's Private Integration Token, one contact (Jane Doe, +15125550142).
    #[must_use]
    pub fn demo() -> Self {
        let accounts = super::sim::SimAccounts::default();
        let state = Self::new("sim-gohighlevel-client-id", "sim-gohighlevel-client-secret");
        let seed = state.add_location(
            &accounts.gohighlevel_location_id,
            chrono_tz::America::Chicago,
        );
        if let Some(location) = lock(&state.inner.world)
            .locations
            .get_mut(&seed.location_id)
            && let Some(mut calendar) = location.calendars.remove(&seed.calendar_id)
        {
            calendar.id = DEMO_CALENDAR.to_owned();
            location.calendars.insert(calendar.id.clone(), calendar);
        }
        state.add_private_token(
            &accounts.gohighlevel_location_id,
            &accounts.gohighlevel_token,
        );
        state.add_contact(
            &accounts.gohighlevel_location_id,
            SimContactSeed {
                first_name: Some("Jane".to_owned()),
                last_name: Some("Doe".to_owned()),
                email: Some("jane.doe@example.com".to_owned()),
                phone: Some("+15125550142".to_owned()),
                timezone: Some("America/Chicago".to_owned()),
                ..SimContactSeed::default()
            },
        );
        state
    }

    /// Returns the simulator issuing access tokens that stop working after `lifetime` (and
    /// saying so in `expires_in`).
    #[must_use]
    pub fn with_access_token_lifetime(self, lifetime: Duration) -> Self {
        *lock(&self.inner.access_token_lifetime) = lifetime;
        self
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.inner.latency) = latency;
    }

    /// Fails the next `count` API requests (not the token endpoint) with `fault`.
    pub fn fail_next(&self, count: usize, fault: SimFault) {
        lock(&self.inner.faults).extend(std::iter::repeat_n(fault, count));
    }

    /// Drops every injected fault not yet used.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Creates location `location_id` in `timezone` with custom fields `ai_call_status`,
    /// `ai_call_outcome` and `preferred_time`, a pipeline of three stages, a calendar open
    /// Mon–Fri 09:00–17:00 with 30-minute slots, and a conversation provider.
    pub fn add_location(&self, location_id: &str, timezone: Tz) -> SimLocationSeed {
        let mut location = Location::new(location_id, timezone);
        for (name, key) in [
            ("AI call status", "ai_call_status"),
            ("AI call outcome", "ai_call_outcome"),
            ("Preferred time", "preferred_time"),
        ] {
            location.custom_fields.push(CustomField {
                id: world::new_id(),
                name: name.to_owned(),
                field_key: format!("contact.{key}"),
            });
        }
        let pipeline = Pipeline {
            id: world::new_id(),
            stages: (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect(),
        };
        let calendar = Calendar {
            id: world::new_id(),
            name: "Consultations".to_owned(),
            timezone,
            slot_minutes: 30,
            open_hours: [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ]
            .into_iter()
            .map(|day| {
                (
                    day,
                    NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
                    NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
                )
            })
            .collect(),
        };
        let provider = world::new_id();
        let seed = SimLocationSeed {
            location_id: location_id.to_owned(),
            calendar_id: calendar.id.clone(),
            pipeline_id: pipeline.id.clone(),
            stage_ids: pipeline.stages.clone(),
            conversation_provider_id: provider.clone(),
        };
        location.pipelines.push(pipeline);
        location.calendars.insert(calendar.id.clone(), calendar);
        location.conversation_providers.push(provider);
        lock(&self.inner.world)
            .locations
            .insert(location_id.to_owned(), location);
        seed
    }

    /// Lets `token` (a Private Integration Token) reach `location_id`.
    pub fn add_private_token(&self, location_id: &str, token: &str) {
        lock(&self.inner.world).tokens.insert(
            token.to_owned(),
            Grant {
                location: location_id.to_owned(),
                expires_at: None,
            },
        );
    }

    /// Revokes a token (Private Integration or OAuth access token).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.inner.world).tokens.remove(token);
    }

    /// Adds a contact to `location_id`; returns its id.
    ///
    /// # Panics
    ///
    /// Panics if the location does not exist (a broken test).
    pub fn add_contact(&self, location_id: &str, seed: SimContactSeed) -> String {
        self.add_contact_with_id(location_id, &world::new_id(), seed)
    }

    /// Adds a contact with a given id (a load test plans its leads' ids before the run);
    /// returns the id.
    ///
    /// # Panics
    ///
    /// Panics if the location does not exist (a broken test).
    pub fn add_contact_with_id(&self, location_id: &str, id: &str, seed: SimContactSeed) -> String {
        let now = chrono::Utc::now();
        let contact = Contact {
            id: id.to_owned(),
            first_name: seed.first_name,
            last_name: seed.last_name,
            email: seed.email,
            phone: seed.phone,
            timezone: seed.timezone,
            dnd: seed.dnd,
            dnd_call: seed.dnd_call,
            tags: seed.tags,
            custom: BTreeMap::new(),
            added: now,
            updated: now,
        };
        let id = contact.id.clone();
        lock(&self.inner.world)
            .locations
            .get_mut(location_id)
            .expect("a seeded location")
            .contacts
            .insert(id.clone(), contact);
        id
    }

    /// Issues an authorization code for `location_id`, as the install redirect carries.
    pub fn issue_authorization_code(&self, location_id: &str) -> String {
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        lock(&self.inner.world)
            .codes
            .insert(code.clone(), location_id.to_owned());
        code
    }

    /// Issues an access and a refresh token for `location_id` (as an earlier install did);
    /// returns `(access_token, refresh_token, expires_in_secs)`.
    pub fn issue_tokens(&self, location_id: &str) -> (String, String, u64) {
        self.grant_tokens(&mut lock(&self.inner.world), location_id)
    }

    /// Makes every OAuth access token issued so far stop working (they expired early).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in lock(&self.inner.world).tokens.values_mut() {
            if grant.expires_at.is_some() {
                grant.expires_at = Some(now);
            }
        }
    }

    /// Returns every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<SimRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Returns the counters.
    #[must_use]
    pub fn counters(&self) -> SimCounters {
        lock(&self.inner.counters).clone()
    }

    /// Returns a contact as `GET /contacts/{id}` would, if it exists.
    #[must_use]
    pub fn contact(&self, location_id: &str, contact_id: &str) -> Option<Value> {
        let world = lock(&self.inner.world);
        let location = world.locations.get(location_id)?;
        location
            .contacts
            .get(contact_id)
            .map(|contact| contact.to_json(location_id))
    }

    /// Returns the opportunities of a location as `GET /opportunities/search` would.
    #[must_use]
    pub fn opportunities(&self, location_id: &str) -> Vec<Value> {
        let world = lock(&self.inner.world);
        world
            .locations
            .get(location_id)
            .map_or_else(Vec::new, |location| {
                location
                    .opportunities
                    .values()
                    .map(|opportunity| opportunity.to_json(location_id))
                    .collect()
            })
    }

    fn grant_tokens(&self, world: &mut World, location_id: &str) -> (String, String, u64) {
        let lifetime = *lock(&self.inner.access_token_lifetime);
        let access = format!("sim-access-{}", uuid::Uuid::new_v4().simple());
        let refresh = format!("sim-refresh-{}", uuid::Uuid::new_v4().simple());
        world.tokens.insert(
            access.clone(),
            Grant {
                location: location_id.to_owned(),
                expires_at: Some(Instant::now() + lifetime),
            },
        );
        world
            .refresh_tokens
            .insert(refresh.clone(), location_id.to_owned());
        (access, refresh, lifetime.as_secs())
    }

    fn count(&self, change: impl FnOnce(&mut SimCounters)) {
        change(&mut lock(&self.inner.counters));
    }
}

/// The authenticated caller of an API request, and its parsed body and query.
#[derive(Clone, Debug)]
struct Caller {
    location: String,
    body: Value,
    query: BTreeMap<String, String>,
}

/// Returns the simulator's router over `state`.
pub fn router(state: GoHighLevelSimState) -> Router {
    routes(state, true)
}

/// Returns the router without `GET /locations/{location_id}`, to serve beside the
/// healthcheck simulator ([`super::sim`]), which answers it itself.
pub fn router_beside_health(state: GoHighLevelSimState) -> Router {
    routes(state, false)
}

fn routes(state: GoHighLevelSimState, with_location_read: bool) -> Router {
    use handlers as h;
    let mut router = Router::new()
        .route(
            "/locations/{location_id}/customFields",
            get(h::custom_fields),
        )
        .route("/contacts/search/duplicate", get(h::find_duplicate))
        .route("/contacts/upsert", post(h::upsert_contact))
        .route(
            "/contacts/{contact_id}",
            get(h::get_contact).put(h::update_contact),
        )
        .route(
            "/contacts/{contact_id}/tags",
            post(h::add_tags).delete(h::remove_tags),
        )
        .route(
            "/contacts/{contact_id}/notes",
            post(h::add_note).get(h::list_notes),
        )
        .route("/opportunities/search", get(h::search_opportunities))
        .route("/opportunities/", post(h::create_opportunity))
        .route("/opportunities/{id}", put(h::update_opportunity))
        .route("/calendars/{calendar_id}", get(h::get_calendar))
        .route("/calendars/{calendar_id}/free-slots", get(h::free_slots))
        .route("/calendars/events/appointments", post(h::book))
        .route(
            "/calendars/events/appointments/{event_id}",
            put(h::edit_appointment).get(h::get_appointment),
        )
        .route("/conversations/search", get(h::search_conversations))
        .route("/conversations/", post(h::create_conversation))
        .route("/conversations/messages/outbound", post(h::log_call))
        .route("/oauth/token", post(oauth::token));
    if with_location_read {
        router = router.route("/locations/{location_id}", get(h::get_location));
    }
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(state: GoHighLevelSimState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the gohighlevel simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %err, "gohighlevel simulator stopped");
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------
// The gate: recording, latency, Version, faults, auth and the rate limit, around every route.

/// Form fields and JSON keys whose values are secrets.
const SECRET_FIELDS: &[&str] = &["client_secret", "refresh_token", "code", "access_token"];

const MAX_BODY: usize = 1 << 20;

async fn gate(State(sim): State<GoHighLevelSimState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let method = parts.method.clone();
    let headers = parts.headers.clone();
    let path = parts.uri.path().to_owned();
    let query = query_pairs(parts.uri.query());
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let parsed = parse_body(&bytes, is_form);
    let latency = *lock(&sim.inner.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let is_api = path != "/oauth/token";
    let mut answer = match &parsed {
        Err(message) => error(StatusCode::BAD_REQUEST, message),
        Ok(content) => {
            let location = if is_api {
                sim.admit(&headers, &path)
            } else {
                Ok(String::new())
            };
            match location {
                Ok(location) => {
                    parts.extensions.insert(Caller {
                        location,
                        body: content.clone().unwrap_or(Value::Null),
                        query: query.iter().cloned().collect(),
                    });
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(refusal) => refusal,
            }
        }
    };
    if is_api && answer.status() != StatusCode::TOO_MANY_REQUESTS {
        let remaining = sim.remaining(&headers);
        rate_headers(answer.headers_mut(), remaining);
    }
    let body = parsed.ok().flatten();
    sim.record(method.as_str(), &path, query, &headers, body, answer)
        .await
}

impl GoHighLevelSimState {
    /// Checks `Version`, injected faults, the token and the rate limit; returns the token's
    /// location or the refusal to answer.
    #[allow(clippy::result_large_err)] // the refusal is the answer (see `handlers`)
    fn admit(&self, headers: &HeaderMap, path: &str) -> Result<String, Response> {
        let expected = if path.starts_with("/calendars") || path.starts_with("/conversations") {
            VERSION_CALENDARS
        } else {
            VERSION_CONTACTS
        };
        let version = headers.get("version").and_then(|value| value.to_str().ok());
        if version != Some(expected) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("Version header must be {expected}"),
            ));
        }
        if let Some(fault) = lock(&self.inner.faults).pop_front() {
            return Err(match fault {
                SimFault::RateLimited => too_many_requests(),
                SimFault::ServerError => {
                    error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
                }
                SimFault::Unauthorized => unauthorized(),
            });
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let mut world = lock(&self.inner.world);
        let grant = token.and_then(|token| world.tokens.get(token)).cloned();
        let Some(grant) = grant.filter(|grant| {
            grant
                .expires_at
                .is_none_or(|expires_at| Instant::now() < expires_at)
        }) else {
            drop(world);
            self.count(|counters| counters.unauthorized += 1);
            return Err(unauthorized());
        };
        let capacity = f64::from(RATE_CAPACITY);
        let now = Instant::now();
        let bucket = world
            .buckets
            .entry(grant.location.clone())
            .or_insert(Bucket {
                tokens: capacity,
                at: now,
            });
        let refill = now.duration_since(bucket.at).as_secs_f64() / RATE_INTERVAL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill * capacity).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            drop(world);
            self.count(|counters| counters.rate_limited += 1);
            return Err(too_many_requests());
        }
        bucket.tokens -= 1.0;
        Ok(grant.location)
    }

    /// Returns what is left in the bucket of the location of the request's token.
    fn remaining(&self, headers: &HeaderMap) -> u32 {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let world = lock(&self.inner.world);
        token
            .and_then(|token| world.tokens.get(token))
            .and_then(|grant| world.buckets.get(&grant.location))
            .map_or(RATE_CAPACITY, |bucket| {
                // Whole tokens only, like a counter.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let whole = bucket.tokens.floor().max(0.0) as u32;
                whole
            })
    }

    async fn record(
        &self,
        method: &str,
        path: &str,
        query: Vec<(String, String)>,
        headers: &HeaderMap,
        body: Option<Value>,
        answer: Response,
    ) -> Response {
        let (parts, response_body) = answer.into_parts();
        let bytes = axum::body::to_bytes(response_body, MAX_BODY)
            .await
            .unwrap_or_default();
        let response = serde_json::from_slice::<Value>(&bytes).ok().map(redacted);
        let headers = headers
            .iter()
            .filter(|(name, _)| *name != header::AUTHORIZATION)
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        lock(&self.inner.requests).push(SimRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            headers,
            body: body.map(redacted),
            status: parts.status.as_u16(),
            response,
        });
        Response::from_parts(parts, Body::from(bytes))
    }
}

/// Replaces the values of [`SECRET_FIELDS`] at the top level of an object.
fn redacted(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        for (name, field) in object.iter_mut() {
            if SECRET_FIELDS.contains(&name.as_str()) {
                *field = json!("<redacted>");
            }
        }
    }
    value
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    reqwest::Url::parse(&format!("http://sim/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Parses a JSON or form body; `None` when there is none.
fn parse_body(bytes: &[u8], is_form: bool) -> Result<Option<Value>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if is_form {
        let text = std::str::from_utf8(bytes).map_err(|_| "the form is not utf-8".to_owned())?;
        let fields: Map<String, Value> = query_pairs(Some(text))
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        return Ok(Some(Value::Object(fields)));
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|_| "Unexpected token in JSON".to_owned())
}

fn rate_headers(headers: &mut HeaderMap, remaining: u32) {
    let pairs = [
        ("x-ratelimit-max", RATE_CAPACITY.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-interval-milliseconds",
            RATE_INTERVAL.as_millis().to_string(),
        ),
        ("x-ratelimit-limit-daily", "200000".to_owned()),
        ("x-ratelimit-daily-remaining", "199999".to_owned()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// 400/403/404/500 `{statusCode, message}` (404 adds NestJS' `error`).
fn error(status: StatusCode, message: &str) -> Response {
    let mut body = json!({"statusCode": status.as_u16(), "message": message});
    if status == StatusCode::NOT_FOUND {
        body["error"] = json!("Not Found");
    }
    (status, axum::Json(body)).into_response()
}

/// 422 `UnprocessableDTO`: `message` is an array.
fn unprocessable(messages: &[String]) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "statusCode": 422,
            "message": messages,
            "error": "Unprocessable Entity",
        })),
    )
        .into_response()
}

/// 401 `UnauthorizedDTO`.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "statusCode": 401,
            "message": "Invalid token: access token is invalid",
            "error": "Unauthorized",
        })),
    )
        .into_response()
}

fn too_many_requests() -> Response {
    let mut answer = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({"statusCode": 429, "message": "Too Many Requests"})),
    )
        .into_response();
    rate_headers(answer.headers_mut(), 0);
    answer
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::providers::sim::{self, SimAccounts};

    fn get(path: &str, token: &str, version: &str) -> Request<Body> {
        Request::get(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Version", version)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn the_demo_mounts_beside_the_healthcheck_simulator() {
        let accounts = SimAccounts::default();
        let router = sim::router_beside_elevenlabs(accounts.clone())
            .merge(router_beside_health(GoHighLevelSimState::demo()));
        let location = &accounts.gohighlevel_location_id;
        let token = &accounts.gohighlevel_token;
        let fields = router
            .clone()
            .oneshot(get(
                &format!("/locations/{location}/customFields"),
                token,
                VERSION_CONTACTS,
            ))
            .await
            .unwrap();
        assert_eq!(fields.status(), StatusCode::OK);
        assert_eq!(
            fields.headers()["x-ratelimit-max"],
            RATE_CAPACITY.to_string().as_str()
        );
        let health = router
            .oneshot(get(
                &format!("/locations/{location}"),
                token,
                VERSION_CONTACTS,
            ))
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_wrong_version_or_token_is_refused_and_recorded_without_the_token() {
        let state = GoHighLevelSimState::demo();
        let router = router(state.clone());
        let location = DEMO_LOCATION;
        let token = SimAccounts::default().gohighlevel_token;
        let wrong_version = router
            .clone()
            .oneshot(get(
                &format!("/locations/{location}/customFields"),
                &token,
                VERSION_CALENDARS,
            ))
            .await
            .unwrap();
        assert_eq!(wrong_version.status(), StatusCode::BAD_REQUEST);
        let wrong_token = router
            .oneshot(get(
                &format!("/locations/{location}/customFields"),
                "pit-wrong",
                VERSION_CONTACTS,
            ))
            .await
            .unwrap();
        assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(state.counters().unauthorized, 1);
        let recorded = state.requests();
        assert_eq!(recorded.len(), 2);
        assert_eq!(
            recorded[1].response.as_ref().unwrap()["error"],
            json!("Unauthorized")
        );
        assert!(!format!("{recorded:?}").contains(&token));
    }
}
