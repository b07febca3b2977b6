//! CRM `custom`: a tenant's own REST CRM, described by its configuration
//! (`providers.custom.crm`, see [`config`]) rather than by code.
//!
//! - **Endpoints.** One `METHOD /path` template per operation of [`Crm`]; placeholders
//!   (`{id}`, `{phone}`, `{email}`, `{pipeline}`, `{stage}`) are percent-encoded, and a query
//!   pair whose placeholder has no value is left out (`?phone={phone}&email={email}` finding by
//!   phone sends only `phone`). An unset endpoint answers [`ProviderError::Invalid`] naming it,
//!   except `log_call` ([`CallLogged::Unsupported`]) and `add_tags`/`remove_tags`, which then
//!   read the contact and write its whole tag list through `update_contact`.
//! - **Bodies.** Contacts, field updates, tags and notes are written through the field
//!   mapping (JSON pointers, the webhook mapping's vocabulary); `move_stage` sends
//!   `{pipeline, stage, status, name}` and `log_call` `{call_id, direction, from, to, status,
//!   started_at, duration_secs, recording_url}` as they are.
//! - **Authentication.** `bearer` and `header` send the credential `custom.api_key`; `basic`
//!   sends `auth.username` with `custom.password`; `hmac` sends the Unix time and the hex
//!   HMAC-SHA256 of `<timestamp>.<body>` under `custom.hmac_secret` in two headers.
//! - **Answers.** 2xx is read through the envelopes; 404 is [`ProviderError::NotFound`] (for
//!   `find_contact`, no contact); other failures are classified by
//!   [`ProviderError::from_status`] with the CRM's `message` as the reason. A `find_contact`
//!   answer is checked against the lookup when the phone or e-mail is mapped, so a CRM that
//!   ignores an unknown filter and lists everyone does not hand back a stranger.
//!
//! The CRM's URL is `providers.custom.base_url`, operator-only like every `base_url`: a tenant
//! cannot point our requests, with its credentials, at an address of its choosing inside our
//! network.

pub mod config;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures::FutureExt as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use self::config::{Auth, CustomCrmConfig, Operation};
use super::{
    Answer, CallLog, CallLogged, Contact, ContactDraft, ContactId, ContactLookup, Crm, FieldUpdate,
    Note, ProviderError, StageMove,
};
use crate::crypto::Keyring;
use crate::ids::TenantId;
use crate::providers::http::{self, Exchange};
use crate::providers::tenant_secret;
use crate::secret::Secret;
use crate::store::Store;
use crate::tenancy::directory::{Directory, LookupError};

/// Credential kind of the key sent by `bearer` and `header` authentication.
pub const API_KEY_KIND: &str = "custom.api_key";
/// Credential kind of the password of `basic` authentication.
pub const PASSWORD_KIND: &str = "custom.password";
/// Credential kind of the secret `hmac` authentication signs with.
pub const HMAC_SECRET_KIND: &str = "custom.hmac_secret";

/// The adapter of every tenant whose `crm` is `custom`.
#[derive(Clone)]
pub struct CustomCrm {
    store: Store,
    directory: Directory,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
}

impl std::fmt::Debug for CustomCrm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("CustomCrm").finish_non_exhaustive()
    }
}

/// A tenant's CRM as one operation needs it.
struct Session {
    config: CustomCrmConfig,
    credential: Secret<String>,
}

/// An answer, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Result<Value, ProviderError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|_| {
            ProviderError::malformed("the custom crm answered something other than json")
        })
    }

    fn fail(&self, what: &str) -> ProviderError {
        ProviderError::from_status(
            self.status,
            &self.headers,
            what,
            wire::error_reason(self.status.as_u16(), &self.body),
        )
    }
}

fn unset(operation: Operation) -> ProviderError {
    ProviderError::Invalid {
        reason: format!(
            "the custom crm has no `{}.endpoints.{}`",
            config::PATH,
            operation.key()
        ),
    }
}

fn unmapped(field: &str) -> ProviderError {
    ProviderError::Invalid {
        reason: format!("`{}.fields.{field}` is not mapped", config::PATH),
    }
}

impl CustomCrm {
    /// Reads tenants through `directory`, and their credentials from `store`, opened with
    /// `keyring`.
    #[must_use]
    pub fn new(store: Store, directory: Directory, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            directory,
            keyring,
            http: crate::providers::http::client(),
        }
    }

    /// Returns the tenant's checked configuration.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Invalid`] naming every bad field; [`ProviderError::Unavailable`] when
    /// the database fails.
    pub async fn configuration(&self, tenant: TenantId) -> Result<CustomCrmConfig, ProviderError> {
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| match error {
                LookupError::Gone => ProviderError::Invalid {
                    reason: error.to_string(),
                },
                LookupError::Database(_) => ProviderError::Unavailable {
                    reason: error.to_string(),
                },
            })?;
        let custom = snapshot
            .configuration
            .providers
            .get("custom")
            .cloned()
            .unwrap_or(Value::Null);
        CustomCrmConfig::parse(&custom).map_err(|errors| ProviderError::Invalid {
            reason: errors
                .iter()
                .map(|error| format!("`{}` {}", error.field, error.message))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    async fn session(&self, tenant: TenantId) -> Result<Session, ProviderError> {
        let config = self.configuration(tenant).await?;
        let kind = match config.auth {
            Auth::Bearer | Auth::Header { .. } => API_KEY_KIND,
            Auth::Basic { .. } => PASSWORD_KIND,
            Auth::Hmac { .. } => HMAC_SECRET_KIND,
        };
        let credential = tenant_secret::open(&self.store, &self.keyring, tenant, kind)
            .await?
            .ok_or_else(|| ProviderError::Unauthorized {
                reason: format!("the credential `{kind}` is not set"),
            })?;
        Ok(Session { config, credential })
    }

    fn authenticate(
        session: &Session,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), ProviderError> {
        use base64::Engine as _;
        let sensitive = |text: String| {
            let mut value = HeaderValue::from_str(&text).map_err(|_| ProviderError::Invalid {
                reason: "the custom crm credential is not header text".to_owned(),
            })?;
            value.set_sensitive(true);
            Ok::<_, ProviderError>(value)
        };
        let secret = session.credential.expose();
        match &session.config.auth {
            Auth::Bearer => {
                headers.insert(AUTHORIZATION, sensitive(format!("Bearer {secret}"))?);
            }
            Auth::Basic { username } => {
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{secret}"));
                headers.insert(AUTHORIZATION, sensitive(format!("Basic {pair}"))?);
            }
            Auth::Header { header } => {
                headers.insert(header.clone(), sensitive(secret.clone())?);
            }
            Auth::Hmac {
                timestamp_header,
                signature_header,
            } => {
                let timestamp = Utc::now().timestamp().to_string();
                let signature = wire::signature(secret.as_bytes(), &timestamp, body);
                headers.insert(
                    timestamp_header.clone(),
                    HeaderValue::from_str(&timestamp).expect("digits are header text"),
                );
                headers.insert(
                    signature_header.clone(),
                    HeaderValue::from_str(&signature).expect("hex is header text"),
                );
            }
        }
        Ok(())
    }

    async fn call(
        &self,
        session: &Session,
        operation: Operation,
        values: &BTreeMap<&str, String>,
        body: Option<&Value>,
    ) -> Result<Reply, ProviderError> {
        let endpoint = session
            .config
            .endpoint(operation)
            .ok_or_else(|| unset(operation))?;
        let path =
            wire::render(&endpoint.template, values).map_err(|problem| ProviderError::Invalid {
                reason: format!(
                    "`{}.endpoints.{}`: {problem}",
                    config::PATH,
                    operation.key()
                ),
            })?;
        let url = format!("{}{path}", session.config.base_url);
        let bytes = match body {
            Some(body) => serde_json::to_vec(body).expect("a json value serializes"),
            None => Vec::new(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Self::authenticate(session, &mut headers, &bytes)?;
        let mut request = self
            .http
            .request(endpoint.method.clone(), url)
            .headers(headers);
        if body.is_some() {
            request = request.body(bytes);
        }
        let Exchange {
            status,
            headers,
            body,
        } = http::exchange(request).await?;
        tracing::debug!(
            operation = operation.key(),
            status = status.as_u16(),
            "custom crm answered"
        );
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn read_contact(
        &self,
        session: &Session,
        id: &ContactId,
    ) -> Result<Contact, ProviderError> {
        let values = BTreeMap::from([("id", id.to_string())]);
        let reply = self
            .call(session, Operation::GetContact, &values, None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        wire::get(&document, &session.config.envelopes.contact)
            .and_then(|contact| wire::contact(contact, &session.config.fields))
            .ok_or_else(|| ProviderError::malformed("no contact with an id in the answer"))
    }

    async fn find(
        &self,
        session: &Session,
        lookup: &ContactLookup,
    ) -> Result<Option<Contact>, ProviderError> {
        let values = match lookup {
            ContactLookup::Phone(phone) => BTreeMap::from([("phone", phone.to_string())]),
            ContactLookup::Email(email) => BTreeMap::from([("email", email.to_lowercase())]),
        };
        let reply = self
            .call(session, Operation::FindContact, &values, None)
            .await?;
        if matches!(reply.status, StatusCode::NOT_FOUND | StatusCode::NO_CONTENT) {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        let fields = &session.config.fields;
        let candidates: Vec<Contact> =
            match wire::get(&document, &session.config.envelopes.contacts) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|item| wire::contact(item, fields))
                    .collect(),
                Some(item @ Value::Object(_)) => wire::contact(item, fields).into_iter().collect(),
                _ => Vec::new(),
            };
        Ok(candidates.into_iter().find(|contact| match lookup {
            ContactLookup::Phone(phone) => {
                fields.phone.is_none() || contact.phone.as_ref() == Some(phone)
            }
            ContactLookup::Email(email) => {
                fields.email.is_none()
                    || contact
                        .email
                        .as_ref()
                        .is_some_and(|found| found.eq_ignore_ascii_case(email))
            }
        }))
    }

    fn draft_body(session: &Session, draft: &ContactDraft) -> Result<Value, ProviderError> {
        let fields = &session.config.fields;
        let mut body = json!({});
        for (pointer, value) in [
            (&fields.first_name, draft.first_name.clone()),
            (&fields.last_name, draft.last_name.clone()),
            (&fields.email, draft.email.clone()),
            (&fields.phone, draft.phone.as_ref().map(ToString::to_string)),
            (&fields.timezone, draft.timezone.clone()),
        ] {
            if let (Some(pointer), Some(value)) = (pointer, value) {
                wire::set(&mut body, pointer, Value::String(value));
            }
        }
        for (name, value) in &draft.custom_fields {
            let pointer = wire::custom_field_pointer(fields, name)
                .ok_or_else(|| unmapped(&format!("custom_fields.{name}")))?;
            wire::set(&mut body, &pointer, value.clone());
        }
        Ok(body)
    }

    async fn upsert(
        &self,
        session: &Session,
        draft: &ContactDraft,
    ) -> Result<Contact, ProviderError> {
        let body = Self::draft_body(session, draft)?;
        let reply = self
            .call(
                session,
                Operation::UpsertContact,
                &BTreeMap::new(),
                Some(&body),
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        if let Some(contact) = wire::get(&document, &session.config.envelopes.contact)
            .and_then(|contact| wire::contact(contact, &session.config.fields))
        {
            return Ok(contact);
        }
        // A CRM that answers an upsert without the contact: find what it stored.
        let lookups = [
            draft.phone.clone().map(ContactLookup::Phone),
            draft.email.clone().map(ContactLookup::Email),
        ];
        for lookup in lookups.into_iter().flatten() {
            if let Some(contact) = self.find(session, &lookup).await? {
                return Ok(contact);
            }
        }
        Err(ProviderError::malformed("the upsert answered no contact"))
    }

    async fn update(
        &self,
        session: &Session,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Result<(), ProviderError> {
        let fields = &session.config.fields;
        let mut body = json!({});
        if let Some(status) = &update.status {
            let pointer = fields.status.as_ref().ok_or_else(|| unmapped("status"))?;
            wire::set(&mut body, pointer, Value::String(status.clone()));
        }
        for (name, value) in &update.custom_fields {
            let pointer = wire::custom_field_pointer(fields, name)
                .ok_or_else(|| unmapped(&format!("custom_fields.{name}")))?;
            wire::set(&mut body, &pointer, value.clone());
        }
        let values = BTreeMap::from([("id", id.to_string())]);
        let reply = self
            .call(session, Operation::UpdateContact, &values, Some(&body))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(reply.fail("contact"))
        }
    }

    async fn change_tags(
        &self,
        session: &Session,
        id: &ContactId,
        tags: &[String],
        add: bool,
    ) -> Result<(), ProviderError> {
        let operation = if add {
            Operation::AddTags
        } else {
            Operation::RemoveTags
        };
        let pointer = session
            .config
            .fields
            .tags
            .clone()
            .ok_or_else(|| unmapped("tags"))?;
        let values = BTreeMap::from([("id", id.to_string())]);
        let (operation, list) = if session.config.endpoint(operation).is_some() {
            (operation, tags.to_vec())
        } else if session.config.endpoint(Operation::UpdateContact).is_some() {
            // No tag endpoint: write the whole list through the contact.
            let mut current = self.read_contact(session, id).await?.tags;
            if add {
                for tag in tags {
                    if !current.contains(tag) {
                        current.push(tag.clone());
                    }
                }
            } else {
                current.retain(|tag| !tags.contains(tag));
            }
            (Operation::UpdateContact, current)
        } else {
            return Err(unset(operation));
        };
        let mut body = json!({});
        wire::set(&mut body, &pointer, json!(list));
        let reply = self.call(session, operation, &values, Some(&body)).await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(reply.fail("contact"))
        }
    }

    async fn write_note(
        &self,
        session: &Session,
        id: &ContactId,
        note: &Note,
    ) -> Result<String, ProviderError> {
        let fields = &session.config.notes;
        let mut body = json!({});
        match &fields.title {
            Some(pointer) => {
                wire::set(&mut body, pointer, Value::String(note.title.clone()));
                wire::set(&mut body, &fields.body, Value::String(note.body.clone()));
            }
            None => {
                let text = format!("{}\n\n{}", note.title, note.body);
                wire::set(&mut body, &fields.body, Value::String(text));
            }
        }
        let values = BTreeMap::from([("id", id.to_string())]);
        let reply = self
            .call(session, Operation::AddNote, &values, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        wire::get(&document, &session.config.envelopes.note)
            .and_then(|note| wire::note(note, fields))
            .and_then(|note| note.id)
            .ok_or_else(|| ProviderError::malformed("the note was stored without an id"))
    }

    async fn list_notes(
        &self,
        session: &Session,
        id: &ContactId,
    ) -> Result<Vec<Note>, ProviderError> {
        let values = BTreeMap::from([("id", id.to_string())]);
        let reply = self
            .call(session, Operation::ListNotes, &values, None)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        match wire::get(&document, &session.config.envelopes.notes) {
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(|item| wire::note(item, &session.config.notes))
                .collect()),
            None => Ok(Vec::new()),
            Some(_) => Err(ProviderError::malformed("the notes are not a list")),
        }
    }

    async fn deal(
        &self,
        session: &Session,
        id: &ContactId,
        to: &StageMove,
    ) -> Result<(), ProviderError> {
        let mut values =
            BTreeMap::from([("id", id.to_string()), ("pipeline", to.pipeline.clone())]);
        if let Some(stage) = &to.stage {
            values.insert("stage", stage.clone());
        }
        let body = json!({
            "pipeline": to.pipeline,
            "stage": to.stage,
            "status": to.status,
            "name": to.deal_name,
        });
        let reply = self
            .call(session, Operation::MoveStage, &values, Some(&body))
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(reply.fail("contact"))
        }
    }

    async fn call_log(
        &self,
        session: &Session,
        id: &ContactId,
        call: &CallLog,
    ) -> Result<CallLogged, ProviderError> {
        if session.config.endpoint(Operation::LogCall).is_none() {
            return Ok(CallLogged::Unsupported);
        }
        let body = json!({
            "call_id": call.call.to_string(),
            "direction": if call.outbound { "outbound" } else { "inbound" },
            "from": call.from.to_string(),
            "to": call.to.to_string(),
            "status": call.status,
            "started_at": call.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "duration_secs": call.duration_secs,
            "recording_url": call.recording_url,
        });
        let values = BTreeMap::from([("id", id.to_string())]);
        let reply = self
            .call(session, Operation::LogCall, &values, Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(reply.fail("contact"));
        }
        let document = reply.json()?;
        let logged = match wire::get(&document, &session.config.envelopes.call_id) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            // Our call id is the CRM's external id for it.
            _ => call.call.to_string(),
        };
        Ok(CallLogged::Logged(logged))
    }
}

impl Crm for CustomCrm {
    fn contact(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Contact> {
        let id = id.clone();
        async move {
            let session = self.session(tenant).await?;
            self.read_contact(&session, &id).await
        }
        .boxed()
    }

    fn find_contact(
        &self,
        tenant: TenantId,
        lookup: &ContactLookup,
    ) -> Answer<'_, Option<Contact>> {
        let lookup = lookup.clone();
        async move {
            let session = self.session(tenant).await?;
            self.find(&session, &lookup).await
        }
        .boxed()
    }

    fn upsert_contact(&self, tenant: TenantId, draft: &ContactDraft) -> Answer<'_, Contact> {
        let draft = draft.clone();
        async move {
            let session = self.session(tenant).await?;
            self.upsert(&session, &draft).await
        }
        .boxed()
    }

    fn update_fields(
        &self,
        tenant: TenantId,
        id: &ContactId,
        update: &FieldUpdate,
    ) -> Answer<'_, ()> {
        let (id, update) = (id.clone(), update.clone());
        async move {
            if update.is_empty() {
                return Ok(());
            }
            let session = self.session(tenant).await?;
            self.update(&session, &id, &update).await
        }
        .boxed()
    }

    fn add_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()> {
        let (id, tags) = (id.clone(), tags.to_vec());
        async move {
            let session = self.session(tenant).await?;
            self.change_tags(&session, &id, &tags, true).await
        }
        .boxed()
    }

    fn remove_tags(&self, tenant: TenantId, id: &ContactId, tags: &[String]) -> Answer<'_, ()> {
        let (id, tags) = (id.clone(), tags.to_vec());
        async move {
            let session = self.session(tenant).await?;
            self.change_tags(&session, &id, &tags, false).await
        }
        .boxed()
    }

    fn add_note(&self, tenant: TenantId, id: &ContactId, note: &Note) -> Answer<'_, String> {
        let (id, note) = (id.clone(), note.clone());
        async move {
            let session = self.session(tenant).await?;
            self.write_note(&session, &id, &note).await
        }
        .boxed()
    }

    fn notes(&self, tenant: TenantId, id: &ContactId) -> Answer<'_, Vec<Note>> {
        let id = id.clone();
        async move {
            let session = self.session(tenant).await?;
            self.list_notes(&session, &id).await
        }
        .boxed()
    }

    fn move_stage(&self, tenant: TenantId, id: &ContactId, to: &StageMove) -> Answer<'_, ()> {
        let (id, to) = (id.clone(), to.clone());
        async move {
            let session = self.session(tenant).await?;
            self.deal(&session, &id, &to).await
        }
        .boxed()
    }

    fn log_call(&self, tenant: TenantId, id: &ContactId, call: &CallLog) -> Answer<'_, CallLogged> {
        let (id, call) = (id.clone(), call.clone());
        async move {
            let session = self.session(tenant).await?;
            self.call_log(&session, &id, &call).await
        }
        .boxed()
    }
}
