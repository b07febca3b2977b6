//! Conversations under test: the calls harness with the real media gateway, a tenant whose
//! voice agent is the ElevenLabs simulator (static calendar, open every day, recordings on),
//! and the simulator serving once the tenant exists (its post-call webhook names the tenant).

#![allow(unreachable_pub)] // shared by test files through `#[path]`
#![allow(dead_code)] // each test file uses a part

use std::time::Duration;

use caller::providers::sim_elevenlabs::{self, ElevenLabsSimState, Script};
use caller::providers::sim_twilio::CallerStep;
use caller::settings::ConverseSettings;
use serde_json::{Value, json};

use crate::harness::{Harness, Options, quick_calls};

/// The tenant's ElevenLabs API key.
pub const EL_KEY: &str = "sim-elevenlabs-key";
/// The tenant's post-call webhook secret.
pub const EL_WEBHOOK_SECRET: &str = "wsec_conversations_test";
/// The agent.
pub const AGENT: &str = "agent_booking";

/// What differs between conversation tests.
pub struct Setup {
    /// The agent's script.
    pub script: Script,
    /// The caller's script.
    pub caller: Vec<CallerStep>,
    /// Stages run in this process.
    pub stages: Vec<&'static str>,
    /// Converse settings of in-process stages.
    pub converse: ConverseSettings,
    /// The agent's configured greeting.
    pub first_message: Option<&'static str>,
}

/// Fast leases, so take-overs happen within seconds.
pub fn quick_leases() -> ConverseSettings {
    ConverseSettings {
        scan_ms: 50,
        lease_ttl_ms: 2_000,
        heartbeat_ms: 500,
        ..ConverseSettings::default()
    }
}

/// Starts the harness and the ElevenLabs simulator.
pub async fn start(setup: Setup) -> (Harness, ElevenLabsSimState) {
    start_with(setup, json!({}), json!({})).await
}

/// [`start`], with more `providers` settings and credentials for the tenant (e.g. an LLM
/// summarizer's).
pub async fn start_with(
    setup: Setup,
    providers: Value,
    credentials: Value,
) -> (Harness, ElevenLabsSimState) {
    start_tuned(setup, providers, credentials, Tuning::default()).await
}

/// More differences, for the few tests that need them.
#[derive(Default)]
#[allow(dead_code)] // each test binary compiles this module; not all use every field
pub struct Tuning {
    /// Simulated outcomes of particular callees (the rest answer).
    pub by_callee: std::collections::BTreeMap<String, caller::providers::sim_twilio::SimOutcome>,
    /// Merged into the tenant's configuration.
    pub configuration: Value,
}

/// [`start_with`], with [`Tuning`].
#[allow(dead_code)]
pub async fn start_tuned(
    setup: Setup,
    providers: Value,
    credentials: Value,
    tuning: Tuning,
) -> (Harness, ElevenLabsSimState) {
    let el_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let el_base = format!("http://{}", el_listener.local_addr().unwrap());
    let callbacks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", callbacks.local_addr().unwrap());
    let mut behaviour = quick_calls();
    behaviour.talk = Duration::from_secs(120);
    behaviour.caller_script = setup.caller;
    behaviour.by_callee = tuning.by_callee;
    // Open around the clock (the tenant's zone is UTC): the tests run at any hour, and the
    // callee's zone is chosen to be in daytime for the legal calling window.
    let everyday: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|day| json!({"day": day, "open": "00:00", "close": "23:59"}))
        .collect();
    let mut agent = json!({"agent_id": AGENT});
    if let Some(first_message) = setup.first_message {
        agent["first_message"] = json!(first_message);
    }
    let mut all_providers = json!({"elevenlabs": {"base_url": el_base}});
    let mut all_credentials = json!({
        "elevenlabs.api_key": {"value": EL_KEY},
        "elevenlabs.webhook_secret": {"value": EL_WEBHOOK_SECRET},
    });
    for (all, extra) in [
        (&mut all_providers, providers),
        (&mut all_credentials, credentials),
    ] {
        if let (Some(all), Value::Object(extra)) = (all.as_object_mut(), extra) {
            all.extend(extra);
        }
    }
    let h = Harness::start(Options {
        behaviour,
        gateway: true,
        listener: Some(callbacks),
        stages: setup.stages,
        converse: setup.converse,
        configuration: merged(
            json!({
                "voice": "elevenlabs",
                "calendar": "static",
                "business_hours": everyday,
                "record_calls": true,
                "agent": agent,
                "providers": all_providers,
            }),
            tuning.configuration,
        ),
        credentials: all_credentials,
        ..Options::default()
    })
    .await;
    let el = ElevenLabsSimState::new(EL_KEY)
        .with_agent(AGENT, setup.script)
        .with_post_call_webhook(
            &format!("{base}/webhooks/{}/elevenlabs/post-call", h.tenant),
            EL_WEBHOOK_SECRET,
        );
    tokio::spawn({
        let router = sim_elevenlabs::router(el.clone());
        async move { axum::serve(el_listener, router).await }
    });
    (h, el)
}

/// A caller who waits for the agent, then speaks, `times` times (summarize and analytics
/// tests: a short booking conversation).
#[allow(dead_code)]
pub fn caller_answers(times: usize, speak_ms: u64) -> Vec<CallerStep> {
    (0..times)
        .flat_map(|_| {
            [
                CallerStep::WaitForAgentAudio { timeout_ms: 20_000 },
                CallerStep::Speak { ms: speak_ms },
            ]
        })
        .collect()
}

/// `base` with the top-level keys of `extra` (an object) set over it.
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// The stored transcript of the call to `phone`: (role, text) in order.
pub async fn turns(h: &Harness, phone: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT t.role, t.text FROM conversation_turns t \
         JOIN conversations c ON c.attempt_id = t.attempt_id \
         JOIN calls k ON k.id = c.call_id WHERE k.to_number = $1 ORDER BY t.seq",
    )
    .bind(phone)
    .fetch_all(&h.env.db.observer)
    .await
    .unwrap()
}

/// The conversation of the call to `phone`: state, end reason, engine ids, epoch, resumes,
/// owner and whether the provider's transcript was merged.
pub async fn conversation(h: &Harness, phone: &str) -> Option<Conversation> {
    sqlx::query_as(
        "SELECT c.state, c.end_reason, c.engine_conversation_ids AS engine_ids, c.epoch, \
                c.resumes, c.owner, c.provider_transcript IS NOT NULL AS provider_report_merged \
         FROM conversations c JOIN calls k ON k.id = c.call_id WHERE k.to_number = $1",
    )
    .bind(phone)
    .fetch_optional(&h.env.db.observer)
    .await
    .unwrap()
}

/// Waits (up to a minute) until the conversation of the call to `phone` has ended.
pub async fn ended(h: &Harness, phone: &str) -> Conversation {
    crate::common::eventually(Duration::from_secs(60), "the conversation ends", || async {
        conversation(h, phone)
            .await
            .is_some_and(|c| c.state == "ended")
    })
    .await;
    conversation(h, phone).await.unwrap()
}

/// A conversation as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Conversation {
    pub state: String,
    pub end_reason: Option<String>,
    pub engine_ids: Vec<String>,
    pub epoch: i32,
    pub resumes: i32,
    pub owner: Option<String>,
    pub provider_report_merged: bool,
}
