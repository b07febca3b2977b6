//! The later steps of a lead: let through by dedupe, then resolved to its tenant.
//!
//! `lead.received` (ingress) → dedupe → [`LeadUnique`] → resolve_tenant → [`LeadResolved`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use super::lead::{LeadReceived, LeadSource};
use crate::bus::envelope::Meta;
use crate::bus::subjects::{self, TenantToken};
use crate::ids::{CallId, PhoneNumber};

/// A lead the dedupe stage let through: the first copy of its dedupe key within the horizon.
///
/// Version 1. The payload is exactly the `lead.received` it passes on; the envelope's tenant
/// is the same too (possibly still the platform tenant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LeadUnique(pub LeadReceived);

impl Event for LeadUnique {
    const TYPE: &'static str = "lead.unique";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::leads_unique(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::leads_unique(TenantToken::Any)
    }
}

/// Where a resolved lead's time zone came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimezoneSource {
    /// The sender gave it (a CRM field, the API request).
    Lead,
    /// Derived from the phone number (its area code or country has one zone).
    Phone,
    /// The tenant's own time zone (configuration, else the client's).
    Tenant,
}

/// A lead ready for admission: its tenant known (the envelope's `ce-tenantid`), its number in
/// E.164, its time zone decided, and its number on none of the tenant's do-not-call lists.
///
/// Version 1. Within it, fields may only be added, each with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeadResolved {
    /// Which kind of sender produced the lead.
    pub source: LeadSource,
    /// The provider's id of the delivery, when it gave one.
    #[serde(default)]
    pub source_event_id: Option<String>,
    /// The lead's dedupe key (see `lead.received`).
    pub dedupe_key: String,
    /// The CRM's id of the contact or record.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The number to call, E.164.
    #[schemars(with = "String")]
    pub phone: PhoneNumber,
    /// The number exactly as received.
    pub phone_raw: String,
    /// The ISO 3166 country of the number, e.g. `US`.
    #[serde(default)]
    pub phone_region: Option<String>,
    /// Given name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Full name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// E-mail address as received.
    #[serde(default)]
    pub email: Option<String>,
    /// IANA time zone of the person, used for calling windows.
    pub timezone: String,
    /// Where `timezone` came from.
    pub timezone_source: TimezoneSource,
    /// Tags of the contact in the CRM.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Other fields the sender gave, by the sender's key.
    #[serde(default)]
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// The calling campaign, when the sender named one.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// When ingress received the lead.
    pub received_at: DateTime<Utc>,
    /// When the provider says the triggering event happened.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// What triggered it at the sender.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Set when the scheduler published this lead: the retry or follow-up it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduledAttempt>,
}

/// What kind of scheduled attempt a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Another attempt of the same call.
    Retry,
    /// A stage of a follow-up campaign: a new call.
    FollowUp,
    /// A callback the lead asked for on a call (the agent's `schedule_callback`): a new call.
    Callback,
}

impl JobKind {
    /// Returns the name stored in `scheduled_jobs.kind`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::FollowUp => "follow_up",
            Self::Callback => "callback",
        }
    }

    /// Parses a stored name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "retry" => Some(Self::Retry),
            "follow_up" => Some(Self::FollowUp),
            "callback" => Some(Self::Callback),
            _ => None,
        }
    }
}

/// A retry or follow-up stage the scheduler fired (`scheduled_jobs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduledAttempt {
    /// The job (`scheduled_jobs.id`); the dial stage checks it was not cancelled meanwhile.
    pub job_id: uuid::Uuid,
    /// Retry or follow-up.
    pub kind: JobKind,
    /// Why it was scheduled.
    pub reason: String,
    /// A retry: the call dialed again. A follow-up: absent (a new call).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub call_id: Option<CallId>,
    /// Which dial of the call this is, from 1.
    pub attempt_number: u32,
    /// A follow-up: its campaign.
    #[serde(default)]
    pub campaign_id: Option<uuid::Uuid>,
    /// A follow-up: its campaign's name.
    #[serde(default)]
    pub campaign_name: Option<String>,
    /// A follow-up: the stage, from 0.
    #[serde(default)]
    pub stage_index: Option<u32>,
    /// A follow-up stage's agent variant.
    #[serde(default)]
    pub agent_variant: Option<String>,
    /// A follow-up stage's opening message.
    #[serde(default)]
    pub message: Option<String>,
}

impl Event for LeadResolved {
    const TYPE: &'static str = "lead.resolved";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::leads_resolved(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::leads_resolved(TenantToken::Any)
    }
}
