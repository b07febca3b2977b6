//! Layered configuration: code defaults → optional file (`--config`, TOML) → environment.
//!
//! Environment variables are `CALLER__SECTION__KEY`, e.g. `CALLER__DATABASE__URL`. Secret
//! fields are [`Secret`] so a `Debug` print of the settings never leaks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::secret::Secret;

mod booking;
mod calls;
mod gohighlevel;
mod media;
mod scheduler;

pub use booking::{BookingSettings, CrmSyncSettings};
pub use calls::{AdmissionSettings, ConverseSettings, TelephonySettings};
pub use gohighlevel::GoHighLevelSettings;
pub use media::MediaSettings;
pub use scheduler::SchedulerSettings;

/// Every setting of the process.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The NATS JetStream server.
    pub nats: NatsSettings,
    /// The PostgreSQL database.
    pub database: DatabaseSettings,
    /// The HTTP listener (ingress, health, metrics).
    pub http: HttpSettings,
    /// Where the declarative definitions live.
    pub paths: PathSettings,
    /// Logging.
    pub log: LogSettings,
    /// Stage runner tuning shared by every stage.
    pub runner: RunnerSettings,
    /// Master keys that seal tenant credentials.
    pub crypto: CryptoSettings,
    /// The management API.
    pub api: ApiSettings,
    /// Webhook and API lead ingress.
    pub ingress: IngressSettings,
    /// The dedupe stage.
    pub dedupe: DedupeSettings,
    /// The cache of tenant snapshots (ingress and resolve_tenant).
    pub tenancy: TenancySettings,
    /// The platform's Zoho app (token refresh) and accounts server.
    pub zoho: ZohoSettings,
    /// The platform's HighLevel app (OAuth install and refresh) and request pacing.
    pub gohighlevel: GoHighLevelSettings,
    /// Call admission: cycles and pacing (`rate_limit`).
    pub admission: AdmissionSettings,
    /// Dialing and telephony callbacks.
    pub telephony: TelephonySettings,
    /// Conversations: session leases, engine reconnects, agent tools.
    pub converse: ConverseSettings,
    /// The media gateway (Twilio Media Streams) and call recordings.
    pub media: MediaSettings,
    /// Free-slot caching.
    pub booking: BookingSettings,
    /// The crm_sync stage.
    pub crm_sync: CrmSyncSettings,
    /// The scheduler: retries and follow-ups.
    pub scheduler: SchedulerSettings,
}

/// The platform's Zoho OAuth app, used to refresh clients' Zoho tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZohoSettings {
    /// Zoho's accounts server of the platform's data center (token refresh).
    pub accounts_url: String,
    /// The app's client id.
    pub client_id: Option<String>,
    /// The app's client secret.
    pub client_secret: Option<Secret<String>>,
}

impl Default for ZohoSettings {
    fn default() -> Self {
        Self {
            accounts_url: "https://accounts.zoho.com".to_owned(),
            client_id: None,
            client_secret: None,
        }
    }
}

/// Lead ingress: limits, HighLevel's public keys, failure answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressSettings {
    /// Largest webhook or `POST /v1/calls` body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Largest bulk upload body, in bytes (larger: 413).
    pub bulk_max_body_bytes: usize,
    /// Most leads in one bulk upload (more: 413).
    pub bulk_max_leads: usize,
    /// Lead requests accepted per tenant per minute, unless the tenant's configuration says
    /// otherwise (over it: 429). A bulk upload counts once.
    pub requests_per_minute: u32,
    /// Lead requests per minute from the HighLevel marketplace app whose location no tenant
    /// claims yet (one bucket for all of them).
    pub unclaimed_requests_per_minute: u32,
    /// Every authentication failure (401, and 404 for an unknown tenant) is answered no sooner
    /// than this many milliseconds after the request arrived, so response times do not tell a
    /// known tenant from an unknown one.
    pub auth_failure_floor_ms: u64,
    /// Seconds an `Idempotency-Key` stays reserved by a request in flight; after it, a retry
    /// takes the key over (the first request crashed).
    pub idempotency_lock_secs: u64,
    /// Hours an `Idempotency-Key` and its response are kept.
    pub idempotency_retention_hours: u64,
    /// HighLevel's PEM public key for `x-ghl-signature` (Ed25519); default: the published one.
    pub gohighlevel_ed25519_public_key: Option<String>,
    /// HighLevel's PEM public key for `x-wh-signature` (RSA); default: the published one.
    pub gohighlevel_rsa_public_key: Option<String>,
}

impl Default for IngressSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            bulk_max_body_bytes: 16 * 1024 * 1024,
            bulk_max_leads: 10_000,
            requests_per_minute: 6_000,
            unclaimed_requests_per_minute: 6_000,
            auth_failure_floor_ms: 50,
            idempotency_lock_secs: 60,
            idempotency_retention_hours: 48,
            gohighlevel_ed25519_public_key: None,
            gohighlevel_rsa_public_key: None,
        }
    }
}

/// The dedupe stage.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupeSettings {
    /// How long a lead's dedupe key is remembered, in hours: another copy within it causes
    /// nothing. Beyond the stream's duplicate window (2 minutes) this is the only guard.
    pub horizon_hours: u64,
}

impl Default for DedupeSettings {
    fn default() -> Self {
        Self {
            horizon_hours: 7 * 24,
        }
    }
}

impl DedupeSettings {
    /// Returns the horizon.
    pub fn horizon(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::try_from(self.horizon_hours).unwrap_or(i64::MAX / 3_600_000))
    }
}

/// The cache of tenant snapshots.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancySettings {
    /// Seconds a cached snapshot (or a cached "no such tenant") is used before it is read
    /// again; changes made through the API invalidate it at once over NATS.
    pub cache_ttl_secs: u64,
}

impl Default for TenancySettings {
    fn default() -> Self {
        Self { cache_ttl_secs: 60 }
    }
}

/// Master keys: `CALLER__CRYPTO__ACTIVE_KEY=k2026` and `CALLER__CRYPTO__KEYS__K2026=<base64>`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    /// Key id new seals use.
    pub active_key: String,
    /// Every key still needed to open records, by id (base64 of 32 bytes).
    pub keys: std::collections::BTreeMap<String, Secret<String>>,
}

impl CryptoSettings {
    /// Builds the keyring, naming what is wrong (never a key's value).
    pub fn keyring(&self) -> anyhow::Result<crate::crypto::Keyring> {
        crate::crypto::Keyring::from_config(&self.active_key, &self.keys)
            .map_err(|error| anyhow::anyhow!("crypto settings: {error}"))
    }
}

/// Management API settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Default overlap of a rotated API key, in seconds.
    pub key_rotation_overlap_secs: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            key_rotation_overlap_secs: 24 * 3_600,
        }
    }
}

/// NATS connection settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL.
    pub url: String,
    /// How long start-up waits for the first connection, in milliseconds.
    pub connect_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            connect_timeout_ms: 3_000,
        }
    }
}

/// PostgreSQL connection settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL of the application role (`caller_app`, which owns no table and is
    /// subject to row-level security); secret because it may carry a password.
    pub url: Secret<String>,
    /// Connection URL of the schema owner, used only to apply migrations; when absent,
    /// migrations run over `url`.
    pub owner_url: Option<Secret<String>>,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection, in milliseconds.
    pub acquire_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://caller_app:caller_app@127.0.0.1:5432/caller".to_owned()),
            // The development schema owner (scripts/lib.sh creates both roles).
            owner_url: Some(Secret::new(
                "postgres://caller:caller@127.0.0.1:5432/caller".to_owned(),
            )),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
        }
    }
}

/// HTTP listener settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to bind.
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// Locations of the declarative folders.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathSettings {
    /// `pipelines/`: topology and tuning.
    pub pipelines: PathBuf,
    /// `nats/`: stream and consumer definitions.
    pub nats: PathBuf,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self {
            pipelines: PathBuf::from("pipelines"),
            nats: PathBuf::from("nats"),
        }
    }
}

/// Log output settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` (default, one object per line) or `pretty` (for a terminal).
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info,caller=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".to_owned(),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// Stage runner tuning.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunnerSettings {
    /// First retry delay for a retryable failure, in milliseconds (doubles per delivery).
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// How long one pull request waits for messages, in milliseconds.
    pub pull_expires_ms: u64,
    /// How long idempotency claims are kept, in hours (default 14 days).
    pub claim_retention_hours: u64,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            pull_expires_ms: 5_000,
            claim_retention_hours: 14 * 24,
        }
    }
}

impl RunnerSettings {
    /// Returns the delay before delivery number `delivered + 1`.
    pub fn backoff(&self, delivered: i64) -> Duration {
        let exponent = u32::try_from(delivered.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let millis = self
            .retry_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.retry_max_ms);
        Duration::from_millis(millis)
    }
}

impl Settings {
    /// Loads defaults, then the optional file, then `CALLER__*` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file `{}` does not exist",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("CALLER__").split("__"));
        figment
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_debug_hides_the_database_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caller.toml");
        std::fs::write(
            &path,
            "[database]\nurl = \"postgres://u:pw@db/x\"\n[http]\nlisten = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(settings.http.listen.port(), 9000);
        assert_eq!(settings.database.url.expose(), "postgres://u:pw@db/x");
        assert_eq!(settings.nats.url, "nats://127.0.0.1:4222");
        assert!(!format!("{settings:?}").contains("pw@"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caller.toml");
        std::fs::write(&path, "[nats]\nulr = \"typo\"\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("ulr"), "{error}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let runner = RunnerSettings {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..RunnerSettings::default()
        };
        assert_eq!(runner.backoff(1), Duration::from_millis(100));
        assert_eq!(runner.backoff(3), Duration::from_millis(400));
        assert_eq!(runner.backoff(30), Duration::from_millis(1_000));
    }
}
