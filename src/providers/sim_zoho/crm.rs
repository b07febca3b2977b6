//! Zoho CRM v8 records (`zoho-crm.records.json`, `.search.json`, `.notes.json`,
//! `.tags.json`): read, search (204 when empty), upsert, update, create, tags, related
//! notes. Writes answer per record inside `data[]`; a failing record makes the answer 202.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{Inner, OrgId, ZohoSimState, error, next_id};

const MODULES: &[&str] = &["Leads", "Contacts", "Deals", "Notes", "Calls"];

fn sim_user() -> Value {
    json!({"name": "Sam Owner", "id": "4876876000000330001", "email": "sam.owner@example.com"})
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Sets the system fields of a record Zoho maintains.
pub(super) fn stamp(record: &mut Map<String, Value>, created: bool) {
    let time = now();
    if created {
        record.insert("Created_Time".to_owned(), json!(time));
        record.insert("Created_By".to_owned(), sim_user());
        record.entry("Owner").or_insert_with(sim_user);
        record.entry("Tag").or_insert_with(|| json!([]));
    }
    record.insert("Modified_Time".to_owned(), json!(time));
    record.insert("Modified_By".to_owned(), sim_user());
}

fn invalid_module() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_MODULE",
        "The module name given seems to be invalid",
        json!({}),
    )
}

fn message_for(code: &str) -> &'static str {
    match code {
        "MANDATORY_NOT_FOUND" => "required field not found",
        "INTERNAL_ERROR" => "Internal server error occurred.",
        "INVALID_TOKEN" => "invalid oauth token",
        "DUPLICATE_DATA" => "duplicate data",
        _ => "invalid data",
    }
}

fn error_item(code: &str, details: Value) -> Value {
    let mut item = json!({"code": code, "message": message_for(code), "status": "error"});
    item["details"] = details;
    item
}

fn unknown_id(id: &str) -> Value {
    json!({"code": "INVALID_DATA", "details": {"id": id},
           "message": "the id given seems to be invalid", "status": "error"})
}

fn success_item(record: &Map<String, Value>, message: &str, action: Option<&str>) -> Value {
    let mut item = json!({
        "code": "SUCCESS",
        "details": {
            "Modified_Time": record["Modified_Time"], "Modified_By": sim_user(),
            "Created_Time": record["Created_Time"], "id": record["id"], "Created_By": sim_user()
        },
        "message": message,
        "status": "success"
    });
    if let Some(action) = action {
        item["action"] = json!(action);
    }
    item
}

/// One write's answer: 200/201 when every item succeeded, 202 otherwise.
fn write_answer(items: Vec<Value>, success: StatusCode) -> Response {
    let failed = items.iter().any(|item| item["status"] == "error");
    let status = if failed {
        StatusCode::ACCEPTED
    } else {
        success
    };
    let mut body = Map::new();
    body.insert("data".to_owned(), Value::Array(items));
    (status, Json(body)).into_response()
}

/// Checks a record about to be written; the error item when it fails.
fn check(
    inner: &mut Inner,
    module: &str,
    record: &Map<String, Value>,
    creating: bool,
) -> Option<Value> {
    if let Some(code) = inner.faults.record_errors.pop_front() {
        let details = match code.as_str() {
            "MANDATORY_NOT_FOUND" => json!({"api_name": "Last_Name"}),
            "INVALID_DATA" => json!({"api_name": "Email", "json_path": "$.data[0].Email"}),
            _ => json!({}),
        };
        return Some(error_item(&code, details));
    }
    let mandatory: &[&str] = match module {
        "Leads" | "Contacts" => &["Last_Name"],
        "Deals" => &["Deal_Name", "Stage"],
        "Calls" => &["Subject", "Call_Type", "Call_Start_Time"],
        "Notes" => &["Note_Content", "Parent_Id"],
        _ => &[],
    };
    for field in mandatory {
        let missing = match record.get(*field) {
            None | Some(Value::Null) => creating,
            Some(Value::String(text)) => text.trim().is_empty(),
            Some(_) => false,
        };
        if missing {
            return Some(error_item(
                "MANDATORY_NOT_FOUND",
                json!({"api_name": field}),
            ));
        }
    }
    if let Some(email) = record.get("Email")
        && !email.as_str().is_some_and(|email| email.contains('@'))
    {
        return Some(error_item(
            "INVALID_DATA",
            json!({"api_name": "Email", "json_path": "$.data[0].Email"}),
        ));
    }
    None
}

fn records_of<'a>(
    inner: &'a mut Inner,
    org: &str,
    module: &str,
) -> &'a mut Vec<Map<String, Value>> {
    inner
        .orgs
        .entry(org.to_owned())
        .or_default()
        .records
        .entry(module.to_owned())
        .or_default()
}

/// A refused request's answer, boxed (responses are large).
type Refusal = Box<Response>;

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "body",
            json!({}),
        ))),
    }
}

fn data_items(body: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, Refusal> {
    let Some(items) = body.get("data").and_then(Value::as_array) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "data"}),
        )));
    };
    let mut records = Vec::new();
    for item in items {
        let Some(record) = item.as_object() else {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "invalid data",
                json!({}),
            )));
        };
        records.push(record.clone());
    }
    Ok(records)
}

/// Merges `changes` into `record`, counting a status change.
fn merge(
    inner: &mut Inner,
    status_field: &str,
    record: &mut Map<String, Value>,
    changes: Map<String, Value>,
) {
    if let Some(status) = changes.get(status_field)
        && record.get(status_field) != Some(status)
    {
        inner.counters.status_changes += 1;
    }
    for (name, value) in changes {
        if name != "id" {
            record.insert(name, value);
        }
    }
    stamp(record, false);
    inner.counters.records_written += 1;
}

pub(super) async fn read(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path((module, id)): Path<(String, String)>,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    match state.record(&org, &module, &id) {
        Some(record) => Json(json!({"data": [record]})).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

pub(super) async fn update(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path((module, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    let body = match parse_body(&body).and_then(|body| data_items(&body)) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let status_field = state.config().status_field.clone();
    let mut inner = state.lock();
    let mut answers = Vec::new();
    for changes in body {
        if let Some(failure) = check(&mut inner, &module, &changes, false) {
            answers.push(failure);
            continue;
        }
        let position = records_of(&mut inner, &org, &module)
            .iter()
            .position(|record| record["id"] == id.as_str());
        let Some(position) = position else {
            answers.push(unknown_id(&id));
            continue;
        };
        let mut record = records_of(&mut inner, &org, &module)[position].clone();
        merge(&mut inner, &status_field, &mut record, changes);
        answers.push(success_item(&record, "record updated", None));
        records_of(&mut inner, &org, &module)[position] = record;
    }
    write_answer(answers, StatusCode::OK)
}

pub(super) async fn create(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path(module): Path<String>,
    body: Bytes,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    let items = match parse_body(&body).and_then(|body| data_items(&body)) {
        Ok(items) => items,
        Err(response) => return *response,
    };
    let mut inner = state.lock();
    let mut answers = Vec::new();
    for mut record in items {
        if let Some(failure) = check(&mut inner, &module, &record, true) {
            answers.push(failure);
            continue;
        }
        if module == "Notes" {
            // v8 shape only: `Parent_Id: {module: {api_name}, id}` naming an existing record.
            let parent = record.get("Parent_Id").cloned().unwrap_or_default();
            let (Some(parent_module), Some(parent_id)) = (
                parent.pointer("/module/api_name").and_then(Value::as_str),
                parent.get("id").and_then(Value::as_str),
            ) else {
                answers.push(error_item(
                    "INVALID_DATA",
                    json!({"api_name": "Parent_Id", "json_path": "$.data[0].Parent_Id"}),
                ));
                continue;
            };
            let exists = records_of(&mut inner, &org, parent_module)
                .iter()
                .any(|known| known["id"] == parent_id);
            if !exists {
                answers.push(unknown_id(parent_id));
                continue;
            }
            inner.counters.notes_written += 1;
        } else {
            inner.counters.records_written += 1;
        }
        if module == "Calls" {
            inner.counters.calls_logged += 1;
        }
        let id = next_id(&mut inner);
        record.insert("id".to_owned(), json!(id));
        stamp(&mut record, true);
        answers.push(success_item(&record, "record added", None));
        records_of(&mut inner, &org, &module).push(record);
    }
    write_answer(answers, StatusCode::CREATED)
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Zoho's textual phone match: the same digits, or one number ending with the other (a
/// national form against an international one).
fn same_phone(stored: &str, wanted: &str) -> bool {
    let (stored, wanted) = (digits(stored), digits(wanted));
    stored.len() >= 7
        && wanted.len() >= 7
        && (stored == wanted || stored.ends_with(&wanted) || wanted.ends_with(&stored))
}

fn field_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Object(object) => object
            .get("id")
            .or_else(|| object.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// Splits a criteria expression into conditions and its connector; `None` when unreadable.
/// `(field, operator, value)`.
type Condition = (String, String, String);

fn conditions(criteria: &str) -> Option<(Vec<Condition>, &'static str)> {
    let mut conditions = Vec::new();
    let mut connectors = Vec::new();
    let mut chars = criteria.trim().chars().peekable();
    let mut between = String::new();
    while let Some(c) = chars.next() {
        if c == '(' && chars.peek() != Some(&'(') {
            let mut condition = String::new();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, ')') => break,
                    (_, other) => {
                        condition.push(other);
                        escaped = false;
                    }
                }
            }
            let mut parts = condition.splitn(3, ':');
            let (field, operator, value) = (parts.next()?, parts.next()?, parts.next()?);
            conditions.push((field.to_owned(), operator.to_owned(), value.to_owned()));
            let connector = between
                .trim()
                .trim_matches(['(', ')'])
                .trim()
                .to_lowercase();
            if !connector.is_empty() {
                connectors.push(connector);
            }
            between.clear();
        } else if c != '(' && c != ')' {
            between.push(c);
        }
    }
    if conditions.is_empty() {
        return None;
    }
    let connector = match connectors.first().map(String::as_str) {
        None | Some("or") if connectors.iter().all(|c| c == "or") => "or",
        Some("and") if connectors.iter().all(|c| c == "and") => "and",
        _ => return None,
    };
    Some((conditions, connector))
}

fn condition_holds(record: &Map<String, Value>, (field, operator, value): &Condition) -> bool {
    let Some(stored) = field_text(record.get(field)) else {
        return false;
    };
    if matches!(field.as_str(), "Phone" | "Mobile") {
        return operator == "equals" && same_phone(&stored, value);
    }
    let (stored, value) = (stored.to_lowercase(), value.to_lowercase());
    match operator.as_str() {
        "equals" => stored == value,
        "starts_with" => stored.starts_with(&value),
        _ => false,
    }
}

pub(super) async fn search(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path(module): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    let records = state.records(&org, &module);
    let found: Vec<&Map<String, Value>> = if let Some(phone) = query.get("phone") {
        records
            .iter()
            .filter(|record| {
                ["Phone", "Mobile"].iter().any(|field| {
                    field_text(record.get(*field)).is_some_and(|stored| same_phone(&stored, phone))
                })
            })
            .collect()
    } else if let Some(email) = query.get("email") {
        records
            .iter()
            .filter(|record| {
                field_text(record.get("Email"))
                    .is_some_and(|stored| stored.eq_ignore_ascii_case(email))
            })
            .collect()
    } else if let Some(criteria) = query.get("criteria") {
        let Some((conditions, connector)) = conditions(criteria) else {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "invalid query formed",
                json!({}),
            );
        };
        records
            .iter()
            .filter(|record| {
                let mut holds = conditions
                    .iter()
                    .map(|condition| condition_holds(record, condition));
                if connector == "and" {
                    holds.all(|holds| holds)
                } else {
                    holds.any(|holds| holds)
                }
            })
            .collect()
    } else if let Some(word) = query.get("word") {
        let word = word.to_lowercase();
        records
            .iter()
            .filter(|record| {
                record.values().any(|value| {
                    value
                        .as_str()
                        .is_some_and(|text| text.to_lowercase().contains(&word))
                })
            })
            .collect()
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "criteria"}),
        );
    };
    if found.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let count = found.len();
    Json(json!({
        "data": found,
        "info": {"per_page": 200, "count": count, "page": 1, "more_records": false}
    }))
    .into_response()
}

pub(super) async fn upsert(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path(module): Path<String>,
    body: Bytes,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    let (body, items) =
        match parse_body(&body).and_then(|body| data_items(&body).map(|items| (body, items))) {
            Ok(parsed) => parsed,
            Err(response) => return *response,
        };
    let check_fields: Vec<String> = body
        .get("duplicate_check_fields")
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["Email".to_owned()]);
    let status_field = state.config().status_field.clone();
    let mut inner = state.lock();
    let mut answers = Vec::new();
    let mut any_insert = false;
    for record in items {
        let existing = check_fields.iter().find_map(|field| {
            let wanted = field_text(record.get(field))?;
            let position = records_of(&mut inner, &org, &module)
                .iter()
                .position(|known| {
                    field_text(known.get(field)).is_some_and(|stored| {
                        if matches!(field.as_str(), "Phone" | "Mobile") {
                            same_phone(&stored, &wanted)
                        } else {
                            stored.eq_ignore_ascii_case(&wanted)
                        }
                    })
                })?;
            Some((field.clone(), position))
        });
        if let Some(failure) = check(&mut inner, &module, &record, existing.is_none()) {
            answers.push(failure);
            continue;
        }
        match existing {
            Some((field, position)) => {
                let mut known = records_of(&mut inner, &org, &module)[position].clone();
                merge(&mut inner, &status_field, &mut known, record);
                let mut item = success_item(&known, "record updated", Some("update"));
                item["duplicate_field"] = json!(field);
                answers.push(item);
                records_of(&mut inner, &org, &module)[position] = known;
            }
            None => {
                let mut created = record;
                let id = next_id(&mut inner);
                created.insert("id".to_owned(), json!(id));
                stamp(&mut created, true);
                if created
                    .get(&status_field)
                    .is_some_and(|status| !status.is_null())
                {
                    inner.counters.status_changes += 1;
                }
                inner.counters.records_written += 1;
                answers.push(success_item(&created, "record added", Some("insert")));
                records_of(&mut inner, &org, &module).push(created);
                any_insert = true;
            }
        }
    }
    write_answer(
        answers,
        if any_insert {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
    )
}

pub(super) async fn tags(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path((module, id, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if !MODULES.contains(&module.as_str()) {
        return invalid_module();
    }
    if action != "add_tags" && action != "remove_tags" {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        );
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let names: Option<Vec<String>> = body.get("tags").and_then(Value::as_array).map(|tags| {
        tags.iter()
            .filter_map(|tag| tag.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    });
    let Some(names) = names.filter(|names| !names.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "tags"}),
        );
    };
    if names.iter().any(|name| name.chars().count() > 25) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"data": [error_item("INVALID_DATA", json!({"api_name": "name"}))]})),
        )
            .into_response();
    }
    let mut inner = state.lock();
    let position = records_of(&mut inner, &org, &module)
        .iter()
        .position(|record| record["id"] == id.as_str());
    let Some(position) = position else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"data": [unknown_id(&id)]})),
        )
            .into_response();
    };
    let mut record = records_of(&mut inner, &org, &module)[position].clone();
    let mut tags: Vec<Value> = record
        .get("Tag")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for name in &names {
        let present = tags.iter().any(|tag| tag["name"] == name.as_str());
        if action == "add_tags" && !present {
            let tag_id = next_id(&mut inner);
            let time = now();
            tags.push(json!({
                "name": name, "id": tag_id, "color_code": "#57B1FD",
                "created_time": time, "modified_time": time,
                "created_by": sim_user(), "modified_by": sim_user()
            }));
        } else if action == "remove_tags" {
            tags.retain(|tag| tag["name"] != name.as_str());
        }
    }
    let summary: Vec<Value> = tags
        .iter()
        .map(|tag| json!({"id": tag["id"], "name": tag["name"], "color_code": tag["color_code"]}))
        .collect();
    record.insert("Tag".to_owned(), Value::Array(tags));
    stamp(&mut record, false);
    records_of(&mut inner, &org, &module)[position] = record;
    let message = if action == "add_tags" {
        "tags updated successfully"
    } else {
        "tags removed successfully"
    };
    Json(json!({
        "data": [{"code": "SUCCESS", "details": {"id": id, "tags": summary},
                  "message": message, "status": "success"}],
        "wf_scheduler": false, "success_count": "1", "locked_count": "0"
    }))
    .into_response()
}

pub(super) async fn related(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path((module, id, related)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !MODULES.contains(&module.as_str()) || related != "Notes" {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        );
    }
    if !query.contains_key("fields") {
        return error(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "fields"}),
        );
    }
    if state.record(&org, &module, &id).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "the id given seems to be invalid",
            json!({"id": id}),
        );
    }
    let mut notes: Vec<Map<String, Value>> = state
        .records(&org, "Notes")
        .into_iter()
        .filter(|note| {
            note.get("Parent_Id")
                .and_then(|parent| parent.get("id"))
                .and_then(Value::as_str)
                == Some(id.as_str())
        })
        .collect();
    if notes.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    notes.reverse(); // newest first
    let count = notes.len();
    Json(json!({
        "data": notes,
        "info": {"per_page": 200, "count": count, "page": 1, "more_records": false}
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_conditions_with_escapes_and_connectors() {
        let (parsed, connector) =
            conditions("((Phone:equals:+15125550142)or(Mobile:equals:+15125550142))").unwrap();
        assert_eq!(connector, "or");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0, "Mobile");
        let (parsed, _) = conditions(r"(Subject:equals:a\(b\)\,c)").unwrap();
        assert_eq!(parsed[0].2, "a(b),c");
        assert!(conditions("Phone").is_none());
        assert!(conditions("((A:equals:1)or(B:equals:2)and(C:equals:3))").is_none());
    }

    #[test]
    fn phones_match_textually_across_formats() {
        assert!(same_phone("+1 512-555-0142", "+15125550142"));
        assert!(same_phone("5125550142", "+15125550142"));
        assert!(!same_phone("+15125550143", "+15125550142"));
        assert!(!same_phone("42", "42"));
    }
}
