//! The analytics sink end to end: calls through the Twilio and ElevenLabs simulators over a
//! real NATS server and a real database, every fact mirrored onto FACTS and written into the
//! `analytics` schema. The rollups equal a recount of the facts, replaying every fact twice
//! changes nothing, and a reader sees only the tenants it is granted.

mod common;
#[path = "common/conversations.rs"]
mod conversations;
#[path = "common/calls.rs"]
mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use caller::bus::envelope::Envelope;
use caller::bus::outbox::Outbox;
use caller::events::fact::Fact;
use caller::providers::sim_elevenlabs::Script;
use caller::providers::sim_twilio::SimOutcome;
use caller::stages::analytics_sink::AnalyticsSink;
use caller::stages::{Stage, StageContext};
use caller::store::analytics::RECOUNT;
use chrono::{TimeDelta, Utc};
use common::eventually;
use conversations::{Setup, Tuning};
use harness::{Harness, daytime_zone};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const ANSWERS: &str = "+12015550140";
const NO_ANSWER: &str = "+12015550141";
const BUSY: &str = "+12015550142";
const STAGES: [&str; 7] = [
    "rate_limit",
    "dial",
    "call_status",
    "converse",
    "post_call",
    "summarize",
    "analytics_sink",
];

fn booking_agent() -> Script {
    let tomorrow_ten = (Utc::now() + TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339();
    Script::new()
        .say(
            "Hi, this is Acme Dental. Would you like to book a check-up?",
            800,
        )
        .listen("Yes, what times do you have tomorrow?")
        .say("I have ten o'clock tomorrow. Shall I book it?", 600)
        .listen("Yes, ten works, great.")
        .tool(
            "book_appointment",
            json!({"start": tomorrow_ten, "notes": "check-up"}),
            true,
        )
        .say("You are booked for ten tomorrow. Goodbye!", 500)
        .end()
}

async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap()
}

/// Every row of every fact and rollup table, as text (the snapshots of queue state are left
/// out: the companion adds to them on its own clock).
async fn contents(h: &Harness) -> BTreeMap<&'static str, Vec<String>> {
    let mut all = BTreeMap::new();
    for table in [
        "tenants",
        "event_facts",
        "stage_latency_facts",
        "lead_facts",
        "call_request_facts",
        "call_facts",
        "conversation_facts",
        "summary_facts",
        "booking_facts",
        "daily_call_summary",
        "weekly_performance_summary",
        "monthly_revenue_attribution",
        "ai_performance_trends",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM analytics.{table} t ORDER BY t::text"
        ))
        .fetch_all(&h.env.db.observer)
        .await
        .unwrap();
        all.insert(table, rows);
    }
    all
}

/// Every message on FACTS, decoded as the sink's input.
async fn every_fact(h: &Harness) -> Vec<Envelope<Fact>> {
    let js = h.env.bus.jetstream().clone();
    let mut stream = js.get_stream("FACTS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut facts = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        facts.push(Envelope::decode(Some(&message.headers), &message.payload).unwrap());
    }
    facts
}

/// Runs the sink's handler on `fact` in a transaction of its own, without the runner's
/// idempotency claim: what a redelivery after the claim expired does.
async fn replay(h: &Harness, sink: &AnalyticsSink, fact: &Envelope<Fact>) {
    let mut tx = h
        .env
        .db
        .store
        .begin_tenant(fact.meta.tenant_id)
        .await
        .unwrap();
    let mut outbox = Outbox::new(AnalyticsSink::NAME, &[], &fact.meta);
    let mut cx = StageContext {
        tx: &mut tx,
        outbox: &mut outbox,
    };
    sink.handle(fact, &mut cx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn rollups_equal_a_recount_and_replaying_every_fact_twice_changes_nothing() {
    let (h, _el) = conversations::start_tuned(
        Setup {
            script: booking_agent(),
            caller: conversations::caller_answers(2, 400),
            stages: STAGES.to_vec(),
            converse: conversations::quick_leases(),
            first_message: Some("Hi, this is Acme Dental."),
        },
        json!({}),
        json!({}),
        Tuning {
            by_callee: [
                (NO_ANSWER.to_owned(), SimOutcome::NoAnswer),
                (BUSY.to_owned(), SimOutcome::Busy),
            ]
            .into(),
            configuration: json!({"appointment_value": {"amount_cents": 15000, "currency": "USD"}}),
        },
    )
    .await;
    for phone in [ANSWERS, NO_ANSWER, BUSY] {
        h.lead(h.tenant, phone, daytime_zone()).await;
    }
    eventually(
        WAIT,
        "three outcomes, a booking and a summary in analytics",
        || async {
            count(&h, "SELECT count(*) FROM analytics.call_facts").await == 3
                && count(&h, "SELECT count(*) FROM analytics.booking_facts").await == 1
                && count(&h, "SELECT count(*) FROM analytics.summary_facts").await == 1
        },
    )
    .await;
    // Everything on FACTS so far is recorded (later facts, e.g. the CRM's, may still come).
    let facts = every_fact(&h).await;
    eventually(WAIT, "every fact on FACTS is recorded", || async {
        count(&h, "SELECT count(*) FROM analytics.event_facts").await >= facts.len() as i64
    })
    .await;

    // The figures a person would check.
    let day: (i32, i32, i32, i32, i32, i32, i32, i32) = sqlx::query_as(
        "SELECT sum(leads)::int, sum(attempts)::int, sum(human)::int, sum(no_answer)::int,
                sum(busy)::int, sum(conversations)::int, sum(bookings)::int, count(*)::int
         FROM analytics.daily_call_summary",
    )
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(
        (day.0, day.1, day.2, day.3, day.4, day.5, day.6),
        (3, 3, 1, 1, 1, 1, 1),
        "leads, attempts, human, no answer, busy, conversations, bookings"
    );
    let revenue: (String, i32, i64) = sqlx::query_as(
        "SELECT currency, bookings, value_cents FROM analytics.monthly_revenue_attribution",
    )
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(revenue, ("USD".to_owned(), 1, 15000));
    let stages: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT stage FROM analytics.stage_latency_facts ORDER BY stage",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    let links: Vec<String> = sqlx::query_scalar(
        "SELECT e.event_type || ' from ' || e.source || ' <- ' || coalesce(c.event_type, e.causation_id::text, '-')
         FROM analytics.event_facts e LEFT JOIN analytics.event_facts c ON c.event_id = e.causation_id
         ORDER BY e.occurred_at",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    // The links recorded by causation ids (the others are call phases, below).
    for stage in ["call_status", "rate_limit", "summarize"] {
        assert!(
            stages.iter().any(|s| s == stage),
            "no latency of {stage}: {stages:?}\n{links:#?}"
        );
    }
    let phases: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT previous_type, event_type FROM analytics.call_phase_latency",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    // Dialing ends with the provider's first report; what follows depends on timing (a
    // hang-up's status may come before or after converse records the end).
    let dialed = (
        "call.requested".to_owned(),
        "call.status_reported".to_owned(),
    );
    assert!(phases.contains(&dialed), "no dialing phase: {phases:?}");
    // Every fact of a call but its first is a phase.
    let (phase_rows, call_facts_rows, call_count): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM analytics.call_phase_latency),
                (SELECT count(*) FROM analytics.event_facts WHERE call_id IS NOT NULL),
                (SELECT count(DISTINCT call_id) FROM analytics.event_facts)",
    )
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(phase_rows, call_facts_rows - call_count);

    let recount = |h: &Harness| {
        let pool = h.env.db.observer.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, Option<String>)>(RECOUNT)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(recount(&h).await, vec![], "rollups differ from the recount");

    // A queue snapshot: every consumer, and the tenant's admission queue; a second process
    // taking the same round stores nothing more.
    let round = Utc::now();
    for _ in 0..2 {
        caller::stages::analytics_sink::snapshot::take(&h.runtime, round)
            .await
            .unwrap();
    }
    let queues: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT stream, consumer, ack_pending FROM analytics.queue_status_view ORDER BY 1, 2",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    assert!(
        queues
            .iter()
            .any(|(stream, consumer, _)| stream == "FACTS" && consumer == "analytics_sink"),
        "{queues:?}"
    );
    assert!(
        queues
            .iter()
            .any(|(stream, consumer, _)| stream == "CALLS" && consumer == "dial")
    );
    // (The companion takes its own rounds too, on 30 s boundaries.)
    let of_round = |table: &'static str| {
        let pool = h.env.db.observer.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT count(*) FROM analytics.{table} WHERE taken_at = $1"
            ))
            .bind(round)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        of_round("consumer_snapshots").await,
        queues.len() as i64,
        "one row per consumer per round"
    );
    assert_eq!(
        of_round("admission_snapshots").await,
        1,
        "the tenant's admission queue"
    );

    // Stop the pipeline (late provider callbacks would add facts while we compare), bring
    // analytics up to every fact on FACTS with one pass (a handler still in flight then
    // changes nothing either), and take that as the reference.
    h.shutdown.trigger();
    let facts = every_fact(&h).await;
    let sink = AnalyticsSink::build(&h.runtime).unwrap();
    for fact in &facts {
        replay(&h, &sink, fact).await;
    }
    let before = contents(&h).await;
    assert_eq!(recount(&h).await, vec![]);
    // Replay every fact twice more, past the runner's claim: nothing changes.
    for _ in 0..2 {
        for fact in &facts {
            replay(&h, &sink, fact).await;
        }
    }
    assert_eq!(contents(&h).await, before, "a replay changed analytics");
    assert_eq!(recount(&h).await, vec![]);

    // The recount does see a rollup that is off.
    sqlx::query("UPDATE analytics.daily_call_summary SET busy = busy + 1")
        .execute(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(
        recount(&h).await.len(),
        1,
        "the recount missed a wrong rollup"
    );

    // A reader granted this tenant sees its rows; granted another, it sees none, even when
    // it claims the platform setting; and it cannot write.
    let role = format!("analytics_reader_{}", uuid::Uuid::new_v4().simple());
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'reader'"),
        format!("GRANT caller_analytics_reader TO {role}"),
    ] {
        sqlx::query(&sql).execute(&h.env.db.observer).await.unwrap();
    }
    let host_and_db = h.env.db.url.rsplit_once('@').expect("user in the url").1;
    let url = format!("postgres://{role}:reader@{host_and_db}");
    let reader = sqlx::PgPool::connect(&url).await.unwrap();
    let visible = |sql: &'static str| {
        let reader = reader.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&reader)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        visible("SELECT count(*) FROM analytics.call_facts").await,
        0,
        "granted nothing"
    );
    sqlx::query("INSERT INTO analytics.readers (role_name, tenant_id) VALUES ($1, $2)")
        .bind(&role)
        .bind(h.tenant.as_uuid())
        .execute(&h.env.db.observer)
        .await
        .unwrap();
    assert_eq!(
        visible("SELECT count(*) FROM analytics.call_facts").await,
        3
    );
    assert_eq!(
        visible("SELECT count(*) FROM analytics.client_health_dashboard").await,
        1
    );
    sqlx::query("UPDATE analytics.readers SET tenant_id = gen_random_uuid() WHERE role_name = $1")
        .bind(&role)
        .execute(&h.env.db.observer)
        .await
        .unwrap();
    let mut conn = reader.acquire().await.unwrap();
    sqlx::query("SET app.platform = 'on'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let leaked: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics.call_facts")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(leaked, 0, "the platform setting widened a reader's view");
    assert!(
        sqlx::query("DELETE FROM analytics.call_facts")
            .execute(&mut *conn)
            .await
            .is_err(),
        "a reader could write"
    );
    drop(conn);
    reader.close().await;
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&h.env.db.observer)
        .await
        .unwrap();
}
