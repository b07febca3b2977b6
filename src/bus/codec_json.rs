//! Reading any bus payload as JSON, for people: dead-letter listings and `caller dlq show`.
//!
//! `serde_json::Value` cannot hold MessagePack `bin` values, and uuids (tenant and event ids
//! inside payloads) are written as 16-byte `bin` by their non-human-readable `Serialize`. So
//! a `bin` of 16 bytes reads as the uuid's text and any other `bin` as base64.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::codec::{self, CodecError};

/// Decodes a MessagePack payload into JSON; `bin` values become text (see the module docs).
pub fn decode_as_json(bytes: &[u8]) -> Result<Value, CodecError> {
    codec::decode::<Readable>(bytes).map(|readable| readable.0)
}

struct Readable(Value);

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ReadableVisitor).map(Readable)
    }
}

struct ReadableVisitor;

impl<'de> Visitor<'de> for ReadableVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_bytes<E>(self, value: &[u8]) -> Result<Value, E> {
        Ok(Value::String(match uuid::Uuid::from_slice(value) {
            Ok(uuid) => uuid.to_string(),
            Err(_) => base64::engine::general_purpose::STANDARD.encode(value),
        }))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Readable(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((Readable(key), Readable(value))) = map.next_entry()? {
            let key = match key {
                Value::String(text) => text,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "enum values are not expected in payloads",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_inside_a_payload_read_as_their_text() {
        let tenant = crate::ids::TenantId::parse("0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f").unwrap();
        let key = crate::events::lead::TenantKey::TenantId(tenant);
        let bytes = codec::encode(&serde_json::json!({"k": 1})).unwrap();
        assert_eq!(decode_as_json(&bytes).unwrap(), serde_json::json!({"k": 1}));
        let bytes = codec::encode(&key).unwrap();
        assert_eq!(
            decode_as_json(&bytes).unwrap(),
            serde_json::json!({"kind": "tenant_id", "value": "0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f"})
        );
        assert!(
            codec::decode::<Value>(&bytes).is_err(),
            "why this module exists"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_as_json(&[0xc1, 0xff]).is_err());
    }
}
