//! Normalizers: every lead payload the platform accepts, read into one shape.
//!
//! One pure function per sender turns a request body into a [`NormalizedLead`]:
//!
//! | Function | Sender | Wire format |
//! |---|---|---|
//! | [`gohighlevel_app`] | HighLevel marketplace-app webhook events | flat JSON with `type`, `locationId` |
//! | [`gohighlevel_workflow`] | HighLevel workflow "Webhook" / "Custom Webhook" action | snake_case contact keys, `location`, `workflow`, `customData` |
//! | [`zoho_workflow`] | Zoho CRM workflow rule → webhook action | JSON or form-encoded, fields chosen by the tenant |
//! | [`zoho_notification`] | Zoho CRM notification (watch) callback | record ids only: a [`ZohoNotification`], not a lead |
//! | [`custom`] | a tenant's own system | any JSON, read through the tenant's [`FieldMapping`] |
//! | [`api_call`] | `POST /v1/calls` | a [`CallRequest`] |
//!
//! Contract of every normalizer:
//!
//! - **Pure.** No clock, no I/O, no configuration beyond its arguments. Ingress supplies the
//!   tenant key and the receive time in [`NormalizedLead::into_event`].
//! - **Never panics**, on any bytes (property-tested below).
//! - **Errors say where.** A [`NormalizeError`] names the place: `line 3 column 7` for
//!   malformed JSON, a field path such as `customFields[2].id`, a form field, or a mapping's
//!   JSON pointer. It never repeats more than 64 characters of the input, and never a value.
//! - **A lead without a usable phone is accepted** (`phone_raw` or `phone_e164` is `None`):
//!   `resolve_tenant` dead-letters it with a readable reason (see `events::lead`).
//! - **Nothing is silently dropped**: fields the lead has no typed place for go into
//!   `custom_fields` under the sender's key, except where a normalizer documents otherwise.
//!
//! Sample payloads, scrubbed (fictional 555-01xx numbers, `example.com` addresses), are in
//! `schemas/webhooks/<vendor>/`; each normalizer's tests read them and check every field:
//!
//! | Sample | Built from |
//! |---|---|
//! | `gohighlevel/contact_create.json` | HighLevel's official `ContactCreate` example (`docs/webhook events/` of `GoHighLevel/highlevel-api-docs`), plus the `timestamp` and `webhookId` every delivery carries (A.5.1) and a `timezone` |
//! | `gohighlevel/contact_tag_update.json` | the same contact shape as `ContactTagUpdate`, with a national-format phone and a repeated tag |
//! | `gohighlevel/opportunity_stage_update.json` | HighLevel's official `OpportunityStageUpdate` example (no `webhookId`: content-keyed) |
//! | `gohighlevel/workflow_webhook.json` | the workflow "Webhook" action shape of A.5.3 (observed, not officially documented) |
//! | `zoho/workflow_webhook.json`, `.form.txt` | one tenant-chosen parameter set (B.6.1), as JSON and form-encoded |
//! | `zoho/notification.json` | Zoho's notification callback keys (B.6.2; the exact key set is unconfirmed) |
//! | `custom/lead.json` | an invented form-builder payload, read with a mapping in the tests |

mod api;
mod custom;
mod gohighlevel;
mod zoho;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

pub use api::{CallRequest, api_call};
pub use custom::{FieldMapping, custom};
pub use gohighlevel::{gohighlevel_app, gohighlevel_workflow};
pub use zoho::{ZohoNotification, zoho_notification, zoho_workflow};

use crate::events::lead::{LeadReceived, LeadSource, TenantKey};

/// The most characters of input an error message repeats (a key, a path, a content type).
const MAX_ECHO: usize = 64;

/// Provider event ids longer than this are hashed into the dedupe key instead of copied.
const MAX_EVENT_ID_IN_KEY: usize = 200;

/// The region a national phone number is read in when the sender names no country.
pub const DEFAULT_REGION: &str = "US";

/// A lead as one sender described it: a [`LeadReceived`] before ingress adds the tenant key
/// and the receive time.
///
/// Field meanings are those of [`LeadReceived`]; `dedupe_key` and `phone_e164` are computed
/// by the normalizer from the other fields.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizedLead {
    /// Which kind of sender produced the lead.
    pub source: LeadSource,
    /// The tenant key the payload itself names, if any (HighLevel `locationId`, a Zoho
    /// `org_id` parameter). Ingress may trust it or use what the URL or API key says.
    pub tenant_hint: Option<TenantKey>,
    /// The provider's id of this delivery, when it gives one.
    pub source_event_id: Option<String>,
    /// See [`LeadReceived::dedupe_key`].
    pub dedupe_key: String,
    /// The CRM's id of the contact or record.
    pub external_id: Option<String>,
    /// The phone number as received, trimmed.
    pub phone_raw: Option<String>,
    /// `phone_raw` in E.164, when it is a valid number.
    pub phone_e164: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Full name as given, else `first_name last_name`.
    pub full_name: Option<String>,
    /// E-mail address as received.
    pub email: Option<String>,
    /// IANA time zone, when the sender gave a valid one.
    pub timezone: Option<String>,
    /// Tags in the sender's order, without duplicates.
    pub tags: Vec<String>,
    /// Every other field the sender gave, by the sender's key.
    pub custom_fields: BTreeMap<String, Value>,
    /// The calling campaign, when the sender named one.
    pub campaign_id: Option<String>,
    /// When the provider says the triggering event happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What triggered the lead at the sender.
    pub trigger: Option<String>,
}

impl NormalizedLead {
    /// Starts an empty lead; normalizers fill it in and call [`NormalizedLead::finish`].
    fn new(source: LeadSource) -> Self {
        Self {
            source,
            tenant_hint: None,
            source_event_id: None,
            dedupe_key: String::new(),
            external_id: None,
            phone_raw: None,
            phone_e164: None,
            first_name: None,
            last_name: None,
            full_name: None,
            email: None,
            timezone: None,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            campaign_id: None,
            occurred_at: None,
            trigger: None,
        }
    }

    /// Derives the computed fields: `full_name` from its parts when missing, unique tags,
    /// `phone_e164` (reading a national number in `region`, else [`DEFAULT_REGION`]) and
    /// `dedupe_key`.
    fn finish(mut self, region: Option<&str>) -> Self {
        if self.full_name.is_none() {
            let parts: Vec<&str> = [&self.first_name, &self.last_name]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            if !parts.is_empty() {
                self.full_name = Some(parts.join(" "));
            }
        }
        let mut seen = HashSet::new();
        self.tags.retain(|tag| seen.insert(tag.clone()));
        self.phone_e164 = self
            .phone_raw
            .as_deref()
            .and_then(|raw| to_e164(raw, region));
        self.dedupe_key = self.compute_dedupe_key();
        self
    }

    /// Sets the provider's event id (e.g. an API `Idempotency-Key`) and recomputes
    /// `dedupe_key` from it. A blank id changes nothing.
    pub fn with_source_event_id(mut self, event_id: &str) -> Self {
        if let Some(event_id) = non_empty(event_id) {
            self.source_event_id = Some(event_id);
            self.dedupe_key = self.compute_dedupe_key();
        }
        self
    }

    /// Changes the source (e.g. an API request that came in a bulk upload) and recomputes
    /// `dedupe_key`, which names it.
    pub fn with_source(mut self, source: LeadSource) -> Self {
        self.source = source;
        self.dedupe_key = self.compute_dedupe_key();
        self
    }

    /// Returns the content hash `sha256:<hex>` defined in [`LeadReceived::dedupe_key`],
    /// whether or not the lead has a provider event id.
    pub fn content_hash(&self) -> String {
        let mut tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        let document = serde_json::json!({
            "source": self.source.as_str(),
            "external_id": self.external_id,
            "phone": self.phone_raw,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name,
            "email": self.email,
            "timezone": self.timezone,
            "tags": tags,
            "custom_fields": self.custom_fields,
            "campaign_id": self.campaign_id,
            "trigger": self.trigger,
            "occurred_at": self
                .occurred_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        });
        let mut canonical = String::new();
        write_canonical(&document, &mut canonical);
        format!("sha256:{}", crate::hex::sha256(canonical.as_bytes()))
    }

    fn compute_dedupe_key(&self) -> String {
        match &self.source_event_id {
            Some(id) if id.chars().count() <= MAX_EVENT_ID_IN_KEY => {
                format!("{}:{id}", self.source)
            }
            Some(id) => format!(
                "{}:sha256:{}",
                self.source,
                crate::hex::sha256(id.as_bytes())
            ),
            None => self.content_hash(),
        }
    }

    /// Completes the lead into the bus event, with the tenant key ingress decided on and the
    /// time it received the request.
    pub fn into_event(self, tenant_key: TenantKey, received_at: DateTime<Utc>) -> LeadReceived {
        LeadReceived {
            tenant_key,
            source: self.source,
            source_event_id: self.source_event_id,
            dedupe_key: self.dedupe_key,
            external_id: self.external_id,
            phone_raw: self.phone_raw,
            phone_e164: self.phone_e164,
            first_name: self.first_name,
            last_name: self.last_name,
            full_name: self.full_name,
            email: self.email,
            timezone: self.timezone,
            tags: self.tags,
            custom_fields: self.custom_fields,
            campaign_id: self.campaign_id,
            received_at,
            occurred_at: self.occurred_at,
            trigger: self.trigger,
        }
    }
}

/// Why a body could not be normalized. Every message names where the input is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not valid JSON.
    #[error("malformed json at line {line} column {column}: {reason}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error (0 when the body is empty).
        column: usize,
        /// What the parser expected, e.g. `expected `,` or `}``.
        reason: String,
    },
    /// The body is JSON, but not an object where one is required.
    #[error("the body must be a json object, found {found}")]
    NotAnObject {
        /// The JSON kind found, e.g. `an array`.
        found: &'static str,
    },
    /// A required field is absent, null or blank.
    #[error("missing `{path}`")]
    Missing {
        /// Path of the field, e.g. `locationId` or `appointment.contactId`.
        path: String,
    },
    /// A field has the wrong type or an unusable value.
    #[error("`{path}` {problem}")]
    Invalid {
        /// Path of the field (a JSON pointer for [`custom`]).
        path: String,
        /// What is wrong, e.g. `must be a string, found an object`.
        problem: String,
    },
    /// A form-encoded field could not be decoded.
    #[error("form field `{field}` {problem}")]
    Form {
        /// The field's name (as far as it could be decoded).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The request's content type is neither JSON nor form-encoded.
    #[error(
        "unsupported content type `{content_type}`: expected `application/json` or \
         `application/x-www-form-urlencoded`"
    )]
    UnsupportedContentType {
        /// The media type received.
        content_type: String,
    },
    /// The event is valid but is not one that carries a lead (e.g. `InboundMessage`):
    /// ingress acknowledges it and does nothing.
    #[error("event type `{event_type}` carries no lead")]
    NotALead {
        /// The sender's event type.
        event_type: String,
    },
    /// The tenant's field mapping is unusable: a configuration error, not the sender's.
    #[error("field mapping `{field}` {problem}")]
    Mapping {
        /// The mapping entry, e.g. `phone` or `custom_fields.budget`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl NormalizeError {
    fn missing(path: &str) -> Self {
        Self::Missing {
            path: excerpt(path),
        }
    }

    fn invalid(path: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            path: excerpt(path),
            problem: problem.into(),
        }
    }

    fn json(error: &serde_json::Error) -> Self {
        let message = error.to_string();
        // serde_json appends " at line L column C"; the position is kept in its own fields.
        let reason = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(reason, _)| reason);
        Self::Json {
            line: error.line(),
            column: error.column(),
            reason: excerpt(reason),
        }
    }
}

/// Returns `text` cut to [`MAX_ECHO`] characters (and an ellipsis) for an error message.
fn excerpt(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_ECHO).collect();
        short.push('…');
        short
    }
}

/// Parses a JSON body of any shape.
fn parse_json(body: &[u8]) -> Result<Value, NormalizeError> {
    serde_json::from_slice(body).map_err(|error| NormalizeError::json(&error))
}

/// Parses a JSON body that must be an object.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, NormalizeError> {
    match parse_json(body)? {
        Value::Object(object) => Ok(object),
        other => Err(NormalizeError::NotAnObject {
            found: json_kind(&other),
        }),
    }
}

/// Names a JSON value's kind for error messages ("found an array").
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads an optional object field.
fn object<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, NormalizeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(NormalizeError::invalid(
            path,
            format!("must be an object, found {}", json_kind(other)),
        )),
    }
}

/// Copies every entry of `fields` whose key is not in `consumed` into `custom_fields`, as
/// `<prefix>.<key>` when a prefix is given. Nulls and blank strings are left out.
fn keep_rest(
    fields: &Map<String, Value>,
    consumed: &[&str],
    prefix: Option<&str>,
    custom_fields: &mut BTreeMap<String, Value>,
) {
    for (key, value) in fields {
        let blank = value.as_str().is_some_and(|text| text.trim().is_empty());
        if consumed.contains(&key.as_str()) || value.is_null() || blank {
            continue;
        }
        let name = match prefix {
            Some(prefix) => format!("{prefix}.{key}"),
            None => key.clone(),
        };
        custom_fields.insert(name, value.clone());
    }
}

/// Trims text; blank becomes `None`.
fn non_empty(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Reads a text field leniently: a string (trimmed, blank = absent) or a number (as written).
fn text(value: Option<&Value>, path: &str) -> Result<Option<String>, NormalizeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(non_empty(text)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(NormalizeError::invalid(
            path,
            format!("must be a string, found {}", json_kind(other)),
        )),
    }
}

/// Reads tags: an array of strings (or of `{name}` objects, Zoho's shape), or one string
/// separated by commas or semicolons (HighLevel workflows, form fields).
fn tags(value: Option<&Value>, path: &str) -> Result<Vec<String>, NormalizeError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(joined)) => Ok(split_tags(joined)),
        Some(Value::Array(items)) => {
            let mut tags = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                let tag = match item {
                    Value::Object(object) => {
                        text(object.get("name"), &format!("{item_path}.name"))?
                    }
                    other => text(Some(other), &item_path)?,
                };
                tags.extend(tag);
            }
            Ok(tags)
        }
        Some(other) => Err(NormalizeError::invalid(
            path,
            format!("must be an array or a string, found {}", json_kind(other)),
        )),
    }
}

fn split_tags(joined: &str) -> Vec<String> {
    joined.split([',', ';']).filter_map(non_empty).collect()
}

/// Keeps a time zone only when it is an IANA name.
fn iana_timezone(zone: Option<String>) -> Option<String> {
    zone.filter(|zone| zone.parse::<chrono_tz::Tz>().is_ok())
}

/// Reads a date-time: RFC 3339 text, or epoch milliseconds as a number or digits.
fn datetime(value: Option<&Value>, path: &str) -> Result<Option<DateTime<Utc>>, NormalizeError> {
    const PROBLEM: &str = "must be an rfc 3339 date-time or epoch milliseconds";
    let millis = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            if let Ok(at) = DateTime::parse_from_rfc3339(text) {
                return Ok(Some(at.with_timezone(&Utc)));
            }
            text.parse::<i64>().ok()
        }
        Some(Value::Number(number)) => number.as_i64(),
        Some(_) => None,
    };
    millis
        .and_then(DateTime::from_timestamp_millis)
        .map(Some)
        .ok_or_else(|| NormalizeError::invalid(path, PROBLEM))
}

/// Returns a two-letter region code, upper-cased, when `country` looks like one.
fn region_code(country: Option<&str>) -> Option<String> {
    let country = country?.trim();
    (country.len() == 2 && country.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| country.to_ascii_uppercase())
}

/// Returns the E.164 form of `raw` when libphonenumber finds a valid number, reading a
/// national number in `region` (else [`DEFAULT_REGION`]).
fn to_e164(raw: &str, region: Option<&str>) -> Option<String> {
    // `crate::phone` guards the parser (only plain dialable text reaches it) and re-reads
    // international forms without a region, which phonenumber 0.3 otherwise misreads.
    crate::phone::parse(raw, region)
        .ok()
        .map(|number| number.as_str().to_owned())
}

/// Writes `value` as canonical JSON: object keys sorted at every depth, no whitespace.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const CONTACT_CREATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/contact_create.json"
    ));
    const OPPORTUNITY_STAGE_UPDATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/opportunity_stage_update.json"
    ));

    #[test]
    fn the_content_hash_ignores_key_order_and_whitespace() {
        let compact = serde_json::to_string(
            &serde_json::from_str::<Value>(OPPORTUNITY_STAGE_UPDATE).unwrap(),
        )
        .unwrap();
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(OPPORTUNITY_STAGE_UPDATE).unwrap(),
        )
        .unwrap();
        let reversed = "{ \"status\":\"open\" ,\"source\" : \"web form\",\n\t\"pipelineStageId\": \
             \"e93ba61a-53b3-45e7-985a-c7732dbcdb69\", \"pipelineId\":\"VDm7RPYC2GLUvdpKmBfC\",\
             \"name\":\"Jane Doe - cleaning\",\"monetaryValue\":40,\"locationId\":\
             \"ve9EPM428h8vShlRW1KT\",\"id\":\"wWhVuzqpRuOA1ZVWi4FC\",\"dateAdded\":\
             \"2021-11-26T12:41:02.193Z\",\"contactId\":\"cJAWDskpkJHbRbhAT7bs\",\"assignedTo\":\
             \"bNl8QNGXhIQJLv8eeASQ\",\"type\":\"OpportunityStageUpdate\"}";
        let original = gohighlevel_app(OPPORTUNITY_STAGE_UPDATE.as_bytes()).unwrap();
        for body in [compact.as_str(), pretty.as_str(), reversed] {
            assert_eq!(
                gohighlevel_app(body.as_bytes()).unwrap(),
                original,
                "{body}"
            );
        }
        assert!(original.dedupe_key.starts_with("sha256:"));
        assert_eq!(original.dedupe_key.len(), "sha256:".len() + 64);
    }

    #[test]
    fn nested_custom_field_order_does_not_change_the_hash() {
        let mut first = NormalizedLead::new(LeadSource::Custom);
        first.custom_fields.insert(
            "answers".to_owned(),
            json!({"a": 1, "b": [1, {"y": 2, "x": 1}]}),
        );
        let mut second = NormalizedLead::new(LeadSource::Custom);
        let reordered: Value =
            serde_json::from_str(r#"{"b": [1, {"x": 1, "y": 2}], "a": 1}"#).unwrap();
        second.custom_fields.insert("answers".to_owned(), reordered);
        assert_eq!(first.content_hash(), second.content_hash());
        let mut canonical = String::new();
        write_canonical(
            &json!({"b": [1, {"y": "é\"", "x": null}], "a": 1.5}),
            &mut canonical,
        );
        assert_eq!(canonical, r#"{"a":1.5,"b":[1,{"x":null,"y":"é\""}]}"#);
    }

    #[test]
    fn the_content_hash_changes_with_any_lead_field() {
        let base = gohighlevel_app(OPPORTUNITY_STAGE_UPDATE.as_bytes()).unwrap();
        let mut payload: Value = serde_json::from_str(OPPORTUNITY_STAGE_UPDATE).unwrap();
        let edits: [(&str, Value); 4] = [
            ("pipelineStageId", json!("another-stage")),
            ("contactId", json!("someone-else")),
            ("monetaryValue", json!(41)),
            ("timestamp", json!("2026-11-24T08:00:00Z")),
        ];
        for (key, value) in edits {
            let mut edited = payload.clone();
            edited[key] = value;
            let lead = gohighlevel_app(edited.to_string().as_bytes()).unwrap();
            assert_ne!(lead.dedupe_key, base.dedupe_key, "{key}");
        }
        // Tags are a set for the hash: reordering them is the same content.
        let mut first = base.clone();
        first.tags = vec!["a".to_owned(), "b".to_owned()];
        let mut second = base.clone();
        second.tags = vec!["b".to_owned(), "a".to_owned()];
        assert_eq!(first.content_hash(), second.content_hash());
        payload["type"] = json!("OpportunityStatusUpdate");
        let lead = gohighlevel_app(payload.to_string().as_bytes()).unwrap();
        assert_ne!(lead.dedupe_key, base.dedupe_key);
    }

    #[test]
    fn a_provider_event_id_is_the_dedupe_key_whatever_the_content() {
        let lead = gohighlevel_app(CONTACT_CREATE.as_bytes()).unwrap();
        let mut payload: Value = serde_json::from_str(CONTACT_CREATE).unwrap();
        payload["phone"] = json!("+12015550100");
        let edited = gohighlevel_app(payload.to_string().as_bytes()).unwrap();
        assert_eq!(edited.dedupe_key, lead.dedupe_key);
        assert_ne!(edited.content_hash(), lead.content_hash());
    }

    #[test]
    fn malformed_json_is_named_by_line_and_column() {
        let body = b"{\n  \"type\": \"ContactCreate\",\n  \"locationId\" \"x\"\n}";
        let error = gohighlevel_app(body).unwrap_err();
        assert_eq!(
            error,
            NormalizeError::Json {
                line: 3,
                column: 16,
                reason: "expected `:`".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "malformed json at line 3 column 16: expected `:`"
        );
        for normalize in [gohighlevel_workflow, zoho_notification_as_lead, api_call] {
            let message = normalize(b"{\"a\": 1,}").unwrap_err().to_string();
            assert!(
                message.starts_with("malformed json at line 1 column 9"),
                "{message}"
            );
        }
        assert_eq!(
            gohighlevel_app(b"").unwrap_err().to_string(),
            "malformed json at line 1 column 0: EOF while parsing a value"
        );
        assert_eq!(
            gohighlevel_app(b"[1, 2]").unwrap_err().to_string(),
            "the body must be a json object, found an array"
        );
    }

    /// Adapts [`zoho_notification`] to the lead normalizers' signature for shared checks.
    fn zoho_notification_as_lead(body: &[u8]) -> Result<NormalizedLead, NormalizeError> {
        zoho_notification(body).map(|_| NormalizedLead::new(LeadSource::ZohoNotification))
    }

    #[test]
    fn errors_never_repeat_long_input() {
        let long = "x".repeat(1_000);
        let bodies = [
            format!(r#"{{"type": "{long}", "locationId": "l"}}"#),
            format!(r#"{{"phone": "+1", "{long}": true}}"#),
            format!(r#"{{"{long}": "#),
        ];
        for body in &bodies {
            for message in [
                gohighlevel_app(body.as_bytes())
                    .err()
                    .map(|e| e.to_string()),
                api_call(body.as_bytes()).err().map(|e| e.to_string()),
            ]
            .into_iter()
            .flatten()
            {
                assert!(message.chars().count() <= 200, "{message}");
            }
        }
        let form = format!("{long}=%FF");
        let message = zoho_workflow(form.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(message.chars().count() <= 120, "{message}");
    }

    #[test]
    fn a_lead_without_a_phone_is_accepted() {
        let lead =
            gohighlevel_app(br#"{"type": "ContactCreate", "locationId": "l", "id": "c"}"#).unwrap();
        assert_eq!((lead.phone_raw, lead.phone_e164), (None, None));
        let lead =
            gohighlevel_workflow(br#"{"contact_id": "c", "phone": "not a number"}"#).unwrap();
        assert_eq!(lead.phone_raw.as_deref(), Some("not a number"));
        assert_eq!(lead.phone_e164, None);
    }

    #[test]
    fn phones_are_read_in_the_senders_region() {
        assert_eq!(
            to_e164("(201) 555-0123", None).as_deref(),
            Some("+12015550123")
        );
        assert_eq!(
            to_e164("030 901820", Some("DE")).as_deref(),
            Some("+4930901820")
        );
        assert_eq!(
            to_e164("+44 20 7946 0018", Some("US")).as_deref(),
            Some("+442079460018")
        );
        assert_eq!(to_e164("12", None), None);
        assert_eq!(to_e164("tel:+1-201-555-0123;phone-context=+1", None), None);
        assert_eq!(to_e164(&"1".repeat(65), None), None);
        assert_eq!(region_code(Some(" de ")).as_deref(), Some("DE"));
        assert_eq!(region_code(Some("Germany")), None);
    }

    #[test]
    fn a_lead_becomes_the_event_with_the_key_ingress_chose() {
        let lead = gohighlevel_app(CONTACT_CREATE.as_bytes()).unwrap();
        let received_at: DateTime<Utc> = "2026-11-24T08:00:00.412Z".parse().unwrap();
        let key = lead.tenant_hint.clone().unwrap();
        let event = lead.clone().into_event(key.clone(), received_at);
        assert_eq!(event.tenant_key, key);
        assert_eq!(event.received_at, received_at);
        assert_eq!(event.dedupe_key, lead.dedupe_key);
        assert_eq!(event.custom_fields, lead.custom_fields);
        assert_eq!(event.phone_e164, lead.phone_e164);
        assert_eq!(event.trigger, lead.trigger);
    }

    /// Object keys the normalizers look for, so random objects reach their deeper paths.
    const KNOWN_KEYS: &[&str] = &[
        "type",
        "locationId",
        "id",
        "webhookId",
        "timestamp",
        "dateAdded",
        "phone",
        "email",
        "firstName",
        "lastName",
        "name",
        "tags",
        "customFields",
        "timezone",
        "country",
        "contactId",
        "contact",
        "appointment",
        "value",
        "contact_id",
        "first_name",
        "full_name",
        "location",
        "workflow",
        "customData",
        "campaign_id",
        "channel_id",
        "module",
        "operation",
        "ids",
        "server_time",
        "token",
        "query_params",
        "First_Name",
        "Phone",
        "Mobile",
        "Tag",
        "org_id",
        "data",
        "custom_fields",
    ];
    const EVENT_TYPES: &[&str] = &[
        "ContactCreate",
        "ContactTagUpdate",
        "OpportunityStageUpdate",
        "AppointmentCreate",
        "InboundMessage",
    ];

    fn json_key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(KNOWN_KEYS).prop_map(str::to_owned),
            1 => ".{0,12}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,16}".prop_map(Value::from),
            "[+0-9 ()-]{0,16}".prop_map(Value::from),
            proptest::sample::select(EVENT_TYPES).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(json_key(), inner, 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        (
            proptest::collection::btree_map(json_key(), json_value(), 0..12),
            proptest::option::of(proptest::sample::select(EVENT_TYPES)),
        )
            .prop_map(|(entries, event_type)| {
                let mut object: Map<String, Value> = entries.into_iter().collect();
                if let Some(event_type) = event_type {
                    object.insert("type".to_owned(), Value::from(event_type));
                }
                Value::Object(object)
            })
    }

    fn any_mapping() -> FieldMapping {
        FieldMapping {
            phone: "/phone".to_owned(),
            name: Some("/name".to_owned()),
            first_name: Some("/contact/first_name".to_owned()),
            tags: Some("/tags".to_owned()),
            occurred_at: Some("/timestamp".to_owned()),
            custom_fields: BTreeMap::from([("v".to_owned(), "/data/0".to_owned())]),
            ..FieldMapping::default()
        }
    }

    /// Runs every normalizer on `body` and checks each error message stays short.
    fn check_all(body: &[u8]) -> Result<(), TestCaseError> {
        let mapping = any_mapping();
        let messages = [
            gohighlevel_app(body).err(),
            gohighlevel_workflow(body).err(),
            zoho_workflow(body, None).err(),
            zoho_workflow(body, Some("application/json")).err(),
            zoho_workflow(body, Some("application/x-www-form-urlencoded")).err(),
            zoho_notification(body).err(),
            custom(body, &mapping).err(),
            api_call(body).err(),
        ];
        for message in messages
            .into_iter()
            .flatten()
            .map(|error| error.to_string())
        {
            prop_assert!(message.chars().count() <= 300, "{}", message);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_normalizer_panics_on_arbitrary_bytes(
            body in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            check_all(&body)?;
        }

        #[test]
        fn no_normalizer_panics_on_arbitrary_json_objects(object in json_object()) {
            check_all(object.to_string().as_bytes())?;
            check_all(&serde_json::to_vec_pretty(&object).unwrap())?;
        }

        #[test]
        fn reformatting_a_body_never_changes_its_lead(object in json_object()) {
            let compact = object.to_string();
            let pretty = serde_json::to_string_pretty(&object).unwrap();
            prop_assert_eq!(
                gohighlevel_app(compact.as_bytes()),
                gohighlevel_app(pretty.as_bytes())
            );
            prop_assert_eq!(
                gohighlevel_workflow(compact.as_bytes()),
                gohighlevel_workflow(pretty.as_bytes())
            );
            prop_assert_eq!(
                zoho_workflow(compact.as_bytes(), None),
                zoho_workflow(pretty.as_bytes(), None)
            );
        }
    }
}
