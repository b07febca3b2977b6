//! Typed identifiers, parsed once at the edge.
//!
//! Past ingress no tenant, call or event id travels as a bare `String` or `Uuid`: each has its
//! own newtype so that a call id can never be passed where a tenant id is expected.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Error returned when text is not a valid identifier.
#[derive(Debug, thiserror::Error)]
#[error("`{kind}` is not a valid uuid: `{input}`")]
pub struct IdParseError {
    kind: &'static str,
    input: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an already validated uuid.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// Returns the inner uuid (for storage and wire encoding).
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the canonical text form.
            pub fn parse(input: &str) -> Result<Self, IdParseError> {
                Uuid::parse_str(input.trim())
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind, input: input.chars().take(64).collect() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(input: &str) -> Result<Self, Self::Err> {
                Self::parse(input)
            }
        }
    };
}

uuid_id!(
    /// A client business (tenant) of the platform.
    TenantId,
    "tenant id"
);
uuid_id!(
    /// One logical call to a lead (which may take several attempts).
    CallId,
    "call id"
);
uuid_id!(
    /// One dial of a call (`call_attempts.id`); status callbacks carry it in their URL.
    AttemptId,
    "attempt id"
);
uuid_id!(
    /// One bus event; always a UUIDv7 so ids sort by creation time.
    EventId,
    "event id"
);

impl EventId {
    /// Returns a fresh, time-ordered event id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// Derives a deterministic UUIDv7 from a parent event and a list of parts.
    ///
    /// The timestamp is the parent's (so derived ids sort next to their cause) and the random
    /// bits are a SHA-256 of the parent and the parts. Replaying the same input therefore
    /// yields the same output ids, which the stream's duplicate window and the next stage's
    /// idempotency claim both rely on.
    pub fn derived(parent: EventId, parts: &[&[u8]]) -> Self {
        let millis = parent.unix_millis().unwrap_or(0);
        Self::from_millis_and_parts(millis, parent.0.as_bytes(), parts)
    }

    /// Derives a deterministic UUIDv7 from a timestamp and arbitrary key material.
    pub fn derived_at(unix_millis: u64, parts: &[&[u8]]) -> Self {
        Self::from_millis_and_parts(unix_millis, &[], parts)
    }

    fn from_millis_and_parts(unix_millis: u64, seed: &[u8], parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        for part in parts {
            // Length-prefix every part so that ("ab","c") and ("a","bc") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest[..10]);
        Self(uuid::Builder::from_unix_timestamp_millis(unix_millis, &random).into_uuid())
    }

    /// Returns the millisecond timestamp embedded in a UUIDv7, if it is one.
    pub fn unix_millis(&self) -> Option<u64> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        Some(secs * 1000 + u64::from(nanos) / 1_000_000)
    }
}

uuid_id!(
    /// A management API key.
    ApiKeyId,
    "api key id"
);

/// A phone number in E.164 form (`+` then 7 to 15 digits, no leading zero).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Text that is not an E.164 number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be an E.164 number such as +14155550100")]
pub struct PhoneNumberError;

impl PhoneNumber {
    /// Parses E.164; spaces, dashes, dots and parentheses are tolerated and removed.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let compact: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or(PhoneNumberError)?;
        let valid = (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(compact))
        } else {
            Err(PhoneNumberError)
        }
    }

    /// Returns the E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TenantId {
    /// The platform itself, used by operational events (canary probes) that belong to no client.
    pub const PLATFORM: TenantId = TenantId(Uuid::nil());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_deterministic_and_distinct_per_part() {
        let parent = EventId::new_v7();
        let first = EventId::derived(parent, &[b"stage", b"0"]);
        assert_eq!(first, EventId::derived(parent, &[b"stage", b"0"]));
        assert_ne!(first, EventId::derived(parent, &[b"stage", b"1"]));
        assert_ne!(
            EventId::derived(parent, &[b"ab", b"c"]),
            EventId::derived(parent, &[b"a", b"bc"])
        );
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert_eq!(first.unix_millis(), parent.unix_millis());
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert_eq!(
            PhoneNumber::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
        for bad in [
            "4155550100",
            "+0123456789",
            "+1415",
            "+1415555010012345",
            "+1415abc0100",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneNumberError), "{bad}");
        }
    }

    #[test]
    fn garbage_is_not_an_id() {
        let error = TenantId::parse("not-a-uuid").unwrap_err();
        assert!(error.to_string().contains("tenant id"));
        assert!(TenantId::parse(" 0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f ").is_ok());
    }
}
