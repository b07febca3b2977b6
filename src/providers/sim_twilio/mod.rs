//! A test double of Twilio Programmable Voice: the Calls REST endpoints, each call's
//! lifecycle in real time with signed status callbacks, answering machine detection, and a
//! Media Streams client. It records everything it is asked and everything it sends.
//!
//! - REST (`rest`, `list`): create, fetch, update (hang up, cancel, redirect) and list
//!   calls under `/2010-04-01/Accounts/{AccountSid}/Calls`, validated like Twilio (21201 no
//!   `To`, 21603 no `From`, 21211 invalid `To`, 21212 invalid `From`, 21215 no geographic
//!   permission for [`TwilioSimState::geo_blocked_prefixes`], 21205 no `Url`/`Twiml`/
//!   `ApplicationSid`). Every request needs HTTP Basic with the configured sid and token,
//!   else 401 with 20003. Scripted faults ([`TwilioSimState::push_fault`]) answer the next
//!   requests before anything else, e.g. a 429 with `Retry-After`.
//! - Lifecycle (`lifecycle`): one task per call walks `queued` → `initiated` → `ringing` →
//!   an outcome drawn from [`SimBehaviour`], posting the requested status callbacks
//!   (`shared/protocols/telephony-voice.md` A4), signed (A6), retried (`callback`).
//! - Media (`media`): an answered call whose TwiML is `<Connect><Stream>` (`twiml`)
//!   streams μ-law to the stream URL as Twilio does (A8).
//!
//! The state counts calls per callee and the highest number of calls alive at once, from the
//! create request's arrival to their terminal status. Codes 21201, 21205, 21212, 21218, 21220
//! and 21603 and their messages are best recollections (UNCONFIRMED in `shared/protocols/`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::ingress::verify::twilio::TwilioSignature;
use crate::secret::Secret;

mod behaviour;
mod callback;
mod lifecycle;
mod list;
mod media;
mod rest;
mod twiml;

#[cfg(test)]
mod tests;

pub use self::behaviour::{CallerStep, OutcomeMixError, SimBehaviour, SimOutcome, parse_outcomes};
pub use self::media::MediaSession;
pub use self::media::{AGENT_PAUSE, tone_frame};

/// A call the simulator created, with the parameters it was created with and where its
/// lifecycle stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    /// The Call SID (`CA` + 32 hex digits).
    pub sid: String,
    /// The callee as sent in `To`.
    pub to: String,
    /// The caller id as sent in `From`.
    pub from: String,
    /// The REST status: `queued`, `ringing`, `in-progress`, then `completed`, `busy`,
    /// `failed`, `no-answer` or `canceled`.
    pub status: String,
    /// Every form parameter of the create request, in order (repeated keys repeat).
    pub params: Vec<(String, String)>,
    /// Every redirect (`Url` or `Twiml` value) applied to the call, in order.
    pub redirects: Vec<String>,
    /// RFC 2822 creation time.
    pub date_created: String,
    /// RFC 2822 time of the last change.
    pub date_updated: String,
    /// The outcome drawn for the call when it was created.
    pub outcome: SimOutcome,
    /// When the create request arrived.
    pub created_at: DateTime<Utc>,
    /// When dialing began (REST `start_time`); `None` while the call waits to be dialed.
    pub started_at: Option<DateTime<Utc>>,
    /// When the call was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call reached its terminal status.
    pub ended_at: Option<DateTime<Utc>>,
    /// The answering machine detection result (`human`, `machine_start`, …) once known.
    pub answered_by: Option<String>,
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

    /// Returns true once the call has a terminal status.
    #[must_use]
    pub fn has_ended(&self) -> bool {
        is_terminal(&self.status)
    }
}

/// Returns true for the statuses a call ends with.
fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "completed" | "canceled" | "failed" | "busy" | "no-answer"
    )
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

/// When a create request arrived, for rate checks (calls per second in any window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimArrival {
    /// Monotonic arrival time; `tokio::time::Instant` rather than `std`'s so paused-time
    /// tests see the paused clock (clippy.toml bans `std::time::Instant`).
    pub instant: tokio::time::Instant,
    /// Wall-clock arrival time.
    pub at: DateTime<Utc>,
}

/// What a webhook the simulator sent was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// A call progress event to `StatusCallback`.
    Status,
    /// An asynchronous answering machine detection result to `AsyncAmdStatusCallback`.
    Amd,
    /// The TwiML request to the call's `Url` (or `FallbackUrl`).
    Twiml,
}

/// One attempt at a webhook: retries of the same webhook are separate entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCallback {
    /// What the webhook was for.
    pub kind: CallbackKind,
    /// The call it is about.
    pub call_sid: String,
    /// The URL requested (without a `#` fragment; with the parameters as query for `GET`).
    pub url: String,
    /// `POST` or `GET`.
    pub method: String,
    /// The parameters sent, in order.
    pub params: Vec<(String, String)>,
    /// The HTTP status answered; `None` when no answer came (connection error, timeout).
    pub status: Option<u16>,
    /// 0 for the first attempt, then 1, 2… for retries.
    pub attempt: u32,
}

impl SentCallback {
    /// Returns the first value of parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How the REST handlers reach a live call's lifecycle task.
#[derive(Debug)]
struct Control {
    /// Position in [`Book::arrivals`]: the listing order.
    arrival: usize,
    /// Cancelled when a REST update ends the call.
    hangup: tokio_util::sync::CancellationToken,
    /// The instructions to run when answered; a REST redirect sends new ones.
    instructions: tokio::sync::watch::Sender<Option<lifecycle::Instructions>>,
    /// Canceled while queued: Twilio then fires no status callback at all.
    silent: bool,
}

#[derive(Debug)]
struct Book {
    calls: BTreeMap<String, SimCall>,
    controls: BTreeMap<String, Control>,
    arrivals: Vec<(String, String, SimArrival)>,
    per_callee: BTreeMap<String, u32>,
    active: u32,
    max_concurrency: u32,
    faults: VecDeque<SimFault>,
    callbacks: Vec<SentCallback>,
    media: Vec<MediaSession>,
    picker: behaviour::OutcomePicker,
}

impl Book {
    fn new(behaviour: &SimBehaviour) -> Self {
        Self {
            calls: BTreeMap::new(),
            controls: BTreeMap::new(),
            arrivals: Vec::new(),
            per_callee: BTreeMap::new(),
            active: 0,
            max_concurrency: 0,
            faults: VecDeque::new(),
            callbacks: Vec::new(),
            media: Vec::new(),
            picker: behaviour::OutcomePicker::new(behaviour),
        }
    }

    /// Gives call `sid` its terminal `status` unless it already has one; returns whether it
    /// ended now. The one place a call stops counting as active.
    fn end(&mut self, sid: &str, status: &str) -> bool {
        let Some(call) = self.calls.get_mut(sid) else {
            return false;
        };
        if call.has_ended() {
            return false;
        }
        let now = Utc::now();
        status.clone_into(&mut call.status);
        call.ended_at = Some(now);
        call.date_updated = now.to_rfc2822();
        self.active = self.active.saturating_sub(1);
        true
    }
}

/// The simulator's configuration and record; clones share the record.
#[derive(Debug, Clone)]
pub struct TwilioSimState {
    account_sid: String,
    auth_token: Secret<String>,
    geo_blocked_prefixes: Vec<String>,
    behaviour: Arc<SimBehaviour>,
    /// Signs outgoing webhooks; `None` for an empty auth token, which cannot sign.
    signer: Option<Arc<TwilioSignature>>,
    http: reqwest::Client,
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
    /// permission for the international networks `+881`, `+882` and `+883`, and the default
    /// [`SimBehaviour`].
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        let token = Secret::new(auth_token.to_owned());
        let signer = TwilioSignature::new(std::slice::from_ref(&token))
            .ok()
            .map(Arc::new);
        let behaviour = SimBehaviour::default();
        Self {
            account_sid: account_sid.to_owned(),
            auth_token: token,
            geo_blocked_prefixes: ["+881", "+882", "+883"].map(str::to_owned).to_vec(),
            book: Arc::new(Mutex::new(Book::new(&behaviour))),
            behaviour: Arc::new(behaviour),
            signer,
            http: super::http::client(),
        }
    }

    /// Returns the simulator with `behaviour`; the outcome RNG restarts from `behaviour.seed`.
    ///
    /// Set it before serving: a router already serving a clone keeps that clone's timings
    /// (the record, RNG included, is shared by all clones).
    #[must_use]
    pub fn with_behaviour(self, behaviour: SimBehaviour) -> Self {
        self.book().picker = behaviour::OutcomePicker::new(&behaviour);
        Self {
            behaviour: Arc::new(behaviour),
            ..self
        }
    }

    /// Returns how calls behave.
    #[must_use]
    pub fn behaviour(&self) -> &SimBehaviour {
        &self.behaviour
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

    /// Returns how many created calls have not reached a terminal status.
    #[must_use]
    pub fn active_calls(&self) -> u32 {
        self.book().active
    }

    /// Returns the highest number of calls that were alive (created, not yet ended) at once.
    #[must_use]
    pub fn max_concurrency(&self) -> u32 {
        self.book().max_concurrency
    }

    /// Returns `(sid, to, arrival time)` of every accepted create request, in arrival order.
    #[must_use]
    pub fn created_at(&self) -> Vec<(String, String, DateTime<Utc>)> {
        self.book()
            .arrivals
            .iter()
            .map(|(sid, to, arrival)| (sid.clone(), to.clone(), arrival.at))
            .collect()
    }

    /// Returns `(sid, arrival)` of every accepted create request, in arrival order, with the
    /// monotonic instant as well as the wall-clock time.
    #[must_use]
    pub fn arrivals(&self) -> Vec<(String, SimArrival)> {
        self.book()
            .arrivals
            .iter()
            .map(|(sid, _, arrival)| (sid.clone(), *arrival))
            .collect()
    }

    /// Returns every webhook attempt (status callbacks, AMD results, TwiML requests), in the
    /// order they were answered or failed.
    #[must_use]
    pub fn callbacks(&self) -> Vec<SentCallback> {
        self.book().callbacks.clone()
    }

    /// Returns every Media Streams session, in the order they were opened.
    #[must_use]
    pub fn media_sessions(&self) -> Vec<MediaSession> {
        self.book().media.clone()
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panicking test thread must not hide the record from the others.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to call `sid` if it has not ended; returns whether it applied.
    fn update_live(&self, sid: &str, change: impl FnOnce(&mut SimCall)) -> bool {
        let mut book = self.book();
        let Some(call) = book.calls.get_mut(sid).filter(|call| !call.has_ended()) else {
            return false;
        };
        change(call);
        call.date_updated = Utc::now().to_rfc2822();
        true
    }

    /// Returns the `X-Twilio-Signature` of a request to `url` with form `params`.
    fn sign(&self, url: &str, params: &[(String, String)]) -> Option<String> {
        self.signer.as_ref().map(|signer| signer.sign(url, params))
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
        let expected = format!("{}:{}", self.account_sid, self.auth_token.expose());
        decoded == expected.as_bytes()
    }

    /// Answers authentication, account and scripted-fault checks; `None` lets the request on.
    fn gate(&self, account: &str, headers: &HeaderMap, path: &str) -> Option<Response> {
        if !self.authenticated(headers) {
            let refusal = rest::twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
            let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"Twilio API\"")];
            return Some((challenge, refusal).into_response());
        }
        if account != self.account_sid {
            return Some(rest::not_found(path));
        }
        let fault = self.book().faults.pop_front()?;
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = rest::twilio_error(status, fault.code, "Simulated fault");
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
            post(rest::create_call).get(list::list_calls),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            post(rest::update_call).get(rest::fetch_call),
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
