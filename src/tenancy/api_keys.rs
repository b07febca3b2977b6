//! API key text: `ck_live_` + 32 random bytes (base64url) + a 6-hex-digit checksum.
//!
//! The checksum lets a typo or a truncated copy be refused without touching the database; only
//! the SHA-256 of the whole text is stored; the text is shown once, at creation.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Prefix of every key.
pub const PREFIX: &str = "ck_live_";
/// Random bytes per key.
const RANDOM_BYTES: usize = 32;
/// Base64url length of the random part.
const BODY_CHARS: usize = 43;
/// Checksum length.
const CHECKSUM_CHARS: usize = 6;

/// A scope a key can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read clients, configuration, features and masked credentials.
    ClientsRead,
    /// Create, change and disable clients; change configuration and features.
    ClientsAdmin,
    /// Set, rotate and delete provider credentials.
    CredentialsWrite,
    /// Create, rotate and revoke API keys.
    KeysAdmin,
    /// Read the audit log.
    AuditRead,
    /// Request calls.
    CallsWrite,
    /// Read analytics.
    AnalyticsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 7] = [
        Scope::ClientsRead,
        Scope::ClientsAdmin,
        Scope::CredentialsWrite,
        Scope::KeysAdmin,
        Scope::AuditRead,
        Scope::CallsWrite,
        Scope::AnalyticsRead,
    ];

    /// Returns the wire name, e.g. `clients:admin`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::ClientsRead => "clients:read",
            Scope::ClientsAdmin => "clients:admin",
            Scope::CredentialsWrite => "credentials:write",
            Scope::KeysAdmin => "keys:admin",
            Scope::AuditRead => "audit:read",
            Scope::CallsWrite => "calls:write",
            Scope::AnalyticsRead => "analytics:read",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(format!("{PREFIX}{body}").as_bytes());
    crate::hex::encode(&digest[..CHECKSUM_CHARS / 2])
}

/// A freshly generated key: its text (shown once) and what is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The whole key; show it once, never store or log it.
    pub text: Secret<String>,
    /// SHA-256 of the text.
    pub hash: [u8; 32],
    /// Readable start, e.g. `ck_live_Ab3dE9`.
    pub display_prefix: String,
}

/// Generates a key from the operating system's random source.
pub fn generate() -> GeneratedKey {
    let mut random = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let body = URL_SAFE_NO_PAD.encode(random);
    let text = format!("{PREFIX}{body}{}", checksum(&body));
    GeneratedKey {
        hash: hash(&text),
        display_prefix: format!("{PREFIX}{}", &body[..6]),
        text: Secret::new(text),
    }
}

/// Returns the SHA-256 of a key's text.
pub fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Returns true when `text` has the shape of a key and its checksum matches.
pub fn is_well_formed(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != BODY_CHARS + CHECKSUM_CHARS || !rest.is_ascii() {
        return false;
    }
    let (body, sum) = rest.split_at(BODY_CHARS);
    URL_SAFE_NO_PAD
        .decode(body)
        .is_ok_and(|bytes| bytes.len() == RANDOM_BYTES)
        && checksum(body) == sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let first = generate();
        let second = generate();
        assert!(is_well_formed(first.text.expose()));
        assert_ne!(first.text, second.text);
        assert_eq!(first.hash, hash(first.text.expose()));
        assert!(first.text.expose().starts_with(&first.display_prefix));
        assert_eq!(format!("{:?}", first.text), "[REDACTED]");
    }

    #[test]
    fn typos_fail_the_checksum() {
        let key = generate();
        let text = key.text.expose();
        let mut typo = text.clone().into_bytes();
        let index = PREFIX.len() + 5;
        typo[index] = if typo[index] == b'A' { b'B' } else { b'A' };
        assert!(!is_well_formed(&String::from_utf8(typo).unwrap()));
        assert!(!is_well_formed(&text[..text.len() - 1]));
        assert!(!is_well_formed("ck_test_whatever"));
    }

    #[test]
    fn scopes_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("clients:write"), None);
    }
}
