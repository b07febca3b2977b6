//! `client_credentials`: sealed provider secrets. Plaintext never reaches this module.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::crypto::{KeyId, Sealed};
use crate::ids::TenantId;

/// What may be shown about a credential: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Kind, e.g. `twilio.auth_token`.
    pub kind: String,
    /// Masked hint.
    pub hint: Option<String>,
    /// Master key id that sealed it.
    pub key_id: String,
    /// Token expiry, for OAuth tokens.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A sealed credential with its identity, for opening and re-sealing.
#[derive(Clone, Debug)]
pub struct SealedCredential {
    /// Row id.
    pub id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// Kind (bound into the AEAD data).
    pub kind: String,
    /// The sealed bytes.
    pub sealed: Sealed,
    /// Token expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

struct RawSealed {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    kind: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    expires_at: Option<DateTime<Utc>>,
}

impl RawSealed {
    fn into_sealed(self) -> Result<SealedCredential, sqlx::Error> {
        let key_id = KeyId::parse(&self.key_id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(SealedCredential {
            id: self.id,
            tenant_id: TenantId::from_uuid(self.tenant_id),
            kind: self.kind,
            sealed: Sealed {
                key_id,
                nonce: self.nonce,
                ciphertext: self.ciphertext,
            },
            expires_at: self.expires_at,
        })
    }
}

/// Lists a client's credentials, masked.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<CredentialInfo>, sqlx::Error> {
    sqlx::query_as!(
        CredentialInfo,
        "SELECT kind, hint, key_id, expires_at, updated_at FROM client_credentials
         WHERE tenant_id = $1 ORDER BY kind",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// Returns one sealed credential.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
) -> Result<Option<SealedCredential>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawSealed,
        "SELECT id, tenant_id, kind, key_id, nonce, ciphertext, expires_at FROM client_credentials
         WHERE tenant_id = $1 AND kind = $2",
        tenant.as_uuid(),
        kind,
    )
    .fetch_optional(conn)
    .await?;
    row.map(RawSealed::into_sealed).transpose()
}

/// Returns every sealed credential of a tenant, by kind.
pub async fn list_sealed(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<SealedCredential>, sqlx::Error> {
    let rows = sqlx::query_as!(
        RawSealed,
        "SELECT id, tenant_id, kind, key_id, nonce, ciphertext, expires_at FROM client_credentials
         WHERE tenant_id = $1 ORDER BY kind",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(RawSealed::into_sealed).collect()
}

/// Stores (or replaces) a sealed credential; returns whether one was replaced.
pub async fn put(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
    sealed: &Sealed,
    hint: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query!(
        r#"INSERT INTO client_credentials (id, tenant_id, kind, key_id, nonce, ciphertext, hint, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, kind) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
             ciphertext = EXCLUDED.ciphertext, hint = EXCLUDED.hint, expires_at = EXCLUDED.expires_at
         RETURNING (xmax <> 0) AS "replaced!""#,
        uuid::Uuid::now_v7(),
        tenant.as_uuid(),
        kind,
        sealed.key_id.as_str(),
        &sealed.nonce,
        &sealed.ciphertext,
        hint,
        expires_at,
    )
    .fetch_one(conn)
    .await?;
    Ok(row.replaced)
}

/// Deletes a credential; returns whether it existed.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM client_credentials WHERE tenant_id = $1 AND kind = $2",
        tenant.as_uuid(),
        kind,
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Replaces the sealed bytes of one row, only if it is still sealed under `previous`.
pub async fn reseal(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    previous: &KeyId,
    sealed: &Sealed,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE client_credentials SET key_id = $3, nonce = $4, ciphertext = $5
         WHERE id = $1 AND key_id = $2",
        id,
        previous.as_str(),
        sealed.key_id.as_str(),
        &sealed.nonce,
        &sealed.ciphertext,
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Counts credentials sealed under another key than `active`.
pub async fn count_under_other_keys(
    conn: &mut PgConnection,
    active: &KeyId,
) -> Result<i64, sqlx::Error> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM client_credentials WHERE key_id <> $1"#,
        active.as_str(),
    )
    .fetch_one(conn)
    .await?;
    Ok(count)
}

/// Returns up to `limit` credentials sealed under another key than `active`, leaving out the
/// rows in `except`, locking them (`SKIP LOCKED`, so concurrent rotations share the work).
///
/// Rotation passes the rows it could not open, so a record it cannot read is reported once
/// instead of coming back in every batch.
pub async fn sealed_under_other_keys(
    conn: &mut PgConnection,
    active: &KeyId,
    except: &[uuid::Uuid],
    limit: i64,
) -> Result<Vec<SealedCredential>, sqlx::Error> {
    let rows = sqlx::query_as!(
        RawSealed,
        "SELECT id, tenant_id, kind, key_id, nonce, ciphertext, expires_at FROM client_credentials
         WHERE key_id <> $1 AND NOT (id = ANY($2)) ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
        active.as_str(),
        except,
        limit,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(RawSealed::into_sealed).collect()
}

/// Returns one sealed credential and locks its row until the transaction ends, so no other
/// writer replaces it between this read and the caller's write.
pub async fn get_for_update(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
) -> Result<Option<SealedCredential>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawSealed,
        "SELECT id, tenant_id, kind, key_id, nonce, ciphertext, expires_at FROM client_credentials
         WHERE tenant_id = $1 AND kind = $2 FOR UPDATE",
        tenant.as_uuid(),
        kind,
    )
    .fetch_optional(conn)
    .await?;
    row.map(RawSealed::into_sealed).transpose()
}

/// Takes the transaction-scoped advisory lock on `oauth:<tenant>:<kind>`: one OAuth refresh
/// of a credential at a time, across every process; released at commit or rollback.
pub async fn lock_oauth_refresh(
    conn: &mut PgConnection,
    tenant: TenantId,
    kind: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(
             hashtextextended('oauth:' || $1::uuid::text || ':' || $2::text, 0))",
        tenant.as_uuid(),
        kind,
    )
    .execute(conn)
    .await?;
    Ok(())
}
