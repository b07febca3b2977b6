//! Operator commands for tenancy: `caller tenant …`, `caller keys rotate`, `caller admin …`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{
    AdminCommand, KeysCommand, TenantCommand, TenantConfigCommand, TenantCredentialCommand,
    TenantFeatureCommand,
};
use crate::ids::TenantId;
use crate::providers;
use crate::providers::health::{self, HealthInput, HealthStatus};
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::tenants;
use crate::store::{Store, audit as audit_store, credentials};
use crate::tenancy::FieldError;
use crate::tenancy::api_keys::Scope;
use crate::tenancy::audit::Actor;
use crate::tenancy::config::ClientConfiguration;
use crate::tenancy::rotation;
use crate::tenancy::service::{
    self, Client, ClientPatch, CredentialInput, FeatureInput, KeyRequest, OnboardRequest,
    ServiceError,
};

/// The operator running a management command: `$USER`, else `cli`.
pub(super) fn operator() -> Actor {
    let name = std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "cli".to_owned());
    Actor::operator(&name)
}

/// Turns a service error into one line; a validation failure names every field.
pub(super) fn service_error(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::Invalid(fields) => invalid(&fields),
        other => anyhow::anyhow!(other),
    }
}

fn invalid(fields: &[FieldError]) -> anyhow::Error {
    let fields: Vec<String> = fields
        .iter()
        .map(|field| format!("`{}` {}", field.field, field.message))
        .collect();
    anyhow::anyhow!("validation failed: {}", fields.join("; "))
}

/// Finds a client by id or slug (platform mode: the slug may be anyone's).
pub(super) async fn resolve(store: &Store, client: &str) -> anyhow::Result<Client> {
    let mut transaction = store.begin_platform().await?;
    let found = match TenantId::parse(client) {
        Ok(id) => tenants::get(&mut transaction, id).await?,
        Err(_) => tenants::get_by_slug(&mut transaction, client).await?,
    };
    transaction.rollback().await?;
    found
        .map(Client::from)
        .ok_or_else(|| anyhow::anyhow!("no client `{client}`"))
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    // serde_json's syntax errors give a position, never the text around it.
    serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Builds an onboarding request from the optional file and the flags, which override it.
///
/// Credentials are parsed one by one with fixed error texts: a parser's message could quote
/// the value it refused.
fn onboard_request(
    file: Option<&Path>,
    flags: [(&str, Option<String>); 3],
) -> anyhow::Result<OnboardRequest> {
    let mut document = match file {
        Some(path) => match read_json(path)? {
            serde_json::Value::Object(document) => document,
            _ => anyhow::bail!("`{}` must hold a JSON object", path.display()),
        },
        None => serde_json::Map::new(),
    };
    let mut errors = Vec::new();
    for (field, value) in flags {
        if let Some(value) = value {
            document.insert(field.to_owned(), serde_json::Value::String(value));
        }
        if !document.contains_key(field) {
            errors.push(FieldError::new(field, format!("is required (`--{field}`)")));
        }
    }
    let mut credentials = BTreeMap::new();
    match document.remove("credentials") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(entries)) => {
            for (kind, entry) in entries {
                match serde_json::from_value::<CredentialInput>(entry) {
                    Ok(input) => {
                        credentials.insert(kind, input);
                    }
                    Err(_) => errors.push(FieldError::new(
                        format!("credentials.{kind}"),
                        "must be {\"value\": string, \"expires_at\": RFC 3339 time (optional)}",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "credentials",
            "must be an object of kind to {\"value\", \"expires_at\"}",
        )),
    }
    if !errors.is_empty() {
        return Err(invalid(&errors));
    }
    let mut request: OnboardRequest = serde_json::from_value(serde_json::Value::Object(document))
        .context("invalid onboarding request")?;
    request.credentials = credentials;
    Ok(request)
}

/// Reads a credential value from standard input, without its final line break.
async fn read_secret_from_stdin() -> anyhow::Result<Secret<String>> {
    use std::io::IsTerminal as _;
    use tokio::io::AsyncReadExt as _;

    if std::io::stdin().is_terminal() {
        eprintln!("caller: type the value, then Enter and Ctrl-D");
    }
    let mut text = String::new();
    // One byte over the largest value the service accepts, plus a line break, so that a longer
    // one is refused by validation instead of being cut.
    tokio::io::stdin()
        .take(16_384 + 3)
        .read_to_string(&mut text)
        .await
        .context("cannot read the credential from standard input (it must be UTF-8)")?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text)
        .to_owned();
    Ok(Secret::new(value))
}

fn provider_name<T: serde::Serialize>(kind: T) -> Option<String> {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

pub(super) async fn tenant_command(
    settings: &Settings,
    command: TenantCommand,
) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.database).await?;
    let actor = operator();
    match command {
        TenantCommand::Create {
            slug,
            name,
            timezone,
            config_file,
        } => {
            let request = onboard_request(
                config_file.as_deref(),
                [("slug", slug), ("name", name), ("timezone", timezone)],
            )?;
            let keyring = settings.crypto.keyring()?;
            let mut transaction = store.begin_platform().await?;
            let client = service::onboard(&mut transaction, &actor, &keyring, request)
                .await
                .map_err(service_error)
                .context("create client")?;
            transaction.commit().await?;
            println!("created client {} {}", client.id, client.slug);
        }
        TenantCommand::List => {
            let mut transaction = store.begin_platform().await?;
            let mut after: Option<String> = None;
            let mut listed = 0;
            loop {
                let page = tenants::list(&mut transaction, after.as_deref(), 500).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.slug.clone());
                for row in page {
                    listed += 1;
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        row.id, row.slug, row.status, row.timezone, row.name
                    );
                }
            }
            transaction.rollback().await?;
            if listed == 0 {
                println!("no clients");
            }
        }
        TenantCommand::Show { client } => {
            let client = resolve(&store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let configuration = service::configuration(&mut transaction, client.id)
                .await
                .map_err(service_error)?;
            let features = tenants::features(&mut transaction, client.id).await?;
            let credentials = credentials::list(&mut transaction, client.id).await?;
            transaction.rollback().await?;
            let features: BTreeMap<String, serde_json::Value> = features
                .into_iter()
                .map(|f| {
                    let shown = serde_json::json!({
                        "enabled": f.enabled,
                        "variants": f.variants,
                        "updated_at": f.updated_at,
                    });
                    (f.flag, shown)
                })
                .collect();
            let credentials: Vec<serde_json::Value> = credentials
                .into_iter()
                .map(|c| {
                    serde_json::json!({
                        "kind": c.kind,
                        "hint": c.hint,
                        "key_id": c.key_id,
                        "expires_at": c.expires_at,
                        "updated_at": c.updated_at,
                    })
                })
                .collect();
            print_json(&serde_json::json!({
                "client": client,
                "configuration": configuration,
                "features": features,
                "credentials": credentials,
            }))?;
        }
        TenantCommand::Update {
            client,
            name,
            timezone,
        } => {
            let client = resolve(&store, &client).await?;
            let patch = ClientPatch { name, timezone };
            let mut transaction = store.begin_tenant(client.id).await?;
            let updated = service::update_client(&mut transaction, &actor, client.id, &patch)
                .await
                .map_err(service_error)
                .context("update client")?;
            transaction.commit().await?;
            println!(
                "updated client {} {}: name `{}`, timezone {}",
                updated.id, updated.slug, updated.name, updated.timezone
            );
        }
        TenantCommand::Disable { client } => set_status(&store, &actor, &client, false).await?,
        TenantCommand::Enable { client } => set_status(&store, &actor, &client, true).await?,
        TenantCommand::Config { command } => config_command(&store, &actor, command).await?,
        TenantCommand::Feature { command } => feature_command(&store, &actor, command).await?,
        TenantCommand::Credential { command } => {
            credential_command(settings, &store, &actor, command).await?;
        }
        TenantCommand::GohighlevelInstall { client } => {
            gohighlevel_install(settings, &store, &actor, &client).await?;
        }
        TenantCommand::Healthcheck { client } => {
            return healthcheck(settings, &store, &client).await;
        }
        TenantCommand::Audit { client, limit } => {
            let client = resolve(&store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let entries = audit_store::list(&mut transaction, client.id, None, limit).await?;
            transaction.rollback().await?;
            for entry in entries {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    entry.id,
                    entry.occurred_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    entry.actor,
                    entry.action,
                    entry.target
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exchanges a HighLevel authorization code (stdin) for the client's `gohighlevel.oauth`.
async fn gohighlevel_install(
    settings: &Settings,
    store: &Store,
    actor: &Actor,
    client: &str,
) -> anyhow::Result<()> {
    use crate::crm::gohighlevel::GoHighLevel;

    let keyring = std::sync::Arc::new(settings.crypto.keyring()?);
    let client = resolve(store, client).await?;
    let code = read_secret_from_stdin().await?;
    let directory = crate::tenancy::directory::Directory::new(
        store.clone(),
        Some(std::sync::Arc::clone(&keyring)),
        std::time::Duration::from_secs(1),
    );
    let adapter = GoHighLevel::new(
        store.clone(),
        directory,
        keyring,
        settings.gohighlevel.clone(),
    );
    let location = adapter
        .install(client.id, code.expose(), actor)
        .await
        .context("install highlevel")?;
    match location {
        Some(location) => println!(
            "stored `gohighlevel.oauth` of client {} for location {location}",
            client.slug
        ),
        None => println!("stored `gohighlevel.oauth` of client {}", client.slug),
    }
    Ok(())
}

async fn set_status(
    store: &Store,
    actor: &Actor,
    client: &str,
    active: bool,
) -> anyhow::Result<()> {
    let client = resolve(store, client).await?;
    let mut transaction = store.begin_tenant(client.id).await?;
    let changed = service::set_status(&mut transaction, actor, client.id, active)
        .await
        .map_err(service_error)?;
    transaction.commit().await?;
    println!(
        "client {} {} is {}",
        changed.id, changed.slug, changed.status
    );
    Ok(())
}

async fn config_command(
    store: &Store,
    actor: &Actor,
    command: TenantConfigCommand,
) -> anyhow::Result<()> {
    match command {
        TenantConfigCommand::Show { client } => {
            let client = resolve(store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let configuration = service::configuration(&mut transaction, client.id)
                .await
                .map_err(service_error)?;
            transaction.rollback().await?;
            print_json(&configuration)?;
        }
        TenantConfigCommand::Set { client, file } => {
            let client = resolve(store, &client).await?;
            let configuration: ClientConfiguration = serde_json::from_value(read_json(&file)?)
                .with_context(|| format!("`{}` is not a client configuration", file.display()))?;
            let mut transaction = store.begin_tenant(client.id).await?;
            service::put_configuration(&mut transaction, actor, client.id, &configuration, true)
                .await
                .map_err(service_error)
                .context("set configuration")?;
            transaction.commit().await?;
            println!(
                "replaced the configuration of client {} {}",
                client.id, client.slug
            );
        }
    }
    Ok(())
}

async fn feature_command(
    store: &Store,
    actor: &Actor,
    command: TenantFeatureCommand,
) -> anyhow::Result<()> {
    match command {
        TenantFeatureCommand::Set {
            client,
            flag,
            enabled,
            variants,
        } => {
            let variants = match variants {
                Some(text) => serde_json::from_str(&text).context("`--variants` is not JSON")?,
                None => crate::tenancy::config::empty_object(),
            };
            let client = resolve(store, &client).await?;
            let input = FeatureInput { enabled, variants };
            let mut transaction = store.begin_tenant(client.id).await?;
            service::put_feature(&mut transaction, actor, client.id, &flag, &input)
                .await
                .map_err(service_error)
                .with_context(|| format!("set feature `{flag}`"))?;
            transaction.commit().await?;
            let state = if enabled { "enabled" } else { "disabled" };
            println!("feature `{flag}` of client {} is {state}", client.slug);
        }
        TenantFeatureCommand::Delete { client, flag } => {
            let client = resolve(store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            service::delete_feature(&mut transaction, actor, client.id, &flag)
                .await
                .map_err(service_error)
                .with_context(|| format!("delete feature `{flag}`"))?;
            transaction.commit().await?;
            println!("deleted feature `{flag}` of client {}", client.slug);
        }
    }
    Ok(())
}

async fn credential_command(
    settings: &Settings,
    store: &Store,
    actor: &Actor,
    command: TenantCredentialCommand,
) -> anyhow::Result<()> {
    match command {
        TenantCredentialCommand::Set {
            client,
            kind,
            expires_at,
        } => {
            let keyring = settings.crypto.keyring()?;
            let client = resolve(store, &client).await?;
            let input = CredentialInput {
                value: read_secret_from_stdin().await?,
                expires_at,
            };
            let mut transaction = store.begin_tenant(client.id).await?;
            service::put_credential(&mut transaction, actor, &keyring, client.id, &kind, &input)
                .await
                .map_err(service_error)
                .with_context(|| format!("set credential `{kind}`"))?;
            transaction.commit().await?;
            println!(
                "stored credential `{kind}` of client {}, sealed under key `{}`",
                client.slug,
                keyring.active_id()
            );
        }
        TenantCredentialCommand::Delete { client, kind } => {
            let client = resolve(store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            service::delete_credential(&mut transaction, actor, client.id, &kind)
                .await
                .map_err(service_error)
                .with_context(|| format!("delete credential `{kind}`"))?;
            transaction.commit().await?;
            println!("deleted credential `{kind}` of client {}", client.slug);
        }
        TenantCredentialCommand::List { client } => {
            let client = resolve(store, &client).await?;
            let mut transaction = store.begin_tenant(client.id).await?;
            let listed = credentials::list(&mut transaction, client.id).await?;
            transaction.rollback().await?;
            if listed.is_empty() {
                println!("no credentials");
            }
            for credential in listed {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    credential.kind,
                    credential.hint.as_deref().unwrap_or("-"),
                    credential.key_id,
                    credential
                        .expires_at
                        .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339()),
                    credential.updated_at.format("%Y-%m-%dT%H:%M:%SZ"),
                );
            }
        }
    }
    Ok(())
}

/// Checks every configured provider; fails when one is not healthy.
async fn healthcheck(settings: &Settings, store: &Store, client: &str) -> anyhow::Result<ExitCode> {
    let keyring = settings.crypto.keyring()?;
    let client = resolve(store, client).await?;
    let mut transaction = store.begin_tenant(client.id).await?;
    let configuration = service::configuration(&mut transaction, client.id)
        .await
        .map_err(service_error)?;
    let opened = service::open_credentials(&mut transaction, &keyring, client.id)
        .await
        .map_err(service_error)?;
    transaction.rollback().await?;
    let providers: Vec<String> = [
        provider_name(configuration.crm),
        provider_name(configuration.telephony),
        provider_name(configuration.voice),
        provider_name(configuration.calendar),
    ]
    .into_iter()
    .flatten()
    .collect();
    if providers.is_empty() {
        println!("no providers configured (crm, telephony, voice, calendar)");
        return Ok(ExitCode::SUCCESS);
    }
    let http = providers::http::client();
    let mut healthy = true;
    for provider in providers {
        let provider_settings = configuration
            .providers
            .get(&provider)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let input = HealthInput {
            provider: &provider,
            settings: &provider_settings,
            credentials: &opened,
        };
        let report = health::check(&http, input).await;
        let status = match report.status {
            HealthStatus::Ok => "ok",
            HealthStatus::Unsupported => "unsupported",
            HealthStatus::Unauthorized => "unauthorized",
            HealthStatus::Unreachable => "unreachable",
            HealthStatus::Misconfigured => "misconfigured",
        };
        healthy &= matches!(report.status, HealthStatus::Ok | HealthStatus::Unsupported);
        println!(
            "{}\t{status}\t{} ms\t{}",
            report.provider, report.latency_ms, report.detail
        );
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) async fn keys_command(
    settings: &Settings,
    command: KeysCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Rotate { batch } => {
            let keyring = settings.crypto.keyring()?;
            let store = Store::connect(&settings.database).await?;
            let report = rotation::rotate_master_key(&store, &keyring, batch, None)
                .await
                .context("rotate master key")?;
            let active = keyring.active_id();
            println!(
                "rotated {} credentials to key `{active}` in {} batches",
                report.rotated, report.batches
            );
            println!("remaining {}", report.remaining);
            for failure in &report.failures {
                println!(
                    "failed\t{}\t{}\t{}\t{}",
                    failure.tenant_id, failure.kind, failure.key_id, failure.reason
                );
            }
            if report.remaining == 0 {
                println!("every credential is sealed under `{active}`: older keys may be removed");
            } else {
                println!(
                    "keep the older keys configured: they still seal {} credentials",
                    report.remaining
                );
            }
            if !report.failures.is_empty() {
                eprintln!(
                    "caller: {} credentials could not be re-sealed (listed above)",
                    report.failures.len()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn admin_command(
    settings: &Settings,
    command: AdminCommand,
) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateKey {
            name,
            scopes,
            tenant,
        } => {
            let store = Store::connect(&settings.database).await?;
            let scopes = if scopes.is_empty() {
                Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect()
            } else {
                scopes
            };
            let request = KeyRequest {
                name,
                scopes,
                rate_limit_per_minute: None,
            };
            let tenant = match tenant {
                Some(client) => Some(resolve(&store, &client).await?),
                None => None,
            };
            // An operator key belongs to no tenant, so only platform mode may write it.
            let mut transaction = match &tenant {
                Some(client) => store.begin_tenant(client.id).await?,
                None => store.begin_platform().await?,
            };
            let issued = service::issue_key(
                &mut transaction,
                &operator(),
                tenant.as_ref().map(|c| c.id),
                &request,
            )
            .await
            .map_err(service_error)
            .context("create api key")?;
            transaction.commit().await?;
            println!("{}", issued.text.expose());
            let owner = tenant.map_or_else(
                || "every client (operator key)".to_owned(),
                |client| format!("client {}", client.slug),
            );
            eprintln!(
                "caller: created api key {} ({}…) for {owner} with scopes {}; \
                 store it now: it cannot be shown again",
                issued.row.id,
                issued.row.display_prefix,
                issued.row.scopes.join(", ")
            );
        }
        AdminCommand::RevokeKey { key_id } => {
            let store = Store::connect(&settings.database).await?;
            let key = crate::ids::ApiKeyId::parse(&key_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            // Platform mode: operator keys belong to no tenant.
            let mut transaction = store.begin_platform().await?;
            let owner: Option<Option<uuid::Uuid>> =
                sqlx::query_scalar("SELECT tenant_id FROM api_keys WHERE id = $1")
                    .bind(key.as_uuid())
                    .fetch_optional(&mut *transaction)
                    .await?;
            let revoked = crate::store::api_keys::revoke(&mut transaction, key).await?;
            anyhow::ensure!(revoked && owner.is_some(), "no live api key `{key}`");
            // A client's key: the revocation belongs in that client's audit log.
            let entry = crate::store::audit::NewAudit {
                tenant_id: owner.flatten().map(TenantId::from_uuid),
                actor: &operator().label,
                action: "api_key.revoke",
                target: &format!("api_key/{key}"),
                before_digest: None,
                after_digest: None,
                request_id: None,
            };
            crate::store::audit::append(&mut transaction, &entry).await?;
            transaction.commit().await?;
            println!("revoked api key {key}");
        }
    }
    Ok(())
}
