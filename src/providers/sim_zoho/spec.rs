//! Checks what the simulator recorded against Zoho's official CRM v8 specs
//! (`schemas/vendor/zoho-crm.{records,search,notes,tags}.json`): every CRM request's query
//! parameters and JSON body against its operation, every JSON answer against the declared
//! response. Zoho Bookings has no official spec, so its requests are listed as uncovered,
//! as is the related-notes read (`GET /crm/v8/{module}/{id}/Notes`: upstream's
//! `related_records.json` was not brought in).
//!
//! How the specs are read, each choice a NOTE because it is ours, not Zoho's:
//! - The operation is the one whose path template matches with the most literal segments;
//!   ties (`/{module}/search` is in two files) are all checked.
//! - An answer whose status is not declared: a 2xx is checked against the declared `200`
//!   (Zoho answers 201 for inserts and 202 for partial failures where the files declare only
//!   200); 204 has no body to check; other statuses (401, 429, 5xx) are not in the files and
//!   are counted as unchecked.
//! - A top-level `oneOf` whose branches have no required properties matches many answers
//!   (any object matches `API_Exception`); the answer must validate against a branch that
//!   declares at least one of its top-level keys (`{"data": …}` is not checked as an error).
//! - Request schemas that reuse response schemas are patched in memory ([`PATCHES`]).

use serde_json::{Value, json};

use super::Recorded;
use crate::schema_check::{validate_at, vendor_schema};

/// The spec files, by name.
const FILES: &[&str] = &[
    "zoho-crm.records.json",
    "zoho-crm.search.json",
    "zoho-crm.notes.json",
    "zoho-crm.tags.json",
];

/// In-memory corrections of request schemas: (file, pointer, replacement, why).
pub const PATCHES: &[(&str, &str, &str, &str)] = &[
    (
        "zoho-crm.tags.json",
        "/components/schemas/New_Tag_Request_Wrapper/required",
        r#"["tags"]"#,
        "the record-level add_tags takes the record in its path, not `ids`, and `over_write` is optional",
    ),
    (
        "zoho-crm.tags.json",
        "/components/schemas/New_Tag_Request_Wrapper/properties/tags/items",
        r##"{"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 25},
            "color_code": {"type": "string", "nullable": true},
            "id": {"type": "string", "nullable": true}}}"##,
        "upstream reuses the response `Tag`, whose server-set timestamps and users are required",
    ),
    (
        "zoho-crm.tags.json",
        "/components/schemas/Existing_Tag_Request_Wrapper/required",
        r#"["tags"]"#,
        "the record-level remove_tags takes the record in its path, not `ids`",
    ),
    (
        "zoho-crm.tags.json",
        "/components/schemas/Existing_Tag/required",
        r#"["name"]"#,
        "a tag is named by `name` or `id`; upstream requires `id` even beside a name",
    ),
    (
        "zoho-crm.notes.json",
        "/components/schemas/Note/required",
        r#"["Note_Content", "Parent_Id"]"#,
        "upstream reuses the response `Note` for creation, requiring server-set fields (`id`, times, owner)",
    ),
    (
        "zoho-crm.notes.json",
        "/components/schemas/Parent_Id/properties/module",
        r#"{"type": "object", "required": ["api_name"], "properties": {"api_name": {"type": "string"}}}"#,
        "a note's parent module is named by `api_name`; upstream also requires the module's `id`",
    ),
];

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct SpecReport {
    /// Requests matched to an operation and checked.
    pub checked: usize,
    /// `METHOD path` of requests no spec file describes.
    pub uncovered: Vec<String>,
    /// Answers whose status no spec file declares (`METHOD path → status`).
    pub unchecked_answers: Vec<String>,
    /// Every violation, naming the request.
    pub violations: Vec<String>,
}

/// Loads the spec files with [`PATCHES`] applied.
#[must_use]
pub fn specs() -> Vec<(&'static str, Value)> {
    FILES
        .iter()
        .map(|&file| {
            let mut spec = vendor_schema(file);
            for (patched, pointer, replacement, _) in PATCHES {
                if *patched == file
                    && let Some(target) = spec.pointer_mut(pointer)
                {
                    *target = serde_json::from_str(replacement).unwrap_or(Value::Null);
                }
            }
            (file, spec)
        })
        .collect()
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The operations matching `method path`: (spec index, template), most literal first.
fn operations<'a>(specs: &'a [(&str, Value)], method: &str, path: &str) -> Vec<(usize, &'a str)> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    for (index, (_, spec)) in specs.iter().enumerate() {
        let Some(paths) = spec.get("paths").and_then(Value::as_object) else {
            continue;
        };
        for (template, operations) in paths {
            if operations.get(method).is_none() {
                continue;
            }
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let matches = parts.iter().zip(&segments).all(|(part, segment)| {
                if part.starts_with('{') {
                    !segment.is_empty()
                } else {
                    literals += 1;
                    part == segment
                }
            });
            if matches {
                found.push((literals, index, template));
            }
        }
    }
    let best = found.iter().map(|(literals, ..)| *literals).max();
    found
        .into_iter()
        .filter(|(literals, ..)| Some(*literals) == best)
        .map(|(_, index, template)| (index, template))
        .collect()
}

/// Resolves a local `$ref` chain.
fn resolve<'a>(spec: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(pointer) = schema.get("$ref").and_then(Value::as_str) {
        match spec.pointer(pointer.trim_start_matches('#')) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

fn check_query(
    spec: &Value,
    operation: &Value,
    request: &Recorded,
    name: &str,
    violations: &mut Vec<String>,
) {
    let declared: Vec<&Value> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|parameter| resolve(spec, parameter))
        .filter(|parameter| parameter["in"] == "query")
        .collect();
    for (key, value) in request.query_pairs() {
        let Some(parameter) = declared
            .iter()
            .find(|parameter| parameter["name"] == key.as_str())
        else {
            violations.push(format!("{name}: query parameter `{key}` is not declared"));
            continue;
        };
        if parameter["schema"]["type"] == "integer" && value.parse::<i64>().is_err() {
            violations.push(format!("{name}: query parameter `{key}` is not an integer"));
        }
    }
}

fn check_answer(spec: &Value, base: &str, request: &Recorded, name: &str, report: &mut SpecReport) {
    if request.status == 204 {
        return; // no body to check (Zoho's empty search and missing record)
    }
    let Some(answer) = &request.response else {
        return;
    };
    let responses = spec.pointer(&format!("{}/responses", base.trim_start_matches('#')));
    let status = request.status.to_string();
    let key = match responses {
        Some(responses) if responses.get(&status).is_some() => status,
        Some(responses)
            if (200..300).contains(&request.status) && responses.get("200").is_some() =>
        {
            "200".to_owned()
        }
        _ => {
            report.unchecked_answers.push(format!(
                "{} {} → {}",
                request.method, request.path, request.status
            ));
            return;
        }
    };
    let pointer = format!("{base}/responses/{key}/content/application~1json/schema");
    let Some(schema) = spec.pointer(pointer.trim_start_matches('#')) else {
        return;
    };
    let branches: Vec<String> = match schema.get("oneOf").and_then(Value::as_array) {
        Some(branches) => (0..branches.len())
            .filter(|&index| {
                let branch = resolve(spec, &branches[index]);
                let declared = branch.get("properties").and_then(Value::as_object);
                answer.as_object().is_some_and(|object| {
                    object
                        .keys()
                        .any(|key| declared.is_some_and(|declared| declared.contains_key(key)))
                })
            })
            .map(|index| format!("{pointer}/oneOf/{index}"))
            .collect(),
        None => vec![pointer.clone()],
    };
    let mut failures = Vec::new();
    for branch in &branches {
        match validate_at(spec, branch, answer) {
            Ok(()) => return,
            Err(errors) => failures.extend(errors),
        }
    }
    report.violations.push(format!(
        "{name}: answer {} matches no declared response: {}",
        request.status,
        if branches.is_empty() {
            "no branch declares any of its keys".to_owned()
        } else {
            failures.join("; ")
        }
    ));
}

/// Checks every recorded request to Zoho CRM (and lists the others as uncovered).
#[must_use]
pub fn check(recorded: &[Recorded]) -> SpecReport {
    let specs = specs();
    let mut report = SpecReport::default();
    for request in recorded {
        if request.path.starts_with("/oauth/") {
            continue; // the accounts server has no spec (shared/specs/README.md)
        }
        let method = request.method.to_lowercase();
        let matched = operations(&specs, &method, &request.path);
        if matched.is_empty() {
            report
                .uncovered
                .push(format!("{} {}", request.method, request.path));
            continue;
        }
        report.checked += 1;
        for (index, template) in matched {
            let (file, spec) = &specs[index];
            let name = format!("{} {} ({file} {template})", request.method, request.path);
            let base = format!("#/paths/{}/{method}", escape(template));
            let Some(operation) = spec.pointer(base.trim_start_matches('#')) else {
                continue;
            };
            check_query(spec, operation, request, &name, &mut report.violations);
            let body_pointer = format!("{base}/requestBody/content/application~1json/schema");
            match (
                &request.body,
                spec.pointer(body_pointer.trim_start_matches('#')),
            ) {
                (Some(body), Some(_)) => {
                    if let Err(errors) = validate_at(spec, &body_pointer, body) {
                        report
                            .violations
                            .push(format!("{name}: request body: {}", errors.join("; ")));
                    }
                }
                (None, Some(_))
                    if operation.pointer("/requestBody/required") == Some(&json!(true)) =>
                {
                    report
                        .violations
                        .push(format!("{name}: the request body is missing"));
                }
                (Some(_), None) => report
                    .violations
                    .push(format!("{name}: a body where the operation takes none")),
                _ => {}
            }
            check_answer(spec, &base, request, &name, &mut report);
        }
    }
    report
}
