//! Translation between our CRM vocabulary and a custom CRM's JSON through its mapping, and the
//! request details: path templates, HMAC signatures.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac as _};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::config::{ContactFields, NoteFields};
use crate::crm::{Contact, ContactId, Note};
use crate::ids::PhoneNumber;

/// Reads the value at `pointer` (`""` is the whole document).
pub(crate) fn get<'a>(document: &'a Value, pointer: &str) -> Option<&'a Value> {
    document.pointer(pointer).filter(|value| !value.is_null())
}

/// Writes `value` at `pointer`, creating objects along the way (an existing non-object on
/// the way is replaced). `""` replaces the document.
pub(crate) fn set(document: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *document = value;
        return;
    }
    let mut current = document;
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    for token in parents {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(object) = current else {
            return;
        };
        current = object
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    if let Value::Object(object) = current {
        object.insert(last.clone(), value);
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.trim().to_owned()).filter(|text| !text.is_empty()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn read(document: &Value, pointer: Option<&String>) -> Option<String> {
    text(get(document, pointer?))
}

/// Reads a contact. `None` when it has no usable id.
pub(crate) fn contact(document: &Value, fields: &ContactFields) -> Option<Contact> {
    let id = ContactId::try_from(text(get(document, &fields.id))?).ok()?;
    let tags = match fields
        .tags
        .as_ref()
        .and_then(|pointer| get(document, pointer))
    {
        Some(Value::Array(items)) => items.iter().filter_map(|item| text(Some(item))).collect(),
        Some(Value::String(joined)) => joined
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let mut custom_fields = BTreeMap::new();
    if let Some(Value::Object(object)) = fields
        .custom_fields_object
        .as_ref()
        .and_then(|pointer| get(document, pointer))
    {
        for (key, value) in object {
            if !value.is_null() {
                custom_fields.insert(key.clone(), value.clone());
            }
        }
    }
    for (name, pointer) in &fields.custom_fields {
        if let Some(value) = get(document, pointer) {
            custom_fields.insert(name.clone(), value.clone());
        }
    }
    let do_not_call = fields
        .do_not_call
        .as_ref()
        .and_then(|pointer| get(document, pointer))
        .is_some_and(|value| value.as_bool() == Some(true));
    Some(Contact {
        id: Some(id),
        first_name: read(document, fields.first_name.as_ref()),
        last_name: read(document, fields.last_name.as_ref()),
        email: read(document, fields.email.as_ref()),
        phone: read(document, fields.phone.as_ref())
            .and_then(|phone| PhoneNumber::parse(&phone).ok()),
        timezone: read(document, fields.timezone.as_ref()),
        status: read(document, fields.status.as_ref()),
        tags,
        custom_fields,
        do_not_call,
    })
}

/// Where a custom field is written: its own pointer, else its key in the custom fields
/// object. `None` when the mapping has neither.
pub(crate) fn custom_field_pointer(fields: &ContactFields, name: &str) -> Option<String> {
    if let Some(pointer) = fields.custom_fields.get(name) {
        return Some(pointer.clone());
    }
    let object = fields.custom_fields_object.as_ref()?;
    let escaped = name.replace('~', "~0").replace('/', "~1");
    Some(format!("{object}/{escaped}"))
}

/// Reads a note.
pub(crate) fn note(document: &Value, fields: &NoteFields) -> Option<Note> {
    let body = text(get(document, &fields.body)).unwrap_or_default();
    Some(Note {
        id: text(get(document, &fields.id)),
        title: fields
            .title
            .as_ref()
            .and_then(|pointer| text(get(document, pointer)))
            .unwrap_or_default(),
        body,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Fills a template's placeholders with `values`, percent-encoded. A query pair whose
/// placeholder has no value is left out; a path placeholder without one is an error naming it.
pub(crate) fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, String> {
    let (path, query) = template.split_once('?').unwrap_or((template, ""));
    let path = fill(path, values)?
        .ok_or_else(|| "the path needs a value the request does not have".to_owned())?;
    let pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| fill(pair, values).transpose())
        .collect::<Result<_, _>>()?;
    if pairs.is_empty() {
        Ok(path)
    } else {
        Ok(format!("{path}?{}", pairs.join("&")))
    }
}

/// `None` when a placeholder has no value.
fn fill(part: &str, values: &BTreeMap<&str, String>) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut rest = part;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("unbalanced `{`")?;
        let Some(value) = values
            .get(&after[..close])
            .filter(|value| !value.is_empty())
        else {
            return Ok(None);
        };
        out.push_str(&encode(value));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Returns hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`.
pub(crate) fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A short, printable excerpt of a CRM's error message (`message`, `error`, or `detail`).
pub(crate) fn error_reason(status: u16, body: &[u8]) -> String {
    let document: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = ["/message", "/error/message", "/error", "/detail"]
        .iter()
        .find_map(|pointer| document.pointer(pointer).and_then(Value::as_str));
    match message {
        Some(message) => {
            let clean: String = message
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            format!("status {status}: {clean}")
        }
        None => format!("status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_written_at_nested_pointers() {
        let mut document = json!({});
        set(&mut document, "/name/first", json!("Ada"));
        set(&mut document, "/custom/a~1b", json!(1));
        set(&mut document, "/name/last", json!("L"));
        assert_eq!(
            document,
            json!({"name": {"first": "Ada", "last": "L"}, "custom": {"a/b": 1}})
        );
        set(&mut document, "", json!([1]));
        assert_eq!(document, json!([1]));
    }

    #[test]
    fn templates_drop_query_pairs_without_values_and_encode_the_rest() {
        let values = BTreeMap::from([("phone", "+1 512".to_owned()), ("id", "a/b".to_owned())]);
        assert_eq!(
            render("/contacts?phone={phone}&email={email}&limit=1", &values).unwrap(),
            "/contacts?phone=%2B1%20512&limit=1"
        );
        assert_eq!(
            render("/contacts/{id}", &values).unwrap(),
            "/contacts/a%2Fb"
        );
        assert!(render("/deals/{pipeline}", &values).is_err());
    }

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_timestamp_dot_body() {
        // Independently computed: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", "1700000000", b"{}"),
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn error_reasons_are_short_and_printable() {
        let body = br#"{"error": "not_found", "message": "no such\ncontact"}"#;
        assert_eq!(error_reason(404, body), "status 404: no suchcontact");
        assert_eq!(error_reason(500, b"<html>"), "status 500");
    }
}
