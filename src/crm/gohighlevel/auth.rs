//! A tenant's HighLevel credential: a Private Integration Token, or an OAuth token set kept
//! fresh through [`crate::tenancy::oauth`]; and the install by authorization code.
//!
//! A 401 to an OAuth access token forces a refresh. Many requests can be rejected with the
//! same token at once (it expired early): they queue on one gate per tenant, and each
//! re-reads the stored token first, so only the first refreshes and the others use its
//! token. Across processes the advisory lock of `tenancy::oauth` still serialises refreshes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use super::{Account, GoHighLevel, ProviderError, Session};
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::tenancy::audit::Actor;
use crate::tenancy::oauth::{self, OAuthError, TokenSet};
use crate::tenancy::service::{self, CredentialInput};

/// The credential kind of a Private Integration Token.
pub const PRIVATE_TOKEN_KIND: &str = "gohighlevel.private_token";
/// The credential kind of an OAuth token set (`{access_token, refresh_token, expires_at, …}`).
pub const OAUTH_KIND: &str = "gohighlevel.oauth";

/// The token a request is sent with.
#[derive(Clone, Debug)]
pub(super) enum Credential {
    /// A Private Integration Token: nothing to refresh.
    Private(Secret<String>),
    /// An OAuth access token.
    OAuth(Secret<String>),
}

impl Credential {
    pub(super) fn token(&self) -> &Secret<String> {
        match self {
            Self::Private(token) | Self::OAuth(token) => token,
        }
    }
}

fn database(error: &sqlx::Error) -> ProviderError {
    ProviderError::Unavailable {
        reason: format!("database: {error}"),
    }
}

/// Classifies why no OAuth access token could be had.
fn oauth_error(error: OAuthError) -> ProviderError {
    match error {
        OAuthError::Database(error) => database(&error),
        OAuthError::RefreshFailed { reason, .. } if reason.starts_with("unavailable") => {
            ProviderError::Unavailable { reason }
        }
        other => ProviderError::Unauthorized {
            reason: other.to_string(),
        },
    }
}

impl GoHighLevel {
    /// Returns the session of a request: the tenant's credential and location.
    pub(super) async fn session(&self, account: &Account) -> Result<Session, ProviderError> {
        let tenant = account.tenant;
        if let Some(token) = self.private_token(tenant).await? {
            let location = account.location.clone().ok_or_else(no_location)?;
            return Ok(Session {
                location,
                credential: Credential::Private(token),
            });
        }
        let tokens = oauth::token_set(
            &self.store,
            &self.keyring,
            tenant,
            OAUTH_KIND,
            Duration::from_secs(self.settings.refresh_skew_secs),
            |refresh_token| self.refresh(account, refresh_token),
        )
        .await
        .map_err(oauth_error)?;
        let location = account
            .location
            .clone()
            .or_else(|| {
                tokens
                    .fields
                    .expose()
                    .get("locationId")
                    .and_then(Value::as_str)
                    .filter(|id| super::wire::is_id(id))
                    .map(str::to_owned)
            })
            .ok_or_else(no_location)?;
        Ok(Session {
            location,
            credential: Credential::OAuth(tokens.access_token),
        })
    }

    /// Returns a token to retry with after `rejected` was refused, refreshing at most once
    /// per rejected token in this process; `None` for a Private Integration Token.
    pub(super) async fn after_rejection(
        &self,
        account: &Account,
        rejected: &Credential,
    ) -> Result<Option<Credential>, ProviderError> {
        let Credential::OAuth(rejected) = rejected else {
            return Ok(None);
        };
        let gate = {
            let mut gates = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(gates.entry(account.tenant).or_default())
        };
        let _turn = gate.lock().await;
        // The shared refresh of a refused token: the stored one is used when another request
        // or process already replaced it, else it is refreshed once under the refresh lock.
        let fresh = oauth::token_set_after_rejection(
            &self.store,
            &self.keyring,
            account.tenant,
            OAUTH_KIND,
            Duration::from_secs(self.settings.refresh_skew_secs),
            rejected,
            |refresh_token| self.refresh(account, refresh_token),
        )
        .await
        .map_err(oauth_error)?;
        Ok(Some(Credential::OAuth(fresh.access_token)))
    }

    async fn private_token(
        &self,
        tenant: TenantId,
    ) -> Result<Option<Secret<String>>, ProviderError> {
        let token = crate::providers::tenant_secret::open(
            &self.store,
            &self.keyring,
            tenant,
            PRIVATE_TOKEN_KIND,
        )
        .await
        .map_err(|error| match error {
            // A token that does not open cannot authenticate: the tenant must set it again.
            ProviderError::Invalid { reason } => ProviderError::Unauthorized { reason },
            other => other,
        })?;
        Ok(token.filter(|token| !token.expose().is_empty()))
    }

    /// `POST /oauth/token` with the refresh grant. Error texts never carry a token; they start
    /// with `unavailable` when trying again later may work.
    async fn refresh(
        &self,
        account: &Account,
        refresh_token: Secret<String>,
    ) -> Result<TokenSet, String> {
        let answer = self
            .token_grant(
                account,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose().as_str()),
                ],
            )
            .await?;
        token_set(&answer)
    }

    /// Posts a grant to the token endpoint with the platform app; returns the answer.
    async fn token_grant(
        &self,
        account: &Account,
        grant: &[(&str, &str)],
    ) -> Result<Value, String> {
        let (Some(client_id), Some(client_secret)) =
            (&self.settings.client_id, &self.settings.client_secret)
        else {
            return Err(
                "the platform's HighLevel app (gohighlevel.client_id, gohighlevel.client_secret) is not configured"
                    .to_owned(),
            );
        };
        let url = account
            .url(&["oauth", "token"])
            .map_err(|error| error.to_string())?;
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose().as_str()),
            ("user_type", "Location"),
        ];
        form.extend_from_slice(grant);
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| format!("unavailable: {}", ProviderError::from_transport(&error)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(format!(
                "unavailable: highlevel answered {}",
                status.as_u16()
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "highlevel refused the grant ({}: {}): reconnect the client",
                status.as_u16(),
                super::wire::error_message(&body).unwrap_or_default()
            ));
        }
        Ok(body)
    }

    /// Installs HighLevel for `tenant` from the authorization code of the install redirect:
    /// exchanges it at `POST /oauth/token` and stores the token set as the tenant's
    /// `gohighlevel.oauth` credential (audited as `actor`). Returns the location the token
    /// is for.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unauthorized`] when HighLevel refuses the code or the app is not
    /// configured; `Unavailable` when HighLevel or the database fails.
    pub async fn install(
        &self,
        tenant: TenantId,
        code: &str,
        actor: &Actor,
    ) -> Result<Option<String>, ProviderError> {
        let account = self.account(tenant).await?;
        let mut grant = vec![("grant_type", "authorization_code"), ("code", code)];
        if let Some(redirect_uri) = &self.settings.redirect_uri {
            grant.push(("redirect_uri", redirect_uri.as_str()));
        }
        let answer = self.token_grant(&account, &grant).await.map_err(|reason| {
            if reason.starts_with("unavailable") {
                ProviderError::Unavailable { reason }
            } else {
                ProviderError::Unauthorized { reason }
            }
        })?;
        let tokens = token_set(&answer).map_err(|reason| ProviderError::Unauthorized { reason })?;
        let mut stored = tokens.extra.expose().clone();
        stored.insert(
            "access_token".to_owned(),
            json!(tokens.access_token.expose()),
        );
        if let Some(refresh_token) = &tokens.refresh_token {
            stored.insert("refresh_token".to_owned(), json!(refresh_token.expose()));
        }
        stored.insert(
            "expires_at".to_owned(),
            json!(
                tokens
                    .expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        );
        let location = stored
            .get("locationId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let input = CredentialInput {
            value: Secret::new(Value::Object(stored).to_string()),
            expires_at: Some(tokens.expires_at),
        };
        let mut transaction = self
            .store
            .begin_tenant(tenant)
            .await
            .map_err(|error| database(&error))?;
        service::put_credential(
            &mut transaction,
            actor,
            &self.keyring,
            tenant,
            OAUTH_KIND,
            &input,
        )
        .await
        .map_err(|error| ProviderError::Unavailable {
            reason: format!("storing the token set: {error}"),
        })?;
        transaction
            .commit()
            .await
            .map_err(|error| database(&error))?;
        tracing::info!(tenant_id = %tenant, location_id = ?location, "highlevel installed");
        Ok(location)
    }
}

fn no_location() -> ProviderError {
    ProviderError::Invalid {
        reason: "the client has no HighLevel location (`providers.gohighlevel.location_id`)"
            .to_owned(),
    }
}

/// Reads a token answer (`GetAccessCodeSuccessfulResponseDto`). Errors name fields, never
/// values.
fn token_set(answer: &Value) -> Result<TokenSet, String> {
    let Some(access_token) = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
    else {
        return Err("highlevel's token answer has no `access_token`".to_owned());
    };
    let expires_in = answer
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(86_399);
    let mut extra = Map::new();
    for key in [
        "token_type",
        "scope",
        "userType",
        "locationId",
        "companyId",
        "userId",
    ] {
        if let Some(value) = answer.get(key).filter(|value| value.is_string()) {
            extra.insert(key.to_owned(), value.clone());
        }
    }
    Ok(TokenSet {
        access_token: Secret::new(access_token.to_owned()),
        refresh_token: answer
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .map(|token| Secret::new(token.to_owned())),
        expires_at: Utc::now() + chrono::Duration::seconds(expires_in.max(0)),
        extra: Secret::new(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_answer_keeps_the_rotated_refresh_token_and_the_location() {
        let tokens = token_set(&json!({
            "access_token": "sk-access", "refresh_token": "sk-refresh", "expires_in": 86399,
            "locationId": "l1C08ntBrFjLS0elLIYU", "userType": "Location", "userId": "u"
        }))
        .unwrap();
        assert_eq!(tokens.refresh_token.unwrap().expose(), "sk-refresh");
        assert_eq!(tokens.extra.expose()["locationId"], "l1C08ntBrFjLS0elLIYU");
        assert!(!tokens.extra.expose().contains_key("access_token"));
        let error = token_set(&json!({"refresh_token": "sk-refresh"}))
            .err()
            .unwrap();
        assert!(!error.contains("sk-"), "{error}");
    }
}
