//! One HighLevel request, sent well: paced by the location's bucket, authenticated, retried
//! once after a refresh on 401 and a bounded number of times on 429, and classified into
//! [`ProviderError`].

use std::time::Duration;

use governor::clock::Clock as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::auth::Credential;
use super::{Account, GoHighLevel, ProviderError, Session, wire};

/// The `Version` of contacts, opportunities and locations.
pub(super) const CONTACTS: &str = "2021-07-28";
/// The `Version` of calendars and conversations.
pub(super) const CALENDARS: &str = "2021-04-15";

/// A request, before authentication.
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) segments: Vec<&'a str>,
    pub(super) query: Vec<(&'static str, String)>,
    pub(super) body: Option<Value>,
    pub(super) version: &'static str,
    /// What a 404 means is missing (`contact`, `appointment`, …).
    pub(super) what: &'static str,
}

impl<'a> Call<'a> {
    pub(super) fn new(
        method: Method,
        segments: &[&'a str],
        version: &'static str,
        what: &'static str,
    ) -> Self {
        Self {
            method,
            segments: segments.to_vec(),
            query: Vec::new(),
            body: None,
            version,
            what,
        }
    }

    pub(super) fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub(super) fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

impl GoHighLevel {
    /// Sends `call` for `account`'s session; returns the answer's JSON (`Null` when empty).
    pub(super) async fn send(
        &self,
        account: &Account,
        session: &Session,
        call: &Call<'_>,
    ) -> Result<Value, ProviderError> {
        let url = account.url(&call.segments)?;
        let mut credential = session.credential.clone();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace(&session.location).await;
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .header(AUTHORIZATION, bearer(&credential)?)
                .header("Version", call.version)
                .header(ACCEPT, "application/json");
            if !call.query.is_empty() {
                request = request.query(&call.query);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|error| ProviderError::from_transport(&error))?;
            let status = response.status();
            let headers = response.headers().clone();
            self.note_budget(&session.location, &headers);
            let bytes = response
                .bytes()
                .await
                .map_err(|error| ProviderError::from_transport(&error))?;
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(body) => body,
                    Err(_) if status.is_success() => {
                        return Err(ProviderError::malformed("the answer is not JSON"));
                    }
                    Err(_) => Value::Null,
                }
            };
            if status.is_success() {
                return Ok(body);
            }
            let reason =
                wire::error_message(&body).unwrap_or_else(|| format!("http {}", status.as_u16()));
            match status {
                StatusCode::UNAUTHORIZED if !refreshed => {
                    refreshed = true;
                    match self.after_rejection(account, &credential).await? {
                        Some(fresh) => {
                            tracing::info!(
                                tenant_id = %account.tenant,
                                "highlevel refused the access token; retrying with a refreshed one"
                            );
                            credential = fresh;
                            attempt -= 1;
                            continue;
                        }
                        None => return Err(ProviderError::Unauthorized { reason }),
                    }
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = self.backoff(&headers, attempt);
                    if attempt >= self.settings.max_attempts.max(1) {
                        return Err(ProviderError::RateLimited {
                            retry_after: Some(wait),
                        });
                    }
                    tracing::debug!(
                        location_id = %session.location,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "highlevel rate limited a request; backing off"
                    );
                    self.pause(&session.location, wait);
                    continue;
                }
                StatusCode::BAD_REQUEST if reason.to_lowercase().contains("not found") => {
                    return Err(ProviderError::NotFound {
                        what: call.what.to_owned(),
                    });
                }
                _ => {
                    return Err(ProviderError::from_status(
                        status, &headers, call.what, reason,
                    ));
                }
            }
        }
    }

    /// Waits until the location's bucket, and any pause the vendor asked for, allow one more
    /// request.
    async fn pace(&self, location: &str) {
        let key = location.to_owned();
        loop {
            let paused = self
                .paused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(location)
                .copied();
            if let Some(until) = paused
                && until > Instant::now()
            {
                tokio::time::sleep_until(until).await;
                continue;
            }
            match self.limiter.check_key(&key) {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.limiter.clock().now());
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }

    /// Pauses the location's requests for `wait` (no shorter than a pause already set).
    fn pause(&self, location: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self
            .paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = paused.entry(location.to_owned()).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    /// Honours `X-RateLimit-Remaining: 0`: no request of the location before one request's
    /// share of the interval has passed.
    fn note_budget(&self, location: &str, headers: &HeaderMap) {
        if header_number(headers, "x-ratelimit-remaining") == Some(0) {
            self.pause(location, self.one_request_share(headers));
        }
    }

    /// The time one request's budget takes to come back: interval / max.
    fn one_request_share(&self, headers: &HeaderMap) -> Duration {
        let interval = header_number(headers, "x-ratelimit-interval-milliseconds")
            .unwrap_or(self.settings.interval_ms);
        let max = header_number(headers, "x-ratelimit-max")
            .unwrap_or(u64::from(self.settings.requests_per_interval))
            .max(1);
        Duration::from_millis(interval / max).max(Duration::from_millis(1))
    }

    /// The wait before try `attempt + 1` after a 429: `Retry-After` when given, else one
    /// request's share doubled per try, at most the whole interval.
    fn backoff(&self, headers: &HeaderMap, attempt: u32) -> Duration {
        if let Some(after) = crate::providers::error::retry_after(headers) {
            return after;
        }
        let interval = Duration::from_millis(
            header_number(headers, "x-ratelimit-interval-milliseconds")
                .unwrap_or(self.settings.interval_ms),
        );
        let doubled = self
            .one_request_share(headers)
            .saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1)));
        doubled.min(interval)
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Bearer <token>`, marked sensitive so reqwest never prints it.
fn bearer(credential: &Credential) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", credential.token().expose()))
        .map_err(|_| ProviderError::Unauthorized {
            reason: "the stored HighLevel token is not header text".to_owned(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}
