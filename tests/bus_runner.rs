//! The stage runner against a real NATS server and a real PostgreSQL database, with a toy
//! stage whose behaviour each input chooses through its `origin` field.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use caller::bus::Bus;
use caller::bus::dead_letter;
use caller::bus::delivery::Delivery;
use caller::bus::envelope::{BusMessage, Envelope, Meta, header};
use caller::bus::provision::Definitions;
use caller::bus::runner::{self, Runtime};
use caller::error::StageError;
use caller::events::EventSpec;
use caller::events::canary::{CanaryAnswered, CanaryRequested};
use caller::ids::{EventId, TenantId};
use caller::metrics::{Metrics, StageCounts};
use caller::pipeline::StageSpec;
use caller::settings::RunnerSettings;
use caller::shutdown::Shutdown;
use caller::stages::{Stage, StageContext};
use common::{TestEnv, eventually};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(20);

/// Behaviour chosen by the input's `origin`:
/// `ok`, `fail:N` (retryable N times, then ok), `reject`, `reject-once` (rejects the first
/// input with that origin, accepts later ones), `undeclared` (emits an undeclared type).
#[derive(Default)]
struct ToyStage {
    attempts: Mutex<HashMap<EventId, u32>>,
    rejected_once: AtomicU32,
    invocations: AtomicU32,
}

impl Stage for ToyStage {
    const NAME: &'static str = "toy";
    type Input = CanaryRequested;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self::default())
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<CanaryAnswered>()]
    }

    async fn handle(
        &self,
        input: &Envelope<CanaryRequested>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let origin = input.payload.origin.as_str();
        if let Some(times) = origin.strip_prefix("fail:") {
            let times: u32 = times.parse().unwrap();
            let attempt = {
                let mut attempts = self.attempts.lock().unwrap();
                let attempt = attempts.entry(input.meta.event_id).or_default();
                *attempt += 1;
                *attempt
            };
            if attempt <= times {
                return Err(StageError::Retryable {
                    reason: format!("toy failure {attempt} of {times}"),
                    after: Some(Duration::from_millis(20)),
                });
            }
        }
        match origin {
            "reject" => return Err(StageError::rejected("toy rejects this input")),
            "reject-once" if self.rejected_once.fetch_add(1, Ordering::SeqCst) == 0 => {
                return Err(StageError::rejected("toy rejects the first one"));
            }
            "undeclared" => {
                cx.outbox.push(CanaryRequested {
                    origin: "loop".to_owned(),
                })?;
            }
            _ => {}
        }
        // A database effect in the handler's transaction: committed once per input, or never.
        sqlx::query("INSERT INTO toy_effects (event_id) VALUES ($1)")
            .bind(input.meta.event_id.as_uuid())
            .execute(&mut *cx.tx)
            .await?;
        cx.outbox.push(CanaryAnswered {
            origin: origin.to_owned(),
            requested_at: input.meta.occurred_at,
            answered_at: chrono::Utc::now(),
        })?;
        Ok(())
    }
}

/// Writes the toy consumers beside a copy of the repository's definitions.
fn toy_definitions() -> tempfile::TempDir {
    let dir = common::nats_definitions_copy();
    let consumer = |name: &str, ack_wait_secs: u64| {
        serde_json::json!({
            "durable_name": name,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": ack_wait_secs * 1_000_000_000,
            "max_deliver": 5,
            "filter_subject": "canary.requested.*",
            "replay_policy": "instant",
            "max_ack_pending": 100
        })
        .to_string()
    };
    let consumers = dir.path().join("consumers/CANARY");
    std::fs::write(consumers.join("toy.json"), consumer("toy", 2)).unwrap();
    std::fs::write(consumers.join("probe.json"), consumer("probe", 30)).unwrap();
    dir
}

struct Harness {
    env: TestEnv,
    stage: Arc<ToyStage>,
    metrics: Metrics,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _definitions: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|env| env.db.store.clone()).await
    }

    /// Starts the toy stage with the store `store_for` builds (e.g. through a proxy).
    async fn start_with(store_for: impl FnOnce(&TestEnv) -> caller::store::Store) -> Self {
        let (env, definitions) = Self::prepare().await;
        let store = store_for(&env);
        Self::run(env, definitions, store)
    }

    /// Starts NATS and the database with the toy consumers, without running the stage.
    async fn prepare() -> (TestEnv, tempfile::TempDir) {
        let definitions = toy_definitions();
        let env = TestEnv::start(Some(definitions.path())).await;
        for statement in [
            "CREATE TABLE toy_effects (event_id uuid NOT NULL)",
            "GRANT SELECT, INSERT ON toy_effects TO caller_app",
        ] {
            sqlx::query(statement)
                .execute(&env.db.observer)
                .await
                .unwrap();
        }
        (env, definitions)
    }

    /// Runs the toy stage on a prepared environment.
    fn run(env: TestEnv, definitions: tempfile::TempDir, store: caller::store::Store) -> Self {
        let stage = Arc::new(ToyStage::default());
        let metrics = Metrics::default();
        let shutdown = Shutdown::new();
        let runtime = Runtime::new(
            env.bus.clone(),
            store,
            metrics.clone(),
            RunnerSettings {
                retry_base_ms: 20,
                retry_max_ms: 200,
                pull_expires_ms: 500,
                ..RunnerSettings::default()
            },
        );
        let spec = StageSpec {
            name: "toy".to_owned(),
            pipeline: "test".to_owned(),
            stream: "CANARY".to_owned(),
            consumer: "toy".to_owned(),
            concurrency: 4,
            outputs: vec!["canary.answered".to_owned()],
            dead_letter: "dlq.toy".to_owned(),
        };
        let task = tokio::spawn(runner::run_stage(
            stage.clone(),
            spec,
            runtime,
            shutdown.clone(),
        ));
        Self {
            env,
            stage,
            metrics,
            shutdown,
            task,
            _definitions: definitions,
        }
    }

    fn counts(&self) -> StageCounts {
        self.metrics.stage("toy").counts()
    }

    async fn publish(&self, origin: &str) -> BusMessage {
        let request = Envelope::new(
            TenantId::PLATFORM,
            "caller/test",
            CanaryRequested {
                origin: origin.to_owned(),
            },
        );
        let message = request.to_message().unwrap();
        self.env
            .bus
            .publish_all(std::slice::from_ref(&message))
            .await
            .unwrap();
        message
    }

    async fn wait_for(&self, what: &str, check: impl Fn(StageCounts) -> bool) {
        eventually(WAIT, what, || async { check(self.counts()) }).await;
    }

    async fn effects(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM toy_effects")
            .fetch_one(&self.env.db.observer)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
        self.env.finish().await;
    }
}

/// Every message stored in `stream` on subjects matching `filter`.
async fn stored(
    bus: &Bus,
    stream: &str,
    filter: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let stream = bus.jetstream().get_stream(stream).await.unwrap();
    let mut next = 1;
    let mut out = Vec::new();
    while let Ok(message) = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(filter.to_owned())
        .send()
        .await
    {
        next = message.sequence + 1;
        out.push(message);
    }
    out
}

fn causation(message: &async_nats::jetstream::message::StreamMessage) -> Option<String> {
    message
        .headers
        .get(header::CAUSATION_ID)
        .map(|v| v.as_str().to_owned())
}

fn event_id_of(message: &BusMessage) -> String {
    message.message_id().unwrap().to_owned()
}

#[tokio::test]
async fn an_input_yields_its_declared_output_exactly_once() {
    let harness = Harness::start().await;
    let request = harness.publish("ok").await;
    harness
        .wait_for("one processed", |c| c.processed == 1)
        .await;

    // Redeliver the same event under another stream message id (as a replay outside the
    // duplicate window would): the claim turns it into a re-emit of the same output id.
    let mut again = request.clone();
    for (name, value) in &mut again.headers {
        if name == header::NATS_MSG_ID {
            *value = format!("{value}-again");
        }
    }
    harness.env.bus.publish_all(&[again]).await.unwrap();
    harness
        .wait_for("duplicate seen", |c| c.duplicate == 1)
        .await;

    let answers = stored(&harness.env.bus, "CANARY", "canary.answered.*").await;
    assert_eq!(answers.len(), 1, "exactly one output in the stream");
    assert_eq!(causation(&answers[0]), Some(event_id_of(&request)));
    let answer =
        Envelope::<CanaryAnswered>::decode(Some(&answers[0].headers), &answers[0].payload).unwrap();
    assert_eq!(answer.payload.origin, "ok");
    assert_eq!(
        harness.effects().await,
        1,
        "the handler's effect committed once"
    );
    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 1);
    assert_eq!(
        harness.counts(),
        StageCounts {
            processed: 1,
            duplicate: 1,
            ..StageCounts::default()
        }
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_handler_failing_n_times_then_succeeding_yields_one_output() {
    let harness = Harness::start().await;
    harness.publish("fail:3").await;
    harness
        .wait_for("processed after retries", |c| c.processed == 1)
        .await;

    assert_eq!(harness.counts().retried, 3);
    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 4);
    assert_eq!(
        stored(&harness.env.bus, "CANARY", "canary.answered.*")
            .await
            .len(),
        1
    );
    assert_eq!(
        harness.effects().await,
        1,
        "rolled-back attempts left no effect"
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_its_reason_and_not_redelivered() {
    let harness = Harness::start().await;
    let request = harness.publish("reject").await;
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 1)
        .await;

    let letters = dead_letter::list(&harness.env.bus, Some("toy"), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "toy rejects this input");
    assert_eq!(letters[0].stage, "toy");
    assert_eq!(letters[0].original_subject, request.subject);
    assert_eq!(
        letters[0].event_id.as_deref(),
        Some(event_id_of(&request).as_str())
    );
    assert_eq!(
        letters[0].payload, request.payload,
        "the original payload is kept"
    );

    // Longer than the consumer's 2 s ack_wait: a message that was not TERMed would be back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 1);
    let mut stream = harness
        .env
        .bus
        .jetstream()
        .get_stream("CANARY")
        .await
        .unwrap();
    let info = stream.consumer_info("toy").await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    assert!(stream.info().await.is_ok());
    assert_eq!(harness.effects().await, 0);
    harness.stop().await;
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_and_the_worker_keeps_running() {
    let harness = Harness::start().await;
    let good = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: "ok".into(),
        },
    )
    .to_message()
    .unwrap();
    let with = |edit: &dyn Fn(&mut BusMessage)| {
        let mut message = good.clone();
        for (name, value) in &mut message.headers {
            if name == header::NATS_MSG_ID || name == header::ID {
                *value = EventId::new_v7().to_string();
            }
        }
        edit(&mut message);
        message
    };
    let bad_payload = with(&|m| m.payload = vec![0xc1, 0x00, 0xff]);
    let unknown_type = with(&|m| {
        for (name, value) in &mut m.headers {
            if name == header::TYPE {
                *value = "something.else".to_owned();
            }
        }
    });
    let no_tenant = with(&|m| m.headers.retain(|(name, _)| name != header::TENANT_ID));
    harness
        .env
        .bus
        .publish_all(&[bad_payload, unknown_type, no_tenant])
        .await
        .unwrap();
    harness
        .wait_for("three dead letters", |c| c.dead_lettered == 3)
        .await;
    harness.publish("ok").await;
    harness
        .wait_for("the worker still processes", |c| c.processed == 1)
        .await;

    let reasons: Vec<String> = dead_letter::list(&harness.env.bus, Some("toy"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|letter| letter.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("undecodable input: payload: decode")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unexpected event type `something.else`")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("missing header `ce-tenantid`")),
        "{reasons:?}"
    );
    assert_eq!(harness.counts().rejected, 3);
    harness.stop().await;
}

#[tokio::test]
async fn an_undeclared_output_is_refused_and_dead_lettered() {
    let harness = Harness::start().await;
    harness.publish("undeclared").await;
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 1)
        .await;

    let letters = dead_letter::list(&harness.env.bus, Some("toy"), 10)
        .await
        .unwrap();
    assert!(
        letters[0]
            .reason
            .contains("emitted undeclared output `canary.requested`"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        stored(&harness.env.bus, "CANARY", "canary.answered.*")
            .await
            .len(),
        0
    );
    // Only the test's own request is on the input subject: nothing undeclared got out.
    assert_eq!(
        stored(&harness.env.bus, "CANARY", "canary.requested.*")
            .await
            .len(),
        1
    );
    assert_eq!(
        harness.effects().await,
        0,
        "the handler's transaction was rolled back"
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_duplicate_publish_with_the_same_id_is_dropped() {
    let harness = Harness::start().await;
    let request = harness.publish("ok").await;
    let duplicates = harness
        .env
        .bus
        .publish_all(&[request.clone(), request])
        .await
        .unwrap();
    assert_eq!(
        duplicates, 2,
        "both republishes are reported as duplicates by the stream"
    );
    harness.wait_for("processed", |c| c.processed == 1).await;

    assert_eq!(
        stored(&harness.env.bus, "CANARY", "canary.requested.*")
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 1);
    assert_eq!(harness.counts().duplicate, 0);
    harness.stop().await;
}

#[tokio::test]
async fn a_replayed_dead_letter_gets_a_new_id_linked_to_the_old_one() {
    let harness = Harness::start().await;
    let request = harness.publish("reject-once").await;
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 1)
        .await;
    let letter = dead_letter::list(&harness.env.bus, None, 10)
        .await
        .unwrap()
        .remove(0);

    let new_id = dead_letter::replay(&harness.env.bus, letter.sequence)
        .await
        .unwrap();
    assert_ne!(new_id, event_id_of(&request));
    harness
        .wait_for("replay processed", |c| c.processed == 1)
        .await;

    let requests = stored(&harness.env.bus, "CANARY", "canary.requested.*").await;
    let replayed = requests.last().unwrap();
    assert_eq!(replayed.headers.get(header::ID).unwrap().as_str(), new_id);
    assert_eq!(
        replayed
            .headers
            .get(dead_letter::header::REPLAY_OF)
            .unwrap()
            .as_str(),
        event_id_of(&request)
    );
    assert!(
        dead_letter::list(&harness.env.bus, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "replayed entry removed"
    );
    let answers = stored(&harness.env.bus, "CANARY", "canary.answered.*").await;
    assert_eq!(causation(&answers[0]).as_deref(), Some(new_id.as_str()));
    harness.stop().await;
}

#[tokio::test]
async fn a_delivery_dropped_unsettled_is_redelivered_at_once() {
    let definitions = toy_definitions();
    let env = TestEnv::start(Some(definitions.path())).await;
    let request = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: "ok".into(),
        },
    );
    env.bus
        .publish_all(&[request.to_message().unwrap()])
        .await
        .unwrap();
    // The probe consumer's ack_wait is 30 s: a redelivery within seconds can only be our NAK.
    let consumer: PullConsumer = env
        .bus
        .jetstream()
        .get_consumer_from_stream("probe", "CANARY")
        .await
        .unwrap();
    let take = || async {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        loop {
            if let Some(message) = batch.next().await {
                return Delivery::new(message.unwrap());
            }
            batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .unwrap();
        }
    };
    let first = take().await;
    assert_eq!(first.info().unwrap().delivered, 1);
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(10), take())
        .await
        .expect("redelivered after the drop");
    assert_eq!(second.info().unwrap().delivered, 2);
    second.ack().await.unwrap();
    env.finish().await;
}

#[tokio::test]
async fn provisioning_twice_changes_nothing_the_second_time() {
    let definitions = toy_definitions();
    let env = TestEnv::start(Some(definitions.path())).await;
    let loaded = Definitions::load(definitions.path()).unwrap();
    let report = caller::bus::provision::provision(&env.bus, &loaded)
        .await
        .unwrap();
    assert!(!report.is_empty());
    for (what, change) in &report {
        assert_eq!(*change, caller::bus::provision::Change::Unchanged, "{what}");
    }
    // A drifted definition is updated, and named.
    let path = definitions.path().join("consumers/CANARY/toy.json");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"max_deliver\":5", "\"max_deliver\":7");
    std::fs::write(&path, edited).unwrap();
    let drifted = Definitions::load(definitions.path()).unwrap();
    let report = caller::bus::provision::provision(&env.bus, &drifted)
        .await
        .unwrap();
    assert_eq!(
        report["consumer CANARY/toy"],
        caller::bus::provision::Change::Updated(vec!["max_deliver".to_owned()])
    );
    let again = caller::bus::provision::provision(&env.bus, &drifted)
        .await
        .unwrap();
    assert_eq!(
        again["consumer CANARY/toy"],
        caller::bus::provision::Change::Unchanged
    );
    env.finish().await;
}

#[tokio::test]
async fn output_ids_survive_a_redelivery_of_the_same_input() {
    // Regression guard for the outbox: stored outputs are byte-identical on re-emit.
    let harness = Harness::start().await;
    let request = harness.publish("ok").await;
    harness.wait_for("processed", |c| c.processed == 1).await;
    let meta = Meta::from_headers(Some(&request.header_map())).unwrap();
    let stored_outputs: Vec<u8> = sqlx::query_scalar(
        "SELECT outputs FROM processed_events WHERE stage = 'toy' AND event_id = $1",
    )
    .bind(meta.event_id.as_uuid())
    .fetch_one(&harness.env.db.observer)
    .await
    .unwrap();
    let outputs: Vec<BusMessage> = caller::bus::codec::decode(&stored_outputs).unwrap();
    let answers = stored(&harness.env.bus, "CANARY", "canary.answered.*").await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].payload, answers[0].payload.to_vec());
    assert_eq!(
        outputs[0].message_id(),
        answers[0]
            .headers
            .get(header::NATS_MSG_ID)
            .map(|v| v.as_str())
    );
    harness.stop().await;
}

#[tokio::test]
async fn retries_that_never_succeed_end_in_the_dead_letter_stream() {
    let harness = Harness::start().await;
    harness.publish("fail:100").await;
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 1)
        .await;

    // max_deliver is 5 and the last delivery is reserved for dead-lettering: 4 attempts.
    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 4);
    assert_eq!(harness.counts().retried, 4);
    let letters = dead_letter::list(&harness.env.bus, Some("toy"), 10)
        .await
        .unwrap();
    assert_eq!(
        letters[0].reason,
        "gave up after 4 deliveries: toy failure 4 of 100"
    );
    assert_eq!(letters[0].deliveries, "4");
    assert_eq!(harness.effects().await, 0);
    harness.stop().await;
}

/// Takes the toy consumer's next message `times` times and drops it unsettled each time.
async fn crash_deliveries(env: &TestEnv, times: u32) {
    let consumer: PullConsumer = env
        .bus
        .jetstream()
        .get_consumer_from_stream("toy", "CANARY")
        .await
        .unwrap();
    let mut delivered = 0;
    while delivered < times {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        if let Some(message) = batch.next().await {
            drop(Delivery::new(message.unwrap()));
            delivered += 1;
        }
    }
}

#[tokio::test]
async fn a_message_past_its_last_delivery_is_dead_lettered_without_running_the_handler() {
    let (env, definitions) = Harness::prepare().await;
    let request = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: "ok".into(),
        },
    );
    env.bus
        .publish_all(&[request.to_message().unwrap()])
        .await
        .unwrap();
    // Four deliveries that each "crash" (dropped unsettled, so NAKed): as if workers died.
    crash_deliveries(&env, 4).await;
    let store = env.db.store.clone();
    let harness = Harness::run(env, definitions, store);
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 1)
        .await;

    assert_eq!(harness.stage.invocations.load(Ordering::SeqCst), 0);
    let letters = dead_letter::list(&harness.env.bus, Some("toy"), 10)
        .await
        .unwrap();
    assert!(
        letters[0].reason.starts_with("exceeded 4 deliveries"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].deliveries, "5");
    harness.stop().await;
}

#[tokio::test]
async fn purging_dead_letters_of_one_stage_leaves_the_others() {
    let harness = Harness::start().await;
    harness.publish("reject").await;
    harness.publish("reject").await;
    harness
        .wait_for("dead-lettered", |c| c.dead_lettered == 2)
        .await;
    // Another stage's dead letter, published the way the runner would.
    let mut foreign = harness.publish("ok").await;
    foreign.subject = "dlq.other".to_owned();
    for (name, value) in &mut foreign.headers {
        if name == header::NATS_MSG_ID {
            *value = "dlq.other.CANARY.99".to_owned();
        }
    }
    harness.env.bus.publish_all(&[foreign]).await.unwrap();

    assert_eq!(
        dead_letter::purge(&harness.env.bus, Some("toy"))
            .await
            .unwrap(),
        2
    );
    let left = dead_letter::list(&harness.env.bus, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        dead_letter::get(&harness.env.bus, left[0].sequence)
            .await
            .is_ok()
    );
    assert!(
        dead_letter::get(&harness.env.bus, 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("no dead letter with sequence 1")
    );
    harness.stop().await;
}

#[tokio::test]
async fn old_claims_are_swept_and_recent_ones_kept() {
    let env = TestEnv::start(None).await;
    let pool = &env.db.observer;
    for age_days in [30, 20, 1] {
        sqlx::query(
            "INSERT INTO processed_events (stage, event_id, tenant_id, processed_at)
             VALUES ('toy', $1, $2, now() - make_interval(days => $3))",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(uuid::Uuid::nil())
        .bind(age_days)
        .execute(pool)
        .await
        .unwrap();
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(14);
    // The sweep runs as the application role, in platform mode, as the process does.
    let mut tx = env.db.store.begin_platform().await.unwrap();
    for (limit, expected) in [(1, 1), (100, 1), (100, 0)] {
        let swept = caller::store::processed_events::sweep(&mut tx, cutoff, limit)
            .await
            .unwrap();
        assert_eq!(swept, expected);
    }
    tx.commit().await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    env.finish().await;
}

#[tokio::test]
async fn a_last_delivery_after_an_unpublished_commit_re_emits_instead_of_dead_lettering() {
    let (env, definitions) = Harness::prepare().await;
    let request = Envelope::new(
        TenantId::PLATFORM,
        "caller/test",
        CanaryRequested {
            origin: "ok".into(),
        },
    );
    env.bus
        .publish_all(&[request.to_message().unwrap()])
        .await
        .unwrap();
    // An earlier delivery committed its claim and outputs, then died before publishing.
    let answer = Envelope::new(
        TenantId::PLATFORM,
        "caller/stage/toy",
        CanaryAnswered {
            origin: "ok".into(),
            requested_at: chrono::Utc::now(),
            answered_at: chrono::Utc::now(),
        },
    );
    let stored_outputs = caller::bus::codec::encode(&vec![answer.to_message().unwrap()]).unwrap();
    sqlx::query("INSERT INTO processed_events (stage, event_id, tenant_id, outputs, output_count) VALUES ('toy', $1, $2, $3, 1)")
        .bind(request.meta.event_id.as_uuid())
        .bind(uuid::Uuid::nil())
        .bind(stored_outputs)
        .execute(&env.db.observer)
        .await
        .unwrap();
    // Four deliveries that each "crash" (dropped unsettled, so NAKed): as if workers died.
    crash_deliveries(&env, 4).await;
    let store = env.db.store.clone();
    let harness = Harness::run(env, definitions, store);
    harness.wait_for("re-emitted", |c| c.duplicate == 1).await;

    assert_eq!(harness.counts().dead_lettered, 0);
    assert_eq!(
        harness.stage.invocations.load(Ordering::SeqCst),
        0,
        "the handler never ran again"
    );
    let answers = stored(&harness.env.bus, "CANARY", "canary.answered.*").await;
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].headers.get(header::ID).unwrap().as_str(),
        answer.meta.event_id.to_string()
    );
    harness.stop().await;
}
