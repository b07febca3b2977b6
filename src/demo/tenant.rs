//! The demo client `demo-dental`: onboarded once from `scripts/demo-tenant.json`, with its
//! webhook secrets and API key generated here and kept in the state directory (mode 600),
//! never printed. Every run re-applies the template's configuration, so an older demo client
//! follows the current template and the simulator's address.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use rand::RngCore as _;

use crate::ids::TenantId;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::{Store, tenants};
use crate::tenancy::audit::Actor;
use crate::tenancy::config::ClientConfiguration;
use crate::tenancy::service::{self, CredentialInput, KeyRequest, OnboardRequest};

/// The demo client's slug.
pub const SLUG: &str = "demo-dental";

/// The onboarding template; `@SIM@` and `@…_SECRET@` are filled in here.
const TEMPLATE: &str = include_str!("../../scripts/demo-tenant.json");

/// The demo client's secrets, as files in `<state>/demo/`.
#[derive(Debug)]
pub struct DemoSecrets {
    /// `custom.webhook_secret` (`whsec_…`).
    pub custom_webhook: Secret<String>,
    /// `gohighlevel.webhook_secret`.
    pub gohighlevel_webhook: Secret<String>,
    /// `zoho.webhook_secret`.
    pub zoho_webhook: Secret<String>,
    /// `zoho.channel_token`.
    pub zoho_channel: Secret<String>,
    /// A `calls:write` API key of the client.
    pub api_key: Secret<String>,
}

/// The demo client, ready to receive leads.
#[derive(Debug)]
pub struct DemoTenant {
    /// Its id.
    pub id: TenantId,
    /// Whether this run created it.
    pub created: bool,
    /// Its secrets.
    pub secrets: DemoSecrets,
}

/// Secret files: (file name, credential kind, generator).
const WEBHOOK_SECRETS: [(&str, &str); 4] = [
    ("custom-webhook-secret", "custom.webhook_secret"),
    ("gohighlevel-webhook-secret", "gohighlevel.webhook_secret"),
    ("zoho-webhook-secret", "zoho.webhook_secret"),
    ("zoho-channel-token", "zoho.channel_token"),
];

/// Creates the demo client if missing, applies the template's configuration pointing at
/// `simulator` (e.g. `http://127.0.0.1:8090`), and makes sure each secret exists both in
/// `state_dir/demo/` and as the client's credential.
pub async fn ensure(
    settings: &Settings,
    store: &Store,
    simulator: &str,
    state_dir: &Path,
) -> anyhow::Result<DemoTenant> {
    let keyring = settings.crypto.keyring()?;
    let dir = state_dir.join("demo");
    create_private_dir(&dir)?;
    let actor = Actor::operator("caller-demo");

    let mut secrets = Vec::new();
    let mut fresh = Vec::new();
    for (file, kind) in WEBHOOK_SECRETS {
        let (value, new) = read_or_generate(&dir.join(file), kind)?;
        if new {
            fresh.push(kind);
        }
        secrets.push((kind, value));
    }
    let filled = fill_template(simulator, &secrets);
    let mut document: serde_json::Value =
        serde_json::from_str(&filled).context("the demo client template is not JSON")?;

    let mut transaction = store.begin_platform().await?;
    let existing = tenants::get_by_slug(&mut transaction, SLUG).await?;
    transaction.rollback().await?;
    let (id, created) = if let Some(row) = existing {
        let id = row.id;
        let configuration: ClientConfiguration =
            serde_json::from_value(document["configuration"].take())
                .context("the demo client template's configuration is invalid")?;
        let mut transaction = store.begin_tenant(id).await?;
        service::put_configuration(&mut transaction, &actor, id, &configuration, true)
            .await
            .map_err(|error| anyhow::anyhow!("update the demo client: {error}"))?;
        // Credentials whose file was missing get the value just generated.
        for (kind, value) in &secrets {
            if fresh.contains(kind) {
                let input = CredentialInput {
                    value: Secret::new(value.expose().clone()),
                    expires_at: None,
                };
                service::put_credential(&mut transaction, &actor, &keyring, id, kind, &input)
                    .await
                    .map_err(|error| anyhow::anyhow!("set `{kind}` of the demo client: {error}"))?;
            }
        }
        transaction.commit().await?;
        (id, false)
    } else {
        let request: OnboardRequest = serde_json::from_value(document)
            .context("the demo client template is not an onboarding request")?;
        let mut transaction = store.begin_platform().await?;
        let client = service::onboard(&mut transaction, &actor, &keyring, request)
            .await
            .map_err(|error| anyhow::anyhow!("create the demo client: {error}"))?;
        transaction.commit().await?;
        (client.id, true)
    };

    let api_key = ensure_api_key(store, &actor, id, &dir.join("api-key"), created).await?;
    let mut values = secrets.into_iter().map(|(_, value)| value);
    let mut next = || values.next().unwrap_or_else(|| Secret::new(String::new()));
    Ok(DemoTenant {
        id,
        created,
        secrets: DemoSecrets {
            custom_webhook: next(),
            gohighlevel_webhook: next(),
            zoho_webhook: next(),
            zoho_channel: next(),
            api_key,
        },
    })
}

/// Reads the client's API key file, or issues a key and writes it (mode 600).
async fn ensure_api_key(
    store: &Store,
    actor: &Actor,
    tenant: TenantId,
    path: &Path,
    created: bool,
) -> anyhow::Result<Secret<String>> {
    if !created && let Some(text) = read_secret(path)? {
        return Ok(text);
    }
    let request = KeyRequest {
        name: "demo".to_owned(),
        scopes: ["calls:write", "clients:read", "clients:admin"]
            .map(str::to_owned)
            .to_vec(),
        rate_limit_per_minute: None,
    };
    let mut transaction = store.begin_tenant(tenant).await?;
    let issued = service::issue_key(&mut transaction, actor, Some(tenant), &request)
        .await
        .map_err(|error| anyhow::anyhow!("issue the demo client's api key: {error}"))?;
    transaction.commit().await?;
    write_secret(path, issued.text.expose())?;
    Ok(issued.text)
}

fn fill_template(simulator: &str, secrets: &[(&str, Secret<String>)]) -> String {
    let mut text = TEMPLATE.replace("@SIM@", simulator);
    for (kind, value) in secrets {
        let placeholder = match *kind {
            "custom.webhook_secret" => "@CUSTOM_SECRET@",
            "gohighlevel.webhook_secret" => "@GHL_SECRET@",
            "zoho.webhook_secret" => "@ZOHO_SECRET@",
            _ => "@ZOHO_TOKEN@",
        };
        text = text.replace(placeholder, value.expose());
    }
    text
}

/// Reads a secret file, or generates the value for `kind` and writes it (mode 600); returns
/// the value and whether it is new.
fn read_or_generate(path: &Path, kind: &str) -> anyhow::Result<(Secret<String>, bool)> {
    if let Some(value) = read_secret(path)? {
        return Ok((value, false));
    }
    let value = if kind == "custom.webhook_secret" {
        // Standard Webhooks: `whsec_` and the base64 of the key bytes.
        let mut bytes = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    } else {
        // Path segments: letters and digits only.
        let mut bytes = [0_u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        format!("wk_{}", crate::hex::encode(&bytes))
    };
    write_secret(path, &value)?;
    Ok((Secret::new(value), true))
}

fn read_secret(path: &Path) -> anyhow::Result<Option<Secret<String>>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(Secret::new(text.trim().to_owned()))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    file.write_all(value.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create `{}`", dir.display()))
}

/// Returns the state directory: `$CALLER_STATE_DIR`, else `$XDG_STATE_HOME/caller`, else
/// `~/.local/state/caller` (as `scripts/lib.sh`).
#[must_use]
pub fn default_state_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("CALLER_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = non_empty("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("caller");
    }
    let home = non_empty("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/caller")
}
