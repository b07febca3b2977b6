//! `get_available_slots` latency as the agent sees it, with a cold and a warm slot cache, at
//! 150 ms of simulated vendor latency.
//!
//! `cargo bench --bench slots --features test-util` creates a private PostgreSQL database, a
//! HighLevel simulator (in process, every answer delayed by `BENCH_VENDOR_MS`, default 150)
//! with one location and a Mon–Fri 09:00–17:00 calendar, onboards a tenant using it as CRM
//! and calendar, and runs the real agent tool (`Tools::run("get_available_slots")`) through
//! the real `Calendars` dispatcher and HighLevel adapter:
//!
//! - **cold**: the cache is disabled (TTL 0), so every call asks the vendor (one free-slots
//!   request; the calendar's slot length is fetched once and kept by the adapter);
//! - **warm**: the default cache (30 s); the first call fills it, then `BENCH_CALLS` calls
//!   (default 200) ask "from now" for the next 7 days, as agents do.
//!
//! Calls run one after another (the latency an agent waits, not throughput). Environment:
//! `BENCH_VENDOR_MS`, `BENCH_CALLS`, `CALLER_TEST_DATABASE_URL`,
//! `CALLER_TEST_APP_DATABASE_URL`. Prints a Markdown table.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use caller::booking::Calendars;
use caller::booking::slot_cache::SlotCache;
use caller::crm::gohighlevel::GoHighLevel;
use caller::crypto::Keyring;
use caller::ids::{AttemptId, CallId, TenantId};
use caller::providers::sim_gohighlevel::{GoHighLevelSimState, spawn};
use caller::settings::GoHighLevelSettings;
use caller::stages::converse::context::SessionContext;
use caller::stages::converse::tools::{CallScope, Tools};
use caller::store::Store;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use serde_json::json;
use support::{env_number, percentile};
use tokio::time::Instant;

const TOKEN: &str = "pit-bench-slots";

async fn tenant(
    store: &Store,
    keyring: &Keyring,
    base: &str,
    sim: &GoHighLevelSimState,
) -> TenantId {
    let seed = sim.add_location("locBenchSlots0000001", chrono_tz::America::Chicago);
    sim.add_private_token(&seed.location_id, TOKEN);
    let request = json!({
        "slug": "bench-slots",
        "name": "Bench Dental",
        "timezone": "America/Chicago",
        "configuration": {
            "crm": "gohighlevel",
            "calendar": "crm",
            "providers": {"gohighlevel": {
                "base_url": base,
                "location_id": seed.location_id,
                "calendar_id": seed.calendar_id,
            }}
        },
        "credentials": {"gohighlevel.private_token": {"value": TOKEN}},
    });
    let mut tx = store.begin_platform().await.unwrap();
    let client = service::onboard(
        &mut tx,
        &Actor::operator("bench"),
        keyring,
        serde_json::from_value(request).unwrap(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    client.id
}

fn scope(tenant: TenantId) -> CallScope {
    CallScope {
        tenant,
        call: CallId::from_uuid(uuid::Uuid::now_v7()),
        attempt: AttemptId::from_uuid(uuid::Uuid::now_v7()),
        provider_call_id: "CA00000000000000000000000000000000".to_owned(),
        context: Arc::new(SessionContext {
            agent_id: "agent".to_owned(),
            variant: None,
            user_id: None,
            variables: BTreeMap::new(),
            first_message: None,
            language: None,
            prompt: None,
            voice_id: None,
            transfer: None,
            business_timezone: "America/Chicago".to_owned(),
            phone: "+12015550123".to_owned(),
            lead_name: None,
            lead_timezone: Some("America/New_York".to_owned()),
            crm_contact_id: None,
            email: None,
        }),
    }
}

async fn measure(tools: &Tools, scope: &CallScope, calls: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let answer = tools
            .run(
                scope,
                "toolu_bench",
                "get_available_slots",
                &json!({"days": 7, "limit": 5}),
            )
            .await;
        latencies.push(started.elapsed());
        assert!(!answer.is_error, "the tool failed: {}", answer.result);
    }
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() {
    let vendor_ms: u64 = env_number("BENCH_VENDOR_MS", 150);
    let calls: usize = env_number("BENCH_CALLS", 200);
    let (store, database) = support::Database::create().await;
    let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap());
    let sim = GoHighLevelSimState::new("bench-client", "bench-secret");
    let (addr, _task) = spawn(sim.clone()).await;
    let tenant = tenant(&store, &keyring, &format!("http://{addr}"), &sim).await;
    sim.set_latency(Duration::from_millis(vendor_ms));
    let directory = Directory::new(
        store.clone(),
        Some(Arc::clone(&keyring)),
        Duration::from_secs(60),
    );
    let adapter = Arc::new(GoHighLevel::new(
        store.clone(),
        directory.clone(),
        keyring,
        GoHighLevelSettings::default(),
    ));
    let tools = |cache: SlotCache| Tools {
        calendar: Arc::new(
            Calendars::new(store.clone(), directory.clone())
                .with("gohighlevel", adapter.clone())
                .with_cache(cache),
        ),
        leads: Arc::new(caller::booking::lead_updates::PendingLeadUpdates::new(
            store.clone(),
        )),
        store: store.clone(),
        directory: directory.clone(),
        http: caller::providers::http::client(),
        timeout: Duration::from_secs(30),
        public_base_url: "http://127.0.0.1:1".to_owned(),
    };
    let scope = scope(tenant);

    let cold_tools = tools(SlotCache::new(Duration::ZERO, 1));
    // The adapter learns the calendar's slot length once; keep that out of both figures.
    measure(&cold_tools, &scope, 1).await;
    let requests_before = sim.requests().len();
    let cold = measure(&cold_tools, &scope, calls.min(100)).await;
    let cold_requests = sim.requests().len() - requests_before;

    let warm_tools = tools(SlotCache::new(Duration::from_secs(30), 10_000));
    let first = measure(&warm_tools, &scope, 1).await;
    let requests_before = sim.requests().len();
    let warm = measure(&warm_tools, &scope, calls).await;
    let warm_requests = sim.requests().len() - requests_before;

    let ms = |duration: Duration| {
        if duration < Duration::from_millis(1) {
            format!("{} µs", duration.as_micros())
        } else {
            format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
        }
    };
    println!(
        "get_available_slots, vendor latency {vendor_ms} ms (HighLevel simulator), one call at a time"
    );
    println!();
    println!("| cache | calls | vendor requests | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| cold (TTL 0) | {} | {cold_requests} | {} | {} | {} |",
        cold.len(),
        ms(percentile(&cold, 0.50)),
        ms(percentile(&cold, 0.99)),
        ms(*cold.last().unwrap())
    );
    println!(
        "| warm: first call (fills the cache) | 1 | 1 | {} | | |",
        ms(first[0])
    );
    println!(
        "| warm (TTL 30 s) | {} | {warm_requests} | {} | {} | {} |",
        warm.len(),
        ms(percentile(&warm, 0.50)),
        ms(percentile(&warm, 0.99)),
        ms(*warm.last().unwrap())
    );
    store.pool().close().await;
    database.drop().await;
}
