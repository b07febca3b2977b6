//! Standard Webhooks symmetric signatures: spec v1.0.0, sections "Signature scheme", "Webhook
//! headers" and "Verifying signatures" (`standard-webhooks/standard-webhooks`,
//! `spec/standard-webhooks.md`).
//!
//! - Headers: `webhook-id`, `webhook-timestamp` (integer Unix seconds), `webhook-signature`.
//! - Signed content: `{webhook-id}.{webhook-timestamp}.{body}`, the header texts and the raw
//!   body bytes joined by `.`.
//! - Key: the secret with its `whsec_` prefix removed, base64-decoded; the spec asks for at
//!   least 24 bytes.
//! - `webhook-signature`: a space-separated list of `<version>,<base64>`; only `v1`
//!   (HMAC-SHA256) is checked, other versions (`v1a`, the asymmetric one) are ignored. One
//!   matching entry is enough: a sender rotating its secret signs with both.
//! - Timestamps more than 5 minutes away from our clock, either way, are refused.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{BASE64, KeyError, VerifyError, check_skew, header};
use crate::secret::Secret;

/// Header carrying the sender's unique delivery id (the idempotency key).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Header carrying the send time, in integer Unix seconds.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying the space-separated `<version>,<base64>` signatures.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";
/// Prefix that identifies a Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest secret the spec allows ("Random. At least 24 bytes").
pub const MIN_SECRET_BYTES: usize = 24;
/// The signature version this scheme checks: HMAC-SHA256.
const SIGNATURE_VERSION: &str = "v1";
/// Longest accepted `webhook-timestamp`: 18 digits always fit in an `i64`.
const MAX_TIMESTAMP_DIGITS: usize = 18;

/// Verifies (and makes) Standard Webhooks signatures with one or more secrets.
///
/// Several secrets exist during a rotation: a request passes when any `v1` signature it carries
/// matches under any of them.
#[derive(Clone, Debug)]
pub struct StandardWebhooks {
    secrets: Vec<Secret<Vec<u8>>>,
}

impl StandardWebhooks {
    /// Decodes `whsec_<base64>` secrets (the prefix is optional, as in the reference libraries).
    ///
    /// The error names the position of the first unusable secret, never its value.
    pub fn new(secrets: &[Secret<String>]) -> Result<Self, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError::NoSecrets);
        }
        let mut decoded = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            let text = secret.expose().trim();
            let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
            let key = BASE64
                .decode(encoded)
                .map_err(|_| KeyError::MalformedSecret { index })?;
            if key.len() < MIN_SECRET_BYTES {
                return Err(KeyError::ShortSecret { index });
            }
            decoded.push(Secret::new(key));
        }
        Ok(Self { secrets: decoded })
    }

    /// Checks the three `webhook-*` headers against `body` and `now`.
    ///
    /// Order: headers present and well-formed, then the timestamp within
    /// [`super::TIMESTAMP_TOLERANCE_SECS`], then the signatures. Passing says nothing about
    /// duplicates: see "Request authenticity" in [`super`].
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let webhook_id = header(headers, WEBHOOK_ID_HEADER)?;
        if webhook_id.is_empty() {
            return Err(VerifyError::MalformedHeader(WEBHOOK_ID_HEADER));
        }
        let timestamp_text = header(headers, WEBHOOK_TIMESTAMP_HEADER)?;
        let timestamp = parse_timestamp(timestamp_text)?;
        let signature_list = header(headers, WEBHOOK_SIGNATURE_HEADER)?;

        check_skew(timestamp, now)?;

        let presented = v1_signatures(signature_list);
        if presented.is_empty() {
            return Err(VerifyError::NoSupportedSignature);
        }
        for secret in &self.secrets {
            let expected = mac(secret.expose(), webhook_id, timestamp_text, body);
            for candidate in &presented {
                // `ct_eq` on slices of different lengths is false, so a truncated or empty
                // signature never matches.
                if bool::from(expected.as_slice().ct_eq(candidate)) {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::BadSignature)
    }

    /// Returns the `webhook-signature` value for a delivery: one `v1,<base64>` per secret, in
    /// configuration order, space-separated.
    ///
    /// For tests, simulators and our own outbound webhooks. `webhook_id` must not contain `.`
    /// (the spec's guard against shifting the boundaries of the signed content).
    pub fn sign(&self, webhook_id: &str, timestamp: DateTime<Utc>, body: &[u8]) -> String {
        debug_assert!(
            !webhook_id.contains('.'),
            "a webhook id must not contain `.`"
        );
        let timestamp_text = timestamp.timestamp().to_string();
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|secret| {
                let tag = mac(secret.expose(), webhook_id, &timestamp_text, body);
                format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
            })
            .collect();
        signatures.join(" ")
    }
}

/// Parses `webhook-timestamp`: ASCII digits only (no sign, no spaces), so that the text that
/// was signed and the number that is checked cannot disagree.
fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    let well_formed = !text.is_empty()
        && text.len() <= MAX_TIMESTAMP_DIGITS
        && text.bytes().all(|byte| byte.is_ascii_digit());
    if !well_formed {
        return Err(VerifyError::MalformedHeader(WEBHOOK_TIMESTAMP_HEADER));
    }
    text.parse()
        .map_err(|_| VerifyError::MalformedHeader(WEBHOOK_TIMESTAMP_HEADER))
}

/// Returns the decoded `v1` signatures of a `webhook-signature` value. Entries of other
/// versions are skipped; a `v1` entry that is not base64 is kept as an empty candidate, which
/// matches nothing, so that a header of only garbled `v1` entries is a bad signature rather than
/// an unsupported one.
fn v1_signatures(signature_list: &str) -> Vec<Vec<u8>> {
    signature_list
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .map(|(_, encoded)| BASE64.decode(encoded).unwrap_or_default())
        .collect()
}

/// HMAC-SHA256 of `{webhook_id}.{timestamp}.{body}` under `key`.
fn mac(key: &[u8], webhook_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // NOTE(verify): HMAC takes keys of any length (longer ones are hashed first), so this
    // constructor cannot fail; `new` guarantees at least 24 bytes anyway.
    let mut hmac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac accepts any key length");
    hmac.update(webhook_id.as_bytes());
    hmac.update(b".");
    hmac.update(timestamp.as_bytes());
    hmac.update(b".");
    hmac.update(body);
    hmac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::*;

    /// The reference vector of `standard-webhooks/standard-webhooks`: `libraries/go/
    /// webhook_test.go` (`TestWebhookSign`) and the JavaScript, Python and Elixir suites.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// A second secret, for rotation; 32 random bytes.
    const OTHER_SECRET: &str = "whsec_3vJ8sB2kq1mZ0Hc5yT7rW4eN9pL6aX2dF0gQ8uK1oVs=";

    fn verifier(secrets: &[&str]) -> StandardWebhooks {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|s| Secret::new((*s).to_owned()))
            .collect();
        StandardWebhooks::new(&secrets).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn header_map(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_ID_HEADER, HeaderValue::from_str(id).unwrap());
        headers.insert(
            WEBHOOK_TIMESTAMP_HEADER,
            HeaderValue::from_str(timestamp).unwrap(),
        );
        headers.insert(
            WEBHOOK_SIGNATURE_HEADER,
            HeaderValue::from_str(signature).unwrap(),
        );
        headers
    }

    fn vector_headers() -> HeaderMap {
        header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE)
    }

    #[test]
    fn the_reference_vector_signs_to_the_published_signature() {
        let signature =
            verifier(&[VECTOR_SECRET]).sign(VECTOR_ID, at(VECTOR_TIMESTAMP), VECTOR_BODY);
        assert_eq!(signature, VECTOR_SIGNATURE);
    }

    #[test]
    fn the_rust_reference_vector_signs_to_its_published_signature() {
        // `libraries/rust/src/lib.rs` `test_sign` of the same repository.
        let signature = verifier(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]).sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            at(1_649_367_553),
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn the_reference_vector_verifies_at_its_own_time() {
        let result =
            verifier(&[VECTOR_SECRET]).verify(&vector_headers(), VECTOR_BODY, at(VECTOR_TIMESTAMP));
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_secret_without_the_prefix_is_the_same_secret() {
        let unprefixed = VECTOR_SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        let result =
            verifier(&[unprefixed]).verify(&vector_headers(), VECTOR_BODY, at(VECTOR_TIMESTAMP));
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_tampered_body_is_a_bad_signature() {
        let result = verifier(&[VECTOR_SECRET]).verify(
            &vector_headers(),
            br#"{"test": 2432232315}"#,
            at(VECTOR_TIMESTAMP),
        );
        assert_eq!(result, Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_tampered_id_or_timestamp_is_a_bad_signature() {
        let wh = verifier(&[VECTOR_SECRET]);
        let now = at(VECTOR_TIMESTAMP);
        let other_id = header_map("msg_other", &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
        assert_eq!(
            wh.verify(&other_id, VECTOR_BODY, now),
            Err(VerifyError::BadSignature)
        );
        let other_time = header_map(
            VECTOR_ID,
            &(VECTOR_TIMESTAMP + 1).to_string(),
            VECTOR_SIGNATURE,
        );
        assert_eq!(
            wh.verify(&other_time, VECTOR_BODY, now),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn the_wrong_secret_is_a_bad_signature() {
        let result =
            verifier(&[OTHER_SECRET]).verify(&vector_headers(), VECTOR_BODY, at(VECTOR_TIMESTAMP));
        assert_eq!(result, Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_timestamp_beyond_five_minutes_either_way_is_stale() {
        let wh = verifier(&[VECTOR_SECRET]);
        let sent = at(VECTOR_TIMESTAMP);
        let late = sent + TimeDelta::seconds(301);
        let early = sent - TimeDelta::seconds(301);
        assert_eq!(
            wh.verify(&vector_headers(), VECTOR_BODY, late),
            Err(VerifyError::StaleTimestamp { skew_seconds: -301 })
        );
        assert_eq!(
            wh.verify(&vector_headers(), VECTOR_BODY, early),
            Err(VerifyError::StaleTimestamp { skew_seconds: 301 })
        );
        let edge = sent + TimeDelta::seconds(300);
        assert_eq!(wh.verify(&vector_headers(), VECTOR_BODY, edge), Ok(()));
    }

    #[test]
    fn each_missing_header_is_named() {
        let wh = verifier(&[VECTOR_SECRET]);
        for name in [
            WEBHOOK_ID_HEADER,
            WEBHOOK_TIMESTAMP_HEADER,
            WEBHOOK_SIGNATURE_HEADER,
        ] {
            let mut headers = vector_headers();
            headers.remove(name);
            assert_eq!(
                wh.verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP)),
                Err(VerifyError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn a_timestamp_that_is_not_plain_digits_is_malformed() {
        let wh = verifier(&[VECTOR_SECRET]);
        for text in [
            "",
            "+1614265330",
            "-1",
            "1614265330.0",
            " 1",
            "2021-02-25T15:02:10Z",
        ] {
            let headers = header_map(VECTOR_ID, text, VECTOR_SIGNATURE);
            assert_eq!(
                wh.verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP)),
                Err(VerifyError::MalformedHeader(WEBHOOK_TIMESTAMP_HEADER)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn an_empty_webhook_id_is_malformed() {
        let headers = header_map("", &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
        let result = verifier(&[VECTOR_SECRET]).verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP));
        assert_eq!(result, Err(VerifyError::MalformedHeader(WEBHOOK_ID_HEADER)));
    }

    #[test]
    fn a_signature_list_without_v1_is_unsupported() {
        let wh = verifier(&[VECTOR_SECRET]);
        for list in [
            "",
            "garbage",
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5B",
            "v2,abc=",
        ] {
            let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), list);
            assert_eq!(
                wh.verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP)),
                Err(VerifyError::NoSupportedSignature),
                "{list:?}"
            );
        }
    }

    #[test]
    fn empty_truncated_or_garbled_v1_signatures_never_match() {
        let wh = verifier(&[VECTOR_SECRET]);
        let truncated = &VECTOR_SIGNATURE[..VECTOR_SIGNATURE.len() - 8];
        for list in ["v1,", "v1,!!!not base64!!!", truncated, "v1,g0hM9SsE"] {
            let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), list);
            assert_eq!(
                wh.verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP)),
                Err(VerifyError::BadSignature),
                "{list:?}"
            );
        }
    }

    #[test]
    fn one_matching_entry_among_several_passes() {
        // The multi-signature case of the Go and Rust reference suites.
        let list = [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            VECTOR_SIGNATURE,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5B",
        ]
        .join(" ");
        let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), &list);
        let result = verifier(&[VECTOR_SECRET]).verify(&headers, VECTOR_BODY, at(VECTOR_TIMESTAMP));
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn during_rotation_either_secret_passes() {
        let now = at(VECTOR_TIMESTAMP);
        let ours = verifier(&[OTHER_SECRET, VECTOR_SECRET]);
        for sender_secret in [VECTOR_SECRET, OTHER_SECRET] {
            let signature = verifier(&[sender_secret]).sign(VECTOR_ID, now, VECTOR_BODY);
            let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), &signature);
            assert_eq!(
                ours.verify(&headers, VECTOR_BODY, now),
                Ok(()),
                "{sender_secret}"
            );
        }
    }

    #[test]
    fn signing_with_two_secrets_lists_both_and_each_verifies_alone() {
        let now = at(VECTOR_TIMESTAMP);
        let list = verifier(&[VECTOR_SECRET, OTHER_SECRET]).sign(VECTOR_ID, now, VECTOR_BODY);
        let entries: Vec<&str> = list.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], VECTOR_SIGNATURE);
        let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), &list);
        for secret in [VECTOR_SECRET, OTHER_SECRET] {
            assert_eq!(
                verifier(&[secret]).verify(&headers, VECTOR_BODY, now),
                Ok(())
            );
        }
    }

    #[test]
    fn unusable_secrets_are_named_by_position_without_their_value() {
        let secrets = |texts: &[&str]| -> Vec<Secret<String>> {
            texts.iter().map(|t| Secret::new((*t).to_owned())).collect()
        };
        assert_eq!(StandardWebhooks::new(&[]).unwrap_err(), KeyError::NoSecrets);
        let malformed = StandardWebhooks::new(&secrets(&[VECTOR_SECRET, "whsec_not*base64"]));
        assert_eq!(
            malformed.unwrap_err(),
            KeyError::MalformedSecret { index: 1 }
        );
        // 16 bytes: below the spec's 24-byte floor.
        let short = StandardWebhooks::new(&secrets(&["whsec_AAECAwQFBgcICQoLDA0ODw=="]));
        assert_eq!(short.unwrap_err(), KeyError::ShortSecret { index: 0 });
        let message = KeyError::MalformedSecret { index: 1 }.to_string();
        assert!(!message.contains("not*base64"));
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let debug = format!("{:?}", verifier(&[VECTOR_SECRET]));
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
    }

    /// Any header value (visible ASCII or not) of up to 200 bytes, or a plausible one.
    fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        let arbitrary = proptest::collection::vec(any::<u8>(), 0..200);
        let plausible = proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|bytes| format!("v1,{} v1a,x", STANDARD.encode(bytes)).into_bytes());
        let digits = (0i64..4_000_000_000).prop_map(|n| n.to_string().into_bytes());
        proptest::option::of(prop_oneof![arbitrary, plausible, digits])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn verify_never_panics_on_arbitrary_headers_and_bodies(
            id in header_value(),
            timestamp in header_value(),
            signature in header_value(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            now in 0i64..4_000_000_000,
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                (WEBHOOK_ID_HEADER, id),
                (WEBHOOK_TIMESTAMP_HEADER, timestamp),
                (WEBHOOK_SIGNATURE_HEADER, signature),
            ] {
                if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(name, value);
                }
            }
            let wh = verifier(&[VECTOR_SECRET, OTHER_SECRET]);
            // Arbitrary input must not pass, except by a 2^-256 accident.
            prop_assert!(wh.verify(&headers, &body, at(now)).is_err());
        }

        #[test]
        fn a_signature_made_by_sign_verifies_within_the_tolerance(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            id in "[A-Za-z0-9_-]{1,64}",
            sent in 0i64..4_000_000_000,
            skew in -300i64..=300,
            rotated in any::<bool>(),
        ) {
            let sender = verifier(&[VECTOR_SECRET]);
            let receiver = if rotated {
                verifier(&[OTHER_SECRET, VECTOR_SECRET])
            } else {
                verifier(&[VECTOR_SECRET])
            };
            let signature = sender.sign(&id, at(sent), &body);
            let headers = header_map(&id, &sent.to_string(), &signature);
            prop_assert_eq!(receiver.verify(&headers, &body, at(sent + skew)), Ok(()));
        }

        #[test]
        fn flipping_any_body_bit_breaks_the_signature(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let wh = verifier(&[VECTOR_SECRET]);
            let now = at(VECTOR_TIMESTAMP);
            let signature = wh.sign(VECTOR_ID, now, &body);
            let headers = header_map(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), &signature);
            let mut tampered = body.clone();
            tampered[position.index(body.len())] ^= 1 << bit;
            prop_assert_eq!(wh.verify(&headers, &tampered, now), Err(VerifyError::BadSignature));
        }
    }
}
