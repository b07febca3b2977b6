//! The Twilio adapter of [`Telephony`], over the REST API `2010-04-01`.
//!
//! - Create: `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`, form-encoded (see
//!   [`create_call_form`]); 201 with the Call resource.
//! - Fetch: `GET …/Calls/{Sid}.json`; 200 with the Call resource.
//! - Hang up and redirect: `POST …/Calls/{Sid}.json` with `Status=completed`, or `Url` /
//!   `Twiml` (see [`update_call_form`]); 200 with the Call resource.
//!
//! Authentication is HTTP Basic `AccountSid:AuthToken`. The base URL defaults to
//! [`DEFAULT_BASE_URL`] and is overridable, which is how [`super::sim_twilio`] or a sandbox is
//! injected. Errors are classified from Twilio's error JSON (`code`, `message`, `more_info`,
//! `status`) and the HTTP status by [`classify`]; no message carries the auth token or a URL.

use std::time::Duration;

use chrono::{DateTime, Utc};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use super::telephony::{
    CallInstructions, PlaceCall, PlacedCall, ProviderCall, Telephony, TelephonyError,
};
use crate::calls::state::ProviderStatus;
use crate::ids::PhoneNumber;
use crate::secret::Secret;

/// Twilio's real REST host.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The lifecycle events we ask Twilio to post to the status callback.
const STATUS_CALLBACK_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// The longest reason kept from a Twilio error message.
const MAX_REASON_CHARS: usize = 300;

/// A tenant's Twilio account, ready to place calls.
#[derive(Debug, Clone)]
pub struct Twilio {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: Secret<String>,
}

impl Twilio {
    /// Returns the adapter for a tenant's Twilio account (its current auth token, and the
    /// operator-set base URL of a simulator or sandbox when there is one), sending through
    /// `http`.
    ///
    /// # Errors
    ///
    /// A sentence naming what the tenant lacks (never a secret).
    pub fn for_tenant(
        snapshot: &crate::tenancy::directory::TenantSnapshot,
        http: reqwest::Client,
    ) -> Result<Self, &'static str> {
        let account = snapshot.twilio()?;
        let token = account
            .auth_tokens
            .first()
            .cloned()
            .ok_or("the client has no Twilio auth token")?;
        let twilio = Self::new(&account.account_sid, token)
            .map_err(|_| "the client's Twilio account_sid is not an Account SID")?
            .with_client(http);
        Ok(match account.base_url.as_deref() {
            Some(base_url) => twilio.with_base_url(base_url),
            None => twilio,
        })
    }

    /// Builds an adapter for `account_sid` (`AC` + 32 hex digits) against [`DEFAULT_BASE_URL`].
    ///
    /// # Errors
    ///
    /// [`TelephonyError::Unauthorized`] when `account_sid` is not an Account SID, since no
    /// request with it can authenticate.
    pub fn new(account_sid: &str, auth_token: Secret<String>) -> Result<Self, TelephonyError> {
        if !is_sid(account_sid, "AC") {
            return Err(TelephonyError::Unauthorized { code: None });
        }
        Ok(Self {
            http: super::http::client(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token,
        })
    }

    /// Sends every request to `base_url` (a simulator or sandbox) instead of Twilio's host.
    #[must_use]
    pub fn with_base_url(mut self, base_url: &str) -> Self {
        base_url
            .trim_end_matches('/')
            .clone_into(&mut self.base_url);
        self
    }

    /// Uses `http` (a clone of the process's shared client) instead of a new one.
    #[must_use]
    pub fn with_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    fn calls_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Calls.json",
            self.base_url, self.account_sid
        )
    }

    fn call_url(&self, call_sid: &str) -> Result<String, TelephonyError> {
        // The sid goes into the path: anything but a Call SID could address another resource.
        if !is_sid(call_sid, "CA") {
            return Err(TelephonyError::NotFound);
        }
        Ok(format!(
            "{}/2010-04-01/Accounts/{}/Calls/{call_sid}.json",
            self.base_url, self.account_sid
        ))
    }

    async fn update(
        &self,
        call_sid: &str,
        form: &[(&'static str, String)],
    ) -> Result<CallResource, TelephonyError> {
        let response = self
            .http
            .post(self.call_url(call_sid)?)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(form)
            .send()
            .await
            .map_err(|error| send_failure(&error, false))?;
        read_call(response).await.map_err(|failure| failure.error)
    }
}

impl Telephony for Twilio {
    #[tracing::instrument(name = "twilio_place_call", skip_all)]
    async fn place_call(&self, request: &PlaceCall) -> Result<PlacedCall, TelephonyError> {
        let response = self
            .http
            .post(self.calls_url())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&create_call_form(request))
            .send()
            .await
            .map_err(|error| send_failure(&error, true))?;
        let call = read_call(response).await.map_err(|failure| {
            if failure.accepted {
                TelephonyError::Unconfirmed {
                    reason: "unreadable call resource in a success answer".to_owned(),
                }
            } else {
                failure.error
            }
        })?;
        // The call exists once Twilio returns its sid: an unknown status must not lose the sid.
        let status = call.status.parse().unwrap_or_else(|_| {
            tracing::warn!(status = %call.status, "unknown twilio call status on create");
            ProviderStatus::Queued
        });
        Ok(PlacedCall {
            provider_call_id: call.sid,
            status,
        })
    }

    #[tracing::instrument(name = "twilio_hang_up", skip_all)]
    async fn hang_up(&self, provider_call_id: &str) -> Result<(), TelephonyError> {
        self.update(provider_call_id, &update_call_form(None))
            .await
            .map(drop)
    }

    #[tracing::instrument(name = "twilio_redirect", skip_all)]
    async fn redirect(
        &self,
        provider_call_id: &str,
        instructions: &CallInstructions,
    ) -> Result<(), TelephonyError> {
        self.update(provider_call_id, &update_call_form(Some(instructions)))
            .await
            .map(drop)
    }

    #[tracing::instrument(name = "twilio_fetch_call", skip_all)]
    async fn fetch_call(&self, provider_call_id: &str) -> Result<ProviderCall, TelephonyError> {
        let response = self
            .http
            .get(self.call_url(provider_call_id)?)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .send()
            .await
            .map_err(|error| send_failure(&error, false))?;
        let call = read_call(response).await.map_err(|failure| failure.error)?;
        provider_call(call)
    }

    #[tracing::instrument(name = "twilio_find_calls", skip_all)]
    async fn find_calls(
        &self,
        to: &PhoneNumber,
        from: &PhoneNumber,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProviderCall>, TelephonyError> {
        // No StartTime filter: a call still queued or ringing has no start time yet, and it
        // is exactly the one reconciliation looks for. Calls between one pair of numbers are
        // few, and the list is newest first.
        let response = self
            .http
            .get(self.calls_url())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .query(&[
                ("To", to.as_str()),
                ("From", from.as_str()),
                ("PageSize", "50"),
            ])
            .send()
            .await
            .map_err(|error| send_failure(&error, false))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|error| TelephonyError::Transient {
                reason: describe(&error),
                retry_after: None,
            })?;
        if !status.is_success() {
            return Err(classify(status, retry_after, &body));
        }
        let page: CallPage =
            serde_json::from_slice(&body).map_err(|_| TelephonyError::Transient {
                reason: "unreadable call list".to_owned(),
                retry_after: None,
            })?;
        let mut calls = Vec::with_capacity(page.calls.len());
        for call in page.calls {
            let call = provider_call(call)?;
            // Twilio's dates have second precision: compare at that precision.
            let recent = call
                .created_at
                .is_none_or(|created| created >= since - chrono::Duration::seconds(1));
            if recent {
                calls.push(call);
            }
        }
        Ok(calls)
    }
}

fn provider_call(call: CallResource) -> Result<ProviderCall, TelephonyError> {
    let status = call.status.parse().map_err(|_| TelephonyError::Transient {
        reason: "unknown call status".to_owned(),
        retry_after: None,
    })?;
    Ok(ProviderCall {
        provider_call_id: call.sid,
        status,
        answered_by: call.answered_by.and_then(|raw| raw.parse().ok()),
        duration_secs: call.duration.and_then(|raw| raw.parse().ok()),
        created_at: call
            .date_created
            .and_then(|raw| DateTime::parse_from_rfc2822(&raw).ok())
            .map(|date| date.with_timezone(&Utc)),
    })
}

/// One page of `GET …/Calls.json`.
#[derive(Debug, Deserialize)]
struct CallPage {
    calls: Vec<CallResource>,
}

/// Returns the form parameters of `POST …/Calls.json` for `request`, in order; repeated keys
/// (`StatusCallbackEvent`) appear once per value.
#[must_use]
pub fn create_call_form(request: &PlaceCall) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("To", request.to.as_str().to_owned()),
        ("From", request.from.as_str().to_owned()),
    ];
    form.push(instructions_param(&request.instructions));
    form.push(("StatusCallback", request.status_callback.clone()));
    for event in STATUS_CALLBACK_EVENTS {
        form.push(("StatusCallbackEvent", event.to_owned()));
    }
    form.push(("StatusCallbackMethod", "POST".to_owned()));
    if let Some(amd_callback) = &request.machine_detection_callback {
        form.push(("MachineDetection", "Enable".to_owned()));
        form.push(("AsyncAmd", "true".to_owned()));
        form.push(("AsyncAmdStatusCallback", amd_callback.clone()));
        form.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
    }
    if request.record {
        form.push(("Record", "true".to_owned()));
    }
    form.push(("Timeout", request.timeout_secs.to_string()));
    form
}

/// Returns the form parameters of `POST …/Calls/{Sid}.json`: `Status=completed` (hang up) for
/// `None`, else the new `Url` or `Twiml` (redirect).
#[must_use]
pub fn update_call_form(instructions: Option<&CallInstructions>) -> Vec<(&'static str, String)> {
    match instructions {
        None => vec![("Status", "completed".to_owned())],
        Some(instructions) => vec![instructions_param(instructions)],
    }
}

fn instructions_param(instructions: &CallInstructions) -> (&'static str, String) {
    match instructions {
        CallInstructions::Url(url) => ("Url", url.clone()),
        CallInstructions::Twiml(twiml) => ("Twiml", twiml.clone()),
    }
}

/// The fields of Twilio's Call resource (`api.v2010.account.call`) the adapter reads.
#[derive(Debug, Deserialize)]
struct CallResource {
    sid: String,
    status: String,
    answered_by: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

/// Twilio's REST error body (the fields twilio-node's `RestException` reads).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// A failed read of a Call resource; `accepted` when Twilio answered 2xx.
struct ReadFailure {
    error: TelephonyError,
    accepted: bool,
}

async fn read_call(response: reqwest::Response) -> Result<CallResource, ReadFailure> {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|error| ReadFailure {
        error: TelephonyError::Transient {
            reason: describe(&error),
            retry_after: None,
        },
        accepted: status.is_success(),
    })?;
    if !status.is_success() {
        return Err(ReadFailure {
            error: classify(status, retry_after, &body),
            accepted: false,
        });
    }
    serde_json::from_slice(&body).map_err(|_| ReadFailure {
        error: TelephonyError::Transient {
            reason: "unreadable call resource".to_owned(),
            retry_after: None,
        },
        accepted: true,
    })
}

/// Classifies a non-2xx answer from its HTTP status, `Retry-After` and Twilio error JSON.
///
/// Twilio's error code decides first where it is unambiguous (20003 credentials, 20404 not
/// found, 20429 throttled); then the status: 401/403 unauthorized, 404 not found, 408, 429
/// and 5xx transient, any other 4xx permanent.
#[must_use]
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> TelephonyError {
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let reason = error.message.as_deref().map_or_else(
        || format!("status {}", status.as_u16()),
        |message| message.chars().take(MAX_REASON_CHARS).collect(),
    );
    let transient = |reason: String| TelephonyError::Transient {
        reason,
        retry_after,
    };
    match (error.code, status) {
        (Some(20003), _) | (_, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            TelephonyError::Unauthorized { code: error.code }
        }
        (Some(20404), _) | (_, StatusCode::NOT_FOUND) => TelephonyError::NotFound,
        (Some(20429), _) | (_, StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT) => {
            transient(reason)
        }
        (_, status) if status.is_server_error() => transient(reason),
        (code, _) => TelephonyError::Permanent { code, reason },
    }
}

/// `Retry-After` in seconds (Twilio does not send the HTTP-date form).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Classifies a failure to send a request; `creates_a_call` when a duplicate would place a
/// second call.
fn send_failure(error: &reqwest::Error, creates_a_call: bool) -> TelephonyError {
    let reason = describe(error);
    if error.is_builder() {
        // A malformed base URL: our configuration, not the provider, and no retry fixes it.
        return TelephonyError::Permanent { code: None, reason };
    }
    // Only a failure to connect proves Twilio never saw the request.
    if creates_a_call && !error.is_connect() {
        return TelephonyError::Unconfirmed { reason };
    }
    TelephonyError::Transient {
        reason,
        retry_after: None,
    }
}

/// Describes a transport error without its URL (reqwest's `Display` names the URL).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

/// Returns true for a Twilio SID: `prefix` + 32 hex digits.
fn is_sid(candidate: &str, prefix: &str) -> bool {
    candidate
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests;
