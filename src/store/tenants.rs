//! `clients`, `client_configurations`, `client_features`: tenant rows.
//!
//! Every function runs inside a transaction opened with `Store::begin_tenant` or
//! `Store::begin_platform`; row-level security decides what it can see.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::ids::TenantId;

/// A client as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    /// Tenant id.
    pub id: TenantId,
    /// Unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    /// IANA zone.
    pub timezone: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

struct RawClient {
    id: uuid::Uuid,
    slug: String,
    name: String,
    status: String,
    timezone: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<RawClient> for ClientRow {
    fn from(raw: RawClient) -> Self {
        Self {
            id: TenantId::from_uuid(raw.id),
            slug: raw.slug,
            name: raw.name,
            status: raw.status,
            timezone: raw.timezone,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        }
    }
}

/// Inserts a client; a taken slug is a unique violation (`clients_slug_key`).
pub async fn insert(
    conn: &mut PgConnection,
    id: TenantId,
    slug: &str,
    name: &str,
    timezone: &str,
) -> Result<ClientRow, sqlx::Error> {
    let row = sqlx::query_as!(
        RawClient,
        "INSERT INTO clients (id, slug, name, timezone) VALUES ($1, $2, $3, $4)
         RETURNING id, slug, name, status, timezone, created_at, updated_at",
        id.as_uuid(),
        slug,
        name,
        timezone,
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Returns one client, if visible.
pub async fn get(conn: &mut PgConnection, id: TenantId) -> Result<Option<ClientRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawClient,
        "SELECT id, slug, name, status, timezone, created_at, updated_at FROM clients WHERE id = $1",
        id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// Returns one client by its slug, if visible.
pub async fn get_by_slug(
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Option<ClientRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawClient,
        "SELECT id, slug, name, status, timezone, created_at, updated_at FROM clients WHERE slug = $1",
        slug,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// Lists visible clients by slug, after `after` (keyset pagination).
pub async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ClientRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        RawClient,
        "SELECT id, slug, name, status, timezone, created_at, updated_at FROM clients
         WHERE $1::text IS NULL OR slug > $1 ORDER BY slug LIMIT $2",
        after,
        limit,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Updates name, time zone and status (each only when given).
pub async fn update(
    conn: &mut PgConnection,
    id: TenantId,
    name: Option<&str>,
    timezone: Option<&str>,
    status: Option<&str>,
) -> Result<Option<ClientRow>, sqlx::Error> {
    let row = sqlx::query_as!(
        RawClient,
        "UPDATE clients SET name = coalesce($2, name), timezone = coalesce($3, timezone),
             status = coalesce($4, status)
         WHERE id = $1
         RETURNING id, slug, name, status, timezone, created_at, updated_at",
        id.as_uuid(),
        name,
        timezone,
        status,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Into::into))
}

/// A client's stored configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationRow {
    /// The configuration document.
    pub settings: serde_json::Value,
    /// Optimistic-concurrency revision.
    pub revision: i32,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Returns a client's configuration.
pub async fn configuration(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Option<ConfigurationRow>, sqlx::Error> {
    sqlx::query_as!(
        ConfigurationRow,
        "SELECT settings, revision, updated_at FROM client_configurations WHERE tenant_id = $1",
        tenant.as_uuid(),
    )
    .fetch_optional(conn)
    .await
}

/// Stores a client's configuration, mirroring the provider kinds into their columns.
#[allow(clippy::too_many_arguments)] // NOTE: one column each; a struct would only rename them.
pub async fn put_configuration(
    conn: &mut PgConnection,
    tenant: TenantId,
    settings: &serde_json::Value,
    crm: Option<&str>,
    telephony: Option<&str>,
    voice: Option<&str>,
    calendar: Option<&str>,
) -> Result<ConfigurationRow, sqlx::Error> {
    sqlx::query_as!(
        ConfigurationRow,
        "INSERT INTO client_configurations
             (tenant_id, settings, crm_provider, telephony_provider, voice_provider, calendar_provider)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings,
             crm_provider = EXCLUDED.crm_provider, telephony_provider = EXCLUDED.telephony_provider,
             voice_provider = EXCLUDED.voice_provider, calendar_provider = EXCLUDED.calendar_provider,
             revision = client_configurations.revision + 1
         RETURNING settings, revision, updated_at",
        tenant.as_uuid(),
        settings,
        crm,
        telephony,
        voice,
        calendar,
    )
    .fetch_one(conn)
    .await
}

/// A feature flag.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureRow {
    /// Flag name.
    pub flag: String,
    /// On or off.
    pub enabled: bool,
    /// Variant weights or parameters.
    pub variants: serde_json::Value,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Lists a client's feature flags.
pub async fn features(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<FeatureRow>, sqlx::Error> {
    sqlx::query_as!(
        FeatureRow,
        "SELECT flag, enabled, variants, updated_at FROM client_features WHERE tenant_id = $1 ORDER BY flag",
        tenant.as_uuid(),
    )
    .fetch_all(conn)
    .await
}

/// Sets a feature flag.
pub async fn put_feature(
    conn: &mut PgConnection,
    tenant: TenantId,
    flag: &str,
    enabled: bool,
    variants: &serde_json::Value,
) -> Result<FeatureRow, sqlx::Error> {
    sqlx::query_as!(
        FeatureRow,
        "INSERT INTO client_features (tenant_id, flag, enabled, variants) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, flag) DO UPDATE SET enabled = EXCLUDED.enabled, variants = EXCLUDED.variants
         RETURNING flag, enabled, variants, updated_at",
        tenant.as_uuid(),
        flag,
        enabled,
        variants,
    )
    .fetch_one(conn)
    .await
}

/// Deletes a feature flag; returns whether it existed.
pub async fn delete_feature(
    conn: &mut PgConnection,
    tenant: TenantId,
    flag: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "DELETE FROM client_features WHERE tenant_id = $1 AND flag = $2",
        tenant.as_uuid(),
        flag,
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Returns the tenant whose configuration names HighLevel location `location_id` (platform
/// transaction: the tenant is what the caller is looking for).
pub async fn find_by_gohighlevel_location(
    conn: &mut PgConnection,
    location_id: &str,
) -> Result<Option<TenantId>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "SELECT tenant_id FROM client_configurations
         WHERE settings #>> '{providers,gohighlevel,location_id}' = $1",
        location_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(TenantId::from_uuid))
}

/// Returns the tenant whose configuration names Zoho organization `org_id` (platform
/// transaction).
pub async fn find_by_zoho_org(
    conn: &mut PgConnection,
    org_id: &str,
) -> Result<Option<TenantId>, sqlx::Error> {
    let row = sqlx::query_scalar!(
        "SELECT tenant_id FROM client_configurations
         WHERE settings #>> '{providers,zoho,org_id}' = $1",
        org_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(TenantId::from_uuid))
}
