//! Conversations: opening, leases (claim, heartbeat, release), fenced writes of turns, tool
//! calls and engine ids, the end, and the relay of `conversation.ended`.
//!
//! Every write a session makes carries its `(owner, epoch)`: a worker that lost its lease
//! (it stalled past `lease_until` and another took over) finds its writes refused
//! ([`Fenced`]) and stops, so two workers never both speak for one call.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::{AttemptId, CallId, TenantId};

/// A write was refused: this worker no longer owns the session.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The lease moved to another owner (or the session ended).
    #[error("the session's lease is held by another worker")]
    Fenced,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Who holds a session: the worker and the epoch of its claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The worker's id.
    pub owner: String,
    /// The claim's epoch.
    pub epoch: i32,
}

/// A new conversation.
#[derive(Debug)]
pub struct NewConversation<'a> {
    /// The tenant.
    pub tenant: TenantId,
    /// The call.
    pub call: CallId,
    /// The attempt.
    pub attempt: AttemptId,
    /// The `call.answered` event.
    pub answered_event_id: Uuid,
    /// The provider's call id.
    pub provider_call_id: &'a str,
    /// The provider's stream id.
    pub stream_id: &'a str,
    /// The start context (`SessionContext` as JSON).
    pub context: serde_json::Value,
}

/// Inserts a conversation in `waiting`; a second insert of the same attempt does nothing.
/// Returns whether it was new.
pub async fn open(conn: &mut PgConnection, new: &NewConversation<'_>) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO conversations \
             (attempt_id, call_id, tenant_id, answered_event_id, provider_call_id, stream_id, context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (attempt_id) DO NOTHING",
    )
    .bind(new.attempt.as_uuid())
    .bind(new.call.as_uuid())
    .bind(new.tenant.as_uuid())
    .bind(new.answered_event_id)
    .bind(new.provider_call_id)
    .bind(new.stream_id)
    .bind(&new.context)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A session a worker claimed.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    /// The attempt (the conversation's key).
    pub attempt_id: Uuid,
    /// The call.
    pub call_id: Uuid,
    /// The tenant.
    pub tenant_id: Uuid,
    /// The claim's epoch (1 for the first owner).
    pub epoch: i32,
    /// Take-overs so far, this one included.
    pub resumes: i32,
    /// The start context.
    pub context: serde_json::Value,
    /// The provider's call id.
    pub provider_call_id: String,
    /// When the conversation opened.
    pub started_at: DateTime<Utc>,
}

/// Claims up to `limit` sessions that have no live owner (new ones, and ones whose owner's
/// lease ran out), oldest first, for `owner` with a lease of `ttl_ms`.
pub async fn claim(
    conn: &mut PgConnection,
    owner: &str,
    ttl_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE conversations c SET owner = $1, \
             lease_until = now() + make_interval(secs => $2::double precision / 1000), \
             epoch = c.epoch + 1, \
             resumes = c.resumes + CASE WHEN c.state = 'active' THEN 1 ELSE 0 END, \
             state = 'active' \
         FROM (SELECT attempt_id FROM conversations \
               WHERE state <> 'ended' AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) picked \
         WHERE c.attempt_id = picked.attempt_id \
         RETURNING c.attempt_id, c.call_id, c.tenant_id, c.epoch, c.resumes, c.context, \
                   c.provider_call_id, c.started_at",
    )
    .bind(owner)
    .bind(ttl_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Renews every lease `owner` holds; returns the `(attempt, epoch)`s still held.
pub async fn renew(
    conn: &mut PgConnection,
    owner: &str,
    ttl_ms: i64,
) -> Result<Vec<(Uuid, i32)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE conversations \
         SET lease_until = now() + make_interval(secs => $2::double precision / 1000) \
         WHERE owner = $1 AND state = 'active' RETURNING attempt_id, epoch",
    )
    .bind(owner)
    .bind(ttl_ms)
    .fetch_all(conn)
    .await
}

/// Gives a session up at once (graceful shutdown): another worker claims it on its next scan.
pub async fn release(
    conn: &mut PgConnection,
    attempt: AttemptId,
    holder: &Holder,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE conversations SET lease_until = now() - interval '1 millisecond' \
         WHERE attempt_id = $1 AND owner = $2 AND epoch = $3 AND state = 'active'",
    )
    .bind(attempt.as_uuid())
    .bind(&holder.owner)
    .bind(holder.epoch)
    .execute(conn)
    .await?;
    Ok(())
}

fn fenced(result: &sqlx::postgres::PgQueryResult) -> Result<(), WriteError> {
    if result.rows_affected() == 0 {
        Err(WriteError::Fenced)
    } else {
        Ok(())
    }
}

/// Appends a transcript turn.
pub async fn add_turn(
    conn: &mut PgConnection,
    attempt: AttemptId,
    holder: &Holder,
    role: &str,
    text: &str,
) -> Result<(), WriteError> {
    let result = sqlx::query(
        "INSERT INTO conversation_turns (tenant_id, attempt_id, seq, role, text, epoch) \
         SELECT c.tenant_id, c.attempt_id, \
                COALESCE((SELECT max(seq) FROM conversation_turns t \
                          WHERE t.attempt_id = c.attempt_id), 0) + 1, $4, $5, c.epoch \
         FROM conversations c \
         WHERE c.attempt_id = $1 AND c.owner = $2 AND c.epoch = $3 AND c.state = 'active'",
    )
    .bind(attempt.as_uuid())
    .bind(&holder.owner)
    .bind(holder.epoch)
    .bind(role)
    .bind(text)
    .execute(conn)
    .await?;
    fenced(&result)
}

/// A finished agent tool call.
#[derive(Debug)]
pub struct ToolRecord<'a> {
    /// The engine's id of the call.
    pub tool_call_id: &'a str,
    /// The tool.
    pub name: &'a str,
    /// Its parameters.
    pub parameters: &'a serde_json::Value,
    /// What the agent was told.
    pub result: &'a str,
    /// Whether it failed.
    pub is_error: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Records a tool call; a second record of the same call is ignored.
pub async fn add_tool_call(
    conn: &mut PgConnection,
    attempt: AttemptId,
    holder: &Holder,
    record: &ToolRecord<'_>,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO tool_invocations (tenant_id, attempt_id, tool_call_id, name, parameters, \
                                       result, is_error, latency_ms, epoch, started_at) \
         SELECT c.tenant_id, c.attempt_id, $4, $5, $6, $7, $8, $9, c.epoch, $10 \
         FROM conversations c \
         WHERE c.attempt_id = $1 AND c.owner = $2 AND c.epoch = $3 AND c.state = 'active' \
         ON CONFLICT (attempt_id, tool_call_id) DO NOTHING",
    )
    .bind(attempt.as_uuid())
    .bind(&holder.owner)
    .bind(holder.epoch)
    .bind(record.tool_call_id)
    .bind(record.name)
    .bind(record.parameters)
    .bind(record.result)
    .bind(record.is_error)
    .bind(record.latency_ms)
    .bind(record.started_at)
    .execute(conn)
    .await?;
    // No row is a replay (conflict) or a lost lease; heartbeats tell the two apart.
    Ok(())
}

/// Records the engine's conversation id of a session.
pub async fn add_engine_id(
    conn: &mut PgConnection,
    attempt: AttemptId,
    holder: &Holder,
    engine_conversation_id: &str,
) -> Result<(), WriteError> {
    sqlx::query(
        "UPDATE conversations \
         SET engine_conversation_ids = array_append(engine_conversation_ids, $4) \
         WHERE attempt_id = $1 AND owner = $2 AND epoch = $3 AND state = 'active' \
           AND NOT ($4 = ANY(engine_conversation_ids))",
    )
    .bind(attempt.as_uuid())
    .bind(&holder.owner)
    .bind(holder.epoch)
    .bind(engine_conversation_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The transcript so far, in order: what a resumed session gives the engine.
pub async fn turns(
    conn: &mut PgConnection,
    attempt: AttemptId,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT role, text FROM conversation_turns WHERE attempt_id = $1 ORDER BY seq")
        .bind(attempt.as_uuid())
        .fetch_all(conn)
        .await
}

/// What `conversation.ended` reports, read when the session ends.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Ended {
    /// The attempt.
    pub attempt_id: Uuid,
    /// The call.
    pub call_id: Uuid,
    /// The tenant.
    pub tenant_id: Uuid,
    /// How it ended.
    pub end_reason: String,
    /// When it opened.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Take-overs.
    pub resumes: i32,
    /// Engine conversation ids.
    pub engine_conversation_ids: Vec<String>,
    /// Turns stored.
    pub turns: i64,
    /// Tool calls stored.
    pub tool_calls: i64,
}

const ENDED_COLUMNS: &str = "c.attempt_id, c.call_id, c.tenant_id, c.end_reason, c.started_at, \
     c.ended_at, c.resumes, c.engine_conversation_ids, \
     (SELECT count(*) FROM conversation_turns t WHERE t.attempt_id = c.attempt_id) AS turns, \
     (SELECT count(*) FROM tool_invocations i WHERE i.attempt_id = c.attempt_id) AS tool_calls";

/// Ends a session; returns what `conversation.ended` reports.
pub async fn end(
    conn: &mut PgConnection,
    attempt: AttemptId,
    holder: &Holder,
    reason: &str,
) -> Result<Ended, WriteError> {
    let ended: Option<Ended> = sqlx::query_as(&format!(
        "UPDATE conversations c SET state = 'ended', ended_at = now(), end_reason = $4, \
                                    lease_until = NULL \
         WHERE c.attempt_id = $1 AND c.owner = $2 AND c.epoch = $3 AND c.state = 'active' \
         RETURNING {ENDED_COLUMNS}"
    ))
    .bind(attempt.as_uuid())
    .bind(&holder.owner)
    .bind(holder.epoch)
    .bind(reason)
    .fetch_optional(conn)
    .await?;
    ended.ok_or(WriteError::Fenced)
}

/// Marks `conversation.ended` as confirmed by the stream.
pub async fn mark_published(conn: &mut PgConnection, attempt: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE conversations SET ended_published_at = now() WHERE attempt_id = $1")
        .bind(attempt)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ended conversations whose `conversation.ended` was not confirmed `after` their end.
pub async fn unpublished(
    conn: &mut PgConnection,
    ended_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Ended>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ENDED_COLUMNS} FROM conversations c \
         WHERE c.state = 'ended' AND c.ended_published_at IS NULL AND c.ended_at < $1 \
         ORDER BY c.ended_at LIMIT $2"
    ))
    .bind(ended_before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The latest summary the voice provider gave of an earlier conversation with `phone`.
pub async fn previous_summary(
    conn: &mut PgConnection,
    tenant: TenantId,
    phone: &str,
    before_call: CallId,
) -> Result<Option<String>, sqlx::Error> {
    let summary: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT c.provider_analysis ->> 'transcript_summary' FROM conversations c \
         JOIN calls k ON k.id = c.call_id \
         WHERE c.tenant_id = $1 AND k.to_number = $2 AND c.call_id <> $3 \
           AND c.provider_analysis IS NOT NULL \
         ORDER BY c.ended_at DESC NULLS LAST LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .bind(phone)
    .bind(before_call.as_uuid())
    .fetch_optional(conn)
    .await?;
    Ok(summary.and_then(|(summary,)| summary))
}

/// Merges the provider's post-call report into the conversation holding `engine_id`.
/// Returns false when no conversation has that engine id (yet).
pub async fn merge_post_call(
    conn: &mut PgConnection,
    tenant: TenantId,
    engine_id: &str,
    transcript: &serde_json::Value,
    analysis: &serde_json::Value,
    metadata: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE conversations SET provider_transcript = $3, provider_analysis = $4, \
                                  provider_metadata = $5, provider_reported_at = now() \
         WHERE tenant_id = $1 AND $2 = ANY(engine_conversation_ids)",
    )
    .bind(tenant.as_uuid())
    .bind(engine_id)
    .bind(transcript)
    .bind(analysis)
    .bind(metadata)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() > 0)
}
