//! The ElevenLabs Agents implementation of [`VoiceEngine`] (protocols B1–B6).
//!
//! Starting a session is three steps: fetch a signed URL with the account's `xi-api-key`
//! (`GET /v1/convai/conversation/get-signed-url`), open that WebSocket and send
//! `conversation_initiation_client_data` (variables, overrides, and for a resumed
//! conversation the transcript so far), then wait for `conversation_initiation_metadata`.
//! From then on one task owns the socket: it forwards [`EngineCommand`]s, answers `ping`s
//! itself the moment they arrive (server frames win over queued commands) and turns server
//! messages into [`EngineEvent`]s. Both channels are bounded; a consumer that stops reading
//! events for longer than [`EVENT_CAPACITY`] events stalls the socket, pings included.
//!
//! Invariants:
//! - the API key is only ever in the `xi-api-key` header: error messages name the agent and
//!   the status, never the key (and any text echoed back by the vendor is scrubbed of it);
//! - audio passes through as 8 kHz μ-law, untranscoded: an agent whose formats are not
//!   `ulaw_8000` both ways ends the session with [`EndReason::Failed`];
//! - a malformed or unknown server message is logged (kind only, no payload) and skipped;
//! - exactly one [`EngineEvent::Ended`] closes the event stream.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::elevenlabs_wire::{
    AgentOverride, ClientMessage, ConfigOverride, ConversationInitiation, DynamicValue,
    InitiationMetadata, PromptOverride, ServerMessage, SourceInfo, TtsOverride, parse_server,
};
use super::engine::{
    AgentOverrides, EndReason, EngineCommand, EngineError, EngineEvent, EngineSession, PriorTurn,
    StartRequest, VariableValue, VoiceEngine,
};
use crate::secret::Secret;

#[cfg(test)]
mod tests;

/// The public ElevenLabs API.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";

/// How many commands may wait for the socket task (about 5 s of 20 ms audio frames).
pub const COMMAND_CAPACITY: usize = 256;

/// How many events may wait for the converse worker.
pub const EVENT_CAPACITY: usize = 256;

/// How long the WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the agent may take to answer the initiation with its metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we wait for the agent to acknowledge our close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The only audio format we pass through (Twilio's).
const ULAW_8000: &str = "ulaw_8000";

/// The socket to the agent.
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An ElevenLabs workspace's credentials.
#[derive(Debug, Clone)]
pub struct ElevenLabsAccount {
    /// The `xi-api-key`.
    pub api_key: Secret<String>,
    /// The REST base URL; `None` is [`DEFAULT_BASE_URL`] (a simulator or a residency host
    /// otherwise). The WebSocket URL comes from the signed URL, whatever this is.
    pub base_url: Option<String>,
}

/// [`VoiceEngine`] over ElevenLabs Agents' WebSocket.
#[derive(Debug, Clone)]
pub struct ElevenLabsEngine {
    account: ElevenLabsAccount,
    http: reqwest::Client,
}

impl ElevenLabsEngine {
    /// Returns an engine for `account`, making REST requests with `http` (build it with
    /// [`crate::providers::http::client`]).
    #[must_use]
    pub fn new(account: ElevenLabsAccount, http: reqwest::Client) -> Self {
        Self { account, http }
    }

    fn base_url(&self) -> &str {
        self.account
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
    }

    /// Replaces the API key wherever vendor text might echo it.
    fn scrub(&self, text: &str) -> String {
        let key = self.account.api_key.expose();
        if key.is_empty() {
            return text.to_owned();
        }
        text.replace(key.as_str(), "[REDACTED]")
    }

    /// Fetches a signed conversation URL for `agent_id`.
    async fn signed_url(&self, agent_id: &str) -> Result<String, EngineError> {
        #[derive(serde::Deserialize)]
        struct SignedUrl {
            signed_url: String,
        }
        let url = format!("{}/v1/convai/conversation/get-signed-url", self.base_url());
        let response = self
            .http
            .get(url)
            .query(&[("agent_id", agent_id)])
            .header("xi-api-key", self.account.api_key.expose())
            .send()
            .await
            .map_err(|err| {
                EngineError::Unavailable(format!(
                    "`get-signed-url` for agent `{agent_id}` failed: {}",
                    self.scrub(&err.without_url().to_string())
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let detail = self.scrub(&vendor_detail(&body));
            let message = format!(
                "`get-signed-url` for agent `{agent_id}` answered {}{detail}",
                status.as_u16()
            );
            return Err(match status.as_u16() {
                401 | 403 | 404 | 422 => EngineError::Refused(message),
                _ => EngineError::Unavailable(message),
            });
        }
        let body: SignedUrl = response.json().await.map_err(|err| {
            EngineError::Unavailable(format!(
                "`get-signed-url` for agent `{agent_id}` answered an unreadable body: {}",
                err.without_url()
            ))
        })?;
        Ok(body.signed_url)
    }

    async fn open(&self, request: StartRequest) -> Result<EngineSession, EngineError> {
        let signed_url = self.signed_url(&request.agent_id).await?;
        let agent_id = request.agent_id.clone();
        // NOTE: the signed URL carries a conversation signature: it is never logged.
        let connect = tokio_tungstenite::connect_async_with_config(signed_url.as_str(), None, true);
        let (mut socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => {
                return Err(EngineError::Unavailable(format!(
                    "connecting agent `{agent_id}` timed out"
                )));
            }
            Ok(Err(err)) => return Err(connect_error(&agent_id, &err)),
            Ok(Ok(connected)) => connected,
        };
        for frame in opening_frames(&request) {
            send_json(&mut socket, &frame).await.map_err(|err| {
                EngineError::Unavailable(format!("sending initiation to `{agent_id}`: {err}"))
            })?;
        }
        let metadata =
            match tokio::time::timeout(METADATA_TIMEOUT, await_metadata(&mut socket)).await {
                Err(_) => {
                    return Err(EngineError::Unavailable(format!(
                        "agent `{agent_id}` sent no conversation metadata within {}s",
                        METADATA_TIMEOUT.as_secs()
                    )));
                }
                Ok(result) => result?,
            };
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let session = SocketTask {
            socket,
            commands: commands_rx,
            events: events_tx,
            last_error: None,
        };
        tokio::spawn(session.run(metadata));
        Ok(EngineSession {
            commands: commands_tx,
            events: events_rx,
        })
    }
}

impl VoiceEngine for ElevenLabsEngine {
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<EngineSession, EngineError>> {
        Box::pin(self.open(request))
    }
}

/// Returns `: <message>` from an ElevenLabs error body (`{"detail":{"message"}}` or the
/// FastAPI list), or nothing.
fn vendor_detail(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    let detail = &value["detail"];
    let message = detail["message"]
        .as_str()
        .or_else(|| detail[0]["msg"].as_str())
        .or_else(|| detail.as_str());
    match message {
        // Bounded: a vendor message is a hint, not a payload.
        Some(text) => format!(": {}", text.chars().take(200).collect::<String>()),
        None => String::new(),
    }
}

/// Classifies a failed WebSocket handshake: a 4xx answer refuses, the rest may pass.
fn connect_error(agent_id: &str, err: &tokio_tungstenite::tungstenite::Error) -> EngineError {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Http(response) if response.status().is_client_error() => {
            EngineError::Refused(format!(
                "agent `{agent_id}` refused the WebSocket with {}",
                response.status().as_u16()
            ))
        }
        Error::Http(response) => EngineError::Unavailable(format!(
            "agent `{agent_id}` answered the WebSocket with {}",
            response.status().as_u16()
        )),
        // Not `err` itself: an URL error could quote the signed URL.
        Error::Url(_) => {
            EngineError::Refused(format!("the signed URL for `{agent_id}` is invalid"))
        }
        other => EngineError::Unavailable(format!("connecting agent `{agent_id}`: {other}")),
    }
}

/// Returns the frames sent before anything else: the initiation, then the transcript so far
/// as a contextual update when resuming.
fn opening_frames(request: &StartRequest) -> Vec<ClientMessage> {
    let mut frames = vec![ClientMessage::initiation(initiation(request))];
    if !request.resumed_from.is_empty() {
        frames.push(ClientMessage::ContextualUpdate {
            text: format!(
                "This call resumes after a connection loss. The conversation so far:\n{}",
                transcript_text(&request.resumed_from)
            ),
            context_id: None,
        });
    }
    frames
}

/// Builds `conversation_initiation_client_data` for `request`.
pub(crate) fn initiation(request: &StartRequest) -> ConversationInitiation {
    let mut variables: std::collections::BTreeMap<String, DynamicValue> = request
        .variables
        .iter()
        .map(|(name, value)| (name.clone(), dynamic_value(value)))
        .collect();
    variables.insert("call_id".to_owned(), request.call.to_string().into());
    variables.insert("tenant_id".to_owned(), request.tenant.to_string().into());
    variables.insert("attempt_id".to_owned(), request.attempt.to_string().into());
    if !request.resumed_from.is_empty() {
        variables.insert("resumed".to_owned(), true.into());
        variables.insert(
            "transcript_so_far".to_owned(),
            transcript_text(&request.resumed_from).into(),
        );
    }
    ConversationInitiation {
        dynamic_variables: variables,
        conversation_config_override: config_override(&request.overrides),
        custom_llm_extra_body: None,
        user_id: request.user_id.clone(),
        source_info: Some(SourceInfo {
            source: Some("caller".to_owned()),
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        }),
    }
}

fn dynamic_value(value: &VariableValue) -> DynamicValue {
    match value {
        VariableValue::Text(text) => DynamicValue::Text(text.clone()),
        VariableValue::Integer(number) => DynamicValue::Integer(*number),
        VariableValue::Bool(flag) => DynamicValue::Bool(*flag),
    }
}

/// Returns the override with only the fields set in `overrides`, or `None` if none is.
fn config_override(overrides: &AgentOverrides) -> Option<ConfigOverride> {
    let agent = AgentOverride {
        first_message: overrides.first_message.clone(),
        language: overrides.language.clone(),
        prompt: overrides.prompt.clone().map(|prompt| PromptOverride {
            prompt: Some(prompt),
            llm: None,
        }),
    };
    let agent = (agent != AgentOverride::default()).then_some(agent);
    let tts = overrides.voice_id.clone().map(|voice_id| TtsOverride {
        voice_id: Some(voice_id),
        ..TtsOverride::default()
    });
    if agent.is_none() && tts.is_none() {
        return None;
    }
    Some(ConfigOverride {
        agent,
        tts,
        ..ConfigOverride::default()
    })
}

/// Returns the prior turns as `role: text` lines.
pub(crate) fn transcript_text(turns: &[PriorTurn]) -> String {
    let lines: Vec<String> = turns
        .iter()
        .map(|turn| format!("{}: {}", turn.role.as_str(), turn.text))
        .collect();
    lines.join("\n")
}

/// Returns the `user_audio_chunk` frame of `audio` with a single allocation.
///
/// NOTE: hand-built rather than `serde_json::to_string(&ClientMessage::user_audio(..))`,
/// which allocates the base64 and then the JSON: this is the one frame sent 50 times a second.
/// Base64 needs no JSON escaping; a test pins it to the serde form.
fn user_audio_frame(audio: &[u8]) -> String {
    const HEAD: &str = r#"{"user_audio_chunk":""#;
    const TAIL: &str = r#""}"#;
    let mut frame =
        String::with_capacity(HEAD.len() + base64::encoded_len(audio.len(), true).unwrap_or(0) + 2);
    frame.push_str(HEAD);
    BASE64.encode_string(audio, &mut frame);
    frame.push_str(TAIL);
    frame
}

async fn send_json(
    socket: &mut Socket,
    message: &ClientMessage,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let text = serde_json::to_string(message).expect("client messages always serialize");
    socket.send(Message::text(text)).await
}

/// Reads until `conversation_initiation_metadata`, answering pings on the way.
async fn await_metadata(socket: &mut Socket) -> Result<InitiationMetadata, EngineError> {
    let mut last_error = None;
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|err| {
            EngineError::Unavailable(format!("the agent connection broke before metadata: {err}"))
        })?;
        match frame {
            Message::Text(text) => match parse_server(text.as_str()) {
                Ok(ServerMessage::ConversationInitiationMetadata {
                    conversation_initiation_metadata_event,
                }) => return Ok(conversation_initiation_metadata_event),
                Ok(ServerMessage::Ping { ping_event }) => {
                    send_json(socket, &ping_event.pong()).await.map_err(|err| {
                        EngineError::Unavailable(format!("answering a ping: {err}"))
                    })?;
                }
                Ok(ServerMessage::Error { error_event }) => last_error = Some(error_event),
                Ok(other) => {
                    tracing::warn!(kind = other.kind(), "skipping a message before metadata")
                }
                Err(err) => tracing::warn!(error = %kind_of(&err), "skipping a bad message"),
            },
            Message::Close(frame) => {
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                let (kind, message) = match &last_error {
                    Some(error) => (
                        error.error_type.clone().unwrap_or_else(|| code.to_string()),
                        error.message.clone().unwrap_or_default(),
                    ),
                    None => (code.to_string(), String::new()),
                };
                let text =
                    format!("the agent closed before metadata ({code}, `{kind}`): {message}");
                // 1008 is a contract error (overrides, variables): retrying cannot help.
                return Err(if code == 1008 {
                    EngineError::Refused(text)
                } else {
                    EngineError::Unavailable(text)
                });
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    Err(EngineError::Unavailable(
        "the agent connection ended before metadata".to_owned(),
    ))
}

/// A short description of a wire error without the payload.
fn kind_of(err: &super::elevenlabs_wire::WireError) -> String {
    use super::elevenlabs_wire::WireError;
    match err {
        WireError::Malformed(_) => "malformed".to_owned(),
        WireError::Invalid { kind, .. } => format!("invalid `{kind}`"),
        WireError::Audio(_) => "bad base64 audio".to_owned(),
    }
}

/// What one step of the socket task decided.
enum Flow {
    Continue,
    Stop(Option<EndReason>),
}

/// The task owning one conversation's socket.
struct SocketTask {
    socket: Socket,
    commands: mpsc::Receiver<EngineCommand>,
    events: mpsc::Sender<EngineEvent>,
    /// The last `error` frame, explaining the close that follows it.
    last_error: Option<super::elevenlabs_wire::ErrorEvent>,
}

impl SocketTask {
    async fn run(mut self, metadata: InitiationMetadata) {
        let started = EngineEvent::Started {
            conversation_id: metadata.conversation_id.clone(),
        };
        if self.events.send(started).await.is_err() {
            self.close().await;
            return;
        }
        if metadata.agent_output_audio_format != ULAW_8000
            || metadata.user_input_audio_format != ULAW_8000
        {
            self.close().await;
            let message = format!(
                "the agent streams `{}` and expects `{}`; caller passes 8 kHz μ-law through \
                 without transcoding, so set both formats to `{ULAW_8000}` on the agent",
                metadata.agent_output_audio_format, metadata.user_input_audio_format
            );
            self.finish(EndReason::Failed {
                kind: "unsupported_audio_format".to_owned(),
                message,
            })
            .await;
            return;
        }
        loop {
            let flow = tokio::select! {
                // Server frames first: pings must not wait behind a burst of caller audio.
                biased;
                frame = self.socket.next() => self.on_frame(frame).await,
                command = self.commands.recv() => self.on_command(command).await,
            };
            match flow {
                Flow::Continue => {}
                Flow::Stop(Some(reason)) => {
                    self.finish(reason).await;
                    return;
                }
                // Nobody reads events any more: end the conversation as if asked to.
                Flow::Stop(None) => {
                    self.close().await;
                    return;
                }
            }
        }
    }

    async fn finish(&self, reason: EndReason) {
        // The receiver may be gone; the session is over either way.
        let _closed = self.events.send(EngineEvent::Ended(reason)).await;
    }

    async fn emit(&self, event: EngineEvent) -> Flow {
        match self.events.send(event).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop(None),
        }
    }

    /// Closes normally and waits (briefly) for the agent's acknowledgement.
    async fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        // Whatever the agent does now, we are done with it.
        let _elapsed = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }

    async fn on_command(&mut self, command: Option<EngineCommand>) -> Flow {
        let message = match command {
            Some(EngineCommand::Audio(audio)) => Message::text(user_audio_frame(&audio)),
            Some(EngineCommand::ToolResult {
                tool_call_id,
                result,
                is_error,
            }) => json_message(&ClientMessage::tool_result(tool_call_id, result, is_error)),
            Some(EngineCommand::ContextualUpdate(text)) => {
                json_message(&ClientMessage::ContextualUpdate {
                    text,
                    context_id: None,
                })
            }
            Some(EngineCommand::End) | None => {
                self.close().await;
                return Flow::Stop(Some(EndReason::Requested));
            }
        };
        match self.socket.send(message).await {
            Ok(()) => Flow::Continue,
            Err(err) => Flow::Stop(Some(EndReason::Disconnected(format!(
                "sending to the agent: {err}"
            )))),
        }
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Flow {
        let frame = match frame {
            None => {
                return Flow::Stop(Some(EndReason::Disconnected(
                    "the agent connection ended without a close".to_owned(),
                )));
            }
            Some(Err(err)) => {
                return Flow::Stop(Some(EndReason::Disconnected(format!(
                    "the agent connection broke: {err}"
                ))));
            }
            Some(Ok(frame)) => frame,
        };
        match frame {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Close(frame) => Flow::Stop(Some(self.close_reason(frame.as_ref()))),
            Message::Binary(_) => {
                tracing::warn!("skipping a binary frame from the agent");
                Flow::Continue
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
        }
    }

    fn close_reason(&self, frame: Option<&CloseFrame>) -> EndReason {
        let code = frame.map_or(1005, |frame| u16::from(frame.code));
        if code == 1000 {
            return EndReason::AgentEnded;
        }
        let reason = frame
            .map(|frame| frame.reason.to_string())
            .unwrap_or_default();
        match &self.last_error {
            Some(error) => EndReason::Failed {
                kind: error.error_type.clone().unwrap_or_else(|| code.to_string()),
                message: error.message.clone().unwrap_or(reason),
            },
            None => EndReason::Failed {
                kind: code.to_string(),
                message: reason,
            },
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let message = match parse_server(text) {
            Ok(message) => message,
            Err(err) => {
                tracing::warn!(error = %kind_of(&err), "skipping a bad message from the agent");
                return Flow::Continue;
            }
        };
        let event = match message {
            ServerMessage::Ping { ping_event } => {
                return match self.socket.send(json_message(&ping_event.pong())).await {
                    Ok(()) => Flow::Continue,
                    Err(err) => Flow::Stop(Some(EndReason::Disconnected(format!(
                        "answering a ping: {err}"
                    )))),
                };
            }
            ServerMessage::Audio { audio_event } => match audio_event.decode_audio() {
                Ok(audio) => EngineEvent::Audio(Bytes::from(audio)),
                Err(err) => {
                    tracing::warn!(error = %kind_of(&err), "skipping agent audio");
                    return Flow::Continue;
                }
            },
            ServerMessage::Interruption { .. } => EngineEvent::Interruption,
            ServerMessage::AgentResponse {
                agent_response_event,
            } => EngineEvent::AgentResponse(agent_response_event.agent_response),
            ServerMessage::UserTranscript {
                user_transcription_event,
            } => EngineEvent::UserTranscript(user_transcription_event.user_transcript),
            ServerMessage::ClientToolCall { client_tool_call } => EngineEvent::ToolCall {
                tool_call_id: client_tool_call.tool_call_id,
                name: client_tool_call.tool_name,
                parameters: serde_json::Value::Object(client_tool_call.parameters),
            },
            ServerMessage::Error { error_event } => {
                tracing::warn!(
                    code = error_event.code,
                    error_type = error_event.error_type.as_deref().unwrap_or(""),
                    "the agent reported an error"
                );
                self.last_error = Some(error_event);
                return Flow::Continue;
            }
            // Known but of no use to the converse stage.
            ServerMessage::ConversationInitiationMetadata { .. }
            | ServerMessage::TentativeUserTranscript { .. }
            | ServerMessage::AgentResponseCorrection { .. }
            | ServerMessage::VadScore { .. }
            | ServerMessage::InternalTentativeAgentResponse { .. } => return Flow::Continue,
            ServerMessage::Unknown { kind } => {
                tracing::warn!(kind = %kind, "skipping an unknown message from the agent");
                return Flow::Continue;
            }
        };
        self.emit(event).await
    }
}

fn json_message(message: &ClientMessage) -> Message {
    Message::text(serde_json::to_string(message).expect("client messages always serialize"))
}
