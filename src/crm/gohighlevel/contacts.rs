//! [`Crm`] over HighLevel: contacts, custom fields, tags, notes, opportunities and call logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{CALENDARS, CONTACTS, Call};
use super::wire::{self, FieldMap};
use super::{Account, CACHE_TTL, GoHighLevel, ProviderError, Session};
use crate::crm::{
    CallLog, CallLogged, Contact, ContactDraft, ContactId, ContactLookup, Crm, DealStatus,
    FieldUpdate, Note, StageMove,
};
use crate::ids::TenantId;

type Answer<'a, T> = futures::future::BoxFuture<'a, Result<T, ProviderError>>;

impl GoHighLevel {
    /// Returns the tenant's settings and a session for its requests.
    pub(super) async fn open(&self, tenant: TenantId) -> Result<(Account, Session), ProviderError> {
        let account = self.account(tenant).await?;
        let session = self.session(&account).await?;
        Ok((account, session))
    }

    /// Returns the location's custom field map, from the cache unless `fresh` or stale.
    async fn fields(
        &self,
        account: &Account,
        session: &Session,
        fresh: bool,
    ) -> Result<Arc<FieldMap>, ProviderError> {
        if !fresh {
            let cached = self
                .fields
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&session.location)
                .filter(|(at, _)| at.elapsed() < CACHE_TTL)
                .map(|(_, map)| Arc::clone(map));
            if let Some(map) = cached {
                return Ok(map);
            }
        }
        let answer = self
            .send(
                account,
                session,
                &Call::new(
                    Method::GET,
                    &["locations", &session.location, "customFields"],
                    CONTACTS,
                    "location",
                )
                .query("model", "contact"),
            )
            .await?;
        let map = Arc::new(FieldMap::parse(&answer)?);
        self.fields
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(session.location.clone(), (Instant::now(), Arc::clone(&map)));
        Ok(map)
    }

    /// Reads a contact object, refreshing the field map once if it names unknown fields.
    async fn read_contact(
        &self,
        account: &Account,
        session: &Session,
        value: &Value,
    ) -> Result<Contact, ProviderError> {
        let fields = self.fields(account, session, false).await?;
        let read = wire::contact(value, &fields, &account.status_field)?;
        if !read.unknown_fields {
            return Ok(read.contact);
        }
        let fields = self.fields(account, session, true).await?;
        Ok(wire::contact(value, &fields, &account.status_field)?.contact)
    }

    /// The `customFields` body of `values`, refreshing the field map once for an unknown key.
    async fn custom_fields(
        &self,
        account: &Account,
        session: &Session,
        values: &BTreeMap<String, Value>,
    ) -> Result<Vec<Value>, ProviderError> {
        let fields = self.fields(account, session, false).await?;
        if let Ok(body) = wire::custom_fields_body(&fields, values) {
            return Ok(body);
        }
        let fields = self.fields(account, session, true).await?;
        wire::custom_fields_body(&fields, values).map_err(|key| ProviderError::Invalid {
            reason: format!("the HighLevel location has no custom field `{key}`"),
        })
    }

    async fn get_contact(
        &self,
        tenant: TenantId,
        id: &ContactId,
    ) -> Result<Contact, ProviderError> {
        let (account, session) = self.open(tenant).await?;
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(Method::GET, &["contacts", id.as_str()], CONTACTS, "contact"),
            )
            .await?;
        let contact = answer
            .get("contact")
            .ok_or_else(|| ProviderError::malformed("no `contact` in the answer"))?;
        self.read_contact(&account, &session, contact).await
    }

    async fn lookup(
        &self,
        tenant: TenantId,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ProviderError> {
        let (account, session) = self.open(tenant).await?;
        let call = Call::new(
            Method::GET,
            &["contacts", "search", "duplicate"],
            CONTACTS,
            "contact",
        )
        .query("locationId", session.location.clone());
        let call = match lookup {
            ContactLookup::Phone(phone) => call.query("number", phone.as_str()),
            ContactLookup::Email(email) => call.query("email", email.to_lowercase()),
        };
        let answer = self.send(&account, &session, &call).await?;
        match answer.get("contact") {
            None | Some(Value::Null) => Ok(None),
            Some(contact) => self
                .read_contact(&account, &session, contact)
                .await
                .map(Some),
        }
    }

    /// `POST /contacts/upsert`: creates the contact or merges into the one with the same
    /// e-mail or phone.
    pub(super) async fn upsert(
        &self,
        account: &Account,
        session: &Session,
        draft: &ContactDraft,
    ) -> Result<Contact, ProviderError> {
        let mut body = json!({"locationId": session.location, "source": "caller"});
        let mut set = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        };
        set("firstName", draft.first_name.as_deref());
        set("lastName", draft.last_name.as_deref());
        set("email", draft.email.as_deref());
        set("phone", draft.phone.as_ref().map(|phone| phone.as_str()));
        set("timezone", draft.timezone.as_deref());
        if !draft.custom_fields.is_empty() {
            body["customFields"] = Value::Array(
                self.custom_fields(account, session, &draft.custom_fields)
                    .await?,
            );
        }
        let answer = self
            .send(
                account,
                session,
                &Call::new(Method::POST, &["contacts", "upsert"], CONTACTS, "contact").body(body),
            )
            .await?;
        let contact = answer
            .get("contact")
            .ok_or_else(|| ProviderError::malformed("no `contact` in the upsert answer"))?;
        self.read_contact(account, session, contact).await
    }

    async fn update(
        &self,
        tenant: TenantId,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Result<(), ProviderError> {
        if update.is_empty() {
            return Ok(());
        }
        let (account, session) = self.open(tenant).await?;
        let mut values = update.custom_fields.clone();
        if let Some(status) = &update.status {
            values.insert(account.status_field.clone(), json!(status));
        }
        let fields = self.custom_fields(&account, &session, &values).await?;
        self.send(
            &account,
            &session,
            &Call::new(Method::PUT, &["contacts", id.as_str()], CONTACTS, "contact")
                .body(json!({"customFields": fields})),
        )
        .await?;
        Ok(())
    }

    async fn tags(
        &self,
        tenant: TenantId,
        id: &ContactId,
        tags: &[String],
        method: Method,
    ) -> Result<(), ProviderError> {
        if tags.is_empty() {
            return Ok(());
        }
        let (account, session) = self.open(tenant).await?;
        // NOTE: never through a contact write: `tags` there replaces every tag.
        self.send(
            &account,
            &session,
            &Call::new(
                method,
                &["contacts", id.as_str(), "tags"],
                CONTACTS,
                "contact",
            )
            .body(json!({"tags": tags})),
        )
        .await?;
        Ok(())
    }

    async fn write_note(
        &self,
        tenant: TenantId,
        id: &ContactId,
        note: &Note,
    ) -> Result<String, ProviderError> {
        let (account, session) = self.open(tenant).await?;
        let mut body = json!({"body": note.body, "title": note.title});
        if let Some(user) = &account.user_id {
            body["userId"] = json!(user);
        }
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::POST,
                    &["contacts", id.as_str(), "notes"],
                    CONTACTS,
                    "contact",
                )
                .body(body),
            )
            .await?;
        let note = answer
            .get("note")
            .ok_or_else(|| ProviderError::malformed("no `note` in the answer"))?;
        Ok(wire::note(note)?.id.unwrap_or_default())
    }

    async fn list_notes(
        &self,
        tenant: TenantId,
        id: &ContactId,
    ) -> Result<Vec<Note>, ProviderError> {
        let (account, session) = self.open(tenant).await?;
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::GET,
                    &["contacts", id.as_str(), "notes"],
                    CONTACTS,
                    "contact",
                ),
            )
            .await?;
        let notes = answer
            .get("notes")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::malformed("no `notes` list in the answer"))?;
        notes.iter().map(wire::note).collect()
    }

    async fn stage(
        &self,
        tenant: TenantId,
        id: &ContactId,
        to: &StageMove,
    ) -> Result<(), ProviderError> {
        let (account, session) = self.open(tenant).await?;
        // NOTE: this search takes snake_case keys, unlike the rest of the API.
        let found = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::GET,
                    &["opportunities", "search"],
                    CONTACTS,
                    "opportunity",
                )
                .query("location_id", session.location.clone())
                .query("contact_id", id.as_str())
                .query("pipeline_id", to.pipeline.clone()),
            )
            .await?;
        let existing = found
            .get("opportunities")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::malformed("no `opportunities` list in the answer"))?
            .iter()
            .find_map(|deal| deal.get("id").and_then(Value::as_str).map(str::to_owned));
        let mut body = json!({"pipelineId": to.pipeline});
        if let Some(stage) = &to.stage {
            body["pipelineStageId"] = json!(stage);
        }
        if let Some(status) = to.status {
            body["status"] = json!(deal_status(status));
        }
        let call = match &existing {
            Some(deal) => Call::new(
                Method::PUT,
                &["opportunities", deal],
                CONTACTS,
                "opportunity",
            )
            .body(body),
            None => {
                body["locationId"] = json!(session.location);
                body["contactId"] = json!(id.as_str());
                body["name"] = json!(to.deal_name);
                body["status"] = json!(deal_status(to.status.unwrap_or(DealStatus::Open)));
                Call::new(Method::POST, &["opportunities", ""], CONTACTS, "contact").body(body)
            }
        };
        self.send(&account, &session, &call).await?;
        Ok(())
    }

    async fn call_log(
        &self,
        tenant: TenantId,
        id: &ContactId,
        call: &CallLog,
    ) -> Result<CallLogged, ProviderError> {
        let account = self.account(tenant).await?;
        let Some(provider) = account.conversation_provider.clone() else {
            return Ok(CallLogged::Unsupported);
        };
        if !call.outbound {
            // The API logs external calls as outbound messages only.
            return Ok(CallLogged::Unsupported);
        }
        let session = self.session(&account).await?;
        let conversation = self.conversation(&account, &session, id).await?;
        let mut body = json!({
            "type": "Call",
            "conversationId": conversation,
            "conversationProviderId": provider,
            "altId": call.call.to_string(),
            "date": call.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "call": {"to": call.to.as_str(), "from": call.from.as_str(), "status": call_status(&call.status)},
        });
        if let Some(recording) = &call.recording_url {
            body["attachments"] = json!([recording]);
        }
        let answer = self
            .send(
                &account,
                &session,
                &Call::new(
                    Method::POST,
                    &["conversations", "messages", "outbound"],
                    CALENDARS,
                    "conversation",
                )
                .body(body),
            )
            .await?;
        answer
            .get("messageId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(|id| CallLogged::Logged(id.to_owned()))
            .ok_or_else(|| ProviderError::malformed("no `messageId` in the answer"))
    }

    /// The contact's conversation, created when it has none.
    async fn conversation(
        &self,
        account: &Account,
        session: &Session,
        id: &ContactId,
    ) -> Result<String, ProviderError> {
        let found = self
            .send(
                account,
                session,
                &Call::new(
                    Method::GET,
                    &["conversations", "search"],
                    CALENDARS,
                    "conversation",
                )
                .query("locationId", session.location.clone())
                .query("contactId", id.as_str()),
            )
            .await?;
        let existing = found
            .get("conversations")
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .and_then(|conversation| conversation.get("id"))
            .and_then(Value::as_str);
        if let Some(existing) = existing {
            return Ok(existing.to_owned());
        }
        let created = self
            .send(
                account,
                session,
                &Call::new(Method::POST, &["conversations", ""], CALENDARS, "contact")
                    .body(json!({"locationId": session.location, "contactId": id.as_str()})),
            )
            .await?;
        created
            .pointer("/conversation/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::malformed("no `conversation.id` in the answer"))
    }
}

fn deal_status(status: DealStatus) -> &'static str {
    match status {
        DealStatus::Open => "open",
        DealStatus::Won => "won",
        DealStatus::Lost => "lost",
        DealStatus::Abandoned => "abandoned",
    }
}

/// Our call outcome in HighLevel's call status vocabulary.
fn call_status(status: &str) -> &'static str {
    match status {
        "no-answer" => "no-answer",
        "busy" => "busy",
        "failed" => "failed",
        "voicemail" => "voicemail",
        "canceled" => "canceled",
        _ => "completed",
    }
}

impl Crm for GoHighLevel {
    fn contact(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Contact> {
        let id = id.clone();
        Box::pin(async move { self.get_contact(tenant, &id).await })
    }

    fn find_contact(
        &self,
        tenant: TenantId,
        lookup: &ContactLookup,
    ) -> Answer<'_, Option<Contact>> {
        let lookup = lookup.clone();
        Box::pin(async move { self.lookup(tenant, &lookup).await })
    }

    fn upsert_contact(&self, tenant: TenantId, draft: &ContactDraft) -> Answer<'_, Contact> {
        let draft = draft.clone();
        Box::pin(async move {
            let (account, session) = self.open(tenant).await?;
            self.upsert(&account, &session, &draft).await
        })
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
        Box::pin(async move { self.tags(tenant, &id, &tags, Method::POST).await })
    }

    fn remove_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()> {
        let (id, tags) = (id.clone(), tags.to_vec());
        Box::pin(async move { self.tags(tenant, &id, &tags, Method::DELETE).await })
    }

    fn add_note(&self, tenant: TenantId, id: &ContactId, note: &Note) -> Answer<'_, String> {
        let (id, note) = (id.clone(), note.clone());
        Box::pin(async move { self.write_note(tenant, &id, &note).await })
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
        Box::pin(async move { self.call_log(tenant, &id, &call).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_outcomes_map_to_highlevel_statuses() {
        assert_eq!(call_status("no-answer"), "no-answer");
        assert_eq!(call_status("completed"), "completed");
        assert_eq!(call_status("machine"), "completed");
        assert_eq!(deal_status(DealStatus::Abandoned), "abandoned");
    }
}
