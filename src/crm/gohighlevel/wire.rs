//! HighLevel's wire shapes, read and written: contacts (custom fields `{id, value}` on read,
//! `{id, field_value}` on write), notes, free-slot maps, appointments. Everything here is
//! pure; an answer in an unexpected shape is [`ProviderError::malformed`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::crm::{Contact, ContactId, Note, ProviderError};
use crate::ids::PhoneNumber;

/// Returns true for text usable as a HighLevel id in a path or query (letters, digits, `-`,
/// `_`, 1–128 characters).
pub(super) fn is_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || b'_' == byte)
}

/// A location's custom fields: the tenant's key (the field key without `contact.`) ↔ id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMap {
    by_key: HashMap<String, String>,
    by_id: HashMap<String, String>,
}

impl FieldMap {
    /// Reads `GET /locations/{id}/customFields` (`{customFields: [{id, fieldKey}]}`).
    pub(super) fn parse(answer: &Value) -> Result<Self, ProviderError> {
        let fields = answer
            .get("customFields")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::malformed("custom fields without `customFields`"))?;
        let mut map = Self::default();
        for field in fields {
            let (Some(id), Some(field_key)) = (
                field.get("id").and_then(Value::as_str),
                field.get("fieldKey").and_then(Value::as_str),
            ) else {
                continue; // a field without key cannot be named by a tenant
            };
            let key = field_key.strip_prefix("contact.").unwrap_or(field_key);
            map.by_key.insert(key.to_owned(), id.to_owned());
            map.by_key.insert(field_key.to_owned(), id.to_owned());
            map.by_id.insert(id.to_owned(), key.to_owned());
        }
        Ok(map)
    }

    /// Returns the id of the field the tenant calls `key` (with or without `contact.`).
    pub(super) fn id(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }

    /// Returns the tenant's key of field `id`.
    pub(super) fn key(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }
}

/// Writes custom fields as `[{id, field_value}]`; `Err` names the first key the location
/// does not have.
pub(super) fn custom_fields_body(
    fields: &FieldMap,
    values: &BTreeMap<String, Value>,
) -> Result<Vec<Value>, String> {
    values
        .iter()
        .map(|(key, value)| {
            let id = fields.id(key).ok_or_else(|| key.clone())?;
            Ok(json!({"id": id, "field_value": field_value(value)}))
        })
        .collect()
}

/// The `field_value` of a value: text, a list of texts, or an object as given; numbers and
/// booleans as text (the spec's field types take no bare number); null clears the field.
fn field_value(value: &Value) -> Value {
    match value {
        Value::Null => json!(""),
        Value::Bool(flag) => json!(flag.to_string()),
        Value::Number(number) => json!(number.to_string()),
        Value::String(_) | Value::Object(_) => value.clone(),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::String(_) => item.clone(),
                    other => json!(other.to_string()),
                })
                .collect(),
        ),
    }
}

/// A contact read back, and the custom field ids the map did not know.
pub(super) struct ReadContact {
    pub(super) contact: Contact,
    pub(super) unknown_fields: bool,
}

/// Reads a `GetContectByIdSchema` object. The status is the `status_key` custom field, taken
/// out of the custom fields.
pub(super) fn contact(
    value: &Value,
    fields: &FieldMap,
    status_key: &str,
) -> Result<ReadContact, ProviderError> {
    if !value.is_object() {
        return Err(ProviderError::malformed("a contact is not an object"));
    }
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let id = text("id")
        .ok_or_else(|| ProviderError::malformed("a contact without `id`"))
        .and_then(|id| {
            ContactId::try_from(id).map_err(|_| ProviderError::malformed("a contact id"))
        })?;
    let tags = match value.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => return Err(ProviderError::malformed("contact `tags` is not a list")),
    };
    let mut custom_fields = BTreeMap::new();
    let mut unknown_fields = false;
    match value.get("customFields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for entry in entries {
                let Some(field_id) = entry.get("id").and_then(Value::as_str) else {
                    continue;
                };
                // NOTE: reads say `value`; accept `field_value` too, in case.
                let field = entry
                    .get("value")
                    .or_else(|| entry.get("field_value"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let key = fields.key(field_id).map_or_else(
                    || {
                        unknown_fields = true;
                        field_id.to_owned()
                    },
                    str::to_owned,
                );
                custom_fields.insert(key, field);
            }
        }
        Some(_) => {
            return Err(ProviderError::malformed(
                "contact `customFields` is not a list",
            ));
        }
    }
    let status = custom_fields
        .remove(status_key)
        .and_then(|status| status.as_str().map(str::to_owned))
        .filter(|status| !status.is_empty());
    let dnd_call = value
        .pointer("/dndSettings/Call/status")
        .and_then(Value::as_str)
        .is_some_and(|status| status == "active" || status == "permanent");
    let contact = Contact {
        id: Some(id),
        first_name: text("firstName"),
        last_name: text("lastName"),
        email: text("email"),
        phone: text("phone").and_then(|phone| PhoneNumber::parse(&phone).ok()),
        timezone: text("timezone"),
        status,
        tags,
        custom_fields,
        do_not_call: value.get("dnd").and_then(Value::as_bool) == Some(true) || dnd_call,
    };
    Ok(ReadContact {
        contact,
        unknown_fields,
    })
}

/// Reads a `GetNoteSchema` object.
pub(super) fn note(value: &Value) -> Result<Note, ProviderError> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::malformed("a note without `id`"))?;
    Ok(Note {
        id: Some(id.to_owned()),
        title: value
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        body: value
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Reads a free-slots answer: `{"YYYY-MM-DD": {"slots": [ISO-8601 with offset]}, "traceId":
/// …}`. Keys that are not dates are skipped; returns every start, sorted, without repeats.
pub(super) fn free_slot_starts(answer: &Value) -> Result<Vec<DateTime<Utc>>, ProviderError> {
    let days = answer
        .as_object()
        .ok_or_else(|| ProviderError::malformed("free slots are not an object"))?;
    let mut starts = Vec::new();
    for (key, day) in days {
        if !is_date_key(key) {
            continue; // `traceId` and whatever else rides along
        }
        let slots = day
            .get("slots")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::malformed("a free-slot day without `slots`"))?;
        for slot in slots {
            let text = slot
                .as_str()
                .ok_or_else(|| ProviderError::malformed("a free slot is not text"))?;
            let start = DateTime::parse_from_rfc3339(text)
                .map_err(|_| ProviderError::malformed("a free slot is not an ISO-8601 time"))?;
            starts.push(start.with_timezone(&Utc));
        }
    }
    starts.sort();
    starts.dedup();
    Ok(starts)
}

/// `^\d{4}-\d{2}-\d{2}$`.
fn is_date_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        })
}

/// An appointment as HighLevel answered it.
pub(super) struct AppointmentAnswer {
    pub(super) id: String,
    pub(super) starts_at: Option<DateTime<Utc>>,
    pub(super) ends_at: Option<DateTime<Utc>>,
}

/// Reads an appointment's id and times (`AppointmentSchemaResponse`).
pub(super) fn appointment(value: &Value) -> Result<AppointmentAnswer, ProviderError> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ProviderError::malformed("an appointment without `id`"))?;
    let time = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc))
    };
    Ok(AppointmentAnswer {
        id: id.to_owned(),
        starts_at: time("startTime"),
        ends_at: time("endTime"),
    })
}

/// The vendor's error message: `message` as text or a list of texts, at most 200 characters.
pub(super) fn error_message(body: &Value) -> Option<String> {
    let message = match body.get("message")? {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        _ => return None,
    };
    Some(message.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> FieldMap {
        FieldMap::parse(&json!({"customFields": [
            {"id": "F1", "fieldKey": "contact.ai_call_status"},
            {"id": "F2", "fieldKey": "contact.preferred_time"},
            {"id": "F3", "name": "no key"},
        ]}))
        .unwrap()
    }

    #[test]
    fn a_contact_maps_custom_field_ids_back_to_keys_and_reads_the_status() {
        let read = contact(
            &json!({
                "id": "seD4PfOuKoVMLkEZqohJ",
                "firstName": "rubika",
                "phone": "+1 883-232-7657",
                "tags": ["a"],
                "customFields": [
                    {"id": "F1", "value": "Contacted"},
                    {"id": "F2", "value": "mornings"},
                    {"id": "F9", "value": "?"}
                ],
                "dndSettings": {"Call": {"status": "active", "message": "", "code": ""}}
            }),
            &fields(),
            "ai_call_status",
        )
        .unwrap();
        let contact = read.contact;
        assert_eq!(contact.status.as_deref(), Some("Contacted"));
        assert_eq!(contact.custom_fields["preferred_time"], json!("mornings"));
        assert!(!contact.custom_fields.contains_key("ai_call_status"));
        assert!(read.unknown_fields, "F9 is not in the map");
        assert_eq!(contact.phone.unwrap().as_str(), "+18832327657");
        assert!(contact.do_not_call, "dndSettings.Call active");
        assert_eq!(contact.last_name, None);
    }

    #[test]
    fn dnd_alone_or_an_inactive_call_setting_decide_do_not_call() {
        let read = |value: Value| {
            contact(&value, &fields(), "ai_call_status")
                .unwrap()
                .contact
                .do_not_call
        };
        assert!(read(json!({"id": "a", "dnd": true})));
        assert!(!read(json!({"id": "a", "dnd": false,
            "dndSettings": {"Call": {"status": "inactive"}}})));
        assert!(read(
            json!({"id": "a", "dndSettings": {"Call": {"status": "permanent"}}})
        ));
    }

    #[test]
    fn malformed_contacts_are_errors_not_panics() {
        for value in [
            json!([]),
            json!({"firstName": "no id"}),
            json!({"id": "a/b"}),
            json!({"id": "a", "tags": "x"}),
            json!({"id": "a", "customFields": {"id": "F1"}}),
        ] {
            assert!(
                matches!(
                    contact(&value, &fields(), "s"),
                    Err(ProviderError::Unavailable { .. })
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn custom_fields_are_written_by_id_as_field_value() {
        let values = BTreeMap::from([
            ("contact.preferred_time".to_owned(), json!("evenings")),
            ("ai_call_status".to_owned(), json!(3)),
        ]);
        let body = custom_fields_body(&fields(), &values).unwrap();
        assert_eq!(
            body,
            vec![
                json!({"id": "F1", "field_value": "3"}),
                json!({"id": "F2", "field_value": "evenings"}),
            ]
        );
        let unknown = BTreeMap::from([("nope".to_owned(), json!("x"))]);
        assert_eq!(
            custom_fields_body(&fields(), &unknown),
            Err("nope".to_owned())
        );
    }

    #[test]
    fn free_slots_skip_the_trace_id_and_keep_offsets() {
        let starts = free_slot_starts(&json!({
            "2024-10-29": {"slots": ["2024-10-29T10:00:00-05:00"]},
            "2024-10-28": {"slots": ["2024-10-28T10:00:00-05:00", "2024-10-28T11:00:00-05:00"]},
            "traceId": "8a4c1e3e-0000-4000-8000-000000000000"
        }))
        .unwrap();
        assert_eq!(starts.len(), 3);
        assert_eq!(starts[0].to_rfc3339(), "2024-10-28T15:00:00+00:00");
        assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(free_slot_starts(&json!({"2024-10-28": {"slots": ["tomorrow"]}})).is_err());
        assert!(free_slot_starts(&json!({"2024-10-28": {}})).is_err());
        assert!(free_slot_starts(&json!(["x"])).is_err());
        assert!(
            free_slot_starts(&json!({"traceId": "t"}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn error_messages_are_text_or_lists_and_bounded() {
        assert_eq!(
            error_message(&json!({"statusCode": 422, "message": ["a", "b"]})).as_deref(),
            Some("a; b")
        );
        assert_eq!(
            error_message(&json!({"message": "x".repeat(500)})).map(|m| m.len()),
            Some(200)
        );
        assert_eq!(error_message(&json!({"statusCode": 400})), None);
    }

    #[test]
    fn ids_are_path_safe() {
        assert!(is_id("ve9EPM428h8vShlRW1KT"));
        assert!(is_id("7915dedc-8f18-44d5-8bc3-77c04e994a10"));
        assert!(!is_id("a/b"));
        assert!(!is_id(""));
        assert!(!is_id("a?b"));
    }
}
