//! Zoho CRM v8 as a [`Crm`], and Zoho Bookings as a [`crate::booking::Calendar`]
//! ([`bookings::ZohoBookings`]); `shared/protocols/crm-calendar.md` B, `docs/crm/zoho.md`.
//!
//! One process-wide [`Zoho`] serves every tenant whose `crm` is `zoho`: each call reads the
//! tenant's `providers.zoho` settings ([`settings::TenantZoho`]) and its `zoho.oauth` token
//! set, and goes to its data center ([`api`]).
//!
//! | Operation | Zoho request |
//! | --- | --- |
//! | contact | `GET /crm/v8/{module}/{id}` (204 → not found) |
//! | find by phone / e-mail | `GET /crm/v8/{module}/search?phone=` / `?email=` (204 → none) |
//! | upsert | `POST /crm/v8/{module}/upsert` with `duplicate_check_fields`, then a read |
//! | update | `PUT /crm/v8/{module}/{id}` with `"trigger": []` (no workflow loops back to us) |
//! | tags | `POST /crm/v8/{module}/{id}/actions/add_tags` / `remove_tags` |
//! | add note | `POST /crm/v8/Notes` (v8 `Parent_Id` object) |
//! | notes | `GET /crm/v8/{module}/{id}/Notes` (related list; not in the spec files here) |
//! | move stage | `GET /crm/v8/Deals/search?criteria=({deal_contact_field}:equals:{id})`, then `PUT /crm/v8/Deals/{id}` or `POST /crm/v8/Deals` |
//! | log call | `GET /crm/v8/Calls/search?criteria=(Subject:equals:…)`, then `POST /crm/v8/Calls` |
//!
//! Every write inspects `data[0]`: an item with `status: error` is an error even inside a
//! 200/201/202 ([`wire::write_result`]).

pub(crate) mod api;
pub mod bookings;
pub mod settings;
pub(crate) mod wire;

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::Method;
use serde_json::{Map, Value, json};

use self::api::{Request, ZohoApi};
use self::settings::TenantZoho;
use super::{
    CallLog, CallLogged, Contact, ContactDraft, ContactId, ContactLookup, Crm, DealStatus,
    FieldUpdate, Note, ProviderError, StageMove,
};
use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::settings::ZohoSettings;
use crate::store::Store;
use crate::tenancy::directory::Directory;

pub use self::bookings::ZohoBookings;

/// Tag names longer than this are refused by Zoho (`Tag.name.maxLength`).
const MAX_TAG_LENGTH: usize = 25;

/// The Zoho CRM adapter, shared by every tenant whose `crm` is `zoho`.
#[derive(Debug, Clone)]
pub struct Zoho {
    api: ZohoApi,
}

impl Zoho {
    /// Builds the adapter: tenants' settings come through `directory`, their token sets from
    /// `store` (opened with `keyring`), refreshed with the platform's Zoho app in `settings`.
    #[must_use]
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        directory: Directory,
        settings: ZohoSettings,
    ) -> Self {
        Self {
            api: ZohoApi::new(store, keyring, directory, settings),
        }
    }

    /// Returns a [`ZohoBookings`] sharing this adapter's client and token handling.
    #[must_use]
    pub fn bookings(&self) -> ZohoBookings {
        ZohoBookings::from_api(self.api.clone())
    }

    async fn read(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        id: &ContactId,
    ) -> Result<Contact, ProviderError> {
        let request = Request::new(Method::GET, &["crm", "v8", &settings.module, id.as_str()]);
        let answer = self.api.send(tenant, settings, "contact", &request).await?;
        let records = wire::records(answer.body.as_ref())?;
        let record = records.first().ok_or_else(|| ProviderError::NotFound {
            what: "contact".to_owned(),
        })?;
        wire::contact(record, settings)
    }

    async fn search(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        module: &str,
        what: &str,
        parameter: (&str, String),
    ) -> Result<Vec<Map<String, Value>>, ProviderError> {
        let request = Request::new(Method::GET, &["crm", "v8", module, "search"])
            .query(parameter.0, parameter.1);
        let answer = self.api.send(tenant, settings, what, &request).await?;
        Ok(wire::records(answer.body.as_ref())?
            .into_iter()
            .cloned()
            .collect())
    }

    async fn find(
        &self,
        tenant: TenantId,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        let parameter = match lookup {
            ContactLookup::Phone(phone) => ("phone", phone.as_str().to_owned()),
            ContactLookup::Email(email) => ("email", email.trim().to_lowercase()),
        };
        let found = self
            .search(tenant, &settings, &settings.module, "contact", parameter)
            .await?;
        // Zoho's phone search is textual and loose: keep the record whose number is ours.
        for record in &found {
            let contact = wire::contact(record, &settings)?;
            let matches = match lookup {
                ContactLookup::Phone(phone) => contact.phone.as_ref() == Some(phone),
                ContactLookup::Email(email) => contact
                    .email
                    .as_deref()
                    .is_some_and(|known| known.eq_ignore_ascii_case(email.trim())),
            };
            if matches {
                return Ok(Some(contact));
            }
        }
        Ok(None)
    }

    async fn upsert(
        &self,
        tenant: TenantId,
        draft: &ContactDraft,
    ) -> Result<Contact, ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        let record = wire::draft_record(draft, &settings);
        let mut body = json!({"data": [record], "trigger": []});
        let check = wire::duplicate_check_fields(draft);
        if !check.is_empty() {
            body["duplicate_check_fields"] = json!(check);
        }
        let request =
            Request::new(Method::POST, &["crm", "v8", &settings.module, "upsert"]).json(body);
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        let id = wire::written_id(wire::write_result(answer.body.as_ref(), "contact")?)?;
        let id = ContactId::try_from(id)
            .map_err(|_| ProviderError::malformed("an upserted id we cannot use"))?;
        self.read(tenant, &settings, &id).await
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Result<(), ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        let mut record = Map::new();
        for (name, value) in &update.custom_fields {
            record.insert(name.clone(), value.clone());
        }
        if let Some(status) = &update.status {
            record.insert(settings.status_field.clone(), json!(status));
        }
        self.put(
            tenant,
            &settings,
            &settings.module,
            id.as_str(),
            record,
            "contact",
        )
        .await
    }

    async fn put(
        &self,
        tenant: TenantId,
        settings: &TenantZoho,
        module: &str,
        id: &str,
        record: Map<String, Value>,
        what: &str,
    ) -> Result<(), ProviderError> {
        // NOTE: `"trigger": []` keeps Zoho's workflow rules, approvals and blueprints from
        // firing on our update, so a workflow webhook cannot loop back into ingress.
        let request = Request::new(Method::PUT, &["crm", "v8", module, id])
            .json(json!({"data": [record], "trigger": []}));
        let answer = self.api.send(tenant, settings, what, &request).await?;
        wire::write_result(answer.body.as_ref(), what).map(|_| ())
    }

    async fn tags(
        &self,
        tenant: TenantId,
        id: &ContactId,
        tags: &[String],
        action: &str,
    ) -> Result<(), ProviderError> {
        if tags.is_empty() {
            return Ok(());
        }
        if let Some(long) = tags
            .iter()
            .find(|tag| tag.is_empty() || tag.chars().count() > MAX_TAG_LENGTH)
        {
            return Err(ProviderError::Invalid {
                reason: format!("zoho tags are 1-{MAX_TAG_LENGTH} characters: `{long}`"),
            });
        }
        let settings = self.api.tenant(tenant).await?;
        let names: Vec<Value> = tags.iter().map(|tag| json!({"name": tag})).collect();
        let mut body = json!({"tags": names});
        if action == "add_tags" {
            body["over_write"] = json!(false);
        }
        let request = Request::new(
            Method::POST,
            &[
                "crm",
                "v8",
                &settings.module,
                id.as_str(),
                "actions",
                action,
            ],
        )
        .json(body);
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        wire::write_result(answer.body.as_ref(), "contact").map(|_| ())
    }

    async fn note(
        &self,
        tenant: TenantId,
        id: &ContactId,
        note: &Note,
    ) -> Result<String, ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        let body = json!({"data": [{
            "Note_Title": note.title,
            "Note_Content": note.body,
            "Parent_Id": {"module": {"api_name": settings.module}, "id": id.as_str()},
        }]});
        let request = Request::new(Method::POST, &["crm", "v8", "Notes"]).json(body);
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        wire::written_id(wire::write_result(answer.body.as_ref(), "contact")?)
    }

    async fn list_notes(
        &self,
        tenant: TenantId,
        id: &ContactId,
    ) -> Result<Vec<Note>, ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        let request = Request::new(
            Method::GET,
            &["crm", "v8", &settings.module, id.as_str(), "Notes"],
        )
        .query("fields", "Note_Title,Note_Content,Created_Time");
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        let mut notes = Vec::new();
        for record in wire::records(answer.body.as_ref())? {
            let text = |name: &str| {
                record
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            notes.push(Note {
                id: record.get("id").and_then(Value::as_str).map(str::to_owned),
                title: text("Note_Title"),
                body: text("Note_Content"),
            });
        }
        Ok(notes)
    }

    async fn stage(
        &self,
        tenant: TenantId,
        id: &ContactId,
        to: &StageMove,
    ) -> Result<(), ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        // Zoho deals have no status: won and lost are the closing stages.
        let stage = to.stage.clone().or_else(|| match to.status {
            Some(DealStatus::Won) => Some("Closed Won".to_owned()),
            Some(DealStatus::Lost | DealStatus::Abandoned) => Some("Closed Lost".to_owned()),
            Some(DealStatus::Open) | None => None,
        });
        let criteria = format!(
            "({}:equals:{})",
            settings.deal_contact_field,
            wire::criteria_value(id.as_str())
        );
        let deals = self
            .search(tenant, &settings, "Deals", "deal", ("criteria", criteria))
            .await?;
        let in_pipeline = deals.iter().find(|deal| {
            let pipeline = match deal.get("Pipeline") {
                Some(Value::String(name)) => Some(name.as_str()),
                Some(Value::Object(pipeline)) => pipeline
                    .get("name")
                    .or_else(|| pipeline.get("id"))
                    .and_then(Value::as_str),
                _ => None,
            };
            pipeline == Some(to.pipeline.as_str())
        });
        if let Some(deal) = in_pipeline {
            let Some(stage) = stage else {
                return Ok(()); // nothing to change
            };
            let deal_id = deal
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::malformed("a deal without an id"))?;
            let record = Map::from_iter([
                ("Stage".to_owned(), json!(stage)),
                ("Pipeline".to_owned(), json!(to.pipeline)),
            ]);
            return self
                .put(tenant, &settings, "Deals", deal_id, record, "deal")
                .await;
        }
        let stage = stage.ok_or_else(|| ProviderError::Invalid {
            reason: "a new zoho deal needs a stage".to_owned(),
        })?;
        let deal = json!({
            "Deal_Name": to.deal_name,
            "Stage": stage,
            "Pipeline": to.pipeline,
            settings.deal_contact_field.clone(): {"id": id.as_str()},
        });
        let request = Request::new(Method::POST, &["crm", "v8", "Deals"])
            .json(json!({"data": [deal], "trigger": []}));
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        wire::write_result(answer.body.as_ref(), "contact").map(|_| ())
    }

    async fn call(
        &self,
        tenant: TenantId,
        id: &ContactId,
        call: &CallLog,
    ) -> Result<CallLogged, ProviderError> {
        let settings = self.api.tenant(tenant).await?;
        // The subject carries our call id, so a retried log finds the first one.
        let subject = format!(
            "{} call by AI {}",
            if call.outbound { "Outbound" } else { "Inbound" },
            call.call
        );
        let criteria = format!("(Subject:equals:{})", wire::criteria_value(&subject));
        let logged = self
            .search(tenant, &settings, "Calls", "call", ("criteria", criteria))
            .await?;
        if let Some(existing) = logged
            .iter()
            .find(|record| record.get("Subject").and_then(Value::as_str) == Some(&subject))
            .and_then(|record| record.get("id").and_then(Value::as_str))
        {
            return Ok(CallLogged::Logged(existing.to_owned()));
        }
        // ISO 8601 with an explicit offset (`+00:00`), as Zoho requires.
        let started = call
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let mut description = format!(
            "Status: {}\nFrom: {}\nTo: {}",
            call.status, call.from, call.to
        );
        if let Some(url) = &call.recording_url {
            description.push_str(&format!("\nRecording: {url}"));
        }
        let mut record = json!({
            "Subject": subject,
            "Call_Type": if call.outbound { "Outbound" } else { "Inbound" },
            "Call_Start_Time": started,
            "Call_Duration": format!("{:02}:{:02}", call.duration_secs / 60, call.duration_secs % 60),
            "Description": description,
        });
        // Calls link a contact through `Who_Id`, any other record through `What_Id`.
        if settings.module == "Contacts" {
            record["Who_Id"] = json!({"id": id.as_str()});
        } else {
            record["What_Id"] = json!({"id": id.as_str()});
            record["$se_module"] = json!(settings.module);
        }
        let request = Request::new(Method::POST, &["crm", "v8", "Calls"])
            .json(json!({"data": [record], "trigger": []}));
        let answer = self
            .api
            .send(tenant, &settings, "contact", &request)
            .await?;
        let details = wire::write_result(answer.body.as_ref(), "contact")?;
        wire::written_id(details).map(CallLogged::Logged)
    }
}

type Answer<'a, T> = BoxFuture<'a, Result<T, ProviderError>>;

impl Crm for Zoho {
    fn contact(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Contact> {
        let id = id.clone();
        Box::pin(async move {
            let settings = self.api.tenant(tenant).await?;
            self.read(tenant, &settings, &id).await
        })
    }

    fn find_contact(
        &self,
        tenant: TenantId,
        lookup: &ContactLookup,
    ) -> Answer<'_, Option<Contact>> {
        let lookup = lookup.clone();
        Box::pin(async move { self.find(tenant, &lookup).await })
    }

    fn upsert_contact(&self, tenant: TenantId, draft: &ContactDraft) -> Answer<'_, Contact> {
        let draft = draft.clone();
        Box::pin(async move { self.upsert(tenant, &draft).await })
    }

    fn update_fields(
        &self,
        tenant: TenantId,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Answer<'_, ()> {
        let (id, update) = (id.clone(), update.clone());
        Box::pin(async move { self.update(tenant, &id, &update).await })
    }

    fn add_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()> {
        let (id, tags) = (id.clone(), tags.to_vec());
        Box::pin(async move { self.tags(tenant, &id, &tags, "add_tags").await })
    }

    fn remove_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()> {
        let (id, tags) = (id.clone(), tags.to_vec());
        Box::pin(async move { self.tags(tenant, &id, &tags, "remove_tags").await })
    }

    fn add_note(&self, tenant: TenantId, id: &ContactId, note: &Note) -> Answer<'_, String> {
        let (id, note) = (id.clone(), note.clone());
        Box::pin(async move { self.note(tenant, &id, &note).await })
    }

    fn notes(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Vec<Note>> {
        let id = id.clone();
        Box::pin(async move { self.list_notes(tenant, &id).await })
    }

    fn move_stage(&self, tenant: TenantId, id: &ContactId, to: &StageMove) -> Answer<'_, ()> {
        let (id, to) = (id.clone(), to.clone());
        Box::pin(async move { self.stage(tenant, &id, &to).await })
    }

    fn log_call(&self, tenant: TenantId, id: &ContactId, call: &CallLog) -> Answer<'_, CallLogged> {
        let (id, call) = (id.clone(), call.clone());
        Box::pin(async move { self.call(tenant, &id, &call).await })
    }
}
