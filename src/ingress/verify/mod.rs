//! Webhook authentication: is this request really from the sender it claims to be?
//!
//! Every function here is pure: it takes the request's headers and **raw body bytes** (never a
//! re-serialised parse, which would not match the signature), the configured secrets or public
//! keys, and for time checks the current time, and answers `Ok` or a [`VerifyError`] saying why
//! not. Nothing here logs, reads settings or touches the network; the ingress routes call these
//! first and map a [`VerifyError`] to `401`.
//!
//! - [`StandardWebhooks`]: senders that follow Standard Webhooks. HMAC-SHA256 over
//!   `{webhook-id}.{webhook-timestamp}.{body}` with `whsec_` secrets; [`StandardWebhooks::sign`]
//!   makes the same signatures, for our outbound webhooks and for tests.
//! - [`GoHighLevelKeys`]: the HighLevel marketplace app. Ed25519 `x-ghl-signature` (current)
//!   or RSA `x-wh-signature` (legacy) over the body, with HighLevel's public keys.
//! - [`TwilioSignature`]: Twilio Programmable Voice. HMAC-SHA1 `X-Twilio-Signature` over the
//!   URL Twilio called and the sorted form parameters (or the URL with `bodySHA256` for JSON
//!   bodies), with the account's auth tokens; [`TwilioSignature::sign`] signs the same way for the
//!   telephony simulator.
//! - [`elevenlabs::ElevenLabsSignature`]: ElevenLabs post-call webhooks. HMAC-SHA256
//!   `ElevenLabs-Signature: t=…,v0=…` over `<t>.<body>`, `t` at most 30 minutes old.
//! - [`verify_shared_secret`]: senders that cannot sign (HighLevel and Zoho workflow webhooks,
//!   Zoho notification channels). A per-tenant secret in the path, a header or the `token`
//!   field.
//!
//! # Request authenticity
//!
//! A valid signature proves who sent the bytes, not that they arrive only once. Replays are
//! handled in two places:
//!
//! - **Freshness, here.** [`StandardWebhooks::verify`] rejects a `webhook-timestamp` more than
//!   [`TIMESTAMP_TOLERANCE_SECS`] (5 minutes) before *or after* our clock with
//!   [`VerifyError::StaleTimestamp`]. The timestamp is part of the signed content, so an
//!   attacker cannot refresh an old request. HighLevel puts its timestamp in the signed body
//!   (`timestamp`, ISO-8601) rather than in a header: the route parses it after
//!   [`GoHighLevelKeys::verify`] succeeds and calls [`check_freshness`]. Shared-secret webhooks
//!   carry no signed time at all: a leaked URL can be replayed until the tenant rotates the
//!   secret, so treat them as triggers only and fetch every record they name fresh from the CRM
//!   (crm-calendar.md A.5.3 and B.6).
//! - **Duplicates inside the window: the dedupe layer, not here.** A replay, or an honest retry,
//!   within the 5 minutes passes verification. The route must derive the bus message id from the
//!   tenant and the sender's delivery id (`webhook-id`; HighLevel's `webhookId`), which is
//!   signed and so cannot be changed by whoever replays the request. The same delivery then
//!   always becomes the same `Nats-Msg-Id`: JetStream's duplicate window drops it, and the
//!   `processed_events` claim catches what the window misses (HOUSE-STYLE.md 4.2, "Two layers
//!   of deduplication").
//!
//! Comparisons of secrets and MACs are constant-time ([`subtle`]); asymmetric signatures are
//! checked by `ed25519-dalek` (`verify_strict`) and `rsa` (PKCS#1 v1.5, SHA-256). No error
//! message or `Debug` output contains a secret or a presented signature.

pub mod elevenlabs;
mod gohighlevel;
mod secret;
mod standard;
pub mod twilio;

use axum::http::HeaderMap;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};

pub use gohighlevel::{
    GHL_SIGNATURE_HEADER, GoHighLevelKeys, GoHighLevelSignature, HIGHLEVEL_ED25519_PUBLIC_KEY_PEM,
    HIGHLEVEL_RSA_PUBLIC_KEY_PEM, WH_SIGNATURE_HEADER,
};
pub use secret::verify_shared_secret;
pub use standard::{
    MIN_SECRET_BYTES, SECRET_PREFIX, StandardWebhooks, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
};
pub use twilio::{BODY_SHA256_PARAM, TWILIO_SIGNATURE_HEADER, TwilioSignature};

/// How far a sender's timestamp may be from our clock, either way (Standard Webhooks reference
/// implementations: `TOLERANCE_IN_SECONDS = 5 * 60`).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// Why an inbound webhook request is not authentic. Every variant maps to `401` at the route;
/// none carries a secret, a key or the presented signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme requires is absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's format (not visible ASCII, empty, not a
    /// number, not base64, wrong length).
    #[error("malformed header `{0}`")]
    MalformedHeader(&'static str),
    /// A signature header is present, but no key to check it is configured and no other
    /// signature header can be checked instead: a configuration problem, not an attack.
    #[error("header `{0}` is present but no key to check it is configured")]
    UncheckableHeader(&'static str),
    /// A field of the signed body that authentication needs (HighLevel's `timestamp`) is
    /// absent or unreadable.
    #[error("signed body field `{0}` is missing or not an ISO-8601 time")]
    BadSignedField(&'static str),
    /// The signed timestamp is further from our clock than [`TIMESTAMP_TOLERANCE_SECS`].
    /// `skew_seconds` is the timestamp minus our clock: negative when old, positive when ahead.
    #[error("timestamp is {skew_seconds}s from our clock, beyond the {tolerance}s tolerance",
        tolerance = TIMESTAMP_TOLERANCE_SECS)]
    StaleTimestamp {
        /// Sender's timestamp minus our clock, in seconds.
        skew_seconds: i64,
    },
    /// `webhook-signature` holds no `v1` (HMAC-SHA256) entry; other versions, such as the
    /// asymmetric `v1a`, are ignored.
    #[error("`webhook-signature` has no `v1` signature")]
    NoSupportedSignature,
    /// No presented signature matches the body under any configured secret or key.
    #[error("signature does not match")]
    BadSignature,
    /// The presented shared secret matches none of the tenant's secrets.
    #[error("shared secret does not match")]
    BadSecret,
}

/// Why a configured secret or public key cannot be used; raised when settings or tenant
/// configuration are loaded, never per request. Messages name the entry, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A Standard Webhooks verifier was built from an empty list of secrets.
    #[error("no standard webhooks secret configured")]
    NoSecrets,
    /// The secret at `index` is not base64 after its optional `whsec_` prefix.
    #[error("standard webhooks secret {index} is not base64 after the `whsec_` prefix")]
    MalformedSecret {
        /// Position in the configured list, from 0.
        index: usize,
    },
    /// The secret at `index` decodes to fewer than [`MIN_SECRET_BYTES`] bytes.
    #[error("standard webhooks secret {index} is shorter than {MIN_SECRET_BYTES} bytes")]
    ShortSecret {
        /// Position in the configured list, from 0.
        index: usize,
    },
    /// Neither a HighLevel Ed25519 nor an RSA public key is configured.
    #[error("no highlevel webhook public key configured")]
    NoPublicKeys,
    /// A HighLevel public key is not a PEM public key of the expected algorithm.
    #[error("highlevel `{0}` public key is not a valid pem public key")]
    MalformedPublicKey(&'static str),
    /// A Twilio verifier was built from an empty list of auth tokens.
    #[error("no twilio auth token configured")]
    NoAuthTokens,
    /// The Twilio auth token at `index` is empty (or only whitespace): anyone could sign with it.
    #[error("twilio auth token {index} is empty")]
    EmptyAuthToken {
        /// Position in the configured list, from 0.
        index: usize,
    },
}

/// Checks that a signed send time is within [`TIMESTAMP_TOLERANCE_SECS`] of `now`, either way.
///
/// [`StandardWebhooks::verify`] calls it on `webhook-timestamp`; the HighLevel route calls it on
/// the body's `timestamp` after the signature has been verified.
pub fn check_freshness(sent_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), VerifyError> {
    check_skew(sent_at.timestamp(), now)
}

/// [`check_freshness`] on Unix seconds, which may lie outside what `DateTime` can represent.
fn check_skew(sent_at_secs: i64, now: DateTime<Utc>) -> Result<(), VerifyError> {
    let skew_seconds = sent_at_secs.saturating_sub(now.timestamp());
    if skew_seconds.unsigned_abs() > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::StaleTimestamp { skew_seconds });
    }
    Ok(())
}

/// Returns a header's value as text: missing, or not visible ASCII, is an error naming it.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
    value
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader(name))
}

/// Standard-alphabet base64 that accepts values with or without `=` padding.
///
/// NOTE(verify): the senders' own verifiers are lenient (Node's `Buffer.from(s, 'base64')` for
/// HighLevel); a signature that differs only in padding is the same signature.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_timestamp_exactly_at_the_tolerance_is_fresh_either_way() {
        let now = at(1_700_000_000);
        let tolerance = TimeDelta::seconds(TIMESTAMP_TOLERANCE_SECS);
        assert_eq!(check_freshness(now - tolerance, now), Ok(()));
        assert_eq!(check_freshness(now + tolerance, now), Ok(()));
    }

    #[test]
    fn a_timestamp_one_second_beyond_the_tolerance_is_stale_either_way() {
        let now = at(1_700_000_000);
        let beyond = TimeDelta::seconds(TIMESTAMP_TOLERANCE_SECS + 1);
        assert_eq!(
            check_freshness(now - beyond, now),
            Err(VerifyError::StaleTimestamp { skew_seconds: -301 })
        );
        assert_eq!(
            check_freshness(now + beyond, now),
            Err(VerifyError::StaleTimestamp { skew_seconds: 301 })
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_without_overflow() {
        let now = at(1_700_000_000);
        assert!(matches!(
            check_skew(i64::MAX, now),
            Err(VerifyError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check_skew(i64::MIN, now),
            Err(VerifyError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn error_messages_are_lowercase_without_a_trailing_period() {
        let errors = [
            VerifyError::MissingHeader("webhook-id").to_string(),
            VerifyError::MalformedHeader("webhook-timestamp").to_string(),
            VerifyError::UncheckableHeader("x-ghl-signature").to_string(),
            VerifyError::StaleTimestamp { skew_seconds: -400 }.to_string(),
            VerifyError::NoSupportedSignature.to_string(),
            VerifyError::BadSignature.to_string(),
            VerifyError::BadSecret.to_string(),
            VerifyError::BadSignedField("timestamp").to_string(),
            KeyError::NoSecrets.to_string(),
            KeyError::MalformedSecret { index: 1 }.to_string(),
            KeyError::ShortSecret { index: 0 }.to_string(),
            KeyError::NoPublicKeys.to_string(),
            KeyError::MalformedPublicKey("ed25519").to_string(),
            KeyError::NoAuthTokens.to_string(),
            KeyError::EmptyAuthToken { index: 1 }.to_string(),
        ];
        for message in errors {
            let first = message.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
        assert_eq!(
            VerifyError::StaleTimestamp { skew_seconds: -400 }.to_string(),
            "timestamp is -400s from our clock, beyond the 300s tolerance"
        );
    }

    #[test]
    fn header_values_that_are_not_visible_ascii_are_malformed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            axum::http::HeaderValue::from_bytes(b"msg_\xff").unwrap(),
        );
        assert_eq!(
            header(&headers, "webhook-id"),
            Err(VerifyError::MalformedHeader("webhook-id"))
        );
        assert_eq!(
            header(&headers, "webhook-timestamp"),
            Err(VerifyError::MissingHeader("webhook-timestamp"))
        );
    }
}
