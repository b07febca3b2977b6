//! Calendar `caldav`: free slots and bookings in a CalDAV collection (RFC 4791), such as
//! Radicale, Nextcloud, Fastmail or iCloud (`shared/protocols/crm-calendar.md` C.3).
//!
//! Settings, `providers.caldav`:
//! - `url`: the calendar collection (`https://dav.example.com/alice/sales/`);
//! - `username`: with the credential `caldav.password`, HTTP Basic; otherwise the credential
//!   `caldav.token` is sent as a Bearer token; with neither, requests are anonymous;
//! - `slot_minutes` (5–480, default 30);
//! - `hours`: weekly opening hours (`[{day, open, close}]`), else the client's
//!   `business_hours`, else weekdays 09:00–17:00, in the business's zone.
//!
//! Free slots are the slots of the hours minus the busy time of a `free-busy-query` REPORT,
//! or of a `calendar-query` when the server does not answer free-busy properly ([`dav`]).
//!
//! Appointments are resources `{url}{uid}.ics`; the appointment id is the `uid`:
//! - **Book.** The uid is derived from the tenant and the request's idempotency key, so a
//!   retried booking names the same resource. The slot must be one of the hours' slots and
//!   free by a fresh free/busy answer; then `PUT` with `If-None-Match: *`. A busy slot or a
//!   412 whose resource already exists is the same booking asked again, answered with what it
//!   holds; a busy slot without it is [`BookingError::Unavailable`].
//! - **Reschedule.** `GET` (for the ETag), a calendar-query free/busy check that ignores the
//!   appointment itself, then `PUT` with `If-Match`, keeping what else the event holds.
//! - **Cancel.** `DELETE` with `If-Match`: the resource is gone, so the slot is free to every
//!   client of the calendar (a `STATUS:CANCELLED` event would stay busy for servers that do not
//!   read the status in free-busy).
//!
//! NOTE(caldav): CalDAV has no lock over a time range. Two different leads booking the same
//! slot within the moment between one's free/busy check and its PUT both succeed; the
//! booking ledger (one booking at a time per tenant) is what closes that window.

mod dav;
mod hours;
mod ical;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use self::hours::Opening;
use self::ical::Interval;
use super::{Booked, BookingError, BookingRequest, Calendar, Slot, SlotQuery};
use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::providers::error::ProviderError;
use crate::providers::http::{self, Exchange};
use crate::providers::tenant_secret;
use crate::secret::Secret;
use crate::store::Store;
use crate::tenancy::config::{DayHours, Weekday};
use crate::tenancy::directory::{Directory, TenantSnapshot};

pub use self::dav::mkcalendar;

/// Credential kind of the password sent with `providers.caldav.username` (HTTP Basic).
pub const PASSWORD_KIND: &str = "caldav.password";
/// Credential kind of a Bearer token (servers with OAuth, such as Google's CalDAV).
pub const TOKEN_KIND: &str = "caldav.token";
/// Slot length when `providers.caldav.slot_minutes` is not set.
const DEFAULT_SLOT_MINUTES: i64 = 30;

/// What a booking's resource is called: `caller-` and 32 hex digits of
/// SHA-256(tenant, idempotency key).
#[must_use]
pub fn appointment_id(tenant: TenantId, idempotency_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(idempotency_key.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("caller-{hex}")
}

/// True for a resource name we may put in a URL: 1–128 of `A-Z a-z 0-9 - _ .`, not starting
/// with a dot (no `/`, no `..`).
fn is_resource_name(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
}

/// How requests authenticate.
enum Auth {
    Anonymous,
    Basic {
        username: String,
        password: Secret<String>,
    },
    Bearer(Secret<String>),
}

impl Auth {
    fn header(&self) -> Result<Option<HeaderValue>, BookingError> {
        use base64::Engine as _;
        let text = match self {
            Self::Anonymous => return Ok(None),
            Self::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Self::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            BookingError::NotConfigured("the CalDAV credential is not header text".to_owned())
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// A tenant's calendar as one operation needs it.
struct Connection {
    collection: String,
    zone: Tz,
    slot: TimeDelta,
    openings: Vec<Opening>,
    authorization: Option<HeaderValue>,
}

impl Connection {
    fn resource(&self, uid: &str) -> String {
        format!("{}{uid}.ics", self.collection)
    }

    /// The hours' slot starting at `starts_at`, if there is one.
    fn slot_at(&self, starts_at: DateTime<Utc>) -> Option<Slot> {
        hours::slots(
            &self.openings,
            self.zone,
            self.slot,
            starts_at,
            starts_at + self.slot,
        )
        .into_iter()
        .find(|slot| slot.starts_at == starts_at)
    }
}

/// The calendar of every tenant whose `calendar` is `caldav`.
#[derive(Clone)]
pub struct CalDav {
    store: Store,
    directory: Directory,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
}

impl std::fmt::Debug for CalDav {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("CalDav").finish_non_exhaustive()
    }
}

impl CalDav {
    /// Reads tenants through `directory`, and their CalDAV credentials from `store`, opened
    /// with `keyring`.
    #[must_use]
    pub fn new(store: Store, directory: Directory, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            directory,
            keyring,
            http: crate::providers::http::client(),
        }
    }

    async fn connect(&self, tenant: TenantId) -> Result<Connection, BookingError> {
        let snapshot = self.directory.existing(tenant).await?;
        let settings = Settings::read(&snapshot)?;
        let token = tenant_secret::open(&self.store, &self.keyring, tenant, TOKEN_KIND).await?;
        let auth = match (settings.username, token) {
            (Some(username), _) => {
                let password =
                    tenant_secret::open(&self.store, &self.keyring, tenant, PASSWORD_KIND)
                        .await?
                        .ok_or_else(|| {
                            BookingError::NotConfigured(format!(
                                "`providers.caldav.username` is set but the credential \
                                 `{PASSWORD_KIND}` is missing"
                            ))
                        })?;
                Auth::Basic { username, password }
            }
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => Auth::Anonymous,
        };
        Ok(Connection {
            collection: settings.collection,
            zone: snapshot.timezone,
            slot: settings.slot,
            openings: settings.openings,
            authorization: auth.header()?,
        })
    }

    async fn send(
        &self,
        connection: &Connection,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<String>,
    ) -> Result<Answer, ProviderError> {
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(authorization) = &connection.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let Exchange {
            status,
            headers,
            body,
        } = http::exchange(request).await?;
        Ok(Answer {
            status,
            headers,
            // CalDAV answers XML and iCalendar, UTF-8 by RFC 4791; a stray byte must not
            // cost the whole answer.
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn report(&self, connection: &Connection, body: String) -> Result<Answer, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert("Depth", HeaderValue::from_static("1"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        let report = Method::from_bytes(b"REPORT").expect("REPORT is a valid method token");
        self.send(
            connection,
            report,
            &connection.collection,
            headers,
            Some(body),
        )
        .await
    }

    /// Busy time in `range`: free-busy, else a calendar-query. With `ignoring`, always a
    /// calendar-query, leaving that appointment's own time out.
    async fn busy(
        &self,
        connection: &Connection,
        range: Interval,
        ignoring: Option<&str>,
    ) -> Result<Vec<Interval>, ProviderError> {
        if ignoring.is_none() {
            let answer = self
                .report(connection, dav::free_busy_query(range.start, range.end))
                .await?;
            let content_type = answer
                .headers
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok());
            match dav::free_busy_answer(answer.status.as_u16(), content_type, &answer.body) {
                dav::FreeBusyAnswer::Calendar(text) => return Ok(ical::free_busy(&text)),
                dav::FreeBusyAnswer::UseCalendarQuery => {
                    tracing::debug!(
                        status = answer.status.as_u16(),
                        "caldav free-busy-query unusable; asking with a calendar-query"
                    );
                }
                dav::FreeBusyAnswer::Failed => return Err(answer.error("calendar")),
            }
        }
        let answer = self
            .report(connection, dav::calendar_query(range.start, range.end))
            .await?;
        if !matches!(answer.status.as_u16(), 200 | 207) {
            return Err(answer.error("calendar"));
        }
        let objects = dav::multistatus(&answer.body).map_err(ProviderError::malformed)?;
        Ok(objects
            .iter()
            .filter_map(|object| object.calendar_data.as_deref())
            .flat_map(|data| ical::events(data, connection.zone))
            .filter(|event| ignoring.is_none_or(|uid| event.uid != uid))
            .map(|event| event.interval)
            .collect())
    }

    /// The appointment's ETag and text; `None` when it does not exist.
    async fn fetch(
        &self,
        connection: &Connection,
        uid: &str,
    ) -> Result<Option<Stored>, ProviderError> {
        let answer = self
            .send(
                connection,
                Method::GET,
                &connection.resource(uid),
                HeaderMap::new(),
                None,
            )
            .await?;
        match answer.status.as_u16() {
            200 => Ok(Some(Stored {
                etag: answer.headers.get(ETAG).cloned(),
                body: answer.body,
            })),
            404 | 410 => Ok(None),
            _ => Err(answer.error("appointment")),
        }
    }

    /// Answers a booking that already exists with what it holds.
    fn booked_from(
        connection: &Connection,
        uid: &str,
        stored: &Stored,
    ) -> Result<Booked, BookingError> {
        let event = ical::first_event(&stored.body, connection.zone)
            .ok_or_else(|| ProviderError::malformed("the appointment has no readable VEVENT"))?;
        Ok(Booked {
            appointment_id: uid.to_owned(),
            starts_at: event.interval.start,
            ends_at: event.interval.end,
        })
    }

    async fn put(
        &self,
        connection: &Connection,
        uid: &str,
        precondition: (reqwest::header::HeaderName, HeaderValue),
        body: String,
    ) -> Result<Answer, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/calendar; charset=utf-8"),
        );
        headers.insert(precondition.0, precondition.1);
        self.send(
            connection,
            Method::PUT,
            &connection.resource(uid),
            headers,
            Some(body),
        )
        .await
    }

    async fn book_slot(&self, request: BookingRequest) -> Result<Booked, BookingError> {
        let connection = self.connect(request.tenant).await?;
        if request.starts_at < Utc::now() {
            return Err(BookingError::Unavailable("that time has passed".to_owned()));
        }
        let slot = connection.slot_at(request.starts_at).ok_or_else(|| {
            BookingError::Unavailable("it is not one of the offered times".to_owned())
        })?;
        let uid = appointment_id(request.tenant, &request.idempotency_key);
        let wanted = Interval {
            start: slot.starts_at,
            end: slot.ends_at,
        };
        let busy = self.busy(&connection, wanted, None).await?;
        if busy.iter().any(|taken| taken.overlaps(&wanted)) {
            // Busy because this very request booked it before?
            return match self.fetch(&connection, &uid).await? {
                Some(stored) => Self::booked_from(&connection, &uid, &stored),
                None => Err(BookingError::Unavailable(
                    "someone else has that time".to_owned(),
                )),
            };
        }
        let body = ical::write_event(&ical::NewEvent {
            uid: &uid,
            start: slot.starts_at,
            end: slot.ends_at,
            summary: &summary(&request),
            description: &description(&request),
            stamp: Utc::now(),
        });
        let if_none_match = (
            reqwest::header::IF_NONE_MATCH,
            HeaderValue::from_static("*"),
        );
        let answer = self.put(&connection, &uid, if_none_match, body).await?;
        match answer.status {
            status if status.is_success() => Ok(Booked {
                appointment_id: uid,
                starts_at: slot.starts_at,
                ends_at: slot.ends_at,
            }),
            // The resource exists: this request was booked before (and maybe moved since).
            StatusCode::PRECONDITION_FAILED => match self.fetch(&connection, &uid).await? {
                Some(stored) => Self::booked_from(&connection, &uid, &stored),
                None => Err(BookingError::Failed(
                    "the calendar refused the booking; try again".to_owned(),
                )),
            },
            _ => Err(answer.error("calendar").into()),
        }
    }

    async fn move_appointment(
        &self,
        tenant: TenantId,
        uid: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Booked, BookingError> {
        if !is_resource_name(uid) {
            return Err(BookingError::NotFound);
        }
        let connection = self.connect(tenant).await?;
        let stored = self
            .fetch(&connection, uid)
            .await?
            .ok_or(BookingError::NotFound)?;
        if starts_at < Utc::now() {
            return Err(BookingError::Unavailable("that time has passed".to_owned()));
        }
        let slot = connection.slot_at(starts_at).ok_or_else(|| {
            BookingError::Unavailable("it is not one of the offered times".to_owned())
        })?;
        let wanted = Interval {
            start: slot.starts_at,
            end: slot.ends_at,
        };
        let busy = self.busy(&connection, wanted, Some(uid)).await?;
        if busy.iter().any(|taken| taken.overlaps(&wanted)) {
            return Err(BookingError::Unavailable(
                "someone else has that time".to_owned(),
            ));
        }
        let body = ical::moved_event(&stored.body, slot.starts_at, slot.ends_at, Utc::now())
            .ok_or_else(|| ProviderError::malformed("the appointment has no VEVENT"))?;
        let precondition = match &stored.etag {
            Some(etag) => (reqwest::header::IF_MATCH, etag.clone()),
            // NOTE(caldav): a server without ETags cannot detect a concurrent change; the PUT
            // still only replaces this one resource.
            None => (reqwest::header::IF_MATCH, HeaderValue::from_static("*")),
        };
        let answer = self.put(&connection, uid, precondition, body).await?;
        match answer.status {
            status if status.is_success() => Ok(Booked {
                appointment_id: uid.to_owned(),
                starts_at: slot.starts_at,
                ends_at: slot.ends_at,
            }),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(BookingError::NotFound),
            StatusCode::PRECONDITION_FAILED => Err(BookingError::Failed(
                "the appointment changed meanwhile; try again".to_owned(),
            )),
            _ => Err(answer.error("appointment").into()),
        }
    }

    async fn delete_appointment(&self, tenant: TenantId, uid: &str) -> Result<(), BookingError> {
        if !is_resource_name(uid) {
            return Err(BookingError::NotFound);
        }
        let connection = self.connect(tenant).await?;
        // Two rounds: a 412 means someone edited the event between our GET and DELETE.
        for _ in 0..2 {
            let stored = self
                .fetch(&connection, uid)
                .await?
                .ok_or(BookingError::NotFound)?;
            let mut headers = HeaderMap::new();
            if let Some(etag) = stored.etag {
                headers.insert(reqwest::header::IF_MATCH, etag);
            }
            let answer = self
                .send(
                    &connection,
                    Method::DELETE,
                    &connection.resource(uid),
                    headers,
                    None,
                )
                .await?;
            match answer.status {
                status if status.is_success() => return Ok(()),
                StatusCode::NOT_FOUND | StatusCode::GONE => return Err(BookingError::NotFound),
                StatusCode::PRECONDITION_FAILED => {}
                _ => return Err(answer.error("appointment").into()),
            }
        }
        Err(BookingError::Failed(
            "the appointment keeps changing; try again".to_owned(),
        ))
    }

    async fn slots(&self, tenant: TenantId, query: SlotQuery) -> Result<Vec<Slot>, BookingError> {
        let connection = self.connect(tenant).await?;
        let candidates = hours::slots(
            &connection.openings,
            connection.zone,
            connection.slot,
            query.from,
            query.to,
        );
        let (Some(first), Some(last)) = (candidates.first(), candidates.last()) else {
            return Ok(Vec::new());
        };
        let range = Interval {
            start: first.starts_at,
            end: last.ends_at,
        };
        let busy = self.busy(&connection, range, None).await?;
        Ok(candidates
            .into_iter()
            .filter(|slot| {
                let wanted = Interval {
                    start: slot.starts_at,
                    end: slot.ends_at,
                };
                !busy.iter().any(|taken| taken.overlaps(&wanted))
            })
            .take(query.limit)
            .collect())
    }
}

/// An HTTP answer, read whole (CalDAV answers are small).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// Classifies a failed answer; the reason is the status line, never the body.
    fn error(&self, what: &str) -> ProviderError {
        ProviderError::from_status(
            self.status,
            &self.headers,
            what,
            format!("caldav answered {}", self.status),
        )
    }
}

/// An appointment as the server holds it.
struct Stored {
    etag: Option<HeaderValue>,
    body: String,
}

/// `providers.caldav`, checked.
struct Settings {
    collection: String,
    username: Option<String>,
    slot: TimeDelta,
    openings: Vec<Opening>,
}

impl Settings {
    fn read(snapshot: &TenantSnapshot) -> Result<Self, BookingError> {
        let invalid = |field: &str, problem: &str| {
            BookingError::NotConfigured(format!("`providers.caldav.{field}` {problem}"))
        };
        let settings = snapshot
            .configuration
            .providers
            .get("caldav")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| {
                BookingError::NotConfigured(
                    "the client has no CalDAV settings (`providers.caldav`)".to_owned(),
                )
            })?;
        let url = settings
            .get("url")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid("url", "must be the calendar collection's URL"))?;
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| invalid("url", "must be an absolute http(s) URL"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(invalid(
                "url",
                "must be an http(s) URL without credentials, query or fragment",
            ));
        }
        let mut collection = parsed.to_string();
        if !collection.ends_with('/') {
            collection.push('/');
        }
        let username = match settings.get("username") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) if !name.is_empty() && !name.contains(':') => {
                Some(name.clone())
            }
            Some(_) => return Err(invalid("username", "must be a name without `:`")),
        };
        let minutes = match settings.get("slot_minutes") {
            None | Some(serde_json::Value::Null) => DEFAULT_SLOT_MINUTES,
            Some(value) => value
                .as_i64()
                .filter(|minutes| (5..=480).contains(minutes))
                .ok_or_else(|| invalid("slot_minutes", "must be a whole number from 5 to 480"))?,
        };
        let hours: Vec<DayHours> = match settings.get("hours") {
            None | Some(serde_json::Value::Null) => {
                if snapshot.configuration.business_hours.is_empty() {
                    default_hours()
                } else {
                    snapshot.configuration.business_hours.clone()
                }
            }
            Some(value) => serde_json::from_value(value.clone()).map_err(|error| {
                invalid(
                    "hours",
                    &format!("must be a list of {{day, open, close}}: {error}"),
                )
            })?,
        };
        let openings = hours::openings("providers.caldav.hours", &hours)
            .map_err(BookingError::NotConfigured)?;
        Ok(Self {
            collection,
            username,
            slot: TimeDelta::minutes(minutes),
            openings,
        })
    }
}

/// Hours when neither `providers.caldav.hours` nor business hours are set: weekdays 09–17.
fn default_hours() -> Vec<DayHours> {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
    .into_iter()
    .map(|day| DayHours {
        day,
        open: "09:00".to_owned(),
        close: "17:00".to_owned(),
    })
    .collect()
}

fn summary(request: &BookingRequest) -> String {
    match request.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => format!("Appointment: {name}"),
        _ => "Appointment".to_owned(),
    }
}

fn description(request: &BookingRequest) -> String {
    let mut lines = vec!["Booked on a phone call by the AI assistant.".to_owned()];
    let mut add = |label: &str, value: Option<String>| {
        if let Some(value) = value.filter(|value| !value.trim().is_empty()) {
            lines.push(format!("{label}: {value}"));
        }
    };
    add("Name", request.name.clone());
    add("Phone", request.phone.as_ref().map(ToString::to_string));
    add("Email", request.email.clone());
    add(
        "CRM contact",
        request.contact.as_ref().map(ToString::to_string),
    );
    add("Call", request.call.map(|call| call.to_string()));
    add("Notes", request.notes.clone());
    lines.join("\n")
}

impl Calendar for CalDav {
    fn free_slots(
        &self,
        tenant: TenantId,
        query: SlotQuery,
    ) -> BoxFuture<'_, Result<Vec<Slot>, BookingError>> {
        self.slots(tenant, query).boxed()
    }

    fn book(&self, request: BookingRequest) -> BoxFuture<'_, Result<Booked, BookingError>> {
        self.book_slot(request).boxed()
    }

    fn reschedule<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
        starts_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Booked, BookingError>> {
        self.move_appointment(tenant, appointment_id, starts_at)
            .boxed()
    }

    fn cancel<'a>(
        &'a self,
        tenant: TenantId,
        appointment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), BookingError>> {
        self.delete_appointment(tenant, appointment_id).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appointment_id_is_derived_from_tenant_and_idempotency_key() {
        let tenant = TenantId::from_uuid(uuid::Uuid::nil());
        let other = TenantId::from_uuid(uuid::Uuid::max());
        let id = appointment_id(tenant, "tool-call-1");
        assert_eq!(id, appointment_id(tenant, "tool-call-1"));
        assert_ne!(id, appointment_id(tenant, "tool-call-2"));
        assert_ne!(id, appointment_id(other, "tool-call-1"));
        assert!(id.starts_with("caller-") && id.len() == 39, "{id}");
        assert!(is_resource_name(&id));
    }

    #[test]
    fn only_plain_resource_names_reach_a_url() {
        for bad in [
            "",
            "../other",
            "a/b",
            ".hidden",
            "a b",
            "x%2F",
            &"x".repeat(129),
        ] {
            assert!(!is_resource_name(bad), "{bad:?}");
        }
        assert!(is_resource_name("0000doesnotexist"));
    }

    #[test]
    fn credentials_become_sensitive_headers() {
        let basic = Auth::Basic {
            username: "alice".to_owned(),
            password: Secret::new("s3cret".to_owned()),
        }
        .header()
        .unwrap()
        .unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
        assert!(basic.is_sensitive());
        let bearer = Auth::Bearer(Secret::new("tok".to_owned()))
            .header()
            .unwrap()
            .unwrap();
        assert_eq!(bearer.to_str().unwrap(), "Bearer tok");
        assert!(Auth::Anonymous.header().unwrap().is_none());
    }
}
