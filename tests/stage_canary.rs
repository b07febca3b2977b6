//! The canary stage's handler, called directly with a real transaction and a recording outbox.

mod common;

use caller::bus::envelope::{Envelope, Meta};
use caller::bus::outbox::Outbox;
use caller::error::StageError;
use caller::events::canary::{CanaryAnswered, CanaryRequested};
use caller::ids::TenantId;
use caller::stages::canary::CanaryStage;
use caller::stages::{Stage, StageContext};

async fn handle(origin: &str) -> (Result<(), StageError>, Outbox, Envelope<CanaryRequested>) {
    let db = common::TestDatabase::create().await;
    let input = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: origin.to_owned(),
        },
    );
    let mut outbox = Outbox::new(
        CanaryStage::NAME,
        &["canary.answered".to_owned()],
        &input.meta,
    );
    let mut tx = db.store.begin_tenant(TenantId::PLATFORM).await.unwrap();
    let result = CanaryStage
        .handle(
            &input,
            &mut StageContext {
                tx: &mut tx,
                outbox: &mut outbox,
            },
        )
        .await;
    tx.rollback().await.unwrap();
    db.drop_database().await;
    (result, outbox, input)
}

#[tokio::test]
async fn a_probe_is_answered_with_one_event_caused_by_it() {
    let (result, outbox, input) = handle("monitor").await;
    result.unwrap();
    assert_eq!(outbox.messages().len(), 1);
    let message = &outbox.messages()[0];
    let answer =
        Envelope::<CanaryAnswered>::decode(Some(&message.header_map()), &message.payload).unwrap();
    assert_eq!(answer.payload.origin, "monitor");
    assert_eq!(
        answer.payload.requested_at.timestamp_micros(),
        input.meta.occurred_at.timestamp_micros()
    );
    assert_eq!(answer.meta.causation_id, Some(input.meta.event_id));
    assert_eq!(
        message.subject,
        format!("canary.answered.{}", TenantId::PLATFORM)
    );
    let meta = Meta::from_headers(Some(&message.header_map())).unwrap();
    assert_eq!(meta.source, "caller/stage/canary");
}

#[tokio::test]
async fn a_probe_without_origin_is_rejected() {
    let (result, outbox, _) = handle("  ").await;
    assert!(
        matches!(result, Err(StageError::Rejected { .. })),
        "{result:?}"
    );
    assert!(outbox.messages().is_empty());
}
