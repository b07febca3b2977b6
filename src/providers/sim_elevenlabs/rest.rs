//! The REST endpoints: signed URLs (B2) and conversation details (B10).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ElevenLabsSimState, SimConversation};

/// Returns the `{"detail":{"status","message"}}` error ElevenLabs commonly answers.
pub(super) fn detail(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"detail": {"status": code, "message": message}})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    detail(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "Invalid API key",
    )
}

/// `GET /v1/convai/conversation/get-signed-url?agent_id=…` (and `get_signed_url`).
pub(super) async fn signed_url(
    State(state): State<ElevenLabsSimState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !state.authenticated(&headers) {
        return unauthorized();
    }
    let Some(agent_id) = query.get("agent_id") else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{
                "loc": ["query", "agent_id"],
                "msg": "Field required",
                "type": "missing",
            }]})),
        )
            .into_response();
    };
    if !state.agents.contains_key(agent_id) {
        return detail(
            StatusCode::NOT_FOUND,
            "agent_not_found",
            "The agent does not exist",
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1");
    let Ok(mut url) = reqwest::Url::parse(&format!("ws://{host}/v1/convai/conversation")) else {
        return detail(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "The Host header is invalid",
        );
    };
    let signature = state.issue_signature(agent_id);
    url.query_pairs_mut()
        .append_pair("agent_id", agent_id)
        .append_pair("conversation_signature", &signature);
    Json(json!({"signed_url": url.as_str()})).into_response()
}

/// `GET /v1/convai/conversations/{conversation_id}`.
pub(super) async fn get_conversation(
    State(state): State<ElevenLabsSimState>,
    headers: HeaderMap,
    Path(conversation_id): Path<String>,
) -> Response {
    if !state.authenticated(&headers) {
        return unauthorized();
    }
    match state.conversation(&conversation_id) {
        Some(conversation) => Json(details(&conversation)).into_response(),
        None => detail(
            StatusCode::NOT_FOUND,
            "conversation_not_found",
            "The conversation does not exist",
        ),
    }
}

/// `GET /v1/convai/conversations`: every conversation, newest first, one page.
pub(super) async fn list_conversations(
    State(state): State<ElevenLabsSimState>,
    headers: HeaderMap,
) -> Response {
    if !state.authenticated(&headers) {
        return unauthorized();
    }
    let conversations: Vec<Value> = state
        .conversations()
        .iter()
        .rev()
        .map(|conversation| {
            json!({
                "agent_id": conversation.agent_id,
                "agent_name": conversation.agent_id,
                "conversation_id": conversation.conversation_id,
                "start_time_unix_secs": conversation.start_unix_secs,
                "call_duration_secs": duration_secs(conversation),
                "message_count": conversation.transcript.len(),
                "status": status(conversation),
                "call_successful": "success",
            })
        })
        .collect();
    Json(json!({"conversations": conversations, "has_more": false, "next_cursor": null}))
        .into_response()
}

fn duration_secs(conversation: &SimConversation) -> u64 {
    conversation
        .duration
        .unwrap_or_else(|| conversation.started_at.elapsed())
        .as_secs()
}

fn status(conversation: &SimConversation) -> &'static str {
    if conversation.ended.is_some() {
        "done"
    } else {
        "in-progress"
    }
}

/// Returns `conversation` in the `GetConversationResponseModel` shape (B10), which is also
/// the `data` of a `post_call_transcription` webhook (B11).
pub(super) fn details(conversation: &SimConversation) -> Value {
    let transcript: Vec<Value> = conversation
        .transcript
        .iter()
        .map(|turn| {
            let tool_calls = turn.tool_call.as_ref().map(|(id, name, parameters)| {
                json!([{
                    "type": "client",
                    "request_id": id,
                    "tool_name": name,
                    "params_as_json": parameters.to_string(),
                    "tool_has_been_called": true,
                    "tool_details": null,
                }])
            });
            let tool_results = turn.tool_result.as_ref().map(|result| {
                let name = turn.tool_call.as_ref().map(|(_, name, _)| name.clone());
                json!([{
                    "request_id": result.tool_call_id,
                    "tool_name": name,
                    "result_value": result.result,
                    "is_error": result.is_error,
                    "tool_has_been_called": true,
                    "type": "client",
                }])
            });
            json!({
                "role": turn.role,
                "message": turn.message,
                "time_in_call_secs": turn.time_in_call_secs,
                "tool_calls": tool_calls,
                "tool_results": tool_results,
                "feedback": null,
                "interrupted": turn.interrupted,
                "conversation_turn_metrics": null,
            })
        })
        .collect();
    let user_audio = conversation.user_audio_bytes > 0;
    let agent_audio = conversation
        .server_frames
        .iter()
        .any(|frame| frame.starts_with(r#"{"type":"audio""#));
    let termination = match conversation.ended {
        Some(super::SimEnd::AgentEnded) => "end_call tool was called.",
        Some(super::SimEnd::ClientClosed(_)) => "Client disconnected",
        Some(super::SimEnd::Disconnected) => "Connection lost",
        None => "",
    };
    let mut data = json!({
        "agent_id": conversation.agent_id,
        "conversation_id": conversation.conversation_id,
        "status": status(conversation),
        "transcript": transcript,
        "metadata": {
            "start_time_unix_secs": conversation.start_unix_secs,
            "call_duration_secs": duration_secs(conversation),
            "cost_fiat": null,
            "cost": 0,
            "termination_reason": termination,
            "authorization_method": "signed_url",
        },
        "analysis": {
            "evaluation_criteria_results": {},
            "data_collection_results": {},
            "call_successful": "success",
            "transcript_summary": format!(
                "Simulated conversation of {} turns.",
                conversation.transcript.len()
            ),
        },
        "has_audio": user_audio || agent_audio,
        "has_user_audio": user_audio,
        "has_response_audio": agent_audio,
        "has_auxiliary_audio": false,
    });
    if let Some(initiation) = &conversation.initiation {
        let mut body = initiation.clone();
        if let Some(object) = body.as_object_mut() {
            object.remove("type");
            if let Some(user_id) = object.get("user_id").cloned() {
                data["user_id"] = user_id;
            }
        }
        data["conversation_initiation_client_data"] = body;
    }
    data
}
