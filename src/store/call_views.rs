//! Read models of calls for the management API: a call, its attempts and its transitions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::{CallId, TenantId};

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallView {
    /// The call.
    pub id: Uuid,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// Its state (`queued`, `initiated`, `ringing`, `connected`, `completed`, `failed`, …).
    pub state: String,
    /// How it ended (`human`, `machine`, `no_answer`, `busy`, `failed`, `cancelled`), once
    /// settled.
    pub outcome: Option<String>,
    /// The callee (E.164).
    pub to: String,
    /// The caller id.
    pub from: Option<String>,
    /// The lead's id in the CRM.
    pub crm_contact_id: Option<String>,
    /// When it was admitted.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
}

/// One dial of a call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// The attempt (its id is in the provider's callback URLs).
    pub id: Uuid,
    /// Which dial, from 1.
    pub attempt_number: i32,
    /// Its state (`dialing`, `initiated`, `ringing`, `answered`, `voicemail`, `completed`, …).
    pub state: String,
    /// The provider (`twilio`).
    pub provider: String,
    /// The provider's call id (`CA…`), once known.
    pub provider_call_id: Option<String>,
    /// The caller id.
    pub from: Option<String>,
    /// Answering machine detection's answer.
    pub answered_by: Option<String>,
    /// The provider's error code of a failed dial.
    pub failure_code: Option<i32>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// When the provider took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its length, in seconds.
    pub duration_seconds: Option<i32>,
}

/// One accepted state change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    /// `call` or `attempt`.
    pub machine: String,
    /// The attempt it concerns.
    pub attempt_id: Option<Uuid>,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// The event that caused it.
    pub cause_event_id: Option<Uuid>,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// Lists the tenant's calls, newest first, optionally in one state.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<CallView>, sqlx::Error> {
    sqlx::query_as!(
        CallView,
        r#"SELECT id, direction, state, outcome, to_number AS "to", from_number AS "from",
                  crm_contact_id, created_at, updated_at
             FROM calls
            WHERE tenant_id = $1 AND ($2::text IS NULL OR state = $2)
            ORDER BY created_at DESC, id DESC
            LIMIT $3"#,
        tenant.as_uuid(),
        state,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Returns one of the tenant's calls.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
) -> Result<Option<CallView>, sqlx::Error> {
    sqlx::query_as!(
        CallView,
        r#"SELECT id, direction, state, outcome, to_number AS "to", from_number AS "from",
                  crm_contact_id, created_at, updated_at
             FROM calls WHERE tenant_id = $1 AND id = $2"#,
        tenant.as_uuid(),
        call.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// Returns a call's attempts, in order.
pub async fn attempts(
    conn: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
) -> Result<Vec<AttemptView>, sqlx::Error> {
    sqlx::query_as!(
        AttemptView,
        r#"SELECT id, attempt_number, state, provider, provider_call_id,
                  from_number AS "from", answered_by, failure_code, failure_reason, started_at,
                  answered_at, ended_at, duration_seconds
             FROM call_attempts WHERE tenant_id = $1 AND call_id = $2
            ORDER BY attempt_number"#,
        tenant.as_uuid(),
        call.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// Returns a call's transitions, in the order they were accepted.
pub async fn transitions(
    conn: &mut PgConnection,
    tenant: TenantId,
    call: CallId,
) -> Result<Vec<TransitionView>, sqlx::Error> {
    sqlx::query_as!(
        TransitionView,
        r#"SELECT machine, attempt_id, from_state AS "from", to_state AS "to", cause_event_id,
                  occurred_at
             FROM call_state_transitions WHERE tenant_id = $1 AND call_id = $2
            ORDER BY id"#,
        tenant.as_uuid(),
        call.as_uuid(),
    )
    .fetch_all(conn)
    .await
}
