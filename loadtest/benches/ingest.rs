//! Webhook ingest rate and latency next to raw JetStream publish, measured in the same run.
//!
//! `cargo bench --bench ingest` starts a private `nats-server` (file store) and a private
//! PostgreSQL database, onboards one tenant with a Standard Webhooks secret and a field
//! mapping, serves the real ingress router on a loopback port, and measures, each the median
//! of three runs:
//!
//! - **raw publish**: `lead.received` messages published straight to JetStream with
//!   `Nats-Msg-Id`, `CONCURRENCY` PubAcks in flight, as ingress has one per request;
//! - **webhook ingest**: signed custom webhooks over HTTP/1.1 keep-alive from `CONCURRENCY`
//!   client tasks: body read, signature check (HMAC-SHA256), rate limit, normalization
//!   through the mapping, publish, PubAck, 202. Each request is a distinct lead.
//!
//! Client, server and nats-server share this machine's cores, so the HTTP figures include the
//! client's own cost. Environment: `BENCH_REQUESTS` (default 4000), `BENCH_CONCURRENCY`
//! (default 32), `CALLER_TEST_DATABASE_URL`, `NATS_SERVER_BIN`. Prints a Markdown table.

use std::sync::Arc;
use std::time::Duration;

use caller::bus::Bus;
use caller::bus::provision::{self, Definitions};
use caller::crypto::Keyring;
use caller::events::lead::{LeadReceived, LeadSource, TenantKey};
use caller::ids::TenantId;
use caller::ingress::Ingress;
use caller::ingress::publish::{lead_message, publish_messages};
use caller::ingress::verify::StandardWebhooks;
use caller::secret::Secret;
use caller::settings::IngressSettings;
use caller::shutdown::Shutdown;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use futures::StreamExt as _;
use serde_json::json;
use tokio::time::Instant;

mod support;
use support::{env_number, median, percentile, start_nats};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwbDzNGgCt8ok0";

fn body(index: usize, run: usize) -> String {
    json!({
        "event": {"id": format!("evt-{run}-{index}"), "created_at": "2026-11-24T08:00:00Z"},
        "data": {"lead_id": format!("L-{index}"), "contact": {"name": "Jane Doe",
                 "phone": "+12015550187", "email": "jane.doe@example.com"},
                 "tz": "America/New_York", "answers": {"service": "Cleaning"}}
    })
    .to_string()
}

fn lead(index: usize, run: usize, tenant: TenantId) -> LeadReceived {
    LeadReceived {
        tenant_key: TenantKey::TenantId(tenant),
        source: LeadSource::Custom,
        source_event_id: Some(format!("raw-{run}-{index}")),
        dedupe_key: format!("custom:raw-{run}-{index}"),
        external_id: Some(format!("L-{index}")),
        phone_raw: Some("+12015550187".to_owned()),
        phone_e164: Some("+12015550187".to_owned()),
        first_name: None,
        last_name: None,
        full_name: Some("Jane Doe".to_owned()),
        email: Some("jane.doe@example.com".to_owned()),
        timezone: Some("America/New_York".to_owned()),
        tags: Vec::new(),
        custom_fields: std::collections::BTreeMap::new(),
        campaign_id: None,
        received_at: chrono::Utc::now(),
        occurred_at: None,
        trigger: None,
    }
}

/// Publishes `count` leads with `concurrency` PubAcks in flight; returns messages/s.
async fn raw_publish(
    bus: &Bus,
    tenant: TenantId,
    count: usize,
    concurrency: usize,
    run: usize,
) -> f64 {
    let messages: Vec<_> = (0..count)
        .map(|i| {
            lead_message(tenant, "custom", lead(i, run, tenant))
                .unwrap()
                .1
        })
        .collect();
    let started = Instant::now();
    futures::stream::iter(messages.chunks(1))
        .for_each_concurrent(concurrency, |one| async move {
            for result in publish_messages(bus, one).await {
                result.unwrap();
            }
        })
        .await;
    count as f64 / started.elapsed().as_secs_f64()
}

/// Sends `count` signed webhooks from `concurrency` tasks; returns (requests/s, latencies).
async fn ingest(url: &str, count: usize, concurrency: usize, run: usize) -> (f64, Vec<Duration>) {
    let http = caller::providers::http::client();
    let signer = StandardWebhooks::new(&[Secret::new(SECRET.to_owned())]).unwrap();
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(0..count)
        .map(|index| {
            let (http, signer) = (http.clone(), signer.clone());
            async move {
                let body = body(index, run);
                let id = format!("msg-{run}-{index}");
                let now = chrono::Utc::now();
                let sent = Instant::now();
                let response = http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", now.timestamp().to_string())
                    .header("webhook-signature", signer.sign(&id, now, body.as_bytes()))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
                sent.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    (count as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// Sends `count` requests that fail authentication (a wrong secret for `url`'s tenant, or an
/// unknown tenant) one at a time; returns their latencies, sorted.
async fn refused(url: &str, count: usize, expected: u16) -> Vec<Duration> {
    let http = caller::providers::http::client();
    let wrong = StandardWebhooks::new(&[Secret::new(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    )])
    .unwrap();
    let mut latencies = Vec::with_capacity(count);
    for index in 0..count {
        let body = body(index, 99);
        let id = format!("refused-{index}");
        let now = chrono::Utc::now();
        let sent = Instant::now();
        let response = http
            .post(url)
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.timestamp().to_string())
            .header("webhook-signature", wrong.sign(&id, now, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let count = env_number("BENCH_REQUESTS", 4_000usize);
    let concurrency = env_number("BENCH_CONCURRENCY", 32usize);
    let store_dir = tempfile::tempdir().unwrap();
    let (_server, nats_url) = start_nats(store_dir.path());
    let bus = Bus::connect(&nats_url, Duration::from_secs(5))
        .await
        .unwrap();
    let definitions =
        Definitions::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats")).unwrap();
    provision::provision(&bus, &definitions).await.unwrap();
    let (store, database) = support::Database::create().await;

    let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());
    let request = serde_json::from_value(json!({
        "slug": "bench", "name": "Bench", "timezone": "America/New_York",
        "configuration": {"providers": {"custom": {"field_mapping": {
            "phone": "/data/contact/phone", "name": "/data/contact/name",
            "email": "/data/contact/email", "timezone": "/data/tz",
            "external_id": "/data/lead_id", "event_id": "/event/id",
            "occurred_at": "/event/created_at",
            "custom_fields": {"service": "/data/answers/service"}}}},
            "ingress_requests_per_minute": 1_000_000},
        "credentials": {"custom.webhook_secret": {"value": SECRET}}
    }))
    .unwrap();
    let mut tx = store.begin_platform().await.unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("bench"), &keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tenant = client.id;

    let directory = Directory::new(store.clone(), Some(keyring), Duration::from_secs(60));
    let ingress =
        Arc::new(Ingress::new(bus.clone(), directory, IngressSettings::default()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/{tenant}/custom",
        listener.local_addr().unwrap()
    );
    let shutdown = Shutdown::new();
    let server = tokio::spawn(caller::http::serve(
        listener,
        caller::ingress::router(ingress),
        shutdown.clone(),
    ));

    // Warm up: connections, the tenant snapshot, the stream's files.
    ingest(&url, 200, concurrency, 0).await;
    let (mut raw, mut rates, mut all_latencies) = (vec![], vec![], vec![]);
    for run in 1..=3 {
        raw.push(raw_publish(&bus, tenant, count, concurrency, run).await);
        let (rate, latencies) = ingest(&url, count, concurrency, run).await;
        rates.push(rate);
        all_latencies.extend(latencies);
    }
    let unknown_url = url.replace(&tenant.to_string(), &uuid::Uuid::now_v7().to_string());
    let bad_signature = refused(&url, 300, 401).await;
    let unknown_tenant = refused(&unknown_url, 300, 404).await;
    shutdown.trigger();
    server.await.unwrap().unwrap();
    store.pool().close().await;
    database.drop().await;

    all_latencies.sort();
    let (raw, rate) = (median(raw), median(rates));
    let (p50, p99) = (
        percentile(&all_latencies, 0.50),
        percentile(&all_latencies, 0.99),
    );
    println!("| what | per second | p50 | p99 | vs raw publish |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| raw JetStream publish of lead.received, {concurrency} PubAcks in flight | {raw:.0} | | | 1.00 |"
    );
    println!(
        "| signed custom webhook → 202 after PubAck, {concurrency} clients | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        rate / raw
    );
    println!(
        "({count} requests per run, medians of 3 runs; latency over all {} requests)",
        all_latencies.len()
    );
    println!();
    println!(
        "| refused request, one at a time (auth failure floor {} ms) | p50 | p99 |",
        IngressSettings::default().auth_failure_floor_ms
    );
    println!("|---|---:|---:|");
    for (what, latencies) in [
        ("known tenant, bad signature → 401", &bad_signature),
        ("unknown tenant → 404", &unknown_tenant),
    ] {
        println!(
            "| {what} | {:.2} ms | {:.2} ms |",
            percentile(latencies, 0.50).as_secs_f64() * 1e3,
            percentile(latencies, 0.99).as_secs_f64() * 1e3
        );
    }
}
