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
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Problem};
use crate::events::lead::{LeadSource, TenantKey};
use crate::ids::TenantId;
use crate::ingress::Ingress;
use crate::ingress::limits::read_body;
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

/// The answer to a bulk upload.
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

/// Leads published per pipelined batch.
const BULK_BATCH: usize = 500;

/// Uploads leads for a campaign: a JSON array of call requests, or CSV (`text/csv`) whose
/// header names the fields (`phone`, `first_name`, …; other columns become custom fields).
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
    let body = read_body(&headers, body, ingress.settings.bulk_max_body_bytes).await?;
    let snapshot = ingress.directory.tenant(tenant).await?;
    ingress.admit(tenant, snapshot.as_deref())?;
    if !ingress.bus.is_connected() {
        return Err(ApiError::Unavailable);
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let items = match media.as_str() {
        "application/json" => super::bulk::json_items(&body)?,
        "text/csv" => super::bulk::csv_items(&body)?,
        _ => return Err(ApiError::UnsupportedMediaType),
    };
    if items.len() > ingress.settings.bulk_max_leads {
        return Err(ApiError::PayloadTooLarge);
    }

    let received_at = Utc::now();
    let mut results: Vec<BulkLeadResult> = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let lead = item.and_then(|request| bulk_lead(request, &campaign_id));
        match lead {
            Ok(lead) => {
                let event = lead.into_event(TenantKey::TenantId(tenant), received_at);
                let dedupe_key = event.dedupe_key.clone();
                let (event_id, message) = lead_message(tenant, LeadSource::Bulk.as_str(), event)?;
                results.push(BulkLeadResult {
                    index,
                    status: "accepted",
                    event_id: Some(event_id.to_string()),
                    dedupe_key: Some(dedupe_key),
                    reason: None,
                });
                pending.push((index, message));
            }
            Err(reason) => results.push(BulkLeadResult {
                index,
                status: "rejected",
                event_id: None,
                dedupe_key: None,
                reason: Some(reason),
            }),
        }
    }
    for batch in pending.chunks(BULK_BATCH) {
        let messages: Vec<_> = batch.iter().map(|(_, message)| message.clone()).collect();
        for ((index, _), outcome) in batch
            .iter()
            .zip(publish_messages(&ingress.bus, &messages).await)
        {
            if outcome.is_err() {
                let result = &mut results[*index];
                result.status = "unavailable";
                result.event_id = None;
                result.reason = Some("the bus was unavailable; send this lead again".to_owned());
            }
        }
    }
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    let answer = BulkResult {
        accepted: count("accepted"),
        rejected: count("rejected"),
        unavailable: count("unavailable"),
        results,
    };
    if answer.accepted == 0 && answer.unavailable > 0 {
        return Err(ApiError::Unavailable);
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
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
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
