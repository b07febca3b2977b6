//! The token an answered call's media stream carries, so no stranger can attach to a call.
//!
//! The dial stage puts `tenant_id`, `call_id`, `attempt_id` and `token` into the TwiML's
//! `<Stream>` parameters; Twilio hands them back in the stream's `start.customParameters`,
//! and the media gateway accepts audio only when the token is ours, unexpired and issued for
//! exactly those three ids. A leaked call id is useless without a token, and a token for one
//! call does not open another.
//!
//! Format: `v1.<key id>.<expires, unix seconds>.<base64url(HMAC-SHA256)>` over
//! `v1|<key id>|<expires>|<tenant>|<call>|<attempt>`. The HMAC key is derived from a master
//! key of the keyring (HMAC-SHA256 of the master key over a fixed label), so there is no new
//! secret to configure, the derived key is used for nothing else, and a key rotation keeps
//! tokens verifiable as long as the old master key stays in the keyring.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto::{KeyId, Keyring};
use crate::ids::{AttemptId, CallId, TenantId};

type HmacSha256 = Hmac<Sha256>;

/// What a media stream token is issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamClaims {
    /// The tenant.
    pub tenant: TenantId,
    /// The call.
    pub call: CallId,
    /// The attempt whose answer opens the stream.
    pub attempt: AttemptId,
}

/// Why a stream token was refused; the media gateway closes the socket with a policy code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    /// Not a `v1` token of four parts.
    #[error("malformed stream token")]
    Malformed,
    /// Signed with a key this process does not have (or never was).
    #[error("stream token signed with an unknown key")]
    UnknownKey,
    /// The signature does not cover these claims.
    #[error("stream token does not match the call")]
    BadSignature,
    /// Past its expiry.
    #[error("stream token expired")]
    Expired,
}

/// Issues and verifies stream tokens with keys derived from the keyring.
#[derive(Clone)]
pub struct StreamTokens {
    active: KeyId,
    keys: Vec<(KeyId, [u8; 32])>,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokens")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// The label the signing keys are derived under; changing it invalidates every token.
const LABEL: &[u8] = b"caller/media-stream-token/v1";

impl StreamTokens {
    /// Derives a signing key from every master key of `keyring`; issues with the active one.
    #[must_use]
    pub fn from_keyring(keyring: &Keyring) -> Self {
        let keys = keyring
            .ids()
            .filter_map(|id| {
                keyring
                    .get(id)
                    .map(|key| (id.clone(), derive(key.expose())))
            })
            .collect();
        Self {
            active: keyring.active_id().clone(),
            keys,
        }
    }

    /// Returns a token for `claims`, valid until `expires`.
    #[must_use]
    pub fn issue(&self, claims: &StreamClaims, expires: DateTime<Utc>) -> String {
        let expires = expires.timestamp();
        let key = self
            .keys
            .iter()
            .find(|(id, _)| *id == self.active)
            .map(|(_, key)| key)
            .expect("the active key is in the keyring");
        let mac = sign(key, self.active.as_str(), expires, claims);
        format!(
            "v1.{}.{expires}.{}",
            self.active,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// Checks that `token` was issued by us for exactly `claims` and is not expired at `now`.
    ///
    /// # Errors
    ///
    /// [`StreamTokenError`] says which check failed (for logs; the socket is closed either way).
    pub fn verify(
        &self,
        token: &str,
        claims: &StreamClaims,
        now: DateTime<Utc>,
    ) -> Result<(), StreamTokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(key_id), Some(expires), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(StreamTokenError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| StreamTokenError::Malformed)?;
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| StreamTokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id.as_str() == key_id)
            .map(|(_, key)| key)
            .ok_or(StreamTokenError::UnknownKey)?;
        let mut expected = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        expected.update(&message(key_id, expires, claims));
        // Constant-time comparison: the signature is checked before the expiry is trusted.
        expected
            .verify_slice(&mac)
            .map_err(|_| StreamTokenError::BadSignature)?;
        if now.timestamp() > expires {
            return Err(StreamTokenError::Expired);
        }
        Ok(())
    }
}

fn derive(master: &[u8; 32]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.finalize().into_bytes().into()
}

fn message(key_id: &str, expires: i64, claims: &StreamClaims) -> Vec<u8> {
    format!(
        "v1|{key_id}|{expires}|{}|{}|{}",
        claims.tenant, claims.call, claims.attempt
    )
    .into_bytes()
}

fn sign(key: &[u8; 32], key_id: &str, expires: i64, claims: &StreamClaims) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&message(key_id, expires, claims));
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> StreamClaims {
        StreamClaims {
            tenant: TenantId::from_uuid(uuid::Uuid::now_v7()),
            call: CallId::from_uuid(uuid::Uuid::now_v7()),
            attempt: AttemptId::from_uuid(uuid::Uuid::now_v7()),
        }
    }

    fn keyring(active: &str) -> Keyring {
        Keyring::from_parts(active, [("k1", [1u8; 32]), ("k2", [2u8; 32])]).unwrap()
    }

    #[test]
    fn a_token_opens_exactly_its_call_until_it_expires() {
        let tokens = StreamTokens::from_keyring(&keyring("k1"));
        let now = Utc::now();
        let claims = claims();
        let token = tokens.issue(&claims, now + chrono::Duration::minutes(10));
        assert!(token.starts_with("v1.k1."));
        assert_eq!(tokens.verify(&token, &claims, now), Ok(()));
        let mut other = claims;
        other.call = CallId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            tokens.verify(&token, &other, now),
            Err(StreamTokenError::BadSignature)
        );
        let mut other_attempt = claims;
        other_attempt.attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
        assert_eq!(
            tokens.verify(&token, &other_attempt, now),
            Err(StreamTokenError::BadSignature)
        );
        assert_eq!(
            tokens.verify(&token, &claims, now + chrono::Duration::minutes(11)),
            Err(StreamTokenError::Expired)
        );
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let tokens = StreamTokens::from_keyring(&keyring("k1"));
        let now = Utc::now();
        let claims = claims();
        let token = tokens.issue(&claims, now + chrono::Duration::minutes(10));
        // A later expiry, keeping the signature: refused.
        let parts: Vec<&str> = token.split('.').collect();
        let extended = format!("v1.k1.{}.{}", now.timestamp() + 86_400, parts[3]);
        assert_eq!(
            tokens.verify(&extended, &claims, now),
            Err(StreamTokenError::BadSignature)
        );
        let foreign = format!("v1.k9.{}.{}", parts[2], parts[3]);
        assert_eq!(
            tokens.verify(&foreign, &claims, now),
            Err(StreamTokenError::UnknownKey)
        );
        for malformed in [
            "",
            "v1",
            "v2.k1.1.x",
            "v1.k1.soon.x",
            "v1.k1.1.!!",
            "v1.k1.1.x.y",
        ] {
            assert_eq!(
                tokens.verify(malformed, &claims, now),
                Err(StreamTokenError::Malformed),
                "{malformed}"
            );
        }
    }

    #[test]
    fn tokens_survive_a_master_key_rotation_while_the_old_key_is_kept() {
        let before = StreamTokens::from_keyring(&keyring("k1"));
        let after = StreamTokens::from_keyring(&keyring("k2"));
        let now = Utc::now();
        let claims = claims();
        let token = before.issue(&claims, now + chrono::Duration::minutes(10));
        assert_eq!(after.verify(&token, &claims, now), Ok(()));
        assert!(after.issue(&claims, now).starts_with("v1.k2."));
    }
}
