//! The one MessagePack codec of the bus.
//!
//! Payloads are written with *named* fields (maps), never positional arrays: only the named
//! form survives a field being added, removed or reordered (`serde(default)` fills the gap).
//! `rmp_serde::to_vec` and `from_slice` are banned elsewhere by `clippy.toml`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Content type of every bus payload.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Serialization failed (a type that MessagePack cannot represent).
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The bytes are not valid MessagePack for the expected type.
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encodes a value as MessagePack with named fields.
#[allow(clippy::disallowed_methods)] // NOTE: the one place allowed to call rmp_serde directly.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Decodes MessagePack written by [`encode`] (or any map-shaped MessagePack).
#[allow(clippy::disallowed_methods)] // NOTE: the one place allowed to call rmp_serde directly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize)]
    struct V1 {
        name: String,
        count: u32,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct V1WithAddedField {
        count: u32,
        name: String,
        #[serde(default)]
        added: Option<String>,
    }

    #[test]
    fn named_encoding_tolerates_added_and_reordered_fields() {
        let bytes = encode(&V1 {
            name: "a".to_owned(),
            count: 2,
        })
        .unwrap();
        let decoded: V1WithAddedField = decode(&bytes).unwrap();
        assert_eq!(
            decoded,
            V1WithAddedField {
                count: 2,
                name: "a".to_owned(),
                added: None
            }
        );
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        let result: Result<V1WithAddedField, _> = decode(&[0xc1, 0xff, 0x00]);
        assert!(matches!(result, Err(CodecError::Decode(_))));
    }
}
