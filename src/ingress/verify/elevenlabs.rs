//! ElevenLabs webhooks (post-call): `ElevenLabs-Signature: t=<unix seconds>,v0=<hex>` where
//! `v0 = hex(HMAC-SHA256(secret, "<t>.<raw body>"))` (protocols B11).
//!
//! ElevenLabs' own SDK refuses a `t` more than 30 minutes old and checks only the past; we also
//! refuse one more than [`super::TIMESTAMP_TOLERANCE_SECS`] ahead of our clock, since a
//! timestamp from the future is no honest sender's.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::{TIMESTAMP_TOLERANCE_SECS, VerifyError, header};
use crate::secret::Secret;

/// The signature header.
pub const ELEVENLABS_SIGNATURE_HEADER: &str = "elevenlabs-signature";

/// How old a signed `t` may be.
pub const ELEVENLABS_MAX_AGE_SECS: i64 = 30 * 60;

/// Verifies ElevenLabs webhook signatures with the current and previous secrets.
#[derive(Clone, Debug)]
pub struct ElevenLabsSignature {
    secrets: Vec<Secret<String>>,
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Signs `body` as ElevenLabs does, giving the header's value (the simulator and tests).
#[must_use]
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    format!(
        "t={timestamp},v0={}",
        crate::hex::encode(&mac(secret, &timestamp, body))
    )
}

impl ElevenLabsSignature {
    /// A verifier over `secrets` (none: every request fails with `BadSignature`).
    #[must_use]
    pub fn new(secrets: &[Secret<String>]) -> Self {
        Self {
            secrets: secrets.to_vec(),
        }
    }

    /// Checks the header against the raw `body` and `now`; returns the signed time.
    ///
    /// # Errors
    ///
    /// [`VerifyError`]: the header is missing or malformed, `t` is too old or ahead, or no
    /// secret gives the `v0` presented.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<i64, VerifyError> {
        let value = header(headers, ELEVENLABS_SIGNATURE_HEADER)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in value.split(',') {
            match part.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t),
                Some(("v0", signature)) => signatures.push(signature),
                _ => {}
            }
        }
        let timestamp =
            timestamp.ok_or(VerifyError::MalformedHeader(ELEVENLABS_SIGNATURE_HEADER))?;
        let seconds: i64 = timestamp
            .parse()
            .map_err(|_| VerifyError::MalformedHeader(ELEVENLABS_SIGNATURE_HEADER))?;
        let skew_seconds = seconds.saturating_sub(now.timestamp());
        if !(-ELEVENLABS_MAX_AGE_SECS..=TIMESTAMP_TOLERANCE_SECS).contains(&skew_seconds) {
            return Err(VerifyError::StaleTimestamp { skew_seconds });
        }
        if signatures.is_empty() {
            return Err(VerifyError::NoSupportedSignature);
        }
        for secret in &self.secrets {
            let expected = crate::hex::encode(&mac(secret.expose(), timestamp, body));
            if signatures
                .iter()
                .any(|presented| bool::from(presented.as_bytes().ct_eq(expected.as_bytes())))
            {
                return Ok(seconds);
            }
        }
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// The test vector of protocols B11.
    const BODY: &str = r#"{"type":"post_call_audio","event_timestamp":1739537319,"data":{"agent_id":"xyz","conversation_id":"abc","full_audio":"SUQzBAAAAAAA"}}"#;
    const HEADER: &str =
        "t=1739537319,v0=717c42d6effac7b5b309f3b82b00fa5587572d7f3ab0a5e4cf13bf106ff439a8";

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            ELEVENLABS_SIGNATURE_HEADER,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn the_documented_vector_verifies_and_signs() {
        assert_eq!(
            sign("wsec_example_secret", 1_739_537_319, BODY.as_bytes()),
            HEADER
        );
        let verifier = ElevenLabsSignature::new(&[
            Secret::new("old".to_owned()),
            Secret::new("wsec_example_secret".to_owned()),
        ]);
        assert_eq!(
            verifier.verify(&headers(HEADER), BODY.as_bytes(), at(1_739_537_400)),
            Ok(1_739_537_319)
        );
    }

    #[test]
    fn tampering_staleness_and_malformed_headers_are_refused() {
        let verifier = ElevenLabsSignature::new(&[Secret::new("wsec_example_secret".to_owned())]);
        let now = at(1_739_537_319);
        let tampered = BODY.replace("abc", "abd");
        assert_eq!(
            verifier.verify(&headers(HEADER), tampered.as_bytes(), now),
            Err(VerifyError::BadSignature)
        );
        assert!(matches!(
            verifier.verify(
                &headers(HEADER),
                BODY.as_bytes(),
                at(1_739_537_319 + 31 * 60)
            ),
            Err(VerifyError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            verifier.verify(
                &headers(HEADER),
                BODY.as_bytes(),
                at(1_739_537_319 - 10 * 60)
            ),
            Err(VerifyError::StaleTimestamp { .. })
        ));
        assert_eq!(
            verifier.verify(&headers("v0=abc"), BODY.as_bytes(), now),
            Err(VerifyError::MalformedHeader(ELEVENLABS_SIGNATURE_HEADER))
        );
        assert_eq!(
            verifier.verify(&headers("t=1739537319"), BODY.as_bytes(), now),
            Err(VerifyError::NoSupportedSignature)
        );
        assert_eq!(
            verifier.verify(&HeaderMap::new(), BODY.as_bytes(), now),
            Err(VerifyError::MissingHeader(ELEVENLABS_SIGNATURE_HEADER))
        );
        let nobody = ElevenLabsSignature::new(&[]);
        assert_eq!(
            nobody.verify(&headers(HEADER), BODY.as_bytes(), now),
            Err(VerifyError::BadSignature)
        );
    }
}
