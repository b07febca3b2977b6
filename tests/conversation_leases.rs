//! Session ownership in PostgreSQL (ARCHITECTURE.md section 6): one owner at a time, take-over
//! after the lease runs out, and the previous owner's writes fenced.

mod common;

use caller::crypto::Keyring;
use caller::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};
use caller::store::calls::{self, NewAttempt, NewCall};
use caller::store::conversations::{self, Holder, NewConversation, WriteError};
use caller::tenancy::audit::Actor;
use caller::tenancy::service;
use common::TestDatabase;
use serde_json::json;

async fn tenant(db: &TestDatabase) -> TenantId {
    let keyring = Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap();
    let request = serde_json::from_value(
        json!({"slug": "lease-dental", "name": "Lease Dental", "timezone": "UTC"}),
    )
    .unwrap();
    let mut tx = db.store.begin_platform().await.unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("test"), &keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client.id
}

/// A call with one attempt and its conversation, waiting for an owner.
async fn waiting_conversation(db: &TestDatabase, tenant: TenantId) -> AttemptId {
    let call = CallId::from_uuid(uuid::Uuid::now_v7());
    let attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
    let to = PhoneNumber::parse("+12015550123").unwrap();
    let from = PhoneNumber::parse("+15125550100").unwrap();
    let mut tx = db.store.begin_tenant(tenant).await.unwrap();
    calls::create_queued(
        &mut tx,
        &NewCall {
            id: call,
            tenant,
            to: &to,
            from: &from,
            crm_contact_id: None,
            lead: &json!({}),
            request_event_id: EventId::new_v7(),
        },
    )
    .await
    .unwrap();
    calls::insert_intent(
        &mut tx,
        &NewAttempt {
            id: attempt,
            call_id: call,
            tenant,
            attempt_number: 1,
            input_event_id: EventId::new_v7(),
            provider: "twilio",
            from: &from,
        },
    )
    .await
    .unwrap();
    let opened = conversations::open(
        &mut tx,
        &NewConversation {
            tenant,
            call,
            attempt,
            answered_event_id: uuid::Uuid::now_v7(),
            provider_call_id: "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            stream_id: "MZaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            context: json!({}),
        },
    )
    .await
    .unwrap();
    assert!(opened);
    tx.commit().await.unwrap();
    attempt
}

async fn claim(db: &TestDatabase, owner: &str, ttl_ms: i64) -> Vec<conversations::Claimed> {
    let mut tx = db.store.begin_platform().await.unwrap();
    let claimed = conversations::claim(&mut tx, owner, ttl_ms, 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    claimed
}

async fn turn(
    db: &TestDatabase,
    tenant: TenantId,
    attempt: AttemptId,
    holder: &Holder,
    text: &str,
) -> Result<(), WriteError> {
    let mut tx = db.store.begin_tenant(tenant).await.unwrap();
    let written = conversations::add_turn(&mut tx, attempt, holder, "user", text).await;
    tx.commit().await.unwrap();
    written
}

#[tokio::test]
async fn one_owner_at_a_time_and_a_stalled_owner_is_fenced() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db).await;
    let attempt = waiting_conversation(&db, tenant).await;

    let first = claim(&db, "worker-a", 60_000).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].epoch, first[0].resumes), (1, 0));
    assert!(
        claim(&db, "worker-b", 60_000).await.is_empty(),
        "a live lease is not claimable"
    );
    let a = Holder {
        owner: "worker-a".to_owned(),
        epoch: 1,
    };
    turn(&db, tenant, attempt, &a, "hello").await.unwrap();

    // A stalls: its lease runs out and B takes over with the next epoch.
    sqlx::query("UPDATE conversations SET lease_until = now() - interval '1 second'")
        .execute(&db.observer)
        .await
        .unwrap();
    let second = claim(&db, "worker-b", 60_000).await;
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].epoch, second[0].resumes), (2, 1));
    let b = Holder {
        owner: "worker-b".to_owned(),
        epoch: 2,
    };

    // A's writes are refused and its heartbeat finds nothing; B's land after A's turn.
    assert!(matches!(
        turn(&db, tenant, attempt, &a, "lost").await,
        Err(WriteError::Fenced)
    ));
    let mut tx = db.store.begin_platform().await.unwrap();
    assert!(
        conversations::renew(&mut tx, "worker-a", 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        conversations::renew(&mut tx, "worker-b", 60_000)
            .await
            .unwrap(),
        vec![(attempt.as_uuid(), 2)]
    );
    tx.commit().await.unwrap();
    turn(&db, tenant, attempt, &b, "still there?")
        .await
        .unwrap();
    let mut tx = db.store.begin_tenant(tenant).await.unwrap();
    let turns = conversations::turns(&mut tx, attempt).await.unwrap();
    assert_eq!(
        turns,
        vec![
            ("user".to_owned(), "hello".to_owned()),
            ("user".to_owned(), "still there?".to_owned())
        ]
    );

    // Only the owner ends it; the end waits for its relay until confirmed.
    assert!(matches!(
        conversations::end(&mut tx, attempt, &a, "caller_hung_up").await,
        Err(WriteError::Fenced)
    ));
    let ended = conversations::end(&mut tx, attempt, &b, "caller_hung_up")
        .await
        .unwrap();
    assert_eq!(
        (ended.turns, ended.resumes, ended.end_reason.as_str()),
        (2, 1, "caller_hung_up")
    );
    tx.commit().await.unwrap();
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let mut tx = db.store.begin_platform().await.unwrap();
    assert_eq!(
        conversations::unpublished(&mut tx, later, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    conversations::mark_published(&mut tx, attempt.as_uuid())
        .await
        .unwrap();
    assert!(
        conversations::unpublished(&mut tx, later, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        claim(&db, "worker-c", 60_000).await.is_empty(),
        "an ended conversation is not claimable"
    );
    tx.commit().await.unwrap();
    db.drop_database().await;
}

#[tokio::test]
async fn a_released_session_is_claimable_at_once() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db).await;
    let attempt = waiting_conversation(&db, tenant).await;
    assert_eq!(claim(&db, "worker-a", 60_000).await.len(), 1);
    let mut tx = db.store.begin_tenant(tenant).await.unwrap();
    let a = Holder {
        owner: "worker-a".to_owned(),
        epoch: 1,
    };
    conversations::release(&mut tx, attempt, &a).await.unwrap();
    tx.commit().await.unwrap();
    let taken = claim(&db, "worker-b", 60_000).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].epoch, 2);
    db.drop_database().await;
}
