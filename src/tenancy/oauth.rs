//! OAuth access tokens from a tenant's stored token set, refreshed once at a time.
//!
//! The credential (e.g. `zoho.oauth`, `gohighlevel.oauth`) is the JSON object
//! `{"access_token", "refresh_token", "expires_at", …}`; other fields the vendor returned
//! (`api_domain`, `locationId`, …) are kept across refreshes.
//!
//! Invariants:
//! - A token valid for longer than the skew is returned without taking any lock.
//! - At most one refresh of a `(tenant, kind)` runs at a time across every process: the
//!   refresher holds the transaction-scoped advisory lock `oauth:<tenant>:<kind>`, and a
//!   waiter re-reads the credential once it has the lock, so it uses the token the winner
//!   stored instead of refreshing again (which would burn a rotated refresh token).
//! - New tokens are committed before the access token is returned: a refresh token the vendor
//!   rotated is never lost because the process died after using the new access token.
//! - No error message carries a token.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::crypto::{self, CryptoError, Keyring};
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::store::Store;
use crate::store::credentials::{self, SealedCredential};

/// Tokens a refresh returned.
#[derive(Clone, Debug)]
pub struct TokenSet {
    /// The new access token.
    pub access_token: Secret<String>,
    /// The new refresh token when the vendor rotates it; `None` keeps the stored one.
    pub refresh_token: Option<Secret<String>>,
    /// When the new access token expires.
    pub expires_at: DateTime<Utc>,
    /// Other fields of the vendor's response to store beside the tokens (e.g. `api_domain`);
    /// they replace stored fields of the same name. May hold secrets: never logged.
    pub extra: Secret<Map<String, Value>>,
}

/// Why no access token could be returned. Messages never carry a token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The tenant has no credential of this kind.
    #[error("client has no `{kind}` credential")]
    NotFound {
        /// Credential kind.
        kind: String,
    },
    /// The stored credential is not a token set (the reason names a field, never a value).
    #[error("stored `{kind}` credential is not an oauth token set: {reason}")]
    Unreadable {
        /// Credential kind.
        kind: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token needs a refresh but no refresh token is stored.
    #[error("`{kind}` token has expired and no refresh token is stored")]
    NoRefreshToken {
        /// Credential kind.
        kind: String,
    },
    /// The refresh function failed; its text MUST NOT contain secrets.
    #[error("`{kind}` token refresh failed: {reason}")]
    RefreshFailed {
        /// Credential kind.
        kind: String,
        /// The refresh function's error text.
        reason: String,
    },
    /// The sealed credential does not open.
    #[error("`{kind}` credential: {source}")]
    Crypto {
        /// Credential kind.
        kind: String,
        /// Why it does not open.
        source: CryptoError,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A stored token set, opened. Not `Debug`: it holds the tokens.
struct StoredTokens {
    /// Every field, tokens included, as stored.
    fields: Map<String, Value>,
    access_token: Secret<String>,
    refresh_token: Option<Secret<String>>,
    expires_at: Option<DateTime<Utc>>,
}

impl StoredTokens {
    fn into_access_token(self) -> AccessToken {
        AccessToken {
            access_token: self.access_token,
            fields: Secret::new(self.fields),
        }
    }

    /// Returns true when the access token is valid for longer than `skew` from `now`; a token
    /// without a known expiry is treated as expired.
    fn is_fresh(&self, now: DateTime<Utc>, skew: chrono::Duration) -> bool {
        let Some(limit) = now.checked_add_signed(skew) else {
            return false;
        };
        self.expires_at.is_some_and(|expiry| expiry > limit)
    }
}

/// A valid access token with every field of its stored token set (e.g. Zoho's `api_domain`).
pub struct AccessToken {
    /// The access token.
    pub access_token: Secret<String>,
    /// Every stored field, tokens included.
    pub fields: Secret<Map<String, Value>>,
}

/// Returns a valid access token of `(tenant, kind)`, refreshing it with `refresh` when it
/// expires within `skew`.
///
/// `refresh` receives the stored refresh token and is called at most once, and only while
/// this process holds the refresh lock of `(tenant, kind)`. Its error text ends up in
/// [`OAuthError::RefreshFailed`] and MUST NOT contain secrets.
pub async fn access_token<F, Fut, E>(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    skew: Duration,
    refresh: F,
) -> Result<Secret<String>, OAuthError>
where
    F: FnOnce(Secret<String>) -> Fut,
    Fut: Future<Output = Result<TokenSet, E>>,
    E: std::fmt::Display,
{
    token_set(store, keyring, tenant, kind, skew, refresh)
        .await
        .map(|token| token.access_token)
}

/// [`access_token`], with the token set's other stored fields, read in the same pass.
pub async fn token_set<F, Fut, E>(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    skew: Duration,
    refresh: F,
) -> Result<AccessToken, OAuthError>
where
    F: FnOnce(Secret<String>) -> Fut,
    Fut: Future<Output = Result<TokenSet, E>>,
    E: std::fmt::Display,
{
    let skew = chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    token_set_when(store, keyring, tenant, kind, refresh, |stored| {
        stored.is_fresh(Utc::now(), skew)
    })
    .await
}

/// [`token_set`] after the vendor refused `rejected` (a 401 before the token's expiry): the
/// stored token is used only when it is no longer `rejected` and valid for longer than
/// `skew` (another request or process refreshed meanwhile); otherwise it is refreshed, under
/// the same lock, so many requests refused at once refresh once.
pub async fn token_set_after_rejection<F, Fut, E>(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    skew: Duration,
    rejected: &Secret<String>,
    refresh: F,
) -> Result<AccessToken, OAuthError>
where
    F: FnOnce(Secret<String>) -> Fut,
    Fut: Future<Output = Result<TokenSet, E>>,
    E: std::fmt::Display,
{
    let skew = chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    token_set_when(store, keyring, tenant, kind, refresh, |stored| {
        stored.access_token.expose() != rejected.expose() && stored.is_fresh(Utc::now(), skew)
    })
    .await
}

/// Returns the stored token set as it is, without refreshing it (e.g. for the fields a
/// refresh needs, such as the accounts server of Zoho's data center).
pub async fn stored_token_set(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
) -> Result<AccessToken, OAuthError> {
    let mut transaction = store.begin_tenant(tenant).await?;
    let stored = credentials::get(&mut transaction, tenant, kind).await?;
    transaction.rollback().await?;
    Ok(read(keyring, tenant, kind, stored)?.into_access_token())
}

/// Returns the stored token set when `usable` says so, else refreshes it under the lock.
async fn token_set_when<F, Fut, E>(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    refresh: F,
    usable: impl Fn(&StoredTokens) -> bool,
) -> Result<AccessToken, OAuthError>
where
    F: FnOnce(Secret<String>) -> Fut,
    Fut: Future<Output = Result<TokenSet, E>>,
    E: std::fmt::Display,
{
    let mut transaction = store.begin_tenant(tenant).await?;
    let stored = credentials::get(&mut transaction, tenant, kind).await?;
    transaction.rollback().await?;
    let stored = read(keyring, tenant, kind, stored)?;
    if usable(&stored) {
        return Ok(stored.into_access_token());
    }

    let mut transaction = store.begin_tenant(tenant).await?;
    credentials::lock_oauth_refresh(&mut transaction, tenant, kind).await?;
    // Another process may have refreshed while this one waited for the lock. The row lock
    // also keeps a management write from landing between this read and the write below.
    let locked = credentials::get_for_update(&mut transaction, tenant, kind).await?;
    let stored = read(keyring, tenant, kind, locked)?;
    if usable(&stored) {
        transaction.rollback().await?;
        return Ok(stored.into_access_token());
    }
    let Some(refresh_token) = stored.refresh_token.clone() else {
        return Err(OAuthError::NoRefreshToken {
            kind: kind.to_owned(),
        });
    };
    let tokens = refresh(refresh_token)
        .await
        .map_err(|error| OAuthError::RefreshFailed {
            kind: kind.to_owned(),
            reason: error.to_string(),
        })?;
    let fields = merged(stored, &tokens);
    let plaintext = Secret::new(Value::Object(fields.clone()).to_string());
    let sealed = crypto::seal(keyring, tenant, kind, &plaintext);
    credentials::put(
        &mut transaction,
        tenant,
        kind,
        &sealed,
        &crypto::mask(&plaintext),
        Some(tokens.expires_at),
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(
        tenant_id = %tenant,
        kind,
        expires_at = %tokens.expires_at,
        "oauth token refreshed"
    );
    Ok(AccessToken {
        access_token: tokens.access_token,
        fields: Secret::new(fields),
    })
}

/// Opens and parses a stored token set.
fn read(
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    stored: Option<SealedCredential>,
) -> Result<StoredTokens, OAuthError> {
    let Some(stored) = stored else {
        return Err(OAuthError::NotFound {
            kind: kind.to_owned(),
        });
    };
    let plaintext = crypto::open(keyring, tenant, kind, &stored.sealed).map_err(|source| {
        OAuthError::Crypto {
            kind: kind.to_owned(),
            source,
        }
    })?;
    parse(plaintext.expose(), stored.expires_at).map_err(|reason| OAuthError::Unreadable {
        kind: kind.to_owned(),
        reason,
    })
}

/// Parses the token set; `column_expiry` (the row's `expires_at`) is used when the JSON has
/// none. Errors are fixed texts: a parser's message could quote a token.
fn parse(
    plaintext: &str,
    column_expiry: Option<DateTime<Utc>>,
) -> Result<StoredTokens, &'static str> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(plaintext) else {
        return Err("not a JSON object");
    };
    let access_token = match fields.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => Secret::new(token.clone()),
        _ => return Err("`access_token` is missing or not a string"),
    };
    let refresh_token = match fields.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if !token.is_empty() => Some(Secret::new(token.clone())),
        Some(_) => return Err("`refresh_token` is not a string"),
    };
    let expires_at = match fields.get("expires_at") {
        None | Some(Value::Null) => column_expiry,
        Some(Value::String(text)) => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| "`expires_at` is not an RFC 3339 time")?
                .with_timezone(&Utc),
        ),
        Some(Value::Number(seconds)) => Some(
            seconds
                .as_i64()
                .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
                .ok_or("`expires_at` is not a unix time in seconds")?,
        ),
        Some(_) => return Err("`expires_at` is not an RFC 3339 time"),
    };
    Ok(StoredTokens {
        fields,
        access_token,
        refresh_token,
        expires_at,
    })
}

/// Returns the stored fields updated with a refresh's tokens and extra fields.
fn merged(stored: StoredTokens, tokens: &TokenSet) -> Map<String, Value> {
    let mut fields = stored.fields;
    for (name, value) in tokens.extra.expose() {
        fields.insert(name.clone(), value.clone());
    }
    fields.insert(
        "access_token".to_owned(),
        Value::String(tokens.access_token.expose().clone()),
    );
    let refresh_token = tokens
        .refresh_token
        .as_ref()
        .or(stored.refresh_token.as_ref());
    if let Some(refresh_token) = refresh_token {
        fields.insert(
            "refresh_token".to_owned(),
            Value::String(refresh_token.expose().clone()),
        );
    }
    fields.insert(
        "expires_at".to_owned(),
        Value::String(
            tokens
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    );
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_set_parses_with_either_expiry_form_and_keeps_extra_fields() {
        let stored = parse(
            r#"{"access_token":"a1","refresh_token":"r1",
                "expires_at":"2030-01-01T00:00:00Z","api_domain":"https://x"}"#,
            None,
        )
        .unwrap();
        assert_eq!(stored.access_token.expose(), "a1");
        assert_eq!(stored.refresh_token.as_ref().unwrap().expose(), "r1");
        assert_eq!(
            stored.expires_at.unwrap().to_rfc3339(),
            "2030-01-01T00:00:00+00:00"
        );
        let numeric = parse(r#"{"access_token":"a1","expires_at":1893456000}"#, None).unwrap();
        assert_eq!(numeric.expires_at, stored.expires_at);
        assert!(numeric.refresh_token.is_none());

        let tokens = TokenSet {
            access_token: Secret::new("a2".to_owned()),
            refresh_token: None,
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            extra: Secret::new(Map::new()),
        };
        let merged = Value::Object(merged(stored, &tokens));
        assert_eq!(merged["access_token"], "a2");
        assert_eq!(
            merged["refresh_token"], "r1",
            "an unrotated refresh token is kept"
        );
        assert_eq!(merged["api_domain"], "https://x");
        assert_eq!(merged["expires_at"], "2030-03-17T17:46:40Z");
    }

    #[test]
    fn unreadable_token_sets_are_refused_without_quoting_them() {
        for (text, expected) in [
            ("sk-not-json", "not a JSON object"),
            (r#"["sk-array"]"#, "not a JSON object"),
            (
                r#"{"access_token":42}"#,
                "`access_token` is missing or not a string",
            ),
            (
                r#"{"access_token":"a","expires_at":"sk-soon"}"#,
                "`expires_at` is not an RFC 3339 time",
            ),
        ] {
            let Err(reason) = parse(text, None) else {
                panic!("{expected}: parsed");
            };
            assert_eq!(reason, expected);
            assert!(!reason.contains("sk-"));
        }
    }

    #[test]
    fn a_token_without_expiry_is_stale_and_the_skew_counts() {
        let now = Utc::now();
        let mut stored = parse(r#"{"access_token":"a"}"#, None).unwrap();
        assert!(!stored.is_fresh(now, chrono::Duration::zero()));
        stored.expires_at = Some(now + chrono::Duration::seconds(30));
        assert!(stored.is_fresh(now, chrono::Duration::seconds(10)));
        assert!(!stored.is_fresh(now, chrono::Duration::seconds(60)));
    }
}
