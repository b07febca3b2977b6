//! Who did what: actors and digests for the audit log.
//!
//! A digest is the SHA-256 of the canonical JSON of a target's state. Secrets never enter
//! that JSON: a credential's state is its kind, key id and a digest of its ciphertext.

use serde::Serialize;

/// Who performs a management change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `key:<api key id>` or `operator:<name>`.
    pub label: String,
    /// The HTTP request id, when there is one.
    pub request_id: Option<String>,
}

impl Actor {
    /// An operator at the command line.
    pub fn operator(name: &str) -> Self {
        Self {
            label: format!("operator:{name}"),
            request_id: None,
        }
    }
}

/// Returns the hex SHA-256 of `state`'s canonical JSON (keys sorted).
pub fn digest<T: Serialize>(state: &T) -> String {
    // serde_json's map is ordered by key, so equal states always serialize identically.
    let value = serde_json::to_value(state).unwrap_or(serde_json::Value::Null);
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    crate::hex::sha256(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_ignore_key_order_and_see_changes() {
        let a = serde_json::json!({"b": 1, "a": 2});
        let b = serde_json::json!({"a": 2, "b": 1});
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&serde_json::json!({"a": 2, "b": 2})));
        assert_eq!(digest(&a).len(), 64);
    }
}
