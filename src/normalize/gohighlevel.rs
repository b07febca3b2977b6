//! HighLevel (GoHighLevel / LeadConnector): marketplace-app webhook events and workflow
//! webhook actions (`shared/protocols/crm-calendar.md` A.5.1 and A.5.3).
//!
//! Signatures (A.5.2) are verified by ingress on the raw bytes before a normalizer runs.

use serde_json::{Map, Value};

use super::{
    NormalizeError, NormalizedLead, datetime, excerpt, iana_timezone, json_kind, keep_rest, object,
    parse_object, region_code, tags, text,
};
use crate::events::lead::{LeadSource, TenantKey};

/// Marketplace events whose body is the contact itself, at the top level.
const CONTACT_EVENTS: &[&str] = &["ContactCreate", "ContactUpdate", "ContactTagUpdate"];
/// Marketplace events whose body is an opportunity, naming its contact by `contactId`.
const OPPORTUNITY_EVENTS: &[&str] = &[
    "OpportunityCreate",
    "OpportunityUpdate",
    "OpportunityStageUpdate",
    "OpportunityStatusUpdate",
];
/// Marketplace events whose body nests the appointment under `appointment`.
const APPOINTMENT_EVENTS: &[&str] = &["AppointmentCreate", "AppointmentUpdate"];

/// Keys of every marketplace delivery (A.5.1, A.5.2) that describe the delivery, not a lead.
const ENVELOPE_KEYS: &[&str] = &["type", "locationId", "webhookId", "timestamp"];
/// Contact keys read into typed lead fields (`country` is only a region hint and is kept).
const CONTACT_KEYS: &[&str] = &[
    "id",
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "timezone",
    "tags",
    "customFields",
];

/// Normalizes a HighLevel marketplace-app webhook event.
///
/// Lead-carrying events are the contact events (`ContactCreate`, `ContactUpdate`,
/// `ContactTagUpdate`), the opportunity events (`OpportunityCreate`, `…Update`,
/// `…StageUpdate`, `…StatusUpdate`) and `AppointmentCreate` / `AppointmentUpdate`; any other
/// type is [`NormalizeError::NotALead`]. `type` and `locationId` are required.
///
/// - `tenant_hint` = `locationId`; `source_event_id` = `webhookId`; `trigger` = `type`.
/// - `occurred_at` = `timestamp`, else `dateAdded` for the `…Create` events.
/// - Contact events: `id` is the `external_id`; `customFields` entries land in
///   `custom_fields` by their field id, and every other contact key (`city`, `dnd`, `source`,
///   …) by its own name.
/// - Opportunity events: `contactId` is the `external_id`; a nested `contact` object, when
///   present, supplies the person's fields; every other key lands in `custom_fields` as
///   `opportunity.<key>`. Opportunity events usually carry no phone.
/// - Appointment events: `appointment.contactId` is the `external_id`; the other
///   appointment keys land as `appointment.<key>`.
/// - The contact's `country` (two letters) is the region of a national phone number.
pub fn gohighlevel_app(body: &[u8]) -> Result<NormalizedLead, NormalizeError> {
    let event = parse_object(body)?;
    let event_type =
        text(event.get("type"), "type")?.ok_or_else(|| NormalizeError::missing("type"))?;
    let is_contact = CONTACT_EVENTS.contains(&event_type.as_str());
    let is_opportunity = OPPORTUNITY_EVENTS.contains(&event_type.as_str());
    let is_appointment = APPOINTMENT_EVENTS.contains(&event_type.as_str());
    if !(is_contact || is_opportunity || is_appointment) {
        return Err(NormalizeError::NotALead {
            event_type: excerpt(&event_type),
        });
    }
    let location_id = text(event.get("locationId"), "locationId")?
        .ok_or_else(|| NormalizeError::missing("locationId"))?;

    let mut lead = NormalizedLead::new(LeadSource::GohighlevelApp);
    lead.tenant_hint = Some(TenantKey::GohighlevelLocation(location_id));
    lead.source_event_id = text(event.get("webhookId"), "webhookId")?;
    lead.occurred_at = datetime(event.get("timestamp"), "timestamp")?;
    if lead.occurred_at.is_none() && event_type.ends_with("Create") && !is_appointment {
        lead.occurred_at = datetime(event.get("dateAdded"), "dateAdded")?;
    }

    let region = if is_contact {
        contact_event(&event, &mut lead)?
    } else if is_opportunity {
        opportunity_event(&event, &mut lead)?
    } else {
        appointment_event(&event, &mut lead)?
    };
    lead.trigger = Some(event_type);
    Ok(lead.finish(region.as_deref()))
}

/// Reads a contact event (the contact is the body); returns its region code.
fn contact_event(
    event: &Map<String, Value>,
    lead: &mut NormalizedLead,
) -> Result<Option<String>, NormalizeError> {
    let region = read_contact(event, "", lead)?;
    let consumed = [ENVELOPE_KEYS, CONTACT_KEYS].concat();
    keep_rest(event, &consumed, None, &mut lead.custom_fields);
    Ok(region)
}

/// Reads an opportunity event (the contact is `contactId`, maybe a nested `contact`).
fn opportunity_event(
    event: &Map<String, Value>,
    lead: &mut NormalizedLead,
) -> Result<Option<String>, NormalizeError> {
    lead.external_id = text(event.get("contactId"), "contactId")?;
    let mut region = None;
    if let Some(contact) = object(event.get("contact"), "contact")? {
        region = read_contact(contact, "contact", lead)?;
        keep_rest(
            contact,
            CONTACT_KEYS,
            Some("contact"),
            &mut lead.custom_fields,
        );
    }
    let consumed = [ENVELOPE_KEYS, &["contactId", "contact"]].concat();
    keep_rest(
        event,
        &consumed,
        Some("opportunity"),
        &mut lead.custom_fields,
    );
    Ok(region)
}

/// Reads an appointment event (the contact is `appointment.contactId`).
fn appointment_event(
    event: &Map<String, Value>,
    lead: &mut NormalizedLead,
) -> Result<Option<String>, NormalizeError> {
    let appointment = object(event.get("appointment"), "appointment")?
        .ok_or_else(|| NormalizeError::missing("appointment"))?;
    lead.external_id = text(appointment.get("contactId"), "appointment.contactId")?;
    keep_rest(
        appointment,
        &["contactId"],
        Some("appointment"),
        &mut lead.custom_fields,
    );
    let consumed = [ENVELOPE_KEYS, &["appointment"]].concat();
    keep_rest(event, &consumed, None, &mut lead.custom_fields);
    Ok(None)
}

/// Reads HighLevel's camelCase contact fields from `contact` (paths under `prefix`) into
/// `lead`; returns the contact's region code. An `external_id` already set is kept.
fn read_contact(
    contact: &Map<String, Value>,
    prefix: &str,
    lead: &mut NormalizedLead,
) -> Result<Option<String>, NormalizeError> {
    let path = |key: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    };
    if lead.external_id.is_none() {
        lead.external_id = text(contact.get("id"), &path("id"))?;
    }
    lead.first_name = text(contact.get("firstName"), &path("firstName"))?;
    lead.last_name = text(contact.get("lastName"), &path("lastName"))?;
    lead.full_name = text(contact.get("name"), &path("name"))?;
    lead.email = text(contact.get("email"), &path("email"))?;
    lead.phone_raw = text(contact.get("phone"), &path("phone"))?;
    lead.timezone = iana_timezone(text(contact.get("timezone"), &path("timezone"))?);
    lead.tags = tags(contact.get("tags"), &path("tags"))?;
    read_custom_fields(contact.get("customFields"), &path("customFields"), lead)?;
    let country = text(contact.get("country"), &path("country"))?;
    Ok(region_code(country.as_deref()))
}

/// Reads `customFields: [{id, value}]` into `custom_fields`, keyed by field id (or by `key`
/// / `fieldKey` when a delivery has no id).
fn read_custom_fields(
    value: Option<&Value>,
    path: &str,
    lead: &mut NormalizedLead,
) -> Result<(), NormalizeError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(NormalizeError::invalid(
                path,
                format!("must be an array, found {}", json_kind(other)),
            ));
        }
    };
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let field = object(Some(item), &item_path)?
            .ok_or_else(|| NormalizeError::invalid(&item_path, "must be an object, found null"))?;
        let mut id = None;
        for key in ["id", "key", "fieldKey"] {
            if id.is_none() {
                id = text(field.get(key), &format!("{item_path}.{key}"))?;
            }
        }
        let id = id.ok_or_else(|| NormalizeError::missing(&format!("{item_path}.id")))?;
        let value = field.get("value").cloned().unwrap_or(Value::Null);
        lead.custom_fields.insert(id, value);
    }
    Ok(())
}

/// Snake_case contact keys of the workflow payload read into typed lead fields.
const WORKFLOW_LEAD_KEYS: &[&str] = &[
    "contact_id",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "tags",
    "timezone",
];
/// Workflow context objects read (or deliberately dropped) rather than kept as fields.
const WORKFLOW_CONTEXT_KEYS: &[&str] = &["location", "workflow", "user", "customData"];

/// Normalizes the body of a HighLevel workflow "Webhook" action (or a "Custom Webhook"
/// action whose body follows the same shape).
///
/// - Contact fields are the top-level snake_case keys: `contact_id` (the `external_id`),
///   `first_name`, `last_name`, `full_name`, `email`, `phone`, `timezone`, and `tags` (a
///   comma-separated string, or an array).
/// - `tenant_hint` = `location.id`; `trigger` = `workflow:<workflow.name>` (or the workflow
///   id, or just `workflow`).
/// - `campaign_id` = `customData.campaign_id`: the key tenants add in the action's "Custom
///   Data" section to choose a campaign.
/// - `custom_fields`: every other top-level key (custom fields arrive by display name, e.g.
///   `Preferred Call Time`), then the other `customData` entries, which win on a clash.
///   `user` is dropped: it describes the HighLevel user who owns the workflow, not the lead.
/// - The payload has no delivery id and no event time: `dedupe_key` is the content hash and
///   `occurred_at` is `None`. `country` is the region of a national phone number.
pub fn gohighlevel_workflow(body: &[u8]) -> Result<NormalizedLead, NormalizeError> {
    let payload = parse_object(body)?;
    let mut lead = NormalizedLead::new(LeadSource::GohighlevelWorkflow);
    lead.external_id = text(payload.get("contact_id"), "contact_id")?;
    lead.first_name = text(payload.get("first_name"), "first_name")?;
    lead.last_name = text(payload.get("last_name"), "last_name")?;
    lead.full_name = text(payload.get("full_name"), "full_name")?;
    lead.email = text(payload.get("email"), "email")?;
    lead.phone_raw = text(payload.get("phone"), "phone")?;
    lead.timezone = iana_timezone(text(payload.get("timezone"), "timezone")?);
    lead.tags = tags(payload.get("tags"), "tags")?;
    let region = region_code(text(payload.get("country"), "country")?.as_deref());

    if let Some(location) = object(payload.get("location"), "location")? {
        lead.tenant_hint =
            text(location.get("id"), "location.id")?.map(TenantKey::GohighlevelLocation);
    }
    let workflow_name = match object(payload.get("workflow"), "workflow")? {
        Some(workflow) => match text(workflow.get("name"), "workflow.name")? {
            Some(name) => Some(name),
            None => text(workflow.get("id"), "workflow.id")?,
        },
        None => None,
    };
    lead.trigger = Some(match workflow_name {
        Some(name) => format!("workflow:{name}"),
        None => "workflow".to_owned(),
    });

    let consumed = [WORKFLOW_LEAD_KEYS, WORKFLOW_CONTEXT_KEYS].concat();
    keep_rest(&payload, &consumed, None, &mut lead.custom_fields);
    if let Some(custom_data) = object(payload.get("customData"), "customData")? {
        lead.campaign_id = text(custom_data.get("campaign_id"), "customData.campaign_id")?;
        keep_rest(custom_data, &["campaign_id"], None, &mut lead.custom_fields);
    }
    Ok(lead.finish(region.as_deref()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;

    const CONTACT_CREATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/contact_create.json"
    ));
    const CONTACT_TAG_UPDATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/contact_tag_update.json"
    ));
    const OPPORTUNITY_STAGE_UPDATE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/opportunity_stage_update.json"
    ));
    const WORKFLOW_WEBHOOK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/webhooks/gohighlevel/workflow_webhook.json"
    ));

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn fields(value: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_contact_create_event_is_a_lead_keyed_by_its_webhook_id() {
        let lead = gohighlevel_app(CONTACT_CREATE.as_bytes()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::GohighlevelApp,
            tenant_hint: Some(TenantKey::GohighlevelLocation(
                "ve9EPM428h8vShlRW1KT".to_owned(),
            )),
            source_event_id: Some("0b6f4c8e-3a1d-4e7b-9c2f-5d8a1e6b7c90".to_owned()),
            dedupe_key: "gohighlevel_app:0b6f4c8e-3a1d-4e7b-9c2f-5d8a1e6b7c90".to_owned(),
            external_id: Some("nmFmQEsNgz6AVpgLVUJ0".to_owned()),
            phone_raw: Some("+12015550123".to_owned()),
            phone_e164: Some("+12015550123".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/Chicago".to_owned()),
            tags: vec!["ai-call-requested".to_owned(), "web-lead".to_owned()],
            custom_fields: fields(json!({
                "BcdmQEsNgz6AVpgLVUJ0": "XYZ Corp",
                "address1": "3535 1st St N",
                "assignedTo": "YlWd2wuCAZQzh2cH1fVZ",
                "attachments": [],
                "city": "Dolomite",
                "companyName": "Example Dental",
                "country": "US",
                "dateAdded": "2026-11-24T07:59:58.193Z",
                "dateOfBirth": "1990-01-05T00:00:00.000Z",
                "dnd": false,
                "postalCode": "35061",
                "source": "web form",
                "state": "AL",
                "website": "https://www.example.com"
            })),
            campaign_id: None,
            occurred_at: Some(at("2026-11-24T08:00:00.000Z")),
            trigger: Some("ContactCreate".to_owned()),
        };
        assert_eq!(lead, expected);
    }

    #[test]
    fn a_tag_update_reads_the_same_contact_shape() {
        let lead = gohighlevel_app(CONTACT_TAG_UPDATE.as_bytes()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::GohighlevelApp,
            tenant_hint: Some(TenantKey::GohighlevelLocation(
                "ve9EPM428h8vShlRW1KT".to_owned(),
            )),
            source_event_id: Some("4d2c9a71-8e5f-4b3a-a6d0-1f7e2c9b8a35".to_owned()),
            dedupe_key: "gohighlevel_app:4d2c9a71-8e5f-4b3a-a6d0-1f7e2c9b8a35".to_owned(),
            external_id: Some("nmFmQEsNgz6AVpgLVUJ0".to_owned()),
            phone_raw: Some("(201) 555-0123".to_owned()),
            phone_e164: Some("+12015550123".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/Chicago".to_owned()),
            tags: vec![
                "web-lead".to_owned(),
                "ai-call-requested".to_owned(),
                "spring-promo".to_owned(),
            ],
            custom_fields: fields(json!({
                "BcdmQEsNgz6AVpgLVUJ0": "XYZ Corp",
                "companyName": "Example Dental",
                "country": "US",
                "dateAdded": "2026-11-24T07:59:58.193Z",
                "dnd": false,
                "source": "web form"
            })),
            campaign_id: None,
            // Not dateAdded: that is when the contact was created, not when its tags changed.
            occurred_at: Some(at("2026-11-24T08:05:00Z")),
            trigger: Some("ContactTagUpdate".to_owned()),
        };
        assert_eq!(lead, expected);
    }

    #[test]
    fn an_opportunity_stage_update_without_a_webhook_id_is_keyed_by_its_content() {
        let lead = gohighlevel_app(OPPORTUNITY_STAGE_UPDATE.as_bytes()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::GohighlevelApp,
            tenant_hint: Some(TenantKey::GohighlevelLocation(
                "ve9EPM428h8vShlRW1KT".to_owned(),
            )),
            source_event_id: None,
            dedupe_key: lead.content_hash(),
            external_id: Some("cJAWDskpkJHbRbhAT7bs".to_owned()),
            phone_raw: None,
            phone_e164: None,
            first_name: None,
            last_name: None,
            full_name: None,
            email: None,
            timezone: None,
            tags: Vec::new(),
            custom_fields: fields(json!({
                "opportunity.assignedTo": "bNl8QNGXhIQJLv8eeASQ",
                "opportunity.dateAdded": "2021-11-26T12:41:02.193Z",
                "opportunity.id": "wWhVuzqpRuOA1ZVWi4FC",
                "opportunity.monetaryValue": 40,
                "opportunity.name": "Jane Doe - cleaning",
                "opportunity.pipelineId": "VDm7RPYC2GLUvdpKmBfC",
                "opportunity.pipelineStageId": "e93ba61a-53b3-45e7-985a-c7732dbcdb69",
                "opportunity.source": "web form",
                "opportunity.status": "open"
            })),
            campaign_id: None,
            occurred_at: None,
            trigger: Some("OpportunityStageUpdate".to_owned()),
        };
        assert_eq!(lead, expected);
        // Golden value: a change here changes every content-keyed dedupe key in flight.
        assert_eq!(
            lead.dedupe_key,
            "sha256:28e53f694986d2d00a7d67f020df1233256d8826b948e0a3e0daff50ea362b58"
        );
    }

    #[test]
    fn a_workflow_webhook_is_a_lead_with_its_workflow_as_trigger() {
        let lead = gohighlevel_workflow(WORKFLOW_WEBHOOK.as_bytes()).unwrap();
        let expected = NormalizedLead {
            source: LeadSource::GohighlevelWorkflow,
            tenant_hint: Some(TenantKey::GohighlevelLocation(
                "ve9EPM428h8vShlRW1KT".to_owned(),
            )),
            source_event_id: None,
            dedupe_key: lead.content_hash(),
            external_id: Some("nmFmQEsNgz6AVpgLVUJ0".to_owned()),
            phone_raw: Some("+1 201-555-0123".to_owned()),
            phone_e164: Some("+12015550123".to_owned()),
            first_name: Some("Jane".to_owned()),
            last_name: Some("Doe".to_owned()),
            full_name: Some("Jane Doe".to_owned()),
            email: Some("jane.doe@example.com".to_owned()),
            timezone: Some("America/Chicago".to_owned()),
            tags: vec!["ai-call-requested".to_owned(), "web-lead".to_owned()],
            custom_fields: fields(json!({
                "Preferred Call Time": "Morning",
                "attributionSource": {},
                "contact": {"attributionSource": {}, "lastAttributionSource": {}},
                "contact_source": "web form",
                "contact_type": "lead",
                "country": "US",
                "date_created": "2026-11-24T07:59:58.193Z",
                "full_address": "3535 1st St N, Dolomite AL 35061",
                "priority": "high",
                "triggerData": {}
            })),
            campaign_id: Some("spring-promo".to_owned()),
            occurred_at: None,
            trigger: Some("workflow:New Lead Call".to_owned()),
        };
        assert_eq!(lead, expected);
        assert_eq!(
            lead.dedupe_key,
            "sha256:2ca464b2f2e4647ca1886ba303f7a7fba359e574695eb27f15fcd4fbb147e5b4"
        );
    }

    #[test]
    fn events_without_a_lead_are_named_and_not_an_error_of_the_sender() {
        let error = gohighlevel_app(br#"{"type": "InboundMessage", "locationId": "x"}"#);
        assert_eq!(
            error,
            Err(NormalizeError::NotALead {
                event_type: "InboundMessage".to_owned()
            })
        );
    }

    #[test]
    fn a_marketplace_event_must_name_its_type_and_location() {
        assert_eq!(
            gohighlevel_app(br#"{"id": "c1"}"#).unwrap_err().to_string(),
            "missing `type`"
        );
        assert_eq!(
            gohighlevel_app(br#"{"type": "ContactCreate", "id": "c1"}"#)
                .unwrap_err()
                .to_string(),
            "missing `locationId`"
        );
    }

    #[test]
    fn wrong_types_are_named_by_their_path() {
        let body = br#"{"type": "ContactCreate", "locationId": "l",
            "customFields": [{"id": "a", "value": 1}, {"value": 2}]}"#;
        assert_eq!(
            gohighlevel_app(body).unwrap_err().to_string(),
            "missing `customFields[1].id`"
        );
        let body = br#"{"type": "ContactCreate", "locationId": "l", "tags": ["a", true]}"#;
        assert_eq!(
            gohighlevel_app(body).unwrap_err().to_string(),
            "`tags[1]` must be a string, found a boolean"
        );
        let body = br#"{"type": "ContactCreate", "locationId": "l", "phone": {"n": 1}}"#;
        assert_eq!(
            gohighlevel_app(body).unwrap_err().to_string(),
            "`phone` must be a string, found an object"
        );
        let body = br#"{"contact_id": "c", "location": "ve9EPM428h8vShlRW1KT"}"#;
        assert_eq!(
            gohighlevel_workflow(body).unwrap_err().to_string(),
            "`location` must be an object, found a string"
        );
    }

    #[test]
    fn an_appointment_event_names_its_contact() {
        let body = br#"{"type": "AppointmentCreate", "locationId": "l",
            "appointment": {"id": "a1", "contactId": "c1", "startTime": "2026-12-01T09:00:00-06:00"}}"#;
        let lead = gohighlevel_app(body).unwrap();
        assert_eq!(lead.external_id.as_deref(), Some("c1"));
        assert_eq!(
            lead.custom_fields,
            fields(
                json!({"appointment.id": "a1", "appointment.startTime": "2026-12-01T09:00:00-06:00"})
            )
        );
        assert_eq!(lead.trigger.as_deref(), Some("AppointmentCreate"));
    }
}
