//! The conformance suite of [`Crm`]: one `async fn` every adapter passes, run against each
//! adapter–simulator pair (and, given a sandbox, the real vendor).
//!
//! The suite only talks through the trait, so what it proves is the round trip: what an
//! adapter writes, it reads back the same way (a HighLevel custom field written as
//! `field_value` and read back as `value` included). What the vendor received is checked
//! separately, against the official specs, by each simulator's recorder.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use serde_json::json;

use super::{
    CallLog, CallLogged, ContactDraft, ContactId, ContactLookup, Crm, FieldUpdate, Note,
    ProviderError, StageMove,
};
use crate::ids::{CallId, PhoneNumber, TenantId};

/// What the suite needs to know about the CRM under test.
pub struct Subject<'a> {
    /// The adapter.
    pub crm: &'a dyn Crm,
    /// A tenant connected to the CRM.
    pub tenant: TenantId,
    /// A contact that exists there before the suite runs.
    pub existing: ContactId,
    /// A custom field key the CRM knows (text).
    pub custom_field: String,
    /// A pipeline and stage to move deals to, when the CRM has pipelines.
    pub pipeline: Option<(String, String)>,
    /// A phone number unused in the CRM, for the contact the suite creates. Vary it per run
    /// against a persistent CRM.
    pub fresh_phone: PhoneNumber,
}

/// Runs every check; the first failure names the step.
pub async fn run(subject: &Subject<'_>) -> anyhow::Result<()> {
    let crm = subject.crm;
    let tenant = subject.tenant;

    let existing = crm
        .contact(tenant, &subject.existing)
        .await
        .context("reading the existing contact")?;
    ensure!(
        existing.id.as_ref() == Some(&subject.existing),
        "the contact read back has id {:?}",
        existing.id
    );

    let missing = ContactId::try_from("0000000000doesnotexist".to_owned())?;
    match crm.contact(tenant, &missing).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => bail!("an unknown contact must be NotFound, got {other:?}"),
    }

    // Create, then upsert again by the same phone: the same contact, merged.
    let email = format!(
        "conformance.{}@example.com",
        subject.fresh_phone.as_str().trim_start_matches('+')
    );
    let draft = ContactDraft {
        first_name: Some("Ada".to_owned()),
        last_name: Some("Conformance".to_owned()),
        email: Some(email.clone()),
        phone: Some(subject.fresh_phone.clone()),
        timezone: Some("America/Chicago".to_owned()),
        custom_fields: BTreeMap::new(),
    };
    let created = crm
        .upsert_contact(tenant, &draft)
        .await
        .context("creating a contact")?;
    let id = created.id.clone().context("a created contact has an id")?;
    let read = crm.contact(tenant, &id).await.context("reading it back")?;
    ensure!(
        read.first_name.as_deref() == Some("Ada"),
        "first name {:?}",
        read.first_name
    );
    ensure!(
        read.last_name.as_deref() == Some("Conformance"),
        "last name {:?}",
        read.last_name
    );
    ensure!(
        read.email.as_deref().map(str::to_lowercase) == Some(email.clone()),
        "email {:?}",
        read.email
    );
    ensure!(
        read.phone.as_ref() == Some(&subject.fresh_phone),
        "phone {:?}",
        read.phone
    );

    let again = crm
        .upsert_contact(
            tenant,
            &ContactDraft {
                first_name: Some("Augusta".to_owned()),
                ..draft.clone()
            },
        )
        .await
        .context("upserting the same phone again")?;
    ensure!(
        again.id.as_ref() == Some(&id),
        "an upsert by the same phone made a second contact"
    );
    let read = crm.contact(tenant, &id).await?;
    ensure!(
        read.first_name.as_deref() == Some("Augusta"),
        "the upsert did not merge"
    );

    // Find by phone and by e-mail; an unknown phone finds nothing.
    for lookup in [
        ContactLookup::Phone(subject.fresh_phone.clone()),
        ContactLookup::Email(email.to_uppercase()),
    ] {
        let found = crm
            .find_contact(tenant, &lookup)
            .await
            .with_context(|| format!("finding by {lookup:?}"))?;
        ensure!(
            found.as_ref().and_then(|contact| contact.id.as_ref()) == Some(&id),
            "{lookup:?} found {found:?}"
        );
    }
    let nobody = PhoneNumber::parse("+15005550199").context("a test number")?;
    let found = crm
        .find_contact(tenant, &ContactLookup::Phone(nobody))
        .await
        .context("finding an unknown phone")?;
    ensure!(found.is_none(), "an unknown phone found {found:?}");

    // Status and a custom field, read back under the tenant's key.
    let update = FieldUpdate {
        status: Some("Contacted".to_owned()),
        custom_fields: BTreeMap::from([(subject.custom_field.clone(), json!("Booked by AI"))]),
    };
    crm.update_fields(tenant, &id, &update)
        .await
        .context("updating fields")?;
    let read = crm.contact(tenant, &id).await?;
    ensure!(
        read.status.as_deref() == Some("Contacted"),
        "status {:?}",
        read.status
    );
    ensure!(
        read.custom_fields.get(&subject.custom_field) == Some(&json!("Booked by AI")),
        "custom fields read back {:?}",
        read.custom_fields
    );

    // Tags are added and removed one by one, keeping the others.
    let tags = ["ai-called".to_owned(), "conformance".to_owned()];
    crm.add_tags(tenant, &id, &tags)
        .await
        .context("adding tags")?;
    crm.add_tags(tenant, &id, &tags[..1])
        .await
        .context("adding a tag again")?;
    let read = crm.contact(tenant, &id).await?;
    for tag in &tags {
        ensure!(
            read.tags.contains(tag),
            "tag {tag} missing from {:?}",
            read.tags
        );
    }
    ensure!(
        read.tags.iter().filter(|tag| *tag == "ai-called").count() == 1,
        "a tag added twice appears twice: {:?}",
        read.tags
    );
    crm.remove_tags(tenant, &id, &tags[1..])
        .await
        .context("removing a tag")?;
    let read = crm.contact(tenant, &id).await?;
    ensure!(
        read.tags.contains(&tags[0]) && !read.tags.contains(&tags[1]),
        "tags after removal {:?}",
        read.tags
    );

    // A note, listed back.
    let note = Note {
        id: None,
        title: "AI call summary".to_owned(),
        body: format!("Conformance note {}", Utc::now().timestamp_millis()),
    };
    let note_id = crm
        .add_note(tenant, &id, &note)
        .await
        .context("adding a note")?;
    ensure!(!note_id.is_empty(), "a note id is empty");
    let notes = crm.notes(tenant, &id).await.context("listing notes")?;
    ensure!(
        notes.iter().any(
            |listed| listed.body.contains(&note.body) && listed.id.as_deref() == Some(&note_id)
        ),
        "the note is not listed: {notes:?}"
    );

    if let Some((pipeline, stage)) = &subject.pipeline {
        let to = StageMove {
            pipeline: pipeline.clone(),
            stage: Some(stage.clone()),
            status: Some(super::DealStatus::Open),
            deal_name: "Conformance deal".to_owned(),
        };
        crm.move_stage(tenant, &id, &to)
            .await
            .context("moving the deal")?;
        crm.move_stage(tenant, &id, &to)
            .await
            .context("moving the deal again (it now exists)")?;
    }

    let log = CallLog {
        call: CallId::from_uuid(uuid::Uuid::now_v7()),
        outbound: true,
        from: PhoneNumber::parse("+15125550100").context("a test number")?,
        to: subject.fresh_phone.clone(),
        status: "completed".to_owned(),
        started_at: Utc::now(),
        duration_secs: 42,
        recording_url: None,
    };
    match crm
        .log_call(tenant, &id, &log)
        .await
        .context("logging a call")?
    {
        CallLogged::Logged(id) => ensure!(!id.is_empty(), "a logged call has an empty id"),
        CallLogged::Unsupported => {}
    }

    match crm.update_fields(tenant, &missing, &update).await {
        Err(ProviderError::NotFound { .. }) => {}
        other => bail!("updating an unknown contact must be NotFound, got {other:?}"),
    }
    Ok(())
}
