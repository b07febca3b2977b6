//! The summarize stage end to end, with the Twilio and ElevenLabs simulators over a real NATS
//! server and a real database: a conversation ends, the provider's post-call report is
//! merged, and the summary, outcome and sentiment are stored once and announced.

mod common;
#[path = "common/conversations.rs"]
mod conversations;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use caller::bus::envelope::Envelope;
use caller::bus::subjects::CALLS_STREAM;
use caller::events::conversation::{ConversationEnded, ConversationSummarized};
use caller::ids::EventId;
use caller::providers::sim_elevenlabs::Script;
use caller::providers::sim_openai::{self, Fault, OpenAiSimState};
use chrono::{TimeDelta, Utc};
use common::eventually;
use conversations::Setup;
use harness::{Harness, daytime_zone};
use serde_json::{Value, json};

/// The summary waits up to a minute for the post-call report; it comes within seconds.
const WAIT: Duration = Duration::from_secs(90);
const PHONE: &str = "+12015550123";
const STAGES: [&str; 6] = [
    "rate_limit",
    "dial",
    "call_status",
    "converse",
    "post_call",
    "summarize",
];

fn tomorrow_ten() -> String {
    (Utc::now() + TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339()
}

fn booking_agent() -> Script {
    Script::new()
        .say(
            "Hi Jane, this is Acme Dental. Would you like to book a check-up?",
            1_000,
        )
        .listen("Yes, what times do you have tomorrow?")
        .say("I have ten o'clock tomorrow. Shall I book it?", 800)
        .listen("Yes, ten works, great.")
        .tool(
            "book_appointment",
            json!({"start": tomorrow_ten(), "notes": "check-up"}),
            true,
        )
        .say("You are booked for ten tomorrow. Goodbye!", 600)
        .end()
}

fn declined_agent() -> Script {
    Script::new()
        .say(
            "Hi Jane, this is Acme Dental. Would you like to book a check-up?",
            1_000,
        )
        .listen("No, I'm not interested, thank you.")
        .say("I understand. Have a good day, goodbye!", 600)
        .end()
}

/// A stored summary, as compared across a replay.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Stored {
    summary: String,
    own_summary: String,
    provider_summary: Option<String>,
    source: String,
    outcome: String,
    sentiment: String,
    sentiment_score: f32,
    call_successful: Option<String>,
    key_points: Vec<String>,
    updated_at: chrono::DateTime<Utc>,
}

async fn stored(h: &Harness) -> Vec<Stored> {
    sqlx::query_as(
        "SELECT summary, own_summary, provider_summary, source, outcome, sentiment, \
                sentiment_score, call_successful, key_points, updated_at \
         FROM conversation_summaries",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap()
}

/// Every `conversation.summarized` on the stream, in order.
async fn summarized(h: &Harness) -> Vec<Envelope<ConversationSummarized>> {
    let js = h.env.bus.jetstream().clone();
    let mut stream = js.get_stream(CALLS_STREAM).await.unwrap();
    let subject = format!("calls.conversation_summarized.{}", h.tenant);
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut found = Vec::new();
    for sequence in 1..=last {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        if message.subject.as_str() == subject {
            found.push(Envelope::decode(Some(&message.headers), &message.payload).unwrap());
        }
    }
    found
}

async fn run(agent: Script, answers: usize) -> Harness {
    run_with(agent, answers, json!({}), json!({})).await
}

/// [`run`] for a tenant with more `providers` settings and credentials.
async fn run_with(agent: Script, answers: usize, providers: Value, credentials: Value) -> Harness {
    let (h, _el) = conversations::start_with(
        Setup {
            script: agent,
            caller: conversations::caller_answers(answers, 500),
            stages: STAGES.to_vec(),
            converse: conversations::quick_leases(),
            first_message: Some("Hi Jane, this is Acme Dental."),
        },
        providers,
        credentials,
    )
    .await;
    h.lead(h.tenant, PHONE, daytime_zone()).await;
    conversations::ended(&h, PHONE).await;
    eventually(WAIT, "the summary is stored", || async {
        !stored(&h).await.is_empty()
    })
    .await;
    h
}

#[tokio::test]
async fn a_booked_call_is_summarized_once_with_the_providers_analysis() {
    let h = run(booking_agent(), 2).await;
    let rows = stored(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.outcome, "booked", "{row:?}");
    assert_eq!(row.sentiment, "positive", "{row:?}");
    assert!(row.sentiment_score > 0.0, "{row:?}");
    // The provider's report came: its summary is shown, ours is kept.
    let provider = row
        .provider_summary
        .as_deref()
        .expect("the provider's summary");
    assert_eq!(row.summary, provider);
    assert_eq!(row.call_successful.as_deref(), Some("success"));
    assert_eq!(row.source, "extractive");
    assert!(row.own_summary.contains("ten o'clock tomorrow"), "{row:?}");
    assert!(!row.key_points.is_empty());

    // The fact is announced once.
    eventually(WAIT, "conversation.summarized is published", || async {
        !summarized(&h).await.is_empty()
    })
    .await;
    let events = summarized(&h).await;
    assert_eq!(events.len(), 1);
    let event = &events[0].payload;
    assert_eq!(event.outcome, caller::summary::Outcome::Booked);
    assert_eq!(event.summary, row.summary);
    assert!(event.provider_analysis);

    // Replaying conversation.ended (a new event id, as a worker's republish would have)
    // summarizes again and changes nothing.
    let js = h.env.bus.jetstream().clone();
    let stream = js.get_stream(CALLS_STREAM).await.unwrap();
    let ended = stream
        .get_last_raw_message_by_subject(&format!("calls.conversation_ended.{}", h.tenant))
        .await
        .unwrap();
    let mut replay: Envelope<ConversationEnded> =
        Envelope::decode(Some(&ended.headers), &ended.payload).unwrap();
    replay.meta.event_id = EventId::new_v7();
    h.env
        .bus
        .publish_all(&[replay.to_message().unwrap()])
        .await
        .unwrap();
    eventually(WAIT, "the replay is summarized", || async {
        summarized(&h).await.len() == 2
    })
    .await;
    assert_eq!(stored(&h).await, rows, "the replay changed nothing");
    let events = summarized(&h).await;
    assert_eq!(events[1].payload, events[0].payload);
    assert_eq!(events[1].meta.causation_id, Some(replay.meta.event_id));
    h.finish().await;
}

#[tokio::test]
async fn a_caller_who_is_not_interested_is_not_interested() {
    let h = run(declined_agent(), 1).await;
    let rows = stored(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.outcome, "not_interested", "{row:?}");
    assert!(
        row.sentiment == "negative" || row.sentiment == "neutral",
        "{row:?}"
    );
    assert!(row.own_summary.contains("not interested"), "{row:?}");
    h.finish().await;
}

/// Starts the OpenAI simulator; returns it and the tenant's `providers` and credentials for it.
async fn llm_tenant() -> (OpenAiSimState, Value, Value) {
    let sim = OpenAiSimState::default();
    let (addr, _task) = sim_openai::spawn(sim.clone()).await;
    let providers = json!({
        "openai": OpenAiSimState::settings(&format!("http://{addr}"), "gpt-sim"),
    });
    let credentials = json!({"openai.api_key": {"value": sim.key()}});
    (sim, providers, credentials)
}

#[tokio::test]
async fn a_tenant_with_an_llm_gets_the_models_summary() {
    let (sim, providers, credentials) = llm_tenant().await;
    sim.set_answer("Jane is not interested in a check-up.");
    let h = run_with(declined_agent(), 1, providers, credentials).await;
    let rows = stored(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.source, "llm", "{row:?}");
    assert_eq!(row.own_summary, "Jane is not interested in a check-up.");
    // The outcome is still ours, from the rules, whoever wrote the text.
    assert_eq!(row.outcome, "not_interested", "{row:?}");
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].authorized);
    let transcript = requests[0].body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        transcript.contains("Lead: No, I'm not interested"),
        "{transcript}"
    );
    eventually(WAIT, "conversation.summarized is published", || async {
        !summarized(&h).await.is_empty()
    })
    .await;
    assert_eq!(
        summarized(&h).await[0].payload.source,
        caller::summary::Source::Llm
    );
    h.finish().await;
}

#[tokio::test]
async fn a_failing_llm_falls_back_to_the_extractive_summary() {
    let (sim, providers, credentials) = llm_tenant().await;
    sim.push_fault(Fault::ServerError);
    let h = run_with(declined_agent(), 1, providers, credentials).await;
    let rows = stored(&h).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.source, "extractive", "{row:?}");
    assert!(row.own_summary.contains("not interested"), "{row:?}");
    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [500]);
    h.finish().await;
}
