//! Read models of conversations for the management API: each answered attempt's
//! conversation with its transcript, tool calls and recording (never the recording's path).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::{CallId, TenantId};

/// One transcript turn.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TurnView {
    /// Position in the conversation, from 1.
    pub seq: i32,
    /// `agent` or `user`.
    pub role: String,
    /// What was said.
    pub text: String,
    /// When it was stored.
    pub spoken_at: DateTime<Utc>,
}

/// One agent tool call.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ToolCallView {
    /// The tool.
    pub name: String,
    /// Its parameters, as the agent gave them.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// What the agent was told (JSON text).
    pub result: String,
    /// Whether it failed.
    pub is_error: bool,
    /// How long it took.
    pub latency_ms: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// A call recording's facts.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RecordingView {
    /// `recording`, `complete` or `truncated`.
    pub state: String,
    /// Length, once complete.
    pub duration_secs: Option<f64>,
    /// The format (`wav-aes256gcm-stream-v1`: sealed at rest).
    pub format: String,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The conversation of one attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    /// The attempt.
    pub attempt_id: Uuid,
    /// `waiting`, `active` or `ended`.
    pub state: String,
    /// How it ended.
    pub end_reason: Option<String>,
    /// When it opened.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Times another worker or engine session took over.
    pub resumes: i32,
    /// The voice engine's conversation ids.
    pub engine_conversation_ids: Vec<String>,
    /// The voice provider's analysis (summary, success), once reported.
    #[schema(value_type = Option<Object>)]
    pub provider_analysis: Option<serde_json::Value>,
    /// The transcript.
    pub turns: Vec<TurnView>,
    /// The agent's tool calls.
    pub tool_calls: Vec<ToolCallView>,
    /// The recording, when the call was recorded.
    pub recording: Option<RecordingView>,
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    attempt_id: Uuid,
    state: String,
    end_reason: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    resumes: i32,
    engine_conversation_ids: Vec<String>,
    provider_analysis: Option<serde_json::Value>,
}

/// Returns the conversations of one of the tenant's calls, oldest attempt first.
pub async fn of_call(
    conn: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
) -> Result<Vec<ConversationView>, sqlx::Error> {
    let rows: Vec<ConversationRow> = sqlx::query_as(
        "SELECT attempt_id, state, end_reason, started_at, ended_at, resumes, \
                engine_conversation_ids, provider_analysis \
         FROM conversations WHERE tenant_id = $1 AND call_id = $2 ORDER BY started_at",
    )
    .bind(tenant.as_uuid())
    .bind(call.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let turns = sqlx::query_as(
            "SELECT seq, role, text, spoken_at FROM conversation_turns \
             WHERE attempt_id = $1 ORDER BY seq",
        )
        .bind(row.attempt_id)
        .fetch_all(&mut *conn)
        .await?;
        let tool_calls = sqlx::query_as(
            "SELECT name, parameters, result, is_error, latency_ms, started_at \
             FROM tool_invocations WHERE attempt_id = $1 ORDER BY id",
        )
        .bind(row.attempt_id)
        .fetch_all(&mut *conn)
        .await?;
        let recording = sqlx::query_as(
            "SELECT state, duration_secs, format, completed_at FROM call_recordings \
             WHERE attempt_id = $1",
        )
        .bind(row.attempt_id)
        .fetch_optional(&mut *conn)
        .await?;
        views.push(ConversationView {
            attempt_id: row.attempt_id,
            state: row.state,
            end_reason: row.end_reason,
            started_at: row.started_at,
            ended_at: row.ended_at,
            resumes: row.resumes,
            engine_conversation_ids: row.engine_conversation_ids,
            provider_analysis: row.provider_analysis,
            turns,
            tool_calls,
            recording,
        });
    }
    Ok(views)
}
