//! The conformance suite of [`VoiceEngine`]: checks every implementation must pass, each an
//! `async fn` over a `&dyn VoiceEngine` and a [`Harness`] naming the agents to talk to.
//!
//! Each [`Scenario`] needs an agent behaving as its doc says. [`sim_state`] builds an
//! ElevenLabs simulator with all of them, and [`SimHarness`] names them and reads the
//! simulator's record; a real vendor's sandbox would need agents configured the same way and
//! a harness whose [`Harness::observe`] returns `None` (the checks then skip what only the
//! far side can see).
//!
//! Timeouts here only bound a failing check; no check asserts how long anything took.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;

use super::engine::{
    AgentOverrides, EndReason, EngineCommand, EngineError, EngineEvent, EngineSession, PriorTurn,
    StartRequest, TurnRole, VoiceEngine,
};
use crate::ids::{AttemptId, CallId, TenantId};
use crate::providers::sim_elevenlabs::{ElevenLabsSimState, Script, audio};

/// What the greeting agent says first.
pub const GREETING: &str = "Hello from the conformance agent.";
/// The client tool the tool and resume agents call.
pub const TOOL_NAME: &str = "get_available_slots";
/// What the tool agent says once it has the tool's result.
pub const AFTER_TOOL: &str = "Thanks, I have the slots.";
/// What the resume agent says before its tool call.
pub const RESUME_BEFORE: &str = "Before the tool.";
/// What the resume agent says after its tool call.
pub const RESUME_AFTER: &str = "After the tool.";

/// How long any one expected event may take before a check fails.
const WITHIN: Duration = Duration::from_secs(10);

/// An agent behaviour the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Says [`GREETING`] with audio, then listens.
    Greeting,
    /// Calls [`TOOL_NAME`] and waits for the result, says [`AFTER_TOOL`], then ends.
    ToolCall,
    /// Says something with at least 5 s of audio, then listens.
    BargeIn,
    /// Stays silent for several seconds (pinging meanwhile).
    Pings,
    /// Says something short, then ends the conversation.
    AgentEnds,
    /// Says [`RESUME_BEFORE`], calls [`TOOL_NAME`] and waits, says [`RESUME_AFTER`], ends.
    Resume,
    /// Sends caller audio straight back.
    Echo,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::Greeting,
        Scenario::ToolCall,
        Scenario::BargeIn,
        Scenario::Pings,
        Scenario::AgentEnds,
        Scenario::Resume,
        Scenario::Echo,
    ];

    /// The agent id the simulator uses for this scenario.
    #[must_use]
    pub const fn sim_agent_id(self) -> &'static str {
        match self {
            Scenario::Greeting => "agent_conf_greeting",
            Scenario::ToolCall => "agent_conf_tool",
            Scenario::BargeIn => "agent_conf_barge_in",
            Scenario::Pings => "agent_conf_pings",
            Scenario::AgentEnds => "agent_conf_ends",
            Scenario::Resume => "agent_conf_resume",
            Scenario::Echo => "agent_conf_echo",
        }
    }
}

/// What the engine's far side saw of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `(tool_call_id, result)` of every tool result received.
    pub tool_results: Vec<(String, String)>,
    /// Pongs received whose `event_id` matched a ping.
    pub pongs: usize,
    /// Pongs received whose `event_id` matched no waiting ping.
    pub wrong_pongs: usize,
}

/// What the checks need besides the engine.
pub trait Harness: Send + Sync {
    /// Returns the id of an agent behaving as `scenario` says.
    fn agent_id(&self, scenario: Scenario) -> String;
    /// Returns what the far side saw of `conversation_id`, or `None` when it cannot tell
    /// (a real vendor).
    fn observe(&self, conversation_id: &str) -> Option<Observation>;
}

/// Returns an ElevenLabs simulator accepting `api_key` with an agent for every [`Scenario`]
/// (named by [`Scenario::sim_agent_id`]), pinging every 100 ms.
#[must_use]
pub fn sim_state(api_key: &str) -> ElevenLabsSimState {
    let scripts = [
        (
            Scenario::Greeting,
            Script::new().say(GREETING, 300).listen("Hi."),
        ),
        (
            Scenario::ToolCall,
            Script::new()
                .tool(TOOL_NAME, serde_json::json!({"date": "tomorrow"}), true)
                .say(AFTER_TOOL, 200)
                .end(),
        ),
        (
            Scenario::BargeIn,
            Script::new()
                .say("Let me tell you about all our opening hours.", 6000)
                .listen("Sorry, can I stop you there?"),
        ),
        (Scenario::Pings, Script::new().pause(10_000)),
        (
            Scenario::AgentEnds,
            Script::new().say("Goodbye.", 200).end(),
        ),
        (
            Scenario::Resume,
            Script::new()
                .say(RESUME_BEFORE, 200)
                .tool(TOOL_NAME, serde_json::json!({}), true)
                .say(RESUME_AFTER, 200)
                .end(),
        ),
    ];
    let mut state = ElevenLabsSimState::new(api_key)
        .with_ping_interval(Duration::from_millis(100))
        .with_echo_agent(Scenario::Echo.sim_agent_id());
    for (scenario, script) in scripts {
        state = state.with_agent(scenario.sim_agent_id(), script);
    }
    state
}

/// A [`Harness`] over an ElevenLabs simulator built by [`sim_state`].
#[derive(Debug, Clone)]
pub struct SimHarness {
    /// The simulator.
    pub state: ElevenLabsSimState,
}

impl Harness for SimHarness {
    fn agent_id(&self, scenario: Scenario) -> String {
        scenario.sim_agent_id().to_owned()
    }

    fn observe(&self, conversation_id: &str) -> Option<Observation> {
        let conversation = self.state.conversation(conversation_id)?;
        Some(Observation {
            tool_results: conversation
                .tool_results
                .iter()
                .map(|result| (result.tool_call_id.clone(), result.result.clone()))
                .collect(),
            pongs: conversation
                .pongs
                .iter()
                .filter(|pong| pong.matched)
                .count(),
            wrong_pongs: conversation.wrong_pongs().len(),
        })
    }
}

/// Returns a request for `agent_id` with fresh ids and one variable.
#[must_use]
pub fn request(agent_id: String) -> StartRequest {
    StartRequest {
        tenant: TenantId::from_uuid(uuid::Uuid::new_v4()),
        call: CallId::from_uuid(uuid::Uuid::new_v4()),
        attempt: AttemptId::from_uuid(uuid::Uuid::new_v4()),
        agent_id,
        user_id: Some("tenant:contact".to_owned()),
        variables: BTreeMap::from([(
            "lead_name".to_owned(),
            super::engine::VariableValue::Text("Jane".to_owned()),
        )]),
        overrides: AgentOverrides::default(),
        resumed_from: Vec::new(),
    }
}

/// Returns the next event, failing after [`WITHIN`] or when the stream closes.
async fn next(session: &mut EngineSession) -> anyhow::Result<EngineEvent> {
    tokio::time::timeout(WITHIN, session.events.recv())
        .await
        .context("no engine event in time")?
        .context("the event stream closed")
}

/// Returns the events up to and including the first matching `wanted`.
async fn until(
    session: &mut EngineSession,
    what: &str,
    wanted: impl Fn(&EngineEvent) -> bool,
) -> anyhow::Result<Vec<EngineEvent>> {
    let mut seen = Vec::new();
    loop {
        let event = next(session)
            .await
            .with_context(|| format!("waiting for {what}"))?;
        let done = wanted(&event);
        if let EngineEvent::Ended(reason) = &event
            && !done
        {
            bail!("the session ended ({reason:?}) before {what}");
        }
        seen.push(event);
        if done {
            return Ok(seen);
        }
    }
}

/// Expects `Started` first; returns the conversation id.
async fn started(session: &mut EngineSession) -> anyhow::Result<String> {
    match next(session).await? {
        EngineEvent::Started { conversation_id } => Ok(conversation_id),
        other => bail!("the first event is {other:?}, not `Started`"),
    }
}

/// Sends `End` and expects `Ended(Requested)` as the last event.
async fn end(mut session: EngineSession) -> anyhow::Result<()> {
    session
        .commands
        .send(EngineCommand::End)
        .await
        .context("sending `End`")?;
    let events = until(&mut session, "`Ended`", |event| {
        matches!(event, EngineEvent::Ended(_))
    })
    .await?;
    ensure!(
        events.last() == Some(&EngineEvent::Ended(EndReason::Requested)),
        "`End` gave {:?}",
        events.last()
    );
    ensure_closed(&mut session).await
}

/// Expects the event stream to close (nothing after `Ended`).
async fn ensure_closed(session: &mut EngineSession) -> anyhow::Result<()> {
    match tokio::time::timeout(WITHIN, session.events.recv()).await {
        Ok(None) => Ok(()),
        Ok(Some(event)) => bail!("{event:?} came after `Ended`"),
        Err(_) => bail!("the event stream stayed open after `Ended`"),
    }
}

async fn start(engine: &dyn VoiceEngine, request: StartRequest) -> anyhow::Result<EngineSession> {
    engine
        .start(request)
        .await
        .map_err(|err| anyhow::anyhow!("starting the session: {err}"))
}

/// Checks that a session starts with `Started`, then the greeting arrives as
/// `AgentResponse` and non-empty `Audio`, and `End` ends it with `Ended(Requested)`.
pub async fn greeting_starts_then_speaks(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::Greeting))).await?;
    started(&mut session).await?;
    let mut heard_greeting = false;
    let mut audio_bytes = 0;
    while !(heard_greeting && audio_bytes > 0) {
        match next(&mut session)
            .await
            .context("waiting for the greeting")?
        {
            EngineEvent::AgentResponse(text) => {
                ensure!(text == GREETING, "the greeting is {text:?}");
                heard_greeting = true;
            }
            EngineEvent::Audio(audio) => audio_bytes += audio.len(),
            EngineEvent::Ended(reason) => bail!("ended during the greeting: {reason:?}"),
            _ => {}
        }
    }
    end(session).await
}

/// Checks that a tool call arrives as `ToolCall`, its result reaches the agent (and the
/// far side records it), and the agent carries on.
pub async fn tool_call_round_trips(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::ToolCall))).await?;
    let conversation_id = started(&mut session).await?;
    let events = until(&mut session, "the tool call", |event| {
        matches!(event, EngineEvent::ToolCall { .. })
    })
    .await?;
    let Some(EngineEvent::ToolCall {
        tool_call_id,
        name,
        parameters,
    }) = events.last().cloned()
    else {
        bail!("no tool call");
    };
    ensure!(name == TOOL_NAME, "the tool is {name:?}");
    ensure!(parameters.is_object(), "parameters are {parameters}");
    let result = r#"{"slots":["09:30","15:00"]}"#.to_owned();
    session
        .commands
        .send(EngineCommand::ToolResult {
            tool_call_id: tool_call_id.clone(),
            result: result.clone(),
            is_error: false,
        })
        .await
        .context("sending the tool result")?;
    until(&mut session, "the answer after the tool", |event| {
        *event == EngineEvent::AgentResponse(AFTER_TOOL.to_owned())
    })
    .await?;
    if let Some(observation) = harness.observe(&conversation_id) {
        ensure!(
            observation.tool_results == vec![(tool_call_id, result)],
            "the agent received {:?}",
            observation.tool_results
        );
    }
    end(session).await
}

/// Checks that caller speech over playing agent audio yields `Interruption`.
pub async fn caller_speech_interrupts_the_agent(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::BargeIn))).await?;
    started(&mut session).await?;
    until(&mut session, "agent audio", |event| {
        matches!(event, EngineEvent::Audio(_))
    })
    .await?;
    let speaker = tokio::spawn(speak(session.commands.clone(), 3000, 0));
    let interrupted = until(&mut session, "`Interruption`", |event| {
        *event == EngineEvent::Interruption
    })
    .await;
    speaker.abort();
    interrupted?;
    end(session).await
}

/// Checks that the engine answers the agent's keep-alives: the session stays up across
/// several ping intervals and (where observable) every pong matches its ping.
pub async fn pings_are_answered(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::Pings))).await?;
    let conversation_id = started(&mut session).await?;
    let mut observed = None;
    for _ in 0..50 {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), session.events.recv()).await
        {
            ensure!(
                !matches!(event, EngineEvent::Ended(_)),
                "the session ended while idle: {event:?}"
            );
        }
        observed = harness.observe(&conversation_id);
        if observed.as_ref().is_none_or(|seen| seen.pongs >= 3) {
            break;
        }
    }
    if let Some(observation) = observed {
        ensure!(
            observation.pongs >= 3,
            "only {} pongs reached the agent",
            observation.pongs
        );
        ensure!(
            observation.wrong_pongs == 0,
            "{} pongs carried a wrong `event_id`",
            observation.wrong_pongs
        );
    }
    end(session).await
}

/// Checks that the agent ending the conversation yields `Ended(AgentEnded)`, last.
pub async fn agent_end_ends_the_session(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::AgentEnds))).await?;
    started(&mut session).await?;
    let events = until(&mut session, "`Ended`", |event| {
        matches!(event, EngineEvent::Ended(_))
    })
    .await?;
    ensure!(
        events.last() == Some(&EngineEvent::Ended(EndReason::AgentEnded)),
        "the agent's end gave {:?}",
        events.last()
    );
    ensure_closed(&mut session).await
}

/// Checks that `engine`, holding the bad key `bad_key`, is refused without the key in the
/// error.
pub async fn bad_key_is_refused(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
    bad_key: &str,
) -> anyhow::Result<()> {
    match engine
        .start(request(harness.agent_id(Scenario::Greeting)))
        .await
    {
        Ok(_) => bail!("a bad key started a session"),
        Err(EngineError::Unavailable(message)) => bail!("a bad key is `Unavailable`: {message}"),
        Err(err @ EngineError::Refused(_)) => {
            let shown = format!("{err} {err:?}");
            ensure!(!shown.contains(bad_key), "the error shows the key: {shown}");
            Ok(())
        }
    }
}

/// Checks that a session resuming a call (same call id, `resumed_from` set) continues the
/// agent's script where the broken one stopped instead of starting over.
pub async fn resumed_session_continues(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let first_request = request(harness.agent_id(Scenario::Resume));
    let mut first = start(engine, first_request.clone()).await?;
    started(&mut first).await?;
    until(&mut first, "the first line", |event| {
        *event == EngineEvent::AgentResponse(RESUME_BEFORE.to_owned())
    })
    .await?;
    until(&mut first, "the tool call", |event| {
        matches!(event, EngineEvent::ToolCall { .. })
    })
    .await?;
    // The worker "dies" before answering the tool.
    end(first).await?;

    let resumed_request = StartRequest {
        resumed_from: vec![PriorTurn {
            role: TurnRole::Agent,
            text: RESUME_BEFORE.to_owned(),
        }],
        ..first_request
    };
    let mut second = start(engine, resumed_request).await?;
    started(&mut second).await?;
    let events = until(&mut second, "the repeated tool call", |event| {
        matches!(event, EngineEvent::ToolCall { .. })
    })
    .await?;
    ensure!(
        !events
            .iter()
            .any(|event| matches!(event, EngineEvent::AgentResponse(_))),
        "the resumed agent spoke before its tool call: {events:?}"
    );
    let Some(EngineEvent::ToolCall { tool_call_id, .. }) = events.last().cloned() else {
        bail!("no tool call");
    };
    second
        .commands
        .send(EngineCommand::ToolResult {
            tool_call_id,
            result: "{}".to_owned(),
            is_error: false,
        })
        .await
        .context("sending the tool result")?;
    let rest = until(&mut second, "`Ended`", |event| {
        matches!(event, EngineEvent::Ended(_))
    })
    .await?;
    let said: Vec<&EngineEvent> = rest
        .iter()
        .filter(|event| matches!(event, EngineEvent::AgentResponse(_)))
        .collect();
    ensure!(
        said == vec![&EngineEvent::AgentResponse(RESUME_AFTER.to_owned())],
        "the resumed agent said {said:?}"
    );
    ensure!(
        rest.last() == Some(&EngineEvent::Ended(EndReason::AgentEnded)),
        "the resumed session ended with {:?}",
        rest.last()
    );
    Ok(())
}

/// Checks that an echo agent's audio is the caller audio, byte for byte and in order.
pub async fn echo_agent_returns_audio(
    engine: &dyn VoiceEngine,
    harness: &dyn Harness,
) -> anyhow::Result<()> {
    let mut session = start(engine, request(harness.agent_id(Scenario::Echo))).await?;
    started(&mut session).await?;
    let mut sent = Vec::new();
    for frame in 0..10_u64 {
        let audio = audio::tone(20, frame * 160);
        sent.extend_from_slice(&audio);
        session
            .commands
            .send(EngineCommand::Audio(Bytes::from(audio)))
            .await
            .context("sending audio")?;
    }
    let mut received = Vec::new();
    while received.len() < sent.len() {
        match next(&mut session)
            .await
            .context("waiting for echoed audio")?
        {
            EngineEvent::Audio(audio) => received.extend_from_slice(&audio),
            EngineEvent::Ended(reason) => bail!("ended while echoing: {reason:?}"),
            _ => {}
        }
    }
    ensure!(received == sent, "the echo differs from the audio sent");
    end(session).await
}

/// Sends `speech_ms` of tone then `silence_ms` of silence as 20 ms frames at real time.
///
/// # Errors
///
/// Fails when the session no longer takes commands.
pub async fn speak(
    commands: tokio::sync::mpsc::Sender<EngineCommand>,
    speech_ms: u64,
    silence_ms: u64,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    for frame in 0..(speech_ms + silence_ms) / 20 {
        ticks.tick().await;
        let audio = if frame * 20 < speech_ms {
            audio::tone(20, frame * 160)
        } else {
            audio::silence(20)
        };
        commands
            .send(EngineCommand::Audio(Bytes::from(audio)))
            .await
            .context("the session is gone")?;
    }
    Ok(())
}
