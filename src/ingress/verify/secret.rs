//! Per-tenant shared secrets for webhooks their senders cannot sign.
//!
//! - HighLevel workflow "Webhook" and "Custom Webhook" actions are unsigned: the tenant puts our
//!   secret in the URL path or a custom header (crm-calendar.md A.5.3).
//! - Zoho workflow webhooks are unsigned: a secret parameter or header (B.6, item 1).
//! - Zoho notification channels echo the `token` we registered with the channel in every
//!   callback body (B.6, item 2); the route also checks `channel_id`.
//!
//! Where the secret travels is the route's business; this module only compares it.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::VerifyError;
use crate::secret::Secret;

/// Checks `presented` against the tenant's secrets; any one matches (several exist during a
/// rotation).
///
/// The comparison is constant-time in the secrets' content *and length*: both sides are hashed
/// with SHA-256 first and the digests compared with [`subtle`], and every configured secret is
/// compared, so timing reveals neither how much of a guess was right nor which secret matched.
/// Empty values never match, so an unset secret cannot be satisfied by an empty one.
pub fn verify_shared_secret(
    expected: &[Secret<String>],
    presented: &str,
) -> Result<(), VerifyError> {
    if presented.is_empty() {
        return Err(VerifyError::BadSecret);
    }
    let presented_digest = Sha256::digest(presented.as_bytes());
    let mut matched = Choice::from(0);
    for secret in expected {
        let secret = secret.expose();
        if secret.is_empty() {
            continue;
        }
        let expected_digest = Sha256::digest(secret.as_bytes());
        matched |= expected_digest
            .as_slice()
            .ct_eq(presented_digest.as_slice());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(VerifyError::BadSecret)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secrets(texts: &[&str]) -> Vec<Secret<String>> {
        texts
            .iter()
            .map(|text| Secret::new((*text).to_owned()))
            .collect()
    }

    const CURRENT: &str = "wk_2b7f9c4e1a8d6f3b0e5c7a9d2f4b6e8c";
    const PREVIOUS: &str = "wk_9e1d3c5b7a0f2e4d6c8b0a1f3e5d7c9b";

    #[test]
    fn the_tenants_secret_passes() {
        assert_eq!(verify_shared_secret(&secrets(&[CURRENT]), CURRENT), Ok(()));
    }

    #[test]
    fn during_rotation_both_secrets_pass() {
        let expected = secrets(&[CURRENT, PREVIOUS]);
        assert_eq!(verify_shared_secret(&expected, CURRENT), Ok(()));
        assert_eq!(verify_shared_secret(&expected, PREVIOUS), Ok(()));
    }

    #[test]
    fn a_wrong_prefix_or_extended_secret_fails() {
        let expected = secrets(&[CURRENT]);
        let prefix = &CURRENT[..CURRENT.len() - 1];
        let extended = format!("{CURRENT}0");
        for presented in [PREVIOUS, prefix, extended.as_str(), "wk_", " "] {
            assert_eq!(
                verify_shared_secret(&expected, presented),
                Err(VerifyError::BadSecret),
                "{presented:?}"
            );
        }
    }

    #[test]
    fn secrets_are_case_sensitive() {
        let upper = CURRENT.to_uppercase();
        assert_eq!(
            verify_shared_secret(&secrets(&[CURRENT]), &upper),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn empty_values_never_match() {
        assert_eq!(
            verify_shared_secret(&secrets(&[""]), ""),
            Err(VerifyError::BadSecret)
        );
        assert_eq!(
            verify_shared_secret(&secrets(&[CURRENT]), ""),
            Err(VerifyError::BadSecret)
        );
        assert_eq!(
            verify_shared_secret(&[], CURRENT),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn the_error_never_contains_either_secret() {
        let error = verify_shared_secret(&secrets(&[CURRENT]), PREVIOUS).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("wk_"), "{shown}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_secret_matches_itself_and_nothing_else(
            secret in ".{1,64}",
            other in ".{0,64}",
        ) {
            let expected = secrets(&[&secret]);
            prop_assert_eq!(verify_shared_secret(&expected, &secret), Ok(()));
            if other != secret {
                let result = verify_shared_secret(&expected, &other);
                prop_assert_eq!(result, Err(VerifyError::BadSecret));
            }
        }
    }
}
