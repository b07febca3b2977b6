//! The HighLevel adapter against the in-process HighLevel simulator and real PostgreSQL: the
//! CRM and calendar conformance suites (Private Integration Token and OAuth tenants), token
//! refreshes under concurrency, our pacing under the vendor's rate limit, 429 retries, and
//! every recorded request and answer checked against HighLevel's official specs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use caller::booking::{self, Calendar};
use caller::crm::gohighlevel::{GoHighLevel, OAUTH_KIND};
use caller::crm::{self, ContactId, Crm, ProviderError};
use caller::crypto::Keyring;
use caller::ids::{PhoneNumber, TenantId};
use caller::providers::sim_gohighlevel::spec::GoHighLevelSpecs;
use caller::providers::sim_gohighlevel::{
    GoHighLevelSimState, SimContactSeed, SimFault, SimLocationSeed, spawn,
};
use caller::secret::Secret;
use caller::settings::GoHighLevelSettings;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{Datelike, TimeDelta, TimeZone, Utc};
use common::TestDatabase;
use serde_json::{Value, json};

const CLIENT_ID: &str = "test-app-client-id";
const CLIENT_SECRET: &str = "sk-test-app-client-secret";
const PIT: &str = "pit-sk-UNIQUE-SECRET-123";

struct Harness {
    db: TestDatabase,
    keyring: Arc<Keyring>,
    sim: GoHighLevelSimState,
    base: String,
    adapter: Arc<GoHighLevel>,
    _task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Self {
        caller::telemetry::init_for_tests();
        let db = TestDatabase::create().await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap());
        let sim = GoHighLevelSimState::new(CLIENT_ID, CLIENT_SECRET);
        let (addr, task) = spawn(sim.clone()).await;
        let directory = Directory::new(
            db.store.clone(),
            Some(Arc::clone(&keyring)),
            Duration::from_secs(60),
        );
        let settings = GoHighLevelSettings {
            client_id: Some(CLIENT_ID.to_owned()),
            client_secret: Some(Secret::new(CLIENT_SECRET.to_owned())),
            ..GoHighLevelSettings::default()
        };
        let adapter = Arc::new(GoHighLevel::new(
            db.store.clone(),
            directory,
            Arc::clone(&keyring),
            settings,
        ));
        Self {
            db,
            keyring,
            sim,
            base: format!("http://{addr}"),
            adapter,
            _task: task,
        }
    }

    /// Creates a location at the simulator and a tenant pointing at it with `credentials`.
    async fn tenant(&self, slug: &str, credentials: Value) -> (TenantId, SimLocationSeed) {
        let location = format!("loc{}", uuid::Uuid::now_v7().simple());
        let seed = self
            .sim
            .add_location(&location, chrono_tz::America::Chicago);
        let request = json!({
            "slug": slug,
            "name": format!("Client {slug}"),
            "timezone": "America/Chicago",
            "configuration": {
                "crm": "gohighlevel",
                "calendar": "crm",
                "providers": {"gohighlevel": {
                    "base_url": self.base,
                    "location_id": location,
                    "calendar_id": seed.calendar_id,
                    "conversation_provider_id": seed.conversation_provider_id,
                }}
            },
            "credentials": credentials,
        });
        let mut transaction = self.db.store.begin_platform().await.unwrap();
        let client = service::onboard(
            &mut transaction,
            &Actor::operator("test"),
            &self.keyring,
            serde_json::from_value(request).unwrap(),
        )
        .await
        .unwrap();
        transaction.commit().await.unwrap();
        (client.id, seed)
    }

    /// A tenant reaching its location with a Private Integration Token.
    async fn pit_tenant(&self, slug: &str) -> (TenantId, SimLocationSeed) {
        let token = format!("{PIT}-{slug}");
        let (tenant, seed) = self
            .tenant(slug, json!({"gohighlevel.private_token": {"value": token}}))
            .await;
        self.sim.add_private_token(&seed.location_id, &token);
        (tenant, seed)
    }

    /// A tenant holding an OAuth token set the simulator issued (as an earlier install).
    async fn oauth_tenant(&self, slug: &str) -> (TenantId, SimLocationSeed, String) {
        let (tenant, seed) = self.tenant(slug, json!({})).await;
        let (access, refresh, expires_in) = self.sim.issue_tokens(&seed.location_id);
        let expires_at = Utc::now() + TimeDelta::seconds(i64::try_from(expires_in).unwrap());
        self.put_token_set(tenant, &access, &refresh, expires_at)
            .await;
        (tenant, seed, refresh)
    }

    async fn put_token_set(
        &self,
        tenant: TenantId,
        access: &str,
        refresh: &str,
        expires_at: chrono::DateTime<Utc>,
    ) {
        let value = json!({
            "access_token": access,
            "refresh_token": refresh,
            "expires_at": expires_at.to_rfc3339(),
        });
        let input = service::CredentialInput {
            value: Secret::new(value.to_string()),
            expires_at: Some(expires_at),
        };
        let mut transaction = self.db.store.begin_tenant(tenant).await.unwrap();
        service::put_credential(
            &mut transaction,
            &Actor::operator("test"),
            &self.keyring,
            tenant,
            OAUTH_KIND,
            &input,
        )
        .await
        .unwrap();
        transaction.commit().await.unwrap();
    }

    /// The tenant's stored OAuth token set, opened.
    async fn stored_token_set(&self, tenant: TenantId) -> Value {
        let mut transaction = self.db.store.begin_tenant(tenant).await.unwrap();
        let opened = service::open_credentials(&mut transaction, &self.keyring, tenant)
            .await
            .unwrap();
        transaction.rollback().await.unwrap();
        serde_json::from_str(opened[OAUTH_KIND].expose()).unwrap()
    }

    fn seed_contact(&self, seed: &SimLocationSeed) -> ContactId {
        let id = self.sim.add_contact(
            &seed.location_id,
            SimContactSeed {
                first_name: Some("Jane".to_owned()),
                last_name: Some("Doe".to_owned()),
                email: Some("jane.doe@example.com".to_owned()),
                phone: Some("+1 512-555-0142".to_owned()),
                timezone: Some("America/Chicago".to_owned()),
                dnd_call: Some("active".to_owned()),
                ..SimContactSeed::default()
            },
        );
        ContactId::try_from(id).unwrap()
    }

    /// Every recorded request and answer, checked against the official specs.
    fn assert_requests_match_the_specs(&self) {
        let requests = self.sim.requests();
        assert!(!requests.is_empty());
        let errors = GoHighLevelSpecs::load().check_all(&requests);
        assert!(errors.is_empty(), "spec violations:\n{}", errors.join("\n"));
    }

    fn assert_no_secret_was_recorded(&self) {
        for request in self.sim.requests() {
            let text = format!("{request:?}");
            assert!(!text.contains("sk-"), "a secret was recorded: {text}");
        }
    }

    async fn finish(self) {
        self.db.drop_database().await;
    }
}

fn fresh_phone() -> PhoneNumber {
    let digits = uuid::Uuid::now_v7().as_u128() % 10_000;
    PhoneNumber::parse(&format!("+1512556{digits:04}")).unwrap()
}

async fn crm_conformance(harness: &Harness, tenant: TenantId, seed: &SimLocationSeed) {
    let existing = harness.seed_contact(seed);
    let subject = crm::conformance::Subject {
        crm: harness.adapter.as_ref(),
        tenant,
        existing: existing.clone(),
        custom_field: "preferred_time".to_owned(),
        pipeline: Some((seed.pipeline_id.clone(), seed.stage_ids[1].clone())),
        fresh_phone: fresh_phone(),
    };
    crm::conformance::run(&subject).await.unwrap();
    let jane = harness.adapter.contact(tenant, &existing).await.unwrap();
    assert!(jane.do_not_call, "dndSettings.Call is active");
    assert_eq!(jane.phone.unwrap().as_str(), "+15125550142");
}

#[tokio::test]
async fn a_private_token_tenant_passes_the_crm_conformance_suite_within_the_specs() {
    let harness = Harness::start().await;
    let (tenant, seed) = harness.pit_tenant("pit-clinic").await;
    crm_conformance(&harness, tenant, &seed).await;

    let counters = harness.sim.counters();
    assert_eq!(counters.notes_written, 1);
    assert_eq!(counters.field_changes["contact.ai_call_status"], 1);
    assert_eq!(
        counters.stage_changes, 1,
        "created once, then already there"
    );
    assert_eq!(counters.calls_logged, 1);
    assert_eq!(counters.rate_limited, 0);
    let deals = harness.sim.opportunities(&seed.location_id);
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0]["pipelineStageId"], json!(seed.stage_ids[1]));
    for request in &harness.sim.requests() {
        if request.method == "PUT" && request.path.starts_with("/contacts/") {
            let body = request.body.as_ref().unwrap();
            assert!(body.get("tags").is_none(), "a contact write replaces tags");
            for field in body["customFields"].as_array().unwrap() {
                assert!(field.get("field_value").is_some(), "{field}");
            }
        }
    }
    harness.assert_requests_match_the_specs();
    harness.assert_no_secret_was_recorded();
    harness.finish().await;
}

#[tokio::test]
async fn an_oauth_tenant_installed_by_code_passes_the_crm_conformance_suite() {
    let harness = Harness::start().await;
    let (tenant, seed) = harness.tenant("oauth-clinic", json!({})).await;
    let code = harness.sim.issue_authorization_code(&seed.location_id);
    let location = harness
        .adapter
        .install(tenant, &code, &Actor::operator("test"))
        .await
        .unwrap();
    assert_eq!(location.as_deref(), Some(seed.location_id.as_str()));
    let stored = harness.stored_token_set(tenant).await;
    assert!(stored["refresh_token"].as_str().is_some());
    assert_eq!(stored["locationId"], json!(seed.location_id));
    match harness
        .adapter
        .install(tenant, &code, &Actor::operator("test"))
        .await
    {
        Err(ProviderError::Unauthorized { reason }) => assert!(!reason.contains(&code)),
        other => panic!("a used code must be refused, got {other:?}"),
    }

    crm_conformance(&harness, tenant, &seed).await;
    assert_eq!(harness.sim.counters().codes_exchanged, 1);
    assert_eq!(harness.sim.counters().token_refreshes, 0);
    harness.assert_requests_match_the_specs();
    harness.assert_no_secret_was_recorded();
    harness.finish().await;
}

#[tokio::test]
async fn the_highlevel_calendar_passes_the_booking_conformance_suite() {
    let harness = Harness::start().await;
    let (tenant, _seed) = harness.pit_tenant("calendar-clinic").await;
    let chicago = chrono_tz::America::Chicago;
    let today = Utc::now().with_timezone(&chicago).date_naive();
    let days_to_monday = 7 - i64::from(today.weekday().num_days_from_monday());
    let monday = today + TimeDelta::days(days_to_monday);
    let week = chicago
        .from_local_datetime(&monday.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let subject = booking::conformance::Subject {
        calendar: harness.adapter.as_ref(),
        tenant,
        // Asked in another zone than the calendar's: the date keys follow the asked zone.
        zone: chrono_tz::America::New_York,
        week,
        contact: None,
        capacity: 1,
    };
    booking::conformance::run(&subject).await.unwrap();
    booking::conformance::queries_are_checked_at_the_edge().unwrap();

    let counters = harness.sim.counters();
    assert_eq!(counters.appointments_booked, 1);
    assert_eq!(counters.appointments_rescheduled, 1);
    assert_eq!(counters.appointments_cancelled, 1);
    let slots = harness
        .sim
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/free-slots"))
        .collect::<Vec<_>>();
    assert!(!slots.is_empty());
    for request in slots {
        let query: BTreeMap<_, _> = request.query.into_iter().collect();
        assert_eq!(query["timezone"], "America/New_York");
        assert!(
            query["startDate"].parse::<i64>().unwrap() > 1_000_000_000_000,
            "epoch ms"
        );
        assert!(request.response.unwrap().get("traceId").is_some());
    }
    harness.assert_requests_match_the_specs();
    harness.finish().await;
}

#[tokio::test]
async fn an_access_token_expiring_mid_run_is_refreshed_once_for_twenty_concurrent_requests() {
    let harness = Harness::start().await;
    let (tenant, seed, first_refresh) = harness.oauth_tenant("refresh-clinic").await;
    let jane = harness.seed_contact(&seed);
    harness.adapter.contact(tenant, &jane).await.unwrap();

    harness.sim.expire_access_tokens();
    let reads = (0..20).map(|_| harness.adapter.contact(tenant, &jane));
    for outcome in futures::future::join_all(reads).await {
        assert_eq!(outcome.unwrap().first_name.as_deref(), Some("Jane"));
    }
    assert_eq!(harness.sim.counters().token_refreshes, 1);
    let stored = harness.stored_token_set(tenant).await;
    let rotated = stored["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(
        rotated, first_refresh,
        "the rotated refresh token is stored"
    );

    // A stored expiry in the past: refreshed before use, once for all.
    let access = stored["access_token"].as_str().unwrap().to_owned();
    harness
        .put_token_set(
            tenant,
            &access,
            &rotated,
            Utc::now() - TimeDelta::minutes(1),
        )
        .await;
    let reads = (0..20).map(|_| harness.adapter.contact(tenant, &jane));
    for outcome in futures::future::join_all(reads).await {
        outcome.unwrap();
    }
    assert_eq!(harness.sim.counters().token_refreshes, 2);
    let stored = harness.stored_token_set(tenant).await;
    assert_ne!(stored["refresh_token"].as_str().unwrap(), rotated);
    harness.assert_requests_match_the_specs();
    harness.finish().await;
}

#[tokio::test]
async fn a_token_refused_even_after_a_refresh_is_unauthorized_after_one_refresh() {
    let harness = Harness::start().await;
    let (tenant, seed, _) = harness.oauth_tenant("revoked-clinic").await;
    let jane = harness.seed_contact(&seed);
    harness.adapter.contact(tenant, &jane).await.unwrap();
    let before = harness.sim.counters().token_refreshes;

    harness.sim.fail_next(1_000, SimFault::Unauthorized);
    match harness.adapter.contact(tenant, &jane).await {
        Err(ProviderError::Unauthorized { reason }) => {
            assert!(!reason.contains("sim-access-"), "{reason}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(harness.sim.counters().token_refreshes, before + 1);
    harness.sim.clear_faults();

    // A Private Integration Token has nothing to refresh: the first 401 is final.
    let (pit_tenant, pit_seed) = harness.pit_tenant("pit-revoked").await;
    let pit_jane = harness.seed_contact(&pit_seed);
    harness.sim.revoke_token(&format!("{PIT}-pit-revoked"));
    match harness.adapter.contact(pit_tenant, &pit_jane).await {
        Err(ProviderError::Unauthorized { reason }) => assert!(!reason.contains(PIT)),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(harness.sim.counters().token_refreshes, before + 1);
    harness.finish().await;
}

#[tokio::test]
async fn a_burst_of_150_requests_is_paced_below_the_vendor_limit() {
    let harness = Harness::start().await;
    let (tenant, seed) = harness.pit_tenant("busy-clinic").await;
    let jane = harness.seed_contact(&seed);
    let reads = (0..150).map(|_| harness.adapter.contact(tenant, &jane));
    let outcomes = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(reads))
        .await
        .expect("the burst finishes");
    for outcome in outcomes {
        outcome.unwrap();
    }
    let counters = harness.sim.counters();
    assert_eq!(counters.rate_limited, 0, "the simulator never answered 429");
    assert!(
        harness
            .sim
            .requests()
            .iter()
            .all(|request| request.status == 200),
        "every request succeeded the first time"
    );
    harness.finish().await;
}

#[tokio::test]
async fn a_429_is_retried_and_three_in_a_row_are_rate_limited() {
    let harness = Harness::start().await;
    let (tenant, seed) = harness.pit_tenant("throttled-clinic").await;
    let jane = harness.seed_contact(&seed);
    harness.adapter.contact(tenant, &jane).await.unwrap();

    harness.sim.fail_next(1, SimFault::RateLimited);
    harness.adapter.contact(tenant, &jane).await.unwrap();
    let statuses: Vec<u16> = harness
        .sim
        .requests()
        .iter()
        .rev()
        .take(2)
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![200, 429], "a 429, then the retry succeeded");

    harness.sim.fail_next(3, SimFault::RateLimited);
    match harness.adapter.contact(tenant, &jane).await {
        Err(ProviderError::RateLimited { retry_after }) => assert!(retry_after.is_some()),
        other => panic!("expected RateLimited, got {other:?}"),
    }

    harness.sim.fail_next(1, SimFault::ServerError);
    match harness.adapter.contact(tenant, &jane).await {
        Err(ProviderError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    harness.finish().await;
}

#[tokio::test]
async fn unknown_custom_fields_are_invalid_and_odd_appointment_ids_not_found() {
    let harness = Harness::start().await;
    let (tenant, seed) = harness.pit_tenant("no-fields").await;
    let jane = harness.seed_contact(&seed);
    let update = crm::FieldUpdate {
        status: None,
        custom_fields: BTreeMap::from([("no_such_field".to_owned(), json!("x"))]),
    };
    match harness.adapter.update_fields(tenant, &jane, &update).await {
        Err(ProviderError::Invalid { reason }) => assert!(reason.contains("no_such_field")),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match harness.adapter.cancel(tenant, "../etc").await {
        Err(booking::BookingError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    harness.finish().await;
}
