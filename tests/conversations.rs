//! Conversations end to end, with the Twilio and ElevenLabs simulators over a real NATS server
//! and a real database: a lead becomes a call, the answered call's media stream reaches the
//! gateway, the converse stage bridges it to the agent, the agent looks up slots and books,
//! and everything the call leaves behind is stored.

mod common;
#[path = "common/conversations.rs"]
mod conversations;
#[path = "common/calls.rs"]
mod harness;

use std::time::Duration;

use caller::bus::subjects::CALLS_STREAM;
use caller::providers::sim_elevenlabs::Script;
use caller::providers::sim_twilio::CallerStep;
use caller::recording::sealed;
use chrono::{TimeDelta, Utc};
use common::eventually;
use conversations::{Setup, conversation};
use harness::daytime_zone;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PHONE: &str = "+12015550123";

/// Tomorrow at 10:00 UTC. The agent reads times in the lead's zone (chosen to be in daytime,
/// so it varies with the hour the test runs): the script names instants with their offset.
fn tomorrow_ten_utc() -> chrono::DateTime<Utc> {
    (Utc::now() + TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc()
}

fn tomorrow_ten() -> String {
    tomorrow_ten_utc().to_rfc3339()
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
            json!({"from": (tomorrow_ten_utc() - TimeDelta::hours(1)).to_rfc3339(), "days": 1}),
            true,
        )
        .say("I have ten o'clock tomorrow. Shall I book it?", 800)
        .listen("Yes, ten works.")
        .tool(
            "book_appointment",
            json!({"start": tomorrow_ten(), "notes": "check-up"}),
            true,
        )
        // No one to transfer to: the agent hears a failure it can speak about.
        .tool("transfer_to_human", json!({"reason": "billing"}), true)
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

#[tokio::test]
async fn the_agent_books_an_appointment_and_everything_is_stored() {
    let (h, el) = conversations::start(Setup {
        script: agent_script(),
        caller: caller_script(),
        stages: vec!["rate_limit", "dial", "call_status", "converse", "post_call"],
        converse: conversations::quick_leases(),
        first_message: Some("Hi Jane, this is Acme Dental."),
    })
    .await;
    h.lead(h.tenant, PHONE, daytime_zone()).await;
    conversations::ended(&h, PHONE).await;
    let ended = conversation(&h, PHONE).await.unwrap();
    assert_eq!(ended.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(
        ended.engine_ids.len(),
        1,
        "one engine session, no reconnects"
    );

    // The transcript, turn by turn, in order.
    let turns = conversations::turns(&h, PHONE).await;
    let roles: Vec<&str> = turns.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        ["agent", "user", "agent", "user", "agent"],
        "{turns:?}"
    );
    assert_eq!(turns[1].1, "Yes, what times do you have tomorrow?");
    assert_eq!(turns[3].1, "Yes, ten works.");

    // Every tool ran and was recorded with its latency; the booking exists.
    let tools: Vec<(String, String, bool, i32)> = sqlx::query_as(
        "SELECT name, result, is_error, latency_ms FROM tool_invocations ORDER BY id",
    )
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    let names: Vec<&str> = tools.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "get_available_slots",
            "book_appointment",
            "transfer_to_human"
        ],
        "{tools:?}"
    );
    let errors: Vec<bool> = tools.iter().map(|(_, _, is_error, _)| *is_error).collect();
    assert_eq!(errors, [false, false, true], "{tools:?}");
    assert!(tools[2].1.contains("no one is available"), "{tools:?}");
    assert!(tools.iter().all(|(.., latency)| *latency >= 0));
    let slots: Value = serde_json::from_str(&tools[0].1).unwrap();
    assert!(
        slots["slots"]
            .as_array()
            .is_some_and(|slots| slots.iter().any(|slot| {
                slot["start"].as_str().is_some_and(|start| {
                    chrono::DateTime::parse_from_rfc3339(start)
                        .is_ok_and(|start| start == tomorrow_ten_utc())
                })
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
        [tools[0].1.clone(), tools[1].1.clone(), tools[2].1.clone()],
        "the agent got the results"
    );
    let appointment: (chrono::DateTime<Utc>, String) =
        sqlx::query_as("SELECT starts_at, phone FROM appointments WHERE status = 'booked'")
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
    assert_eq!(appointment.0, tomorrow_ten_utc());
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
        conversation(&h, PHONE)
            .await
            .is_some_and(|c| c.provider_report_merged)
    })
    .await;

    // The management API shows the conversation with the call.
    let call_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM calls WHERE to_number = $1")
        .bind(PHONE)
        .fetch_one(&h.env.db.observer)
        .await
        .unwrap();
    let detail: Value = caller::providers::http::client()
        .get(format!(
            "{}/v1/clients/{}/calls/{call_id}",
            h.base, h.tenant
        ))
        .bearer_auth(&h.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = &detail["conversations"][0];
    assert_eq!(shown["end_reason"], "agent_ended", "{detail}");
    assert_eq!(shown["turns"].as_array().map(Vec::len), Some(5));
    assert_eq!(shown["tool_calls"].as_array().map(Vec::len), Some(3));
    assert_eq!(shown["recording"]["state"], "complete");
    assert!(
        shown["recording"].get("location").is_none(),
        "no storage path in the API"
    );

    // Every frame our code sent to Twilio and to ElevenLabs matches the official schemas.
    let sessions = h.sim.media_sessions();
    assert_eq!(sessions.len(), 1);
    caller::schema_check::assert_valid_to_twilio(&sessions[0].raw_received);
    let conversations = el.conversations();
    assert_eq!(conversations.len(), 1);
    assert!(conversations[0].client_frames.len() > 10);
    caller::schema_check::assert_valid_to_elevenlabs(&conversations[0].client_frames);
    assert!(conversations[0].wrong_pongs().is_empty());
    h.finish().await;
}

#[tokio::test]
async fn barge_in_clears_what_twilio_is_playing() {
    let phone = "+12015550124";
    let (h, el) = conversations::start(Setup {
        // A long answer the caller talks over, then a short one after listening.
        script: Script::new()
            .say(
                "Let me tell you everything about our practice and its many services.",
                8_000,
            )
            .listen("Sorry, can I just book a cleaning?")
            .say("Of course.", 500)
            .end(),
        caller: vec![CallerStep::SpeakOverAgent { ms: 600 }],
        stages: vec!["rate_limit", "dial", "call_status", "converse"],
        converse: conversations::quick_leases(),
        first_message: None,
    })
    .await;
    h.lead(h.tenant, phone, daytime_zone()).await;
    conversations::ended(&h, phone).await;

    let sessions = h.sim.media_sessions();
    let interrupted = el.conversations();
    let interruption = interrupted[0].interruptions.first().copied();
    let clear = sessions[0].clears_at.first().copied();
    let (Some(interruption), Some(clear)) = (interruption, clear) else {
        panic!("the agent was interrupted and Twilio cleared: {interrupted:?} {sessions:?}");
    };
    // Speed is measured (loadtest `media` bench, docs/benchmarks.md), not asserted; shown here.
    println!(
        "interruption → clear at Twilio: {:?}",
        clear.saturating_duration_since(interruption)
    );
    // The clear empties Twilio's buffer: nothing the agent queued before the interruption
    // plays after it. The 8 s answer was cut short, and the agent heard the caller out.
    let agent_audio_ms = sessions[0].agent_audio.len() / 8;
    assert!(
        agent_audio_ms < 8_000,
        "the long answer was cut: {agent_audio_ms} ms played"
    );
    let turns = conversations::turns(&h, phone).await;
    let roles: Vec<&str> = turns.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(roles, ["agent", "user", "agent"], "{turns:?}");
    assert_eq!(turns[1].1, "Sorry, can I just book a cleaning?");
    caller::schema_check::assert_valid_to_twilio(&sessions[0].raw_received);
    h.finish().await;
}

#[tokio::test]
async fn a_dropped_engine_connection_is_reopened_with_the_conversation_so_far() {
    let phone = "+12015550126";
    let (h, el) = conversations::start(Setup {
        script: Script::new()
            .say("Hello, this is Acme Dental. How can I help?", 600)
            .listen("I would like to move my appointment.")
            .drop_connection()
            .say("Let me find another time for you.", 600)
            .end(),
        caller: vec![
            CallerStep::WaitForAgentAudio { timeout_ms: 20_000 },
            CallerStep::Speak { ms: 500 },
        ],
        stages: vec!["rate_limit", "dial", "call_status", "converse"],
        converse: conversations::quick_leases(),
        first_message: None,
    })
    .await;
    h.lead(h.tenant, phone, daytime_zone()).await;
    conversations::ended(&h, phone).await;
    let ended = conversation(&h, phone).await.unwrap();
    assert_eq!(ended.end_reason.as_deref(), Some("agent_ended"));
    assert_eq!(
        (ended.epoch, ended.resumes),
        (1, 0),
        "the same worker reconnected"
    );
    assert_eq!(ended.engine_ids.len(), 2, "a second engine session");
    let texts: Vec<String> = conversations::turns(&h, phone)
        .await
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(
        texts,
        [
            "Hello, this is Acme Dental. How can I help?",
            "I would like to move my appointment.",
            caller::settings::ConverseSettings::default()
                .resume_line
                .as_str(),
            "Let me find another time for you.",
        ]
    );
    let engine_sessions = el.conversations();
    assert_eq!(
        engine_sessions[0].ended,
        Some(caller::providers::sim_elevenlabs::SimEnd::Disconnected)
    );
    let context =
        engine_sessions[1].initiation.as_ref().unwrap()["dynamic_variables"]["transcript_so_far"]
            .as_str()
            .unwrap()
            .to_owned();
    assert!(context.contains("move my appointment"), "{context}");
    assert_eq!(
        h.sim.media_sessions().len(),
        1,
        "the call never noticed but for a pause"
    );
    h.finish().await;
}

#[tokio::test]
async fn an_engine_that_refuses_the_call_gets_a_spoken_goodbye_and_a_hang_up() {
    let phone = "+12015550127";
    let (h, _el) = conversations::start(Setup {
        script: Script::new().say("never said", 100).end(),
        caller: Vec::new(),
        stages: vec!["rate_limit", "dial", "call_status", "converse"],
        converse: conversations::quick_leases(),
        first_message: None,
    })
    .await;
    // The tenant's agent is not the one the engine knows.
    sqlx::query(
        "UPDATE client_configurations SET settings = jsonb_set(settings, '{agent,agent_id}', '\"agent_gone\"')",
    )
    .execute(&h.env.db.observer)
    .await
    .unwrap();
    h.runtime.directory.clear();
    h.lead(h.tenant, phone, daytime_zone()).await;
    conversations::ended(&h, phone).await;
    let ended = conversation(&h, phone).await.unwrap();
    assert_eq!(ended.end_reason.as_deref(), Some("engine_failed"));
    let calls = h.sim.calls();
    assert_eq!(calls.len(), 1);
    let goodbye = calls[0].redirects.first().cloned().unwrap_or_default();
    assert!(
        goodbye.contains(&caller::settings::ConverseSettings::default().goodbye)
            && goodbye.contains("<Hangup/>"),
        "{goodbye}"
    );
    eventually(WAIT, "the call is over", || async {
        h.call_of(phone)
            .await
            .is_some_and(|(state, _)| state == "completed")
    })
    .await;
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

/// A scheduled job: kind, state, due time, earliest time, reason.
type JobRow = (
    String,
    String,
    chrono::DateTime<Utc>,
    chrono::DateTime<Utc>,
    String,
);

#[tokio::test]
async fn a_callback_the_lead_asks_for_is_a_scheduled_job_in_its_windows() {
    use chrono::TimeZone as _;

    let phone = "+12015550131";
    let zone = daytime_zone();
    // Tomorrow at 15:00 on the lead's clock.
    let tomorrow = (Utc::now().with_timezone(&zone) + TimeDelta::days(1)).date_naive();
    let requested = zone
        .from_local_datetime(&tomorrow.and_hms_opt(15, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc);
    let (h, _el) = conversations::start(Setup {
        script: Script::new()
            .say("Hi, is now a good time?", 500)
            .listen("Not really, call me back tomorrow at three.")
            .tool(
                "schedule_callback",
                json!({"at": requested.to_rfc3339()}),
                true,
            )
            .say("Will do, talk tomorrow.", 300)
            .end(),
        caller: vec![
            CallerStep::WaitForAgentAudio { timeout_ms: 20_000 },
            CallerStep::Speak { ms: 500 },
        ],
        stages: vec!["rate_limit", "dial", "call_status", "converse"],
        converse: conversations::quick_leases(),
        first_message: None,
    })
    .await;
    h.lead(h.tenant, phone, zone).await;
    conversations::ended(&h, phone).await;
    let jobs: Vec<JobRow> = sqlx::query_as(
        "SELECT kind, state, due_at, earliest_at, reason FROM scheduled_jobs
              WHERE to_number = $1",
    )
    .bind(phone)
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (kind, state, due_at, earliest_at, reason) = &jobs[0];
    assert_eq!(kind, "callback");
    assert_eq!(state, "pending");
    assert_eq!(*earliest_at, requested);
    // 15:00 is inside the legal hours: due as asked.
    assert_eq!(*due_at, requested);
    assert_eq!(reason, "callback requested by the lead");
    let result: String =
        sqlx::query_scalar("SELECT result FROM tool_invocations WHERE name = 'schedule_callback'")
            .fetch_one(&h.env.db.observer)
            .await
            .unwrap();
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["scheduled"], true);
    assert_eq!(result["moved_into_calling_hours"], false);
    h.finish().await;
}
