//! The webhook routes: authenticate, limit, normalize, publish, answer.
//!
//! | Route | Sender | Authentication |
//! |---|---|---|
//! | `POST /webhooks/gohighlevel` | HighLevel marketplace app (every location) | `x-ghl-signature` (Ed25519) or `x-wh-signature` (RSA) over the body, and the body's `timestamp` within 5 minutes |
//! | `POST /webhooks/{tenant}/gohighlevel/workflow[/{secret}]` | HighLevel workflow "Webhook" / "Custom Webhook" action | the tenant's `gohighlevel.webhook_secret`, in the path or `x-webhook-secret` |
//! | `POST /webhooks/{tenant}/zoho/workflow[/{secret}]` | Zoho CRM workflow webhook (JSON or form) | the tenant's `zoho.webhook_secret`, in the path or `x-webhook-secret` |
//! | `POST /webhooks/{tenant}/zoho/notifications` | Zoho CRM notification channel | the body's `token` against `zoho.channel_token` |
//! | `POST /webhooks/{tenant}/custom` | the tenant's own system | Standard Webhooks with `custom.webhook_secret` (and `…_previous` during a rotation) |
//!
//! `{tenant}` is the client id. Order of work: read the body (413 over the limit) →
//! authenticate (401; 404 for an unknown tenant, after the same verification against a dummy
//! secret, and both no sooner than `ingress.auth_failure_floor_ms`) → rate limit (429) →
//! normalize (400 malformed, 415 content type, 422 unusable content) → publish and await the
//! PubAck (503 with `Retry-After` when NATS is down) → 202.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::Ingress;
use super::limits::{auth_failure, read_body};
use super::publish::{lead_message, publish_lead, publish_messages};
use super::verify::{self, StandardWebhooks, VerifyError, verify_shared_secret};
use crate::api::error::ApiError;
use crate::events::lead::TenantKey;
use crate::ids::TenantId;
use crate::normalize::{self, NormalizeError, NormalizedLead};
use crate::secret::Secret;
use crate::tenancy::directory::TenantSnapshot;

/// Header that may carry a tenant's shared webhook secret.
pub const SECRET_HEADER: &str = "x-webhook-secret";

/// What an unknown tenant's request is verified against, so it costs what a known one does.
static DUMMY_SECRETS: LazyLock<Vec<Secret<String>>> =
    LazyLock::new(|| vec![Secret::new("unknown-tenant-dummy-secret".to_owned())]);
static DUMMY_STANDARD: LazyLock<StandardWebhooks> = LazyLock::new(|| {
    StandardWebhooks::new(&[Secret::new(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
    )])
    .expect("a valid dummy secret")
});

/// `POST /webhooks/gohighlevel`: HighLevel marketplace-app events of every location.
pub async fn gohighlevel_app(
    State(ingress): State<Arc<Ingress>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    let now = Utc::now();
    let signed = ingress
        .gohighlevel
        .verify(&headers, &body)
        .and_then(|_| signed_timestamp(&body).and_then(|sent| verify::check_freshness(sent, now)));
    if let Err(error) = signed {
        return Err(unauthorized(&ingress, arrived, &error).await);
    }
    let lead = match normalize::gohighlevel_app(&body) {
        Ok(lead) => lead,
        Err(NormalizeError::NotALead { event_type }) => return Ok(ignored(&event_type)),
        Err(error) => return Err(normalize_error(&error)),
    };
    let Some(TenantKey::GohighlevelLocation(location)) = lead.tenant_hint.clone() else {
        return Err(ApiError::Unprocessable("missing `locationId`".to_owned()));
    };
    // The tenant is looked up here only to file the lead under it (its subject, rate limit and
    // dead letters); resolve_tenant decides for leads still under the platform tenant.
    let tenant = ingress
        .directory
        .by_gohighlevel_location(&location)
        .await?
        .unwrap_or(TenantId::PLATFORM);
    let snapshot = match tenant {
        TenantId::PLATFORM => None,
        tenant => ingress.directory.tenant(tenant).await?,
    };
    ingress.admit(tenant, snapshot.as_deref())?;
    let event = lead.into_event(TenantKey::GohighlevelLocation(location), now);
    accepted(publish_lead(&ingress.bus, tenant, event).await?)
}

/// Path of a workflow webhook: the tenant, and the secret when it travels in the path.
#[derive(Debug, serde::Deserialize)]
pub struct WorkflowPath {
    tenant: String,
    /// Absent on the route that takes the secret from `x-webhook-secret`.
    secret: Option<String>,
}

/// The unsigned workflow webhooks, authenticated by a shared secret.
#[derive(Clone, Copy, Debug)]
enum Workflow {
    GoHighLevel,
    Zoho,
}

impl Workflow {
    fn secrets(self, snapshot: &TenantSnapshot) -> &[Secret<String>] {
        match self {
            Self::GoHighLevel => &snapshot.secrets.gohighlevel,
            Self::Zoho => &snapshot.secrets.zoho,
        }
    }

    fn normalize(self, body: &[u8], headers: &HeaderMap) -> Result<NormalizedLead, NormalizeError> {
        match self {
            Self::GoHighLevel => normalize::gohighlevel_workflow(body),
            Self::Zoho => {
                let content_type = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok());
                normalize::zoho_workflow(body, content_type)
            }
        }
    }
}

/// `POST /webhooks/{tenant}/gohighlevel/workflow[/{secret}]`.
pub async fn gohighlevel_workflow(
    State(ingress): State<Arc<Ingress>>,
    Path(path): Path<WorkflowPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    workflow(Workflow::GoHighLevel, ingress, path, headers, body).await
}

/// `POST /webhooks/{tenant}/zoho/workflow[/{secret}]`.
pub async fn zoho_workflow(
    State(ingress): State<Arc<Ingress>>,
    Path(path): Path<WorkflowPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    workflow(Workflow::Zoho, ingress, path, headers, body).await
}

/// A workflow webhook: the secret from the path, else from `x-webhook-secret`.
async fn workflow(
    kind: Workflow,
    ingress: Arc<Ingress>,
    path: WorkflowPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let secret = path.secret.unwrap_or_else(|| header_secret(&headers));
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    let snapshot = authenticate(&ingress, &path.tenant, arrived, |snapshot| match snapshot {
        Some(snapshot) => verify_shared_secret(kind.secrets(snapshot), &secret),
        None => verify_shared_secret(&DUMMY_SECRETS, &secret),
    })
    .await?;
    ingress.admit(snapshot.id, Some(&snapshot))?;
    let lead = kind
        .normalize(&body, &headers)
        .map_err(|e| normalize_error(&e))?;
    publish_for(&ingress, &snapshot, lead).await
}

/// `POST /webhooks/{tenant}/zoho/notifications`: a watch channel's callback; `token` in the
/// body authenticates it. One lead per inserted or updated record, carrying only its id.
pub async fn zoho_notifications(
    State(ingress): State<Arc<Ingress>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    // The token is inside the body: a body that does not parse has none, and fails
    // authentication like a wrong token (or 404 for an unknown tenant).
    let parsed = normalize::zoho_notification(&body);
    let (token, channel_id) = match &parsed {
        Ok(notification) => (
            notification
                .token
                .as_ref()
                .map(|token| token.expose().clone())
                .unwrap_or_default(),
            notification.channel_id.clone(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let snapshot = authenticate(&ingress, &tenant, arrived, |snapshot| match snapshot {
        Some(snapshot) => {
            verify_shared_secret(&snapshot.secrets.zoho_channel, &token)?;
            match snapshot
                .configuration
                .providers
                .get("zoho")
                .and_then(|zoho| zoho.get("channel_id"))
                .and_then(|id| id.as_str())
            {
                Some(channel) if channel != channel_id => Err(VerifyError::BadSecret),
                _ => Ok(()),
            }
        }
        None => verify_shared_secret(&DUMMY_SECRETS, &token),
    })
    .await?;
    let notification = parsed.map_err(|e| normalize_error(&e))?;
    ingress.admit(snapshot.id, Some(&snapshot))?;
    let now = Utc::now();
    let leads = notification.into_leads();
    if leads.is_empty() {
        return Ok(ignored(&format!(
            "{}.{}",
            notification.module, notification.operation
        )));
    }
    let mut messages = Vec::with_capacity(leads.len());
    let mut answers = Vec::with_capacity(leads.len());
    for lead in leads {
        let event = lead.into_event(TenantKey::TenantId(snapshot.id), now);
        let dedupe_key = event.dedupe_key.clone();
        let (event_id, message) = lead_message(snapshot.id, event.source.as_str(), event)?;
        answers.push(json!({"event_id": event_id, "dedupe_key": dedupe_key}));
        messages.push(message);
    }
    for result in publish_messages(&ingress.bus, &messages).await {
        result?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "accepted", "leads": answers})),
    )
        .into_response())
}

/// `POST /webhooks/{tenant}/custom`: a tenant's own system, per Standard Webhooks.
pub async fn custom(
    State(ingress): State<Arc<Ingress>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let body = read_body(&headers, body, ingress.settings.max_body_bytes).await?;
    let now = Utc::now();
    let snapshot = authenticate(&ingress, &tenant, arrived, |snapshot| match snapshot {
        Some(snapshot) => match &snapshot.secrets.custom {
            Some(verifier) => verifier.verify(&headers, &body, now),
            None => {
                // Same work as a check, then the failure.
                DUMMY_STANDARD
                    .verify(&headers, &body, now)
                    .and(Err(VerifyError::BadSignature))
            }
        },
        None => DUMMY_STANDARD
            .verify(&headers, &body, now)
            .and(Err(VerifyError::BadSignature)),
    })
    .await?;
    ingress.admit(snapshot.id, Some(&snapshot))?;
    let Some(mapping) = &snapshot.field_mapping else {
        return Err(ApiError::Unprocessable(
            "the client has no field mapping for custom webhooks \
             (configuration `providers.custom.field_mapping`)"
                .to_owned(),
        ));
    };
    let mut lead = normalize::custom(&body, mapping).map_err(|e| normalize_error(&e))?;
    if lead.source_event_id.is_none() {
        // Standard Webhooks: `webhook-id` is the same for every retry of one delivery.
        let webhook_id = headers
            .get(verify::WEBHOOK_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        lead = lead.with_source_event_id(webhook_id);
    }
    publish_for(&ingress, &snapshot, lead).await
}

/// Finds the tenant named in the path and runs `check` on it; an unknown tenant runs `check`
/// on `None` (a dummy verification) and is 404. Failures wait for the floor.
pub(super) async fn authenticate(
    ingress: &Ingress,
    tenant: &str,
    arrived: Instant,
    check: impl FnOnce(Option<&TenantSnapshot>) -> Result<(), VerifyError>,
) -> Result<Arc<TenantSnapshot>, ApiError> {
    let snapshot = match TenantId::parse(tenant) {
        Ok(id) if id != TenantId::PLATFORM => ingress.directory.tenant(id).await?,
        _ => None,
    };
    let floor = ingress.auth_failure_floor();
    match snapshot {
        None => {
            // Verified against a dummy only to spend the same time; the outcome is moot.
            check(None).ok();
            Err(auth_failure(arrived, floor, ApiError::NotFound).await)
        }
        Some(snapshot) => match check(Some(&snapshot)) {
            Ok(()) => Ok(snapshot),
            Err(error) => Err(unauthorized(ingress, arrived, &error).await),
        },
    }
}

async fn unauthorized(ingress: &Ingress, arrived: Instant, error: &VerifyError) -> ApiError {
    tracing::info!(reason = %error, "webhook refused");
    let floor = ingress.auth_failure_floor();
    auth_failure(
        arrived,
        floor,
        ApiError::WebhookUnauthorized(error.to_string()),
    )
    .await
}

/// Completes the lead for an authenticated tenant and publishes it.
async fn publish_for(
    ingress: &Ingress,
    snapshot: &TenantSnapshot,
    lead: NormalizedLead,
) -> Result<Response, ApiError> {
    let event = lead.into_event(TenantKey::TenantId(snapshot.id), Utc::now());
    accepted(publish_lead(&ingress.bus, snapshot.id, event).await?)
}

fn accepted(accepted: super::publish::Accepted) -> Result<Response, ApiError> {
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// 200 for an authentic event that carries no lead (HighLevel sends every subscribed type).
fn ignored(event_type: &str) -> Response {
    let reason = format!("event `{event_type}` carries no lead");
    (
        StatusCode::OK,
        Json(json!({"status": "ignored", "reason": reason})),
    )
        .into_response()
}

fn header_secret(headers: &HeaderMap) -> String {
    headers
        .get(SECRET_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The body's signed `timestamp` (HighLevel puts the send time in the body, not a header).
fn signed_timestamp(body: &Bytes) -> Result<DateTime<Utc>, VerifyError> {
    let unreadable = VerifyError::BadSignedField("timestamp");
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| unreadable.clone())?;
    let text = value
        .get("timestamp")
        .and_then(|t| t.as_str())
        .ok_or_else(|| unreadable.clone())?;
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| unreadable)
}

/// Maps a normalizer's error to its answer: malformed 400, content type 415, unusable 422.
pub fn normalize_error(error: &NormalizeError) -> ApiError {
    match error {
        NormalizeError::Json { .. }
        | NormalizeError::NotAnObject { .. }
        | NormalizeError::Form { .. } => ApiError::BadRequest(error.to_string()),
        NormalizeError::UnsupportedContentType { .. } => ApiError::UnsupportedMediaType,
        NormalizeError::Missing { .. }
        | NormalizeError::Invalid { .. }
        | NormalizeError::NotALead { .. }
        | NormalizeError::Mapping { .. } => ApiError::Unprocessable(error.to_string()),
    }
}
