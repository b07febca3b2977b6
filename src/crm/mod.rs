//! A tenant's CRM in our own vocabulary: contacts, fields, tags, notes, pipeline stages and
//! call logs. The `crm_sync` stage writes call outcomes through [`Crm`]; adapters translate
//! to each vendor's wire format (`shared/protocols/crm-calendar.md`).
//!
//! - [`gohighlevel`]: HighLevel API v2 (OAuth with rotating refresh tokens, or a Private
//!   Integration Token), its per-location rate limit respected on our side.
//! - `zoho`: Zoho CRM v8, data-center aware.
//! - [`custom`]: a proprietary REST CRM described by the tenant (endpoints, authentication,
//!   field mappings).
//! - [`Crms`]: each tenant's adapter, by its configuration's `crm`.
//! - [`conformance`]: the one suite every adapter passes, against its simulator.
//!
//! Vocabulary (one name per concept): a *contact* is the CRM's person record (a HighLevel
//! contact, a Zoho lead or contact); a *custom field* is named by the tenant's field key
//! (HighLevel field key, Zoho field API name, the custom CRM's mapped name); *status* is the
//! contact's lead status (a HighLevel custom field, Zoho `Lead_Status`). Every method takes the
//! tenant: adapters are process-wide and read each tenant's settings and credentials.

pub mod conformance;
pub mod crms;
pub mod custom;
pub mod gohighlevel;
pub mod zoho;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{CallId, PhoneNumber, TenantId};
pub use crate::providers::error::ProviderError;
pub use crms::Crms;

/// The CRM's id of a contact, as the CRM spells it. Parsed at the edge: never empty, at most
/// 128 visible ASCII characters, no `/` (ids travel in URL paths).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContactId(String);

impl ContactId {
    /// Returns the id as the CRM spells it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContactId {
    type Error = ProviderError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        let valid = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'/');
        if valid {
            Ok(Self(id))
        } else {
            Err(ProviderError::Invalid {
                reason: "a contact id is 1-128 visible characters without `/`".to_owned(),
            })
        }
    }
}

impl From<ContactId> for String {
    fn from(id: ContactId) -> Self {
        id.0
    }
}

impl std::fmt::Display for ContactId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A contact as the CRM holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Contact {
    /// The CRM's id (empty only in a [`Contact::default`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ContactId>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number as E.164, when the CRM's text parses as one.
    pub phone: Option<PhoneNumber>,
    /// IANA time zone, when the CRM holds one.
    pub timezone: Option<String>,
    /// The lead status.
    pub status: Option<String>,
    /// Tags, in the CRM's order.
    pub tags: Vec<String>,
    /// Custom fields by the tenant's key.
    pub custom_fields: BTreeMap<String, Value>,
    /// The contact asked not to be called (HighLevel `dnd`/`dndSettings.Call`, Zoho
    /// `Do_Not_Call`).
    pub do_not_call: bool,
}

/// How to find a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactLookup {
    /// By phone number.
    Phone(PhoneNumber),
    /// By e-mail address (compared case-insensitively).
    Email(String),
}

/// A contact to create, or to merge into the one with the same phone or e-mail.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactDraft {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name (Zoho requires one: the adapter substitutes the phone when absent).
    pub last_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<PhoneNumber>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Custom fields by the tenant's key.
    pub custom_fields: BTreeMap<String, Value>,
}

/// Fields to change on a contact; absent ones stay as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldUpdate {
    /// A new lead status.
    pub status: Option<String>,
    /// Custom fields to set, by the tenant's key.
    pub custom_fields: BTreeMap<String, Value>,
}

impl FieldUpdate {
    /// Returns true when nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.custom_fields.is_empty()
    }
}

/// A note on a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The CRM's id, once stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A short title (CRMs without titles prepend it to the body).
    pub title: String,
    /// The text.
    pub body: String,
}

/// Where a contact's deal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DealStatus {
    /// Still being worked.
    Open,
    /// Won.
    Won,
    /// Lost.
    Lost,
    /// Given up.
    Abandoned,
}

/// A move of the contact's deal (HighLevel opportunity, Zoho deal) in a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageMove {
    /// The pipeline's id.
    pub pipeline: String,
    /// The stage's id in it; `None` keeps the stage.
    pub stage: Option<String>,
    /// The deal's status; `None` keeps it.
    pub status: Option<DealStatus>,
    /// The deal's name when one has to be created.
    pub deal_name: String,
}

/// A phone call to record on the contact's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLog {
    /// Our call id (also the CRM's external id, so a retried log is recognised).
    pub call: CallId,
    /// Outbound or inbound.
    pub outbound: bool,
    /// Who called.
    pub from: PhoneNumber,
    /// Who was called.
    pub to: PhoneNumber,
    /// How it ended: `completed`, `no-answer`, `busy`, `failed`, `voicemail`, `canceled`.
    pub status: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it lasted.
    pub duration_secs: u32,
    /// Where an authorised user can listen to the recording.
    pub recording_url: Option<String>,
}

/// Whether the CRM holds call logs itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallLogged {
    /// Logged as the CRM's own call record, with its id.
    Logged(String),
    /// The CRM (or the tenant's connection) has no call log: the caller writes the call into
    /// the note instead.
    Unsupported,
}

type Answer<'a, T> = BoxFuture<'a, Result<T, ProviderError>>;

/// A tenant's CRM.
pub trait Crm: Send + Sync {
    /// Reads one contact.
    fn contact(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Contact>;

    /// Finds the contact with this phone or e-mail; `None` when there is none.
    fn find_contact(&self, tenant: TenantId, lookup: &ContactLookup)
    -> Answer<'_, Option<Contact>>;

    /// Creates the contact, or updates the one with the same phone or e-mail; returns it.
    fn upsert_contact(&self, tenant: TenantId, draft: &ContactDraft) -> Answer<'_, Contact>;

    /// Changes the status and custom fields.
    fn update_fields(
        &self,
        tenant: TenantId,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Answer<'_, ()>;

    /// Adds tags (keeping the others).
    fn add_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()>;

    /// Removes tags (keeping the others).
    fn remove_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()>;

    /// Adds a note; returns its id.
    fn add_note(&self, tenant: TenantId, id: &ContactId, note: &Note) -> Answer<'_, String>;

    /// The contact's notes, newest first as the CRM lists them (used to recognise a note
    /// already written by an interrupted sync).
    fn notes(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Vec<Note>>;

    /// Moves the contact's deal in a pipeline, creating the deal when it has none.
    fn move_stage(&self, tenant: TenantId, id: &ContactId, to: &StageMove) -> Answer<'_, ()>;

    /// Records a call on the contact's timeline.
    fn log_call(&self, tenant: TenantId, id: &ContactId, call: &CallLog) -> Answer<'_, CallLogged>;
}
