//! Stage-runner throughput next to raw async-nats, measured in the same run.
//!
//! `cargo bench --bench runner` starts a private `nats-server` (file store, like production)
//! and a private PostgreSQL database, then measures, each as the median of three runs:
//!
//! - raw JetStream publish: `Nats-Msg-Id` set, PubAcks awaited in windows of 512;
//! - raw consume: one durable pull consumer, batches of 100, plain ack;
//! - the stage runner with a no-op stage at 1 and 4 concurrent handlers: decode, claim
//!   `(stage, event_id)` in PostgreSQL, commit, ack — everything a real stage pays for.
//!
//! Environment: `BENCH_MESSAGES` (default 20000 raw, a quarter of it per runner run),
//! `CALLER_TEST_DATABASE_URL`, `NATS_SERVER_BIN`. Prints a Markdown table for docs/.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use caller::bus::Bus;
use caller::bus::envelope::{BusMessage, Envelope};
use caller::bus::provision::{self, Definitions};
use caller::bus::runner::{self, Runtime};
use caller::error::StageError;
use caller::events::EventSpec;
use caller::events::canary::CanaryRequested;
use caller::ids::TenantId;
use caller::metrics::Metrics;
use caller::pipeline::StageSpec;
use caller::settings::RunnerSettings;
use caller::shutdown::Shutdown;
use caller::stages::{Stage, StageContext};
use caller::store::Store;
use futures::StreamExt;
use tokio::time::Instant;

mod support;
use support::{median, start_nats};

/// Does nothing: what is measured is the runner's own cost.
#[derive(Default)]
struct NoopStage;

impl Stage for NoopStage {
    const NAME: &'static str = "noop";
    type Input = CanaryRequested;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    async fn handle(
        &self,
        _: &Envelope<CanaryRequested>,
        _: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        Ok(())
    }
}

fn messages(count: usize) -> Vec<BusMessage> {
    // ~300 B on the wire with headers, like MEASURED.md's reference.
    (0..count)
        .map(|index| {
            Envelope::new(
                TenantId::PLATFORM,
                "caller/bench",
                CanaryRequested {
                    origin: format!("bench-{index:08}"),
                },
            )
            .to_message()
            .unwrap()
        })
        .collect()
}

async fn publish(bus: &Bus, batch: &[BusMessage]) -> f64 {
    let started = Instant::now();
    for window in batch.chunks(512) {
        bus.publish_all(window).await.unwrap();
    }
    batch.len() as f64 / started.elapsed().as_secs_f64()
}

async fn reset_stream(bus: &Bus) {
    let stream = bus.jetstream().get_stream("CANARY").await.unwrap();
    stream.purge().await.unwrap();
    for name in ["raw", "noop"] {
        stream.delete_consumer(name).await.ok();
    }
}

fn consumer_config(name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: 5,
        max_ack_pending: 10_000,
        filter_subject: "canary.requested.*".to_owned(),
        ..Default::default()
    }
}

#[allow(clippy::disallowed_methods)] // NOTE: the raw baseline acks directly on purpose.
async fn raw_consume(bus: &Bus, count: usize) -> f64 {
    let stream = bus.jetstream().get_stream("CANARY").await.unwrap();
    let consumer = stream
        .create_consumer(consumer_config("raw"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(100)
        .messages()
        .await
        .unwrap();
    let mut seen = 0;
    while seen < count {
        let message = messages.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        seen += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn runner_consume(bus: &Bus, store: &Store, count: usize, concurrency: usize) -> f64 {
    let stream = bus.jetstream().get_stream("CANARY").await.unwrap();
    stream
        .create_consumer(consumer_config("noop"))
        .await
        .unwrap();
    // The store is the application role: clearing claims needs platform mode.
    let mut tx = store.begin_platform().await.unwrap();
    sqlx::query("DELETE FROM processed_events")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let metrics = Metrics::default();
    let shutdown = Shutdown::new();
    let runtime = Runtime::new(
        bus.clone(),
        store.clone(),
        metrics.clone(),
        RunnerSettings::default(),
    );
    let spec = StageSpec {
        name: "noop".to_owned(),
        pipeline: "bench".to_owned(),
        stream: "CANARY".to_owned(),
        consumer: "noop".to_owned(),
        concurrency,
        outputs: Vec::new(),
        dead_letter: "dlq.noop".to_owned(),
    };
    let stage = metrics.stage("noop");
    let started = Instant::now();
    let task = tokio::spawn(runner::run_stage(
        Arc::new(NoopStage),
        spec,
        runtime,
        shutdown.clone(),
    ));
    while stage.counts().processed < count as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    shutdown.trigger();
    task.await.unwrap().unwrap();
    assert_eq!(stage.counts().dead_lettered, 0);
    rate
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only for bench.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let total: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let store_dir = tempfile::tempdir().unwrap();
    let (_server, url) = start_nats(store_dir.path());
    let bus = Bus::connect(&url, Duration::from_secs(5)).await.unwrap();
    let definitions =
        Definitions::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats")).unwrap();
    provision::provision(&bus, &definitions).await.unwrap();

    let (store, database) = support::Database::create().await;

    let (mut published, mut consumed, mut runner_1, mut runner_4) =
        (vec![], vec![], vec![], vec![]);
    let per_runner = (total / 4).max(1);
    for _ in 0..3 {
        reset_stream(&bus).await;
        let batch = messages(total);
        published.push(publish(&bus, &batch).await);
        consumed.push(raw_consume(&bus, total).await);
        for (concurrency, results) in [(1, &mut runner_1), (4, &mut runner_4)] {
            reset_stream(&bus).await;
            let batch = messages(per_runner);
            publish(&bus, &batch).await;
            results.push(runner_consume(&bus, &store, per_runner, concurrency).await);
        }
    }
    store.pool().close().await;
    database.drop().await;

    let (published, consumed) = (median(published), median(consumed));
    let raw_round_trip = 1.0 / (1.0 / published + 1.0 / consumed);
    let (runner_1, runner_4) = (median(runner_1), median(runner_4));
    println!("| what | messages/s | vs raw consume |");
    println!("|---|---:|---:|");
    println!(
        "| raw JetStream publish, Nats-Msg-Id, PubAck awaited, 512 in flight | {published:.0} | |"
    );
    println!("| raw pull consume, batch 100, plain ack | {consumed:.0} | 1.00 |");
    println!(
        "| raw publish + consume, serialized (harmonic) | {raw_round_trip:.0} | {:.3} |",
        raw_round_trip / consumed
    );
    println!(
        "| runner, no-op stage, 1 handler (claim + commit + ack) | {runner_1:.0} | {:.3} |",
        runner_1 / consumed
    );
    println!(
        "| runner, no-op stage, 4 handlers | {runner_4:.0} | {:.3} |",
        runner_4 / consumed
    );
    println!("({total} raw messages, {per_runner} per runner run, medians of 3 runs)");
}
