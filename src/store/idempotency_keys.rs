//! `idempotency_keys`: `Idempotency-Key` of `POST /v1/calls`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::ids::TenantId;

/// What the key already held when a request arrived.
#[derive(Clone, Debug, PartialEq)]
pub enum Reservation {
    /// The key was free (or its in-flight owner's lock had expired): this request owns it.
    Reserved,
    /// A completed request with the same digest: replay its response.
    Completed {
        /// Status code to replay.
        status_code: u16,
        /// Body to replay.
        response: serde_json::Value,
    },
    /// Another request with the same digest is still in flight.
    InFlight,
    /// The key was used with another request.
    Mismatch,
}

/// Reserves `key` for a request with `digest`, or says what holds it.
///
/// Runs in its own short transaction (the caller commits right after): the row lock of the
/// upsert makes two concurrent requests with one key see each other.
pub async fn reserve(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    digest: &str,
    now: DateTime<Utc>,
    locked_until: DateTime<Utc>,
) -> Result<Reservation, sqlx::Error> {
    // Take the key when it is new, or when an in-flight owner with the same request crashed
    // (its lock expired); otherwise leave the row as it is and read it.
    let taken = sqlx::query!(
        "INSERT INTO idempotency_keys (tenant_id, key, request_digest, state, locked_until)
         VALUES ($1, $2, $3, 'in_flight', $5)
         ON CONFLICT (tenant_id, key) DO UPDATE SET locked_until = EXCLUDED.locked_until
             WHERE idempotency_keys.state = 'in_flight'
               AND idempotency_keys.request_digest = EXCLUDED.request_digest
               AND idempotency_keys.locked_until < $4
         RETURNING key",
        tenant.as_uuid(),
        key,
        digest,
        now,
        locked_until,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if taken.is_some() {
        return Ok(Reservation::Reserved);
    }
    let row = sqlx::query!(
        "SELECT request_digest, state, status_code, response FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2",
        tenant.as_uuid(),
        key,
    )
    .fetch_one(conn)
    .await?;
    if row.request_digest != digest {
        return Ok(Reservation::Mismatch);
    }
    match (row.state.as_str(), row.status_code, row.response) {
        ("completed", Some(status), Some(response)) => Ok(Reservation::Completed {
            status_code: u16::try_from(status).unwrap_or(500),
            response,
        }),
        _ => Ok(Reservation::InFlight),
    }
}

/// Stores the response of the request that owns `key`.
pub async fn complete(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    status_code: u16,
    response: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE idempotency_keys SET state = 'completed', status_code = $3, response = $4
         WHERE tenant_id = $1 AND key = $2",
        tenant.as_uuid(),
        key,
        i32::from(status_code),
        response,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Frees `key` after its request failed without an effect (e.g. the bus was down), so a
/// retry with the same key runs again instead of replaying the failure.
pub async fn release(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND state = 'in_flight'",
        tenant.as_uuid(),
        key,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `limit` keys created before `cutoff`; returns how many.
pub async fn sweep(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        cutoff,
        limit,
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
