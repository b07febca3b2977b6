//! Reading Zoho CRM records (`shared/protocols/crm-calendar.md` B.2–B.4).
//!
//! A Zoho notification names records, not people: `resolve_tenant` reads each named record
//! here, `GET {api_domain}/crm/v8/{module}/{id}` with `Authorization: Zoho-oauthtoken …`, and
//! normalizes it like a workflow webhook's fields (Zoho's field API names).
//!
//! - **Token**: the client's `zoho.oauth` credential (a token set), through
//!   `tenancy::oauth::access_token`, which refreshes it at most once at a time across
//!   processes: `POST {zoho.accounts_url}/oauth/v2/token` with `grant_type=refresh_token` and
//!   the platform's Zoho app (`zoho.client_id`, `zoho.client_secret`).
//! - **Where**: the operator-only setting `providers.zoho.api_domain`, else the token set's
//!   `api_domain` when it is a Zoho API host, else `https://www.zohoapis.com`.
//! - **Answers**: 200 `{"data":[record]}` → the record; 204 (no body) → no such record;
//!   401/403 → refused (reconnect the client); 429, 5xx and network errors → try later.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::{Map, Value};

use crate::crypto::Keyring;
use crate::secret::Secret;
use crate::settings::ZohoSettings;
use crate::store::Store;
use crate::tenancy::directory::TenantSnapshot;
use crate::tenancy::oauth::{self, OAuthError, TokenSet};

/// The credential kind of a client's Zoho token set.
pub const OAUTH_KIND: &str = "zoho.oauth";
/// Where a client's records are read when nothing else says.
pub(crate) const DEFAULT_API_DOMAIN: &str = "https://www.zohoapis.com";
/// A token expiring sooner than this is refreshed first.
const REFRESH_SKEW: Duration = Duration::from_secs(300);

/// Why a record could not be read. No message carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ZohoError {
    /// The client's Zoho connection is missing or unusable: fix it, then replay.
    #[error("zoho is not connected: {0}")]
    NotConnected(String),
    /// Zoho refused the request (401/403): the token or its scopes.
    #[error("zoho refused the request: {status} {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Zoho's error `code`, e.g. `INVALID_TOKEN`.
        code: String,
    },
    /// Zoho or the network failed for now (429, 5xx, timeout): try again later.
    #[error("zoho is unavailable: {0}")]
    Unavailable(String),
}

/// Reads records of a client's Zoho CRM.
#[derive(Debug)]
pub struct ZohoRecords {
    http: reqwest::Client,
    store: Store,
    keyring: Arc<Keyring>,
    settings: ZohoSettings,
}

impl ZohoRecords {
    /// Builds a reader over the client credentials `keyring` opens.
    pub fn new(store: Store, keyring: Arc<Keyring>, settings: ZohoSettings) -> Self {
        Self {
            http: super::http::client(),
            store,
            keyring,
            settings,
        }
    }

    /// Returns record `id` of `module`, `None` when Zoho has no such record.
    pub async fn record(
        &self,
        client: &TenantSnapshot,
        module: &str,
        id: &str,
    ) -> Result<Option<Map<String, Value>>, ZohoError> {
        let module_ok = (1..=64).contains(&module.len())
            && module
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        let id_ok = (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_digit());
        if !module_ok || !id_ok {
            return Err(ZohoError::NotConnected(
                "the notification names no valid module and record id".to_owned(),
            ));
        }
        let tenant = client.id;
        let token = oauth::token_set(
            &self.store,
            &self.keyring,
            tenant,
            OAUTH_KIND,
            REFRESH_SKEW,
            |refresh_token| self.refresh(refresh_token),
        )
        .await
        .map_err(|error| match error {
            OAuthError::Database(error) => ZohoError::Unavailable(format!("database: {error}")),
            OAuthError::RefreshFailed { reason, .. } if reason.starts_with("unavailable") => {
                ZohoError::Unavailable(reason)
            }
            other => ZohoError::NotConnected(other.to_string()),
        })?;
        let api_domain = api_domain(client, token.fields.expose());
        let url = format!("{}/crm/v8/{module}/{id}", api_domain.trim_end_matches('/'));
        let mut authorization =
            HeaderValue::from_str(&format!("Zoho-oauthtoken {}", token.access_token.expose()))
                .map_err(|_| {
                    ZohoError::NotConnected("the stored token is not header text".to_owned())
                })?;
        authorization.set_sensitive(true);
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| ZohoError::Unavailable(error.without_url().to_string()))?;
        let status = response.status();
        match status {
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let body: Value = response
                    .json()
                    .await
                    .map_err(|_| ZohoError::Unavailable("unreadable record response".to_owned()))?;
                Ok(body
                    .get("data")
                    .and_then(Value::as_array)
                    .and_then(|records| records.first())
                    .and_then(Value::as_object)
                    .cloned())
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Err(ZohoError::Refused {
                    status: status.as_u16(),
                    code: error_code(&body),
                })
            }
            _ => Err(ZohoError::Unavailable(format!(
                "status {}",
                status.as_u16()
            ))),
        }
    }

    /// Exchanges the refresh token for a new access token. Error texts never carry a token;
    /// they start with `unavailable` when a retry may succeed.
    async fn refresh(&self, refresh_token: Secret<String>) -> Result<TokenSet, String> {
        crate::crm::zoho::api::refresh_tokens(
            &self.http,
            &self.settings,
            self.settings.accounts_url.trim_end_matches('/'),
            &refresh_token,
        )
        .await
    }
}

/// The operator's `api_domain`, else the token set's when it is Zoho's, else the default.
fn api_domain(client: &TenantSnapshot, tokens: &Map<String, Value>) -> String {
    let configured = client
        .configuration
        .providers
        .get("zoho")
        .and_then(|zoho| zoho.get("api_domain"))
        .and_then(Value::as_str);
    let from_token = tokens
        .get("api_domain")
        .and_then(Value::as_str)
        .filter(|domain| super::health::is_zoho_api_domain(domain));
    configured
        .or(from_token)
        .unwrap_or(DEFAULT_API_DOMAIN)
        .to_owned()
}

/// Zoho's error `code` (`{"code": "INVALID_TOKEN", …}`), or `unknown`.
fn error_code(body: &Value) -> String {
    body.get("code")
        .and_then(Value::as_str)
        .filter(|code| code.len() <= 64 && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .unwrap_or("unknown")
        .to_owned()
}
