//! ElevenLabs Agents WebSocket messages (protocols B2–B6, AsyncAPI `agent.asyncapi.yaml`):
//! [`ClientMessage`] is what we send, [`ServerMessage`] what the agent sends.
//!
//! Field names and nesting follow the AsyncAPI exactly (most server messages wrap their data in
//! a `<something>_event` object). A server message whose `type` this module does not model
//! reads as [`ServerMessage::Unknown`] rather than an error: ElevenLabs adds event types often,
//! and the bridge must skip them, not drop the call. Audio is base64 in both directions; with
//! the agent set to `ulaw_8000` it is the same μ-law Twilio carries, so it passes through.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

/// Every `type` [`ServerMessage`] models, to tell an unknown type from an invalid message.
const KNOWN_TYPES: &[&str] = &[
    "conversation_initiation_metadata",
    "audio",
    "user_transcript",
    "tentative_user_transcript",
    "agent_response",
    "agent_response_correction",
    "interruption",
    "ping",
    "client_tool_call",
    "vad_score",
    "internal_tentative_agent_response",
    "error",
];

/// Why an ElevenLabs message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The text is not JSON, or not a JSON object with a string `type`.
    #[error("malformed ElevenLabs message: {0}")]
    Malformed(String),
    /// The `type` is one we model but a field is missing or has the wrong type.
    #[error("invalid ElevenLabs `{kind}` message: {source}")]
    Invalid {
        /// The message's `type`.
        kind: String,
        /// What serde found wrong.
        source: serde_json::Error,
    },
    /// Audio is not valid base64.
    #[error("ElevenLabs audio is not valid base64: {0}")]
    Audio(#[from] base64::DecodeError),
}

/// Parses one text frame from the agent. An unmodelled `type` gives
/// [`ServerMessage::Unknown`]; never panics.
pub fn parse_server(text: &str) -> Result<ServerMessage, WireError> {
    /// Only the tag: every other field is ignored.
    #[derive(Deserialize)]
    struct Probe {
        r#type: String,
    }
    let source = match serde_json::from_str(text) {
        Ok(message) => return Ok(message),
        Err(source) => source,
    };
    match serde_json::from_str::<Probe>(text) {
        Err(probe) => Err(WireError::Malformed(probe.to_string())),
        Ok(Probe { r#type }) if KNOWN_TYPES.contains(&r#type.as_str()) => Err(WireError::Invalid {
            kind: r#type,
            source,
        }),
        Ok(Probe { r#type }) => Ok(ServerMessage::Unknown { kind: r#type }),
    }
}

/// A message we send to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The optional first message: variables and overrides for this conversation. Boxed
    /// because it is sent once and is far larger than the per-frame messages.
    ConversationInitiationClientData(Box<ConversationInitiation>),
    /// The answer to a [`ServerMessage::Ping`], which the agent requires.
    Pong {
        /// The ping's `event_id`.
        event_id: u64,
    },
    /// The result of a [`ServerMessage::ClientToolCall`].
    ClientToolResult {
        /// The call's `tool_call_id`.
        tool_call_id: String,
        /// The result as text (JSON text if structured).
        result: String,
        /// True if the tool failed; `result` then says why.
        is_error: bool,
    },
    /// Background information for the agent; it does not interrupt it.
    ContextualUpdate {
        /// The information.
        text: String,
        /// Only the latest update with the same id is kept in the agent's context.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_id: Option<String>,
    },
    /// A typed user message, as if the user had said it.
    UserMessage {
        /// The text; `null` is the text-only-mode signal.
        text: Option<String>,
    },
    /// Tells the agent the user is active (e.g. typing), so it does not talk over them.
    UserActivity,
    /// Caller audio. This frame has no `type` on the wire; it is known by its key.
    #[serde(untagged)]
    UserAudioChunk {
        /// Base64 of audio in the agent's `user_input_audio_format`.
        user_audio_chunk: String,
    },
}

impl ClientMessage {
    /// The `conversation_initiation_client_data` message.
    pub fn initiation(data: ConversationInitiation) -> Self {
        Self::ConversationInitiationClientData(Box::new(data))
    }

    /// A `user_audio_chunk` carrying `audio` (raw bytes in the agent's input format).
    pub fn user_audio(audio: &[u8]) -> Self {
        Self::UserAudioChunk {
            user_audio_chunk: BASE64.encode(audio),
        }
    }

    /// A `user_audio_chunk` from audio that is already base64, e.g. a Twilio `media.payload`
    /// passed through unchanged (B7), saving a decode and an encode per 20 ms frame.
    pub fn user_audio_base64(base64: impl Into<String>) -> Self {
        Self::UserAudioChunk {
            user_audio_chunk: base64.into(),
        }
    }

    /// A `client_tool_result` answering the call `tool_call_id`.
    pub fn tool_result(
        tool_call_id: impl Into<String>,
        result: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Self::ClientToolResult {
            tool_call_id: tool_call_id.into(),
            result: result.into(),
            is_error,
        }
    }
}

/// `conversation_initiation_client_data`: everything optional, all per conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationInitiation {
    /// Values for the `{{variables}}` the agent's prompt uses; every one it uses must be here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dynamic_variables: BTreeMap<String, DynamicValue>,
    /// Per-conversation overrides; each field must be enabled on the agent or the agent
    /// closes with `override_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_config_override: Option<ConfigOverride>,
    /// Extra parameters for a custom LLM, passed through as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_llm_extra_body: Option<Map<String, Value>>,
    /// Our id for the user (we use `<tenant>:<contact>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Which client application opens the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_info: Option<SourceInfo>,
}

/// The value of a dynamic variable: the AsyncAPI allows a string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DynamicValue {
    /// A boolean.
    Bool(bool),
    /// A whole number (kept apart from [`DynamicValue::Number`] so `3` is not sent as `3.0`).
    Integer(i64),
    /// Any other number.
    Number(f64),
    /// Text.
    Text(String),
}

impl From<&str> for DynamicValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for DynamicValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for DynamicValue {
    fn from(number: i64) -> Self {
        Self::Integer(number)
    }
}

impl From<bool> for DynamicValue {
    fn from(flag: bool) -> Self {
        Self::Bool(flag)
    }
}

/// `source_info`: the client application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The application's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The application's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `conversation_config_override` (AsyncAPI `ConversationConfigClientOverride`). Only the
/// sections and fields the AsyncAPI lists; an absent field keeps the agent's setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigOverride {
    /// The agent: first message, language, prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentOverride>,
    /// Text to speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts: Option<TtsOverride>,
    /// Speech recognition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asr: Option<AsrOverride>,
    /// The conversation itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationOverride>,
}

/// `conversation_config_override.agent`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentOverride {
    /// What the agent says first; empty makes it wait for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_message: Option<String>,
    /// A language code from the AsyncAPI's `Language` list, e.g. `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The system prompt and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptOverride>,
}

/// `conversation_config_override.agent.prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptOverride {
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The LLM to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<String>,
}

/// `conversation_config_override.tts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TtsOverride {
    /// The voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    /// 0 to 1; lower is more varied intonation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// 0.7 to 5; 1 is normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// 0 to 1; higher is closer to the original voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_boost: Option<f64>,
}

/// `conversation_config_override.asr`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsrOverride {
    /// Words to recognise more readily (names, products).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
}

/// `conversation_config_override.conversation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationOverride {
    /// Text only: no audio in either direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_only: Option<bool>,
    /// Which server message types to send (AsyncAPI `ClientEvent` names); at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_events: Option<Vec<String>>,
}

/// A message the agent sends, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message: the conversation id and the audio formats in use.
    ConversationInitiationMetadata {
        /// The data.
        conversation_initiation_metadata_event: InitiationMetadata,
    },
    /// Agent speech.
    Audio {
        /// The data.
        audio_event: AudioEvent,
    },
    /// A final transcript of what the user said.
    UserTranscript {
        /// The data.
        user_transcription_event: Transcript,
    },
    /// A transcript still in progress.
    TentativeUserTranscript {
        /// The data.
        tentative_user_transcription_event: Transcript,
    },
    /// The text of what the agent says.
    AgentResponse {
        /// The data.
        agent_response_event: AgentResponse,
    },
    /// The agent was cut off: what it actually said, replacing an earlier `agent_response`.
    AgentResponseCorrection {
        /// The data.
        agent_response_correction_event: AgentResponseCorrection,
    },
    /// The user barged in: drop the agent audio queued so far (Twilio `clear`).
    Interruption {
        /// The data.
        interruption_event: EventRef,
    },
    /// A keep-alive that must be answered with [`ClientMessage::Pong`].
    Ping {
        /// The data.
        ping_event: Ping,
    },
    /// The agent calls one of our client tools; answer with [`ClientMessage::ClientToolResult`].
    ClientToolCall {
        /// The data.
        client_tool_call: ClientToolCall,
    },
    /// Voice activity score of the user's audio.
    VadScore {
        /// The data.
        vad_score_event: VadScore,
    },
    /// What the agent is about to say (internal, may change).
    InternalTentativeAgentResponse {
        /// The data.
        tentative_agent_response_internal_event: TentativeAgentResponse,
    },
    /// The agent reports an error; the socket closes with `code` next.
    Error {
        /// The data.
        error_event: ErrorEvent,
    },
    /// A message whose `type` this module does not model; log it and skip it. Never sent.
    #[serde(skip)]
    Unknown {
        /// The message's `type`.
        kind: String,
    },
}

/// `conversation_initiation_metadata_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiationMetadata {
    /// The conversation's id (for `GET /v1/convai/conversations/{id}`).
    pub conversation_id: String,
    /// The format of [`AudioEvent::audio_base_64`], e.g. `ulaw_8000`.
    pub agent_output_audio_format: String,
    /// The format expected in `user_audio_chunk`, e.g. `ulaw_8000`.
    pub user_input_audio_format: String,
}

/// `audio_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioEvent {
    /// Base64 audio in the `agent_output_audio_format`.
    pub audio_base_64: String,
    /// The event's number.
    pub event_id: u64,
    /// Per-character timing of the spoken text, when the agent sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<Alignment>,
}

impl AudioEvent {
    /// The raw audio bytes.
    pub fn decode_audio(&self) -> Result<Vec<u8>, WireError> {
        Ok(BASE64.decode(&self.audio_base_64)?)
    }
}

/// `audio_event.alignment`: three arrays of the same length, one entry per character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alignment {
    /// The characters.
    pub chars: Vec<String>,
    /// When each starts, in milliseconds.
    pub char_start_times_ms: Vec<i64>,
    /// How long each lasts, in milliseconds.
    pub char_durations_ms: Vec<i64>,
}

/// `user_transcription_event` and `tentative_user_transcription_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// What the user said.
    pub user_transcript: String,
    /// The event's number.
    pub event_id: u64,
}

/// `agent_response_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResponse {
    /// What the agent says.
    pub agent_response: String,
    /// The event's number.
    pub event_id: u64,
}

/// `agent_response_correction_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResponseCorrection {
    /// The response as first sent.
    pub original_agent_response: String,
    /// What was actually said before the interruption.
    pub corrected_agent_response: String,
    /// The event's number.
    pub event_id: u64,
}

/// An event carrying only its number (`interruption_event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// The event's number.
    pub event_id: u64,
}

/// `ping_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echo it in the pong.
    pub event_id: u64,
    /// The agent's estimate of the round trip, from earlier pings.
    #[serde(default)]
    pub ping_ms: Option<u64>,
}

impl Ping {
    /// The required answer.
    pub fn pong(&self) -> ClientMessage {
        ClientMessage::Pong {
            event_id: self.event_id,
        }
    }
}

/// `client_tool_call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientToolCall {
    /// The tool's name as configured on the agent.
    pub tool_name: String,
    /// Echo it in the result.
    pub tool_call_id: String,
    /// The arguments the LLM chose.
    pub parameters: Map<String, Value>,
    /// The event's number.
    pub event_id: u64,
}

/// `vad_score_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VadScore {
    /// From 0 (silence) to 1 (speech).
    pub vad_score: f64,
}

/// `tentative_agent_response_internal_event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TentativeAgentResponse {
    /// The response so far.
    pub tentative_agent_response: String,
}

/// `error_event`. The enums of the AsyncAPI (`code`, `error_type`) stay open here: an
/// unfamiliar value must not hide the error itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The WebSocket close code that follows: 1000, 1002, 1008 or 1011.
    pub code: u16,
    /// A readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The machine-readable kind, e.g. `missing_dynamic_variable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// A generic reason, without sensitive details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details, sent only at some error-reporting access levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_message: Option<String>,
    /// More context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

impl ServerMessage {
    /// The wire `type`, or the unknown one.
    pub fn kind(&self) -> &str {
        match self {
            Self::ConversationInitiationMetadata { .. } => "conversation_initiation_metadata",
            Self::Audio { .. } => "audio",
            Self::UserTranscript { .. } => "user_transcript",
            Self::TentativeUserTranscript { .. } => "tentative_user_transcript",
            Self::AgentResponse { .. } => "agent_response",
            Self::AgentResponseCorrection { .. } => "agent_response_correction",
            Self::Interruption { .. } => "interruption",
            Self::Ping { .. } => "ping",
            Self::ClientToolCall { .. } => "client_tool_call",
            Self::VadScore { .. } => "vad_score",
            Self::InternalTentativeAgentResponse { .. } => "internal_tentative_agent_response",
            Self::Error { .. } => "error",
            Self::Unknown { kind } => kind,
        }
    }
}
