//! Master keys by key id, from configuration, with one active key.
//!
//! Settings: `[crypto] active_key = "2026-11"` and `[crypto.keys] "2026-11" = "<base64 of 32
//! bytes>"` (or `CALLER__CRYPTO__KEYS__<ID>`). Old keys stay in the keyring until
//! `caller keys rotate` has re-sealed every record to the active one.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

/// The id of a master key: short, printable, stored beside each ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses `[A-Za-z0-9._-]{1,64}`.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(KeyringError::BadKeyId(text.chars().take(64).collect()))
        }
    }

    /// Returns the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A keyring that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    /// A key id with characters outside `[A-Za-z0-9._-]` or too long.
    #[error("invalid master key id `{0}`")]
    BadKeyId(String),
    /// A key that is not base64 of exactly 32 bytes (the value itself is never shown).
    #[error("master key `{0}` must be base64 of exactly 32 bytes")]
    BadKey(String),
    /// The active key id names no key.
    #[error("active master key `{0}` is not among the configured keys")]
    MissingActive(String),
    /// No key configured at all.
    #[error("no master key configured: set crypto.active_key and crypto.keys.<id>")]
    Empty,
}

/// Master keys by id.
#[derive(Clone)]
pub struct Keyring {
    active: KeyId,
    keys: BTreeMap<KeyId, Secret<[u8; 32]>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from base64 keys (configuration).
    pub fn from_config(
        active: &str,
        keys: &BTreeMap<String, Secret<String>>,
    ) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut parsed = BTreeMap::new();
        for (id, encoded) in keys {
            let key_id = KeyId::parse(id)?;
            let bytes = STANDARD
                .decode(encoded.expose().trim())
                .map_err(|_| KeyringError::BadKey(id.clone()))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| KeyringError::BadKey(id.clone()))?;
            parsed.insert(key_id, Secret::new(key));
        }
        Self::build(active, parsed)
    }

    /// Builds a keyring from raw keys (tests, tools).
    pub fn from_parts<const N: usize>(
        active: &str,
        keys: [(&str, [u8; 32]); N],
    ) -> Result<Self, KeyringError> {
        let mut parsed = BTreeMap::new();
        for (id, key) in keys {
            parsed.insert(KeyId::parse(id)?, Secret::new(key));
        }
        Self::build(active, parsed)
    }

    fn build(active: &str, keys: BTreeMap<KeyId, Secret<[u8; 32]>>) -> Result<Self, KeyringError> {
        // Environment variable names are lowercased by the settings loader: compare ids
        // case-insensitively so `ACTIVE_KEY=K1` finds `CALLER__CRYPTO__KEYS__K1`.
        let active = KeyId::parse(&active.to_ascii_lowercase())?;
        let keys: BTreeMap<KeyId, Secret<[u8; 32]>> = keys
            .into_iter()
            .map(|(id, key)| (KeyId(id.0.to_ascii_lowercase()), key))
            .collect();
        if !keys.contains_key(&active) {
            return Err(KeyringError::MissingActive(active.0));
        }
        Ok(Self { active, keys })
    }

    /// Returns the active key id and key.
    pub fn active(&self) -> (&KeyId, &Secret<[u8; 32]>) {
        (&self.active, &self.keys[&self.active])
    }

    /// Returns the active key id.
    pub fn active_id(&self) -> &KeyId {
        &self.active
    }

    /// Returns a key by id.
    pub fn get(&self, key_id: &KeyId) -> Option<&Secret<[u8; 32]>> {
        self.keys.get(key_id)
    }

    /// Returns every key id, in order.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_name_the_key_but_never_its_value() {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_owned(), Secret::new("c2hvcnQ=".to_owned()));
        let error = Keyring::from_config("k1", &keys).unwrap_err();
        assert_eq!(error, KeyringError::BadKey("k1".to_owned()));
        assert!(!error.to_string().contains("c2hvcnQ"));
        keys.insert("k1".to_owned(), Secret::new(STANDARD.encode([1u8; 32])));
        assert_eq!(
            Keyring::from_config("k2", &keys).unwrap_err(),
            KeyringError::MissingActive("k2".to_owned())
        );
        let keyring = Keyring::from_config("k1", &keys).unwrap();
        assert_eq!(keyring.active_id().as_str(), "k1");
        assert!(!format!("{keyring:?}").contains("[1, 1"));
    }
}
