//! Admission and dialing throughput: from a published `lead.resolved` to the Twilio simulator
//! receiving the create-call request, at 1 and 2 dial workers, with 200 ms provider latency.
//!
//! `cargo bench --bench admission` starts a private `nats-server` and a private PostgreSQL
//! database, onboards one tenant whose Twilio account is the in-process simulator (create
//! requests answered after `BENCH_PROVIDER_LATENCY_MS`, default 200; calls then stay quiet, so
//! no callbacks compete), and runs the real `rate_limit` stage (consumer and admission cycles)
//! and 1, then 2, `dial` workers (each with the pipeline's 16 handlers and, like a separate
//! process, its own pool of 16 database connections). The tenant's limits
//! are set high (`concurrency_cap` 10,000, 1,000 calls/s, 20 caller numbers at 1,000/s each)
//! so that the pipeline, not the limits, is measured.
//!
//! For each run it publishes `BENCH_LEADS` (default 1000) leads at once and reports leads/s
//! (leads ÷ time from the first publish to the last create request) and the p50/p99 latency
//! of each lead from its publish to its create request's arrival. Environment:
//! `BENCH_LEADS`, `BENCH_PROVIDER_LATENCY_MS`, `CALLER_TEST_DATABASE_URL`, `NATS_SERVER_BIN`.
//! Prints a Markdown table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use caller::bus::Bus;
use caller::bus::envelope::Envelope;
use caller::bus::provision::{self, Definitions};
use caller::bus::runner::Runtime;
use caller::crypto::Keyring;
use caller::events::lead::LeadSource;
use caller::events::lead_flow::{LeadResolved, TimezoneSource};
use caller::ids::{PhoneNumber, TenantId};
use caller::metrics::Metrics;
use caller::providers::sim_twilio::{self, SimBehaviour, TwilioSimState};
use caller::settings::{AdmissionSettings, RunnerSettings, TelephonySettings};
use caller::shutdown::Shutdown;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{DateTime, Timelike as _, Utc};
use serde_json::json;

mod support;
use support::{env_number, percentile, start_nats};

fn lead(phone: &str, timezone: &str) -> LeadResolved {
    LeadResolved {
        source: LeadSource::Api,
        source_event_id: None,
        dedupe_key: format!("api:{phone}"),
        external_id: None,
        phone: PhoneNumber::parse(phone).unwrap(),
        phone_raw: phone.to_owned(),
        phone_region: Some("US".to_owned()),
        first_name: Some("Jane".to_owned()),
        last_name: None,
        full_name: None,
        email: None,
        timezone: timezone.to_owned(),
        timezone_source: TimezoneSource::Lead,
        tags: Vec::new(),
        custom_fields: std::collections::BTreeMap::new(),
        campaign_id: None,
        received_at: Utc::now(),
        occurred_at: None,
        trigger: None,
        schedule: None,
    }
}

/// A zone where it is now daytime, so every lead is inside its calling window.
fn daytime_zone() -> &'static str {
    let now = Utc::now();
    [
        "Pacific/Kiritimati",
        "Pacific/Auckland",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/Berlin",
        "America/Sao_Paulo",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
    ]
    .into_iter()
    .find(|zone| {
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        (9..19).contains(&now.with_timezone(&tz).hour())
    })
    .unwrap()
}

/// Publishes `count` leads and waits for the simulator to receive each create request.
async fn run(
    bus: &Bus,
    sim: &TwilioSimState,
    tenant: TenantId,
    count: usize,
    run: usize,
) -> (f64, Vec<Duration>) {
    let zone = daytime_zone();
    let phones: Vec<String> = (0..count)
        .map(|i| format!("+1{}{:07}", 201 + run, i))
        .collect();
    let mut published: HashMap<String, DateTime<Utc>> = HashMap::new();
    let started = Utc::now();
    let messages: Vec<_> = phones
        .iter()
        .map(|phone| {
            Envelope::new(tenant, "bench", lead(phone, zone))
                .to_message()
                .unwrap()
        })
        .collect();
    for (phone, chunk) in phones.chunks(200).zip(messages.chunks(200)) {
        let at = Utc::now();
        for phone in phone {
            published.insert(phone.clone(), at);
        }
        bus.publish_all(chunk).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let arrived = sim
            .created_at()
            .iter()
            .filter(|(_, to, _)| published.contains_key(to))
            .count();
        if arrived >= count || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(count);
    let mut last = started;
    for (_, to, at) in sim.created_at() {
        if let Some(sent) = published.get(&to) {
            latencies.push((at - *sent).to_std().unwrap_or_default());
            last = last.max(at);
        }
    }
    latencies.sort();
    let elapsed = (last - started).to_std().unwrap_or_default().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = latencies.len() as f64 / elapsed.max(1e-9);
    (rate, latencies)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let count = usize::try_from(env_number("BENCH_LEADS", 1_000u64)).unwrap();
    let latency = Duration::from_millis(env_number("BENCH_PROVIDER_LATENCY_MS", 200u64));
    println!(
        "| dial workers | leads/s (lead.resolved → create-call at the provider) | p50 | p99 |"
    );
    println!("|---:|---:|---:|---:|");
    for (index, workers) in [1usize, 2].into_iter().enumerate() {
        // A fresh server and database per row, so the second row does not inherit the first's
        // stream and tables.
        let store_dir = tempfile::tempdir().unwrap();
        let (_server, nats_url) = start_nats(store_dir.path());
        let bus = Bus::connect(&nats_url, Duration::from_secs(5))
            .await
            .unwrap();
        let nats_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats");
        let definitions = Definitions::load(&nats_dir).unwrap();
        provision::provision(&bus, &definitions).await.unwrap();
        let (store, database) = support::Database::create().await;

        let sim = TwilioSimState::default().with_behaviour(SimBehaviour {
            create_latency: latency,
            // Calls stay quiet for the whole run: no callbacks compete with the dial path.
            dial: Duration::from_secs(3_600),
            ..SimBehaviour::default()
        });
        let (sim_addr, _) = sim_twilio::spawn(sim.clone()).await;
        let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());
        let numbers: Vec<String> = (0..20).map(|i| format!("+1512555{:04}", 100 + i)).collect();
        let request = serde_json::from_value(json!({
            "slug": "bench", "name": "Bench", "timezone": "UTC",
            "configuration": {
                "telephony": "twilio", "caller_numbers": numbers,
                "concurrency_cap": 10_000, "calls_per_second": 1_000.0,
                "providers": {"twilio": {"account_sid": sim.account_sid(), "base_url": format!("http://{sim_addr}")}}
            },
            "credentials": {"twilio.auth_token": {"value": "sim-twilio-auth-token"}}
        }))
        .unwrap();
        let mut tx = store.begin_platform().await.unwrap();
        let client = service::onboard(&mut tx, &Actor::operator("bench"), &keyring, request)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut runtime = Runtime::new(
            bus.clone(),
            store.clone(),
            Metrics::default(),
            RunnerSettings::default(),
        );
        runtime.directory = Directory::new(store.clone(), Some(keyring), Duration::from_secs(60));
        runtime.stages.admission = AdmissionSettings {
            cycle_ms: 20,
            caller_number_calls_per_second: 1_000.0,
            ..AdmissionSettings::default()
        };
        runtime.stages.telephony = TelephonySettings {
            public_base_url: "http://127.0.0.1:9".to_owned(),
            ..TelephonySettings::default()
        };
        let pipelines = caller::pipeline::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"),
        )
        .unwrap();
        let topology = caller::pipeline::compile(pipelines, &definitions).unwrap();
        let shutdown = Shutdown::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut stages = vec!["rate_limit"];
        stages.extend(std::iter::repeat_n("dial", workers));
        for name in stages {
            let spec = topology.stage(name).unwrap().clone();
            let descriptor = caller::stages::find(name).unwrap();
            // Each worker has its own pool of 16 connections, as a separate process would.
            let mut worker = runtime.clone();
            worker.store = store.detached(16);
            tasks.spawn((descriptor.run)(spec, worker, shutdown.clone()));
        }
        // Warm up: connections, the tenant snapshot, prepared statements.
        run(&bus, &sim, client.id, 50, 10 + index).await;
        let (rate, latencies) = run(&bus, &sim, client.id, count, index).await;
        println!(
            "| {workers} | {rate:.0} | {:.0} ms | {:.0} ms |",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3
        );
        shutdown.trigger();
        while tasks.join_next().await.is_some() {}
        store.pool().close().await;
        database.drop().await;
    }
    println!(
        "({count} leads published at once per row; provider latency {} ms per create request)",
        latency.as_millis()
    );
}
