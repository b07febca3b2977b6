//! `conversation_summaries`: one summary per answered attempt, and what the summarize stage
//! reads to write it (the conversation, its turns and tool calls, bookings, callbacks).
//!
//! Runtime-checked queries (`sqlx::query_as`), like crm_sync's facts: they read several
//! tables the stage owns none of, and the row shapes are checked by the integration tests.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::ids::{AttemptId, CallId, TenantId};
use crate::summary::{Facts, Role, Summary, ToolUse, Turn};

/// A conversation as the summarize stage needs it.
#[derive(Debug)]
pub struct Conversation {
    /// The call.
    pub call: CallId,
    /// `waiting`, `active` or `ended`.
    pub state: String,
    /// The voice engine (`elevenlabs`, `local`).
    pub engine: String,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The provider's post-call analysis, once merged by post_call.
    pub provider_analysis: Option<Value>,
    /// Whether the provider's post-call report was merged.
    pub provider_reported: bool,
}

/// Reads the conversation of `attempt`, if there is one.
pub async fn conversation(
    tx: &mut PgConnection,
    tenant: TenantId,
    attempt: AttemptId,
) -> Result<Option<Conversation>, sqlx::Error> {
    let row: Option<ConversationRow> = sqlx::query_as(
        "SELECT call_id, state, engine, ended_at, provider_analysis, \
                provider_reported_at IS NOT NULL AS provider_reported \
         FROM conversations WHERE tenant_id = $1 AND attempt_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(attempt.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|row| Conversation {
        call: CallId::from_uuid(row.call_id),
        state: row.state,
        engine: row.engine,
        ended_at: row.ended_at,
        provider_analysis: row.provider_analysis,
        provider_reported: row.provider_reported,
    }))
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    call_id: uuid::Uuid,
    state: String,
    engine: String,
    ended_at: Option<DateTime<Utc>>,
    provider_analysis: Option<Value>,
    provider_reported: bool,
}

/// Reads what the summary of `attempt` (of `call`) is computed from.
pub async fn facts(
    tx: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
    attempt: AttemptId,
) -> Result<Facts, sqlx::Error> {
    let turns = super::conversations::turns(tx, attempt).await?;
    let tools: Vec<(String, bool)> = sqlx::query_as(
        "SELECT name, is_error FROM tool_invocations \
         WHERE tenant_id = $1 AND attempt_id = $2 ORDER BY started_at, id",
    )
    .bind(tenant.as_uuid())
    .bind(attempt.as_uuid())
    .fetch_all(&mut *tx)
    .await?;
    // Bookings belong to the call (a later attempt may not re-book), callbacks to the
    // attempt that asked (the tool derives the job from it and records it as the source).
    let (booked, callback_scheduled, machine_answered, transferred): (bool, bool, bool, bool) =
        sqlx::query_as(
            "SELECT \
               EXISTS (SELECT 1 FROM appointments \
                       WHERE tenant_id = $1 AND call_id = $2 AND status = 'booked'), \
               EXISTS (SELECT 1 FROM scheduled_jobs \
                       WHERE tenant_id = $1 AND kind = 'callback' AND source_event_id = $3), \
               EXISTS (SELECT 1 FROM call_attempts WHERE tenant_id = $1 AND id = $3 \
                       AND (answered_by LIKE 'machine%' OR answered_by = 'fax')), \
               EXISTS (SELECT 1 FROM conversations WHERE tenant_id = $1 AND attempt_id = $3 \
                       AND end_reason = 'transferred')",
        )
        .bind(tenant.as_uuid())
        .bind(call.as_uuid())
        .bind(attempt.as_uuid())
        .fetch_one(&mut *tx)
        .await?;
    Ok(Facts {
        turns: turns
            .into_iter()
            .map(|(role, text)| Turn {
                role: Role::from_stored(&role),
                text,
            })
            .collect(),
        tools: tools
            .into_iter()
            .map(|(name, is_error)| ToolUse { name, is_error })
            .collect(),
        booked,
        callback_scheduled,
        machine_answered,
        transferred,
    })
}

/// Stores the summary of `attempt`; an identical summary already stored is left alone (its
/// `updated_at` too), so a replay changes nothing.
pub async fn upsert(
    tx: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
    attempt: AttemptId,
    summary: &Summary,
) -> Result<(), sqlx::Error> {
    let provider = summary.provider.as_ref();
    let empty = || Value::Object(serde_json::Map::new());
    sqlx::query(
        "INSERT INTO conversation_summaries \
           (attempt_id, call_id, tenant_id, summary, own_summary, provider_summary, source, \
            outcome, outcome_reason, sentiment, sentiment_score, call_successful, key_points, \
            data_collection, evaluation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (attempt_id) DO UPDATE SET \
           summary = excluded.summary, own_summary = excluded.own_summary, \
           provider_summary = excluded.provider_summary, source = excluded.source, \
           outcome = excluded.outcome, outcome_reason = excluded.outcome_reason, \
           sentiment = excluded.sentiment, sentiment_score = excluded.sentiment_score, \
           call_successful = excluded.call_successful, key_points = excluded.key_points, \
           data_collection = excluded.data_collection, evaluation = excluded.evaluation \
         WHERE (conversation_summaries.summary, conversation_summaries.own_summary, \
                conversation_summaries.provider_summary, conversation_summaries.source, \
                conversation_summaries.outcome, conversation_summaries.outcome_reason, \
                conversation_summaries.sentiment, conversation_summaries.sentiment_score, \
                conversation_summaries.call_successful, conversation_summaries.key_points, \
                conversation_summaries.data_collection, conversation_summaries.evaluation) \
           IS DISTINCT FROM \
               (excluded.summary, excluded.own_summary, excluded.provider_summary, \
                excluded.source, excluded.outcome, excluded.outcome_reason, excluded.sentiment, \
                excluded.sentiment_score, excluded.call_successful, excluded.key_points, \
                excluded.data_collection, excluded.evaluation)",
    )
    .bind(attempt.as_uuid())
    .bind(call.as_uuid())
    .bind(tenant.as_uuid())
    .bind(&summary.summary)
    .bind(&summary.own.text)
    .bind(provider.and_then(|provider| provider.summary.as_deref()))
    .bind(summary.own.source.as_str())
    .bind(summary.outcome.as_str())
    .bind(summary.outcome_reason)
    .bind(summary.sentiment.as_str())
    .bind(summary.sentiment_score)
    .bind(provider.and_then(|provider| provider.call_successful.as_deref()))
    .bind(&summary.own.key_points)
    .bind(provider.map_or_else(empty, |provider| provider.data_collection.clone()))
    .bind(provider.map_or_else(empty, |provider| provider.evaluation.clone()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
