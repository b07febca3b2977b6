//! Voice provider webhooks: ElevenLabs' post-call reports.
//!
//! `POST /webhooks/{tenant}/elevenlabs/post-call`: the `ElevenLabs-Signature` HMAC is checked
//! with the tenant's `elevenlabs.webhook_secret` (the previous one too during a rotation) and
//! `t` must be at most 30 minutes old (`verify::elevenlabs`). A verified
//! `post_call_transcription` becomes one `conversation.post_call_reported` on
//! `calls.post_call.<tenant>` (message id from the tenant, conversation and type, so
//! ElevenLabs' retries store once), answered 200 after the PubAck; the `post_call` stage merges
//! it into the conversation. `post_call_audio` (we record ourselves) and
//! `call_initiation_failure` (we place calls ourselves) are acknowledged and not stored.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use tokio::time::Instant;

use super::Ingress;
use super::limits::read_body;
use super::publish::{content_message_id, publish_event};
use super::verify::elevenlabs::ElevenLabsSignature;
use super::webhooks::authenticate;
use crate::api::error::ApiError;
use crate::events::conversation::PostCallReported;

/// The envelope of every ElevenLabs webhook.
#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// `POST /webhooks/{tenant}/elevenlabs/post-call`.
pub async fn elevenlabs_post_call(
    State(ingress): State<Arc<Ingress>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    // Audio deliveries are large (base64 MP3): allow them, then drop them unread.
    let body = read_body(
        &headers,
        body,
        ingress.settings.max_body_bytes.max(32 << 20),
    )
    .await?;
    let now = Utc::now();
    let snapshot = authenticate(&ingress, &tenant, arrived, |snapshot| {
        let secrets = snapshot.map(|snapshot| snapshot.secrets.elevenlabs_webhook.as_slice());
        ElevenLabsSignature::new(secrets.unwrap_or_default())
            .verify(&headers, &body, now)
            .map(drop)
    })
    .await?;
    let delivery: Delivery = serde_json::from_slice(&body)
        .map_err(|error| ApiError::BadRequest(format!("not an ElevenLabs webhook: {error}")))?;
    if delivery.kind != "post_call_transcription" {
        tracing::info!(tenant_id = %snapshot.id, kind = delivery.kind, "elevenlabs webhook acknowledged, not stored");
        return Ok(StatusCode::OK.into_response());
    }
    let text = |key: &str| {
        delivery
            .data
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let Some(conversation_id) = text("conversation_id") else {
        return Err(ApiError::BadRequest(
            "post_call_transcription without data.conversation_id".to_owned(),
        ));
    };
    let field = |key: &str| delivery.data.get(key).cloned().unwrap_or_default();
    let report = PostCallReported {
        provider: "elevenlabs".to_owned(),
        report_type: delivery.kind.clone(),
        conversation_id: conversation_id.clone(),
        transcript: field("transcript"),
        analysis: field("analysis"),
        metadata: field("metadata"),
    };
    let message_id = content_message_id(
        "elevenlabs-post-call",
        &[
            snapshot.id.to_string().as_bytes(),
            conversation_id.as_bytes(),
            delivery.kind.as_bytes(),
        ],
    );
    publish_event(
        &ingress.bus,
        snapshot.id,
        "caller/ingress/elevenlabs",
        report,
        &message_id,
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}
