//! A minimal client of Metabase's REST API (the endpoints of [`super::METABASE_VERSION`]).
//!
//! Invariant: the session token lives in [`MetabaseClient`] only, as a [`Secret`]; it is
//! sent in the `X-Metabase-Session` header and never appears in an error or a log line.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::secret::Secret;

/// Why a Metabase request failed.
#[derive(Debug, thiserror::Error)]
pub enum MetabaseError {
    /// Metabase did not answer (wrong URL, not started, network).
    #[error("metabase at `{url}` is unreachable: {source}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// `POST /api/session` refused the user or password.
    #[error("metabase refused the login of `{user}`: wrong user or password")]
    LoginRefused {
        /// The user (an email address).
        user: String,
    },
    /// A request was made without a session, or the session expired.
    #[error("metabase answered `{method} {path}` with 401: not logged in (or the session expired)")]
    Unauthenticated {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
    },
    /// Metabase answered with an error status.
    #[error("metabase answered `{method} {path}` with {status}: {message}")]
    Refused {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// The status.
        status: StatusCode,
        /// Metabase's message (its `message` or `errors`, else the body, shortened).
        message: String,
    },
    /// Metabase answered with something this client does not understand.
    #[error("metabase answered `{method} {path}` unexpectedly: {problem}")]
    Unexpected {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// What was wrong.
        problem: String,
    },
}

/// A Metabase API client, logged in or not.
#[derive(Debug)]
pub struct MetabaseClient {
    http: reqwest::Client,
    base_url: String,
    session: Option<Secret<String>>,
}

impl MetabaseClient {
    /// Returns a client of the Metabase at `base_url` (e.g. `http://127.0.0.1:3000`).
    pub fn new(base_url: &str) -> Self {
        Self {
            http: crate::providers::http::client(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            session: None,
        }
    }

    /// Checks `GET /api/health` answers `{"status": "ok"}` (Metabase has finished starting).
    pub async fn health(&self) -> Result<(), MetabaseError> {
        let body = self.send(Method::GET, "/api/health", None).await?;
        if body["status"] == "ok" {
            Ok(())
        } else {
            Err(self.unexpected(
                Method::GET,
                "/api/health",
                format!("status {}", body["status"]),
            ))
        }
    }

    /// Logs in with `POST /api/session`; later requests carry the session.
    pub async fn login(
        &mut self,
        user: &str,
        password: &Secret<String>,
    ) -> Result<(), MetabaseError> {
        let body = json!({"username": user, "password": password.expose()});
        let answer = match self.send(Method::POST, "/api/session", Some(&body)).await {
            Ok(answer) => answer,
            Err(MetabaseError::Unauthenticated { .. }) => {
                return Err(MetabaseError::LoginRefused {
                    user: user.to_owned(),
                });
            }
            Err(MetabaseError::Refused { status, .. }) if status == StatusCode::BAD_REQUEST => {
                return Err(MetabaseError::LoginRefused {
                    user: user.to_owned(),
                });
            }
            Err(other) => return Err(other),
        };
        let Some(token) = answer["id"].as_str() else {
            return Err(self.unexpected(Method::POST, "/api/session", "no session id".to_owned()));
        };
        self.session = Some(Secret::new(token.to_owned()));
        Ok(())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, MetabaseError> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, MetabaseError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, MetabaseError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// Returns an [`MetabaseError::Unexpected`] for `method path`.
    pub fn unexpected(&self, method: Method, path: &str, problem: String) -> MetabaseError {
        MetabaseError::Unexpected {
            method,
            path: path.to_owned(),
            problem,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, MetabaseError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(session) = &self.session {
            request = request.header("X-Metabase-Session", session.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| MetabaseError::Unreachable {
                url: self.base_url.clone(),
                source: source.without_url(),
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| MetabaseError::Unreachable {
                url: self.base_url.clone(),
                source: source.without_url(),
            })?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(MetabaseError::Unauthenticated {
                method,
                path: path.to_owned(),
            });
        }
        if !status.is_success() {
            return Err(MetabaseError::Refused {
                method,
                path: path.to_owned(),
                status,
                message: error_message(&text),
            });
        }
        serde_json::from_str(&text).map_err(|error| MetabaseError::Unexpected {
            method,
            path: path.to_owned(),
            problem: format!("not JSON: {error}"),
        })
    }
}

/// Metabase's error text: `message`, else `errors` (field → problem), else the body itself;
/// at most 300 characters.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = match parsed {
        Some(Value::Object(fields)) => match (fields.get("message"), fields.get("errors")) {
            (Some(Value::String(message)), _) => message.clone(),
            (_, Some(errors)) => errors.to_string(),
            _ => body.to_owned(),
        },
        _ => body.to_owned(),
    };
    message.chars().take(300).collect()
}
