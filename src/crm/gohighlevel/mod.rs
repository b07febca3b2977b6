//! HighLevel API v2 as a tenant's CRM ([`Crm`]) and calendar ([`Calendar`]), for tenants with
//! `crm: gohighlevel` (and `calendar: crm`). Wire formats: `shared/protocols/crm-calendar.md`
//! section A; official specs in `schemas/vendor/ghl.*.json`.
//!
//! One process-wide [`GoHighLevel`] serves every tenant. Per tenant, `providers.gohighlevel`:
//! `location_id` (else the OAuth token set's `locationId`), `calendar_id`, `status_field` (the
//! custom field key holding the lead status, default [`DEFAULT_STATUS_FIELD`]), optional
//! `user_id` (notes' author, appointments' assignee), optional `conversation_provider_id` (to
//! log calls in conversations), and the operator-only `base_url`.
//!
//! - **Auth** (`auth`): the `gohighlevel.private_token` credential (a Private Integration
//!   Token) when present, else the `gohighlevel.oauth` token set, refreshed through
//!   [`crate::tenancy::oauth`] with the platform app of [`GoHighLevelSettings`] (the rotated
//!   refresh token is committed before use). A 401 forces one refresh (one per process for
//!   all requests rejected with the same token) and one retry; a second 401 is
//!   [`ProviderError::Unauthorized`].
//! - **Pacing** (`client`): a token bucket per location (100 requests / 10 s by default, its
//!   burst 5% smaller for headroom) shared by the process; `X-RateLimit-Remaining: 0` pauses
//!   the location for one request's share of `X-RateLimit-Interval-Milliseconds`; a 429 is
//!   retried with a bounded backoff
//!   ([`GoHighLevelSettings::max_attempts`] tries), then [`ProviderError::RateLimited`].
//! - **Quirks** (`wire`): `Version` per API family; custom fields written `{id, field_value}`
//!   and read `{id, value}`, mapped to the tenant's keys through the location's custom field
//!   list (cached); tags only through the tag endpoints (a contact write would replace them);
//!   snake_case query keys of the opportunity search; epoch-millisecond free-slot ranges with
//!   date keys and a stray `traceId`; appointment times with offsets.
//!
//! Invariant: no error or log line carries a token; a malformed answer is
//! [`ProviderError::malformed`], never a panic.

mod auth;
mod calendar;
mod client;
mod contacts;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use chrono_tz::Tz;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::settings::GoHighLevelSettings;
use crate::store::Store;
use crate::tenancy::directory::{Directory, LookupError};

pub use auth::{OAUTH_KIND, PRIVATE_TOKEN_KIND};
pub use wire::FieldMap;

#[cfg(doc)]
use super::Crm;
use super::ProviderError;
#[cfg(doc)]
use crate::booking::Calendar;

/// HighLevel's API host.
pub const DEFAULT_BASE_URL: &str = "https://services.leadconnectorhq.com";
/// The custom field key holding the lead status when the tenant names none.
pub const DEFAULT_STATUS_FIELD: &str = "ai_call_status";
/// How long a location's custom field list and a calendar's slot length are trusted.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// The HighLevel adapter of every tenant of the process.
pub struct GoHighLevel {
    http: reqwest::Client,
    store: Store,
    directory: Directory,
    keyring: Arc<Keyring>,
    settings: GoHighLevelSettings,
    limiter: DefaultKeyedRateLimiter<String>,
    /// Locations the vendor said are out of budget, until when.
    paused: Mutex<HashMap<String, Instant>>,
    /// Custom field maps by location.
    fields: Mutex<HashMap<String, (Instant, Arc<FieldMap>)>>,
    /// Slot lengths by `(location, calendar)`.
    slot_lengths: Mutex<HashMap<(String, String), (Instant, TimeDelta)>>,
    /// One forced refresh at a time per tenant (see `auth`).
    refreshing: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for GoHighLevel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GoHighLevel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GoHighLevel {
    /// Builds the adapter: tenants through `directory`, credentials through `store` and
    /// `keyring`, the platform app and pacing from `settings`.
    #[must_use]
    pub fn new(
        store: Store,
        directory: Directory,
        keyring: Arc<Keyring>,
        settings: GoHighLevelSettings,
    ) -> Self {
        Self {
            http: crate::providers::http::client(),
            store,
            directory,
            keyring,
            limiter: RateLimiter::keyed(quota(&settings)),
            settings,
            paused: Mutex::default(),
            fields: Mutex::default(),
            slot_lengths: Mutex::default(),
            refreshing: Mutex::default(),
        }
    }

    /// Reads the tenant's HighLevel settings.
    async fn account(&self, tenant: TenantId) -> Result<Account, ProviderError> {
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| match error {
                LookupError::Gone => ProviderError::Invalid {
                    reason: error.to_string(),
                },
                LookupError::Database(_) => ProviderError::Unavailable {
                    reason: error.to_string(),
                },
            })?;
        let settings = snapshot
            .configuration
            .providers
            .get("gohighlevel")
            .cloned()
            .unwrap_or(Value::Null);
        Account::from_settings(tenant, &settings, snapshot.timezone)
    }
}

/// The location's bucket: refilled at `requests_per_interval` per interval, holding at most
/// that many minus a 5% headroom.
///
/// NOTE: the headroom absorbs the jitter between our check and the vendor's count (a request
/// checked earlier can arrive later than the next one); without it a paced burst can still
/// meet a 429 at the edge of the vendor's bucket.
fn quota(settings: &GoHighLevelSettings) -> Quota {
    let per_interval = settings.requests_per_interval.max(1);
    let headroom = (per_interval / 20).max(u32::from(per_interval > 1));
    let interval = std::time::Duration::from_millis(settings.interval_ms.max(1));
    let burst =
        std::num::NonZeroU32::new(per_interval - headroom).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::with_period(interval / per_interval)
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}

/// A tenant's HighLevel settings, checked.
#[derive(Clone, Debug)]
struct Account {
    tenant: TenantId,
    /// `location_id`, when set (else the OAuth token set's is used).
    location: Option<String>,
    calendar: Option<String>,
    status_field: String,
    user_id: Option<String>,
    conversation_provider: Option<String>,
    base: Url,
    timezone: Tz,
}

impl Account {
    fn from_settings(
        tenant: TenantId,
        settings: &Value,
        timezone: Tz,
    ) -> Result<Self, ProviderError> {
        let text = |key: &str| {
            settings
                .get(key)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let base_text = text("base_url").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let invalid_base = || ProviderError::Invalid {
            reason: "`providers.gohighlevel.base_url` is not an http(s) url".to_owned(),
        };
        let base = Url::parse(&base_text).map_err(|_| invalid_base())?;
        if !matches!(base.scheme(), "http" | "https")
            || base.host().is_none()
            || !base.username().is_empty()
            || base.password().is_some()
        {
            return Err(invalid_base());
        }
        for (key, value) in [
            ("location_id", text("location_id")),
            ("calendar_id", text("calendar_id")),
            ("user_id", text("user_id")),
        ] {
            if value.as_deref().is_some_and(|id| !wire::is_id(id)) {
                return Err(ProviderError::Invalid {
                    reason: format!("`providers.gohighlevel.{key}` is not a HighLevel id"),
                });
            }
        }
        Ok(Self {
            tenant,
            location: text("location_id"),
            calendar: text("calendar_id"),
            status_field: text("status_field").unwrap_or_else(|| DEFAULT_STATUS_FIELD.to_owned()),
            user_id: text("user_id"),
            conversation_provider: text("conversation_provider_id"),
            base,
            timezone,
        })
    }

    /// Returns the URL of `segments` under the base (each segment percent-encoded; an empty
    /// last segment makes a trailing slash, as `POST /opportunities/` needs).
    fn url(&self, segments: &[&str]) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| ProviderError::Invalid {
                reason: "`providers.gohighlevel.base_url` cannot hold a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

/// The location and credential of one request.
#[derive(Clone, Debug)]
struct Session {
    location: String,
    credential: auth::Credential,
}
