//! `processed_events`: the runner's `(stage, event_id)` idempotency claims and stored outputs.

use sqlx::PgConnection;

use crate::ids::{EventId, TenantId};

/// Claims `(stage, event_id)`; returns false when an earlier delivery already holds it.
///
/// The insert blocks while another open transaction holds the same key, so two concurrent
/// deliveries of one message never both run the handler.
pub async fn claim(
    conn: &mut PgConnection,
    stage: &str,
    event_id: EventId,
    tenant_id: TenantId,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "INSERT INTO processed_events (stage, event_id, tenant_id) VALUES ($1, $2, $3)
         ON CONFLICT (stage, event_id) DO NOTHING",
        stage,
        event_id.as_uuid(),
        tenant_id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Stores the encoded outputs of a claimed event (same transaction as the claim).
pub async fn record_outputs(
    conn: &mut PgConnection,
    stage: &str,
    event_id: EventId,
    outputs: &[u8],
    output_count: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE processed_events SET outputs = $3, output_count = $4
         WHERE stage = $1 AND event_id = $2",
        stage,
        event_id.as_uuid(),
        outputs,
        output_count,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns `Some(outputs)` when `(stage, event_id)` is claimed (outputs `None`: it emitted
/// nothing), `None` when it is not.
pub async fn claimed(
    conn: &mut PgConnection,
    stage: &str,
    event_id: EventId,
) -> Result<Option<Option<Vec<u8>>>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT outputs FROM processed_events WHERE stage = $1 AND event_id = $2",
        stage,
        event_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| row.outputs))
}

/// Deletes up to `limit` claims older than `older_than`; returns how many.
///
/// Safe once a claim is older than any redelivery can be: JetStream stops redelivering after
/// `max_deliver`, and a replayed dead letter carries a new event id.
pub async fn sweep(
    conn: &mut PgConnection,
    older_than: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM processed_events WHERE ctid IN (
             SELECT ctid FROM processed_events WHERE processed_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        older_than,
        limit,
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
