//! Leads: a request to call a person, normalized from whatever system sent it.
//!
//! Every way a lead enters the platform (a HighLevel marketplace event or workflow action, a
//! Zoho workflow rule, a tenant's own webhook, `POST /v1/calls`, later bulk uploads and the
//! scheduler) ends as one [`LeadReceived`] on `leads.received.<tenant>`. The per-source
//! parsing lives in `crate::normalize`; this module is only the wire type.
//!
//! # Finding the tenant
//!
//! Ingress does not always know whose lead it holds: a HighLevel marketplace app has one
//! webhook URL for every location that installed it, and a tenant's webhook URL carries an
//! opaque key rather than its id. So the payload always carries a [`TenantKey`], and:
//!
//! - when ingress knows the tenant ([`TenantKey::TenantId`], e.g. an API call authenticated
//!   with the tenant's key), the envelope's `ce-tenantid` is that tenant and the subject is
//!   `leads.received.<tenant id>`;
//! - otherwise the envelope's tenant is `TenantId::PLATFORM` (the nil uuid, as for other
//!   events that belong to no client yet) and the subject is `leads.received.<nil uuid>`.
//!   `resolve_tenant` maps the key to a tenant and re-emits the lead under that tenant, or
//!   dead-letters it.
//!
//! Invariant: the envelope tenant is either `TenantId::PLATFORM` or equal to
//! `TenantKey::TenantId(..)` in the payload.
//!
//! # Phones
//!
//! Normalizers accept a lead without a usable phone (`phone_raw` missing, or `phone_e164`
//! missing because it does not parse): `resolve_tenant` dead-letters it with a reason the
//! tenant can read. A webhook is never refused for a bad phone number, because the sender
//! could not do anything better with a 4xx than we can with a dead letter.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use crate::bus::envelope::Meta;
use crate::bus::subjects::{self, TenantToken};
use crate::ids::TenantId;

/// A lead was received: someone asked the platform to call a person.
///
/// Version 1. Within it, fields may only be added, each with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeadReceived {
    /// How to find the tenant (see the module documentation).
    pub tenant_key: TenantKey,
    /// Which kind of sender produced the lead.
    pub source: LeadSource,
    /// The provider's id of this delivery or event, when it gives one (HighLevel
    /// `webhookId`, a custom webhook's mapped event id, an API idempotency key).
    #[serde(default)]
    pub source_event_id: Option<String>,
    /// Identifies this delivery for deduplication, within one tenant.
    ///
    /// - With a `source_event_id`: `<source>:<source_event_id>`, e.g.
    ///   `gohighlevel_app:8f14e45f-ceea-467a-9f4e-5a3b6c2d1e0f`; an id longer than 200
    ///   characters becomes `<source>:sha256:<hex of the id>`.
    /// - Without one: `sha256:<hex>`, the SHA-256 of the canonical JSON (object keys sorted at
    ///   every depth, no whitespace) of these normalized fields: `source`, `external_id`,
    ///   `phone` (= `phone_raw`), `first_name`, `last_name`, `full_name`, `email`, `timezone`,
    ///   `tags` (sorted), `custom_fields`, `campaign_id`, `trigger`, and `occurred_at` (RFC
    ///   3339, UTC, microseconds), absent ones as `null`. `received_at`, `tenant_key` and
    ///   `phone_e164` are not part of it, so a retried delivery hashes the same whatever its
    ///   key order or whitespace. The text is serde_json's; for strings, integers and short
    ///   decimals it is byte for byte Python's `json.dumps(doc, sort_keys=True,
    ///   separators=(",", ":"), ensure_ascii=False)`.
    ///
    /// It names one delivery, not one person: the same contact sent twice with different
    /// content yields two keys.
    pub dedupe_key: String,
    /// The CRM's id of the contact or record (HighLevel contact id, Zoho record id).
    #[serde(default)]
    pub external_id: Option<String>,
    /// The phone number exactly as received (trimmed), if any.
    #[serde(default)]
    pub phone_raw: Option<String>,
    /// `phone_raw` in E.164 when it is a valid number, read with the sender's country (when it
    /// gave one) or `US` as the region of a national number. `resolve_tenant` decides with
    /// the tenant's own region; this is a hint.
    #[serde(default)]
    pub phone_e164: Option<String>,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Full name as the sender gave it, else `first_name last_name`.
    #[serde(default)]
    pub full_name: Option<String>,
    /// E-mail address as received (trimmed, not validated).
    #[serde(default)]
    pub email: Option<String>,
    /// IANA time zone of the person, when the sender gave a valid one.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Tags of the contact in the CRM, in the sender's order, without duplicates.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Any other fields the sender gave, by the sender's key (a HighLevel custom field id, a
    /// workflow field's display name, a Zoho field API name, a custom mapping's name).
    #[serde(default)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// The calling campaign the lead is for, when the sender named one.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// When ingress received the lead.
    pub received_at: DateTime<Utc>,
    /// When the provider says the triggering event happened, if it says.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// What triggered it at the sender, e.g. `ContactCreate` or `workflow:New Lead Call`.
    #[serde(default)]
    pub trigger: Option<String>,
}

/// Which kind of sender produced a lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadSource {
    /// A HighLevel marketplace-app webhook event (`ContactCreate`, …).
    GohighlevelApp,
    /// A HighLevel workflow "Webhook" or "Custom Webhook" action.
    GohighlevelWorkflow,
    /// A Zoho CRM workflow rule's webhook action.
    ZohoWorkflow,
    /// A Zoho CRM notification (watch) callback, after the record was fetched.
    ZohoNotification,
    /// A tenant's own webhook, read through its field mapping.
    Custom,
    /// `POST /v1/calls`.
    Api,
    /// A bulk upload.
    Bulk,
    /// The platform's own scheduler (retries, callbacks).
    Scheduler,
}

impl LeadSource {
    /// Returns the wire name, e.g. `gohighlevel_app`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GohighlevelApp => "gohighlevel_app",
            Self::GohighlevelWorkflow => "gohighlevel_workflow",
            Self::ZohoWorkflow => "zoho_workflow",
            Self::ZohoNotification => "zoho_notification",
            Self::Custom => "custom",
            Self::Api => "api",
            Self::Bulk => "bulk",
            Self::Scheduler => "scheduler",
        }
    }
}

impl fmt::Display for LeadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to find a lead's tenant, from what ingress knew when it received the lead.
///
/// On the wire: `{"kind": "gohighlevel_location", "value": "ve9EPM428h8vShlRW1KT"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum TenantKey {
    /// The tenant itself: ingress authenticated it (an API key) or resolved it already.
    TenantId(TenantId),
    /// A HighLevel location (sub-account) id, from the event's `locationId` or the workflow
    /// payload's `location.id`.
    GohighlevelLocation(String),
    /// A Zoho CRM organization id.
    ZohoOrg(String),
    /// The opaque per-tenant key in the webhook URL (`/webhooks/<vendor>/<key>`).
    PathKey(String),
}

impl TenantKey {
    /// Returns `<kind>:<value>`, e.g. `gohighlevel_location:ve9EPM428h8vShlRW1KT`: the scope of
    /// a dedupe key while the tenant is unknown.
    pub fn scope(&self) -> String {
        match self {
            Self::TenantId(id) => format!("tenant_id:{id}"),
            Self::GohighlevelLocation(value) => format!("gohighlevel_location:{value}"),
            Self::ZohoOrg(value) => format!("zoho_org:{value}"),
            Self::PathKey(value) => format!("path_key:{value}"),
        }
    }
}

impl Event for LeadReceived {
    const TYPE: &'static str = "lead.received";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::leads_received(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::leads_received(TenantToken::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leads_are_published_per_tenant_and_on_the_platform_token_while_unresolved() {
        let tenant = TenantId::parse("0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f").unwrap();
        assert_eq!(
            subjects::leads_received(TenantToken::Id(&tenant)),
            "leads.received.0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f"
        );
        assert_eq!(
            subjects::leads_received(TenantToken::Id(&TenantId::PLATFORM)),
            "leads.received.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(LeadReceived::subject_pattern(), "leads.received.*");
    }

    #[test]
    fn tenant_keys_are_tagged_with_their_kind() {
        let key = TenantKey::GohighlevelLocation("ve9EPM428h8vShlRW1KT".to_owned());
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!({"kind": "gohighlevel_location", "value": "ve9EPM428h8vShlRW1KT"})
        );
        let tenant = TenantId::parse("0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f").unwrap();
        let decoded: TenantKey = serde_json::from_value(serde_json::json!(
            {"kind": "tenant_id", "value": "0191e8a4-7c1e-7d2a-9f6e-1a2b3c4d5e6f"}
        ))
        .unwrap();
        assert_eq!(decoded, TenantKey::TenantId(tenant));
    }

    #[test]
    fn a_minimal_v1_payload_decodes_with_defaults() {
        let lead: LeadReceived = serde_json::from_value(serde_json::json!({
            "tenant_key": {"kind": "path_key", "value": "k_abc"},
            "source": "custom",
            "dedupe_key": "custom:evt-1",
            "received_at": "2026-11-24T08:00:00Z"
        }))
        .unwrap();
        assert_eq!(lead.source, LeadSource::Custom);
        assert!(lead.tags.is_empty() && lead.custom_fields.is_empty());
        assert_eq!(lead.phone_raw, None);
        let bytes = crate::bus::codec::encode(&lead).unwrap();
        let decoded: LeadReceived = crate::bus::codec::decode(&bytes).unwrap();
        assert_eq!(decoded, lead);
    }

    #[test]
    fn sources_render_their_wire_names() {
        for source in [
            LeadSource::GohighlevelApp,
            LeadSource::GohighlevelWorkflow,
            LeadSource::ZohoWorkflow,
            LeadSource::ZohoNotification,
            LeadSource::Custom,
            LeadSource::Api,
            LeadSource::Bulk,
            LeadSource::Scheduler,
        ] {
            assert_eq!(
                serde_json::to_value(source).unwrap(),
                serde_json::Value::from(source.as_str())
            );
        }
    }
}
