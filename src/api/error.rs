//! API errors as RFC 9457 `application/problem+json`, each with a stable `code`.
//!
//! Internal failures are logged with their cause and answered without it: nothing from a
//! database error, a credential or a stack reaches the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::tenancy::FieldError;
use crate::tenancy::service::ServiceError;

/// Seconds a client is asked to wait (`Retry-After`) when a dependency (NATS, PostgreSQL) is
/// down: long enough for a restart, short enough that a webhook sender's retry lands soon.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, a malformed key, or an unknown, expired or revoked key.
    #[error("unauthorized")]
    Unauthorized,
    /// A webhook failed authentication (401): the reason names what, never a secret.
    #[error("webhook not authenticated: {0}")]
    WebhookUnauthorized(String),
    /// The request is well-formed but cannot be processed (422), with a detail.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// The key lacks a scope, or the action is for operators only.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The resource does not exist or belongs to another tenant.
    #[error("not found")]
    NotFound,
    /// Invalid fields, each named.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// Malformed syntax (bad JSON).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The body exceeds the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The key exceeded its rate limit.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a request is allowed again.
        retry_after_secs: u64,
        /// Requests per minute of the key.
        limit: u32,
    },
    /// A dependency (PostgreSQL) is unavailable.
    #[error("unavailable")]
    Unavailable,
    /// A bug or an unexpected failure; details are only in the logs.
    #[error("internal error")]
    Internal,
}

/// The problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Invalid fields (validation errors only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<String>) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid api key",
                None,
            ),
            ApiError::Forbidden(detail) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "not allowed",
                Some(detail.clone()),
            ),
            ApiError::WebhookUnauthorized(detail) => (
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "webhook authentication failed",
                Some(detail.clone()),
            ),
            ApiError::Unprocessable(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "request cannot be processed",
                Some(detail.clone()),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found", None),
            ApiError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "invalid fields",
                None,
            ),
            ApiError::BadRequest(detail) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                "malformed request",
                Some(detail.clone()),
            ),
            ApiError::Conflict(detail) => (
                StatusCode::CONFLICT,
                "conflict",
                "conflict",
                Some(detail.clone()),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
                None,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected application/json",
                None,
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate limit exceeded",
                None,
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "try again later",
                None,
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title, detail) = self.parts();
        let errors = match &self {
            ApiError::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let problem = Problem {
            problem_type: format!("https://caller.dev/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail,
            errors,
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                headers.insert("ratelimit-limit", HeaderValue::from(limit));
                headers.insert("ratelimit-remaining", HeaderValue::from(0));
                headers.insert("ratelimit-reset", HeaderValue::from(retry_after_secs));
            }
            ApiError::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match crate::error::StageError::from(error) {
            crate::error::StageError::Unavailable { reason, .. } => {
                tracing::warn!(%reason, "database unavailable");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::Internal
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Invalid(errors) => ApiError::Invalid(errors),
            ServiceError::Conflict(detail) => ApiError::Conflict(detail),
            ServiceError::Forbidden(detail) => ApiError::Forbidden(detail),
            ServiceError::Internal(reason) => {
                tracing::error!(%reason, "management operation failed");
                ApiError::Internal
            }
            ServiceError::Crypto(error) => {
                tracing::error!(%error, "credential could not be opened");
                ApiError::Internal
            }
            ServiceError::Database(error) => error.into(),
        }
    }
}
