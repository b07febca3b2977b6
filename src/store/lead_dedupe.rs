//! `lead_dedupe`: the dedupe stage's long-horizon memory of lead dedupe keys.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::ids::{EventId, TenantId};

/// What the record said about one lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No copy passed within the horizon: this one passes (and is now the record).
    First,
    /// A copy passed within the horizon.
    Again {
        /// The event that passed.
        first_event_id: EventId,
        /// When it passed.
        first_seen_at: DateTime<Utc>,
    },
}

/// Records that `event_id` carries `dedupe_key`, and says whether it is the first copy within
/// `horizon_start..=now`.
///
/// One statement: the insert takes the row lock, so two copies racing in two transactions
/// serialize and exactly one of them is `First`. A record older than the horizon is replaced
/// by this event, which then passes again.
pub async fn record(
    conn: &mut PgConnection,
    tenant: TenantId,
    scope: &str,
    dedupe_key: &str,
    event_id: EventId,
    now: DateTime<Utc>,
    horizon_start: DateTime<Utc>,
) -> Result<Seen, sqlx::Error> {
    let row = sqlx::query!(
        "INSERT INTO lead_dedupe
             (tenant_id, scope, dedupe_key, event_id, first_seen_at, last_seen_at, seen_count)
         VALUES ($1, $2, $3, $4, $5, $5, 1)
         ON CONFLICT (tenant_id, scope, dedupe_key) DO UPDATE SET
             last_seen_at = EXCLUDED.last_seen_at,
             seen_count = lead_dedupe.seen_count + 1,
             event_id = CASE WHEN lead_dedupe.first_seen_at < $6
                 THEN EXCLUDED.event_id ELSE lead_dedupe.event_id END,
             first_seen_at = CASE WHEN lead_dedupe.first_seen_at < $6
                 THEN EXCLUDED.first_seen_at ELSE lead_dedupe.first_seen_at END
         RETURNING event_id, first_seen_at",
        tenant.as_uuid(),
        scope,
        dedupe_key,
        event_id.as_uuid(),
        now,
        horizon_start,
    )
    .fetch_one(conn)
    .await?;
    let first_event_id = EventId::from_uuid(row.event_id);
    if first_event_id == event_id {
        Ok(Seen::First)
    } else {
        Ok(Seen::Again {
            first_event_id,
            first_seen_at: row.first_seen_at,
        })
    }
}

/// Deletes up to `limit` records first seen before `cutoff`; returns how many.
pub async fn sweep(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM lead_dedupe WHERE ctid IN (
             SELECT ctid FROM lead_dedupe WHERE first_seen_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        cutoff,
        limit,
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
