//! The crm_sync stage against the HighLevel simulator and real PostgreSQL: a settled call is
//! written once however often its outcome is replayed (the simulator counts), a write
//! interrupted between the CRM and our ledger is recognised instead of repeated, and refused
//! credentials become a tenant alert and a dead letter, resolved once the CRM works again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caller::bus::envelope::Envelope;
use caller::bus::outbox::Outbox;
use caller::calls::state::Outcome;
use caller::crm::gohighlevel::GoHighLevel;
use caller::crm::{ContactId, Crm as _, Crms};
use caller::crypto::Keyring;
use caller::error::StageError;
use caller::events::call_flow::CallOutcome;
use caller::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};
use caller::providers::sim_gohighlevel::{GoHighLevelSimState, SimContactSeed, spawn};
use caller::settings::{CrmSyncSettings, GoHighLevelSettings};
use caller::stages::crm_sync::CrmSync;
use caller::stages::{Stage, StageContext};
use caller::store::alerts;
use caller::store::calls::{self, NewCall};
use caller::tenancy::audit::Actor;
use caller::tenancy::config::CrmKind;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{TimeDelta, Utc};
use common::TestDatabase;
use serde_json::json;

const TOKEN: &str = "pit-crm-sync-token";

struct Harness {
    db: TestDatabase,
    sim: GoHighLevelSimState,
    stage: CrmSync,
    tenant: TenantId,
    contact: String,
    adapter: Arc<GoHighLevel>,
    _task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Self {
        caller::telemetry::init_for_tests();
        let db = TestDatabase::create().await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap());
        let sim = GoHighLevelSimState::new("client", "secret");
        let (addr, task) = spawn(sim.clone()).await;
        let seed = sim.add_location("locCrmSync0000000001", chrono_tz::America::Chicago);
        sim.add_private_token(&seed.location_id, TOKEN);
        let contact = sim.add_contact(
            &seed.location_id,
            SimContactSeed {
                first_name: Some("Jane".to_owned()),
                last_name: Some("Doe".to_owned()),
                phone: Some("+1 201-555-0123".to_owned()),
                timezone: Some("America/Chicago".to_owned()),
                ..SimContactSeed::default()
            },
        );
        let request = json!({
            "slug": "crm-sync-dental",
            "name": "Sync Dental",
            "timezone": "America/Chicago",
            "configuration": {
                "crm": "gohighlevel",
                "calendar": "static",
                "providers": {"gohighlevel": {
                    "base_url": format!("http://{addr}"),
                    "location_id": seed.location_id,
                    "outcome_field": "ai_call_outcome",
                    "stages": {"booked": {"pipeline": seed.pipeline_id, "stage": seed.stage_ids[1], "status": "open"}},
                }}
            },
            "credentials": {"gohighlevel.private_token": {"value": TOKEN}},
        });
        let mut tx = db.store.begin_platform().await.unwrap();
        let client = service::onboard(
            &mut tx,
            &Actor::operator("test"),
            &keyring,
            serde_json::from_value(request).unwrap(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let directory = Directory::new(
            db.store.clone(),
            Some(Arc::clone(&keyring)),
            Duration::from_secs(60),
        );
        let adapter = Arc::new(GoHighLevel::new(
            db.store.clone(),
            directory.clone(),
            keyring,
            GoHighLevelSettings::default(),
        ));
        let crms = Crms::new().with(CrmKind::Gohighlevel, adapter.clone());
        let stage = CrmSync::new(
            db.store.clone(),
            directory,
            crms,
            CrmSyncSettings {
                app_base_url: "https://app.example.com".to_owned(),
            },
        );
        Self {
            db,
            sim,
            stage,
            tenant: client.id,
            contact,
            adapter,
            _task: task,
        }
    }

    /// A settled, answered call of the seeded contact with one booking.
    async fn settled_call(&self) -> Envelope<CallOutcome> {
        let call = CallId::from_uuid(uuid::Uuid::now_v7());
        let to = PhoneNumber::parse("+12015550123").unwrap();
        let from = PhoneNumber::parse("+15125550100").unwrap();
        let lead = json!({
            "source": "api", "dedupe_key": "k", "external_id": self.contact,
            "phone": to.as_str(), "phone_raw": to.as_str(), "first_name": "Jane",
            "last_name": "Doe", "timezone": "America/Chicago", "timezone_source": "lead",
            "received_at": Utc::now(),
        });
        let mut tx = self.db.store.begin_tenant(self.tenant).await.unwrap();
        calls::create_queued(
            &mut tx,
            &NewCall {
                id: call,
                tenant: self.tenant,
                to: &to,
                from: &from,
                crm_contact_id: Some(&self.contact),
                lead: &lead,
                request_event_id: EventId::new_v7(),
            },
        )
        .await
        .unwrap();
        let starts = Utc::now() + TimeDelta::days(3);
        sqlx::query(
            "INSERT INTO appointments (id, tenant_id, call_id, starts_at, ends_at, blocked_from, \
             blocked_until, booked_by, lead_key) VALUES ($1, $2, $3, $4, $5, $4, $5, $6, $6)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(self.tenant.as_uuid())
        .bind(call.as_uuid())
        .bind(starts)
        .bind(starts + TimeDelta::minutes(30))
        .bind(format!("booking-{}", call.as_uuid()))
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        Envelope::new(
            self.tenant,
            "caller/stage/call_status",
            CallOutcome {
                call_id: call,
                attempt_id: AttemptId::from_uuid(uuid::Uuid::now_v7()),
                attempt_number: 1,
                outcome: Outcome::Human,
                to,
                answered_by: None,
                duration_secs: Some(95),
                ended_at: Utc::now(),
            },
        )
    }

    /// Delivers `input` to the stage as the runner would, in a fresh claim transaction.
    async fn deliver(&self, input: &Envelope<CallOutcome>) -> Result<(), StageError> {
        let mut tx = self.db.store.begin_platform().await.unwrap();
        let mut outbox = Outbox::new(CrmSync::NAME, &[], &input.meta);
        let mut cx = StageContext {
            tx: &mut tx,
            outbox: &mut outbox,
        };
        let result = self.stage.handle(input, &mut cx).await;
        tx.commit().await.unwrap();
        result
    }
}

#[tokio::test]
async fn a_call_replayed_three_times_writes_one_note_and_one_status_change() {
    let harness = Harness::start().await;
    let outcome = harness.settled_call().await;

    for _ in 0..3 {
        harness.deliver(&outcome).await.unwrap();
    }

    let counters = harness.sim.counters();
    assert_eq!(counters.notes_written, 1, "{counters:?}");
    assert_eq!(
        counters.field_changes.get("contact.ai_call_status"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(counters.stage_changes, 1, "{counters:?}");
    assert_eq!(
        counters.calls_logged, 0,
        "no conversation provider configured"
    );
    let id = ContactId::try_from(harness.contact.clone()).unwrap();
    let contact = harness.adapter.contact(harness.tenant, &id).await.unwrap();
    assert_eq!(contact.status.as_deref(), Some("Appointment Booked"));
    assert_eq!(
        contact.custom_fields.get("ai_call_outcome"),
        Some(&json!("booked"))
    );
    assert!(
        contact.tags.contains(&"ai-called".to_owned()),
        "{:?}",
        contact.tags
    );
    assert!(
        contact.tags.contains(&"ai-booked".to_owned()),
        "{:?}",
        contact.tags
    );
    let notes = harness.adapter.notes(harness.tenant, &id).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].body.contains("Booked:"), "{}", notes[0].body);
    assert!(notes[0].body.contains("[caller:"), "{}", notes[0].body);
    harness.db.drop_database().await;
}

#[tokio::test]
async fn a_note_written_before_a_crash_is_found_instead_of_written_again() {
    let harness = Harness::start().await;
    let outcome = harness.settled_call().await;
    harness.deliver(&outcome).await.unwrap();
    // As if the process died after the CRM stored the note and before our ledger said done.
    sqlx::query("UPDATE crm_writes SET state = 'started' WHERE action = 'note'")
        .execute(&harness.db.observer)
        .await
        .unwrap();

    harness.deliver(&outcome).await.unwrap();

    assert_eq!(harness.sim.counters().notes_written, 1);
    let state: String = sqlx::query_scalar("SELECT state FROM crm_writes WHERE action = 'note'")
        .fetch_one(&harness.db.observer)
        .await
        .unwrap();
    assert_eq!(state, "done");
    harness.db.drop_database().await;
}

#[tokio::test]
async fn refused_credentials_alert_the_tenant_and_dead_letter_until_the_crm_works_again() {
    let harness = Harness::start().await;
    harness.sim.revoke_token(TOKEN);
    let outcome = harness.settled_call().await;

    let refused = harness.deliver(&outcome).await;

    match refused {
        Err(StageError::Rejected { reason }) => {
            assert!(reason.contains("refused the credentials"), "{reason}");
            assert!(!reason.contains(TOKEN), "a secret in the reason: {reason}");
        }
        other => panic!("refused credentials must be rejected, got {other:?}"),
    }
    let open = alerts::list(&harness.db.store, harness.tenant, 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].kind, "crm_unauthorized");
    assert_eq!(open[0].provider, "gohighlevel");
    assert!(open[0].resolved_at.is_none());
    assert!(!open[0].message.contains(TOKEN));

    // The tenant reconnects; the dead letter is replayed and the alert resolved.
    harness.sim.add_private_token("locCrmSync0000000001", TOKEN);
    harness.deliver(&outcome).await.unwrap();
    let after = alerts::list(&harness.db.store, harness.tenant, 10)
        .await
        .unwrap();
    assert!(after[0].resolved_at.is_some(), "{after:?}");
    assert_eq!(harness.sim.counters().notes_written, 1);
    harness.db.drop_database().await;
}

#[tokio::test]
async fn an_outage_is_retried_not_dead_lettered() {
    let harness = Harness::start().await;
    harness.sim.fail_next(
        10,
        caller::providers::sim_gohighlevel::SimFault::ServerError,
    );
    let outcome = harness.settled_call().await;
    match harness.deliver(&outcome).await {
        Err(StageError::Retryable { .. }) => {}
        other => panic!("an outage must be retried, got {other:?}"),
    }
    assert!(
        alerts::list(&harness.db.store, harness.tenant, 10)
            .await
            .unwrap()
            .is_empty()
    );
    harness.db.drop_database().await;
}

#[tokio::test]
async fn a_call_we_cancelled_before_the_answer_writes_nothing() {
    let harness = Harness::start().await;
    let mut outcome = harness.settled_call().await;
    outcome.payload.outcome = Outcome::Cancelled;

    harness.deliver(&outcome).await.unwrap();

    let counters = harness.sim.counters();
    assert_eq!(counters.notes_written, 0, "{counters:?}");
    assert!(counters.field_changes.is_empty(), "{counters:?}");
    assert_eq!(counters.tags_added, 0, "{counters:?}");
    harness.db.drop_database().await;
}

#[tokio::test]
async fn an_answered_call_waits_for_its_summary_and_the_note_carries_it() {
    let harness = Harness::start().await;
    let outcome = harness.settled_call().await;
    let attempt = outcome.payload.attempt_id;
    let mut tx = harness.db.store.begin_tenant(harness.tenant).await.unwrap();
    calls::insert_intent(
        &mut tx,
        &calls::NewAttempt {
            id: attempt,
            call_id: outcome.payload.call_id,
            tenant: harness.tenant,
            attempt_number: 1,
            input_event_id: EventId::new_v7(),
            provider: "twilio",
            from: &PhoneNumber::parse("+15125550100").unwrap(),
        },
    )
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conversations (attempt_id, call_id, tenant_id, state, answered_event_id, \
         provider_call_id, stream_id, context, ended_at) \
         VALUES ($1, $2, $3, 'ended', $4, 'CA1', 'MZ1', '{}', now())",
    )
    .bind(attempt.as_uuid())
    .bind(outcome.payload.call_id.as_uuid())
    .bind(harness.tenant.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // The conversation ended, its summary is not written yet: the stage waits for it.
    let waiting = harness.deliver(&outcome).await;
    assert!(
        matches!(&waiting, Err(StageError::Retryable { reason, .. }) if reason.contains("summary")),
        "{waiting:?}"
    );
    assert_eq!(harness.sim.counters().notes_written, 0);

    let mut tx = harness.db.store.begin_tenant(harness.tenant).await.unwrap();
    sqlx::query(
        "INSERT INTO conversation_summaries (attempt_id, call_id, tenant_id, summary, \
         own_summary, source, outcome, outcome_reason, sentiment, sentiment_score) \
         VALUES ($1, $2, $3, 'Jane booked a check-up for Thursday.', 'Jane booked.', \
         'extractive', 'booked', 'an appointment was booked', 'positive', 0.6)",
    )
    .bind(attempt.as_uuid())
    .bind(outcome.payload.call_id.as_uuid())
    .bind(harness.tenant.as_uuid())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    harness.deliver(&outcome).await.unwrap();
    let id = ContactId::try_from(harness.contact.clone()).unwrap();
    let notes = harness.adapter.notes(harness.tenant, &id).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]
            .body
            .contains("Summary: Jane booked a check-up for Thursday."),
        "{}",
        notes[0].body
    );
    assert!(
        notes[0]
            .body
            .contains("Result: booked; the caller sounded positive."),
        "{}",
        notes[0].body
    );
    harness.db.drop_database().await;
}
