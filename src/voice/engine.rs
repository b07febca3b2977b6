//! The voice engine: what the converse stage needs from a conversational agent, whoever
//! runs it (ElevenLabs today, a self-hosted model on a GPU worker later).
//!
//! A session is a pair of channels rather than methods on a socket-owning object: the
//! implementation owns its connection in a task of its own (so it can answer keep-alives such
//! as ElevenLabs' `ping` without the caller's help), takes [`EngineCommand`]s and gives
//! [`EngineEvent`]s. The converse worker then `select!`s over caller audio, engine events and
//! its lease, without holding a lock across an await.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::ids::{AttemptId, CallId, TenantId};

/// A value of a variable the agent's prompt uses (`{{lead_name}}`).
#[derive(Debug, Clone, PartialEq)]
pub enum VariableValue {
    /// Text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A flag.
    Bool(bool),
}

/// Per-conversation overrides of the agent's configuration (one agent, several variants).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOverrides {
    /// The first thing the agent says, replacing its configured greeting.
    pub first_message: Option<String>,
    /// The conversation language (ISO 639-1).
    pub language: Option<String>,
    /// The system prompt.
    pub prompt: Option<String>,
    /// The TTS voice.
    pub voice_id: Option<String>,
}

/// One turn of a conversation so far, given to a resumed session as context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorTurn {
    /// Who spoke.
    pub role: TurnRole,
    /// What was said (or the tool call, summarized).
    pub text: String,
}

/// Who produced a transcript turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    /// The AI agent.
    Agent,
    /// The person on the phone.
    User,
}

impl TurnRole {
    /// The name stored in `conversation_turns.role`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TurnRole::Agent => "agent",
            TurnRole::User => "user",
        }
    }
}

/// Everything an engine needs to open a conversation.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The tenant whose agent speaks.
    pub tenant: TenantId,
    /// The call.
    pub call: CallId,
    /// The attempt whose media stream this is.
    pub attempt: AttemptId,
    /// The engine's agent id (ElevenLabs `agent_id`).
    pub agent_id: String,
    /// Our id for the person called (`<tenant>:<contact>`), when known.
    pub user_id: Option<String>,
    /// Variables for the agent's prompt: lead name, business, time zone, free slots, the
    /// previous call's summary, …
    pub variables: BTreeMap<String, VariableValue>,
    /// Per-variant overrides.
    pub overrides: AgentOverrides,
    /// The transcript so far when this session resumes a conversation whose worker died.
    pub resumed_from: Vec<PriorTurn>,
}

/// What the converse worker tells a running session.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineCommand {
    /// Caller audio, 8 kHz μ-law.
    Audio(Bytes),
    /// The answer to an [`EngineEvent::ToolCall`].
    ToolResult {
        /// The call's id, as the engine gave it.
        tool_call_id: String,
        /// The result (JSON text), or a sentence the agent can say when `is_error`.
        result: String,
        /// True when the tool failed.
        is_error: bool,
    },
    /// Background information for the agent that does not interrupt it.
    ContextualUpdate(String),
    /// Close the session (the call ended on our side).
    End,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The agent ended the conversation (its end-call tool, or its maximum duration).
    AgentEnded,
    /// We asked it to end.
    Requested,
    /// The engine reported an error and closed (a contract or runtime failure).
    Failed {
        /// The engine's error kind (ElevenLabs `error_type`, or the close code).
        kind: String,
        /// The engine's message.
        message: String,
    },
    /// The connection broke without a close: reconnecting with context may continue it.
    Disconnected(String),
}

/// What a running session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// The engine accepted the session.
    Started {
        /// The engine's conversation id (to fetch its transcript and match its post-call
        /// report).
        conversation_id: String,
    },
    /// Agent audio, 8 kHz μ-law, in the order it should play.
    Audio(Bytes),
    /// The caller spoke over the agent: whatever agent audio is still queued must go.
    Interruption,
    /// A finished agent utterance.
    AgentResponse(String),
    /// A finished caller utterance, as the engine heard it.
    UserTranscript(String),
    /// The agent wants a tool run; answer with [`EngineCommand::ToolResult`].
    ToolCall {
        /// The id to answer with.
        tool_call_id: String,
        /// The tool's name.
        name: String,
        /// The tool's parameters, as the LLM filled them in.
        parameters: serde_json::Value,
    },
    /// The session is over; no event follows.
    Ended(EndReason),
}

/// A running session: commands in, events out. Dropping `commands` ends the session.
#[derive(Debug)]
pub struct EngineSession {
    /// Where commands go.
    pub commands: mpsc::Sender<EngineCommand>,
    /// Where events come from; closed after [`EngineEvent::Ended`].
    pub events: mpsc::Receiver<EngineEvent>,
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine refused our credentials or agent (reconnecting will not help).
    #[error("voice engine refused the session: {0}")]
    Refused(String),
    /// The engine is unreachable or failed; trying again may work.
    #[error("voice engine unavailable: {0}")]
    Unavailable(String),
}

/// A conversational voice agent.
pub trait VoiceEngine: Send + Sync {
    /// Opens a session; it runs until [`EngineEvent::Ended`].
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<EngineSession, EngineError>>;
}
