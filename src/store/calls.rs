//! `calls`, `call_attempts` and `call_state_transitions`: compare-and-set state changes with
//! a log (`calls::state` decides them; this module only writes them).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::calls::state::{AnsweredBy, AttemptState, CallState, Failure};
use crate::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};

/// A call to create in `queued` at admission.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    /// The call.
    pub id: CallId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The callee.
    pub to: &'a PhoneNumber,
    /// The caller id chosen at admission.
    pub from: &'a PhoneNumber,
    /// The CRM's id of the lead, when known.
    pub crm_contact_id: Option<&'a str>,
    /// The resolved lead.
    pub lead: &'a serde_json::Value,
    /// The event that requested the call (the lead.resolved event).
    pub request_event_id: EventId,
}

/// Creates a call in `queued`; false when the requesting event already created it.
pub async fn create_queued(
    conn: &mut PgConnection,
    call: &NewCall<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO calls
             (id, tenant_id, direction, state, to_number, from_number, crm_contact_id, lead,
              request_event_id)
         VALUES ($1, $2, 'outbound', 'queued', $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
        call.id.as_uuid(),
        call.tenant.as_uuid(),
        call.to.as_str(),
        call.from.as_str(),
        call.crm_contact_id,
        call.lead,
        call.request_event_id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// An attempt with what the state machine needs of its call.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The attempt.
    pub id: AttemptId,
    /// Its call.
    pub call_id: CallId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Which dial of the call, from 1.
    pub attempt_number: u32,
    /// Its state.
    pub state: AttemptState,
    /// The provider's call id, once recorded.
    pub provider_call_id: Option<String>,
    /// The caller id.
    pub from_number: Option<String>,
    /// The callee (the call's).
    pub to_number: String,
    /// The machine detection result, once known.
    pub answered_by: Option<AnsweredBy>,
    /// When the intent was recorded.
    pub created_at: DateTime<Utc>,
    /// When the dial stage last asked the provider to place it.
    pub dialed_at: Option<DateTime<Utc>>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// The call's state.
    pub call_state: CallState,
    /// The highest attempt number of the call (provider facts move the call only for it).
    pub current_attempt: u32,
}

/// Unreadable state names are a schema bug (CHECK constraints allow only known names).
fn decode_error(error: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

/// Returns the attempt the dial stage recorded for `input_event_id`, if any (not locked: the
/// dial stage changes it in other transactions while this one is open).
pub async fn attempt_by_input(
    conn: &mut PgConnection,
    tenant: TenantId,
    input_event_id: EventId,
) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        r#"SELECT a.id, a.call_id, a.tenant_id, a.attempt_number, a.state, a.provider_call_id,
                  a.from_number, c.to_number, a.answered_by, a.created_at, a.dialed_at,
                  a.answered_at, c.state AS call_state,
                  (SELECT max(attempt_number) FROM call_attempts o WHERE o.call_id = a.call_id)
                      AS "current_attempt!"
             FROM call_attempts a JOIN calls c ON c.id = a.call_id
            WHERE a.tenant_id = $1 AND a.input_event_id = $2"#,
        tenant.as_uuid(),
        input_event_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?
    .map(Attempt::try_from)
    .transpose()
}

/// Returns an attempt and its call, both locked for the state change that follows.
pub async fn lock_attempt(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: AttemptId,
) -> Result<Option<Attempt>, sqlx::Error> {
    sqlx::query_as!(
        AttemptRow,
        r#"SELECT a.id, a.call_id, a.tenant_id, a.attempt_number, a.state, a.provider_call_id,
                  a.from_number, c.to_number, a.answered_by, a.created_at, a.dialed_at,
                  a.answered_at, c.state AS call_state,
                  (SELECT max(attempt_number) FROM call_attempts o WHERE o.call_id = a.call_id)
                      AS "current_attempt!"
             FROM call_attempts a JOIN calls c ON c.id = a.call_id
            WHERE a.tenant_id = $1 AND a.id = $2
            FOR UPDATE"#,
        tenant.as_uuid(),
        id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?
    .map(Attempt::try_from)
    .transpose()
}

/// An attempt joined with its call, as read.
struct AttemptRow {
    id: uuid::Uuid,
    call_id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    attempt_number: i32,
    state: String,
    provider_call_id: Option<String>,
    from_number: Option<String>,
    to_number: String,
    answered_by: Option<String>,
    created_at: DateTime<Utc>,
    dialed_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    call_state: String,
    current_attempt: i32,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = sqlx::Error;

    fn try_from(row: AttemptRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: AttemptId::from_uuid(row.id),
            call_id: CallId::from_uuid(row.call_id),
            tenant: TenantId::from_uuid(row.tenant_id),
            attempt_number: u32::try_from(row.attempt_number).unwrap_or(1),
            state: row.state.parse().map_err(decode_error)?,
            provider_call_id: row.provider_call_id,
            from_number: row.from_number,
            to_number: row.to_number,
            answered_by: row
                .answered_by
                .as_deref()
                .map(str::parse::<AnsweredBy>)
                .transpose()
                .map_err(decode_error)?,
            created_at: row.created_at,
            dialed_at: row.dialed_at,
            answered_at: row.answered_at,
            call_state: row.call_state.parse().map_err(decode_error)?,
            current_attempt: u32::try_from(row.current_attempt).unwrap_or(1),
        })
    }
}

/// An attempt to record before the provider is asked (the dial protocol's intent).
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    /// The attempt.
    pub id: AttemptId,
    /// Its call.
    pub call_id: CallId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Which dial of the call.
    pub attempt_number: u32,
    /// The `call.requested` event being handled.
    pub input_event_id: EventId,
    /// The provider's name (`twilio`).
    pub provider: &'a str,
    /// The caller id.
    pub from: &'a PhoneNumber,
}

/// Records the intent to dial: an attempt in `dialing`, logged.
pub async fn insert_intent(
    conn: &mut PgConnection,
    attempt: &NewAttempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO call_attempts
             (id, call_id, tenant_id, attempt_number, state, input_event_id, provider,
              from_number, dialed_at)
         VALUES ($1, $2, $3, $4, 'dialing', $5, $6, $7, now())",
        attempt.id.as_uuid(),
        attempt.call_id.as_uuid(),
        attempt.tenant.as_uuid(),
        i32::try_from(attempt.attempt_number).unwrap_or(i32::MAX),
        attempt.input_event_id.as_uuid(),
        attempt.provider,
        attempt.from.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    log(
        conn,
        attempt.tenant,
        attempt.call_id,
        Some(attempt.id),
        Machine::Attempt,
        "none",
        AttemptState::Dialing.as_str(),
        Some(attempt.input_event_id),
    )
    .await
}

/// Marks an attempt as being dialed now (a reconciled intent dialed again).
pub async fn mark_dialed(conn: &mut PgConnection, id: AttemptId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE call_attempts SET dialed_at = now() WHERE id = $1",
        id.as_uuid()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes an intent the provider certainly did not act on (it refused with a transient
/// error); its redelivery then dials afresh instead of reconciling.
pub async fn delete_intent(conn: &mut PgConnection, id: AttemptId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM call_attempts WHERE id = $1 AND provider_call_id IS NULL AND state = 'dialing'",
        id.as_uuid()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the provider's call id on an attempt that has none; false when it already had one.
pub async fn set_provider_call_id(
    conn: &mut PgConnection,
    id: AttemptId,
    provider_call_id: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE call_attempts SET provider_call_id = $2
          WHERE id = $1 AND provider_call_id IS NULL",
        id.as_uuid(),
        provider_call_id,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Returns the provider call ids already recorded on the tenant's attempts among `ids`.
pub async fn known_provider_call_ids(
    conn: &mut PgConnection,
    provider: &str,
    ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT provider_call_id AS "id!" FROM call_attempts
            WHERE provider = $1 AND provider_call_id = ANY($2)"#,
        provider,
        ids,
    )
    .fetch_all(conn)
    .await
}

/// Which state machine a log row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `calls.state`.
    Call,
    /// `call_attempts.state`.
    Attempt,
}

impl Machine {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Attempt => "attempt",
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn log(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
    attempt_id: Option<AttemptId>,
    machine: Machine,
    from: &str,
    to: &str,
    cause: Option<EventId>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO call_state_transitions
             (tenant_id, call_id, attempt_id, machine, from_state, to_state, cause_event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        tenant.as_uuid(),
        call_id.as_uuid(),
        attempt_id.map(|id| id.as_uuid()),
        machine.as_str(),
        from,
        to,
        cause.map(|id| id.as_uuid()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Compare-and-set of a call's state, logged; false when the call was not in `from`.
pub async fn move_call(
    conn: &mut PgConnection,
    attempt: &Attempt,
    from: CallState,
    to: CallState,
    cause: Option<EventId>,
) -> Result<bool, sqlx::Error> {
    cas_call(
        conn,
        attempt.tenant,
        attempt.call_id,
        Some(attempt.id),
        (from, to),
        cause,
    )
    .await
}

/// What a change of an attempt's state also records.
#[derive(Debug, Clone, Default)]
pub struct AttemptFacts {
    /// The machine detection result.
    pub answered_by: Option<AnsweredBy>,
    /// The call's length, once ended.
    pub duration_secs: Option<u32>,
    /// Why it failed.
    pub failure: Option<Failure>,
}

/// Compare-and-set of an attempt's state, logged, with its timestamps and facts; false when
/// the attempt was not in `from`.
pub async fn move_attempt(
    conn: &mut PgConnection,
    attempt: &Attempt,
    from: AttemptState,
    to: AttemptState,
    facts: &AttemptFacts,
    cause: Option<EventId>,
) -> Result<bool, sqlx::Error> {
    let answered = matches!(to, AttemptState::Answered | AttemptState::Voicemail);
    let ended = to.is_final();
    let failure = facts.failure.clone().unwrap_or_default();
    let updated = sqlx::query!(
        "UPDATE call_attempts
            SET state = $3,
                started_at = coalesce(started_at, CASE WHEN $3 <> 'dialing' THEN now() END),
                answered_at = CASE WHEN $4 THEN coalesce(answered_at, now()) ELSE answered_at END,
                ended_at = CASE WHEN $5 THEN coalesce(ended_at, now()) ELSE ended_at END,
                answered_by = coalesce($6, answered_by),
                duration_seconds = coalesce($7, duration_seconds),
                failure_code = coalesce($8, failure_code),
                failure_reason = coalesce($9, failure_reason)
          WHERE id = $1 AND state = $2",
        attempt.id.as_uuid(),
        from.as_str(),
        to.as_str(),
        answered,
        ended,
        facts.answered_by.map(AnsweredBy::as_str),
        facts
            .duration_secs
            .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX)),
        failure
            .code
            .map(|code| i32::try_from(code).unwrap_or(i32::MAX)),
        failure.reason.as_deref(),
    )
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    log(
        conn,
        attempt.tenant,
        attempt.call_id,
        Some(attempt.id),
        Machine::Attempt,
        from.as_str(),
        to.as_str(),
        cause,
    )
    .await?;
    Ok(true)
}

/// Records facts on an attempt without a state change (a duration on a final attempt, a late
/// machine detection result).
pub async fn record_facts(
    conn: &mut PgConnection,
    id: AttemptId,
    facts: &AttemptFacts,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE call_attempts
            SET answered_by = coalesce($2, answered_by),
                duration_seconds = coalesce($3, duration_seconds)
          WHERE id = $1",
        id.as_uuid(),
        facts.answered_by.map(AnsweredBy::as_str),
        facts
            .duration_secs
            .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the call's outcome.
pub async fn set_outcome(
    conn: &mut PgConnection,
    call_id: CallId,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE calls SET outcome = $2 WHERE id = $1",
        call_id.as_uuid(),
        outcome
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns the duration recorded on an attempt.
pub async fn duration_of(
    conn: &mut PgConnection,
    id: AttemptId,
) -> Result<Option<u32>, sqlx::Error> {
    let secs = sqlx::query_scalar!(
        "SELECT duration_seconds FROM call_attempts WHERE id = $1",
        id.as_uuid()
    )
    .fetch_optional(conn)
    .await?
    .flatten();
    Ok(secs.and_then(|secs| u32::try_from(secs).ok()))
}

/// Returns a call's state, locked for the change that follows (`None`: no such call).
pub async fn lock_call_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
) -> Result<Option<CallState>, sqlx::Error> {
    let state = sqlx::query_scalar!(
        "SELECT state FROM calls WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant.as_uuid(),
        call_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    parse_state(state)
}

/// Reads a stored call state (`None`: no row).
fn parse_state(state: Option<String>) -> Result<Option<CallState>, sqlx::Error> {
    state
        .map(|state| state.parse::<CallState>().map_err(decode_error))
        .transpose()
}

/// Compare-and-set of a call's state by an internal decision that concerns no attempt
/// (readmission, a cancel before the dial), logged; false when the call was not in `from`.
pub async fn move_call_by_id(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
    from: CallState,
    to: CallState,
    cause: Option<EventId>,
) -> Result<bool, sqlx::Error> {
    cas_call(conn, tenant, call_id, None, (from, to), cause).await
}

/// The one compare-and-set of `calls.state`, logged with the attempt it concerns (if any).
async fn cas_call(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
    attempt: Option<AttemptId>,
    (from, to): (CallState, CallState),
    cause: Option<EventId>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE calls SET state = $4 WHERE tenant_id = $1 AND id = $2 AND state = $3",
        tenant.as_uuid(),
        call_id.as_uuid(),
        from.as_str(),
        to.as_str(),
    )
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    log(
        conn,
        tenant,
        call_id,
        attempt,
        Machine::Call,
        from.as_str(),
        to.as_str(),
        cause,
    )
    .await?;
    Ok(true)
}

/// A call as the scheduler reads it.
#[derive(Debug, Clone)]
pub struct CallForSchedule {
    /// Its state.
    pub state: CallState,
    /// The resolved lead (LeadResolved as JSON).
    pub lead: serde_json::Value,
    /// The CRM's id of the lead.
    pub crm_contact_id: Option<String>,
    /// The highest attempt number.
    pub current_attempt: u32,
}

/// Returns what the scheduler needs of a call, locked.
pub async fn for_schedule(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
) -> Result<Option<CallForSchedule>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT c.state, c.lead, c.crm_contact_id,
                  (SELECT max(attempt_number) FROM call_attempts a WHERE a.call_id = c.id)
                      AS current_attempt
             FROM calls c WHERE c.tenant_id = $1 AND c.id = $2 FOR UPDATE OF c"#,
        tenant.as_uuid(),
        call_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(CallForSchedule {
            state: row.state.parse::<CallState>().map_err(decode_error)?,
            lead: row.lead,
            crm_contact_id: row.crm_contact_id,
            current_attempt: u32::try_from(row.current_attempt.unwrap_or(1)).unwrap_or(1),
        })
    })
    .transpose()
}

/// Returns a call's state without locking it (`None`: no such call). The dial stage reads it
/// so: its intent is inserted in another transaction, whose foreign-key check on the call
/// would wait for a lock held here.
pub async fn call_state(
    conn: &mut PgConnection,
    tenant: TenantId,
    call_id: CallId,
) -> Result<Option<CallState>, sqlx::Error> {
    let state = sqlx::query_scalar!(
        "SELECT state FROM calls WHERE tenant_id = $1 AND id = $2",
        tenant.as_uuid(),
        call_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    parse_state(state)
}
