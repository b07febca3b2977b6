//! `providers.custom.crm` (and the operator-only `providers.custom.base_url`): how a tenant's
//! own REST CRM is reached, read and written, checked when read. Every error names the field
//! (`providers.custom.crm.endpoints.get_contact`).
//!
//! `base_url` sits beside `crm`, not in it, because `providers.<name>.base_url` is what the
//! tenancy service already reserves for operators: a tenant cannot aim our requests, with its
//! credentials, at an address of its choosing.
//!
//! ```json
//! "custom": {
//!   "base_url": "https://crm.example.com/api",
//!   "crm": {
//!   "auth": {"kind": "bearer"},
//!   "endpoints": {"get_contact": "GET /contacts/{id}", "find_contact": "GET /contacts?phone={phone}&email={email}"},
//!   "fields": {"first_name": "/firstName", "custom_fields": {"service": "/custom/service"}},
//!   "notes": {"title": "/subject"},
//!   "envelopes": {"contact": "/data", "contacts": "/data"}
//!   }
//! }
//! ```
//!
//! Field values are JSON pointers (RFC 6901), the vocabulary of the custom webhook's
//! `providers.custom.field_mapping`; envelopes may be `""` (the whole body).

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::{Map, Value};

use crate::tenancy::FieldError;

/// Where the configuration lives, for error messages.
pub const PATH: &str = "providers.custom.crm";
/// Where the operator sets the CRM's API URL.
pub const BASE_URL_PATH: &str = "providers.custom.base_url";

/// One operation of the [`crate::crm::Crm`] contract, by its endpoint key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Reads one contact; placeholder `{id}` (required).
    GetContact,
    /// Finds contacts by `{phone}` and/or `{email}`.
    FindContact,
    /// Creates or merges a contact (by phone or e-mail); answers it.
    UpsertContact,
    /// Changes a contact's fields; `{id}`.
    UpdateContact,
    /// Adds tags; `{id}`.
    AddTags,
    /// Removes tags; `{id}`.
    RemoveTags,
    /// Adds a note; `{id}`.
    AddNote,
    /// Lists a contact's notes; `{id}`.
    ListNotes,
    /// Moves a contact's deal; `{id}`, `{pipeline}`, `{stage}`.
    MoveStage,
    /// Records a call; `{id}`.
    LogCall,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 10] = [
        Self::GetContact,
        Self::FindContact,
        Self::UpsertContact,
        Self::UpdateContact,
        Self::AddTags,
        Self::RemoveTags,
        Self::AddNote,
        Self::ListNotes,
        Self::MoveStage,
        Self::LogCall,
    ];

    /// Returns the endpoint key (`get_contact`).
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::GetContact => "get_contact",
            Self::FindContact => "find_contact",
            Self::UpsertContact => "upsert_contact",
            Self::UpdateContact => "update_contact",
            Self::AddTags => "add_tags",
            Self::RemoveTags => "remove_tags",
            Self::AddNote => "add_note",
            Self::ListNotes => "list_notes",
            Self::MoveStage => "move_stage",
            Self::LogCall => "log_call",
        }
    }

    /// The placeholders its template may use, and which of them it must.
    const fn placeholders(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::FindContact => (&["phone", "email"], &[]),
            Self::UpsertContact => (&[], &[]),
            Self::MoveStage => (&["id", "pipeline", "stage"], &["id"]),
            _ => (&["id"], &["id"]),
        }
    }
}

/// A method and a path template (`PATCH /contacts/{id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path, maybe with a query, relative to `base_url`; `{name}` placeholders.
    pub template: String,
}

/// How requests authenticate, with the credential each kind reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <custom.api_key>`.
    Bearer,
    /// HTTP Basic with `username` and `custom.password`.
    Basic {
        /// The user name.
        username: String,
    },
    /// `<header>: <custom.api_key>`.
    Header {
        /// The header's name.
        header: HeaderName,
    },
    /// HMAC-SHA256 over `<timestamp>.<body>` with `custom.hmac_secret`, hex, in headers.
    Hmac {
        /// Where the Unix timestamp (seconds) goes.
        timestamp_header: HeaderName,
        /// Where the signature goes.
        signature_header: HeaderName,
    },
}

/// Where a contact's fields are in the CRM's JSON (pointers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactFields {
    /// The CRM's id (a string or a number).
    pub id: String,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Lead status.
    pub status: Option<String>,
    /// Tags: an array of strings (a comma-separated string is read too).
    pub tags: Option<String>,
    /// A boolean "do not call".
    pub do_not_call: Option<String>,
    /// Custom fields by our key.
    pub custom_fields: BTreeMap<String, String>,
    /// An object holding the custom fields not named in `custom_fields`, by their key.
    pub custom_fields_object: Option<String>,
}

/// Where a note's fields are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteFields {
    /// The CRM's id.
    pub id: String,
    /// The title, when the CRM has one (else it starts the body).
    pub title: Option<String>,
    /// The text.
    pub body: String,
}

/// Where the payload sits in an answer (`""`: the whole body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelopes {
    /// One contact.
    pub contact: String,
    /// A list of contacts (or one contact) answering `find_contact`.
    pub contacts: String,
    /// One note.
    pub note: String,
    /// A list of notes.
    pub notes: String,
    /// The id of a logged call.
    pub call_id: String,
}

/// A checked `providers.custom.crm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomCrmConfig {
    /// Where the CRM's API is (no trailing `/`).
    pub base_url: String,
    /// How requests authenticate.
    pub auth: Auth,
    /// The endpoints the CRM has.
    pub endpoints: BTreeMap<Operation, Endpoint>,
    /// Contact fields.
    pub fields: ContactFields,
    /// Note fields.
    pub notes: NoteFields,
    /// Answer envelopes.
    pub envelopes: Envelopes,
}

impl CustomCrmConfig {
    /// Checks `custom` (the JSON under `providers.custom`): its `base_url` and `crm`.
    ///
    /// # Errors
    ///
    /// Every problem found, each naming its field.
    pub fn parse(custom: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(object) = custom.get("crm").and_then(Value::as_object) else {
            return Err(vec![FieldError::new(
                PATH,
                "is required: an object describing the CRM's endpoints and authentication",
            )]);
        };
        if object.contains_key("base_url") {
            errors.push(FieldError::new(
                at("base_url"),
                format!("belongs in `{BASE_URL_PATH}`, which only an operator may set"),
            ));
        }
        unknown_keys(
            object,
            PATH,
            &[
                "base_url",
                "auth",
                "endpoints",
                "fields",
                "notes",
                "envelopes",
            ],
            &mut errors,
        );
        let base_url = base_url(custom.get("base_url"), &mut errors);
        let auth = auth(object.get("auth"), &mut errors);
        let endpoints = endpoints(object.get("endpoints"), &mut errors);
        let fields = contact_fields(object.get("fields"), &mut errors);
        let notes = note_fields(object.get("notes"), &mut errors);
        let envelopes = envelopes(object.get("envelopes"), &mut errors);
        match (base_url, auth) {
            (Some(base_url), Some(auth)) if errors.is_empty() => Ok(Self {
                base_url,
                auth,
                endpoints,
                fields,
                notes,
                envelopes,
            }),
            _ => Err(errors),
        }
    }

    /// Returns the endpoint of `operation`, if the CRM has one.
    #[must_use]
    pub fn endpoint(&self, operation: Operation) -> Option<&Endpoint> {
        self.endpoints.get(&operation)
    }
}

fn at(field: &str) -> String {
    format!("{PATH}.{field}")
}

fn unknown_keys(
    object: &Map<String, Value>,
    path: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.{key}"),
                format!("unknown key; expected one of {}", known.join(", ")),
            ));
        }
    }
}

fn base_url(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let field = BASE_URL_PATH;
    let Some(text) = value.and_then(Value::as_str) else {
        errors.push(FieldError::new(
            field,
            "is required: the CRM's API URL (set by an operator)",
        ));
        return None;
    };
    let usable = reqwest::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.has_host()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
    });
    if !usable {
        errors.push(FieldError::new(
            field,
            "must be an http(s) URL without credentials, query or fragment",
        ));
        return None;
    }
    Some(text.trim_end_matches('/').to_owned())
}

fn header_name(
    value: Option<&Value>,
    field: &str,
    default: &str,
    errors: &mut Vec<FieldError>,
) -> Option<HeaderName> {
    let text = match value {
        None => default,
        Some(Value::String(text)) => text,
        Some(_) => {
            errors.push(FieldError::new(field, "must be a header name"));
            return None;
        }
    };
    let reserved = ["authorization", "content-type", "content-length", "host"];
    match HeaderName::from_bytes(text.as_bytes()) {
        Ok(name) if !reserved.contains(&name.as_str()) => Some(name),
        _ => {
            errors.push(FieldError::new(
                field,
                format!("must be a header name other than {}", reserved.join(", ")),
            ));
            None
        }
    }
}

fn auth(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Auth> {
    let path = at("auth");
    let Some(object) = value.and_then(Value::as_object) else {
        errors.push(FieldError::new(
            path,
            "is required: an object with `kind` (bearer, basic, header or hmac)",
        ));
        return None;
    };
    let kind_field = format!("{path}.kind");
    match object.get("kind").and_then(Value::as_str) {
        Some("bearer") => {
            unknown_keys(object, &path, &["kind"], errors);
            Some(Auth::Bearer)
        }
        Some("basic") => {
            unknown_keys(object, &path, &["kind", "username"], errors);
            match object.get("username").and_then(Value::as_str) {
                Some(name) if !name.is_empty() && !name.contains(':') => Some(Auth::Basic {
                    username: name.to_owned(),
                }),
                _ => {
                    errors.push(FieldError::new(
                        format!("{path}.username"),
                        "is required for basic authentication (a name without `:`)",
                    ));
                    None
                }
            }
        }
        Some("header") => {
            unknown_keys(object, &path, &["kind", "header"], errors);
            let field = format!("{path}.header");
            if object.get("header").is_none() {
                errors.push(FieldError::new(
                    field,
                    "is required: the header carrying the key",
                ));
                return None;
            }
            header_name(object.get("header"), &field, "", errors)
                .map(|header| Auth::Header { header })
        }
        Some("hmac") => {
            unknown_keys(
                object,
                &path,
                &["kind", "timestamp_header", "signature_header"],
                errors,
            );
            let timestamp = header_name(
                object.get("timestamp_header"),
                &format!("{path}.timestamp_header"),
                "x-caller-timestamp",
                errors,
            );
            let signature = header_name(
                object.get("signature_header"),
                &format!("{path}.signature_header"),
                "x-caller-signature",
                errors,
            );
            Some(Auth::Hmac {
                timestamp_header: timestamp?,
                signature_header: signature?,
            })
        }
        _ => {
            errors.push(FieldError::new(
                kind_field,
                "must be one of bearer, basic, header, hmac",
            ));
            None
        }
    }
}

fn endpoints(value: Option<&Value>, errors: &mut Vec<FieldError>) -> BTreeMap<Operation, Endpoint> {
    let path = at("endpoints");
    let mut found = BTreeMap::new();
    let Some(object) = value.and_then(Value::as_object) else {
        errors.push(FieldError::new(
            path,
            "is required: an object of `operation: \"METHOD /path\"`, at least `get_contact`",
        ));
        return found;
    };
    let keys: Vec<&str> = Operation::ALL
        .iter()
        .map(|operation| operation.key())
        .collect();
    unknown_keys(object, &path, &keys, errors);
    for operation in Operation::ALL {
        let field = format!("{path}.{}", operation.key());
        match object.get(operation.key()) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => match endpoint(operation, text) {
                Ok(endpoint) => {
                    found.insert(operation, endpoint);
                }
                Err(problem) => errors.push(FieldError::new(field, problem)),
            },
            Some(_) => errors.push(FieldError::new(field, "must be a string `METHOD /path`")),
        }
    }
    if !found.contains_key(&Operation::GetContact) && errors.is_empty() {
        errors.push(FieldError::new(
            format!("{path}.get_contact"),
            "is required: every operation reads contacts",
        ));
    }
    found
}

fn endpoint(operation: Operation, text: &str) -> Result<Endpoint, String> {
    let (method, template) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| "must be `METHOD /path`, e.g. `GET /contacts/{id}`".to_owned())?;
    let method = match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => {
            return Err(format!(
                "method `{other}` must be GET, POST, PUT, PATCH or DELETE"
            ));
        }
    };
    let template = template.trim();
    if !template.starts_with('/')
        || template.contains(char::is_whitespace)
        || template.contains('#')
    {
        return Err("the path must start with `/` and hold no spaces or `#`".to_owned());
    }
    let (allowed, required) = operation.placeholders();
    let names = placeholders(template)?;
    for name in &names {
        if !allowed.contains(&name.as_str()) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; this operation knows {}",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed
                        .iter()
                        .map(|name| format!("{{{name}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    for name in required {
        let in_path = template
            .split('?')
            .next()
            .is_some_and(|path| path.contains(&format!("{{{name}}}")));
        if !in_path {
            return Err(format!("the path must contain `{{{name}}}`"));
        }
    }
    Ok(Endpoint {
        method,
        template: template.to_owned(),
    })
}

/// The `{name}`s of a template; an error for unbalanced braces or an empty name.
pub(crate) fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("unbalanced `}` in the path".to_owned());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("unbalanced `{` in the path")?;
        let name = &after[..close];
        if name.is_empty()
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
        {
            return Err(format!(
                "placeholder `{{{name}}}` must be lowercase letters"
            ));
        }
        names.push(name.to_owned());
        rest = &after[close + 1..];
    }
    Ok(names)
}

fn pointer(
    value: Option<&Value>,
    field: &str,
    allow_root: bool,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.starts_with('/') || (allow_root && text.is_empty()) => {
            Some(text.clone())
        }
        Some(_) => {
            let problem = if allow_root {
                "must be a json pointer such as `/data`, or `\"\"` for the whole body"
            } else {
                "must be a json pointer starting with `/`, e.g. `/firstName`"
            };
            errors.push(FieldError::new(field, problem));
            None
        }
    }
}

fn contact_fields(value: Option<&Value>, errors: &mut Vec<FieldError>) -> ContactFields {
    let path = at("fields");
    let empty = Map::new();
    let object = match value {
        None => &empty,
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(FieldError::new(
                path.as_str(),
                "must be an object of json pointers",
            ));
            &empty
        }
    };
    let simple = [
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "timezone",
        "status",
        "tags",
        "do_not_call",
        "custom_fields_object",
    ];
    let mut known = simple.to_vec();
    known.push("custom_fields");
    unknown_keys(object, &path, &known, errors);
    let mut get = |name: &str, default: Option<&str>| {
        pointer(object.get(name), &format!("{path}.{name}"), false, errors).or_else(|| {
            (!object.contains_key(name))
                .then(|| default.map(str::to_owned))
                .flatten()
        })
    };
    let id = get("id", Some("/id")).unwrap_or_else(|| "/id".to_owned());
    let first_name = get("first_name", Some("/first_name"));
    let last_name = get("last_name", Some("/last_name"));
    let email = get("email", Some("/email"));
    let phone = get("phone", Some("/phone"));
    let timezone = get("timezone", Some("/timezone"));
    let status = get("status", Some("/status"));
    let tags = get("tags", Some("/tags"));
    let do_not_call = get("do_not_call", None);
    let custom_fields_object = get("custom_fields_object", None);
    let mut custom_fields = BTreeMap::new();
    match object.get("custom_fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(named)) => {
            for (name, value) in named {
                let field = format!("{path}.custom_fields.{name}");
                if name.trim().is_empty() {
                    errors.push(FieldError::new(field, "a custom field needs a name"));
                } else if let Some(pointer) = pointer(Some(value), &field, false, errors) {
                    custom_fields.insert(name.clone(), pointer);
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            format!("{path}.custom_fields"),
            "must be an object of `name: json pointer`",
        )),
    }
    ContactFields {
        id,
        first_name,
        last_name,
        email,
        phone,
        timezone,
        status,
        tags,
        do_not_call,
        custom_fields,
        custom_fields_object,
    }
}

fn note_fields(value: Option<&Value>, errors: &mut Vec<FieldError>) -> NoteFields {
    let path = at("notes");
    let empty = Map::new();
    let object = match value {
        None => &empty,
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(FieldError::new(
                path.as_str(),
                "must be an object of json pointers",
            ));
            &empty
        }
    };
    unknown_keys(object, &path, &["id", "title", "body"], errors);
    let id = pointer(object.get("id"), &format!("{path}.id"), false, errors);
    let title = pointer(object.get("title"), &format!("{path}.title"), false, errors);
    let body = pointer(object.get("body"), &format!("{path}.body"), false, errors);
    NoteFields {
        id: id.unwrap_or_else(|| "/id".to_owned()),
        title: if object.contains_key("title") {
            title
        } else {
            Some("/title".to_owned())
        },
        body: body.unwrap_or_else(|| "/body".to_owned()),
    }
}

fn envelopes(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Envelopes {
    let path = at("envelopes");
    let empty = Map::new();
    let object = match value {
        None => &empty,
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(FieldError::new(
                path.as_str(),
                "must be an object of json pointers",
            ));
            &empty
        }
    };
    let names = ["contact", "contacts", "note", "notes", "call_id"];
    unknown_keys(object, &path, &names, errors);
    let mut get = |name: &str, default: &str| {
        pointer(object.get(name), &format!("{path}.{name}"), true, errors)
            .unwrap_or_else(|| default.to_owned())
    };
    Envelopes {
        contact: get("contact", ""),
        contacts: get("contacts", ""),
        note: get("note", ""),
        notes: get("notes", ""),
        call_id: get("call_id", "/id"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({
            "base_url": "https://crm.example.com/api/",
            "crm": {
                "auth": {"kind": "bearer"},
                "endpoints": {"get_contact": "GET /contacts/{id}"}
            }
        })
    }

    #[test]
    fn a_minimal_configuration_gets_defaults() {
        let config = CustomCrmConfig::parse(&minimal()).unwrap();
        assert_eq!(config.base_url, "https://crm.example.com/api");
        assert_eq!(config.auth, Auth::Bearer);
        assert_eq!(config.fields.first_name.as_deref(), Some("/first_name"));
        assert_eq!(config.fields.do_not_call, None);
        assert_eq!(config.notes.title.as_deref(), Some("/title"));
        assert_eq!(config.envelopes.contact, "");
        assert_eq!(config.envelopes.call_id, "/id");
        assert!(config.endpoint(Operation::LogCall).is_none());
    }

    #[test]
    fn a_null_field_is_not_mapped() {
        let mut value = minimal();
        value["crm"]["fields"] = json!({"timezone": null});
        value["crm"]["notes"] = json!({"title": null});
        let config = CustomCrmConfig::parse(&value).unwrap();
        assert_eq!(config.fields.timezone, None);
        assert_eq!(config.notes.title, None);
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (json!({"base_url": "ftp://x"}), "providers.custom.base_url"),
            (
                json!({"crm": {"base_url": "https://x"}}),
                "providers.custom.crm.base_url",
            ),
            (
                json!({"auth": {"kind": "oauth"}}),
                "providers.custom.crm.auth.kind",
            ),
            (
                json!({"auth": {"kind": "basic"}}),
                "providers.custom.crm.auth.username",
            ),
            (
                json!({"auth": {"kind": "header", "header": "Authorization"}}),
                "providers.custom.crm.auth.header",
            ),
            (
                json!({"auth": {"kind": "hmac", "signature_header": "bad header"}}),
                "providers.custom.crm.auth.signature_header",
            ),
            (
                json!({"endpoints": {"get_contact": "FETCH /contacts/{id}"}}),
                "providers.custom.crm.endpoints.get_contact",
            ),
            (
                json!({"endpoints": {"get_contact": "GET /contacts"}}),
                "providers.custom.crm.endpoints.get_contact",
            ),
            (
                json!({"endpoints": {"get_contact": "GET /contacts/{id}", "find_contact": "GET /c?x={name}"}}),
                "providers.custom.crm.endpoints.find_contact",
            ),
            (
                json!({"endpoints": {"get_contact": "GET /contacts/{id", "log_call": "POST x"}}),
                "providers.custom.crm.endpoints.log_call",
            ),
            (
                json!({"endpoints": {"delete_contact": "DELETE /c/{id}"}}),
                "providers.custom.crm.endpoints.delete_contact",
            ),
            (
                json!({"endpoints": {}}),
                "providers.custom.crm.endpoints.get_contact",
            ),
            (
                json!({"fields": {"email": "email"}}),
                "providers.custom.crm.fields.email",
            ),
            (
                json!({"fields": {"custom_fields": {"service": "service"}}}),
                "providers.custom.crm.fields.custom_fields.service",
            ),
            (
                json!({"envelopes": {"contact": "data"}}),
                "providers.custom.crm.envelopes.contact",
            ),
            (json!({"surprise": true}), "providers.custom.crm.surprise"),
        ];
        for (change, field) in cases {
            let mut value = minimal();
            for (key, part) in change.as_object().unwrap() {
                if key == "base_url" {
                    value[key] = part.clone();
                } else if key == "crm" {
                    for (inner, part) in part.as_object().unwrap() {
                        value["crm"][inner] = part.clone();
                    }
                } else {
                    value["crm"][key] = part.clone();
                }
            }
            let errors = CustomCrmConfig::parse(&value).unwrap_err();
            assert!(
                errors.iter().any(|error| error.field == field),
                "{change} should name {field}: {errors:?}"
            );
        }
    }

    #[test]
    fn placeholders_are_read_from_templates() {
        assert_eq!(
            placeholders("/contacts/{id}/deals/{pipeline}?stage={stage}").unwrap(),
            ["id", "pipeline", "stage"]
        );
        assert!(placeholders("/contacts/{}").is_err());
        assert!(placeholders("/contacts/}{").is_err());
    }
}
