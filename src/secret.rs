//! A secret is a type: it cannot be printed by accident.
//!
//! `Debug` and `Display` print `[REDACTED]`; the value is read only through an explicit
//! [`Secret::expose`] at the point of use, which is easy to find in review.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A value that never appears in logs, errors or API responses.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the plaintext; call it only where the value is handed to its consumer.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

/// Returns a connection URL with its password replaced, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    if path.is_empty() {
        format!("{scheme}://{host}")
    } else {
        let path_without_query = path.split('?').next().unwrap_or_default();
        format!("{scheme}://{host}/{path_without_query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?} {secret}"), "[REDACTED] [REDACTED]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://caller:s3cret@127.0.0.1:5432/caller?sslmode=disable"),
            "postgres://caller:***@127.0.0.1:5432/caller"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }
}
