//! `POST /v1/calls`: a tenant asks for a call through the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{NormalizeError, NormalizedLead, iana_timezone, json_kind, non_empty, parse_object};
use crate::events::lead::LeadSource;

/// The body of `POST /v1/calls`.
///
/// ```json
/// {"phone": "+12015550123", "first_name": "Jane", "last_name": "Doe",
///  "email": "jane.doe@example.com", "timezone": "America/Chicago",
///  "external_id": "crm-123", "campaign_id": "spring-promo",
///  "custom_fields": {"service": "cleaning"}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// The number to call: E.164 (`+12015550123`); a national number is read as a US one.
    pub phone: String,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// IANA time zone of the person, e.g. `America/Chicago`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The caller's own id of the person (its CRM's contact id).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Any other data for the call, passed to the agent as it is.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub custom_fields: BTreeMap<String, Value>,
    /// The calling campaign; the tenant's default campaign when absent.
    #[serde(default)]
    pub campaign_id: Option<String>,
}

/// The fields of a [`CallRequest`]; anything else is refused, like `deny_unknown_fields`.
const FIELDS: &[&str] = &[
    "phone",
    "first_name",
    "last_name",
    "email",
    "timezone",
    "external_id",
    "custom_fields",
    "campaign_id",
];

impl CallRequest {
    /// Parses a request body with the same rules as its `Deserialize` (strings must be
    /// strings, unknown fields are refused), plus one check: `timezone` must be IANA.
    /// Errors name the field and never repeat a value.
    pub fn parse(body: &[u8]) -> Result<Self, NormalizeError> {
        let object = parse_object(body)?;
        if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
            return Err(NormalizeError::invalid(
                unknown,
                "is not a field of a call request",
            ));
        }
        let phone = string(&object, "phone")?.ok_or_else(|| NormalizeError::missing("phone"))?;
        let timezone = string(&object, "timezone")?;
        if let Some(zone) = &timezone
            && iana_timezone(Some(zone.clone())).is_none()
        {
            return Err(NormalizeError::invalid(
                "timezone",
                "must be an iana time zone, e.g. America/Chicago",
            ));
        }
        let custom_fields = match object.get("custom_fields") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(fields)) => fields.clone().into_iter().collect(),
            Some(other) => {
                return Err(NormalizeError::invalid(
                    "custom_fields",
                    format!("must be an object, found {}", json_kind(other)),
                ));
            }
        };
        Ok(Self {
            phone,
            first_name: string(&object, "first_name")?,
            last_name: string(&object, "last_name")?,
            email: string(&object, "email")?,
            timezone,
            external_id: string(&object, "external_id")?,
            custom_fields,
            campaign_id: string(&object, "campaign_id")?,
        })
    }

    /// Returns the lead this request asks to call. A blank or unparseable `phone` gives a
    /// lead without `phone_e164`: ingress may answer 422 for it rather than let
    /// `resolve_tenant` dead-letter it.
    pub fn into_lead(self) -> NormalizedLead {
        let mut lead = NormalizedLead::new(LeadSource::Api);
        lead.phone_raw = non_empty(&self.phone);
        lead.first_name = self.first_name.as_deref().and_then(non_empty);
        lead.last_name = self.last_name.as_deref().and_then(non_empty);
        lead.email = self.email.as_deref().and_then(non_empty);
        lead.timezone = self.timezone.as_deref().and_then(non_empty);
        lead.external_id = self.external_id.as_deref().and_then(non_empty);
        lead.campaign_id = self.campaign_id.as_deref().and_then(non_empty);
        lead.custom_fields = self.custom_fields;
        lead.finish(None)
    }
}

/// Reads an optional string field strictly (no numbers), as serde would.
fn string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, NormalizeError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(NormalizeError::invalid(
            key,
            format!("must be a string, found {}", json_kind(other)),
        )),
    }
}

/// Normalizes a `POST /v1/calls` body into a lead (source `api`).
///
/// The tenant is the API key's, so ingress completes it with `TenantKey::TenantId`; an
/// `Idempotency-Key` header goes in with [`NormalizedLead::with_source_event_id`].
pub fn api_call(body: &[u8]) -> Result<NormalizedLead, NormalizeError> {
    Ok(CallRequest::parse(body)?.into_lead())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BODY: &str = r#"{
        "phone": "+1 201 555 0123",
        "first_name": "Jane",
        "last_name": "Doe",
        "email": "jane.doe@example.com",
        "timezone": "America/Chicago",
        "external_id": "crm-123",
        "campaign_id": "spring-promo",
        "custom_fields": {"service": "cleaning", "visits": 3}
    }"#;

    #[test]
    fn a_call_request_is_a_lead_from_the_api() {
        let lead = api_call(BODY.as_bytes()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::Api,
            tenant_hint: None,
            source_event_id: None,
            dedupe_key: lead.content_hash(),
            external_id: Some("crm-123".to_owned()),
            phone_raw: Some("+1 201 555 0123".to_owned()),
            phone_e164: Some("+12015550123".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/Chicago".to_owned()),
            tags: Vec::new(),
            custom_fields: serde_json::from_value(json!({"service": "cleaning", "visits": 3}))
                .unwrap(),
            campaign_id: Some("spring-promo".to_owned()),
            occurred_at: None,
            trigger: None,
        };
        assert_eq!(lead, expected);
        assert!(lead.dedupe_key.starts_with("sha256:"));
    }

    #[test]
    fn an_idempotency_key_becomes_the_dedupe_key() {
        let lead = api_call(BODY.as_bytes())
            .unwrap()
            .with_source_event_id(" req-42 ");
        assert_eq!(lead.source_event_id.as_deref(), Some("req-42"));
        assert_eq!(lead.dedupe_key, "api:req-42");
        let long = "k".repeat(201);
        let lead = api_call(BODY.as_bytes())
            .unwrap()
            .with_source_event_id(&long);
        assert!(lead.dedupe_key.starts_with("api:sha256:"));
        assert_eq!(lead.dedupe_key.len(), "api:sha256:".len() + 64);
    }

    #[test]
    fn parsing_agrees_with_the_derived_deserialize() {
        let parsed = CallRequest::parse(BODY.as_bytes()).unwrap();
        let derived: CallRequest = serde_json::from_str(BODY).unwrap();
        assert_eq!(parsed, derived);
        for bad in [
            r#"{"first_name": "Jane"}"#,
            r#"{"phone": 12015550123}"#,
            r#"{"phone": "+12015550123", "mobile": "x"}"#,
            r#"{"phone": "+12015550123", "custom_fields": []}"#,
        ] {
            assert!(CallRequest::parse(bad.as_bytes()).is_err(), "{bad}");
            assert!(serde_json::from_str::<CallRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field_and_cut_long_names() {
        assert_eq!(
            api_call(br#"{"first_name": "Jane"}"#)
                .unwrap_err()
                .to_string(),
            "missing `phone`"
        );
        assert_eq!(
            api_call(br#"{"phone": 12015550123}"#)
                .unwrap_err()
                .to_string(),
            "`phone` must be a string, found a number"
        );
        assert_eq!(
            api_call(br#"{"phone": "+12015550123", "timezone": "Mars/Olympus"}"#)
                .unwrap_err()
                .to_string(),
            "`timezone` must be an iana time zone, e.g. America/Chicago"
        );
        let long_key = "x".repeat(500);
        let body = format!(r#"{{"phone": "+12015550123", "{long_key}": 1}}"#);
        let message = api_call(body.as_bytes()).unwrap_err().to_string();
        assert!(message.chars().count() < 120, "{message}");
        assert!(
            message.ends_with("…` is not a field of a call request"),
            "{message}"
        );
    }
}
