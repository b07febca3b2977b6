//! A tenant's own webhook: any JSON, read through the tenant's [`FieldMapping`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{
    NormalizeError, NormalizedLead, datetime, excerpt, iana_timezone, parse_json, tags, text,
};
use crate::events::lead::LeadSource;

/// Where each lead field is in a tenant's webhook body, as JSON pointers (RFC 6901), e.g.
/// `/data/contact/phone`.
///
/// Only `phone` is required. A pointer that finds nothing leaves its field empty; a pointer
/// that finds the wrong kind of value is a [`NormalizeError::Invalid`] naming the pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The phone number (a string or a number).
    pub phone: String,
    /// The full name.
    #[serde(default)]
    pub name: Option<String>,
    /// The given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// The family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// The e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// The IANA time zone (a value that is not one is left out).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The sender's id of the contact.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The sender's id of this delivery; it becomes the dedupe key.
    #[serde(default)]
    pub event_id: Option<String>,
    /// Tags: an array of strings, or one comma-separated string.
    #[serde(default)]
    pub tags: Option<String>,
    /// The calling campaign.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// When the event happened (RFC 3339, or epoch milliseconds).
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// Extra fields to keep, by the name they get in `custom_fields`; values are copied as
    /// they are (any JSON).
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
}

impl FieldMapping {
    /// Checks that every pointer is a JSON pointer (`/…`) and every custom field has a name.
    pub fn validate(&self) -> Result<(), NormalizeError> {
        let optional = [
            ("name", &self.name),
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("email", &self.email),
            ("timezone", &self.timezone),
            ("external_id", &self.external_id),
            ("event_id", &self.event_id),
            ("tags", &self.tags),
            ("campaign_id", &self.campaign_id),
            ("occurred_at", &self.occurred_at),
        ];
        check_pointer("phone", &self.phone)?;
        for (field, pointer) in optional {
            if let Some(pointer) = pointer {
                check_pointer(field, pointer)?;
            }
        }
        for (name, pointer) in &self.custom_fields {
            if name.trim().is_empty() {
                return Err(NormalizeError::Mapping {
                    field: "custom_fields".to_owned(),
                    problem: "has an entry without a name".to_owned(),
                });
            }
            check_pointer(&format!("custom_fields.{name}"), pointer)?;
        }
        Ok(())
    }
}

fn check_pointer(field: &str, pointer: &str) -> Result<(), NormalizeError> {
    if pointer.starts_with('/') {
        Ok(())
    } else {
        Err(NormalizeError::Mapping {
            field: excerpt(field),
            problem: "must be a json pointer starting with `/`, e.g. `/data/phone`".to_owned(),
        })
    }
}

/// Normalizes a tenant's own webhook body (JSON of any shape) with its `mapping`.
///
/// Errors name the mapping's pointer (`/data/phone must be a string, found an object`).
/// `tenant_hint` and `trigger` stay empty: ingress knows the tenant from the URL's key.
pub fn custom(body: &[u8], mapping: &FieldMapping) -> Result<NormalizedLead, NormalizeError> {
    mapping.validate()?;
    let document = parse_json(body)?;
    let at = |pointer: &str| document.pointer(pointer);
    let optional_text = |pointer: &Option<String>| match pointer {
        Some(pointer) => text(at(pointer), pointer),
        None => Ok(None),
    };

    let mut lead = NormalizedLead::new(LeadSource::Custom);
    lead.phone_raw = text(at(&mapping.phone), &mapping.phone)?;
    lead.full_name = optional_text(&mapping.name)?;
    lead.first_name = optional_text(&mapping.first_name)?;
    lead.last_name = optional_text(&mapping.last_name)?;
    lead.email = optional_text(&mapping.email)?;
    lead.timezone = iana_timezone(optional_text(&mapping.timezone)?);
    lead.external_id = optional_text(&mapping.external_id)?;
    lead.source_event_id = optional_text(&mapping.event_id)?;
    lead.campaign_id = optional_text(&mapping.campaign_id)?;
    if let Some(pointer) = &mapping.tags {
        lead.tags = tags(at(pointer), pointer)?;
    }
    if let Some(pointer) = &mapping.occurred_at {
        lead.occurred_at = datetime(at(pointer), pointer)?;
    }
    for (name, pointer) in &mapping.custom_fields {
        if let Some(value) = at(pointer).filter(|value| !value.is_null()) {
            lead.custom_fields.insert(name.clone(), Value::clone(value));
        }
    }
    Ok(lead.finish(None))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LEAD: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/custom/lead.json"
    ));

    fn mapping() -> FieldMapping {
        serde_json::from_value(json!({
            "phone": "/data/contact/phone",
            "name": "/data/contact/name",
            "first_name": "/data/contact/first",
            "last_name": "/data/contact/last",
            "email": "/data/contact/email",
            "timezone": "/data/tz",
            "external_id": "/data/lead_id",
            "event_id": "/event/id",
            "tags": "/data/labels",
            "campaign_id": "/data/campaign",
            "occurred_at": "/event/created_at",
            "custom_fields": {
                "service": "/data/answers/service",
                "budget": "/data/answers/budget",
                "insured": "/data/answers/insured",
                "not there": "/data/answers/nope"
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_custom_webhook_is_read_through_its_mapping() {
        let lead = custom(LEAD.as_bytes(), &mapping()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::Custom,
            tenant_hint: None,
            source_event_id: Some("evt_01JDW3K8Q2N5R7T9V1X3Z5B7D9".to_owned()),
            dedupe_key: "custom:evt_01JDW3K8Q2N5R7T9V1X3Z5B7D9".to_owned(),
            external_id: Some("L-20931".to_owned()),
            phone_raw: Some("(201) 555-0187".to_owned()),
            phone_e164: Some("+12015550187".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/New_York".to_owned()),
            tags: vec!["website".to_owned(), "cleaning".to_owned()],
            custom_fields: serde_json::from_value(json!({
                "service": "Cleaning",
                "budget": 250,
                "insured": true
            }))
            .unwrap(),
            campaign_id: Some("spring-promo".to_owned()),
            occurred_at: Some("2026-11-24T08:00:00Z".parse().unwrap()),
            trigger: None,
        };
        assert_eq!(lead, expected);
    }

    #[test]
    fn a_missing_phone_is_accepted_for_resolve_tenant_to_reject() {
        let lead = custom(br#"{"data": {"contact": {"name": "Jane"}}}"#, &mapping()).unwrap();
        assert_eq!(lead.phone_raw, None);
        assert_eq!(lead.phone_e164, None);
        let lead = custom(
            br#"{"data": {"contact": {"phone": "call me"}}}"#,
            &mapping(),
        )
        .unwrap();
        assert_eq!(lead.phone_raw.as_deref(), Some("call me"));
        assert_eq!(lead.phone_e164, None);
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_by_its_pointer() {
        let error = custom(br#"{"data": {"contact": {"phone": ["1"]}}}"#, &mapping());
        assert_eq!(
            error.unwrap_err().to_string(),
            "`/data/contact/phone` must be a string, found an array"
        );
    }

    #[test]
    fn a_mapping_that_is_not_made_of_pointers_is_a_configuration_error() {
        let mut mapping = mapping();
        mapping.email = Some("data.contact.email".to_owned());
        assert_eq!(
            custom(b"{}", &mapping).unwrap_err().to_string(),
            "field mapping `email` must be a json pointer starting with `/`, e.g. `/data/phone`"
        );
        let unknown: Result<FieldMapping, _> =
            serde_json::from_value(json!({"phone": "/p", "mobile": "/m"}));
        assert!(unknown.is_err());
    }
}
