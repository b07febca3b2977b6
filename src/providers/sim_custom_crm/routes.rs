//! The simulated CRM's operations, over the locked record.

use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{Book, error};

type Reply = (StatusCode, Value);

fn not_found() -> Reply {
    (StatusCode::NOT_FOUND, error("not_found", "no such contact"))
}

fn invalid(message: &str) -> Reply {
    (StatusCode::UNPROCESSABLE_ENTITY, error("invalid", message))
}

fn data(status: StatusCode, value: Value) -> Reply {
    let mut envelope = Map::new();
    envelope.insert("data".to_owned(), value);
    (status, Value::Object(envelope))
}

/// E.164: `+`, a non-zero digit, 6–14 more digits.
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|byte| byte.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

pub(super) fn route(
    book: &mut Book,
    method: &Method,
    segments: &[&str],
    query: &[(String, String)],
    body: Option<&Value>,
) -> Reply {
    let object = body.and_then(Value::as_object);
    match (method.as_str(), segments) {
        ("GET", ["v1", "contacts"]) => find(book, query),
        ("POST", ["v1", "contacts", "upsert"]) => match object {
            Some(fields) => upsert(book, fields),
            None => invalid("the body must be an object"),
        },
        ("GET", ["v1", "contacts", id]) => match book.contacts.get(*id) {
            Some(contact) => data(StatusCode::OK, Value::Object(contact.clone())),
            None => not_found(),
        },
        ("PATCH", ["v1", "contacts", id]) => match object {
            Some(fields) => update(book, id, fields),
            None => invalid("the body must be an object"),
        },
        ("POST", ["v1", "contacts", id, "tags"]) => tags(book, id, object, true),
        ("POST", ["v1", "contacts", id, "tags", "remove"]) => tags(book, id, object, false),
        ("POST", ["v1", "contacts", id, "notes"]) => add_note(book, id, object),
        ("GET", ["v1", "contacts", id, "notes"]) => {
            if !book.contacts.contains_key(*id) {
                return not_found();
            }
            let mut notes = book.notes.get(*id).cloned().unwrap_or_default();
            notes.reverse();
            data(StatusCode::OK, Value::Array(notes))
        }
        ("PUT", ["v1", "contacts", id, "deals", pipeline]) => deal(book, id, pipeline, object),
        ("POST", ["v1", "contacts", id, "calls"]) => log_call(book, id, object),
        _ => (StatusCode::NOT_FOUND, error("no_route", "no such endpoint")),
    }
}

fn find(book: &Book, query: &[(String, String)]) -> Reply {
    let get = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let (phone, email) = (get("phone"), get("email"));
    if phone.is_none() && email.is_none() {
        return invalid("filter by phone or email");
    }
    let found: Vec<Value> = book
        .contacts
        .values()
        .filter(|contact| {
            phone.is_none_or(|phone| contact.get("phone").and_then(Value::as_str) == Some(phone))
                && email.is_none_or(|email| {
                    contact
                        .get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|stored| stored.eq_ignore_ascii_case(email))
                })
        })
        .cloned()
        .map(Value::Object)
        .collect();
    let count = found.len();
    (StatusCode::OK, json!({"data": found, "count": count}))
}

/// Applies writable fields; returns whether the status changed.
fn merge(contact: &mut Map<String, Value>, fields: &Map<String, Value>) -> Result<bool, Reply> {
    let mut status_changed = false;
    for (key, value) in fields {
        match key.as_str() {
            "firstName" | "lastName" | "email" | "timezone" => {
                contact.insert(key.clone(), value.clone());
            }
            "phone" => {
                if !value.as_str().is_some_and(is_e164) {
                    return Err(invalid("phone must be E.164"));
                }
                contact.insert(key.clone(), value.clone());
            }
            "status" => {
                status_changed = contact.get("status") != Some(value);
                contact.insert(key.clone(), value.clone());
            }
            "tags" if value.is_array() => {
                contact.insert(key.clone(), value.clone());
            }
            "doNotCall" if value.is_boolean() => {
                contact.insert(key.clone(), value.clone());
            }
            "custom" => {
                let Some(custom) = value.as_object() else {
                    return Err(invalid("custom must be an object"));
                };
                let stored = contact
                    .entry("custom")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(stored) = stored {
                    for (name, value) in custom {
                        stored.insert(name.clone(), value.clone());
                    }
                }
            }
            other => return Err(invalid(&format!("unknown field {other}"))),
        }
    }
    contact.insert("updatedAt".to_owned(), json!(Utc::now().to_rfc3339()));
    Ok(status_changed)
}

fn upsert(book: &mut Book, fields: &Map<String, Value>) -> Reply {
    let phone = fields.get("phone").and_then(Value::as_str);
    let email = fields.get("email").and_then(Value::as_str);
    if phone.is_none() && email.is_none() {
        return invalid("a contact needs a phone or an email");
    }
    let by_phone = phone.and_then(|phone| {
        book.contacts
            .iter()
            .find(|(_, contact)| contact.get("phone").and_then(Value::as_str) == Some(phone))
            .map(|(id, _)| id.clone())
    });
    let existing = by_phone.or_else(|| {
        email.and_then(|email| {
            book.contacts
                .iter()
                .find(|(_, contact)| {
                    contact
                        .get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|stored| stored.eq_ignore_ascii_case(email))
                })
                .map(|(id, _)| id.clone())
        })
    });
    let (id, status) = match existing {
        Some(id) => (id, StatusCode::OK),
        None => {
            let id = book.id("c");
            let mut contact = Map::new();
            contact.insert("id".to_owned(), json!(id));
            contact.insert("tags".to_owned(), json!([]));
            contact.insert("custom".to_owned(), json!({}));
            contact.insert("doNotCall".to_owned(), json!(false));
            book.contacts.insert(id.clone(), contact);
            book.counters.contacts_created += 1;
            (id, StatusCode::CREATED)
        }
    };
    update_with(book, &id, fields, status)
}

fn update(book: &mut Book, id: &str, fields: &Map<String, Value>) -> Reply {
    if !book.contacts.contains_key(id) {
        return not_found();
    }
    update_with(book, id, fields, StatusCode::OK)
}

fn update_with(
    book: &mut Book,
    id: &str,
    fields: &Map<String, Value>,
    status: StatusCode,
) -> Reply {
    let Some(contact) = book.contacts.get_mut(id) else {
        return not_found();
    };
    let mut changed = contact.clone();
    match merge(&mut changed, fields) {
        Ok(status_changed) => {
            *contact = changed.clone();
            if status_changed {
                book.counters.status_changes += 1;
            }
            data(status, Value::Object(changed))
        }
        Err(reply) => reply,
    }
}

fn tags(book: &mut Book, id: &str, body: Option<&Map<String, Value>>, add: bool) -> Reply {
    let Some(wanted) = body
        .and_then(|body| body.get("tags"))
        .and_then(Value::as_array)
    else {
        return invalid("tags must be a list");
    };
    let Some(contact) = book.contacts.get_mut(id) else {
        return not_found();
    };
    let mut current: Vec<Value> = contact
        .get("tags")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for tag in wanted {
        if add && !current.contains(tag) {
            current.push(tag.clone());
        } else if !add {
            current.retain(|existing| existing != tag);
        }
    }
    contact.insert("tags".to_owned(), Value::Array(current));
    data(StatusCode::OK, Value::Object(contact.clone()))
}

fn add_note(book: &mut Book, id: &str, body: Option<&Map<String, Value>>) -> Reply {
    let Some(text) = body
        .and_then(|body| body.get("body"))
        .and_then(Value::as_str)
    else {
        return invalid("a note needs a body");
    };
    if !book.contacts.contains_key(id) {
        return not_found();
    }
    let note_id = book.id("n");
    let note = json!({
        "id": note_id,
        "title": body.and_then(|body| body.get("title")).cloned().unwrap_or(Value::Null),
        "body": text,
        "createdAt": Utc::now().to_rfc3339()
    });
    book.notes
        .entry(id.to_owned())
        .or_default()
        .push(note.clone());
    book.counters.notes_written += 1;
    data(StatusCode::CREATED, note)
}

fn deal(book: &mut Book, id: &str, pipeline: &str, body: Option<&Map<String, Value>>) -> Reply {
    let Some(body) = body else {
        return invalid("the body must be an object");
    };
    if !book.contacts.contains_key(id) {
        return not_found();
    }
    let key = (id.to_owned(), pipeline.to_owned());
    let existing = book.deals.get(&key).cloned();
    let deal_id = match existing.as_ref().and_then(|deal| deal.get("id")).cloned() {
        Some(deal_id) => deal_id,
        None => json!(book.id("d")),
    };
    let mut deal = existing.unwrap_or_else(|| json!({"id": deal_id, "pipeline": pipeline}));
    for field in ["stage", "status", "name"] {
        if let Some(value) = body.get(field).filter(|value| !value.is_null()) {
            deal[field] = value.clone();
        }
    }
    book.deals.insert(key, deal.clone());
    book.counters.deal_moves += 1;
    data(StatusCode::OK, deal)
}

fn log_call(book: &mut Book, id: &str, body: Option<&Map<String, Value>>) -> Reply {
    let Some(call_id) = body
        .and_then(|body| body.get("call_id"))
        .and_then(Value::as_str)
    else {
        return invalid("a call needs its call_id");
    };
    if !book.contacts.contains_key(id) {
        return not_found();
    }
    if let Some(logged) = book.calls.get(call_id) {
        return data(StatusCode::OK, json!({ "id": logged }));
    }
    let logged = book.id("k");
    book.calls.insert(call_id.to_owned(), logged.clone());
    book.counters.calls_logged += 1;
    data(StatusCode::CREATED, json!({ "id": logged }))
}
