//! `api_keys`: management API keys, stored as SHA-256 hashes only.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::ids::{ApiKeyId, TenantId};

/// An API key as stored (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Key id.
    pub id: ApiKeyId,
    /// The tenant it acts for; `None` for operator keys.
    pub tenant_id: Option<TenantId>,
    /// Label.
    pub name: String,
    /// Readable start of the key.
    pub display_prefix: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Requests per minute.
    pub rate_limit_per_minute: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// End of the rotation overlap, if rotated.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last authenticated use (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

struct RawKey {
    id: uuid::Uuid,
    tenant_id: Option<uuid::Uuid>,
    name: String,
    display_prefix: String,
    scopes: Vec<String>,
    rate_limit_per_minute: i32,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<RawKey> for ApiKeyRow {
    fn from(raw: RawKey) -> Self {
        Self {
            id: ApiKeyId::from_uuid(raw.id),
            tenant_id: raw.tenant_id.map(TenantId::from_uuid),
            name: raw.name,
            display_prefix: raw.display_prefix,
            scopes: raw.scopes,
            rate_limit_per_minute: raw.rate_limit_per_minute,
            created_at: raw.created_at,
            expires_at: raw.expires_at,
            revoked_at: raw.revoked_at,
            last_used_at: raw.last_used_at,
        }
    }
}

impl ApiKeyRow {
    /// Returns true when the key may authenticate at `now`.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

/// A new key to store.
#[derive(Debug)]
pub struct NewApiKey<'a> {
    /// Key id.
    pub id: ApiKeyId,
    /// Tenant, or `None` for an operator key.
    pub tenant_id: Option<TenantId>,
    /// Label.
    pub name: &'a str,
    /// Readable start.
    pub display_prefix: &'a str,
    /// SHA-256 of the key.
    pub key_hash: &'a [u8],
    /// Scopes.
    pub scopes: &'a [String],
    /// Requests per minute.
    pub rate_limit_per_minute: i32,
}

/// Stores a new key.
pub async fn insert(
    conn: &mut PgConnection,
    key: &NewApiKey<'_>,
) -> Result<ApiKeyRow, sqlx::Error> {
    let row = sqlx::query_as!(
        RawKey,
        "INSERT INTO api_keys (id, tenant_id, name, display_prefix, key_hash, scopes, rate_limit_per_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, tenant_id, name, display_prefix, scopes, rate_limit_per_minute, created_at,
             expires_at, revoked_at, last_used_at",
        key.id.as_uuid(),
        key.tenant_id.map(|t| t.as_uuid()),
        key.name,
        key.display_prefix,
        key.key_hash,
        key.scopes,
        key.rate_limit_per_minute,
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Finds a key by the hash of its text (platform mode: the tenant is not known yet).
pub async fn find_by_hash(
    conn: &mut PgConnection,
    key_hash: &[u8],
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawKey,
        "SELECT id, tenant_id, name, display_prefix, scopes, rate_limit_per_minute, created_at,
             expires_at, revoked_at, last_used_at
         FROM api_keys WHERE key_hash = $1",
        key_hash,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// Returns one key of a tenant.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ApiKeyId,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawKey,
        "SELECT id, tenant_id, name, display_prefix, scopes, rate_limit_per_minute, created_at,
             expires_at, revoked_at, last_used_at
         FROM api_keys WHERE id = $1 AND tenant_id = $2",
        id.as_uuid(),
        tenant.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// Lists a tenant's keys, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        RawKey,
        "SELECT id, tenant_id, name, display_prefix, scopes, rate_limit_per_minute, created_at,
             expires_at, revoked_at, last_used_at
         FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Ends a rotated key's life at `until` and links its successor.
pub async fn retire(
    conn: &mut PgConnection,
    id: ApiKeyId,
    until: DateTime<Utc>,
    replaced_by: ApiKeyId,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE api_keys SET expires_at = LEAST(coalesce(expires_at, $2), $2), replaced_by = $3
         WHERE id = $1 AND revoked_at IS NULL",
        id.as_uuid(),
        until,
        replaced_by.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Revokes a key at once; returns whether it was live.
pub async fn revoke(conn: &mut PgConnection, id: ApiKeyId) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records a use, at most once a minute per key (no write per request).
pub async fn touch(conn: &mut PgConnection, id: ApiKeyId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}
