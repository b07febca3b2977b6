//! Ingress end to end: realistic payloads of every source through the real HTTP server into the
//! real NATS and PostgreSQL, through dedupe and resolve_tenant, checked field by field; replays
//! and duplicates; signatures; NATS outages; the API's idempotency keys and bulk uploads.

mod common;
#[path = "common/ingress.rs"]
#[allow(dead_code)]
mod harness;

use base64::Engine as _;
use caller::events::lead_flow::{LeadResolved, TimezoneSource};
use caller::ids::TenantId;
use caller::ingress::verify::StandardWebhooks;
use caller::normalize::{self, FieldMapping, NormalizedLead};
use caller::secret::Secret;
use chrono::Utc;
use ed25519_dalek::Signer as _;
use harness::{
    CUSTOM_SECRET, CUSTOM_SECRET_PREVIOUS, GHL_SECRET, GHL_SECRET_PREVIOUS, Harness, Options,
    ZOHO_SECRET, ZOHO_TOKEN, sample,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The GHL `ContactCreate` sample with a fresh `timestamp` (signatures are checked for
/// freshness) and the given `webhookId`.
fn ghl_contact_create(webhook_id: &str) -> String {
    let mut event: Value =
        serde_json::from_str(&sample("gohighlevel/contact_create.json")).unwrap();
    event["timestamp"] = json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    event["webhookId"] = json!(webhook_id);
    event.to_string()
}

fn ghl_sign(harness: &Harness, body: &str) -> String {
    let signature = harness.ghl_signer.sign(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
}

fn custom_signer(secrets: &[&str]) -> StandardWebhooks {
    let secrets: Vec<Secret<String>> = secrets
        .iter()
        .map(|s| Secret::new((*s).to_owned()))
        .collect();
    StandardWebhooks::new(&secrets).unwrap()
}

async fn post_custom(
    harness: &Harness,
    tenant: &str,
    webhook_id: &str,
    body: &str,
    signer: &StandardWebhooks,
    at: chrono::DateTime<Utc>,
) -> reqwest::Response {
    harness
        .http
        .post(harness.url(&format!("/webhooks/{tenant}/custom")))
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", at.timestamp().to_string())
        .header(
            "webhook-signature",
            signer.sign(webhook_id, at, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// What resolve_tenant must make of a normalized lead for the harness tenant.
fn expected(
    lead: NormalizedLead,
    received: &LeadResolved,
    timezone: &str,
    source: TimezoneSource,
) -> LeadResolved {
    let phone_raw = lead.phone_raw.clone().unwrap();
    LeadResolved {
        source: lead.source,
        source_event_id: lead.source_event_id,
        dedupe_key: lead.dedupe_key,
        external_id: lead.external_id,
        phone: caller::phone::parse(&phone_raw, Some("US")).unwrap(),
        phone_raw,
        phone_region: Some("US".to_owned()),
        first_name: lead.first_name,
        last_name: lead.last_name,
        full_name: lead.full_name,
        email: lead.email,
        timezone: timezone.to_owned(),
        timezone_source: source,
        tags: lead.tags,
        custom_fields: lead.custom_fields,
        campaign_id: lead.campaign_id,
        received_at: received.received_at,
        occurred_at: lead.occurred_at,
        trigger: lead.trigger,
        schedule: None,
    }
}

/// Builds the expected resolved lead from the one received (for its receive time).
type Expectation = Box<dyn Fn(&LeadResolved) -> LeadResolved>;

#[tokio::test]
async fn every_source_becomes_one_resolved_lead_with_every_field() {
    let harness = Harness::start(Options::default()).await;
    let tenant = harness.tenant.to_string();
    let mut expectations: Vec<(String, Expectation)> = Vec::new();

    // HighLevel marketplace app, signed with Ed25519.
    let ghl = ghl_contact_create("0b6f4c8e-3a1d-4e7b-9c2f-5d8a1e6b7c90");
    let response = harness
        .http
        .post(harness.url("/webhooks/gohighlevel"))
        .header("content-type", "application/json")
        .header("x-ghl-signature", ghl_sign(&harness, &ghl))
        .body(ghl.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await.unwrap();
    let lead = normalize::gohighlevel_app(ghl.as_bytes()).unwrap();
    assert_eq!(answer["dedupe_key"], json!(lead.dedupe_key));
    expectations.push((
        lead.dedupe_key.clone(),
        Box::new(move |r| expected(lead.clone(), r, "America/Chicago", TimezoneSource::Lead)),
    ));

    // HighLevel workflow webhook, secret in the path.
    let workflow = sample("gohighlevel/workflow_webhook.json");
    let response = harness
        .http
        .post(harness.url(&format!(
            "/webhooks/{tenant}/gohighlevel/workflow/{GHL_SECRET}"
        )))
        .header("content-type", "application/json")
        .body(workflow.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let lead = normalize::gohighlevel_workflow(workflow.as_bytes()).unwrap();
    let zone = lead.timezone.clone();
    expectations.push((
        lead.dedupe_key.clone(),
        Box::new(move |r| match &zone {
            Some(zone) => expected(lead.clone(), r, zone, TimezoneSource::Lead),
            None => expected(lead.clone(), r, &r.timezone, r.timezone_source),
        }),
    ));

    // Zoho workflow webhook, form-encoded, secret in a header.
    let form = sample("zoho/workflow_webhook.form.txt");
    let form = form.trim_end();
    let response = harness
        .http
        .post(harness.url(&format!("/webhooks/{tenant}/zoho/workflow")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-webhook-secret", ZOHO_SECRET)
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let lead = normalize::zoho_workflow(form.as_bytes(), Some("application/x-www-form-urlencoded"))
        .unwrap();
    expectations.push((
        lead.dedupe_key.clone(),
        Box::new(move |r| expected(lead.clone(), r, "America/Chicago", TimezoneSource::Lead)),
    ));

    // Custom webhook, Standard Webhooks signature, read through the tenant's mapping.
    let custom = sample("custom/lead.json");
    let response = post_custom(
        &harness,
        &tenant,
        "msg_2Kq9",
        &custom,
        &custom_signer(&[CUSTOM_SECRET]),
        Utc::now(),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let mapping: FieldMapping = serde_json::from_value(harness::field_mapping()).unwrap();
    let lead = normalize::custom(custom.as_bytes(), &mapping).unwrap();
    expectations.push((
        lead.dedupe_key.clone(),
        Box::new(move |r| expected(lead.clone(), r, "America/New_York", TimezoneSource::Lead)),
    ));

    // The API, with an idempotency key; no time zone given: the number's (New Jersey).
    let call =
        json!({"phone": "(201) 555-0142", "first_name": "Ann", "external_id": "crm-9"}).to_string();
    let response = harness
        .http
        .post(harness.url("/v1/calls"))
        .bearer_auth(&harness.tenant_key)
        .header("content-type", "application/json")
        .header("idempotency-key", "call-1")
        .body(call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        response.text().await.unwrap()
    );
    let lead = normalize::api_call(call.as_bytes())
        .unwrap()
        .with_source_event_id("call-1");
    assert_eq!(lead.dedupe_key, "api:call-1");
    expectations.push((
        lead.dedupe_key.clone(),
        Box::new(move |r| expected(lead.clone(), r, "America/New_York", TimezoneSource::Phone)),
    ));

    let resolved = harness.wait_resolved(expectations.len()).await;
    assert_eq!(
        resolved.len(),
        expectations.len(),
        "one resolved lead per request"
    );
    for (dedupe_key, expect) in &expectations {
        let lead = resolved
            .iter()
            .find(|l| &l.payload.dedupe_key == dedupe_key)
            .unwrap_or_else(|| panic!("no resolved lead for {dedupe_key}"));
        assert_eq!(lead.meta.tenant_id, harness.tenant);
        assert_eq!(lead.payload, expect(&lead.payload), "{dedupe_key}");
    }
    harness.finish().await;
}

#[tokio::test]
async fn the_same_webhook_five_times_and_again_two_hours_later_is_one_lead() {
    // A 1 s duplicate window stands in for "beyond the stream's window".
    let harness = Harness::start(Options {
        duplicate_window_ns: Some(1_000_000_000),
        ..Options::default()
    })
    .await;
    let tenant = harness.tenant.to_string();
    let body = sample("custom/lead.json");
    let signer = custom_signer(&[CUSTOM_SECRET]);
    let mut duplicates = Vec::new();
    for _ in 0..5 {
        let response = post_custom(&harness, &tenant, "msg_same", &body, &signer, Utc::now()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let answer: Value = response.json().await.unwrap();
        duplicates.push(answer["duplicate"].as_bool().unwrap());
    }
    assert_eq!(
        duplicates,
        [false, true, true, true, true],
        "the stream keeps the first copy"
    );
    assert_eq!(harness.wait_resolved(1).await.len(), 1);

    // Two hours later: the stream's window is long gone, the dedupe record is 2 hours old.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    backdate_dedupe(&harness, 2).await;
    let response = post_custom(&harness, &tenant, "msg_same", &body, &signer, Utc::now()).await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["duplicate"],
        json!(false),
        "the stream stored the late copy"
    );
    harness.settle().await;
    assert_eq!(
        harness.resolved().await.len(),
        1,
        "dedupe dropped the late copy"
    );
    let seen: i32 = sqlx::query_scalar("SELECT seen_count FROM lead_dedupe")
        .fetch_one(&harness.env.db.observer)
        .await
        .unwrap();
    assert_eq!(seen, 2, "the stage saw both stored copies");
    harness.finish().await;
}

#[tokio::test]
async fn beyond_the_dedupe_horizon_the_same_webhook_is_a_new_lead() {
    // The control for the test above: with a 1-hour horizon, a copy 2 hours later passes.
    let harness = Harness::start(Options {
        duplicate_window_ns: Some(1_000_000_000),
        horizon_hours: 1,
        ..Options::default()
    })
    .await;
    let tenant = harness.tenant.to_string();
    let body = sample("custom/lead.json");
    let signer = custom_signer(&[CUSTOM_SECRET]);
    post_custom(&harness, &tenant, "msg_same", &body, &signer, Utc::now()).await;
    harness.wait_resolved(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    backdate_dedupe(&harness, 2).await;
    post_custom(&harness, &tenant, "msg_same", &body, &signer, Utc::now()).await;
    assert_eq!(harness.wait_resolved(2).await.len(), 2);
    harness.finish().await;
}

/// Moves every dedupe record `hours` into the past (the controllable clock of these tests).
async fn backdate_dedupe(harness: &Harness, hours: i32) {
    sqlx::query(
        "UPDATE lead_dedupe SET first_seen_at = first_seen_at - make_interval(hours => $1),
                                last_seen_at = last_seen_at - make_interval(hours => $1)",
    )
    .bind(hours)
    .execute(&harness.env.db.observer)
    .await
    .unwrap();
}

#[tokio::test]
async fn signatures_pass_when_valid_and_fail_with_401_otherwise() {
    let harness = Harness::start(Options::default()).await;
    let tenant = harness.tenant.to_string();
    let http = &harness.http;

    // Custom (Standard Webhooks).
    let body = sample("custom/lead.json");
    let current = custom_signer(&[CUSTOM_SECRET]);
    let previous = custom_signer(&[CUSTOM_SECRET_PREVIOUS]);
    let wrong = custom_signer(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    let now = Utc::now();
    assert_eq!(
        post_custom(&harness, &tenant, "m1", &body, &current, now)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_custom(&harness, &tenant, "m2", &body, &previous, now)
            .await
            .status(),
        StatusCode::ACCEPTED,
        "rotation: the previous secret passes"
    );
    assert_eq!(
        post_custom(&harness, &tenant, "m3", &body, &wrong, now)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let stale = now - chrono::Duration::minutes(6);
    assert_eq!(
        post_custom(&harness, &tenant, "m4", &body, &current, stale)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let tampered = body.replace("Jane", "John");
    let response = http
        .post(harness.url(&format!("/webhooks/{tenant}/custom")))
        .header("webhook-id", "m5")
        .header("webhook-timestamp", now.timestamp().to_string())
        .header(
            "webhook-signature",
            current.sign("m5", now, body.as_bytes()),
        )
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = http
        .post(harness.url(&format!("/webhooks/{tenant}/custom")))
        .header("webhook-id", "m6")
        .header("webhook-timestamp", now.timestamp().to_string())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "missing webhook-signature"
    );
    // An unknown tenant is 404, not 401.
    let unknown = TenantId::from_uuid(uuid::Uuid::now_v7()).to_string();
    assert_eq!(
        post_custom(&harness, &unknown, "m7", &body, &current, now)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // HighLevel app (Ed25519 over the body, fresh body timestamp).
    let ghl = ghl_contact_create("wh-1");
    let post_ghl = |body: String, signature: Option<String>| {
        let mut request = http
            .post(harness.url("/webhooks/gohighlevel"))
            .header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("x-ghl-signature", signature);
        }
        request.body(body).send()
    };
    assert_eq!(
        post_ghl(ghl.clone(), Some(ghl_sign(&harness, &ghl)))
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let tampered = ghl.replace("Jane", "John");
    assert_eq!(
        post_ghl(tampered, Some(ghl_sign(&harness, &ghl)))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_ghl(ghl.clone(), None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let forged =
        base64::engine::general_purpose::STANDARD.encode(other_key.sign(ghl.as_bytes()).to_bytes());
    assert_eq!(
        post_ghl(ghl.clone(), Some(forged)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mut old: Value = serde_json::from_str(&ghl).unwrap();
    old["timestamp"] = json!("2026-01-01T00:00:00.000Z");
    let old = old.to_string();
    assert_eq!(
        post_ghl(old.clone(), Some(ghl_sign(&harness, &old)))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "stale timestamp"
    );

    // HighLevel workflow and Zoho workflow (shared secrets, header or path).
    let workflow = sample("gohighlevel/workflow_webhook.json");
    for (path, secret, status) in [
        (
            format!("/webhooks/{tenant}/gohighlevel/workflow"),
            Some(GHL_SECRET),
            StatusCode::ACCEPTED,
        ),
        (
            format!("/webhooks/{tenant}/gohighlevel/workflow"),
            Some(GHL_SECRET_PREVIOUS),
            StatusCode::ACCEPTED,
        ),
        (
            format!("/webhooks/{tenant}/gohighlevel/workflow"),
            Some("wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("/webhooks/{tenant}/gohighlevel/workflow"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("/webhooks/{tenant}/gohighlevel/workflow/{GHL_SECRET}x"),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("/webhooks/{unknown}/gohighlevel/workflow/{GHL_SECRET}"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/webhooks/{tenant}/zoho/workflow"),
            Some(ZOHO_SECRET),
            StatusCode::ACCEPTED,
        ),
        (
            format!("/webhooks/{tenant}/zoho/workflow"),
            Some(GHL_SECRET),
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("/webhooks/{tenant}/zoho/workflow/{ZOHO_SECRET}"),
            None,
            StatusCode::ACCEPTED,
        ),
    ] {
        let body = if path.contains("zoho") {
            sample("zoho/workflow_webhook.json")
        } else {
            workflow.clone()
        };
        let mut request = http
            .post(harness.url(&path))
            .header("content-type", "application/json");
        if let Some(secret) = secret {
            request = request.header("x-webhook-secret", secret);
        }
        let response = request.body(body).send().await.unwrap();
        assert_eq!(response.status(), status, "{path} with {secret:?}");
    }

    // Zoho notification channel: the token in the body.
    let notification = |token: &str| {
        json!({"channel_id": "1000000068001", "token": token, "module": "Leads",
               "operation": "insert", "ids": ["4876876000001234567"],
               "server_time": Utc::now().timestamp_millis()})
        .to_string()
    };
    for (token, status) in [
        (ZOHO_TOKEN, StatusCode::ACCEPTED),
        ("nope", StatusCode::UNAUTHORIZED),
    ] {
        let response = http
            .post(harness.url(&format!("/webhooks/{tenant}/zoho/notifications")))
            .header("content-type", "application/json")
            .body(notification(token))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            status,
            "zoho notification with token {token}"
        );
    }
    harness.finish().await;
}

#[tokio::test]
async fn with_nats_stopped_ingress_answers_503_and_loses_nothing() {
    let mut harness = Harness::start(Options::default()).await;
    let tenant = harness.tenant.to_string();
    let body = sample("custom/lead.json");
    let signer = custom_signer(&[CUSTOM_SECRET]);

    // Stop the bus's server (a bystander server holds its place in the harness meanwhile).
    let port = harness.env.nats.port;
    let nats = std::mem::replace(&mut harness.env.nats, common::NatsServer::start().await);
    let store = nats.kill();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let response = post_custom(&harness, &tenant, "msg_outage", &body, &signer, Utc::now()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let call = harness
        .http
        .post(harness.url("/v1/calls"))
        .bearer_auth(&harness.tenant_key)
        .header("idempotency-key", "outage-1")
        .body(json!({"phone": "+12015550142"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), StatusCode::SERVICE_UNAVAILABLE);

    harness.restart_nats(store, port).await;
    let response = post_custom(&harness, &tenant, "msg_outage", &body, &signer, Utc::now()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let call = harness
        .http
        .post(harness.url("/v1/calls"))
        .bearer_auth(&harness.tenant_key)
        .header("idempotency-key", "outage-1")
        .body(json!({"phone": "+12015550142"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        call.status(),
        StatusCode::ACCEPTED,
        "the key was freed by the failed attempt"
    );
    assert_eq!(harness.wait_resolved(2).await.len(), 2);
    harness.finish().await;
}

#[tokio::test]
async fn idempotency_keys_replay_conflict_and_refuse_other_bodies() {
    let harness = Harness::start(Options::default()).await;
    let post = |key: &'static str, body: Value| {
        harness
            .http
            .post(harness.url("/v1/calls"))
            .bearer_auth(&harness.tenant_key)
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
    };
    let first = post("k-1", json!({"phone": "+12015550142"})).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again = post("k-1", json!({"phone": "+12015550142"})).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "same key and body: same response"
    );
    let other = post("k-1", json!({"phone": "+12015550143"})).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A request still in flight holds its key.
    let mut tx = harness
        .env
        .db
        .store
        .begin_tenant(harness.tenant)
        .await
        .unwrap();
    let now = Utc::now();
    let digest = {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"POST /v1/calls\n");
        hasher.update(json!({"phone": "+12015550144"}).to_string().as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    caller::store::idempotency_keys::reserve(
        &mut tx,
        harness.tenant,
        "k-2",
        &digest,
        now,
        now + chrono::Duration::minutes(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let in_flight = post("k-2", json!({"phone": "+12015550144"})).await.unwrap();
    assert_eq!(in_flight.status(), StatusCode::CONFLICT);

    assert_eq!(harness.wait_resolved(1).await.len(), 1, "one call for k-1");
    harness.finish().await;
}

#[tokio::test]
async fn bad_leads_are_rejected_with_their_reason_where_the_tenant_sees_them() {
    let harness = Harness::start(Options::default()).await;
    let client = harness.tenant.to_string();
    // Block one number.
    let response = harness
        .http
        .post(harness.url(&format!("/v1/clients/{client}/blocklist")))
        .bearer_auth(&harness.tenant_key)
        .json(&json!({"phone": "+12015550199", "list": "opt_out", "reason": "asked on a call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // Bulk CSV: a good lead, a blocked one, an invalid number, one without a phone.
    let csv =
        "phone,first_name,budget\n+12015550142,Ann,100\n+12015550199,Bob,\n+1 999 000,Cy,\n,Di,\n";
    let response = harness
        .http
        .post(harness.url("/v1/campaigns/spring-promo/leads"))
        .bearer_auth(&harness.tenant_key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(
        (result["accepted"].as_u64(), result["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{result}"
    );
    assert_eq!(result["results"][3]["status"], "rejected");
    assert!(
        result["results"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("phone")
    );

    let resolved = harness.wait_resolved(1).await;
    harness.settle().await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].payload.first_name.as_deref(), Some("Ann"));
    assert_eq!(
        resolved[0].payload.campaign_id.as_deref(),
        Some("spring-promo")
    );
    assert_eq!(resolved[0].payload.custom_fields["budget"], json!("100"));
    assert_eq!(
        resolved[0].payload.source,
        caller::events::lead::LeadSource::Bulk
    );

    let (letters, reasons) = harness.dead_letters("?stage=resolve_tenant").await;
    assert_eq!(reasons.len(), 2, "{letters}");
    assert!(
        reasons.iter().any(|r| r.contains("opted out")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unusable phone number")),
        "{reasons:?}"
    );
    for letter in letters.as_array().unwrap() {
        assert_eq!(
            letter["payload"]["tenant_key"]["value"],
            json!(client),
            "{letter}"
        );
        assert!(letter["payload"]["phone_raw"].is_string(), "{letter}");
    }

    // Malformed CSV names where.
    let response = harness
        .http
        .post(harness.url("/v1/campaigns/spring-promo/leads"))
        .bearer_auth(&harness.tenant_key)
        .header("content-type", "text/csv")
        .body("phone,first_name\n+12015550142,Ann,extra\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("line 2"),
        "{problem}"
    );
    harness.finish().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_floods_get_429() {
    let harness = Harness::start(Options {
        ingress: caller::settings::IngressSettings {
            max_body_bytes: 4_096,
            requests_per_minute: 3,
            auth_failure_floor_ms: 1,
            ..caller::settings::IngressSettings::default()
        },
        ..Options::default()
    })
    .await;
    let tenant = harness.tenant.to_string();
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(10_000));
    let response = harness
        .http
        .post(harness.url(&format!(
            "/webhooks/{tenant}/gohighlevel/workflow/{GHL_SECRET}"
        )))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let workflow = sample("gohighlevel/workflow_webhook.json");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = harness
            .http
            .post(harness.url(&format!(
                "/webhooks/{tenant}/gohighlevel/workflow/{GHL_SECRET}"
            )))
            .body(workflow.clone())
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429]);
    harness.finish().await;
}

#[tokio::test]
async fn a_zoho_notification_becomes_the_lead_of_the_record_it_names() {
    let harness = Harness::start(Options::default()).await;
    let tenant = harness.tenant.to_string();
    let notification = json!({
        "channel_id": "1000000068001", "token": ZOHO_TOKEN, "module": "Leads",
        "operation": "insert", "ids": ["4876876000001234567", "4876876000009999999"],
        "server_time": 1_795_000_000_000_i64, "query_params": {}
    })
    .to_string();
    let response = harness
        .http
        .post(harness.url(&format!("/webhooks/{tenant}/zoho/notifications")))
        .header("content-type", "application/json")
        .body(notification.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["leads"].as_array().unwrap().len(), 2);

    let resolved = harness.wait_resolved(1).await;
    assert_eq!(resolved.len(), 1);
    let lead = &resolved[0].payload;
    // What resolve_tenant must make of it: the notification's identity, the record's fields.
    let notified = normalize::zoho_notification(notification.as_bytes())
        .unwrap()
        .into_leads();
    let record: Value = serde_json::from_str(caller::providers::sim::ZOHO_LEAD_EXAMPLE).unwrap();
    let read =
        normalize::zoho_workflow(record.to_string().as_bytes(), Some("application/json")).unwrap();
    let mut custom_fields = read.custom_fields.clone();
    custom_fields.extend(notified[0].custom_fields.clone());
    let expected = LeadResolved {
        source: caller::events::lead::LeadSource::ZohoNotification,
        source_event_id: None,
        dedupe_key: notified[0].dedupe_key.clone(),
        external_id: Some("4876876000001234567".to_owned()),
        phone: caller::phone::parse("+1 512-555-0142", None).unwrap(),
        phone_raw: "+1 512-555-0142".to_owned(),
        phone_region: Some("US".to_owned()),
        first_name: Some("Jane".to_owned()),
        last_name: Some("Doe".to_owned()),
        full_name: Some("Jane Doe".to_owned()),
        email: Some("jane.doe@example.com".to_owned()),
        timezone: "America/Chicago".to_owned(),
        timezone_source: TimezoneSource::Lead,
        tags: vec!["ai-call-requested".to_owned()],
        custom_fields,
        campaign_id: None,
        received_at: lead.received_at,
        occurred_at: notified[0].occurred_at,
        trigger: Some("zoho:Leads.insert".to_owned()),
        schedule: None,
    };
    assert_eq!(lead, &expected);
    assert!(lead.custom_fields.contains_key("Lead_Status"));

    // The expired token was refreshed (and stored) on the way.
    let expiry: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT expires_at FROM client_credentials WHERE kind = 'zoho.oauth'")
            .fetch_one(&harness.env.db.observer)
            .await
            .unwrap();
    assert!(expiry.unwrap() > Utc::now());

    // The record Zoho does not have is a dead letter naming it.
    let (_, reasons) = harness.dead_letters("").await;
    assert_eq!(
        reasons,
        ["Zoho has no Leads record 4876876000009999999 (deleted since the notification?)"]
    );
    harness.finish().await;
}

#[tokio::test]
async fn a_highlevel_event_of_an_unclaimed_location_waits_in_the_dead_letters() {
    let harness = Harness::start(Options::default()).await;
    let mut event: Value = serde_json::from_str(&ghl_contact_create("wh-unclaimed")).unwrap();
    event["locationId"] = json!("unclaimedLocation42");
    let body = event.to_string();
    let response = harness
        .http
        .post(harness.url("/webhooks/gohighlevel"))
        .header("content-type", "application/json")
        .header("x-ghl-signature", ghl_sign(&harness, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    harness.settle().await;
    assert!(harness.resolved().await.is_empty());
    // Filed under the platform tenant: operators see it (`caller dlq list`), scoped by its
    // location in the dedupe record.
    let letters = caller::bus::dead_letter::list(&harness.env.bus, Some("resolve_tenant"), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].reason,
        "no client claims gohighlevel_location:unclaimedLocation42 (set it in the client's \
         configuration, then replay)"
    );
    let scope: String = sqlx::query_scalar("SELECT scope FROM lead_dedupe")
        .fetch_one(&harness.env.db.observer)
        .await
        .unwrap();
    assert_eq!(scope, "gohighlevel_location:unclaimedLocation42");
    harness.finish().await;
}

#[tokio::test]
async fn a_rotated_webhook_secret_takes_effect_at_once_in_every_process() {
    let harness = Harness::start(Options::default()).await;
    let tenant = harness.tenant.to_string();
    // Another process's directory, with the tenant cached before the change.
    let keyring = std::sync::Arc::new(
        caller::crypto::Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap(),
    );
    let other = caller::tenancy::directory::Directory::new(
        harness.env.db.store.clone(),
        Some(keyring),
        std::time::Duration::from_secs(3_600),
    );
    let shutdown = caller::shutdown::Shutdown::new();
    let follower = tokio::spawn(
        other
            .clone()
            .follow_changes(harness.env.bus.clone(), shutdown.clone()),
    );
    let signs_with = |secret: &str| {
        let signer = custom_signer(&[secret]);
        let at = Utc::now();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", "m1".parse().unwrap());
        headers.insert(
            "webhook-timestamp",
            at.timestamp().to_string().parse().unwrap(),
        );
        headers.insert(
            "webhook-signature",
            signer.sign("m1", at, b"{}").parse().unwrap(),
        );
        headers
    };
    let cached = other.tenant(harness.tenant).await.unwrap().unwrap();
    let verifier = cached.secrets.custom.as_ref().unwrap();
    assert!(
        verifier
            .verify(&signs_with(CUSTOM_SECRET), b"{}", Utc::now())
            .is_ok()
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await; // subscription in place

    let rotated = "whsec_dGhlLW5ldy1zZWNyZXQtb2YtdGhpcy10ZW5hbnQ=";
    let response = harness
        .http
        .put(harness.url(&format!(
            "/v1/clients/{tenant}/credentials/custom.webhook_secret"
        )))
        .bearer_auth(&harness.tenant_key)
        .json(&json!({"value": rotated}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );

    // This process: at once.
    let body = sample("custom/lead.json");
    let now = Utc::now();
    let new = post_custom(
        &harness,
        &tenant,
        "r1",
        &body,
        &custom_signer(&[rotated]),
        now,
    )
    .await;
    assert_eq!(new.status(), StatusCode::ACCEPTED);
    let old = post_custom(
        &harness,
        &tenant,
        "r2",
        &body,
        &custom_signer(&[CUSTOM_SECRET]),
        now,
    )
    .await;
    assert_eq!(
        old.status(),
        StatusCode::UNAUTHORIZED,
        "the replaced secret no longer passes"
    );
    // The other process: through `tenancy.changed.<tenant>`, long before its 1-hour TTL.
    let mut seen = false;
    for _ in 0..100 {
        let snapshot = other.tenant(harness.tenant).await.unwrap().unwrap();
        let verifier = snapshot.secrets.custom.as_ref().unwrap();
        if verifier
            .verify(&signs_with(rotated), b"{}", Utc::now())
            .is_ok()
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "the other process still uses the old secret");
    shutdown.trigger();
    follower.await.unwrap().unwrap();
    harness.finish().await;
}

#[tokio::test]
async fn a_bulk_upload_takes_ten_thousand_leads_and_refuses_one_more() {
    let harness = Harness::start(Options::default()).await;
    let leads = |count: usize| {
        let items: Vec<Value> = (0..count)
            .map(|i| json!({"phone": format!("+1201555{:04}", i % 10_000), "external_id": format!("row-{i}")}))
            .collect();
        Value::Array(items).to_string()
    };
    let upload = |body: String| {
        harness
            .http
            .post(harness.url("/v1/campaigns/autumn/leads"))
            .bearer_auth(&harness.tenant_key)
            .header("content-type", "application/json")
            // 10,000 leads on a loaded 2-core machine can take longer than the client's
            // default 10 s; this bounds a failure, it asserts no speed.
            .timeout(std::time::Duration::from_secs(120))
            .body(body)
            .send()
    };
    let response = upload(leads(10_000)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["accepted"], 10_000);
    assert_eq!(result["results"].as_array().unwrap().len(), 10_000);
    assert_eq!(result["results"][9_999]["index"], 9_999);
    let response = upload(leads(10_001)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    harness.finish().await;
}

#[tokio::test]
async fn a_bulk_upload_can_stream_its_answers_as_ndjson() {
    let harness = Harness::start(Options::default()).await;
    let csv: String = std::iter::once("phone,first_name".to_owned())
        .chain((0..1_200).map(|i| format!("+1201555{i:04},Lead {i}")))
        .chain(std::iter::once(",No Phone".to_owned()))
        .collect::<Vec<_>>()
        .join("\n");
    let response = harness
        .http
        .post(harness.url("/v1/campaigns/winter/leads"))
        .bearer_auth(&harness.tenant_key)
        .header("content-type", "text/csv")
        .header("accept", "application/x-ndjson")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1_202, "one line per lead, then the summary");
    assert_eq!(lines[0]["index"], 0);
    assert_eq!(lines[1_200]["status"], "rejected");
    assert_eq!(
        lines[1_201],
        json!({"accepted": 1_200, "rejected": 1, "unavailable": 0})
    );
    harness.finish().await;
}
