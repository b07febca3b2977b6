//! One authorized request to a tenant's Zoho (CRM or Bookings), shared by [`super::Zoho`] and
//! [`super::bookings::ZohoBookings`].
//!
//! - **Where**: the operator-only `providers.zoho.api_domain`, else the token set's
//!   `api_domain` when it is a Zoho API host, else `https://www.zohoapis.com`; tokens are
//!   refreshed at the token set's `accounts_server` when it is a Zoho accounts host, else at
//!   the platform's `zoho.accounts_url` ([`endpoints`]).
//! - **Token**: `Authorization: Zoho-oauthtoken …`, refreshed 5 minutes before it expires
//!   (`tenancy::oauth`, once at a time across processes). A 401 is answered by one forced
//!   refresh and one retry; a second 401 is [`ProviderError::Unauthorized`]. A 401
//!   `OAUTH_SCOPE_MISMATCH` is not retried: a new token has the same scopes.
//! - **Secrets**: the header is marked sensitive, transport errors are reported without their
//!   URL, refresh failures name only Zoho's `error` code.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::settings::TenantZoho;
use super::wire;
use crate::crm::ProviderError;
use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::settings::ZohoSettings;
use crate::store::Store;
use crate::tenancy::directory::{Directory, LookupError};
use crate::tenancy::oauth::{self, OAuthError, TokenSet};

/// The credential kind of a tenant's Zoho token set.
pub(crate) const OAUTH_KIND: &str = crate::providers::zoho::OAUTH_KIND;
/// Where a tenant's API calls go when nothing else says.
pub(crate) const DEFAULT_API_DOMAIN: &str = crate::providers::zoho::DEFAULT_API_DOMAIN;
/// A token expiring sooner than this is refreshed before use.
const REFRESH_SKEW: Duration = Duration::from_secs(300);

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// `application/json`.
    Json(Value),
    /// `multipart/form-data` (Zoho Bookings), text fields only.
    Form(Vec<(String, String)>),
}

/// A request relative to the tenant's API domain.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Path segments after the domain, each percent-encoded when sent.
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Body>,
}

impl Request {
    pub(crate) fn new(method: Method, segments: &[&str]) -> Self {
        Self {
            method,
            segments: segments.iter().map(|&segment| segment.to_owned()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }

    pub(crate) fn form(mut self, fields: Vec<(String, String)>) -> Self {
        self.body = Some(Body::Form(fields));
        self
    }
}

/// A successful (2xx) answer's body; `None` for 204 and empty bodies.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) body: Option<Value>,
}

/// The shared machinery: HTTP client, token store, tenant settings.
#[derive(Clone)]
pub(crate) struct ZohoApi {
    http: reqwest::Client,
    store: Store,
    keyring: Arc<Keyring>,
    directory: Directory,
    settings: ZohoSettings,
}

impl std::fmt::Debug for ZohoApi {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ZohoApi")
            .field("accounts_url", &self.settings.accounts_url)
            .finish_non_exhaustive()
    }
}

impl ZohoApi {
    pub(crate) fn new(
        store: Store,
        keyring: Arc<Keyring>,
        directory: Directory,
        settings: ZohoSettings,
    ) -> Self {
        Self {
            http: crate::providers::http::client(),
            store,
            keyring,
            directory,
            settings,
        }
    }

    /// The tenant's `providers.zoho` settings.
    pub(crate) async fn tenant(&self, tenant: TenantId) -> Result<TenantZoho, ProviderError> {
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
        TenantZoho::from_providers(snapshot.configuration.providers.get("zoho"))
    }

    /// Sends `request` for `tenant`, refreshing the token once on a 401. `what` names the
    /// resource for a 404. Returns 2xx answers; every other status is classified.
    pub(crate) async fn send(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        what: &str,
        request: &Request,
    ) -> Result<Answer, ProviderError> {
        let token = self.token(tenant, None).await?;
        let (api_domain, _) = endpoints(settings, token.fields.expose(), &self.settings);
        let first = self.once(&api_domain, &token.access_token, request).await?;
        let (status, headers, body) = match first {
            Attempt::Done(answer) => return Ok(answer),
            Attempt::Refused { status, body, .. }
                if status == StatusCode::UNAUTHORIZED
                    && wire::error_code(&body) != "OAUTH_SCOPE_MISMATCH" =>
            {
                let token = self.token(tenant, Some(&token.access_token)).await?;
                let (api_domain, _) = endpoints(settings, token.fields.expose(), &self.settings);
                match self.once(&api_domain, &token.access_token, request).await? {
                    Attempt::Done(answer) => return Ok(answer),
                    Attempt::Refused {
                        status,
                        headers,
                        body,
                    } => (status, headers, body),
                }
            }
            Attempt::Refused {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        Err(wire::classify(status, &headers, &body, what))
    }

    async fn once(
        &self,
        api_domain: &str,
        token: &Secret<String>,
        request: &Request,
    ) -> Result<Attempt, ProviderError> {
        let mut url = reqwest::Url::parse(api_domain).map_err(|_| ProviderError::Invalid {
            reason: "the zoho api domain is not a url".to_owned(),
        })?;
        url.path_segments_mut()
            .map_err(|()| ProviderError::Invalid {
                reason: "the zoho api domain cannot take a path".to_owned(),
            })?
            .pop_if_empty()
            .extend(&request.segments);
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Zoho-oauthtoken {}", token.expose())).map_err(
                |_| ProviderError::Unauthorized {
                    reason: "the stored zoho token is not header text".to_owned(),
                },
            )?;
        authorization.set_sensitive(true);
        let mut builder = self
            .http
            .request(request.method.clone(), url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        builder = match &request.body {
            None => builder,
            Some(Body::Json(body)) => builder.json(body),
            Some(Body::Form(fields)) => {
                let (content_type, body) = wire::multipart(fields);
                builder.header(CONTENT_TYPE, content_type).body(body)
            }
        };
        let response = builder
            .send()
            .await
            .map_err(|error| ProviderError::from_transport(&error.without_url()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ProviderError::from_transport(&error.without_url()))?;
        // NOTE: Zoho answers 204 with an empty body for "nothing found": never parse it.
        let body = if status == StatusCode::NO_CONTENT || bytes.iter().all(u8::is_ascii_whitespace)
        {
            None
        } else {
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(body) => Some(body),
                Err(_) if status.is_success() => {
                    return Err(ProviderError::malformed("the answer is not json"));
                }
                Err(_) => None,
            }
        };
        if status.is_success() {
            Ok(Attempt::Done(Answer { body }))
        } else {
            Ok(Attempt::Refused {
                status,
                headers,
                body: body.unwrap_or(Value::Null),
            })
        }
    }

    /// A valid access token; `rejected` forces a refresh unless it was already replaced.
    async fn token(
        &self,
        tenant: TenantId,
        rejected: Option<&Secret<String>>,
    ) -> Result<oauth::AccessToken, ProviderError> {
        let refresh = |refresh_token: Secret<String>| async move {
            // The data center's accounts server is in the token set itself; this read runs
            // only when refreshing (beside the lock holder's row lock, which it does not need).
            let fields = oauth::stored_token_set(&self.store, &self.keyring, tenant, OAUTH_KIND)
                .await
                .map(|token| token.fields.expose().clone())
                .unwrap_or_default();
            let accounts = accounts_server(&fields, &self.settings);
            refresh_tokens(&self.http, &self.settings, &accounts, &refresh_token).await
        };
        let answer = match rejected {
            None => {
                oauth::token_set(
                    &self.store,
                    &self.keyring,
                    tenant,
                    OAUTH_KIND,
                    REFRESH_SKEW,
                    refresh,
                )
                .await
            }
            Some(rejected) => {
                oauth::token_set_after_rejection(
                    &self.store,
                    &self.keyring,
                    tenant,
                    OAUTH_KIND,
                    REFRESH_SKEW,
                    rejected,
                    refresh,
                )
                .await
            }
        };
        answer.map_err(|error| match error {
            OAuthError::Database(_) => ProviderError::Unavailable {
                reason: error.to_string(),
            },
            OAuthError::RefreshFailed { ref reason, .. } if reason.starts_with("unavailable") => {
                ProviderError::Unavailable {
                    reason: error.to_string(),
                }
            }
            other => ProviderError::Unauthorized {
                reason: other.to_string(),
            },
        })
    }
}

enum Attempt {
    Done(Answer),
    Refused {
        status: StatusCode,
        headers: HeaderMap,
        body: Value,
    },
}

/// Returns `(api_domain, accounts_server)` for a tenant: DC-aware, never a non-Zoho host
/// taken from tenant-supplied token data.
pub(crate) fn endpoints(
    settings: &TenantZoho,
    token_fields: &Map<String, Value>,
    platform: &ZohoSettings,
) -> (String, String) {
    let from_token = token_fields
        .get("api_domain")
        .and_then(Value::as_str)
        .filter(|domain| crate::providers::health::is_zoho_api_domain(domain));
    let api_domain = settings
        .api_domain
        .as_deref()
        .or(from_token)
        .unwrap_or(DEFAULT_API_DOMAIN)
        .trim_end_matches('/')
        .to_owned();
    (api_domain, accounts_server(token_fields, platform))
}

/// The token set's `accounts_server` when it is a Zoho accounts host (the data center the
/// tenant authorised in), else the platform's.
pub(crate) fn accounts_server(
    token_fields: &Map<String, Value>,
    platform: &ZohoSettings,
) -> String {
    token_fields
        .get("accounts_server")
        .and_then(Value::as_str)
        .filter(|server| is_zoho_accounts_server(server))
        .unwrap_or(&platform.accounts_url)
        .trim_end_matches('/')
        .to_owned()
}

/// Returns true for Zoho's accounts servers (`protocols/crm-calendar.md` B.1) only.
pub(crate) fn is_zoho_accounts_server(server: &str) -> bool {
    const HOSTS: &[&str] = &[
        "accounts.zoho.com",
        "accounts.zoho.eu",
        "accounts.zoho.in",
        "accounts.zoho.com.au",
        "accounts.zoho.jp",
        "accounts.zohocloud.ca",
        "accounts.zoho.sa",
        "accounts.zoho.com.cn",
        "accounts.zoho.uk",
    ];
    server
        .trim_end_matches('/')
        .strip_prefix("https://")
        .is_some_and(|host| HOSTS.contains(&host))
}

/// `POST {accounts}/oauth/v2/token` with the refresh grant. Error texts carry no secret and
/// start with `unavailable` when a retry may succeed.
pub(crate) async fn refresh_tokens(
    http: &reqwest::Client,
    settings: &ZohoSettings,
    accounts: &str,
    refresh_token: &Secret<String>,
) -> Result<TokenSet, String> {
    let (Some(client_id), Some(client_secret)) = (&settings.client_id, &settings.client_secret)
    else {
        return Err(
            "the platform's zoho app (zoho.client_id, zoho.client_secret) is not configured"
                .to_owned(),
        );
    };
    let response = http
        .post(format!("{accounts}/oauth/v2/token"))
        .header(ACCEPT, "application/json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose().as_str()),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose().as_str()),
        ])
        .send()
        .await
        .map_err(|error| format!("unavailable: {}", ProviderError::from_transport(&error)))?;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(format!("unavailable: status {}", status.as_u16()));
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    wire::token_answer(&body, Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            _ => Map::new(),
        }
    }

    #[test]
    fn endpoints_follow_the_token_sets_data_center_but_only_to_zoho_hosts() {
        let platform = ZohoSettings::default();
        let tenant = TenantZoho::from_providers(None).unwrap();
        let eu = fields(json!({"api_domain": "https://www.zohoapis.eu",
                               "accounts_server": "https://accounts.zoho.eu"}));
        assert_eq!(
            endpoints(&tenant, &eu, &platform),
            (
                "https://www.zohoapis.eu".to_owned(),
                "https://accounts.zoho.eu".to_owned()
            )
        );
        let ca = fields(json!({"accounts_server": "https://accounts.zohocloud.ca/"}));
        assert_eq!(
            endpoints(&tenant, &ca, &platform).1,
            "https://accounts.zohocloud.ca"
        );
        let hostile = fields(json!({"api_domain": "https://www.zohoapis.eu.evil.example",
                                    "accounts_server": "https://accounts.zoho.eu.evil.example"}));
        assert_eq!(
            endpoints(&tenant, &hostile, &platform),
            (DEFAULT_API_DOMAIN.to_owned(), platform.accounts_url.clone())
        );
        let operator =
            TenantZoho::from_providers(Some(&json!({"api_domain": "http://127.0.0.1:9/"})))
                .unwrap();
        assert_eq!(endpoints(&operator, &eu, &platform).0, "http://127.0.0.1:9");
    }
}
