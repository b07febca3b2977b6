//! The custom REST CRM adapter against its simulator, with a real database for tenants and
//! sealed credentials: the CRM conformance suite under each authentication scheme, refused
//! credentials, the recorded requests against the simulator's OpenAPI document, and
//! configurations refused with the field named.

mod common;

use std::sync::Arc;
use std::time::Duration;

use caller::crm::conformance::{self, Subject};
use caller::crm::custom::CustomCrm;
use caller::crm::{ContactId, ContactLookup, Crm as _, FieldUpdate, Note, ProviderError};
use caller::crypto::Keyring;
use caller::ids::{PhoneNumber, TenantId};
use caller::providers::sim_custom_crm::{self, CustomCrmSimState, SimAuth, spec_violations};
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use common::TestDatabase;
use serde_json::{Value, json};

const MASTER_KEY: [u8; 32] = [9u8; 32];

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::from_parts("k1", [("k1", MASTER_KEY)]).unwrap())
}

fn schemes() -> Vec<SimAuth> {
    vec![
        SimAuth::Bearer {
            token: "bearer-key-1".to_owned(),
        },
        SimAuth::Basic {
            username: "caller".to_owned(),
            password: "basic-password-1".to_owned(),
        },
        SimAuth::Header {
            name: "X-Api-Key".to_owned(),
            key: "header-key-1".to_owned(),
        },
        SimAuth::Hmac {
            secret: "hmac-secret-1".to_owned(),
            timestamp_header: "X-Caller-Timestamp".to_owned(),
            signature_header: "X-Caller-Signature".to_owned(),
        },
    ]
}

/// Onboards a tenant whose CRM is `custom`, with `custom` settings and one credential.
async fn onboard(
    db: &TestDatabase,
    slug: &str,
    custom: Value,
    credential: (&str, &str),
) -> TenantId {
    let request = json!({
        "slug": slug,
        "name": slug,
        "timezone": "America/Chicago",
        "configuration": {"crm": "custom", "providers": {"custom": custom}},
        "credentials": {credential.0: {"value": credential.1}}
    });
    let mut tx = db.store.begin_platform().await.unwrap();
    let client = service::onboard(
        &mut tx,
        &Actor::operator("test"),
        &keyring(),
        serde_json::from_value(request).unwrap(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    client.id
}

fn adapter(db: &TestDatabase) -> CustomCrm {
    let directory = Directory::new(db.store.clone(), None, Duration::from_secs(60));
    CustomCrm::new(db.store.clone(), directory, keyring())
}

#[tokio::test]
async fn the_custom_crm_passes_the_conformance_suite_with_each_authentication() {
    caller::telemetry::init_for_tests();
    let db = TestDatabase::create().await;
    let crm = adapter(&db);
    for (index, auth) in schemes().into_iter().enumerate() {
        let sim = CustomCrmSimState::new(auth.clone());
        let (addr, _task) = sim_custom_crm::spawn(sim.clone()).await;
        let existing = sim.seed_contact("Grace", "Hopper", "+15125550177");
        let tenant = onboard(
            &db,
            &format!("custom-crm-{index}"),
            sim.custom_settings(&format!("http://{addr}")),
            auth.credential(),
        )
        .await;
        conformance::run(&Subject {
            crm: &crm,
            tenant,
            existing: ContactId::try_from(existing).unwrap(),
            custom_field: "budget_note".to_owned(),
            pipeline: Some(("sales".to_owned(), "qualified".to_owned())),
            fresh_phone: PhoneNumber::parse(&format!("+1512555030{index}")).unwrap(),
        })
        .await
        .unwrap_or_else(|error| panic!("{auth:?}: {error:#}"));

        let counters = sim.counters();
        assert_eq!(counters.unauthorized, 0, "{auth:?}");
        assert_eq!(counters.contacts_created, 1, "{auth:?}");
        assert_eq!(counters.status_changes, 1, "{auth:?}");
        assert_eq!(counters.notes_written, 1, "{auth:?}");
        assert_eq!(counters.deal_moves, 2, "{auth:?}");
        assert_eq!(counters.calls_logged, 1, "{auth:?}");
        let violations = spec_violations(&sim.requests());
        assert!(violations.is_empty(), "{auth:?}: {violations:#?}");
    }
    db.drop_database().await;
}

#[tokio::test]
async fn fields_are_written_where_the_mapping_says() {
    caller::telemetry::init_for_tests();
    let db = TestDatabase::create().await;
    let crm = adapter(&db);
    let auth = schemes().remove(0);
    let sim = CustomCrmSimState::new(auth.clone());
    let (addr, _task) = sim_custom_crm::spawn(sim.clone()).await;
    let existing = sim.seed_contact("Grace", "Hopper", "+15125550177");
    let tenant = onboard(
        &db,
        "custom-crm-mapping",
        sim.custom_settings(&format!("http://{addr}")),
        auth.credential(),
    )
    .await;
    let id = ContactId::try_from(existing.clone()).unwrap();
    let update = FieldUpdate {
        status: Some("Booked".to_owned()),
        custom_fields: [
            ("service".to_owned(), json!("Deep clean")),
            ("budget".to_owned(), json!(250)),
        ]
        .into(),
    };
    crm.update_fields(tenant, &id, &update).await.unwrap();
    let stored = sim.contact(&existing).unwrap();
    assert_eq!(stored["status"], "Booked");
    assert_eq!(stored["custom"]["service_type"], "Deep clean");
    assert_eq!(stored["custom"]["budget"], 250);
    let read = crm.contact(tenant, &id).await.unwrap();
    assert_eq!(read.custom_fields["service"], json!("Deep clean"));
    assert_eq!(read.custom_fields["budget"], json!(250));

    // A lookup the CRM answers loosely is checked: nobody else's contact comes back.
    let nobody = PhoneNumber::parse("+15125550999").unwrap();
    assert_eq!(
        crm.find_contact(tenant, &ContactLookup::Phone(nobody))
            .await
            .unwrap(),
        None
    );

    // Scripted failures are classified.
    sim.push_fault(429, Some(3));
    match crm.contact(tenant, &id).await {
        Err(ProviderError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
        other => panic!("a 429 must be RateLimited, got {other:?}"),
    }
    sim.push_fault(503, None);
    let note = Note {
        id: None,
        title: "t".to_owned(),
        body: "b".to_owned(),
    };
    match crm.add_note(tenant, &id, &note).await {
        Err(error @ ProviderError::Unavailable { .. }) => assert!(error.is_retryable()),
        other => panic!("a 503 must be Unavailable, got {other:?}"),
    }
    db.drop_database().await;
}

#[tokio::test]
async fn bad_credentials_are_unauthorized() {
    caller::telemetry::init_for_tests();
    let db = TestDatabase::create().await;
    let crm = adapter(&db);
    for (index, auth) in schemes().into_iter().enumerate() {
        let sim = CustomCrmSimState::new(auth.clone());
        let (addr, _task) = sim_custom_crm::spawn(sim.clone()).await;
        let existing = sim.seed_contact("Grace", "Hopper", "+15125550177");
        let (kind, _) = auth.credential();
        let tenant = onboard(
            &db,
            &format!("custom-crm-refused-{index}"),
            sim.custom_settings(&format!("http://{addr}")),
            (kind, "wrong-secret-value"),
        )
        .await;
        let id = ContactId::try_from(existing).unwrap();
        match crm.contact(tenant, &id).await {
            Err(ProviderError::Unauthorized { reason }) => {
                assert!(!reason.contains("wrong-secret-value"), "{reason}");
            }
            other => panic!("{auth:?}: a wrong credential must be Unauthorized, got {other:?}"),
        }
        assert_eq!(sim.counters().unauthorized, 1, "{auth:?}");
    }
    db.drop_database().await;
}

#[tokio::test]
async fn a_bad_configuration_is_refused_naming_the_field() {
    caller::telemetry::init_for_tests();
    let db = TestDatabase::create().await;
    let crm = adapter(&db);
    let sim = CustomCrmSimState::new(schemes().remove(0));
    let good = sim.custom_settings("http://127.0.0.1:9");
    let broken = |pointer: &str, value: Value| {
        let mut custom = good.clone();
        *custom.pointer_mut(pointer).unwrap() = value;
        custom
    };
    let cases = [
        (
            broken(
                "/crm/endpoints/get_contact",
                json!("FETCH /v1/contacts/{id}"),
            ),
            "providers.custom.crm.endpoints.get_contact",
        ),
        (
            broken("/crm/auth", json!({"kind": "basic"})),
            "providers.custom.crm.auth.username",
        ),
        (
            broken("/crm/fields/email", json!("email")),
            "providers.custom.crm.fields.email",
        ),
        (
            broken("/base_url", json!("not a url")),
            "providers.custom.base_url",
        ),
        (
            json!({"field_mapping": {"phone": "/phone"}}),
            "providers.custom.crm",
        ),
    ];
    for (index, (custom, field)) in cases.into_iter().enumerate() {
        let tenant = onboard(
            &db,
            &format!("custom-crm-bad-{index}"),
            custom,
            ("custom.api_key", "k"),
        )
        .await;
        let id = ContactId::try_from("c_000001".to_owned()).unwrap();
        match crm.contact(tenant, &id).await {
            Err(ProviderError::Invalid { reason }) => {
                assert!(
                    reason.contains(&format!("`{field}`")),
                    "{reason} does not name {field}"
                );
            }
            other => panic!("a bad configuration must be Invalid, got {other:?}"),
        }
    }
    db.drop_database().await;
}
