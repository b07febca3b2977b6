//! API-key authentication, per-key rate limits, and client scoping.
//!
//! Order per request: authenticate (401) → rate limit (429) → for routes under
//! `/v1/clients/{client_id}`, check the key may act for that client (404, never 403, so a key
//! learns nothing about other tenants) → the handler checks its scope (403) and validates the
//! body (422). Scoping runs before the body is read, so a request for another tenant's client
//! is 404 whatever its body.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::api_keys::{self, ApiKeyRow};
use crate::tenancy::api_keys::{Scope, hash, is_well_formed};
use crate::tenancy::audit::Actor;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    key: ApiKeyRow,
    request_id: String,
}

impl Principal {
    /// Returns the tenant the key acts for; `None` for operator keys.
    pub fn tenant(&self) -> Option<TenantId> {
        self.key.tenant_id
    }

    /// Returns true for operator (platform-wide) keys.
    pub fn is_operator(&self) -> bool {
        self.key.tenant_id.is_none()
    }

    /// Refuses with 403 unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.iter().any(|s| s == scope.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the api key lacks scope `{scope}`"
            )))
        }
    }

    /// Refuses with 403 unless this is an operator key.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only an operator key may do this".to_owned(),
            ))
        }
    }

    /// Refuses with 403 when a client key would grant more than it holds itself: scopes it
    /// lacks, or a higher rate limit. Operator keys may grant anything.
    pub fn may_grant(&self, scopes: &[String], rate_limit_per_minute: i32) -> Result<(), ApiError> {
        if self.is_operator() {
            return Ok(());
        }
        if let Some(scope) = scopes.iter().find(|s| !self.key.scopes.contains(s)) {
            return Err(ApiError::Forbidden(format!(
                "a key cannot grant scope `{scope}`, which it lacks"
            )));
        }
        if rate_limit_per_minute > self.key.rate_limit_per_minute {
            return Err(ApiError::Forbidden(
                "a key cannot grant a higher rate limit than its own".to_owned(),
            ));
        }
        Ok(())
    }

    /// Returns the audit actor of this request.
    pub fn actor(&self) -> Actor {
        Actor {
            label: format!("key:{}", self.key.id),
            request_id: Some(self.request_id.clone()),
        }
    }
}

/// The client a request under `/v1/clients/{client_id}` may act on.
#[derive(Clone, Copy, Debug)]
pub struct ClientAccess(pub TenantId);

type KeyLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Per-key token buckets of this process.
///
/// NOTE: the limit holds per API process; with N ingress replicas a key gets up to N times its
/// limit. That bounds abuse of the management API; call admission (the rate_limit stage, still
/// to be built) must hold its limits globally instead.
pub type KeyRateLimits = RateLimits<ApiKeyId>;

/// Token buckets by key (an API key, a tenant), each with its own per-minute rate.
#[derive(Debug)]
pub struct RateLimits<K> {
    limiters: Mutex<HashMap<K, (u32, Arc<KeyLimiter>)>>,
}

impl<K> Default for RateLimits<K> {
    fn default() -> Self {
        Self {
            limiters: Mutex::new(HashMap::new()),
        }
    }
}

/// The outcome of a rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the limit.
    Allowed {
        /// Requests per minute.
        limit: u32,
        /// Requests left in the burst.
        remaining: u32,
    },
    /// Over the limit.
    Refused {
        /// Requests per minute.
        limit: u32,
        /// Seconds until a request would pass.
        retry_after_secs: u64,
    },
}

impl Admission {
    /// Returns 429 when refused.
    pub fn into_result(self) -> Result<(), ApiError> {
        match self {
            Admission::Allowed { .. } => Ok(()),
            Admission::Refused {
                limit,
                retry_after_secs,
            } => Err(ApiError::RateLimited {
                retry_after_secs,
                limit,
            }),
        }
    }
}

impl<K: std::hash::Hash + Eq> RateLimits<K> {
    /// Takes one request from `key`'s bucket of `per_minute` (a changed rate starts a new
    /// bucket).
    pub fn check(&self, key: K, per_minute: u32) -> Admission {
        let per_minute = per_minute.max(1);
        let limiter = {
            let mut limiters = self.limiters.lock().expect("rate limit lock");
            let entry = limiters
                .entry(key)
                .or_insert_with(|| (per_minute, new_limiter(per_minute)));
            if entry.0 != per_minute {
                *entry = (per_minute, new_limiter(per_minute));
            }
            entry.1.clone()
        };
        match limiter.check() {
            Ok(snapshot) => Admission::Allowed {
                limit: per_minute,
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Admission::Refused {
                    limit: per_minute,
                    retry_after_secs: wait.as_secs().max(1),
                }
            }
        }
    }
}

fn new_limiter(per_minute: u32) -> Arc<KeyLimiter> {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
    Arc::new(RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>())
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Authenticates the request and applies the key's rate limit.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(text) = bearer(&request) else {
        return ApiError::Unauthorized.into_response();
    };
    if !is_well_formed(text) {
        return ApiError::Unauthorized.into_response();
    }
    let key_hash = hash(text);
    let key = match lookup(&state, &key_hash).await {
        Ok(Some((key, _))) if !key.is_usable(Utc::now()) => {
            return ApiError::Unauthorized.into_response();
        }
        Ok(Some((_, ClientStatus::Disabled))) => {
            return ApiError::Forbidden("the client is disabled".to_owned()).into_response();
        }
        Ok(Some((key, ClientStatus::Active))) => key,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(error) => return error.into_response(),
    };
    let per_minute = u32::try_from(key.rate_limit_per_minute).unwrap_or(1);
    let (limit, remaining) = match state.rate_limits.check(key.id, per_minute) {
        Admission::Allowed { limit, remaining } => (limit, remaining),
        Admission::Refused {
            limit,
            retry_after_secs,
        } => {
            return ApiError::RateLimited {
                retry_after_secs,
                limit,
            }
            .into_response();
        }
    };
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.0.clone());
    request
        .extensions_mut()
        .insert(Principal { key, request_id });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    response
}

/// Whether the key's client may act (operator keys belong to no client: always active).
enum ClientStatus {
    Active,
    Disabled,
}

async fn lookup(
    state: &AppState,
    key_hash: &[u8],
) -> Result<Option<(ApiKeyRow, ClientStatus)>, ApiError> {
    // Platform mode: the key's tenant is what we are about to learn.
    let mut tx = state.store.begin_platform().await?;
    let Some(key) = api_keys::find_by_hash(&mut tx, key_hash).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    api_keys::touch(&mut tx, key.id).await?;
    let status = match key.tenant_id {
        // A disabled client's keys stop working until an operator re-enables it.
        Some(tenant) => match crate::store::tenants::get(&mut tx, tenant).await? {
            Some(client) if client.status == "active" => ClientStatus::Active,
            _ => ClientStatus::Disabled,
        },
        None => ClientStatus::Active,
    };
    tx.commit().await?;
    Ok(Some((key, status)))
}

/// Lets a request under `/v1/clients/{client_id}` through only for that client's keys and
/// operator keys; anything else is 404.
pub async fn scope_to_client(params: RawPathParams, mut request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    let client = params
        .iter()
        .find(|(name, _)| *name == "client_id")
        .map(|(_, value)| value.to_owned());
    let Some(tenant) = client
        .as_deref()
        .and_then(|text| TenantId::parse(text).ok())
    else {
        return ApiError::NotFound.into_response();
    };
    if principal.tenant().is_some_and(|own| own != tenant) {
        return ApiError::NotFound.into_response();
    }
    request.extensions_mut().insert(ClientAccess(tenant));
    next.run(request).await
}

/// The request id: the caller's `x-request-id` when sane, else a new UUIDv7.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Assigns a request id, echoes it in the response, and records it in the request's span.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    // The route's template, never the raw path: webhook paths may carry a tenant's secret
    // (`/webhooks/{tenant}/gohighlevel/workflow/{secret}`) and blocklist paths a phone number.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("<unmatched>", axum::extract::MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
