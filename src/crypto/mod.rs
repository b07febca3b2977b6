//! Sealed credentials: AES-256-GCM with a random 96-bit nonce per record.
//!
//! A sealed record stores `(key_id, nonce, ciphertext)`. The additional authenticated data
//! binds the record to its tenant, its credential kind and its key id, so a ciphertext copied
//! to another tenant's row, another kind, or relabelled with another key id fails to open.
//! Master keys come from [`keyring::Keyring`]; rotation re-seals under the active key id.

pub mod keyring;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

pub use self::keyring::{KeyId, Keyring};
use crate::ids::TenantId;
use crate::secret::Secret;

/// Version tag inside the additional data, so a future format can never be confused with it.
const AAD_VERSION: &[u8] = b"caller.sealed.v1";

/// A sealed secret as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Which master key sealed it.
    pub key_id: KeyId,
    /// The 96-bit nonce, unique per record and per seal.
    pub nonce: Vec<u8>,
    /// Ciphertext with its 128-bit tag.
    pub ciphertext: Vec<u8>,
}

/// Why a record cannot be sealed or opened. Never carries plaintext or key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The record names a key id the keyring does not hold.
    #[error("master key `{0}` is not in the keyring")]
    UnknownKey(String),
    /// Authentication failed: wrong tenant, kind, key id, or tampered bytes.
    #[error("sealed credential does not open (wrong tenant, kind or key, or tampered)")]
    Unauthentic,
    /// The stored nonce has the wrong length.
    #[error("sealed credential has a malformed nonce")]
    MalformedNonce,
    /// The plaintext is not UTF-8.
    #[error("sealed credential is not text")]
    NotText,
}

fn additional_data(tenant: TenantId, kind: &str, key_id: &KeyId) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(AAD_VERSION.len() + 16 + kind.len() + key_id.as_str().len() + 8);
    // Length-prefixed fields: ("ab","c") never equals ("a","bc").
    for part in [
        AAD_VERSION,
        tenant.as_uuid().as_bytes(),
        kind.as_bytes(),
        key_id.as_str().as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

fn cipher(key: &Secret<[u8; 32]>) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()))
}

/// Seals `plaintext` for `(tenant, kind)` under the keyring's active key.
pub fn seal(keyring: &Keyring, tenant: TenantId, kind: &str, plaintext: &Secret<String>) -> Sealed {
    let (key_id, key) = keyring.active();
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = additional_data(tenant, kind, key_id);
    let ciphertext = cipher(key)
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.expose().as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    Sealed {
        key_id: key_id.clone(),
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Opens a record sealed for `(tenant, kind)`.
pub fn open(
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    sealed: &Sealed,
) -> Result<Secret<String>, CryptoError> {
    let key = keyring
        .get(&sealed.key_id)
        .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.to_string()))?;
    if sealed.nonce.len() != 12 {
        return Err(CryptoError::MalformedNonce);
    }
    let aad = additional_data(tenant, kind, &sealed.key_id);
    let plaintext = cipher(key)
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Unauthentic)?;
    String::from_utf8(plaintext)
        .map(Secret::new)
        .map_err(|_| CryptoError::NotText)
}

/// Returns a display mask of a secret: its last four characters when it is long enough that
/// they are at most a quarter of it (16 characters or more), otherwise nothing of it.
/// Structured secrets (JSON token sets) show nothing: their tail is punctuation or a token.
pub fn mask(plaintext: &Secret<String>) -> String {
    let chars: Vec<char> = plaintext.expose().chars().collect();
    if chars.len() < 16 || plaintext.expose().trim_start().starts_with('{') {
        return "••••".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("••••{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::from_parts("k1", [("k1", [7u8; 32]), ("k0", [9u8; 32])]).unwrap()
    }

    fn tenant(n: u8) -> TenantId {
        TenantId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    #[test]
    fn a_sealed_credential_opens_only_for_its_tenant_and_kind() {
        let keyring = keyring();
        let secret = Secret::new("sk_live_abcdef".to_owned());
        let sealed = seal(&keyring, tenant(1), "twilio.auth_token", &secret);
        assert_eq!(sealed.key_id.as_str(), "k1");
        assert_eq!(
            open(&keyring, tenant(1), "twilio.auth_token", &sealed).unwrap(),
            secret
        );
        assert_eq!(
            open(&keyring, tenant(2), "twilio.auth_token", &sealed),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(
            open(&keyring, tenant(1), "zoho.oauth", &sealed),
            Err(CryptoError::Unauthentic)
        );
        let relabelled = Sealed {
            key_id: KeyId::parse("k0").unwrap(),
            ..sealed.clone()
        };
        assert_eq!(
            open(&keyring, tenant(1), "twilio.auth_token", &relabelled),
            Err(CryptoError::Unauthentic)
        );
        let mut tampered = sealed;
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            open(&keyring, tenant(1), "twilio.auth_token", &tampered),
            Err(CryptoError::Unauthentic)
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let keyring = keyring();
        let secret = Secret::new("same".to_owned());
        let first = seal(&keyring, tenant(1), "k", &secret);
        let second = seal(&keyring, tenant(1), "k", &secret);
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn masks_show_little() {
        assert_eq!(
            mask(&Secret::new("sk_live_abcdefgh1234".to_owned())),
            "••••1234"
        );
        assert_eq!(mask(&Secret::new("abc".to_owned())), "••••");
        assert_eq!(mask(&Secret::new("fifteen-chars-x".to_owned())), "••••");
        assert_eq!(
            mask(&Secret::new(
                r#"{"access_token":"abcdefghijkl"}"#.to_owned()
            )),
            "••••"
        );
    }
}
