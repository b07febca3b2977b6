//! Conversations end to end, with the Twilio and ElevenLabs simulators over a real NATS server
//! and a real database: a lead becomes a call, the answered call's media stream reaches the
//! gateway, the converse stage bridges it to the agent, the agent looks up slots and books,
//! and everything the call leaves behind is stored.

mod common;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use caller::bus::subjects::CALLS_STREAM;
use caller::providers::sim_elevenlabs::{self, ElevenLabsSimState, Script};
use caller::providers::sim_twilio::CallerStep;
use caller::recording::sealed;
use caller::settings::ConverseSettings;
use chrono::{TimeDelta, Utc};
use common::eventually;
use harness::{Harness, Options, daytime_zone, quick_calls};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const EL_KEY: &str = "sim-elevenlabs-key";
const EL_WEBHOOK_SECRET: &str = "wsec_conversations_test";
const AGENT: &str = "agent_booking";
const PHONE: &str = "+12015550123";

/// Tomorrow at 10:00 UTC, as the agent says it (the tenant's zone is UTC).
fn tomorrow_ten() -> String {
    format!("{}T10:00", (Utc::now() + TimeDelta::days(1)).date_naive())
}

fn agent_script() -> Script {
    Script::new()
        .say(
            "Hi Jane, this is Acme Dental. Would you like to book a check-up?",
            1_000,
        )
        .listen("Yes, what times do you have tomorrow?")
        .tool(
            "get_available_slots",
            json!({"from": (Utc::now() + TimeDelta::days(1)).date_naive().to_string(), "days": 1}),
            true,
        )
        .say("I have ten o'clock tomorrow. Shall I book it?", 800)
        .listen("Yes, ten works.")
        .tool(
            "book_appointment",
            json!({"start": tomorrow_ten(), "notes": "check-up"}),
            true,
        )
        .say("You are booked for ten tomorrow. Goodbye!", 600)
        .end()
}

/// The caller: waits for each of the agent's questions, answers, and stays on the line.
fn caller_script() -> Vec<CallerStep> {
    vec![
        CallerStep::WaitForAgentAudio { timeout_ms: 20_000 },
        CallerStep::Speak { ms: 500 },
        CallerStep::WaitForAgentAudio { timeout_ms: 20_000 },
        CallerStep::Speak { ms: 500 },
    ]
}

struct Conversation {
    state: String,
    end_reason: Option<String>,
    engine_ids: Vec<String>,
    provider_transcript: Option<Value>,
}

/// State, end reason, engine conversation ids, provider transcript.
type ConversationRow = (String, Option<String>, Vec<String>, Option<Value>);

async fn conversation(h: &Harness) -> Option<Conversation> {
    let row: Option<ConversationRow> = sqlx::query_as(
        "SELECT c.state, c.end_reason, c.engine_conversation_ids, c.provider_transcript \
         FROM conversations c JOIN calls k ON k.id = c.call_id WHERE k.to_number = $1",
    )
    .bind(PHONE)
    .fetch_optional(&h.env.db.observer)
    .await
    .unwrap();
    row.map(
        |(state, end_reason, engine_ids, provider_transcript)| Conversation {
            state,
            end_reason,
            engine_ids,
            provider_transcript,
        },
    )
}

#[tokio::test]
async fn the_agent_books_an_appointment_and_everything_is_stored() {
    // The ElevenLabs simulator's address must be in the tenant's configuration, and its
    // post-call webhook must name the tenant: bind first, serve once the tenant exists.
    let el_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let el_base = format!("http://{}", el_listener.local_addr().unwrap());
    let callbacks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", callbacks.local_addr().unwrap());
    let mut behaviour = quick_calls();
    behaviour.talk = Duration::from_secs(120);
    behaviour.caller_script = caller_script();
    let everyday: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| json!({"day": day, "open": "08:00", "close": "20:00"}))
        .collect();
    let h = Harness::start(Options {
        behaviour,
        gateway: true,
        listener: Some(callbacks),
        stages: vec!["rate_limit", "dial", "call_status", "converse", "post_call"],
        converse: ConverseSettings {
            scan_ms: 50,
            lease_ttl_ms: 2_000,
            heartbeat_ms: 500,
            ..ConverseSettings::default()
        },
        configuration: json!({
            "voice": "elevenlabs",
            "calendar": "static",
            "business_hours": everyday,
            "record_calls": true,
            "agent": {"agent_id": AGENT, "first_message": "Hi Jane, this is Acme Dental."},
            "providers": {"elevenlabs": {"base_url": el_base}},
        }),
        credentials: json!({
            "elevenlabs.api_key": {"value": EL_KEY},
            "elevenlabs.webhook_secret": {"value": EL_WEBHOOK_SECRET},
        }),
        ..Options::default()
    })
    .await;
    let el = ElevenLabsSimState::new(EL_KEY)
        .with_agent(AGENT, agent_script())
        .with_post_call_webhook(
            &format!("{base}/webhooks/{}/elevenlabs/post-call", h.tenant),
            EL_WEBHOOK_SECRET,
        );
    tokio::spawn({
        let router = sim_elevenlabs::router(el.clone());
        async move { axum::serve(el_listener, router).await }
    });

    h.lead(h.tenant, PHONE, daytime_zone()).await;
    eventually(WAIT, "the conversation ends", || async {
        conversation(&h).await.is_some_and(|c| c.state == "ended")
    })
    .await;
    let ended = conversation(&h).await.unwrap();
    assert_eq!(ended.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(
        ended.engine_ids.len(),
        1,
        "one engine session, no reconnects"
    );

    // The transcript, turn by turn, in order.
    let turns: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.role, t.text FROM conversation_turns t JOIN calls k ON k.id = \
         (SELECT call_id FROM conversations WHERE attempt_id = t.attempt_id) \
         WHERE k.to_number = $1 ORDER BY t.seq",
    )
    .bind(PHONE)
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    let roles: Vec<&str> = turns.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        ["agent", "user", "agent", "user", "agent"],
        "{turns:?}"
    );
    assert_eq!(turns[1].1, "Yes, what times do you have tomorrow?");
    assert_eq!(turns[3].1, "Yes, ten works.");

    // Both tools ran, succeeded and were recorded with their latency; the booking exists.
    let tools: Vec<(String, String, bool, i32)> = sqlx::query_as(
        "SELECT name, result, is_error, latency_ms FROM tool_invocations ORDER BY id",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    let names: Vec<&str> = tools.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(
        names,
        ["get_available_slots", "book_appointment"],
        "{tools:?}"
    );
    assert!(
        tools
            .iter()
            .all(|(_, _, is_error, latency)| !is_error && *latency >= 0),
        "{tools:?}"
    );
    let slots: Value = serde_json::from_str(&tools[0].1).unwrap();
    assert!(
        slots["slots"]
            .as_array()
            .is_some_and(|slots| slots.iter().any(|slot| {
                slot["start"]
                    .as_str()
                    .is_some_and(|start| start.starts_with(&tomorrow_ten()))
            })),
        "{slots}"
    );
    let booked: Value = serde_json::from_str(&tools[1].1).unwrap();
    assert_eq!(booked["booked"], true, "{booked}");
    let agent_saw: Vec<String> = el
        .conversations()
        .iter()
        .flat_map(|c| c.tool_results.iter().map(|r| r.result.clone()))
        .collect();
    assert_eq!(
        agent_saw,
        [tools[0].1.clone(), tools[1].1.clone()],
        "the agent got the results"
    );
    let appointment: (chrono::DateTime<Utc>, String) =
        sqlx::query_as("SELECT starts_at, phone FROM appointments WHERE status = 'booked'")
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
    assert_eq!(
        appointment.0.format("%Y-%m-%dT%H:%M").to_string(),
        tomorrow_ten()
    );
    assert_eq!(appointment.1, PHONE);

    // The recording: complete, and once unsealed a stereo WAV with the caller on the left
    // and the agent on the right.
    eventually(WAIT, "the recording is complete", || async {
        sqlx::query_scalar::<_, String>("SELECT state FROM call_recordings")
            .fetch_optional(&h.env.db.observer)
            .await
            .unwrap()
            .is_some_and(|state| state == "complete")
    })
    .await;
    let (location, key_id, tenant, call, attempt): (
        String,
        String,
        uuid::Uuid,
        uuid::Uuid,
        uuid::Uuid,
    ) = sqlx::query_as(
        "SELECT location, key_id, tenant_id, call_id, attempt_id FROM call_recordings",
    )
    .fetch_one(&h.env.db.observer)
    .await
    .unwrap();
    let context = caller::media::gateway::recording_context(
        caller::ids::TenantId::from_uuid(tenant),
        caller::ids::CallId::from_uuid(call),
        caller::ids::AttemptId::from_uuid(attempt),
    );
    let wav = sealed::open(
        &h.recordings.path().join(&location),
        |id| (id == key_id).then_some(harness::MASTER_KEY),
        &context,
    )
    .unwrap();
    let (left, right) = channel_energy(&wav);
    assert!(
        left > 0 && right > 0,
        "both channels carry audio: {left} {right}"
    );

    // conversation.ended is on the stream, and the provider's post-call report was merged.
    let subject = format!("calls.conversation_ended.{}", h.tenant);
    let js = h.env.bus.jetstream().clone();
    eventually(WAIT, "conversation.ended is published", || {
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            let stream = js.get_stream(CALLS_STREAM).await.unwrap();
            stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .is_ok()
        }
    })
    .await;
    eventually(WAIT, "the post-call report is merged", || async {
        conversation(&h)
            .await
            .is_some_and(|c| c.provider_transcript.is_some())
    })
    .await;

    // Every frame our code sent to Twilio and to ElevenLabs matches the official schemas.
    let twilio_schema =
        caller::schema_check::vendor_schema("twilio.media-streams.messages.schema.json");
    let sessions = h.sim.media_sessions();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0].raw_received.is_empty());
    for frame in &sessions[0].raw_received {
        let wire: Value = serde_json::from_str(frame).unwrap();
        if let Err(errors) =
            caller::schema_check::validate_at(&twilio_schema, "#/$defs/ToTwilio", &wire)
        {
            panic!(
                "frame to Twilio {frame} breaks the schema:\n{}",
                errors.join("\n")
            );
        }
    }
    let asyncapi = caller::schema_check::elevenlabs_asyncapi();
    let conversations = el.conversations();
    assert_eq!(conversations.len(), 1);
    assert!(conversations[0].client_frames.len() > 10);
    for frame in &conversations[0].client_frames {
        let wire: Value = serde_json::from_str(frame).unwrap();
        if let Err(errors) = caller::schema_check::validate_at(&asyncapi, "#/x-client", &wire) {
            panic!(
                "frame to ElevenLabs {frame} breaks the AsyncAPI:\n{}",
                errors.join("\n")
            );
        }
    }
    assert!(conversations[0].wrong_pongs().is_empty());
    h.finish().await;
}

/// Sums of absolute sample values of the left and right channels of a 16-bit stereo WAV.
fn channel_energy(wav: &[u8]) -> (u64, u64) {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    let data = &wav[44..];
    let mut energy = (0_u64, 0_u64);
    for frame in data.chunks_exact(4) {
        let left = i16::from_le_bytes([frame[0], frame[1]]);
        let right = i16::from_le_bytes([frame[2], frame[3]]);
        energy.0 += u64::from(left.unsigned_abs());
        energy.1 += u64::from(right.unsigned_abs());
    }
    energy
}
