//! Test-only: checking what the simulator recorded against HighLevel's official OpenAPI files
//! (`schemas/vendor/ghl.*.json`). Each request is matched to its operation by method and path
//! template; then its `Version` header, query parameters (typed by the spec: numbers, booleans;
//! an undeclared parameter is an error, which catches a camelCase key where the spec has
//! snake_case), JSON or form body, and the simulator's answer are validated with
//! [`crate::schema_check`].
//!
//! Answers with a status the operation does not document (404 for an unknown record, 429,
//! 5xx) have no schema to check and are skipped. The free-slots answer's `traceId` sibling
//! is removed before checking: HighLevel sends it, its spec does not describe it.

use serde_json::Value;

use super::SimRequest;
use crate::schema_check::{validate_at, vendor_schema};

/// The spec files of the operations the simulator serves.
pub const SPEC_FILES: &[&str] = &[
    "ghl.contacts.json",
    "ghl.calendars.json",
    "ghl.opportunities.json",
    "ghl.oauth.json",
    "ghl.conversations.json",
    "ghl.custom-fields.json",
    "ghl.locations.subset.json",
];

/// HighLevel's specs, loaded once per test.
pub struct GoHighLevelSpecs {
    documents: Vec<(&'static str, Value)>,
}

/// An operation found for a request: its document, the JSON pointer of the operation, and
/// the operation object.
struct Operation<'a> {
    document: &'a Value,
    pointer: String,
    operation: &'a Value,
}

impl GoHighLevelSpecs {
    /// Reads [`SPEC_FILES`] from `schemas/vendor/`.
    ///
    /// # Panics
    ///
    /// Panics if a file is missing or not JSON (a broken checkout).
    #[must_use]
    pub fn load() -> Self {
        Self {
            documents: SPEC_FILES
                .iter()
                .map(|name| (*name, vendor_schema(name)))
                .collect(),
        }
    }

    /// Checks one recorded request and its answer; returns every violation, each prefixed
    /// with the request's method and path.
    pub fn check(&self, request: &SimRequest) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let what = format!("{} {}", request.method, request.path);
        let Some(found) = self.operation(&request.method, &request.path) else {
            return Err(vec![format!("{what}: no such operation in the specs")]);
        };
        Self::check_parameters(&found, request, &mut errors);
        if let Some(body) = &request.body {
            let content = found.operation.pointer("/requestBody/content");
            match content.and_then(|content| body_media(content, request)) {
                Some(media) => {
                    let pointer = format!(
                        "{}/requestBody/content/{}/schema",
                        found.pointer,
                        escape(media)
                    );
                    if let Err(found_errors) = validate_at(found.document, &pointer, body) {
                        errors.extend(found_errors.into_iter().map(|e| format!("request {e}")));
                    }
                }
                None => errors.push("a body the operation does not take".to_owned()),
            }
        } else if found
            .operation
            .pointer("/requestBody/required")
            .and_then(Value::as_bool)
            == Some(true)
        {
            errors.push("the required body is missing".to_owned());
        }
        let status = request.status.to_string();
        let documented = found
            .operation
            .pointer(&format!(
                "/responses/{status}/content/application~1json/schema"
            ))
            .is_some();
        if let (true, Some(response)) = (documented, &request.response) {
            let mut response = response.clone();
            if request.path.ends_with("/free-slots")
                && let Some(days) = response.as_object_mut()
            {
                days.remove("traceId");
            }
            let pointer = format!(
                "{}/responses/{status}/content/application~1json/schema",
                found.pointer
            );
            if let Err(found_errors) = validate_at(found.document, &pointer, &response) {
                errors.extend(found_errors.into_iter().map(|e| format!("response {e}")));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors
                .into_iter()
                .map(|error| format!("{what}: {error}"))
                .collect())
        }
    }

    /// Checks every request; returns every violation of all of them.
    pub fn check_all(&self, requests: &[SimRequest]) -> Vec<String> {
        requests
            .iter()
            .filter_map(|request| self.check(request).err())
            .flatten()
            .collect()
    }

    /// Finds the operation of `method` on `path`: the template with the most literal
    /// segments among those that match.
    fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let method = method.to_lowercase();
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, Operation<'_>)> = None;
        for (_, document) in &self.documents {
            let Some(paths) = document.get("paths").and_then(Value::as_object) else {
                continue;
            };
            for (template, item) in paths {
                let Some(operation) = item.get(&method) else {
                    continue;
                };
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    continue;
                }
                let mut literal = 0;
                let matches = parts.iter().zip(&segments).all(|(part, segment)| {
                    if part.starts_with('{') && part.ends_with('}') {
                        !segment.is_empty()
                    } else {
                        literal += 1;
                        part == segment
                    }
                });
                if matches && best.as_ref().is_none_or(|(score, _)| literal > *score) {
                    best = Some((
                        literal,
                        Operation {
                            document,
                            pointer: format!("#/paths/{}/{method}", escape(template)),
                            operation,
                        },
                    ));
                }
            }
        }
        best.map(|(_, operation)| operation)
    }

    /// Checks the header and query parameters the operation declares.
    fn check_parameters(found: &Operation<'_>, request: &SimRequest, errors: &mut Vec<String>) {
        let declared = found
            .operation
            .get("parameters")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut query_names = Vec::new();
        for (index, declared_parameter) in declared.iter().enumerate() {
            // A parameter may be a `$ref` to `components/parameters`: its schema is there.
            let schema_pointer = match declared_parameter.get("$ref").and_then(Value::as_str) {
                Some(reference) => format!("{reference}/schema"),
                None => format!("{}/parameters/{index}/schema", found.pointer),
            };
            let parameter = resolve(found.document, declared_parameter);
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
            let place = parameter.get("in").and_then(Value::as_str).unwrap_or("");
            let required = parameter.get("required").and_then(Value::as_bool) == Some(true);
            let value = match place {
                "header" => request.headers.get(&name.to_lowercase()).cloned(),
                "query" => {
                    query_names.push(name);
                    request
                        .query
                        .iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.clone())
                }
                _ => continue,
            };
            let Some(value) = value else {
                if required {
                    errors.push(format!("missing required {place} parameter `{name}`"));
                }
                continue;
            };
            let Some(schema) = parameter.get("schema") else {
                continue;
            };
            let typed = typed(found.document, schema, &value);
            if let Err(found_errors) = validate_at(found.document, &schema_pointer, &typed) {
                errors.extend(
                    found_errors
                        .into_iter()
                        .map(|e| format!("{place} `{name}` {e}")),
                );
            }
        }
        for (key, _) in &request.query {
            if !query_names.contains(&key.as_str()) {
                errors.push(format!("query parameter `{key}` is not in the spec"));
            }
        }
    }
}

/// The media type of the body the request sent, among those the operation takes.
fn body_media<'a>(content: &'a Value, request: &SimRequest) -> Option<&'a str> {
    let sent = request
        .headers
        .get("content-type")
        .map_or("application/json", String::as_str);
    content
        .as_object()?
        .keys()
        .find(|media| sent.starts_with(media.as_str()))
        .map(String::as_str)
}

/// Reads a query or header text as the schema's type (numbers and booleans are typed in the
/// spec, but travel as text).
fn typed(document: &Value, schema: &Value, text: &str) -> Value {
    let schema = resolve(document, schema);
    match schema.get("type").and_then(Value::as_str) {
        Some("number" | "integer") => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.to_owned()), Value::Number),
        Some("boolean") => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        Some("array") => Value::Array(vec![Value::String(text.to_owned())]),
        _ => Value::String(text.to_owned()),
    }
}

/// Follows a local `$ref`.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| document.pointer(pointer))
    {
        Some(target) => resolve(document, target),
        None => value,
    }
}

/// Escapes a JSON pointer token (`~` → `~0`, `/` → `~1`).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn request(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> SimRequest {
        SimRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            headers: BTreeMap::from([
                ("version".to_owned(), "2021-07-28".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]),
            body,
            status: 200,
            response: None,
        }
    }

    #[test]
    fn snake_case_keys_and_custom_field_shapes_are_checked() {
        let specs = GoHighLevelSpecs::load();
        let good = request(
            "GET",
            "/opportunities/search",
            &[("location_id", "loc"), ("contact_id", "c")],
            None,
        );
        assert_eq!(specs.check(&good), Ok(()));
        let camel = request(
            "GET",
            "/opportunities/search",
            &[("locationId", "loc")],
            None,
        );
        let errors = specs.check(&camel).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`locationId` is not in the spec")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("`location_id`")),
            "{errors:?}"
        );

        let update = |entry: Value| {
            request(
                "PUT",
                "/contacts/abc",
                &[],
                Some(serde_json::json!({"customFields": [entry]})),
            )
        };
        let written = update(serde_json::json!({"id": "f1", "field_value": "x"}));
        assert_eq!(specs.check(&written), Ok(()));
        let numeric = update(serde_json::json!({"id": "f1", "field_value": 42}));
        assert!(
            specs.check(&numeric).is_err(),
            "a bare number is no field_value type"
        );
    }

    #[test]
    fn wrong_version_headers_are_reported() {
        let specs = GoHighLevelSpecs::load();
        let mut slots = request(
            "GET",
            "/calendars/cal/free-slots",
            &[("startDate", "1700000000000"), ("endDate", "1700600000000")],
            None,
        );
        let errors = specs.check(&slots).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("header `Version`")),
            "{errors:?}"
        );
        slots
            .headers
            .insert("version".to_owned(), "2021-04-15".to_owned());
        assert_eq!(specs.check(&slots), Ok(()));
    }

    #[test]
    fn answers_are_checked_against_the_documented_status() {
        let specs = GoHighLevelSpecs::load();
        let mut read = request("GET", "/contacts/abc", &[], None);
        read.response = Some(serde_json::json!({"contact": {"id": "abc", "tags": "x"}}));
        assert!(specs.check(&read).is_err(), "tags must be a list");
        read.status = 404;
        assert_eq!(
            specs.check(&read),
            Ok(()),
            "an undocumented status is skipped"
        );
    }
}
