//! Leads through the API: `POST /v1/calls` (one lead, `Idempotency-Key`) and
//! `POST /v1/campaigns/{campaign_id}/leads` (bulk, JSON array or CSV).
//!
//! Both need a client's API key with `calls:write`: the key names the tenant. They publish
//! through the same path as webhooks (`crate::ingress`): 202 only after the PubAck, 503 with
//! `Retry-After` when NATS is down.
//!
//! # `Idempotency-Key` (Stripe's semantics)
//!
//! - The same key with the same request (method, path, body) within
//!   `ingress.idempotency_retention_hours` gets the first response again, with
//!   `Idempotent-Replayed: true`.
//! - The same key with another request: 422.
//! - The same key while the first request is still in flight: 409. A request that crashed
//!   holds the key for `ingress.idempotency_lock_secs` at most.
//! - A request that failed without effect (503) frees its key, so the retry runs again.
//!
//! The key is also the lead's provider event id, so its dedupe key is `api:<key>`.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Principal;
use super::bulk::{Format, read_items};
use super::error::{ApiError, Problem};
use crate::bus::envelope::BusMessage;
use crate::events::lead::{LeadSource, TenantKey};
use crate::ids::TenantId;
use crate::ingress::Ingress;
use crate::ingress::limits::{read_body, refuse_declared_over};
use crate::ingress::publish::{Accepted, lead_message, publish_lead, publish_messages};
use crate::ingress::webhooks::normalize_error;
use crate::normalize::{self, CallRequest, NormalizedLead};
use crate::store::idempotency_keys::{self, Reservation};
use crate::tenancy::api_keys::Scope;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Requests a call to one person.
#[utoipa::path(post, path = "/v1/calls", tag = "leads",
    request_body = CallRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe: same key and body → same response")),
    responses(
        (status = 202, body = Accepted, description = "published; the lead is on its way"),
        (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "the same key is still in flight"),
        (status = 413, body = Problem),
        (status = 422, body = Problem, description = "invalid fields, or the key was used with another request"),
        (status = 429, body = Problem), (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub async fn create_call(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::CallsWrite)?;
    let (ingress, tenant) = lead_context(&state, &principal)?;
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    let key = idempotency_key(&headers)?;
    let snapshot = ingress.directory.tenant(tenant).await?;
    ingress.admit(tenant, snapshot.as_deref())?;
    let mut lead = normalize::api_call(&body).map_err(|e| normalize_error(&e))?;
    if let Some(key) = &key {
        lead = lead.with_source_event_id(key);
    }

    let Some(key) = key else {
        let event = lead.into_event(TenantKey::TenantId(tenant), Utc::now());
        let accepted = publish_lead(&ingress.bus, tenant, event).await?;
        return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
    };

    let digest = request_digest("POST", "/v1/calls", &body);
    let now = Utc::now();
    let lock = chrono::Duration::seconds(
        i64::try_from(ingress.settings.idempotency_lock_secs).unwrap_or(60),
    );
    let reservation = {
        let mut tx = state.store.begin_tenant(tenant).await?;
        let reservation =
            idempotency_keys::reserve(&mut tx, tenant, &key, &digest, now, now + lock).await?;
        tx.commit().await?;
        reservation
    };
    match reservation {
        Reservation::Reserved => {}
        Reservation::Completed {
            status_code,
            response,
        } => {
            let status = StatusCode::from_u16(status_code).unwrap_or(StatusCode::ACCEPTED);
            let mut response = (status, Json(response)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Reservation::InFlight => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in flight; retry later".to_owned(),
            ));
        }
        Reservation::Mismatch => {
            return Err(ApiError::Unprocessable(
                "this Idempotency-Key was used with a different request".to_owned(),
            ));
        }
    }

    let event = lead.into_event(TenantKey::TenantId(tenant), now);
    match publish_lead(&ingress.bus, tenant, event).await {
        Ok(accepted) => {
            let body = serde_json::to_value(&accepted).map_err(|_| ApiError::Internal)?;
            let mut tx = state.store.begin_tenant(tenant).await?;
            idempotency_keys::complete(&mut tx, tenant, &key, 202, &body).await?;
            tx.commit().await?;
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(error) => {
            // Nothing was published: free the key so the client's retry runs again. If this
            // fails too, the lock expires after `idempotency_lock_secs`.
            if let Ok(mut tx) = state.store.begin_tenant(tenant).await
                && idempotency_keys::release(&mut tx, tenant, &key)
                    .await
                    .is_ok()
                && let Err(release) = tx.commit().await
            {
                tracing::warn!(%release, "idempotency key not released; it expires on its own");
            }
            Err(error)
        }
    }
}

/// One lead's answer in a bulk upload.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BulkLeadResult {
    /// Position in the upload, from 0 (CSV: the data row, header excluded).
    pub index: usize,
    /// `accepted`, `rejected` (fix the lead) or `unavailable` (send it again later).
    pub status: &'static str,
    /// The `lead.received` event id, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The dedupe key, when accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
    /// Why it was not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a bulk upload (as one JSON document; with `Accept: application/x-ndjson`,
/// the same results stream as one line per lead, then a summary line).
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// Leads accepted (published).
    pub accepted: usize,
    /// Leads rejected with a reason.
    pub rejected: usize,
    /// Leads not published because NATS was unavailable; send them again.
    pub unavailable: usize,
    /// Every lead's answer, in upload order.
    pub results: Vec<BulkLeadResult>,
}

impl BulkResult {
    fn of(results: Vec<BulkLeadResult>) -> Self {
        let mut totals = Totals::default();
        results.iter().for_each(|result| totals.add(result));
        Self {
            accepted: totals.accepted,
            rejected: totals.rejected,
            unavailable: totals.unavailable,
            results,
        }
    }
}

/// How many leads of an upload got each answer (the NDJSON summary line).
#[derive(Debug, Default, Serialize)]
struct Totals {
    accepted: usize,
    rejected: usize,
    unavailable: usize,
}

impl Totals {
    fn add(&mut self, result: &BulkLeadResult) {
        match result.status {
            "accepted" => self.accepted += 1,
            "rejected" => self.rejected += 1,
            _ => self.unavailable += 1,
        }
    }
}

/// Leads published per pipelined batch.
const BULK_BATCH: usize = 500;

/// Uploads leads for a campaign: a JSON array of call requests, or CSV (`text/csv`) whose
/// header names the fields (`phone`, `first_name`, …; other columns become custom fields).
///
/// The body is parsed as it arrives and validated whole before anything is published (a
/// malformed document is one 400). Leads are then published in pipelined batches of 500;
/// with `Accept: application/x-ndjson` the answer streams one line per lead as its batch is
/// acknowledged, then a summary line.
#[utoipa::path(post, path = "/v1/campaigns/{campaign_id}/leads", tag = "leads",
    params(("campaign_id" = String, Path, description = "campaign id (1-100 letters, digits, `-`, `_`)")),
    request_body(content = Vec<CallRequest>, content_type = "application/json", description = "or text/csv"),
    responses(
        (status = 200, body = BulkResult, description = "every lead answered individually"),
        (status = 400, body = Problem, description = "malformed JSON or CSV, naming where"),
        (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 429, body = Problem), (status = 503, body = Problem)),
    security(("api_key" = [])))]
pub async fn bulk_leads(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(campaign_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    principal.require(Scope::CallsWrite)?;
    let (ingress, tenant) = lead_context(&state, &principal)?;
    let valid_campaign = (1..=100).contains(&campaign_id.len())
        && campaign_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !valid_campaign {
        return Err(ApiError::NotFound);
    }
    let max_bytes = ingress.settings.bulk_max_body_bytes;
    refuse_declared_over(&headers, max_bytes)?;
    let snapshot = ingress.directory.tenant(tenant).await?;
    ingress.admit(tenant, snapshot.as_deref())?;
    if !ingress.bus.is_connected() {
        return Err(ApiError::Unavailable);
    }
    let format = match media_type(&headers, header::CONTENT_TYPE).as_deref() {
        Some("application/json") | None => Format::Json,
        Some("text/csv") => Format::Csv,
        Some(_) => return Err(ApiError::UnsupportedMediaType),
    };
    let items = read_items(format, body, max_bytes, ingress.settings.bulk_max_leads).await?;

    let received_at = Utc::now();
    let mut answers: Vec<(BulkLeadResult, Option<BusMessage>)> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let answer = match item.and_then(|request| bulk_lead(request, &campaign_id)) {
            Ok(lead) => {
                let event = lead.into_event(TenantKey::TenantId(tenant), received_at);
                let dedupe_key = event.dedupe_key.clone();
                let (event_id, message) = lead_message(tenant, LeadSource::Bulk.as_str(), event)?;
                let result = BulkLeadResult {
                    index,
                    status: "accepted",
                    event_id: Some(event_id.to_string()),
                    dedupe_key: Some(dedupe_key),
                    reason: None,
                };
                (result, Some(message))
            }
            Err(reason) => {
                let result = BulkLeadResult {
                    index,
                    status: "rejected",
                    event_id: None,
                    dedupe_key: None,
                    reason: Some(reason),
                };
                (result, None)
            }
        };
        answers.push(answer);
    }

    if media_type(&headers, header::ACCEPT).as_deref() == Some("application/x-ndjson") {
        return Ok(stream_answers(ingress, answers));
    }
    let mut results = Vec::with_capacity(answers.len());
    for mut chunk in chunks(answers) {
        publish_chunk(&ingress, &mut chunk).await;
        results.extend(chunk.into_iter().map(|(result, _)| result));
    }
    let answer = BulkResult::of(results);
    if answer.accepted == 0 && answer.unavailable > 0 {
        return Err(ApiError::Unavailable);
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}

/// Splits answers into publishing batches of [`BULK_BATCH`], in upload order.
fn chunks(
    answers: Vec<(BulkLeadResult, Option<BusMessage>)>,
) -> Vec<Vec<(BulkLeadResult, Option<BusMessage>)>> {
    let mut chunks = Vec::new();
    let mut answers = answers.into_iter().peekable();
    while answers.peek().is_some() {
        chunks.push(answers.by_ref().take(BULK_BATCH).collect());
    }
    chunks
}

/// Publishes a batch's accepted leads pipelined; a lead without a PubAck becomes
/// `unavailable` (send it again).
async fn publish_chunk(ingress: &Ingress, chunk: &mut [(BulkLeadResult, Option<BusMessage>)]) {
    let messages: Vec<BusMessage> = chunk
        .iter()
        .filter_map(|(_, message)| message.clone())
        .collect();
    let mut outcomes = publish_messages(&ingress.bus, &messages).await.into_iter();
    for (result, message) in chunk.iter_mut() {
        if message.take().is_some() && outcomes.next().is_some_and(|outcome| outcome.is_err()) {
            result.status = "unavailable";
            result.event_id = None;
            result.reason = Some("the bus was unavailable; send this lead again".to_owned());
        }
    }
}

/// Answers as NDJSON while publishing: one line per lead as its batch gets its PubAcks, then
/// a summary line `{"accepted": …, "rejected": …, "unavailable": …}`.
fn stream_answers(
    ingress: Arc<Ingress>,
    answers: Vec<(BulkLeadResult, Option<BusMessage>)>,
) -> Response {
    let (lines, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut totals = Totals::default();
        for mut chunk in chunks(answers) {
            publish_chunk(&ingress, &mut chunk).await;
            let mut text = String::new();
            for (result, _) in &chunk {
                totals.add(result);
                text.push_str(&serde_json::to_string(result).unwrap_or_default());
                text.push('\n');
            }
            // A client that went away stops the answer, not the publishing: every lead of
            // the upload is still published (and deduplicated if it is sent again).
            lines.send(Bytes::from(text)).await.ok();
        }
        let summary = serde_json::to_string(&totals).unwrap_or_default();
        lines.send(Bytes::from(format!("{summary}\n"))).await.ok();
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), receiver))
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The media type of a header (`text/csv; charset=utf-8` → `text/csv`), lower-cased.
fn media_type(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// Reads one bulk item as a call request for `campaign_id`; a rejection reason otherwise.
fn bulk_lead(request: CallRequest, campaign_id: &str) -> Result<NormalizedLead, String> {
    let request = CallRequest {
        campaign_id: Some(campaign_id.to_owned()),
        ..request
    };
    let lead = request.into_lead().with_source(LeadSource::Bulk);
    if lead.phone_raw.is_none() {
        return Err("missing `phone`".to_owned());
    }
    Ok(lead)
}

/// The ingress state and the key's tenant, or why the request cannot be served.
fn lead_context(
    state: &AppState,
    principal: &Principal,
) -> Result<(Arc<Ingress>, TenantId), ApiError> {
    let Some(tenant) = principal.tenant() else {
        return Err(ApiError::Forbidden(
            "leads are requested with a client's api key, not an operator key".to_owned(),
        ));
    };
    let ingress = state.ingress.clone().ok_or(ApiError::Unavailable)?;
    Ok((ingress, tenant))
}

/// Reads `Idempotency-Key`: 1-255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|text| (1..=MAX_IDEMPOTENCY_KEY).contains(&text.len()))
        .filter(|text| text.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`Idempotency-Key` must be 1-{MAX_IDEMPOTENCY_KEY} visible ascii characters"
            ))
        })?;
    Ok(Some(text.to_owned()))
}

/// SHA-256 of the request, to tell "the same request again" from "another request".
fn request_digest(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    crate::hex::encode(&hasher.finalize())
}
