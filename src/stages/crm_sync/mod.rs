//! The `crm_sync` stage: writes each settled call to the tenant's CRM: the lead status, tags,
//! one note with the summary, bookings and recording link, custom fields, the pipeline stage,
//! and the call log.
//!
//! - Consumes: `call.outcome` (`calls.outcome.<tenant>` on `CALLS`); a call we cancelled
//!   before it was answered writes nothing. An answered call's
//!   conversation usually ends a moment after Twilio reports the call completed, and the
//!   summarize stage writes its summary a moment later: the stage waits for both (retrying
//!   every few seconds, for at most [`CONVERSATION_GRACE`]) so the note carries the
//!   conversation, its summary and outcome, the bookings the agent made and the changes it
//!   asked for.
//! - The contact: the lead's CRM id, else the CRM's contact with the callee's phone, else a new
//!   one from the lead (found once, remembered in the write ledger).
//! - Exactly once per fact: every CRM write is an action in `crm_writes`
//!   ([`crate::store::crm_writes`]): performed only when not `done`. A replay after a crash
//!   between the CRM write and its `done` finds the note by the marker in its body
//!   ([`facts::marker`]); status, fields, tags and stage are set, not appended, so redoing
//!   them changes nothing.
//! - Errors, classified once here: rate limits, outages and timeouts retry with the runner's
//!   backoff (or the vendor's `Retry-After`); a refusal of the credentials raises the
//!   tenant alert `crm_unauthorized` (adapters already refreshed once) and dead-letters the
//!   fact with the reason; other permanent refusals raise `crm_rejected`. A write that works
//!   resolves the tenant's open CRM alerts.

mod facts;

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::state::Outcome;
use crate::crm::{
    CallLog, CallLogged, ContactDraft, ContactId, ContactLookup, Crm, Crms, FieldUpdate, Note,
    ProviderError,
};
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::call_flow::CallOutcome;
use crate::ids::TenantId;
use crate::settings::CrmSyncSettings;
use crate::store::crm_writes::{self, Progress};
use crate::store::{Store, alerts};
use crate::tenancy::directory::{Directory, LookupError};
use facts::CallFacts;

/// How long after a call settles its conversation may still be ending.
pub const CONVERSATION_GRACE: Duration = Duration::from_secs(120);
/// How often the stage looks again for a conversation that is still ending.
const CONVERSATION_POLL: Duration = Duration::from_secs(3);

/// Writes call outcomes to tenants' CRMs.
#[derive(Debug)]
pub struct CrmSync {
    store: Store,
    directory: Directory,
    crms: Crms,
    settings: CrmSyncSettings,
}

impl CrmSync {
    /// Builds the stage from its parts (the runner uses [`Stage::build`]).
    #[must_use]
    pub const fn new(
        store: Store,
        directory: Directory,
        crms: Crms,
        settings: CrmSyncSettings,
    ) -> Self {
        Self {
            store,
            directory,
            crms,
            settings,
        }
    }
}

impl Stage for CrmSync {
    const NAME: &'static str = "crm_sync";
    type Input = CallOutcome;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            store: runtime.store.clone(),
            directory: runtime.directory.clone(),
            crms: runtime.crms.clone(),
            settings: runtime.stages.crm_sync.clone(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    async fn handle(
        &self,
        input: &Envelope<CallOutcome>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        // We cancelled the call before anyone answered: nothing happened the CRM should hear of.
        if input.payload.outcome == Outcome::Cancelled {
            return Ok(());
        }
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| match error {
                LookupError::Gone => StageError::rejected(error.to_string()),
                LookupError::Database(error) => error.into(),
            })?;
        // No CRM: nothing to write.
        let Some(kind) = snapshot.configuration.crm else {
            return Ok(());
        };
        let provider = format!("{kind:?}").to_lowercase();
        let Some(crm) = self.crms.adapter(kind) else {
            let error = ProviderError::Invalid {
                reason: format!("this build has no {provider} CRM adapter"),
            };
            return Err(self.classify(tenant, &provider, error).await);
        };
        let settings = snapshot
            .configuration
            .providers
            .get(&provider)
            .cloned()
            .unwrap_or_default();
        let facts = CallFacts::load(cx.tx, tenant, &input.payload).await?;
        // The note carries the conversation and its summary: wait for both (the summarize
        // stage writes it seconds after the end, or up to a minute when it waits for the voice
        // provider's report), but never longer than the grace.
        let within_grace = Utc::now() - input.payload.ended_at
            < chrono::TimeDelta::from_std(CONVERSATION_GRACE).unwrap_or_default();
        let waiting = if facts.conversation_open {
            Some("the call's conversation is still ending")
        } else if facts.has_conversation && facts.summary.is_none() {
            Some("the call's summary is not written yet")
        } else {
            None
        };
        if let Some(reason) = waiting.filter(|_| within_grace) {
            return Err(StageError::Retryable {
                reason: reason.to_owned(),
                after: Some(CONVERSATION_POLL),
            });
        }
        let writer = Writer {
            store: &self.store,
            crm: crm.as_ref(),
            tenant,
            fact: format!("attempt:{}", input.payload.attempt_id.as_uuid()),
        };
        match self.sync(&writer, &facts, &settings).await {
            Ok(()) => {
                alerts::resolve(&self.store, tenant, "crm_", &provider).await?;
                facts::mark_lead_updates_synced(&self.store, tenant, &facts).await?;
                Ok(())
            }
            Err(Failure::Provider(error)) => Err(self.classify(tenant, &provider, error).await),
            Err(Failure::Database(error)) => Err(error.into()),
        }
    }
}

enum Failure {
    Provider(ProviderError),
    Database(sqlx::Error),
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Self::Provider(error)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// Performs the actions of one fact through the ledger.
struct Writer<'a> {
    store: &'a Store,
    crm: &'a dyn Crm,
    tenant: TenantId,
    fact: String,
}

impl Writer<'_> {
    async fn begin(&self, action: &str) -> Result<Progress, Failure> {
        Ok(crm_writes::begin(self.store, self.tenant, &self.fact, action).await?)
    }

    async fn finish(&self, action: &str, result: Option<serde_json::Value>) -> Result<(), Failure> {
        Ok(crm_writes::finish(self.store, self.tenant, &self.fact, action, result).await?)
    }

    /// Runs an action whose CRM write sets state (redoing it changes nothing).
    async fn set<F>(&self, action: &str, write: F) -> Result<(), Failure>
    where
        F: std::future::Future<Output = Result<(), ProviderError>>,
    {
        if let Progress::Done(_) = self.begin(action).await? {
            return Ok(());
        }
        write.await?;
        self.finish(action, None).await
    }
}

impl CrmSync {
    /// Turns a provider error into the runner's decision, raising the tenant alert for
    /// failures only the tenant can fix.
    async fn classify(&self, tenant: TenantId, provider: &str, error: ProviderError) -> StageError {
        let alert = match &error {
            ProviderError::Unauthorized { .. } => Some("crm_unauthorized"),
            ProviderError::Invalid { .. } | ProviderError::NotFound { .. } => Some("crm_rejected"),
            ProviderError::RateLimited { .. }
            | ProviderError::Unavailable { .. }
            | ProviderError::Timeout => None,
        };
        if let Some(kind) = alert {
            let message = format!("CRM sync failed: {error}");
            if let Err(database) =
                alerts::raise(&self.store, tenant, kind, provider, &message).await
            {
                return database.into();
            }
            tracing::warn!(%tenant, provider, %error, "crm sync refused; tenant alerted");
        }
        error.into()
    }

    async fn sync(
        &self,
        writer: &Writer<'_>,
        facts: &CallFacts,
        settings: &serde_json::Value,
    ) -> Result<(), Failure> {
        let contact = self.contact(writer, facts).await?;
        let crm = writer.crm;
        let tenant = writer.tenant;

        let update = FieldUpdate {
            status: facts.status(settings),
            custom_fields: facts.custom_fields_with(settings),
        };
        if !update.is_empty() {
            writer
                .set("status", crm.update_fields(tenant, &contact, &update))
                .await?;
        }
        let tags = facts.tags();
        if !tags.is_empty() {
            writer
                .set("tags", crm.add_tags(tenant, &contact, &tags))
                .await?;
        }
        self.note(writer, facts, &contact).await?;
        if let Some(to) = facts.stage_move(settings) {
            writer
                .set("stage", crm.move_stage(tenant, &contact, &to))
                .await?;
        }
        if let Progress::New | Progress::Started = writer.begin("call_log").await? {
            let log = CallLog {
                call: facts.call,
                outbound: true,
                from: facts.from.clone(),
                to: facts.to.clone(),
                status: facts.call_status().to_owned(),
                started_at: facts.started_at,
                duration_secs: facts.duration_secs,
                recording_url: facts.recording_link(&self.settings, tenant),
            };
            let logged = crm.log_call(tenant, &contact, &log).await?;
            let result = match logged {
                CallLogged::Logged(id) => json!({"id": id}),
                CallLogged::Unsupported => json!({"unsupported": true}),
            };
            writer.finish("call_log", Some(result)).await?;
        }
        Ok(())
    }

    /// The CRM contact of the call: found once per fact and remembered.
    async fn contact(&self, writer: &Writer<'_>, facts: &CallFacts) -> Result<ContactId, Failure> {
        if let Progress::Done(Some(result)) = writer.begin("contact").await?
            && let Some(id) = result.get("id").and_then(serde_json::Value::as_str)
            && let Ok(id) = ContactId::try_from(id.to_owned())
        {
            return Ok(id);
        }
        let crm = writer.crm;
        let tenant = writer.tenant;
        let known = facts
            .crm_contact_id
            .clone()
            .and_then(|id| ContactId::try_from(id).ok());
        let id = match known {
            Some(id) => id,
            None => {
                let found = crm
                    .find_contact(tenant, &ContactLookup::Phone(facts.to.clone()))
                    .await?;
                let contact = match found {
                    Some(contact) => contact,
                    None => {
                        crm.upsert_contact(
                            tenant,
                            &ContactDraft {
                                first_name: facts.lead.first_name.clone(),
                                last_name: facts.lead.last_name.clone(),
                                email: facts.lead.email.clone(),
                                phone: Some(facts.to.clone()),
                                timezone: Some(facts.lead.timezone.clone()),
                                custom_fields: std::collections::BTreeMap::new(),
                            },
                        )
                        .await?
                    }
                };
                contact.id.ok_or_else(|| {
                    ProviderError::malformed("the CRM returned a contact without an id")
                })?
            }
        };
        writer
            .finish("contact", Some(json!({"id": id.as_str()})))
            .await?;
        Ok(id)
    }

    /// The call's one note; a `started` note is looked for at the CRM before writing again.
    async fn note(
        &self,
        writer: &Writer<'_>,
        facts: &CallFacts,
        contact: &ContactId,
    ) -> Result<(), Failure> {
        let crm = writer.crm;
        let tenant = writer.tenant;
        let marker = facts::marker(facts.attempt);
        match writer.begin("note").await? {
            Progress::Done(_) => return Ok(()),
            Progress::Started => {
                let notes = crm.notes(tenant, contact).await?;
                if let Some(found) = notes.iter().find(|note| note.body.contains(&marker)) {
                    return writer.finish("note", Some(json!({"id": found.id}))).await;
                }
            }
            Progress::New => {}
        }
        let note = Note {
            id: None,
            title: facts.note_title(),
            body: facts.note_body(&self.settings, tenant, &marker),
        };
        let id = crm.add_note(tenant, contact, &note).await?;
        writer.finish("note", Some(json!({"id": id}))).await
    }
}
