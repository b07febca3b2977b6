//! `admission_queue` and `admission_limits`: leads waiting to become calls, and the shared
//! pacing rows (ADR 0016).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::{CallId, EventId, PhoneNumber, TenantId};

/// The pacing row of the tenant as a whole (also the lock of its admission).
pub const TENANT_KEY: &str = "tenant";

/// Returns the pacing key of a caller number: `from:+1…`.
#[must_use]
pub fn number_key(number: &PhoneNumber) -> String {
    format!("from:{number}")
}

/// A lead to enqueue.
#[derive(Debug, Clone)]
pub struct NewQueued<'a> {
    /// Its tenant.
    pub tenant: TenantId,
    /// The lead.resolved event.
    pub lead_event_id: EventId,
    /// The call it becomes.
    pub call_id: CallId,
    /// The resolved lead, as JSON.
    pub lead: &'a serde_json::Value,
    /// The callee.
    pub to: &'a PhoneNumber,
    /// The callee's time zone (IANA).
    pub timezone: &'a str,
    /// Earliest admission.
    pub not_before: DateTime<Utc>,
    /// Why `not_before` is later than now, if it is.
    pub deferred_reason: Option<&'a str>,
    /// The attempt it becomes (above 1: a scheduled retry of the call).
    pub attempt_number: u32,
}

/// A waiting or admitted lead.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Its tenant.
    pub tenant: TenantId,
    /// The lead.resolved event.
    pub lead_event_id: EventId,
    /// The call it becomes.
    pub call_id: CallId,
    /// The resolved lead, as JSON.
    pub lead: serde_json::Value,
    /// The callee (E.164 text).
    pub to_number: String,
    /// The callee's time zone.
    pub timezone: String,
    /// The pacing slot, once admitted.
    pub dial_not_before: Option<DateTime<Utc>>,
    /// The caller id, once admitted.
    pub from_number: Option<String>,
    /// The attempt it becomes.
    pub attempt_number: u32,
}

/// Adds a lead to the queue, and the tenant's pacing row if it has none; false when the lead
/// is already queued.
pub async fn enqueue(conn: &mut PgConnection, row: &NewQueued<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query!(
        "INSERT INTO admission_limits (tenant_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        row.tenant.as_uuid(),
        TENANT_KEY,
    )
    .execute(&mut *conn)
    .await?;
    let inserted = sqlx::query!(
        "INSERT INTO admission_queue
             (tenant_id, lead_event_id, call_id, lead, to_number, timezone, not_before,
              deferred_reason, attempt_number)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT DO NOTHING",
        row.tenant.as_uuid(),
        row.lead_event_id.as_uuid(),
        row.call_id.as_uuid(),
        row.lead,
        row.to.as_str(),
        row.timezone,
        row.not_before,
        row.deferred_reason,
        i32::try_from(row.attempt_number).unwrap_or(i32::MAX),
    )
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Returns up to `limit` tenants with leads ready now, least recently served first.
pub async fn ready_tenants(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<TenantId>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        "SELECT l.tenant_id
           FROM admission_limits l
          WHERE l.key = 'tenant'
            AND EXISTS (SELECT 1 FROM admission_queue q
                         WHERE q.tenant_id = l.tenant_id AND q.state = 'waiting'
                           AND q.not_before <= now())
          ORDER BY l.updated_at
          LIMIT $1",
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(TenantId::from_uuid).collect())
}

/// Locks the tenant's pacing row unless another admitter holds it; returns its `tat`.
pub async fn lock_tenant(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT tat FROM admission_limits WHERE tenant_id = $1 AND key = $2
         FOR UPDATE SKIP LOCKED",
        tenant.as_uuid(),
        TENANT_KEY,
    )
    .fetch_optional(conn)
    .await
}

/// Returns how many of the tenant's calls are in progress (admitted and not settled).
pub async fn live_calls(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, sqlx::Error> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM calls
            WHERE tenant_id = $1
              AND state IN ('queued', 'initiated', 'ringing', 'connected', 'dropped',
                            'recovering', 'resumed')"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await?;
    Ok(count)
}

/// Returns up to `limit` of the tenant's ready leads, oldest first, locked.
pub async fn ready_leads(
    conn: &mut PgConnection,
    tenant: TenantId,
    limit: i64,
) -> Result<Vec<Queued>, sqlx::Error> {
    let rows = sqlx::query_as!(
        QueuedRow,
        "SELECT tenant_id, lead_event_id, call_id, lead, to_number, timezone, dial_not_before,
                from_number, attempt_number
           FROM admission_queue
          WHERE tenant_id = $1 AND state = 'waiting' AND not_before <= now()
          ORDER BY not_before, enqueued_at
          LIMIT $2
          FOR UPDATE SKIP LOCKED",
        tenant.as_uuid(),
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Queued::from).collect())
}

/// A row of `admission_queue` as read.
struct QueuedRow {
    tenant_id: Uuid,
    lead_event_id: Uuid,
    call_id: Uuid,
    lead: serde_json::Value,
    to_number: String,
    timezone: String,
    dial_not_before: Option<DateTime<Utc>>,
    from_number: Option<String>,
    attempt_number: i32,
}

impl From<QueuedRow> for Queued {
    fn from(row: QueuedRow) -> Self {
        Self {
            tenant: TenantId::from_uuid(row.tenant_id),
            lead_event_id: EventId::from_uuid(row.lead_event_id),
            call_id: CallId::from_uuid(row.call_id),
            lead: row.lead,
            to_number: row.to_number,
            timezone: row.timezone,
            dial_not_before: row.dial_not_before,
            from_number: row.from_number,
            attempt_number: u32::try_from(row.attempt_number).unwrap_or(1),
        }
    }
}

/// Moves a waiting lead's earliest admission to `not_before`.
pub async fn defer(
    conn: &mut PgConnection,
    tenant: TenantId,
    lead_event_id: EventId,
    not_before: DateTime<Utc>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE admission_queue SET not_before = $3, deferred_reason = $4
          WHERE tenant_id = $1 AND lead_event_id = $2 AND state = 'waiting'",
        tenant.as_uuid(),
        lead_event_id.as_uuid(),
        not_before,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a lead admitted with its pacing slot and caller id.
pub async fn admit(
    conn: &mut PgConnection,
    tenant: TenantId,
    lead_event_id: EventId,
    dial_not_before: DateTime<Utc>,
    from: &PhoneNumber,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE admission_queue
            SET state = 'admitted', admitted_at = now(), dial_not_before = $3, from_number = $4
          WHERE tenant_id = $1 AND lead_event_id = $2",
        tenant.as_uuid(),
        lead_event_id.as_uuid(),
        dial_not_before,
        from.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns admitted leads whose `call.requested` was not confirmed published `older_than` ago
/// (a crash between commit and publish), locked; platform-wide.
pub async fn unpublished(
    conn: &mut PgConnection,
    admitted_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Queued>, sqlx::Error> {
    let rows = sqlx::query_as!(
        QueuedRow,
        "SELECT tenant_id, lead_event_id, call_id, lead, to_number, timezone, dial_not_before,
                from_number, attempt_number
           FROM admission_queue
          WHERE state = 'admitted' AND admitted_at < $1
          ORDER BY admitted_at
          LIMIT $2
          FOR UPDATE SKIP LOCKED",
        admitted_before,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Queued::from).collect())
}

/// Deletes admitted rows once their `call.requested` is stored in the stream.
pub async fn delete_published(
    conn: &mut PgConnection,
    tenant: TenantId,
    lead_event_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM admission_queue
          WHERE tenant_id = $1 AND lead_event_id = ANY($2) AND state = 'admitted'",
        tenant.as_uuid(),
        lead_event_ids,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns the `tat` of each pacing key, creating missing rows; locks them.
pub async fn lock_pacing(
    conn: &mut PgConnection,
    tenant: TenantId,
    keys: &[String],
) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query!(
        "INSERT INTO admission_limits (tenant_id, key)
         SELECT $1, key FROM unnest($2::text[]) AS key
         ON CONFLICT DO NOTHING",
        tenant.as_uuid(),
        keys,
    )
    .execute(&mut *conn)
    .await?;
    // The tenant row first, then numbers by key: the one lock order of every transaction
    // that takes several of these rows (admission cycles, late dials), so none deadlock.
    let rows = sqlx::query!(
        "SELECT key, tat FROM admission_limits WHERE tenant_id = $1 AND key = ANY($2)
         ORDER BY key <> 'tenant', key FOR UPDATE",
        tenant.as_uuid(),
        keys,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.key, row.tat)).collect())
}

/// Sets a pacing row's `tat` (and marks the tenant as served now, for round-robin).
pub async fn set_tat(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    tat: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE admission_limits SET tat = $3, updated_at = now()
          WHERE tenant_id = $1 AND key = $2",
        tenant.as_uuid(),
        key,
        tat,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the tenant as served now (round-robin order of [`ready_tenants`]).
pub async fn touch_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE admission_limits SET updated_at = now() WHERE tenant_id = $1 AND key = $2",
        tenant.as_uuid(),
        TENANT_KEY,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns how many of the tenant's leads wait, and the earliest `not_before` among them.
pub async fn waiting(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "count!", min(not_before) AS next
             FROM admission_queue WHERE tenant_id = $1 AND state = 'waiting'"#,
        tenant.as_uuid(),
    )
    .fetch_one(conn)
    .await?;
    Ok((row.count, row.next))
}
