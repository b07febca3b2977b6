//! Zoho CRM: workflow-rule webhook actions and notification callbacks
//! (`shared/protocols/crm-calendar.md` B.6).
//!
//! Neither is signed. Ingress authenticates a workflow webhook by the per-tenant key in its
//! URL, and a notification by its `token` and `channel_id`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    NormalizeError, NormalizedLead, datetime, excerpt, iana_timezone, json_kind, non_empty, object,
    parse_object, region_code, tags, text,
};
use crate::events::lead::{LeadSource, TenantKey};
use crate::secret::Secret;

/// Parameter names the workflow normalizer recognizes, per lead field, in order of
/// preference. Names are compared folded: lower-cased, keeping only letters and digits, so
/// `First_Name`, `first name` and `firstname` are one name.
const EXTERNAL_ID: &[&str] = &["id", "leadid", "contactid", "recordid"];
const FIRST_NAME: &[&str] = &["firstname"];
const LAST_NAME: &[&str] = &["lastname"];
const FULL_NAME: &[&str] = &["fullname", "name"];
const PHONE: &[&str] = &["phone", "mobile"];
const EMAIL: &[&str] = &["email"];
const TIMEZONE: &[&str] = &["timezone"];
const TAGS: &[&str] = &["tag", "tags"];
const CAMPAIGN_ID: &[&str] = &["campaignid"];
const ORG_ID: &[&str] = &["orgid", "zgid", "organizationid"];
const WORKFLOW: &[&str] = &["workflow", "workflowname", "rule", "rulename"];
const EVENT_ID: &[&str] = &["eventid"];
const COUNTRY: &[&str] = &["country"];

/// Normalizes the body of a Zoho CRM workflow rule's webhook action.
///
/// The tenant chooses the parameters (crm-calendar.md B.6.1), sent as JSON (a flat object)
/// or as `application/x-www-form-urlencoded`; `content_type` is the request's header (with
/// any `; charset=…`), and without one a body starting with `{` is read as JSON. Recognized
/// parameter names, compared case-insensitively and ignoring `_` and spaces (so Zoho's field
/// API names work as they are):
///
/// | Lead field | Parameter names, by preference |
/// |---|---|
/// | `external_id` | `id`, `Lead_Id`, `Contact_Id`, `Record_Id` |
/// | `first_name`, `last_name`, `full_name` | `First_Name`, `Last_Name`, `Full_Name` or `Name` |
/// | `phone_raw` | `Phone`, else `Mobile` |
/// | `email`, `timezone` | `Email`, `Time_Zone` (kept only when IANA) |
/// | `tags` | `Tag` or `Tags`: comma- or semicolon-separated (or a JSON array) |
/// | `campaign_id` | `campaign_id` |
/// | `tenant_hint` | `org_id` / `zgid` → [`TenantKey::ZohoOrg`] |
/// | `trigger` | `workflow:<workflow>` from `workflow` or `rule` (else `workflow`) |
/// | `source_event_id` | `event_id` |
///
/// `Country` (two letters) is the region of a national phone number and stays a custom
/// field; every parameter not used above lands in `custom_fields` under its own name (blank
/// ones are left out). A repeated form field keeps its first value.
pub fn zoho_workflow(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<NormalizedLead, NormalizeError> {
    let parameters: Vec<(String, Value)> = match body_format(body, content_type)? {
        BodyFormat::Json => parse_object(body)?.into_iter().collect(),
        BodyFormat::Form => parse_form(body)?
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect(),
    };
    let mut picker = Picker::new(&parameters);
    let mut lead = NormalizedLead::new(LeadSource::ZohoWorkflow);
    lead.external_id = picker.text(EXTERNAL_ID)?;
    lead.first_name = picker.text(FIRST_NAME)?;
    lead.last_name = picker.text(LAST_NAME)?;
    lead.full_name = picker.text(FULL_NAME)?;
    lead.phone_raw = picker.text(PHONE)?;
    lead.email = picker.text(EMAIL)?;
    lead.timezone = iana_timezone(picker.text(TIMEZONE)?);
    lead.tags = picker.tags(TAGS)?;
    lead.campaign_id = picker.text(CAMPAIGN_ID)?;
    lead.tenant_hint = picker.text(ORG_ID)?.map(TenantKey::ZohoOrg);
    lead.source_event_id = picker.text(EVENT_ID)?;
    lead.trigger = Some(match picker.text(WORKFLOW)? {
        Some(workflow) => format!("workflow:{workflow}"),
        None => "workflow".to_owned(),
    });
    let region = region_code(picker.peek_text(COUNTRY)?.as_deref());
    for (index, (name, value)) in parameters.iter().enumerate() {
        let blank = value.as_str().is_some_and(|text| text.trim().is_empty());
        if !picker.used[index] && !value.is_null() && !blank {
            lead.custom_fields
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }
    Ok(lead.finish(region.as_deref()))
}

/// Finds recognized parameters by folded name and remembers which ones were used.
struct Picker<'a> {
    parameters: &'a [(String, Value)],
    folded: Vec<String>,
    used: Vec<bool>,
}

impl<'a> Picker<'a> {
    fn new(parameters: &'a [(String, Value)]) -> Self {
        let folded = parameters
            .iter()
            .map(|(name, _)| {
                name.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .collect()
            })
            .collect();
        Self {
            parameters,
            folded,
            used: vec![false; parameters.len()],
        }
    }

    /// Returns the index and text of the first candidate that has a non-blank value.
    fn find(&self, candidates: &[&str]) -> Result<Option<(usize, String)>, NormalizeError> {
        for candidate in candidates {
            let Some(index) = self.folded.iter().position(|name| name == candidate) else {
                continue;
            };
            let (name, value) = &self.parameters[index];
            if let Some(found) = text(Some(value), name)? {
                return Ok(Some((index, found)));
            }
        }
        Ok(None)
    }

    /// Reads a text field and marks its parameter used.
    fn text(&mut self, candidates: &[&str]) -> Result<Option<String>, NormalizeError> {
        let found = self.find(candidates)?;
        Ok(found.map(|(index, found)| {
            self.used[index] = true;
            found
        }))
    }

    /// Reads a text field without marking it used (it stays a custom field too).
    fn peek_text(&self, candidates: &[&str]) -> Result<Option<String>, NormalizeError> {
        Ok(self.find(candidates)?.map(|(_, found)| found))
    }

    /// Reads the first candidate present as tags and marks it used.
    fn tags(&mut self, candidates: &[&str]) -> Result<Vec<String>, NormalizeError> {
        for candidate in candidates {
            if let Some(index) = self.folded.iter().position(|name| name == candidate) {
                let (name, value) = &self.parameters[index];
                self.used[index] = true;
                return tags(Some(value), name);
            }
        }
        Ok(Vec::new())
    }
}

/// How a webhook body is encoded.
enum BodyFormat {
    Json,
    Form,
}

fn body_format(body: &[u8], content_type: Option<&str>) -> Result<BodyFormat, NormalizeError> {
    let media_type = content_type
        .and_then(|header| header.split(';').next())
        .map(|media_type| media_type.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media_type.as_str() {
        "application/json" | "text/json" => Ok(BodyFormat::Json),
        json if json.starts_with("application/") && json.ends_with("+json") => Ok(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        "" if body.trim_ascii_start().starts_with(b"{") => Ok(BodyFormat::Json),
        "" => Ok(BodyFormat::Form),
        other => Err(NormalizeError::UnsupportedContentType {
            content_type: excerpt(other),
        }),
    }
}

/// Decodes `application/x-www-form-urlencoded` (WHATWG): `&`-separated `name=value` pairs,
/// `+` for space, `%XX` escapes (an invalid escape stays as written). Names and values must
/// decode to UTF-8. Trailing whitespace of the whole body (a stray newline) is ignored; the
/// first of repeated names wins.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, NormalizeError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for pair in body.trim_ascii_end().split(|byte| *byte == b'&') {
        if pair.is_empty() {
            continue;
        }
        let mut parts = pair.splitn(2, |byte| *byte == b'=');
        let raw_name = parts.next().unwrap_or_default();
        let raw_value = parts.next().unwrap_or_default();
        let name = percent_decode(raw_name).ok_or_else(|| NormalizeError::Form {
            field: excerpt(&String::from_utf8_lossy(raw_name)),
            problem: "has a name that is not valid utf-8".to_owned(),
        })?;
        let value = percent_decode(raw_value).ok_or_else(|| NormalizeError::Form {
            field: excerpt(&name),
            problem: "is not valid utf-8".to_owned(),
        })?;
        if !fields.iter().any(|(existing, _)| *existing == name) {
            fields.push((name, value));
        }
    }
    Ok(fields)
}

fn percent_decode(raw: &[u8]) -> Option<String> {
    String::from_utf8(crate::http::form::decode(raw)).ok()
}

/// A Zoho CRM notification callback: which records changed, not what they hold.
///
/// It carries no contact data, so it is not a lead: ingress validates `token` and
/// `channel_id` against the tenant's watch channel, then a later step fetches each record
/// (`GET /crm/v8/<module>/<id>`) and emits a lead with source `zoho_notification`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZohoNotification {
    /// The watch channel's id, as registered with `POST /crm/v8/actions/watch`.
    pub channel_id: String,
    /// The verification token registered with the channel, if one was.
    pub token: Option<Secret<String>>,
    /// The module's API name, e.g. `Leads`.
    pub module: String,
    /// What happened, lower-cased: `insert`, `update` or `delete`.
    pub operation: String,
    /// The affected records' ids.
    pub ids: Vec<String>,
    /// When Zoho sent the notification.
    pub server_time: Option<DateTime<Utc>>,
    /// The query string of the registered `notify_url`, as Zoho echoes it.
    pub query_params: BTreeMap<String, String>,
}

impl ZohoNotification {
    /// Returns one lead per inserted or updated record: its `external_id` is the record id and
    /// it carries no contact data (no phone), since Zoho sends none. `trigger` is
    /// `zoho:<module>.<operation>`; `module` and `channel_id` are custom fields; `occurred_at` is
    /// `server_time`, so the content-hash dedupe key tells two notifications of the same record
    /// apart. A `delete` yields no lead.
    pub fn into_leads(&self) -> Vec<NormalizedLead> {
        if self.operation == "delete" {
            return Vec::new();
        }
        self.ids
            .iter()
            .map(|id| {
                let mut lead = NormalizedLead::new(LeadSource::ZohoNotification);
                lead.external_id = Some(id.clone());
                lead.trigger = Some(format!("zoho:{}.{}", self.module, self.operation));
                lead.occurred_at = self.server_time;
                lead.custom_fields
                    .insert("module".to_owned(), Value::String(self.module.clone()));
                lead.custom_fields.insert(
                    "channel_id".to_owned(),
                    Value::String(self.channel_id.clone()),
                );
                lead.finish(None)
            })
            .collect()
    }
}

/// Reads a Zoho CRM notification callback body (JSON).
///
/// `channel_id`, `module`, `operation` and `ids` are required; `token`, `server_time` (epoch
/// milliseconds) and `query_params` are optional. Other keys (`resource_uri`,
/// `affected_fields`, …) are ignored.
pub fn zoho_notification(body: &[u8]) -> Result<ZohoNotification, NormalizeError> {
    let callback = parse_object(body)?;
    let required = |key: &str| -> Result<String, NormalizeError> {
        text(callback.get(key), key)?.ok_or_else(|| NormalizeError::missing(key))
    };
    let channel_id = required("channel_id")?;
    let module = required("module")?;
    let operation = required("operation")?.to_ascii_lowercase();
    let ids = match callback.get("ids") {
        None | Some(Value::Null) => return Err(NormalizeError::missing("ids")),
        Some(Value::Array(items)) => {
            let mut ids = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let path = format!("ids[{index}]");
                ids.push(text(Some(item), &path)?.ok_or_else(|| NormalizeError::missing(&path))?);
            }
            ids
        }
        Some(other) => {
            return Err(NormalizeError::invalid(
                "ids",
                format!("must be an array, found {}", json_kind(other)),
            ));
        }
    };
    let mut query_params = BTreeMap::new();
    if let Some(params) = object(callback.get("query_params"), "query_params")? {
        for (name, value) in params {
            if let Some(value) = text(Some(value), &format!("query_params.{name}"))? {
                query_params.insert(name.clone(), value);
            }
        }
    }
    Ok(ZohoNotification {
        channel_id,
        token: text(callback.get("token"), "token")?
            .and_then(|token| non_empty(&token))
            .map(Secret::new),
        module,
        operation,
        ids,
        server_time: datetime(callback.get("server_time"), "server_time")?,
        query_params,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const WORKFLOW_JSON: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/zoho/workflow_webhook.json"
    ));
    const WORKFLOW_FORM: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/zoho/workflow_webhook.form.txt"
    ));
    const NOTIFICATION: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/zoho/notification.json"
    ));

    fn expected_workflow_lead(dedupe_key: String) -> NormalizedLead {
        NormalizedLead {
            source: LeadSource::ZohoWorkflow,
            tenant_hint: Some(TenantKey::ZohoOrg("60012345678".to_owned())),
            source_event_id: None,
            dedupe_key,
            external_id: Some("4876876000001234567".to_owned()),
            phone_raw: Some("+1 512-555-0142".to_owned()),
            phone_e164: Some("+15125550142".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/Chicago".to_owned()),
            tags: vec!["ai-call-requested".to_owned(), "web-lead".to_owned()],
            custom_fields: serde_json::from_value(json!({
                "Country": "US",
                "Lead_Source": "Web Form",
                "Lead_Status": "Not Contacted"
            }))
            .unwrap(),
            campaign_id: Some("spring-promo".to_owned()),
            occurred_at: None,
            trigger: Some("workflow:New Lead Call".to_owned()),
        }
    }

    #[test]
    fn a_json_workflow_webhook_is_a_lead() {
        let lead = zoho_workflow(WORKFLOW_JSON.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(lead, expected_workflow_lead(lead.content_hash()));
        assert_eq!(
            lead.dedupe_key,
            "sha256:3980d56780a713ef202aee392a68fb5be43b8809d4fb22ec75e338e9d5137c91"
        );
    }

    #[test]
    fn the_same_webhook_form_encoded_is_the_same_lead() {
        let form = zoho_workflow(
            WORKFLOW_FORM.as_bytes(),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
        )
        .unwrap();
        let json = zoho_workflow(WORKFLOW_JSON.as_bytes(), None).unwrap();
        assert_eq!(form, json);
        assert_eq!(form, expected_workflow_lead(json.content_hash()));
    }

    #[test]
    fn mobile_stands_in_for_a_blank_phone() {
        let lead = zoho_workflow(b"Phone=&Mobile=%2B12015550187&Last_Name=Doe", None).unwrap();
        assert_eq!(lead.phone_raw.as_deref(), Some("+12015550187"));
        assert_eq!(lead.phone_e164.as_deref(), Some("+12015550187"));
        assert!(lead.custom_fields.is_empty(), "{:?}", lead.custom_fields);
    }

    #[test]
    fn other_content_types_are_refused_by_name() {
        let error = zoho_workflow(b"Phone=1", Some("text/plain; charset=utf-8")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported content type `text/plain`: expected `application/json` or \
             `application/x-www-form-urlencoded`"
        );
    }

    #[test]
    fn form_fields_that_are_not_utf8_are_named() {
        let error = zoho_workflow(b"First_Name=Jane&Last_Name=%FF%FE", None).unwrap_err();
        assert_eq!(
            error,
            NormalizeError::Form {
                field: "Last_Name".to_owned(),
                problem: "is not valid utf-8".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "form field `Last_Name` is not valid utf-8"
        );
    }

    #[test]
    fn form_decoding_follows_whatwg() {
        assert_eq!(
            parse_form(b"a=1+2&b=%41%zz%4&c&=e&&a=dup\n").unwrap(),
            vec![
                ("a".to_owned(), "1 2".to_owned()),
                ("b".to_owned(), "A%zz%4".to_owned()),
                ("c".to_owned(), String::new()),
                (String::new(), "e".to_owned()),
            ]
        );
    }

    #[test]
    fn a_notification_names_the_records_to_fetch() {
        let notification = zoho_notification(NOTIFICATION.as_bytes()).unwrap();
        assert_eq!(
            notification,
            ZohoNotification {
                channel_id: "1000000068001".to_owned(),
                token: Some(Secret::new(
                    "TOKEN_FOR_VERIFICATION_OF_1000000068001".to_owned()
                )),
                module: "Leads".to_owned(),
                operation: "insert".to_owned(),
                ids: vec![
                    "4876876000001234567".to_owned(),
                    "4876876000001234568".to_owned()
                ],
                server_time: Some("2025-11-24T16:00:00Z".parse().unwrap()),
                query_params: BTreeMap::from([("tenant".to_owned(), "acme-dental".to_owned())]),
            }
        );
        assert!(!format!("{notification:?}").contains("TOKEN_FOR"));
    }

    #[test]
    fn a_notification_without_ids_is_refused_by_name() {
        let body = br#"{"channel_id": 1000000068001, "module": "Leads", "operation": "insert"}"#;
        assert_eq!(
            zoho_notification(body).unwrap_err().to_string(),
            "missing `ids`"
        );
        let body =
            br#"{"channel_id": 1, "module": "Leads", "operation": "insert", "ids": [7, {}]}"#;
        assert_eq!(
            zoho_notification(body).unwrap_err().to_string(),
            "`ids[1]` must be a string, found an object"
        );
    }
}
