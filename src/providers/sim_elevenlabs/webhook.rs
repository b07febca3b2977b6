//! Post-call webhooks (B11): `post_call_transcription` with the conversation in the B10 shape,
//! signed `ElevenLabs-Signature: t=<unix>,v0=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{ElevenLabsSimState, SimWebhookDelivery};

/// Returns the `ElevenLabs-Signature` value of `body` sent at `timestamp` (unix seconds).
#[must_use]
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("hmac takes any key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    let digest = crate::hex::encode(&mac.finalize().into_bytes());
    format!("t={timestamp},v0={digest}")
}

/// Posts the `post_call_transcription` of conversation `index`, if a webhook is configured,
/// and records the attempt.
pub(super) async fn deliver(state: &ElevenLabsSimState, index: usize) {
    let Some(webhook) = state.webhook.clone() else {
        return;
    };
    let Some(conversation) = state.book().conversations.get(index).cloned() else {
        return;
    };
    let timestamp = chrono::Utc::now().timestamp();
    let body = json!({
        "type": "post_call_transcription",
        "event_timestamp": timestamp,
        "data": super::rest::details(&conversation),
    })
    .to_string();
    let signature = signature_header(webhook.secret.expose(), timestamp, &body);
    let answer = state
        .http
        .post(&webhook.url)
        .header("content-type", "application/json")
        .header("ElevenLabs-Signature", &signature)
        .body(body.clone())
        .send()
        .await;
    let status = match answer {
        Ok(response) => Some(response.status().as_u16()),
        Err(err) => {
            tracing::warn!(error = %err.without_url(), "post-call webhook failed");
            None
        }
    };
    state.book().webhooks.push(SimWebhookDelivery {
        conversation_id: conversation.conversation_id,
        body,
        signature,
        status,
    });
}
