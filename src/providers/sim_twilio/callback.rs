//! Sends the simulator's webhooks the way Twilio does, and records every attempt.
//!
//! - `POST` (the default): form-encoded body, `X-Twilio-Signature` over the URL (query
//!   included) and the body parameters. `GET`: the parameters join the query, and the
//!   signature covers that whole URL alone (A6).
//! - `User-Agent: TwilioProxy/1.1`, as Twilio's webhook requests carry.
//! - A `#` fragment is Twilio's place for connection overrides: it is never sent, and `rc`
//!   (retry count, 0 to 5) is honoured.
//! - A connection error or a non-2xx answer is retried [`DEFAULT_RETRIES`] times after a
//!   short backoff, then dropped. NOTE(sim): Twilio documents `rc` defaulting to 1 with a
//!   retry policy (`rp`) that by default retries connection failures only (UNCONFIRMED which
//!   failures exactly); the simulator retries every failure so receivers get exercised.

use std::time::Duration;

use axum::http::header;
use tokio::sync::mpsc;

use super::{CallbackKind, SentCallback, TwilioSimState};

/// Retries after a failed first attempt, unless the URL's `#rc=` says otherwise.
pub(super) const DEFAULT_RETRIES: u32 = 2;

/// The wait before the first retry; each further retry waits one more step.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The `User-Agent` of Twilio's webhook requests.
const TWILIO_USER_AGENT: &str = "TwilioProxy/1.1";

/// The most of a webhook's answer kept (a TwiML document is at most a few kilobytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One webhook to send.
#[derive(Debug, Clone)]
pub(super) struct Webhook {
    pub(super) kind: CallbackKind,
    pub(super) call_sid: String,
    /// As configured, possibly with a `#` fragment of connection overrides.
    pub(super) url: String,
    /// `GET` or `POST` (anything else is sent as `POST`, Twilio's default).
    pub(super) method: String,
    pub(super) params: Vec<(String, String)>,
}

/// Returns a queue whose webhooks a task sends one after another, in order, each with its
/// retries; the task ends when every sender is dropped.
pub(super) fn spawn_notifier(state: TwilioSimState) -> mpsc::UnboundedSender<Webhook> {
    let (sender, mut queue) = mpsc::unbounded_channel::<Webhook>();
    tokio::spawn(async move {
        while let Some(webhook) = queue.recv().await {
            // The answer to a callback is ignored, as Twilio ignores it.
            let _answer = deliver(&state, &webhook).await;
        }
    });
    sender
}

/// Sends `webhook` with its retries; returns the body of the first 2xx answer, or `None`
/// once every attempt failed.
pub(super) async fn deliver(state: &TwilioSimState, webhook: &Webhook) -> Option<String> {
    let (target, retries) = split_overrides(&webhook.url);
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(RETRY_BACKOFF * attempt).await;
        }
        let (url, status, answer) = send_once(state, webhook, target).await;
        state.book().callbacks.push(SentCallback {
            kind: webhook.kind,
            call_sid: webhook.call_sid.clone(),
            url,
            method: method_of(webhook).to_owned(),
            params: webhook.params.clone(),
            status,
            attempt,
        });
        if let Some(answer) = answer {
            return Some(answer);
        }
    }
    tracing::debug!(kind = ?webhook.kind, "twilio simulator dropped a webhook after retries");
    None
}

fn method_of(webhook: &Webhook) -> &'static str {
    if webhook.method.eq_ignore_ascii_case("GET") {
        "GET"
    } else {
        "POST"
    }
}

/// Sends one attempt; returns the URL requested, the status answered, and the body of a 2xx
/// answer.
async fn send_once(
    state: &TwilioSimState,
    webhook: &Webhook,
    target: &str,
) -> (String, Option<u16>, Option<String>) {
    let is_get = method_of(webhook) == "GET";
    let (url, request) = if is_get {
        let separator = if target.contains('?') { '&' } else { '?' };
        let url = format!("{target}{separator}{}", form_encode(&webhook.params));
        (url.clone(), state.http.get(url))
    } else {
        let body = form_encode(&webhook.params);
        let request = state
            .http
            .post(target)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        (target.to_owned(), request)
    };
    let signed_params: &[(String, String)] = if is_get { &[] } else { &webhook.params };
    let mut request = request.header(header::USER_AGENT, TWILIO_USER_AGENT);
    if let Some(signature) = state.sign(&url, signed_params) {
        request = request.header("X-Twilio-Signature", signature);
    }
    let Ok(response) = request.send().await else {
        return (url, None, None);
    };
    let status = response.status();
    if !status.is_success() {
        return (url, Some(status.as_u16()), None);
    }
    let body = response.bytes().await.unwrap_or_default();
    let kept = &body[..body.len().min(MAX_ANSWER_BYTES)];
    let answer = String::from_utf8_lossy(kept).into_owned();
    (url, Some(status.as_u16()), Some(answer))
}

/// Splits a webhook URL into what is requested (no fragment) and the retries its `#rc=`
/// override asks for (0 to 5), else [`DEFAULT_RETRIES`].
pub(super) fn split_overrides(url: &str) -> (&str, u32) {
    let Some((target, fragment)) = url.split_once('#') else {
        return (url, DEFAULT_RETRIES);
    };
    let retries = crate::http::form::parse(fragment.as_bytes())
        .into_iter()
        .find(|(name, _)| name == "rc")
        .and_then(|(_, value)| value.parse::<u32>().ok())
        .map_or(DEFAULT_RETRIES, |count| count.min(5));
    (target, retries)
}

/// Encodes pairs as `application/x-www-form-urlencoded` ([`crate::http::form::encode`]).
pub(super) fn form_encode(pairs: &[(String, String)]) -> String {
    crate::http::form::encode(pairs)
}
