//! Sealed credentials against real PostgreSQL: tenant and kind binding through the store,
//! master key rotation (interrupted, resumed, with an unreadable record), and OAuth refreshes
//! that happen once however many callers need the token at the same time.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use caller::crypto::{CryptoError, Keyring};
use caller::ids::TenantId;
use caller::secret::Secret;
use caller::store::Store;
use caller::tenancy::audit::Actor;
use caller::tenancy::oauth::{self, OAuthError, TokenSet};
use caller::tenancy::rotation::rotate_master_key;
use caller::tenancy::service::{self, CredentialInput, OnboardRequest, ServiceError};
use chrono::{DateTime, Utc};
use common::TestDatabase;

fn keyring_k1() -> Keyring {
    Keyring::from_parts("k1", [("k1", [1u8; 32])]).unwrap()
}

fn keyring_k1_k2() -> Keyring {
    Keyring::from_parts("k2", [("k1", [1u8; 32]), ("k2", [2u8; 32])]).unwrap()
}

fn keyring_k2() -> Keyring {
    Keyring::from_parts("k2", [("k2", [2u8; 32])]).unwrap()
}

async fn database() -> TestDatabase {
    caller::telemetry::init_for_tests();
    TestDatabase::create().await
}

async fn onboard(store: &Store, keyring: &Keyring, slug: &str) -> TenantId {
    let request = OnboardRequest {
        slug: slug.to_owned(),
        name: format!("Client {slug}"),
        timezone: "America/New_York".to_owned(),
        configuration: None,
        features: BTreeMap::new(),
        credentials: BTreeMap::new(),
    };
    let mut transaction = store.begin_platform().await.unwrap();
    let client = service::onboard(&mut transaction, &Actor::operator("test"), keyring, request)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    client.id
}

async fn put_credential(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
    kind: &str,
    value: &str,
    expires_at: Option<DateTime<Utc>>,
) {
    let input = CredentialInput {
        value: Secret::new(value.to_owned()),
        expires_at,
    };
    let mut transaction = store.begin_tenant(tenant).await.unwrap();
    service::put_credential(
        &mut transaction,
        &Actor::operator("test"),
        keyring,
        tenant,
        kind,
        &input,
    )
    .await
    .unwrap();
    transaction.commit().await.unwrap();
}

async fn open_all(
    store: &Store,
    keyring: &Keyring,
    tenant: TenantId,
) -> Result<BTreeMap<String, String>, ServiceError> {
    let mut transaction = store.begin_tenant(tenant).await.unwrap();
    let opened = service::open_credentials(&mut transaction, keyring, tenant).await?;
    Ok(opened
        .into_iter()
        .map(|(kind, value)| (kind, value.expose().clone()))
        .collect())
}

async fn key_ids(db: &TestDatabase) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key_id, count(*) FROM client_credentials GROUP BY key_id")
            .fetch_all(&db.observer)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Copies the sealed bytes (and key id) of one credential row onto another, as an attacker
/// with write access to the table would.
async fn copy_sealed(db: &TestDatabase, from: (TenantId, &str), to: (TenantId, &str)) {
    let copied = sqlx::query(
        "UPDATE client_credentials AS target
         SET key_id = source.key_id, nonce = source.nonce, ciphertext = source.ciphertext
         FROM client_credentials AS source
         WHERE source.tenant_id = $1 AND source.kind = $2
           AND target.tenant_id = $3 AND target.kind = $4",
    )
    .bind(from.0.as_uuid())
    .bind(from.1)
    .bind(to.0.as_uuid())
    .bind(to.1)
    .execute(&db.observer)
    .await
    .unwrap();
    assert_eq!(copied.rows_affected(), 1);
}

#[tokio::test]
async fn a_credential_copied_to_another_tenant_or_kind_does_not_open() {
    let db = database().await;
    let keyring = keyring_k1();
    let a = onboard(&db.store, &keyring, "tenant-a").await;
    let b = onboard(&db.store, &keyring, "tenant-b").await;
    put_credential(&db.store, &keyring, a, "twilio.auth_token", "a-token", None).await;
    put_credential(
        &db.store,
        &keyring,
        a,
        "elevenlabs.api_key",
        "a-eleven",
        None,
    )
    .await;
    put_credential(&db.store, &keyring, b, "twilio.auth_token", "b-token", None).await;
    assert_eq!(
        open_all(&db.store, &keyring, b).await.unwrap()["twilio.auth_token"],
        "b-token"
    );

    copy_sealed(&db, (a, "twilio.auth_token"), (b, "twilio.auth_token")).await;
    let error = open_all(&db.store, &keyring, b).await.unwrap_err();
    assert!(
        matches!(error, ServiceError::Crypto(CryptoError::Unauthentic)),
        "{error:?}"
    );

    copy_sealed(&db, (a, "twilio.auth_token"), (a, "elevenlabs.api_key")).await;
    let error = open_all(&db.store, &keyring, a).await.unwrap_err();
    assert!(
        matches!(error, ServiceError::Crypto(CryptoError::Unauthentic)),
        "{error:?}"
    );
    assert!(!error.to_string().contains("a-token"));
    db.drop_database().await;
}

/// Seals `count` credentials across three tenants under `k1`; returns them by tenant.
async fn seed(store: &Store, count: usize) -> BTreeMap<TenantId, BTreeMap<String, String>> {
    let keyring = keyring_k1();
    let mut tenants = Vec::new();
    for slug in ["rot-one", "rot-two", "rot-three"] {
        tenants.push(onboard(store, &keyring, slug).await);
    }
    let mut expected: BTreeMap<TenantId, BTreeMap<String, String>> = BTreeMap::new();
    for index in 0..count {
        let tenant = tenants[index % tenants.len()];
        let kind = format!("twilio.secret_{index}");
        let value = format!("value-{index}-{}", uuid::Uuid::new_v4());
        put_credential(store, &keyring, tenant, &kind, &value, None).await;
        expected.entry(tenant).or_default().insert(kind, value);
    }
    expected
}

#[tokio::test]
async fn an_interrupted_rotation_resumes_and_every_record_ends_under_the_new_key() {
    let db = database().await;
    let expected = seed(&db.store, 25).await;
    assert_eq!(key_ids(&db).await, BTreeMap::from([("k1".to_owned(), 25)]));
    let both = keyring_k1_k2();

    // Interrupted after two batches of four.
    let report = rotate_master_key(&db.store, &both, 4, Some(2))
        .await
        .unwrap();
    assert_eq!(
        (report.rotated, report.batches, report.remaining),
        (8, 2, 17)
    );
    assert!(report.failures.is_empty());
    assert_eq!(
        key_ids(&db).await,
        BTreeMap::from([("k1".to_owned(), 17), ("k2".to_owned(), 8)])
    );
    for (tenant, credentials) in &expected {
        assert_eq!(
            &open_all(&db.store, &both, *tenant).await.unwrap(),
            credentials
        );
    }
    // Until the run completes, the old key is still needed.
    let mut unreadable = 0;
    for tenant in expected.keys() {
        if open_all(&db.store, &keyring_k2(), *tenant).await.is_err() {
            unreadable += 1;
        }
    }
    assert!(unreadable > 0);

    let report = rotate_master_key(&db.store, &both, 4, None).await.unwrap();
    assert_eq!((report.rotated, report.remaining), (17, 0));
    assert!(report.failures.is_empty());
    assert_eq!(key_ids(&db).await, BTreeMap::from([("k2".to_owned(), 25)]));
    for (tenant, credentials) in &expected {
        assert_eq!(
            &open_all(&db.store, &both, *tenant).await.unwrap(),
            credentials
        );
        assert_eq!(
            &open_all(&db.store, &keyring_k2(), *tenant).await.unwrap(),
            credentials
        );
    }

    // Nothing left: a further run is a no-op.
    let report = rotate_master_key(&db.store, &both, 4, None).await.unwrap();
    assert_eq!(
        (report.rotated, report.batches, report.remaining),
        (0, 0, 0)
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_record_that_does_not_open_is_reported_and_left_on_its_old_key() {
    let db = database().await;
    let expected = seed(&db.store, 6).await;
    let (victim, victim_credentials) = expected.iter().next().unwrap();
    let victim_kind = victim_credentials.keys().next().unwrap().clone();
    sqlx::query(
        "UPDATE client_credentials SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)
         WHERE tenant_id = $1 AND kind = $2",
    )
    .bind(victim.as_uuid())
    .bind(&victim_kind)
    .execute(&db.observer)
    .await
    .unwrap();

    let report = rotate_master_key(&db.store, &keyring_k1_k2(), 2, None)
        .await
        .unwrap();
    assert_eq!((report.rotated, report.remaining), (5, 1));
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(
        (
            failure.tenant_id,
            failure.kind.as_str(),
            failure.key_id.as_str()
        ),
        (*victim, victim_kind.as_str(), "k1")
    );
    assert!(
        failure.reason.contains("does not open"),
        "{}",
        failure.reason
    );
    let shown = format!("{:?}", report.failures);
    for value in victim_credentials.values() {
        assert!(!shown.contains(value.as_str()));
    }
    assert_eq!(
        key_ids(&db).await,
        BTreeMap::from([("k1".to_owned(), 1), ("k2".to_owned(), 5)])
    );
    db.drop_database().await;
}

const KIND: &str = "zoho.oauth";

fn token_set(access: &str, refresh: &str, expires_at: DateTime<Utc>) -> String {
    serde_json::json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": expires_at.to_rfc3339(),
        "api_domain": "https://www.zohoapis.com",
    })
    .to_string()
}

async fn stored_token_set(store: &Store, keyring: &Keyring, tenant: TenantId) -> serde_json::Value {
    let opened = open_all(store, keyring, tenant).await.unwrap();
    serde_json::from_str(&opened[KIND]).unwrap()
}

#[tokio::test]
async fn concurrent_callers_of_an_expired_token_share_one_refresh() {
    let db = database().await;
    let keyring = keyring_k1();
    let tenant = onboard(&db.store, &keyring, "oauth-client").await;
    let expired = Utc::now() - chrono::Duration::minutes(5);
    let value = token_set("old-access", "old-refresh", expired);
    put_credential(&db.store, &keyring, tenant, KIND, &value, Some(expired)).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let new_expiry = Utc::now() + chrono::Duration::hours(1);
    let caller = |calls: Arc<AtomicUsize>| {
        let store = db.store.clone();
        let keyring = keyring.clone();
        tokio::spawn(async move {
            oauth::access_token(
                &store,
                &keyring,
                tenant,
                KIND,
                Duration::from_secs(60),
                |refresh_token: Secret<String>| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(refresh_token.expose(), "old-refresh");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, String>(TokenSet {
                        access_token: Secret::new("new-access".to_owned()),
                        refresh_token: Some(Secret::new("new-refresh".to_owned())),
                        expires_at: new_expiry,
                        extra: Secret::new(serde_json::Map::new()),
                    })
                },
            )
            .await
        })
    };
    let first = caller(calls.clone());
    let second = caller(calls.clone());
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.unwrap().expose(), "new-access");
    assert_eq!(second.unwrap().expose(), "new-access");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one refresh");

    let stored = stored_token_set(&db.store, &keyring, tenant).await;
    assert_eq!(stored["access_token"], "new-access");
    assert_eq!(stored["refresh_token"], "new-refresh");
    assert_eq!(stored["api_domain"], "https://www.zohoapis.com");
    let column: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT expires_at FROM client_credentials WHERE tenant_id = $1 AND kind = $2",
    )
    .bind(tenant.as_uuid())
    .bind(KIND)
    .fetch_one(&db.observer)
    .await
    .unwrap();
    assert_eq!(
        column.map(|at| at.timestamp()),
        Some(new_expiry.timestamp())
    );

    // Fresh now: served without a refresh.
    let token = oauth::access_token(
        &db.store,
        &keyring,
        tenant,
        KIND,
        Duration::from_secs(60),
        |_| async { Err::<TokenSet, _>("refresh must not be called") },
    )
    .await
    .unwrap();
    assert_eq!(token.expose(), "new-access");
    db.drop_database().await;
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_stored_tokens_and_says_why_without_them() {
    let db = database().await;
    let keyring = keyring_k1();
    let tenant = onboard(&db.store, &keyring, "oauth-failing").await;
    let expired = Utc::now() - chrono::Duration::minutes(1);
    let value = token_set("old-access", "old-refresh", expired);
    put_credential(&db.store, &keyring, tenant, KIND, &value, Some(expired)).await;

    let error = oauth::access_token(
        &db.store,
        &keyring,
        tenant,
        KIND,
        Duration::from_secs(60),
        |_| async { Err::<TokenSet, _>("vendor answered 400 invalid_grant") },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, OAuthError::RefreshFailed { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(!message.contains("old-refresh") && !message.contains("old-access"));
    let stored = stored_token_set(&db.store, &keyring, tenant).await;
    assert_eq!(stored["refresh_token"], "old-refresh");

    let missing = oauth::access_token(
        &db.store,
        &keyring,
        tenant,
        "gohighlevel.oauth",
        Duration::from_secs(60),
        |_| async { Err::<TokenSet, _>("unused") },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(missing, OAuthError::NotFound { .. }),
        "{missing:?}"
    );
    db.drop_database().await;
}
