//! The Zoho CRM adapter and the Zoho Bookings calendar against the Zoho simulator, with the
//! tenant, its settings and its sealed token set in a real PostgreSQL database; everything
//! the simulator received is checked against Zoho's official specs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caller::booking;
use caller::crm::zoho::{Zoho, ZohoBookings};
use caller::crm::{
    self, ContactDraft, ContactId, ContactLookup, Crm as _, FieldUpdate, ProviderError,
};
use caller::crypto::Keyring;
use caller::ids::{PhoneNumber, TenantId};
use caller::providers::sim_zoho::{self, ZohoSimConfig, ZohoSimState};
use caller::secret::Secret;
use caller::settings::ZohoSettings;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{Datelike, TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};

use common::TestDatabase;

const ORG: &str = "60012345678";
const REFRESH_TOKEN: &str = "1000.refresh-of-the-test-org";
const EXISTING: &str = "4876876000001234567";

struct Setup {
    db: TestDatabase,
    sim: ZohoSimState,
    tenant: TenantId,
    zoho: Zoho,
    bookings: ZohoBookings,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Setup {
    /// A simulator on a loopback port, one tenant with `crm: zoho` pointing at it, holding
    /// `access_token` expiring at `expires_at`.
    async fn start(config: ZohoSimConfig, token: Option<&str>, expires_at: &str) -> Self {
        caller::telemetry::init_for_tests();
        let db = TestDatabase::create().await;
        let sim = ZohoSimState::new(config.clone());
        sim.add_org(ORG, REFRESH_TOKEN);
        let access = match token {
            Some(token) => token.to_owned(),
            None => sim.issue_access_token(ORG),
        };
        let existing = json!({"id": EXISTING, "First_Name": "Jane", "Last_Name": "Doe",
            "Phone": "+1 512-555-0142", "Email": "jane.doe@example.com", "Lead_Status": "Not Contacted"});
        let Value::Object(existing) = existing else {
            unreachable!()
        };
        sim.insert_record(ORG, "Leads", existing);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(sim_zoho::serve(listener, sim.clone()));

        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());
        // The stored token set names the EU data center; the operator's `api_domain` (the
        // simulator) wins over it, and the EU accounts server is used only when it is Zoho's.
        let tokens = json!({
            "access_token": access, "refresh_token": REFRESH_TOKEN, "expires_at": expires_at,
            "api_domain": "https://www.zohoapis.eu"
        })
        .to_string();
        let request = json!({
            "slug": "zoho-dental", "name": "Zoho Dental", "timezone": "America/Chicago",
            "configuration": {
                "crm": "zoho", "calendar": "crm",
                "providers": {"zoho": {
                    "org_id": ORG, "api_domain": base, "deal_contact_field": "Lead_Name",
                    "bookings": {"service_id": config.bookings.service_id,
                                 "staff_id": config.bookings.staff_id,
                                 "time_zone": "America/Chicago"}
                }}
            },
            "credentials": {"zoho.oauth": {"value": tokens}}
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
            Some(keyring.clone()),
            Duration::from_secs(60),
        );
        let settings = ZohoSettings {
            accounts_url: base.clone(),
            client_id: Some(config.client_id.clone()),
            client_secret: Some(Secret::new(config.client_secret.clone())),
        };
        let zoho = Zoho::new(db.store.clone(), keyring, directory, settings);
        let bookings = zoho.bookings();
        Self {
            db,
            sim,
            tenant: client.id,
            zoho,
            bookings,
            server,
        }
    }

    /// Checks everything recorded against the specs, then drops the database.
    async fn finish(self) {
        let report = sim_zoho::spec::check(&self.sim.requests());
        let crm_requests = self
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/crm/"))
            .count();
        assert_eq!(
            report.checked,
            crm_requests
                - report
                    .uncovered
                    .iter()
                    .filter(|u| u.contains("/crm/"))
                    .count()
        );
        assert!(
            report.violations.is_empty(),
            "spec violations:\n{}",
            report.violations.join("\n")
        );
        for uncovered in &report.uncovered {
            assert!(
                uncovered.starts_with("GET /bookings/")
                    || uncovered.starts_with("POST /bookings/")
                    || uncovered.ends_with("/Notes") && uncovered.starts_with("GET /crm/v8/Leads/"),
                "a request no spec describes: {uncovered}"
            );
        }
        // No secret was recorded.
        for request in self.sim.requests() {
            let text = format!("{request:?}");
            assert!(
                !text.contains(REFRESH_TOKEN) && !text.contains("1000.sim"),
                "{text}"
            );
        }
        self.server.abort();
        self.db.drop_database().await;
    }
}

fn future_expiry() -> String {
    (Utc::now() + TimeDelta::hours(1)).to_rfc3339()
}

fn existing() -> ContactId {
    ContactId::try_from(EXISTING.to_owned()).unwrap()
}

#[tokio::test]
async fn zoho_passes_the_crm_conformance_suite() {
    let setup = Setup::start(ZohoSimConfig::default(), None, &future_expiry()).await;
    crm::conformance::run(&crm::conformance::Subject {
        crm: &setup.zoho,
        tenant: setup.tenant,
        existing: existing(),
        custom_field: "AI_Outcome".to_owned(),
        pipeline: Some(("Sales Pipeline".to_owned(), "Qualification".to_owned())),
        fresh_phone: PhoneNumber::parse("+15125550177").unwrap(),
    })
    .await
    .unwrap();

    let counters = setup.sim.counters();
    assert_eq!(counters.notes_written, 1);
    assert_eq!(counters.calls_logged, 1);
    assert_eq!(counters.refreshes, 0, "a fresh token is not refreshed");
    assert!(counters.status_changes >= 1);
    // Updates never trigger Zoho workflows; upserts name their duplicate check fields.
    let requests = setup.sim.requests();
    for request in requests.iter().filter(|request| request.method == "PUT") {
        assert_eq!(
            request.body.as_ref().unwrap()["trigger"],
            json!([]),
            "{request:?}"
        );
    }
    let upsert = requests
        .iter()
        .find(|request| request.path.ends_with("/upsert"))
        .unwrap();
    assert_eq!(
        upsert.body.as_ref().unwrap()["duplicate_check_fields"],
        json!(["Phone", "Email"])
    );
    let note = requests
        .iter()
        .find(|request| request.path == "/crm/v8/Notes")
        .unwrap();
    assert_eq!(
        note.body.as_ref().unwrap()["data"][0]["Parent_Id"]["module"]["api_name"],
        "Leads"
    );
    assert!(requests.iter().all(|request| {
        request.path.starts_with("/oauth/")
            || request.headers.iter().any(|(name, value)| {
                name == "authorization" && value == "Zoho-oauthtoken [redacted]"
            })
    }));
    let deals = setup.sim.records(ORG, "Deals");
    assert_eq!(
        deals.len(),
        1,
        "the second move updates the deal: {deals:?}"
    );
    assert_eq!(deals[0]["Stage"], "Qualification");
    setup.finish().await;
}

#[tokio::test]
async fn zoho_bookings_passes_the_calendar_conformance_suite() {
    let config = ZohoSimConfig::default();
    let zone = config.bookings.time_zone;
    let setup = Setup::start(config, None, &future_expiry()).await;
    // Next week's Monday, midnight in the workspace's zone.
    let today = Utc::now().with_timezone(&zone).date_naive();
    let monday = today + TimeDelta::days(7 - i64::from(today.weekday().num_days_from_monday()));
    let week = zone
        .from_local_datetime(&monday.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    booking::conformance::run(&booking::conformance::Subject {
        calendar: &setup.bookings,
        tenant: setup.tenant,
        zone,
        week,
        contact: None,
        capacity: 1,
    })
    .await
    .unwrap();
    let counters = setup.sim.counters();
    assert_eq!(counters.appointments_booked, 1);
    assert_eq!(counters.appointments_rescheduled, 1);
    assert_eq!(counters.appointments_cancelled, 1);
    let booked = setup
        .sim
        .requests()
        .into_iter()
        .find(|request| request.path == "/bookings/v1/json/appointment")
        .unwrap();
    let form = booked.body.unwrap();
    assert!(booked
        .headers
        .iter()
        .any(|(name, value)| name == "content-type" && value.starts_with("multipart/form-data")));
    assert_eq!(form["timezone"], "America/Chicago");
    assert!(
        form["from_time"].as_str().unwrap().ends_with(":00"),
        "{form}"
    );
    let customer: Value = serde_json::from_str(form["customer_details"].as_str().unwrap()).unwrap();
    assert_eq!(customer["phone_number"], "+15125550142");
    setup.finish().await;
}

#[tokio::test]
async fn a_refused_zoho_token_is_refreshed_once_and_the_request_retried() {
    let setup = Setup::start(ZohoSimConfig::default(), None, &future_expiry()).await;
    // The token is revoked before its expiry: the first answer is 401 INVALID_TOKEN.
    setup.sim.expire_access_tokens();
    let contact = setup.zoho.contact(setup.tenant, &existing()).await.unwrap();
    assert_eq!(contact.last_name.as_deref(), Some("Doe"));
    let counters = setup.sim.counters();
    assert_eq!((counters.invalid_tokens, counters.refreshes), (1, 1));
    // The new token was stored: the next call uses it without another refresh.
    setup.zoho.contact(setup.tenant, &existing()).await.unwrap();
    assert_eq!(setup.sim.counters().refreshes, 1);
    let stored: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT expires_at FROM client_credentials WHERE kind = 'zoho.oauth'")
            .fetch_one(&setup.db.observer)
            .await
            .unwrap();
    assert!(stored.unwrap() > Utc::now() + TimeDelta::minutes(30));

    // Refused again after the refresh: Unauthorized, without a third attempt.
    setup.sim.refuse_next_tokens(2);
    let before = setup.sim.requests().len();
    let error = setup
        .zoho
        .contact(setup.tenant, &existing())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { .. }),
        "{error}"
    );
    let attempts: Vec<_> = setup.sim.requests()[before..]
        .iter()
        .map(|request| (request.path.clone(), request.status))
        .collect();
    assert_eq!(
        attempts,
        [
            (format!("/crm/v8/Leads/{EXISTING}"), 401),
            ("/oauth/v2/token".to_owned(), 200),
            (format!("/crm/v8/Leads/{EXISTING}"), 401),
        ]
    );
    assert!(!error.to_string().contains("1000."), "no token in {error}");
    setup.finish().await;
}

#[tokio::test]
async fn an_expired_zoho_token_is_refreshed_before_use_and_a_revoked_grant_is_unauthorized() {
    let past = (Utc::now() - TimeDelta::minutes(1)).to_rfc3339();
    let setup = Setup::start(ZohoSimConfig::default(), Some("1000.long-gone"), &past).await;
    setup.zoho.contact(setup.tenant, &existing()).await.unwrap();
    let counters = setup.sim.counters();
    assert_eq!(
        (counters.refreshes, counters.invalid_tokens),
        (1, 0),
        "refreshed proactively"
    );

    // A refresh token Zoho no longer knows: HTTP 200 with `error`, read as Unauthorized.
    let past = (Utc::now() - TimeDelta::minutes(1)).to_rfc3339();
    let revoked = Setup::start(ZohoSimConfig::default(), Some("1000.long-gone"), &past).await;
    revoked.sim.revoke_refresh_token(REFRESH_TOKEN);
    let error = revoked
        .zoho
        .contact(revoked.tenant, &existing())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unauthorized { ref reason } if reason.contains("invalid_code")),
        "{error}"
    );
    let refresh = revoked
        .sim
        .requests()
        .into_iter()
        .find(|request| request.path == "/oauth/v2/token")
        .unwrap();
    assert_eq!(refresh.status, 200);
    assert_eq!(refresh.response.unwrap()["error"], "invalid_code");
    revoked.finish().await;
    setup.finish().await;
}

#[tokio::test]
async fn zoho_per_record_errors_inside_a_success_status_are_errors() {
    let setup = Setup::start(ZohoSimConfig::default(), None, &future_expiry()).await;
    let update = FieldUpdate {
        status: Some("Contacted".to_owned()),
        ..FieldUpdate::default()
    };
    for (code, expected) in [
        ("MANDATORY_NOT_FOUND", "invalid"),
        ("INVALID_DATA", "invalid"),
        ("INTERNAL_ERROR", "unavailable"),
    ] {
        setup.sim.fail_next_records(code, 1);
        let error = setup
            .zoho
            .update_fields(setup.tenant, &existing(), &update)
            .await
            .unwrap_err();
        let kind = match error {
            ProviderError::Invalid { .. } => "invalid",
            ProviderError::Unavailable { .. } => "unavailable",
            ref other => panic!("{code}: {other}"),
        };
        assert_eq!(kind, expected, "{code}");
        let last = setup.sim.requests().pop().unwrap();
        assert_eq!(last.status, 202, "a per-record error comes in a 202");
    }
    // An invalid e-mail is refused by the simulator the same way, naming the field.
    let draft = ContactDraft {
        last_name: Some("Doe".to_owned()),
        email: Some("not-an-email".to_owned()),
        ..ContactDraft::default()
    };
    let error = setup
        .zoho
        .upsert_contact(setup.tenant, &draft)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::Invalid {
            reason: "INVALID_DATA `Email`".to_owned()
        }
    );
    assert_eq!(
        setup.sim.counters().status_changes,
        0,
        "nothing was written"
    );

    // A 429 from the concurrency or credit gate is RateLimited with Zoho's wait.
    setup.sim.fail_next(429, 1);
    let error = setup
        .zoho
        .contact(setup.tenant, &existing())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    setup.sim.fail_next(503, 1);
    let error = setup
        .zoho
        .contact(setup.tenant, &existing())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
    setup.finish().await;
}

#[tokio::test]
async fn zoho_credits_run_out_with_a_429() {
    let setup = Setup::start(
        ZohoSimConfig {
            credits: 2,
            ..ZohoSimConfig::default()
        },
        None,
        &future_expiry(),
    )
    .await;
    setup.zoho.contact(setup.tenant, &existing()).await.unwrap();
    setup.zoho.contact(setup.tenant, &existing()).await.unwrap();
    let error = setup
        .zoho
        .contact(setup.tenant, &existing())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::RateLimited { .. }),
        "{error}"
    );
    assert_eq!(setup.sim.counters().rate_limited, 1);
    setup.finish().await;
}

#[tokio::test]
async fn an_empty_zoho_search_is_a_204_and_finds_nobody() {
    let setup = Setup::start(ZohoSimConfig::default(), None, &future_expiry()).await;
    let nobody = PhoneNumber::parse("+15005550199").unwrap();
    let found = setup
        .zoho
        .find_contact(setup.tenant, &ContactLookup::Phone(nobody))
        .await
        .unwrap();
    assert_eq!(found, None);
    let search = setup.sim.requests().pop().unwrap();
    assert_eq!(
        (search.path.as_str(), search.status),
        ("/crm/v8/Leads/search", 204)
    );
    assert_eq!(
        search.query_pairs(),
        [("phone".to_owned(), "+15005550199".to_owned())]
    );
    assert_eq!(search.response, None);
    // The national form Zoho holds still finds the lead.
    let jane = PhoneNumber::parse("+15125550142").unwrap();
    let found = setup
        .zoho
        .find_contact(setup.tenant, &ContactLookup::Phone(jane))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, Some(existing()));
    let missing = ContactId::try_from("4876876000009999999".to_owned()).unwrap();
    let error = setup
        .zoho
        .contact(setup.tenant, &missing)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NotFound { .. }), "{error}");
    setup.finish().await;
}
