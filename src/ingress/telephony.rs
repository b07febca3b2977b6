//! Telephony callbacks: Twilio's call progress events and asynchronous answering machine
//! detection results, about calls the dial stage placed.
//!
//! | Route | Callback |
//! |---|---|
//! | `POST /webhooks/{tenant}/twilio/calls/{attempt}/status` | `StatusCallback` (initiated, ringing, answered, completed) |
//! | `POST /webhooks/{tenant}/twilio/calls/{attempt}/amd` | `AsyncAmdStatusCallback` |
//! | `POST /webhooks/{tenant}/twilio/calls/{attempt}/whisper?text=…` | `<Number url>` of a warm transfer: answers TwiML that says `text` to the person taking the call |
//!
//! The dial stage builds these URLs from `telephony.public_base_url`, with our attempt id in
//! the path, so every callback reconciles with its attempt even when the dial stage never
//! recorded the provider's call id. Order of work:
//!
//! 1. `X-Twilio-Signature` over `public_base_url` + the request's path and query and the form
//!    parameters, with the tenant's auth token (the previous one too during a rotation).
//!    Unsigned, invalid, or a tenant without Twilio credentials: 403, since nothing about
//!    the request can be trusted.
//! 2. Verified: one `call.status_reported` on `calls.status.<tenant>`, deduplicated by a
//!    message id from the callback's content (Twilio's retries store once), then 200 after
//!    the PubAck; NATS down: 503, so Twilio retries.
//! 3. A callback that names no attempt of ours (a malformed attempt id) is answered 200 and
//!    logged: retrying it could never help. An unknown but well-formed attempt is left to
//!    `call_status`, which logs and drops it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::Ingress;
use super::limits::read_body;
use super::publish::{content_message_id, publish_event};
use super::verify::twilio::TwilioSignature;
use crate::api::error::ApiError;
use crate::calls::state::{AnsweredBy, Failure, ProviderStatus};
use crate::events::call_flow::{CallStatusReported, ReportKind};
use crate::ids::{AttemptId, TenantId};

/// `POST /webhooks/{tenant}/twilio/calls/{attempt}/{callback}`.
pub async fn twilio_call(
    State(ingress): State<Arc<Ingress>>,
    Path((tenant, attempt, callback)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = match callback.as_str() {
        "status" => Some(ReportKind::Status),
        "amd" => Some(ReportKind::MachineDetection),
        "whisper" => None,
        _ => return Err(ApiError::NotFound),
    };
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    let forbidden = || {
        ApiError::Forbidden("the request is not signed by the client's Twilio account".to_owned())
    };
    let Ok(tenant) = TenantId::parse(&tenant) else {
        return Err(forbidden());
    };
    let Some(snapshot) = ingress.directory.tenant(tenant).await.map_err(|error| {
        tracing::warn!(%error, "tenant lookup failed");
        ApiError::Unavailable
    })?
    else {
        return Err(forbidden());
    };
    let account = snapshot.twilio().map_err(|missing| {
        tracing::warn!(tenant_id = %tenant, missing, "twilio callback for a client without Twilio credentials");
        forbidden()
    })?;
    let url = format!(
        "{}{}",
        ingress.public_base_url.trim_end_matches('/'),
        uri.path_and_query()
            .map_or(uri.path(), |path| path.as_str())
    );
    let verifier = TwilioSignature::new(&account.auth_tokens).map_err(|_| forbidden())?;
    if let Err(error) = verifier.verify(&url, &headers, &body) {
        tracing::info!(tenant_id = %tenant, %error, "twilio callback refused");
        return Err(forbidden());
    }

    let Some(kind) = kind else {
        return Ok(whisper(&uri));
    };
    let params = crate::http::form::parse(&body);
    let Ok(attempt_id) = AttemptId::parse(&attempt) else {
        tracing::warn!(tenant_id = %tenant, attempt, "twilio callback for no call of ours; ignored");
        return Ok(StatusCode::OK.into_response());
    };
    let report = match report_of(attempt_id, kind, &params) {
        Ok(report) => report,
        Err(missing) => {
            tracing::warn!(tenant_id = %tenant, %attempt_id, missing, "unusable twilio callback; ignored");
            return Ok(StatusCode::OK.into_response());
        }
    };
    let message_id = message_id(&report);
    publish_event(
        &ingress.bus,
        tenant,
        "caller/ingress/twilio",
        report,
        &message_id,
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// The TwiML of a warm transfer's whisper: says the URL's `text` to the person who answered.
fn whisper(uri: &Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    let text = crate::http::form::parse(query.as_bytes())
        .into_iter()
        .find(|(key, _)| key == "text")
        .map(|(_, text)| text.chars().take(500).collect::<String>())
        .unwrap_or_default();
    let twiml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>{}</Say></Response>"#,
        crate::calls::twiml::escape(&text)
    );
    ([(axum::http::header::CONTENT_TYPE, "text/xml")], twiml).into_response()
}

/// Returns the first value of form parameter `name`, if not empty.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// Reads a callback's parameters; `Err` names the missing one.
fn report_of(
    attempt_id: AttemptId,
    kind: ReportKind,
    params: &[(String, String)],
) -> Result<CallStatusReported, &'static str> {
    let provider_call_id = param(params, "CallSid").ok_or("CallSid")?.to_owned();
    let status = param(params, "CallStatus").and_then(|raw| {
        raw.parse::<ProviderStatus>()
            .inspect_err(|_| tracing::warn!(status = raw, "unknown CallStatus"))
            .ok()
    });
    let answered_by = param(params, "AnsweredBy").and_then(|raw| {
        raw.parse::<AnsweredBy>()
            .inspect_err(|_| tracing::warn!(answered_by = raw, "unknown AnsweredBy"))
            .ok()
    });
    if status.is_none() && answered_by.is_none() {
        return Err("CallStatus or AnsweredBy");
    }
    let failure = param(params, "ErrorCode").map(|code| Failure {
        code: code.parse().ok(),
        reason: param(params, "ErrorMessage").map(|message| message.chars().take(300).collect()),
    });
    Ok(CallStatusReported {
        attempt_id,
        kind,
        provider_call_id,
        status,
        answered_by,
        sequence_number: param(params, "SequenceNumber").and_then(|raw| raw.parse().ok()),
        duration_secs: param(params, "CallDuration").and_then(|raw| raw.parse().ok()),
        failure,
        provider_time: param(params, "Timestamp")
            .and_then(|raw| DateTime::parse_from_rfc2822(raw).ok())
            .map(|time| time.with_timezone(&Utc)),
    })
}

/// The same callback (Twilio retries it) always gets the same message id.
fn message_id(report: &CallStatusReported) -> String {
    let attempt = report.attempt_id.to_string();
    let kind = format!("{:?}", report.kind);
    let sequence = report
        .sequence_number
        .map(|n| n.to_string())
        .unwrap_or_default();
    content_message_id(
        "twilio",
        &[
            attempt.as_bytes(),
            report.provider_call_id.as_bytes(),
            kind.as_bytes(),
            report.status.map_or("", ProviderStatus::as_str).as_bytes(),
            report.answered_by.map_or("", AnsweredBy::as_str).as_bytes(),
            sequence.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_a_completed_callback() {
        let attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
        let report = report_of(
            attempt,
            ReportKind::Status,
            &params(&[
                ("CallSid", "CA0123"),
                ("CallStatus", "completed"),
                ("CallDuration", "47"),
                ("SequenceNumber", "3"),
                ("Timestamp", "Tue, 24 Nov 2026 05:31:07 +0000"),
            ]),
        )
        .unwrap();
        assert_eq!(report.status, Some(ProviderStatus::Completed));
        assert_eq!(report.duration_secs, Some(47));
        assert_eq!(report.sequence_number, Some(3));
        assert!(report.provider_time.is_some());
        let again = report.clone();
        assert_eq!(message_id(&report), message_id(&again));
        let mut other = report.clone();
        other.sequence_number = Some(4);
        assert_ne!(message_id(&report), message_id(&other));
    }

    #[test]
    fn a_callback_without_news_is_refused_by_name() {
        let attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            report_of(
                attempt,
                ReportKind::Status,
                &params(&[("CallStatus", "ringing")])
            ),
            Err("CallSid")
        );
        assert_eq!(
            report_of(
                attempt,
                ReportKind::MachineDetection,
                &params(&[("CallSid", "CA1")])
            ),
            Err("CallStatus or AnsweredBy")
        );
        let amd = report_of(
            attempt,
            ReportKind::MachineDetection,
            &params(&[("CallSid", "CA1"), ("AnsweredBy", "machine_start")]),
        )
        .unwrap();
        assert_eq!(amd.answered_by, Some(AnsweredBy::MachineStart));
    }
}
