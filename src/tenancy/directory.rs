//! The tenant directory: cached snapshots of what ingress and resolve_tenant need to know
//! about a tenant, and the maps from a HighLevel location or Zoho organization to a tenant.
//!
//! Every lead request needs its tenant's webhook secrets, field mapping, region and time zone,
//! and every resolved lead its tenant's status: reading and decrypting them per request would
//! put PostgreSQL and AES on the hot path of every webhook. So a process keeps snapshots:
//!
//! - **Invalidated on change.** The management API publishes `tenancy.changed.<tenant>` on
//!   core NATS after every committed change under `/v1/clients/{id}` ([`notify_changed`]);
//!   every process subscribes ([`Directory::follow_changes`]) and drops that tenant's snapshot
//!   and every cached location or organization that could point at it.
//! - **Bounded staleness without NATS.** A core NATS message can be missed (a reconnect), so
//!   every entry also expires after `tenancy.cache_ttl_secs` (default 60 s).
//! - **Negative entries too.** "No such tenant" is cached for the same time, so a flood of
//!   requests for an unknown tenant costs one query per TTL, and is answered as fast as a
//!   known tenant's.
//!
//! Secrets are opened only when the directory has the keyring (ingress roles); a stage-only
//! process gets snapshots without them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use futures::StreamExt as _;
use tokio::time::Instant;

use super::config::ClientConfiguration;
use super::service;
use crate::bus::Bus;
use crate::bus::subjects::{self, TenantToken};
use crate::crypto::{self, Keyring};
use crate::ids::TenantId;
use crate::ingress::verify::StandardWebhooks;
use crate::normalize::FieldMapping;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::store::{Store, credentials, tenants};

/// Credential kind of the shared secret of HighLevel workflow webhooks.
pub const GOHIGHLEVEL_WEBHOOK_SECRET: &str = "gohighlevel.webhook_secret";
/// Credential kind of the shared secret of Zoho workflow webhooks.
pub const ZOHO_WEBHOOK_SECRET: &str = "zoho.webhook_secret";
/// Credential kind of the token registered with Zoho notification channels.
pub const ZOHO_CHANNEL_TOKEN: &str = "zoho.channel_token";
/// Credential kind of the Standard Webhooks secret (`whsec_…`) of custom webhooks.
pub const CUSTOM_WEBHOOK_SECRET: &str = "custom.webhook_secret";
/// Credential kind of the tenant's Twilio auth token: it signs Twilio's callbacks to us and
/// authenticates our REST requests.
pub const TWILIO_AUTH_TOKEN: &str = "twilio.auth_token";
/// Credential kind of the tenant's Twilio Account SID, when not in its settings.
pub const TWILIO_ACCOUNT_SID: &str = "twilio.account_sid";
/// Credential kind of the tenant's ElevenLabs API key (`xi-api-key`): the converse stage
/// opens conversations with it.
pub const ELEVENLABS_API_KEY: &str = "elevenlabs.api_key";
/// Credential kind of the HMAC secret ElevenLabs signs post-call webhooks with.
pub const ELEVENLABS_WEBHOOK_SECRET: &str = "elevenlabs.webhook_secret";
/// Suffix of the kind that holds the previous value during a rotation (both are accepted),
/// e.g. `custom.webhook_secret_previous`.
pub const PREVIOUS_SUFFIX: &str = "_previous";

/// What ingress and resolve_tenant know about one tenant.
#[derive(Debug)]
pub struct TenantSnapshot {
    /// The tenant.
    pub id: TenantId,
    /// Its slug.
    pub slug: String,
    /// Its display name (the business the agent speaks for).
    pub name: String,
    /// False when the client is disabled.
    pub active: bool,
    /// The business's time zone: the configuration's, else the client's.
    pub timezone: Tz,
    /// Country whose national format numbers without `+` are read in.
    pub region: String,
    /// The configuration.
    pub configuration: ClientConfiguration,
    /// The custom webhook field mapping, when configured and valid.
    pub field_mapping: Option<FieldMapping>,
    /// Webhook secrets (empty in processes without the keyring).
    pub secrets: WebhookSecrets,
}

/// Why the snapshot of a tenant that must exist could not be read ([`Directory::existing`]).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The tenant does not exist (any more).
    #[error("the client no longer exists")]
    Gone,
}

/// A tenant's Twilio account as the dial stage and the callback routes need it.
#[derive(Debug, Clone)]
pub struct TwilioAccount {
    /// The Account SID (`AC…`).
    pub account_sid: String,
    /// Auth tokens: the current one first, then the previous one during a rotation.
    pub auth_tokens: Vec<Secret<String>>,
    /// An operator-set REST base URL (a simulator or sandbox), else Twilio's.
    pub base_url: Option<String>,
}

impl TenantSnapshot {
    /// Returns the tenant's Twilio account, or what is missing for one.
    ///
    /// # Errors
    ///
    /// A sentence naming the missing setting or credential (never a secret).
    pub fn twilio(&self) -> Result<TwilioAccount, &'static str> {
        let settings = self.configuration.providers.get("twilio");
        let setting = |name: &str| {
            settings
                .and_then(|twilio| twilio.get(name))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let account_sid = setting("account_sid")
            .or_else(|| {
                self.secrets
                    .twilio_account_sid
                    .as_ref()
                    .map(|sid| sid.expose().clone())
            })
            .ok_or("the client has no Twilio account_sid (setting providers.twilio.account_sid)")?;
        if self.secrets.twilio.is_empty() {
            return Err(
                "the client has no usable Twilio auth token (credential twilio.auth_token)",
            );
        }
        Ok(TwilioAccount {
            account_sid,
            auth_tokens: self.secrets.twilio.clone(),
            base_url: setting("base_url"),
        })
    }
}

/// A tenant's webhook secrets: the current one, and the previous one during a rotation.
#[derive(Debug, Default)]
pub struct WebhookSecrets {
    /// HighLevel workflow webhook secrets.
    pub gohighlevel: Vec<Secret<String>>,
    /// Zoho workflow webhook secrets.
    pub zoho: Vec<Secret<String>>,
    /// Zoho notification channel tokens.
    pub zoho_channel: Vec<Secret<String>>,
    /// The Standard Webhooks verifier of custom webhooks, when a usable secret is set.
    pub custom: Option<StandardWebhooks>,
    /// Twilio auth tokens (current, then previous during a rotation).
    pub twilio: Vec<Secret<String>>,
    /// The Twilio Account SID stored as a credential, when not in the settings.
    pub twilio_account_sid: Option<Secret<String>>,
    /// The ElevenLabs API key.
    pub elevenlabs_api_key: Option<Secret<String>>,
    /// ElevenLabs post-call webhook secrets (current, then previous during a rotation).
    pub elevenlabs_webhook: Vec<Secret<String>>,
}

/// A provider's key that one client claims in its configuration.
#[derive(Clone, Copy, Debug)]
enum ClaimedKey {
    /// `providers.gohighlevel.location_id`.
    GohighlevelLocation,
    /// `providers.zoho.org_id`.
    ZohoOrg,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    loaded: Instant,
}

#[derive(Debug, Default)]
struct Cache {
    /// Bumped by every invalidation: a load that began before one does not cache its result
    /// (it may have read the state from before the change).
    generation: u64,
    tenants: HashMap<TenantId, Entry<Option<Arc<TenantSnapshot>>>>,
    /// `gohighlevel:<location>` or `zoho:<org>` → tenant.
    keys: HashMap<String, Entry<Option<TenantId>>>,
}

/// Cached tenant snapshots; cheap to clone (one shared cache).
#[derive(Clone, Debug)]
pub struct Directory {
    store: Store,
    keyring: Option<Arc<Keyring>>,
    ttl: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl Directory {
    /// Builds a directory; with a keyring, snapshots carry the opened webhook secrets.
    pub fn new(store: Store, keyring: Option<Arc<Keyring>>, ttl: Duration) -> Self {
        Self {
            store,
            keyring,
            ttl,
            cache: Arc::default(),
        }
    }

    /// Returns the master keys this directory opens secrets with, if it has them.
    #[must_use]
    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.keyring.as_ref()
    }

    /// Returns the snapshot of a tenant that must exist (work already under way for it).
    ///
    /// # Errors
    ///
    /// [`LookupError`]: the database failed, or the tenant is gone (deleted meanwhile).
    pub async fn existing(&self, id: TenantId) -> Result<Arc<TenantSnapshot>, LookupError> {
        self.tenant(id).await?.ok_or(LookupError::Gone)
    }

    /// Returns the tenant's snapshot, `None` when no such tenant exists.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<Arc<TenantSnapshot>>, sqlx::Error> {
        let generation = match self.cached_tenant(id) {
            Ok(hit) => return Ok(hit),
            Err(generation) => generation,
        };
        let loaded = self.load(id).await?.map(Arc::new);
        let mut cache = self.cache.lock().expect("directory lock");
        if cache.generation == generation {
            cache.tenants.insert(
                id,
                Entry {
                    value: loaded.clone(),
                    loaded: Instant::now(),
                },
            );
        }
        Ok(loaded)
    }

    /// Returns the tenant that claims HighLevel location `location_id`.
    pub async fn by_gohighlevel_location(
        &self,
        location_id: &str,
    ) -> Result<Option<TenantId>, sqlx::Error> {
        self.by_key(ClaimedKey::GohighlevelLocation, location_id)
            .await
    }

    /// Returns the tenant that claims Zoho organization `org_id`.
    pub async fn by_zoho_org(&self, org_id: &str) -> Result<Option<TenantId>, sqlx::Error> {
        self.by_key(ClaimedKey::ZohoOrg, org_id).await
    }

    async fn by_key(&self, kind: ClaimedKey, value: &str) -> Result<Option<TenantId>, sqlx::Error> {
        let cache_key = match kind {
            ClaimedKey::GohighlevelLocation => format!("gohighlevel:{value}"),
            ClaimedKey::ZohoOrg => format!("zoho:{value}"),
        };
        let generation = {
            let cache = self.cache.lock().expect("directory lock");
            if let Some(entry) = cache.keys.get(&cache_key)
                && entry.loaded.elapsed() < self.ttl
            {
                return Ok(entry.value);
            }
            cache.generation
        };
        // Platform mode: the tenant is what we are looking for.
        let mut tx = self.store.begin_platform().await?;
        let found = match kind {
            ClaimedKey::GohighlevelLocation => {
                tenants::find_by_gohighlevel_location(&mut tx, value).await?
            }
            ClaimedKey::ZohoOrg => tenants::find_by_zoho_org(&mut tx, value).await?,
        };
        tx.commit().await?;
        let mut cache = self.cache.lock().expect("directory lock");
        if cache.generation == generation {
            cache.keys.insert(
                cache_key,
                Entry {
                    value: found,
                    loaded: Instant::now(),
                },
            );
        }
        Ok(found)
    }

    /// Drops the tenant's snapshot, the keys that point at it, and every negative key (the
    /// change may have claimed one).
    pub fn invalidate(&self, id: TenantId) {
        let mut cache = self.cache.lock().expect("directory lock");
        cache.generation += 1;
        cache.tenants.remove(&id);
        cache
            .keys
            .retain(|_, entry| entry.value.is_some_and(|t| t != id));
    }

    /// Drops everything (a missed change notification cannot be ruled out).
    pub fn clear(&self) {
        let mut cache = self.cache.lock().expect("directory lock");
        cache.generation += 1;
        cache.tenants.clear();
        cache.keys.clear();
    }

    /// The cached answer, or the cache's generation to load under.
    fn cached_tenant(&self, id: TenantId) -> Result<Option<Arc<TenantSnapshot>>, u64> {
        let cache = self.cache.lock().expect("directory lock");
        match cache.tenants.get(&id) {
            Some(entry) if entry.loaded.elapsed() < self.ttl => Ok(entry.value.clone()),
            _ => Err(cache.generation),
        }
    }

    async fn load(&self, id: TenantId) -> Result<Option<TenantSnapshot>, sqlx::Error> {
        let mut tx = self.store.begin_tenant(id).await?;
        let Some(client) = tenants::get(&mut tx, id).await? else {
            tx.commit().await?;
            return Ok(None);
        };
        let configuration = match service::configuration(&mut tx, id).await {
            Ok(configuration) => configuration,
            Err(service::ServiceError::Database(error)) => return Err(error),
            Err(error) => {
                tracing::error!(tenant_id = %id, %error, "stored configuration unreadable; using defaults");
                ClientConfiguration::default()
            }
        };
        let secrets = match &self.keyring {
            Some(keyring) => {
                let sealed = credentials::list_sealed(&mut tx, id).await?;
                open_secrets(keyring, id, sealed)
            }
            None => WebhookSecrets::default(),
        };
        tx.commit().await?;

        let timezone = configuration.business_timezone(&client.timezone);
        let region = configuration.lead_region();
        let field_mapping = configuration
            .providers
            .get("custom")
            .and_then(|custom| custom.get("field_mapping"))
            .and_then(|mapping| serde_json::from_value::<FieldMapping>(mapping.clone()).ok())
            .filter(|mapping| mapping.validate().is_ok());
        Ok(Some(TenantSnapshot {
            id,
            slug: client.slug,
            name: client.name,
            active: client.status == "active",
            timezone,
            region,
            configuration,
            field_mapping,
            secrets,
        }))
    }

    /// Follows `tenancy.changed.*` until shutdown, invalidating each named tenant.
    ///
    /// Notifications sent while this process was disconnected from NATS are lost; the TTL
    /// bounds how long a snapshot can then be stale.
    pub async fn follow_changes(self, bus: Bus, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut changes = bus
            .client()
            .subscribe(subjects::tenancy_changed(TenantToken::Any))
            .await?;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = changes.next() => {
                    let Some(message) = message else { return Ok(()) };
                    let token = message.subject.as_str().rsplit('.').next().unwrap_or_default();
                    match TenantId::parse(token) {
                        Ok(tenant) => self.invalidate(tenant),
                        Err(_) => self.clear(),
                    }
                }
            }
        }
    }
}

/// Publishes `tenancy.changed.<tenant>` (core NATS, best effort: caches also expire).
pub async fn notify_changed(bus: &Bus, tenant: TenantId) {
    let subject = subjects::tenancy_changed(TenantToken::Id(&tenant));
    if let Err(error) = bus.client().publish(subject, bytes::Bytes::new()).await {
        tracing::warn!(tenant_id = %tenant, %error, "could not announce a tenancy change");
    }
}

/// Publishes `tenancy.changed.all`: every process drops its whole cache (after a client was
/// created, whose id, location or organization may be cached as unknown).
pub async fn notify_all_changed(bus: &Bus) {
    if let Err(error) = bus
        .client()
        .publish(subjects::tenancy_changed_all(), bytes::Bytes::new())
        .await
    {
        tracing::warn!(%error, "could not announce a tenancy change");
    }
}

/// Opens the webhook secret kinds among a tenant's credentials. A credential that does not
/// open (wrong master key, tampered) is logged and left out: its webhooks then get 401.
fn open_secrets(
    keyring: &Keyring,
    tenant: TenantId,
    sealed: Vec<credentials::SealedCredential>,
) -> WebhookSecrets {
    let mut opened: HashMap<String, Secret<String>> = HashMap::new();
    for credential in sealed {
        let base = credential
            .kind
            .strip_suffix(PREVIOUS_SUFFIX)
            .unwrap_or(&credential.kind);
        if ![
            GOHIGHLEVEL_WEBHOOK_SECRET,
            ZOHO_WEBHOOK_SECRET,
            ZOHO_CHANNEL_TOKEN,
            CUSTOM_WEBHOOK_SECRET,
            TWILIO_AUTH_TOKEN,
            TWILIO_ACCOUNT_SID,
            ELEVENLABS_API_KEY,
            ELEVENLABS_WEBHOOK_SECRET,
        ]
        .contains(&base)
        {
            continue;
        }
        match crypto::open(keyring, tenant, &credential.kind, &credential.sealed) {
            Ok(plaintext) => {
                opened.insert(credential.kind, plaintext);
            }
            Err(error) => {
                tracing::error!(tenant_id = %tenant, kind = %credential.kind, %error, "webhook secret does not open");
            }
        }
    }
    let mut pair = |kind: &str| -> Vec<Secret<String>> {
        [
            opened.remove(kind),
            opened.remove(&format!("{kind}{PREVIOUS_SUFFIX}")),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    let gohighlevel = pair(GOHIGHLEVEL_WEBHOOK_SECRET);
    let zoho = pair(ZOHO_WEBHOOK_SECRET);
    let zoho_channel = pair(ZOHO_CHANNEL_TOKEN);
    let custom_secrets = pair(CUSTOM_WEBHOOK_SECRET);
    let twilio = pair(TWILIO_AUTH_TOKEN);
    let elevenlabs_webhook = pair(ELEVENLABS_WEBHOOK_SECRET);
    let twilio_account_sid = opened.remove(TWILIO_ACCOUNT_SID);
    let elevenlabs_api_key = opened.remove(ELEVENLABS_API_KEY);
    let custom = if custom_secrets.is_empty() {
        None
    } else {
        StandardWebhooks::new(&custom_secrets)
            .inspect_err(|error| {
                tracing::error!(tenant_id = %tenant, %error, "custom webhook secret unusable");
            })
            .ok()
    };
    WebhookSecrets {
        gohighlevel,
        zoho,
        zoho_channel,
        custom,
        twilio,
        twilio_account_sid,
        elevenlabs_api_key,
        elevenlabs_webhook,
    }
}
