//! The provider-neutral telephony contract: placing, steering, ending and reading calls.
//!
//! [`Telephony`] speaks our domain's words; vendor request and response shapes stay inside the
//! adapters ([`super::twilio`]). Every failure is a [`TelephonyError`] classified for the dial
//! stage, and [`From<TelephonyError> for StageError`](crate::error::StageError) decides
//! retryability in one place.
//!
//! Invariant: no error message carries a credential; adapters build messages only from status
//! codes, vendor error codes and the vendor's (credential-free) error text.

use std::future::Future;
use std::time::Duration;

use crate::calls::state::{AnsweredBy, ProviderStatus};
use crate::error::StageError;
use crate::ids::PhoneNumber;

/// What the provider does when the callee answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallInstructions {
    /// An absolute URL the provider fetches the call's instructions (`TwiML`) from.
    Url(String),
    /// Inline instructions (`TwiML`), at most 4000 characters at Twilio.
    Twiml(String),
}

/// A request to place one outbound call attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceCall {
    /// The callee.
    pub to: PhoneNumber,
    /// The caller id: one of the tenant's provider numbers.
    pub from: PhoneNumber,
    /// What the call does once answered.
    pub instructions: CallInstructions,
    /// Where lifecycle events (initiated, ringing, answered, completed) are posted; it carries
    /// our attempt id so late callbacks reconcile with the attempt.
    pub status_callback: String,
    /// `Some(url)` enables asynchronous answering machine detection, whose result is posted to
    /// `url`; `None` disables detection.
    pub machine_detection_callback: Option<String>,
    /// Whether the provider records the call.
    pub record: bool,
    /// How long the callee's phone may ring, in seconds (Twilio: at most 600).
    pub timeout_secs: u32,
}

/// The provider accepted a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// The provider's id of the call (Twilio `CallSid`, `CA…`), to record on the attempt.
    pub provider_call_id: String,
    /// The status the provider reported on acceptance (normally `queued`).
    pub status: ProviderStatus,
}

/// A call as the provider sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    /// The provider's id of the call.
    pub provider_call_id: String,
    /// The call's current status.
    pub status: ProviderStatus,
    /// The answering machine detection result, when detection ran and decided.
    pub answered_by: Option<AnsweredBy>,
    /// The call's length in seconds, once it ended.
    pub duration_secs: Option<u32>,
    /// When the provider created the call (second precision at Twilio).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a telephony request failed, classified for the dial stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelephonyError {
    /// The provider refused the request for good (Twilio 21211 invalid number, 21215 no
    /// geographic permission, other 4xx): end the call as failed, never retry.
    #[error("the provider refused the request ({code:?}): {reason}")]
    Permanent {
        /// The provider's error code, when it gave one.
        code: Option<u32>,
        /// The provider's explanation.
        reason: String,
    },
    /// The provider or the network failed for now (429, 5xx, timeouts, connection errors):
    /// retry with backoff, waiting at least `retry_after` when present.
    #[error("the provider is unavailable: {reason}")]
    Transient {
        /// What failed.
        reason: String,
        /// How long the provider asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The provider rejected the tenant's credentials (Twilio 20003): raise a tenant-visible
    /// alert; retrying cannot help until the tenant reconnects.
    #[error("the provider rejected the credentials ({code:?})")]
    Unauthorized {
        /// The provider's error code, when it gave one.
        code: Option<u32>,
    },
    /// The provider has no such call (Twilio 20404), or the id is malformed.
    #[error("the provider has no such call")]
    NotFound,
    /// A create request may or may not have reached the provider (a timeout after sending, an
    /// unreadable success answer): retrying could place a second call, so reconcile first
    /// (the status callback carries our attempt id).
    #[error("the provider may have placed the call: {reason}")]
    Unconfirmed {
        /// What made the outcome unknown.
        reason: String,
    },
}

impl TelephonyError {
    /// Returns true when the same request may succeed later without any change.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

impl From<TelephonyError> for StageError {
    /// Transient failures retry (after `retry_after` when given); everything else is rejected,
    /// since retrying cannot change the answer (an unconfirmed create is reconciled, not
    /// retried blindly).
    fn from(error: TelephonyError) -> Self {
        match error {
            TelephonyError::Transient {
                reason,
                retry_after,
            } => Self::Retryable {
                reason,
                after: retry_after,
            },
            other @ (TelephonyError::Permanent { .. }
            | TelephonyError::Unauthorized { .. }
            | TelephonyError::NotFound
            | TelephonyError::Unconfirmed { .. }) => Self::rejected(other.to_string()),
        }
    }
}

/// A telephony provider, in our domain's words.
///
/// Implementations MUST classify every failure as a [`TelephonyError`], MUST NOT put a
/// credential in an error, and MUST report a create request that may have reached the provider
/// as [`TelephonyError::Unconfirmed`], never as `Transient`.
pub trait Telephony: Send + Sync {
    /// Places an outbound call; returns the provider's id for it.
    fn place_call(
        &self,
        request: &PlaceCall,
    ) -> impl Future<Output = Result<PlacedCall, TelephonyError>> + Send;

    /// Ends a call: hangs up a live call, or cancels one that has not been answered yet.
    fn hang_up(
        &self,
        provider_call_id: &str,
    ) -> impl Future<Output = Result<(), TelephonyError>> + Send;

    /// Replaces a live call's instructions (e.g. transfer to a human, play a goodbye).
    fn redirect(
        &self,
        provider_call_id: &str,
        instructions: &CallInstructions,
    ) -> impl Future<Output = Result<(), TelephonyError>> + Send;

    /// Reads a call's current state, for reconciliation when callbacks are late or lost.
    fn fetch_call(
        &self,
        provider_call_id: &str,
    ) -> impl Future<Output = Result<ProviderCall, TelephonyError>> + Send;

    /// Returns the calls from `from` to `to` created at or after `since`, newest first: how
    /// the dial stage finds out whether an unconfirmed create reached the provider.
    fn find_calls(
        &self,
        to: &PhoneNumber,
        from: &PhoneNumber,
        since: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Vec<ProviderCall>, TelephonyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retried_by_the_runner() {
        let transient = TelephonyError::Transient {
            reason: "status 503".to_owned(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(transient.is_retryable());
        assert!(matches!(
            StageError::from(transient),
            StageError::Retryable { after: Some(after), .. } if after == Duration::from_secs(2)
        ));
        let permanent = TelephonyError::Permanent {
            code: Some(21211),
            reason: "Invalid 'To' Phone Number".to_owned(),
        };
        assert!(!permanent.is_retryable());
        assert!(matches!(
            StageError::from(permanent),
            StageError::Rejected { .. }
        ));
        assert!(matches!(
            StageError::from(TelephonyError::Unauthorized { code: Some(20003) }),
            StageError::Rejected { .. }
        ));
    }
}
