//! Management operations. Each one validates, changes rows and appends its audit entry in the
//! caller's transaction, so a change and its audit record commit together or not at all.
//!
//! The caller opens the transaction with the right isolation (`Store::begin_tenant` for a
//! tenant's own data, `Store::begin_platform` for operator work) and commits it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use super::api_keys::{self, Scope};
use super::audit::{Actor, digest};
use super::config::{ClientConfiguration, PROVIDER_NAMES};
use super::{FieldError, validate_name, validate_slug, validate_timezone};
use crate::crypto::{self, Keyring};
use crate::ids::{ApiKeyId, TenantId};
use crate::secret::Secret;
use crate::store::api_keys::{ApiKeyRow, NewApiKey};
use crate::store::audit::NewAudit;
use crate::store::tenants::ClientRow;
use crate::store::{api_keys as key_store, audit as audit_store, credentials, tenants};

/// Why a management operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The target does not exist (or is not visible to the caller).
    #[error("not found")]
    NotFound,
    /// The input is invalid; every bad field is named.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// The change conflicts with existing state (e.g. a taken slug).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller may not make this change.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Stored state is unreadable (a bug or a manual edit); details are for the logs only.
    #[error("internal: {0}")]
    Internal(String),
    /// A sealed credential could not be opened (wrong key, tampered).
    #[error("credential: {0}")]
    Crypto(#[from] crypto::CryptoError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(vec![FieldError::new(field, message)])
}

/// Appends an audit entry for a change `actor` made (shared with the other management
/// modules of `tenancy`).
pub(super) async fn audit(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: Option<TenantId>,
    action: &str,
    target: &str,
    before: Option<String>,
    after: Option<String>,
) -> Result<(), ServiceError> {
    let entry = NewAudit {
        tenant_id: tenant,
        actor: &actor.label,
        action,
        target,
        before_digest: before.as_deref(),
        after_digest: after.as_deref(),
        request_id: actor.request_id.as_deref(),
    };
    audit_store::append(conn, &entry).await?;
    Ok(())
}

/// A client as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Client {
    /// Client (tenant) id.
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    /// Unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    /// IANA time zone.
    pub timezone: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ClientRow> for Client {
    fn from(row: ClientRow) -> Self {
        Self {
            id: row.id,
            slug: row.slug,
            name: row.name,
            status: row.status,
            timezone: row.timezone,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A feature flag setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureInput {
    /// On or off.
    pub enabled: bool,
    /// Variant weights or parameters (A/B tests).
    #[serde(default = "super::config::empty_object")]
    #[schema(value_type = Object)]
    pub variants: serde_json::Value,
}

/// A credential value to seal.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    /// The secret; never returned, logged or audited.
    #[schema(value_type = String)]
    pub value: Secret<String>,
    /// Expiry, for tokens that have one.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Onboarding: a client with its configuration, features and credentials in one request.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// Unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// IANA time zone of the business.
    pub timezone: String,
    /// Providers and behaviour.
    #[serde(default)]
    pub configuration: Option<ClientConfiguration>,
    /// Feature flags by name.
    #[serde(default)]
    pub features: BTreeMap<String, FeatureInput>,
    /// Credentials by kind (e.g. `twilio.auth_token`).
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialInput>,
}

/// Changes to a client.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New time zone.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// Validates a feature flag name.
fn validate_flag(field: &str, flag: &str, errors: &mut Vec<FieldError>) {
    let valid = (1..=64).contains(&flag.len())
        && flag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if !valid {
        errors.push(FieldError::new(
            field,
            "must be 1-64 lowercase letters, digits, `_`, `-` or `.`",
        ));
    }
}

/// Validates a credential kind: `<provider>.<name>`.
pub fn validate_credential_kind(field: &str, kind: &str, errors: &mut Vec<FieldError>) {
    let valid = kind.split_once('.').is_some_and(|(provider, name)| {
        PROVIDER_NAMES.contains(&provider)
            && (1..=40).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if !valid {
        errors.push(FieldError::new(
            field,
            format!(
                "must be `<provider>.<name>` with a known provider ({})",
                PROVIDER_NAMES.join(", ")
            ),
        ));
    }
}

fn validate_secret(field: &str, value: &Secret<String>, errors: &mut Vec<FieldError>) {
    let length = value.expose().len();
    if !(1..=16_384).contains(&length) {
        errors.push(FieldError::new(field, "must be 1-16384 bytes"));
    }
}

/// Returns the stored configuration, or the defaults.
pub async fn configuration(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<ClientConfiguration, ServiceError> {
    match tenants::configuration(conn, tenant).await? {
        Some(row) => serde_json::from_value(row.settings)
            .map_err(|e| ServiceError::Internal(format!("stored configuration unreadable: {e}"))),
        None => Ok(ClientConfiguration::default()),
    }
}

fn kind_name<T: Serialize>(kind: Option<T>) -> Option<String> {
    kind.and_then(|k| serde_json::to_value(k).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
}

async fn store_configuration(
    conn: &mut PgConnection,
    tenant: TenantId,
    config: &ClientConfiguration,
) -> Result<(), ServiceError> {
    let settings =
        serde_json::to_value(config).map_err(|e| ServiceError::Conflict(e.to_string()))?;
    tenants::put_configuration(
        conn,
        tenant,
        &settings,
        kind_name(config.crm).as_deref(),
        kind_name(config.telephony).as_deref(),
        kind_name(config.voice).as_deref(),
        kind_name(config.calendar).as_deref(),
    )
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) => match db.constraint() {
            Some("client_configurations_gohighlevel_location") => ServiceError::Conflict(
                "`providers.gohighlevel.location_id` belongs to another client".to_owned(),
            ),
            Some("client_configurations_zoho_org") => ServiceError::Conflict(
                "`providers.zoho.org_id` belongs to another client".to_owned(),
            ),
            _ => ServiceError::Database(error),
        },
        _ => ServiceError::Database(error),
    })?;
    Ok(())
}

/// Creates a client with everything it needs (platform transaction; operators only).
pub async fn onboard(
    conn: &mut PgConnection,
    actor: &Actor,
    keyring: &Keyring,
    request: OnboardRequest,
) -> Result<Client, ServiceError> {
    let mut errors = Vec::new();
    validate_slug("slug", &request.slug, &mut errors);
    validate_name("name", &request.name, &mut errors);
    validate_timezone("timezone", &request.timezone, &mut errors);
    if let Some(config) = &request.configuration {
        errors.extend(config.validate("configuration"));
    }
    for flag in request.features.keys() {
        validate_flag(&format!("features.{flag}"), flag, &mut errors);
        if !request.features[flag].variants.is_object() {
            errors.push(FieldError::new(
                format!("features.{flag}.variants"),
                "must be an object",
            ));
        }
    }
    for (kind, input) in &request.credentials {
        validate_credential_kind(&format!("credentials.{kind}"), kind, &mut errors);
        validate_secret(
            &format!("credentials.{kind}.value"),
            &input.value,
            &mut errors,
        );
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let tenant = TenantId::from_uuid(uuid::Uuid::now_v7());
    let row = match tenants::insert(
        conn,
        tenant,
        &request.slug,
        request.name.trim(),
        &request.timezone,
    )
    .await
    {
        Ok(row) => row,
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("clients_slug_key") => {
            return Err(ServiceError::Conflict(format!(
                "slug `{}` is taken",
                request.slug
            )));
        }
        Err(error) => return Err(error.into()),
    };
    let client = Client::from(row);
    audit(
        conn,
        actor,
        Some(tenant),
        "client.create",
        &format!("client/{tenant}"),
        None,
        Some(digest(&client)),
    )
    .await?;
    let config = request.configuration.unwrap_or_default();
    store_configuration(conn, tenant, &config).await?;
    audit(
        conn,
        actor,
        Some(tenant),
        "configuration.put",
        &format!("client/{tenant}/configuration"),
        None,
        Some(digest(&config)),
    )
    .await?;
    for (flag, input) in &request.features {
        put_feature(conn, actor, tenant, flag, input).await?;
    }
    for (kind, input) in &request.credentials {
        put_credential(conn, actor, keyring, tenant, kind, input).await?;
    }
    Ok(client)
}

/// Returns one client.
pub async fn client(conn: &mut PgConnection, tenant: TenantId) -> Result<Client, ServiceError> {
    tenants::get(conn, tenant)
        .await?
        .map(Client::from)
        .ok_or(ServiceError::NotFound)
}

/// Changes a client's name or time zone.
pub async fn update_client(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    patch: &ClientPatch,
) -> Result<Client, ServiceError> {
    let mut errors = Vec::new();
    if let Some(name) = &patch.name {
        validate_name("name", name, &mut errors);
    }
    if let Some(zone) = &patch.timezone {
        validate_timezone("timezone", zone, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let before = client(conn, tenant).await?;
    let name = patch.name.as_deref().map(str::trim);
    let row = tenants::update(conn, tenant, name, patch.timezone.as_deref(), None)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let after = Client::from(row);
    audit(
        conn,
        actor,
        Some(tenant),
        "client.update",
        &format!("client/{tenant}"),
        Some(digest(&before)),
        Some(digest(&after)),
    )
    .await?;
    Ok(after)
}

/// Disables or re-enables a client.
pub async fn set_status(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    active: bool,
) -> Result<Client, ServiceError> {
    let before = client(conn, tenant).await?;
    let status = if active { "active" } else { "disabled" };
    let row = tenants::update(conn, tenant, None, None, Some(status))
        .await?
        .ok_or(ServiceError::NotFound)?;
    let after = Client::from(row);
    if !active {
        // A disabled client places no calls: its retries and follow-ups go at once (enabling
        // it again does not bring them back).
        crate::store::scheduled_jobs::cancel_for_tenant(conn, tenant, "client disabled").await?;
    }
    let action = if active {
        "client.enable"
    } else {
        "client.disable"
    };
    audit(
        conn,
        actor,
        Some(tenant),
        action,
        &format!("client/{tenant}"),
        Some(digest(&before)),
        Some(digest(&after)),
    )
    .await?;
    Ok(after)
}

/// Replaces a client's configuration. `operator` may set operator-only provider keys.
pub async fn put_configuration(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    config: &ClientConfiguration,
    operator: bool,
) -> Result<ClientConfiguration, ServiceError> {
    let errors = config.validate("");
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let before = configuration(conn, tenant).await?;
    if !operator {
        // A tenant may keep what an operator set, but not introduce or change it.
        let previous = before.operator_only_fields("");
        for field in config.operator_only_fields("") {
            let (_, rest) = field.split_once("providers.").unwrap_or(("", &field));
            let (provider, key) = rest.split_once('.').unwrap_or((rest, ""));
            let unchanged = previous.contains(&field)
                && before.providers.get(provider).and_then(|p| p.get(key))
                    == config.providers.get(provider).and_then(|p| p.get(key));
            if !unchanged {
                return Err(ServiceError::Forbidden(format!(
                    "only an operator may set `{}`",
                    field.trim_start_matches('.')
                )));
            }
        }
    }
    client(conn, tenant).await?;
    store_configuration(conn, tenant, config).await?;
    audit(
        conn,
        actor,
        Some(tenant),
        "configuration.put",
        &format!("client/{tenant}/configuration"),
        Some(digest(&before)),
        Some(digest(config)),
    )
    .await?;
    Ok(config.clone())
}

/// Sets a feature flag.
pub async fn put_feature(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    flag: &str,
    input: &FeatureInput,
) -> Result<(), ServiceError> {
    let mut errors = Vec::new();
    validate_flag("flag", flag, &mut errors);
    if !input.variants.is_object() {
        errors.push(FieldError::new("variants", "must be an object"));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    client(conn, tenant).await?;
    let before = tenants::features(conn, tenant)
        .await?
        .into_iter()
        .find(|f| f.flag == flag);
    let variants = if input.variants.is_null() {
        serde_json::json!({})
    } else {
        input.variants.clone()
    };
    tenants::put_feature(conn, tenant, flag, input.enabled, &variants).await?;
    let before =
        before.map(|f| digest(&serde_json::json!({"enabled": f.enabled, "variants": f.variants})));
    let after = digest(&serde_json::json!({"enabled": input.enabled, "variants": variants}));
    audit(
        conn,
        actor,
        Some(tenant),
        "feature.put",
        &format!("client/{tenant}/features/{flag}"),
        before,
        Some(after),
    )
    .await
}

/// Deletes a feature flag.
pub async fn delete_feature(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    flag: &str,
) -> Result<(), ServiceError> {
    client(conn, tenant).await?;
    if !tenants::delete_feature(conn, tenant, flag).await? {
        return Err(ServiceError::NotFound);
    }
    audit(
        conn,
        actor,
        Some(tenant),
        "feature.delete",
        &format!("client/{tenant}/features/{flag}"),
        None,
        None,
    )
    .await
}

/// Seals and stores a credential (set, or rotate when one exists).
pub async fn put_credential(
    conn: &mut PgConnection,
    actor: &Actor,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    input: &CredentialInput,
) -> Result<(), ServiceError> {
    let mut errors = Vec::new();
    validate_credential_kind("kind", kind, &mut errors);
    validate_secret("value", &input.value, &mut errors);
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    client(conn, tenant).await?;
    let before = credentials::get(conn, tenant, kind)
        .await?
        .map(|c| sealed_digest(kind, &c.sealed));
    let sealed = crypto::seal(keyring, tenant, kind, &input.value);
    let replaced = credentials::put(
        conn,
        tenant,
        kind,
        &sealed,
        &crypto::mask(&input.value),
        input.expires_at,
    )
    .await?;
    let action = if replaced {
        "credential.rotate"
    } else {
        "credential.set"
    };
    let after = Some(sealed_digest(kind, &sealed));
    audit(
        conn,
        actor,
        Some(tenant),
        action,
        &format!("client/{tenant}/credentials/{kind}"),
        before,
        after,
    )
    .await
}

fn sealed_digest(kind: &str, sealed: &crypto::Sealed) -> String {
    digest(&serde_json::json!({
        "kind": kind,
        "key_id": sealed.key_id.as_str(),
        "ciphertext_sha256": digest(&sealed.ciphertext),
    }))
}

/// Deletes a credential.
pub async fn delete_credential(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    kind: &str,
) -> Result<(), ServiceError> {
    client(conn, tenant).await?;
    let Some(existing) = credentials::get(conn, tenant, kind).await? else {
        return Err(ServiceError::NotFound);
    };
    credentials::delete(conn, tenant, kind).await?;
    let before = Some(sealed_digest(kind, &existing.sealed));
    audit(
        conn,
        actor,
        Some(tenant),
        "credential.delete",
        &format!("client/{tenant}/credentials/{kind}"),
        before,
        None,
    )
    .await
}

/// Opens every credential of a tenant (for provider adapters and healthchecks only).
pub async fn open_credentials(
    conn: &mut PgConnection,
    keyring: &Keyring,
    tenant: TenantId,
) -> Result<BTreeMap<String, Secret<String>>, ServiceError> {
    let mut opened = BTreeMap::new();
    for credential in credentials::list_sealed(conn, tenant).await? {
        let plaintext = crypto::open(keyring, tenant, &credential.kind, &credential.sealed)?;
        opened.insert(credential.kind, plaintext);
    }
    Ok(opened)
}

/// A new API key: its row and its text, shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// The stored key.
    pub row: ApiKeyRow,
    /// The key text; show it once.
    pub text: Secret<String>,
}

/// What a new key may do.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// Label.
    pub name: String,
    /// Scopes, e.g. `["clients:read", "calls:write"]`.
    pub scopes: Vec<String>,
    /// Requests per minute (default 600).
    #[serde(default)]
    pub rate_limit_per_minute: Option<i32>,
}

fn parse_scopes(scopes: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if scopes.is_empty() {
        errors.push(FieldError::new("scopes", "must list at least one scope"));
    }
    let mut parsed: Vec<Scope> = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        match Scope::parse(scope) {
            Some(scope) => parsed.push(scope),
            None => errors.push(FieldError::new(
                format!("scopes[{index}]"),
                format!("unknown scope `{scope}`"),
            )),
        }
    }
    parsed.sort();
    parsed.dedup();
    parsed.into_iter().map(|s| s.as_str().to_owned()).collect()
}

/// Issues a key for `tenant` (or an operator key when `None`).
pub async fn issue_key(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: Option<TenantId>,
    request: &KeyRequest,
) -> Result<IssuedKey, ServiceError> {
    let mut errors = Vec::new();
    validate_name("name", &request.name, &mut errors);
    let scopes = parse_scopes(&request.scopes, &mut errors);
    let rate = request.rate_limit_per_minute.unwrap_or(600);
    if !(1..=100_000).contains(&rate) {
        errors.push(FieldError::new(
            "rate_limit_per_minute",
            "must be between 1 and 100000",
        ));
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    if let Some(tenant) = tenant {
        client(conn, tenant).await?;
    }
    let generated = api_keys::generate();
    let new = NewApiKey {
        id: ApiKeyId::from_uuid(uuid::Uuid::now_v7()),
        tenant_id: tenant,
        name: request.name.trim(),
        display_prefix: &generated.display_prefix,
        key_hash: &generated.hash,
        scopes: &scopes,
        rate_limit_per_minute: rate,
    };
    let row = key_store::insert(conn, &new).await?;
    let after = digest(
        &serde_json::json!({"id": row.id, "scopes": row.scopes, "prefix": row.display_prefix}),
    );
    audit(
        conn,
        actor,
        tenant,
        "api_key.create",
        &format!("api_key/{}", row.id),
        None,
        Some(after),
    )
    .await?;
    Ok(IssuedKey {
        row,
        text: generated.text,
    })
}

/// Rotates a key: issues a successor with the same scopes; the old key keeps working until
/// `overlap` has passed.
pub async fn rotate_key(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    key: ApiKeyId,
    overlap: chrono::Duration,
) -> Result<IssuedKey, ServiceError> {
    if overlap < chrono::Duration::zero() || overlap > chrono::Duration::days(30) {
        return Err(invalid("overlap_seconds", "must be between 0 and 30 days"));
    }
    let old = key_store::get(conn, tenant, key)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if !old.is_usable(Utc::now()) {
        return Err(ServiceError::Conflict(
            "the key is revoked or expired".to_owned(),
        ));
    }
    let request = KeyRequest {
        name: old.name.clone(),
        scopes: old.scopes.clone(),
        rate_limit_per_minute: Some(old.rate_limit_per_minute),
    };
    let issued = issue_key(conn, actor, Some(tenant), &request).await?;
    key_store::retire(conn, key, Utc::now() + overlap, issued.row.id).await?;
    audit(
        conn,
        actor,
        Some(tenant),
        "api_key.rotate",
        &format!("api_key/{key}"),
        None,
        Some(digest(&serde_json::json!({ "replaced_by": issued.row.id }))),
    )
    .await?;
    Ok(issued)
}

/// Revokes a key at once.
pub async fn revoke_key(
    conn: &mut PgConnection,
    actor: &Actor,
    tenant: TenantId,
    key: ApiKeyId,
) -> Result<(), ServiceError> {
    key_store::get(conn, tenant, key)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if !key_store::revoke(conn, key).await? {
        return Err(ServiceError::Conflict(
            "the key is already revoked".to_owned(),
        ));
    }
    audit(
        conn,
        actor,
        Some(tenant),
        "api_key.revoke",
        &format!("api_key/{key}"),
        None,
        None,
    )
    .await
}
