//! The one error vocabulary of CRM and calendar adapters, classified once into retry or
//! reject at the stage boundary ([`From<ProviderError> for StageError`]).
//!
//! Every adapter maps its vendor's answers here, with [`ProviderError::from_status`] for the
//! HTTP status part and [`ProviderError::from_transport`] for network failures, so callers
//! branch on the same six cases whatever the vendor. Invariant: no variant carries a
//! credential; `reason` texts are the vendor's error code or message, never a header.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::StageError;

/// Why a vendor request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The vendor refused the credentials (401/403, or a refresh that failed): refresh once,
    /// then raise a tenant alert; retrying cannot help until the tenant reconnects.
    #[error("the provider refused the credentials: {reason}")]
    Unauthorized {
        /// The vendor's code or message.
        reason: String,
    },
    /// Too many requests (429, or our own per-tenant budget is spent): retry after the wait.
    #[error("the provider is rate limiting us")]
    RateLimited {
        /// How long the vendor (or our budget) says to wait.
        retry_after: Option<Duration>,
    },
    /// The record does not exist at the vendor.
    #[error("the provider has no such {what}")]
    NotFound {
        /// What was looked up (`contact`, `appointment`, …).
        what: String,
    },
    /// The vendor refused the request's content (400/422, a per-record error): never retry.
    #[error("the provider refused the request: {reason}")]
    Invalid {
        /// The vendor's code or message.
        reason: String,
    },
    /// The vendor failed (5xx, connection refused, an unreadable answer): retry later.
    #[error("the provider is unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The vendor did not answer in time.
    #[error("the provider did not answer in time")]
    Timeout,
}

impl ProviderError {
    /// Returns true when the same request may succeed later without any change.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Timeout
        )
    }

    /// Classifies a non-success HTTP answer. `what` names the resource for a 404; `reason` is
    /// the vendor's code or message, already stripped of anything secret.
    #[must_use]
    pub fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        what: &str,
        reason: impl Into<String>,
    ) -> Self {
        let reason = reason.into();
        match status.as_u16() {
            401 | 403 => Self::Unauthorized { reason },
            404 | 410 => Self::NotFound {
                what: what.to_owned(),
            },
            408 | 504 => Self::Timeout,
            429 => Self::RateLimited {
                retry_after: retry_after(headers),
            },
            500..=599 => Self::Unavailable { reason },
            _ => Self::Invalid { reason },
        }
    }

    /// Classifies a failure to send or read a request.
    #[must_use]
    pub fn from_transport(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() {
            Self::Unavailable {
                reason: "unreadable answer".to_owned(),
            }
        } else {
            // NOTE: reqwest's Display includes the URL, which may hold a query parameter we
            // consider secret (Zoho's refresh grant); name only the kind of failure.
            Self::Unavailable {
                reason: if error.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "request failed".to_owned()
                },
            }
        }
    }

    /// An answer whose body could not be read in the documented shape.
    #[must_use]
    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            reason: format!("malformed answer: {detail}"),
        }
    }
}

/// Reads `Retry-After` in seconds (the HTTP-date form is rare at these vendors and ignored).
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
}

impl From<ProviderError> for StageError {
    /// Rate limits, outages and timeouts retry (after the vendor's wait when given); the
    /// rest are rejected, since the same request cannot succeed later.
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::RateLimited { retry_after } => Self::Retryable {
                reason: error.to_string(),
                after: retry_after,
            },
            ProviderError::Unavailable { .. } | ProviderError::Timeout => {
                Self::retryable(error.to_string())
            }
            ProviderError::Unauthorized { .. }
            | ProviderError::NotFound { .. }
            | ProviderError::Invalid { .. } => Self::rejected(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn classify(status: u16) -> ProviderError {
        ProviderError::from_status(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            "contact",
            "nope",
        )
    }

    #[test]
    fn statuses_map_to_the_six_cases() {
        assert!(matches!(classify(401), ProviderError::Unauthorized { .. }));
        assert!(matches!(classify(403), ProviderError::Unauthorized { .. }));
        assert!(matches!(classify(404), ProviderError::NotFound { .. }));
        assert!(matches!(classify(400), ProviderError::Invalid { .. }));
        assert!(matches!(classify(422), ProviderError::Invalid { .. }));
        assert!(matches!(classify(429), ProviderError::RateLimited { .. }));
        assert!(matches!(classify(503), ProviderError::Unavailable { .. }));
        assert_eq!(classify(504), ProviderError::Timeout);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        let error = ProviderError::from_status(StatusCode::TOO_MANY_REQUESTS, &headers, "x", "");
        assert_eq!(
            error,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_transient_failures_retry_at_the_stage_boundary() {
        for (error, retry) in [
            (classify(429), true),
            (classify(500), true),
            (ProviderError::Timeout, true),
            (classify(401), false),
            (classify(404), false),
            (classify(422), false),
        ] {
            assert_eq!(error.is_retryable(), retry, "{error}");
            let staged = StageError::from(error);
            assert_eq!(matches!(staged, StageError::Retryable { .. }), retry);
        }
    }
}
