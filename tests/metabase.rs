//! Metabase: every card of `metabase/` runs against the real PostgreSQL on a known dataset
//! and returns exactly the expected numbers, as a reader role (no owner rights); and
//! `caller metabase provision` against the recorded-contract simulator creates exactly the
//! expected objects, is idempotent, fails clearly on a wrong password and never prints a
//! secret.

mod common;

use std::collections::BTreeMap;

use caller::metabase::{Definitions, reader, sql};
use caller::secret::Secret;
use caller::store::analytics::RECOUNT;
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

const ALPHA: Uuid = Uuid::from_u128(0xa1);
const BRAVO: Uuid = Uuid::from_u128(0xb2);

fn definitions() -> Definitions {
    Definitions::load(&common::project_root().join("metabase")).unwrap()
}

/// The known dataset: facts for two tenants (alpha in UTC, bravo in New York), the rollups
/// the sink would have bumped for them, queue snapshots and one call still ringing. Every
/// time is `at` (an hour ago), so each tenant's facts fall into one local day, week and month.
fn dataset(at: DateTime<Utc>) -> String {
    let t = format!("'{}'::timestamptz", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    let a = format!("'{ALPHA}'::uuid");
    let b = format!("'{BRAVO}'::uuid");
    let call = |n: u128| format!("'{}'::uuid", Uuid::from_u128(0xca11_0000 + n));
    let (a1, a2, a3, a4, a5) = (call(1), call(2), call(3), call(4), call(5));
    let (b1, b2, b3) = (call(11), call(12), call(13));
    format!(
        r"
INSERT INTO analytics.tenants (tenant_id, slug, name, timezone) VALUES
    ({a}, 'alpha', 'Alpha Dental', 'UTC'), ({b}, 'bravo', 'Bravo Roofing', 'America/New_York');

INSERT INTO analytics.lead_facts
    (tenant_id, event_id, kind, source, campaign, timezone, received_at, resolved_at)
SELECT {a}, gen_random_uuid(), kind, 'gohighlevel', NULL, 'UTC', {t}, {t}
FROM unnest(ARRAY['new', 'new', 'new', 'new', 'retry']) kind
UNION ALL
SELECT {b}, gen_random_uuid(), 'new', 'zoho', NULL, 'America/New_York', {t}, {t}
FROM generate_series(1, 2);

INSERT INTO analytics.call_request_facts
    (tenant_id, call_id, attempt_number, event_id, lead_source, campaign, requested_at)
SELECT tenant, call, 1, gen_random_uuid(), source, NULL, {t}
FROM (VALUES ({a}, {a1}, 'gohighlevel'), ({a}, {a2}, 'gohighlevel'), ({a}, {a3}, 'gohighlevel'),
             ({a}, {a4}, 'gohighlevel'), ({a}, {a5}, 'gohighlevel'), ({b}, {b1}, 'zoho'),
             ({b}, {b2}, 'zoho'), ({b}, {b3}, 'zoho')) calls (tenant, call, source);

INSERT INTO analytics.call_facts
    (tenant_id, attempt_id, call_id, attempt_number, event_id, outcome, answered_by,
     duration_secs, ended_at)
SELECT tenant, gen_random_uuid(), call, 1, gen_random_uuid(), outcome, NULL, secs, {t}
FROM (VALUES ({a}, {a1}, 'human', 120), ({a}, {a2}, 'human', 60), ({a}, {a3}, 'machine', 30),
             ({a}, {a4}, 'no_answer', NULL), ({b}, {b1}, 'human', 90),
             ({b}, {b2}, 'busy', NULL), ({b}, {b3}, 'failed', NULL))
     calls (tenant, call, outcome, secs);

INSERT INTO analytics.conversation_facts
    (tenant_id, attempt_id, call_id, event_id, end_reason, started_at, ended_at, duration_secs,
     turns, tool_calls, resumes)
SELECT tenant, gen_random_uuid(), call, gen_random_uuid(), 'completed',
       {t} - make_interval(secs => secs), {t}, secs, turns, tools, resumes
FROM (VALUES ({a}, {a1}, 100, 10, 2, 0), ({a}, {a2}, 50, 6, 0, 1), ({b}, {b1}, 80, 8, 1, 0))
     talks (tenant, call, secs, turns, tools, resumes);

INSERT INTO analytics.summary_facts
    (tenant_id, attempt_id, call_id, event_id, outcome, sentiment, sentiment_score, source,
     provider_analysis, call_successful, summarized_at)
SELECT tenant, gen_random_uuid(), call, gen_random_uuid(), outcome, sentiment, score, 'llm',
       false, verdict, {t}
FROM (VALUES ({a}, {a1}, 'booked', 'positive', 0.8::real, 'success'),
             ({a}, {a2}, 'not_interested', 'negative', -0.4::real, 'failure'),
             ({b}, {b1}, 'callback', 'neutral', 0.1::real, NULL))
     summaries (tenant, call, outcome, sentiment, score, verdict);

INSERT INTO analytics.booking_facts
    (tenant_id, appointment_id, call_id, attempt_id, event_id, calendar, lead_source,
     starts_at, booked_at, value_cents, currency)
VALUES ({a}, gen_random_uuid(), {a1}, gen_random_uuid(), gen_random_uuid(), 'google',
        'gohighlevel', {t} + interval '1 day', {t}, 15000, 'USD');

INSERT INTO analytics.daily_call_summary
    (tenant_id, day, leads, attempts, human, machine, no_answer, busy, failed, cancelled,
     unknown, call_secs, conversations, talk_secs, bookings)
VALUES ({a}, analytics.local_day({a}, {t}), 4, 4, 2, 1, 1, 0, 0, 0, 0, 210, 2, 150, 1),
       ({b}, analytics.local_day({b}, {t}), 2, 3, 1, 0, 0, 1, 1, 0, 0, 90, 1, 80, 0);

INSERT INTO analytics.weekly_performance_summary
    (tenant_id, week, leads, attempts, human, conversations, talk_secs, bookings, positive,
     neutral, negative)
VALUES ({a}, analytics.local_week({a}, {t}), 4, 4, 2, 2, 150, 1, 1, 0, 1),
       ({b}, analytics.local_week({b}, {t}), 2, 3, 1, 1, 80, 0, 0, 1, 0);

INSERT INTO analytics.monthly_revenue_attribution
    (tenant_id, month, lead_source, currency, bookings, value_cents)
VALUES ({a}, analytics.local_month({a}, {t}), 'gohighlevel', 'USD', 1, 15000);

INSERT INTO analytics.ai_performance_trends
    (tenant_id, day, conversations, turns, tool_calls, resumes, summaries, booked, positive,
     neutral, negative, sentiment_sum, provider_success, provider_failure)
VALUES ({a}, analytics.local_day({a}, {t}), 2, 16, 2, 1, 2, 1, 1, 0, 1, 0.4, 1, 1),
       ({b}, analytics.local_day({b}, {t}), 1, 8, 1, 0, 1, 0, 0, 1, 0, 0.1, 0, 0);

INSERT INTO analytics.stage_latency_facts
    (tenant_id, event_id, stage, event_type, cause_type, occurred_at, latency_ms)
SELECT tenant, gen_random_uuid(), stage, 'x', 'y', {t}, ms
FROM (VALUES ({a}, 'dial', 100.0), ({a}, 'dial', 200.0), ({a}, 'dial', 300.0),
             ({a}, 'dial', 400.0), ({a}, 'converse', 5000.0), ({b}, 'dial', 1000.0))
     latencies (tenant, stage, ms);

INSERT INTO analytics.event_facts
    (tenant_id, event_id, event_type, version, source, call_id, causation_id, occurred_at)
SELECT tenant, gen_random_uuid(), kind, 1, 'test', call, NULL, {t} + make_interval(secs => secs)
FROM (VALUES ({a}, {a1}, 'call.requested', -70.0), ({a}, {a1}, 'call.status_reported', -69.5),
             ({a}, {a1}, 'call.answered', -67.5), ({a}, {a1}, 'conversation.ended', -7.5),
             ({b}, {b1}, 'call.requested', -10.0), ({b}, {b1}, 'call.status_reported', -8.5),
             ({a}, {a5}, 'call.status_reported', 1.0))
     facts (tenant, call, kind, secs);

INSERT INTO analytics.consumer_snapshots
    (taken_at, stream, consumer, pending, ack_pending, redelivered, waiting, delivered_seq)
VALUES ({t} - interval '1 minute', 'CALLS', 'dial', 10, 2, 1, 0, 100),
       ({t}, 'CALLS', 'dial', 3, 1, 1, 1, 120),
       ({t}, 'LEADS', 'resolve_tenant', 0, 0, 0, 2, 50);

INSERT INTO analytics.admission_snapshots (tenant_id, taken_at, waiting, admitted)
VALUES ({a}, {t} - interval '1 minute', 5, 1), ({a}, {t}, 2, 3), ({b}, {t}, 0, 1);
"
    )
}

/// What each card must return for the dataset: every tenant (no filter), then tenant
/// `alpha` only. Numbers are compared as numbers (0.5000 equals 0.5).
fn expectations(at: DateTime<Utc>) -> BTreeMap<&'static str, (Value, Value)> {
    let alpha_day = at.date_naive();
    let bravo_day = at.with_timezone(&chrono_tz::America::New_York).date_naive();
    let week =
        |day: NaiveDate| day - TimeDelta::days(i64::from(day.weekday().num_days_from_monday()));
    let month = |day: NaiveDate| day.with_day(1).unwrap();
    let hour = at
        .with_minute(0)
        .and_then(|at| at.with_second(0))
        .and_then(|at| at.with_nanosecond(0))
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    // Rows ordered by (day, tenant), as the day-keyed cards order them.
    let by_day = |alpha: Value, bravo: Value, alpha_key: NaiveDate, bravo_key: NaiveDate| {
        let alpha_row = alpha.clone();
        let rows = if (bravo_key, "bravo") < (alpha_key, "alpha") {
            json!([bravo, alpha])
        } else {
            json!([alpha, bravo])
        };
        (rows, json!([alpha_row]))
    };
    let same = |rows: Value| (rows.clone(), rows);
    let alpha_and_bravo =
        |alpha: Value, bravo: Value| (json!([alpha.clone(), bravo]), json!([alpha]));

    let mut expected = BTreeMap::new();
    expected.insert(
        "answer_rate",
        alpha_and_bravo(
            json!({"tenant": "alpha", "attempts": 4, "answered": 2, "answer_rate": 0.5}),
            json!({"tenant": "bravo", "attempts": 3, "answered": 1, "answer_rate": 0.3333}),
        ),
    );
    expected.insert(
        "connection_rate",
        alpha_and_bravo(
            json!({"tenant": "alpha", "attempts": 4, "connected": 3, "connection_rate": 0.75}),
            json!({"tenant": "bravo", "attempts": 3, "connected": 1, "connection_rate": 0.3333}),
        ),
    );
    expected.insert(
        "booking_rate",
        alpha_and_bravo(
            json!({"tenant": "alpha", "leads": 4, "conversations": 2, "bookings": 1,
                   "per_conversation": 0.5, "per_lead": 0.25}),
            json!({"tenant": "bravo", "leads": 2, "conversations": 1, "bookings": 0,
                   "per_conversation": 0, "per_lead": 0}),
        ),
    );
    expected.insert(
        "average_duration",
        alpha_and_bravo(
            json!({"tenant": "alpha", "avg_connected_call_secs": 70, "avg_conversation_secs": 75}),
            json!({"tenant": "bravo", "avg_connected_call_secs": 90, "avg_conversation_secs": 80}),
        ),
    );
    expected.insert(
        "calls_per_day",
        by_day(
            json!({"day": alpha_day.to_string(), "tenant": "alpha", "leads": 4, "attempts": 4,
                   "human": 2, "machine": 1, "no_answer": 1, "busy": 0, "other": 0,
                   "conversations": 2, "bookings": 1}),
            json!({"day": bravo_day.to_string(), "tenant": "bravo", "leads": 2, "attempts": 3,
                   "human": 1, "machine": 0, "no_answer": 0, "busy": 1, "other": 1,
                   "conversations": 1, "bookings": 0}),
            alpha_day,
            bravo_day,
        ),
    );
    expected.insert(
        "weekly_performance",
        by_day(
            json!({"week": week(alpha_day).to_string(), "tenant": "alpha", "leads": 4,
                   "attempts": 4, "answered": 2, "conversations": 2, "bookings": 1,
                   "avg_talk_secs": 75, "positive": 1, "neutral": 0, "negative": 1}),
            json!({"week": week(bravo_day).to_string(), "tenant": "bravo", "leads": 2,
                   "attempts": 3, "answered": 1, "conversations": 1, "bookings": 0,
                   "avg_talk_secs": 80, "positive": 0, "neutral": 1, "negative": 0}),
            week(alpha_day),
            week(bravo_day),
        ),
    );
    expected.insert(
        "revenue_attribution",
        same(
            json!([{"month": month(alpha_day).to_string(), "tenant": "alpha",
                     "lead_source": "gohighlevel", "currency": "USD", "bookings": 1,
                     "value": 150}]),
        ),
    );
    expected.insert(
        "ai_performance",
        by_day(
            json!({"day": alpha_day.to_string(), "tenant": "alpha", "conversations": 2,
                   "turns_per_conversation": 8, "tool_calls_per_conversation": 1, "resumes": 1,
                   "summaries": 2, "booked_share": 0.5, "avg_sentiment": 0.2, "positive": 1,
                   "neutral": 0, "negative": 1, "provider_success": 1, "provider_failure": 1}),
            json!({"day": bravo_day.to_string(), "tenant": "bravo", "conversations": 1,
                   "turns_per_conversation": 8, "tool_calls_per_conversation": 1, "resumes": 0,
                   "summaries": 1, "booked_share": 0, "avg_sentiment": 0.1, "positive": 0,
                   "neutral": 1, "negative": 0, "provider_success": 0, "provider_failure": 0}),
            alpha_day,
            bravo_day,
        ),
    );
    // percentile_cont interpolates: the p99 of 100..400 is 300 + 0.97 × 100.
    expected.insert(
        "stage_latency",
        (
            json!([
                {"stage": "converse", "events": 1, "p50_ms": 5000, "p99_ms": 5000, "max_ms": 5000},
                {"stage": "dial", "events": 5, "p50_ms": 300, "p99_ms": 976, "max_ms": 1000},
            ]),
            json!([
                {"stage": "converse", "events": 1, "p50_ms": 5000, "p99_ms": 5000, "max_ms": 5000},
                {"stage": "dial", "events": 4, "p50_ms": 250, "p99_ms": 397, "max_ms": 400},
            ]),
        ),
    );
    expected.insert(
        "stage_latency_hourly",
        (
            json!([
                {"hour": hour, "stage": "converse", "tenant": "alpha", "events": 1,
                 "p50_ms": 5000, "p99_ms": 5000},
                {"hour": hour, "stage": "dial", "tenant": "alpha", "events": 4,
                 "p50_ms": 250, "p99_ms": 397},
                {"hour": hour, "stage": "dial", "tenant": "bravo", "events": 1,
                 "p50_ms": 1000, "p99_ms": 1000},
            ]),
            json!([
                {"hour": hour, "stage": "converse", "tenant": "alpha", "events": 1,
                 "p50_ms": 5000, "p99_ms": 5000},
                {"hour": hour, "stage": "dial", "tenant": "alpha", "events": 4,
                 "p50_ms": 250, "p99_ms": 397},
            ]),
        ),
    );
    expected.insert(
        "call_phases",
        (
            json!([
                {"phase": "call.answered → conversation.ended", "calls": 1, "p50_ms": 60000,
                 "p99_ms": 60000},
                {"phase": "call.requested → call.status_reported", "calls": 2, "p50_ms": 1000,
                 "p99_ms": 1490},
                {"phase": "call.status_reported → call.answered", "calls": 1, "p50_ms": 2000,
                 "p99_ms": 2000},
            ]),
            json!([
                {"phase": "call.answered → conversation.ended", "calls": 1, "p50_ms": 60000,
                 "p99_ms": 60000},
                {"phase": "call.requested → call.status_reported", "calls": 1, "p50_ms": 500,
                 "p99_ms": 500},
                {"phase": "call.status_reported → call.answered", "calls": 1, "p50_ms": 2000,
                 "p99_ms": 2000},
            ]),
        ),
    );
    // Platform-wide: the tenant filter does not apply.
    expected.insert(
        "queue_depth",
        same(json!([
            {"stream": "CALLS", "consumer": "dial", "pending": 3, "ack_pending": 1,
             "redelivered": 1, "waiting": 1},
            {"stream": "LEADS", "consumer": "resolve_tenant", "pending": 0, "ack_pending": 0,
             "redelivered": 0, "waiting": 2},
        ])),
    );
    expected.insert(
        "admission_queue",
        alpha_and_bravo(
            json!({"tenant": "alpha", "waiting": 2, "admitted": 3}),
            json!({"tenant": "bravo", "waiting": 0, "admitted": 1}),
        ),
    );
    expected.insert(
        "active_calls",
        same(json!([{"tenant": "alpha", "phase": "ringing", "calls": 1}])),
    );
    expected.insert(
        "client_health",
        alpha_and_bravo(
            json!({"tenant": "alpha", "name": "Alpha Dental", "health": "healthy",
                   "attempts_24h": 4, "answered_24h": 2, "answer_rate_24h": 0.5,
                   "failed_24h": 0, "bookings_7d": 1, "booking_rate_7d": 0.25,
                   "sentiment_7d": 0.2, "queued_now": 2}),
            json!({"tenant": "bravo", "name": "Bravo Roofing", "health": "healthy",
                   "attempts_24h": 3, "answered_24h": 1, "answer_rate_24h": 0.333,
                   "failed_24h": 1, "bookings_7d": 0, "booking_rate_7d": 0,
                   "sentiment_7d": 0.1, "queued_now": 0}),
        ),
    );
    expected
}

/// Numbers as f64 rounded to 1e-6, so `0.5000` (numeric) equals `0.5` and `397` equals
/// `397.0` (percentile_cont's double).
fn normalize(value: Value) -> Value {
    match value {
        Value::Number(number) => {
            let float = number.as_f64().expect("finite");
            json!((float * 1e6).round() / 1e6)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, normalize(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Runs a card as Metabase would (variables as prepared-statement parameters) and returns
/// its rows as JSON objects, in the card's order.
async fn run_card(pool: &sqlx::PgPool, card_sql: &str, tenant: Option<&str>) -> Value {
    let values: BTreeMap<String, String> = tenant
        .map(|slug| ("tenant".to_owned(), slug.to_owned()))
        .into_iter()
        .collect();
    let prepared = sql::prepare(card_sql, &values).unwrap();
    // Wrapping the card turns its rows into JSON in one column; the card's ORDER BY still
    // decides the order, because jsonb_agg reads the subquery's rows as they come.
    let wrapped = format!(
        "SELECT coalesce(jsonb_agg(to_jsonb(card_rows)), '[]'::jsonb) FROM (\n{}\n) card_rows",
        prepared.sql
    );
    let mut query = sqlx::query_scalar::<_, Value>(&wrapped);
    for param in &prepared.params {
        query = query.bind(param);
    }
    query.fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn every_card_returns_the_expected_numbers_as_the_reader_role() {
    caller::telemetry::init_for_tests();
    let db = common::TestDatabase::create().await;
    let at = (Utc::now() - TimeDelta::hours(1))
        .with_nanosecond(0)
        .unwrap();
    sqlx::raw_sql(&dataset(at))
        .execute(&db.observer)
        .await
        .unwrap();
    let differences: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(RECOUNT)
        .fetch_all(&db.observer)
        .await
        .unwrap();
    assert!(
        differences.is_empty(),
        "the dataset's rollups disagree with its facts: {differences:#?}"
    );

    // The role Metabase connects as: made by the same code as `caller metabase reader`.
    let role = format!("caller_metabase_test_{}", Uuid::new_v4().simple());
    let password = Secret::new(format!("pw-{}", Uuid::new_v4().simple()));
    let mut owner = db.observer.acquire().await.unwrap();
    let change = reader::ensure_reader(&mut owner, &role, &password)
        .await
        .unwrap();
    assert_eq!(change, reader::RoleChange::Created);
    let again = reader::ensure_reader(&mut owner, &role, &password)
        .await
        .unwrap();
    assert_eq!(
        again,
        reader::RoleChange::Updated,
        "a second run updates in place"
    );
    let mappings: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT tenant_id FROM analytics.readers WHERE role_name = $1")
            .bind(&role)
            .fetch_all(&mut *owner)
            .await
            .unwrap();
    assert_eq!(mappings, [None], "mapped once, to every tenant");
    assert!(matches!(
        reader::ensure_reader(&mut owner, "Robert'); DROP", &password).await,
        Err(reader::ReaderError::InvalidName(_))
    ));
    drop(owner);
    let host_and_db = db.url.rsplit_once('@').expect("user in the url").1;
    let reader_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Metabase sets the report time zone on its connections the same way.
                sqlx::query("SET TimeZone = 'UTC'")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&format!(
            "postgres://{role}:{}@{host_and_db}",
            password.expose()
        ))
        .await
        .unwrap();

    let definitions = definitions();
    let mut expected = expectations(at);
    for (key, card) in &definitions.cards {
        let (all, alpha) = expected
            .remove(key.as_str())
            .unwrap_or_else(|| panic!("card `{key}` has no expectation in this test"));
        let every_tenant = run_card(&reader_pool, &card.sql, None).await;
        assert_eq!(
            normalize(every_tenant),
            normalize(all),
            "card `{key}`, every tenant"
        );
        let one_tenant = run_card(&reader_pool, &card.sql, Some("alpha")).await;
        assert_eq!(
            normalize(one_tenant),
            normalize(alpha),
            "card `{key}`, tenant alpha"
        );
    }
    assert!(
        expected.is_empty(),
        "expectations for cards that do not exist: {:?}",
        expected.keys().collect::<Vec<_>>()
    );

    // The reader role is all it takes, and it takes nothing more: it cannot write.
    assert!(
        sqlx::query("DELETE FROM analytics.call_facts")
            .execute(&reader_pool)
            .await
            .is_err(),
        "the reader could write"
    );
    reader_pool.close().await;
    sqlx::raw_sql(&format!("DROP ROLE {role}"))
        .execute(&db.observer)
        .await
        .unwrap();
    db.drop_database().await;
}

#[test]
fn every_dashboard_card_is_defined_and_every_card_is_on_a_dashboard() {
    let definitions = definitions();
    let placed: std::collections::BTreeSet<&str> = definitions
        .dashboards
        .iter()
        .flat_map(|dashboard| dashboard.cards.iter().map(|p| p.card.as_str()))
        .collect();
    let defined: std::collections::BTreeSet<&str> =
        definitions.cards.keys().map(String::as_str).collect();
    assert_eq!(placed, defined);
    for card in definitions.cards.values() {
        assert!(
            card.variables.iter().all(|name| name == "tenant"),
            "card `{}` uses a variable dashboards do not fill: {:?}",
            card.key,
            card.variables
        );
        assert!(
            !card.description().is_empty(),
            "card `{}` has no comment",
            card.key
        );
    }
}

const ADMIN: &str = "admin@caller.test";
const ADMIN_PASSWORD: &str = "admin-password-do-not-print";
const READER_PASSWORD: &str = "reader-password-do-not-print";

/// Serves a fresh simulator on a loopback port; returns it and its base URL.
async fn serve_simulator() -> (caller::metabase::sim::MetabaseSim, String) {
    let sim = caller::metabase::sim::MetabaseSim::new(ADMIN, ADMIN_PASSWORD);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = sim.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (sim, url)
}

fn connection() -> caller::metabase::provision::DatabaseConnection {
    caller::metabase::provision::DatabaseConnection {
        host: "postgres".to_owned(),
        port: 5432,
        dbname: "caller".to_owned(),
        user: "caller_metabase".to_owned(),
        password: Secret::new(READER_PASSWORD.to_owned()),
        ssl: false,
        update_password: false,
    }
}

async fn provision_into(
    url: &str,
    definitions: &Definitions,
) -> Vec<caller::metabase::provision::Outcome> {
    provision_with(url, definitions, &connection()).await
}

async fn provision_with(
    url: &str,
    definitions: &Definitions,
    connection: &caller::metabase::provision::DatabaseConnection,
) -> Vec<caller::metabase::provision::Outcome> {
    let mut client = caller::metabase::api::MetabaseClient::new(url);
    client.health().await.unwrap();
    client
        .login(ADMIN, &Secret::new(ADMIN_PASSWORD.to_owned()))
        .await
        .unwrap();
    caller::metabase::provision::provision(&client, definitions, connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn provisioning_creates_exactly_the_defined_objects_and_a_second_run_writes_nothing() {
    use caller::metabase::provision::Change;
    let (sim, url) = serve_simulator().await;
    let definitions = definitions();

    let first = provision_into(&url, &definitions).await;
    assert!(
        first
            .iter()
            .all(|outcome| outcome.change == Change::Created),
        "{first:#?}"
    );
    let (databases, collections, cards, dashboards) = sim.objects();
    assert_eq!(databases.len(), 1);
    assert_eq!(databases[0]["name"], definitions.database.as_str());
    assert_eq!(databases[0]["details"]["user"], "caller_metabase");
    assert_eq!(
        databases[0]["details"]["schema-filters-patterns"],
        "analytics"
    );
    assert_eq!(collections.len(), 1);
    assert_eq!(collections[0]["name"], definitions.collection.as_str());
    assert_eq!(cards.len(), definitions.cards.len());
    for card in definitions.cards.values() {
        let stored = cards
            .iter()
            .find(|stored| stored["name"] == card.name.as_str())
            .unwrap_or_else(|| panic!("card `{}` missing", card.name));
        assert_eq!(
            stored["dataset_query"]["native"]["query"],
            card.sql.as_str()
        );
        assert_eq!(stored["dataset_query"]["database"], databases[0]["id"]);
        assert_eq!(stored["collection_id"], collections[0]["id"]);
        assert_eq!(stored["display"], card.display.as_str());
        let tags = stored["dataset_query"]["native"]["template-tags"]
            .as_object()
            .unwrap();
        assert_eq!(tags.keys().cloned().collect::<Vec<_>>(), card.variables);
    }
    assert_eq!(dashboards.len(), definitions.dashboards.len());
    for dashboard in &definitions.dashboards {
        let stored = dashboards
            .iter()
            .find(|stored| stored["name"] == dashboard.name.as_str())
            .unwrap();
        let dashcards = stored["dashcards"].as_array().unwrap();
        assert_eq!(dashcards.len(), dashboard.cards.len(), "{}", dashboard.name);
        for dashcard in dashcards {
            let card = cards
                .iter()
                .find(|c| c["id"] == dashcard["card_id"])
                .unwrap();
            let filtered = !card["dataset_query"]["native"]["template-tags"]
                .as_object()
                .unwrap()
                .is_empty();
            let mappings = dashcard["parameter_mappings"].as_array().unwrap();
            assert_eq!(mappings.len(), usize::from(filtered), "{}", card["name"]);
        }
    }
    let writes = sim.writes();
    // database, collection, every card, each dashboard created then laid out.
    assert_eq!(
        writes.len(),
        2 + definitions.cards.len() + 2 * definitions.dashboards.len(),
        "{writes:#?}"
    );

    let second = provision_into(&url, &definitions).await;
    assert!(
        second
            .iter()
            .all(|outcome| outcome.change == Change::Unchanged),
        "{second:#?}"
    );
    assert_eq!(sim.writes(), writes, "a second run wrote something");
    assert_eq!(
        first.iter().map(|o| o.id).collect::<Vec<_>>(),
        second.iter().map(|o| o.id).collect::<Vec<_>>()
    );

    // A changed card and a moved dashcard are updated in place, nothing else.
    let mut changed = definitions.clone();
    changed
        .cards
        .get_mut("answer_rate")
        .unwrap()
        .sql
        .push_str("\nLIMIT 100");
    changed.dashboards[0].cards[0].size_y += 1;
    let third = provision_into(&url, &changed).await;
    let updated: Vec<&str> = third
        .iter()
        .filter(|outcome| outcome.change != Change::Unchanged)
        .map(|outcome| outcome.name.as_str())
        .collect();
    assert_eq!(
        updated,
        ["Answer rate", changed.dashboards[0].name.as_str()]
    );
    assert!(third.iter().all(|o| o.change != Change::Created));
    // A moved PostgreSQL updates the database connection, nothing else.
    let moved = caller::metabase::provision::DatabaseConnection {
        host: "db.internal".to_owned(),
        ..connection()
    };
    let fourth = provision_with(&url, &changed, &moved).await;
    let updated: Vec<(&str, &str)> = fourth
        .iter()
        .filter(|outcome| outcome.change != Change::Unchanged)
        .map(|outcome| (outcome.kind, outcome.name.as_str()))
        .collect();
    assert_eq!(updated, [("database", definitions.database.as_str())]);
    let (databases_after, _, cards_after, dashboards_after) = sim.objects();
    assert_eq!(databases_after.len(), 1);
    assert_eq!(databases_after[0]["details"]["host"], "db.internal");
    assert_eq!(cards_after.len(), cards.len());
    assert_eq!(dashboards_after.len(), dashboards.len());
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error() {
    let (_sim, url) = serve_simulator().await;
    let mut client = caller::metabase::api::MetabaseClient::new(&url);
    let error = client
        .login(ADMIN, &Secret::new("not-the-password".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("metabase refused the login of `{ADMIN}`: wrong user or password")
    );
    // Without a session every other call is refused, not half-done.
    let error = client.get("/api/database").await.unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
}

/// Runs the `caller` binary with `args` and the secrets in its environment.
fn run_caller(args: &[&str], admin_password: &str) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_caller"))
        .args(args)
        .env("CALLER_METABASE_USER", ADMIN)
        .env("CALLER_METABASE_PASSWORD", admin_password)
        .env("CALLER_METABASE_DB_PASSWORD", READER_PASSWORD)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[tokio::test]
async fn the_cli_provisions_and_never_prints_a_secret() {
    let (sim, url) = serve_simulator().await;
    let dir = common::project_root().join("metabase");
    let args = [
        "metabase",
        "provision",
        "--url",
        &url,
        "--dir",
        dir.to_str().unwrap(),
    ];
    let cli = |password: &'static str| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_caller(&args, password)
        })
    };

    let (ok, printed) = cli(ADMIN_PASSWORD).await.unwrap();
    assert!(ok, "{printed}");
    assert!(printed.contains("created   dashboard"), "{printed}");
    let (ok, again) = cli(ADMIN_PASSWORD).await.unwrap();
    assert!(ok, "{again}");
    assert!(
        !again.contains("created") && !again.contains("updated"),
        "{again}"
    );
    let (ok, refused) = cli("wrong-password-do-not-print").await.unwrap();
    assert!(!ok);
    assert_eq!(
        refused.trim(),
        format!("caller: metabase refused the login of `{ADMIN}`: wrong user or password")
    );

    let sessions = sim.sessions();
    assert_eq!(sessions.len(), 2, "one session per successful run");
    for output in [&printed, &again, &refused] {
        for secret in sessions.iter().map(String::as_str).chain([
            ADMIN_PASSWORD,
            READER_PASSWORD,
            "wrong-password-do-not-print",
        ]) {
            assert!(!output.contains(secret), "a secret was printed: {output}");
        }
    }
}

/// True when `actual` has every key of `recorded` with the same JSON type, recursively
/// (arrays of equal length element by element, otherwise the first recorded element
/// against every actual one).
fn same_shape(recorded: &Value, actual: &Value) -> bool {
    match (recorded, actual) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_some_and(|found| same_shape(value, found))),
        // Tuples (`target`) element by element; lists by their first recorded element.
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .all(|(want, have)| same_shape(want, have)),
        (Value::Array(want), Value::Array(have)) => match want.first() {
            Some(first) => !have.is_empty() && have.iter().all(|item| same_shape(first, item)),
            None => true,
        },
        (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => true,
        // Strings are free text (names, messages, tokens); plain-text answers are compared
        // exactly by the caller.
        (Value::String(_), Value::String(_)) => true,
        _ => false,
    }
}

/// Rewrites the recorded ids in `value` (fields that hold ids) to the simulator's.
fn map_ids(value: &mut Value, ids: &BTreeMap<i64, i64>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                let holds_id = ["collection_id", "database", "card_id"].contains(&key.as_str());
                match field.as_i64() {
                    Some(recorded) if holds_id => {
                        *field = json!(ids.get(&recorded).copied().unwrap_or(recorded));
                    }
                    _ => map_ids(field, ids),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| map_ids(item, ids)),
        _ => {}
    }
}

#[tokio::test]
async fn the_simulator_honours_the_recorded_contract() {
    let sim = caller::metabase::sim::MetabaseSim::new("admin@caller.test", "admin-password");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = sim.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let path = common::project_root().join("tests/fixtures/metabase/contract.json");
    let exchanges: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let http = caller::providers::http::client();
    let mut session = String::new();
    let mut ids: BTreeMap<i64, i64> = BTreeMap::new();
    for (index, exchange) in exchanges.iter().enumerate() {
        let what = format!(
            "exchange {index}: {} {}",
            exchange["method"], exchange["path"]
        );
        let recorded_path = exchange["path"].as_str().unwrap();
        let path: Vec<String> = recorded_path
            .split('/')
            .map(|segment| match segment.parse::<i64>() {
                Ok(id) => ids.get(&id).copied().unwrap_or(id).to_string(),
                Err(_) => segment.to_owned(),
            })
            .collect();
        let method =
            reqwest::Method::from_bytes(exchange["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut request = http.request(method, format!("{url}{}", path.join("/")));
        if exchange["session"] == true {
            request = request.header("X-Metabase-Session", &session);
        }
        if let Some(body) = exchange.get("request") {
            let mut body = body.clone();
            map_ids(&mut body, &ids);
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            u16::try_from(exchange["status"].as_u64().unwrap()).unwrap(),
            "{what}"
        );
        let text = response.text().await.unwrap();
        let actual: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let recorded = &exchange["response"];
        if let Value::String(body) = recorded
            && !body.starts_with('$')
        {
            assert_eq!(&actual, recorded, "{what}");
        }
        assert!(same_shape(recorded, &actual), "{what}: {actual:#}");
        if recorded["id"] == "$session" {
            session = actual["id"].as_str().unwrap().to_owned();
        }
        if let (Some(want), Some(have)) = (recorded["id"].as_i64(), actual["id"].as_i64()) {
            ids.insert(want, have);
        }
        for (want, have) in recorded["dashcards"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(actual["dashcards"].as_array().into_iter().flatten())
        {
            if let (Some(want), Some(have)) = (want["id"].as_i64(), have["id"].as_i64()) {
                ids.insert(want, have);
            }
        }
    }
}
