//! A test double of ElevenLabs Agents (protocols B1–B11): signed URLs, the conversation
//! WebSocket driven by per-agent [`Script`]s (or an echo agent), conversation details, and
//! signed post-call webhooks. It records everything it is sent and sends.
//!
//! - REST (`rest`): `GET /v1/convai/conversation/get-signed-url` (and the deprecated
//!   `get_signed_url`), `GET /v1/convai/conversations` and `GET /v1/convai/conversations/{id}`
//!   (B10 shape). Every request needs the configured `xi-api-key`, else 401.
//! - WebSocket (`ws`): `/v1/convai/conversation?agent_id&conversation_signature` with a
//!   signature that is single-use and expires after 15 minutes, else 403 before the upgrade.
//!   The agent answers the initiation with `ulaw_8000` metadata, pings every
//!   [`ElevenLabsSimState::with_ping_interval`], runs its script (tone audio paced at
//!   real time times [`ElevenLabsSimState::with_audio_speed`]; caller speech over playing
//!   agent audio gets an `interruption` at once) and resumes a script per
//!   `dynamic_variables.call_id` across connections.
//! - Webhook (`webhook`): after each conversation, when configured, a
//!   `post_call_transcription` signed with `ElevenLabs-Signature` (B11).
//!
//! Invariant: every server frame is one of the AsyncAPI's server messages, built from
//! [`crate::voice::elevenlabs_wire::ServerMessage`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use tokio::time::Instant;

use crate::secret::Secret;

pub mod audio;
mod rest;
mod script;
mod webhook;
mod ws;

#[cfg(test)]
mod tests;

pub use self::script::{AgentBehaviour, FIRST_SLOT, Script, Step};
pub use self::webhook::signature_header;

/// How long a signed URL stays valid.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);

/// A tool result the agent received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimToolResult {
    /// The call answered.
    pub tool_call_id: String,
    /// The result text.
    pub result: String,
    /// Whether the tool failed.
    pub is_error: bool,
}

/// A pong the agent received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPong {
    /// The `event_id` it carried.
    pub event_id: u64,
    /// False when no ping with that `event_id` was waiting for its pong (a wrong answer).
    pub matched: bool,
}

/// A transcript turn as the simulated agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTurn {
    /// `agent` or `user`.
    pub role: &'static str,
    /// What was said; `None` for a turn that is only a tool call.
    pub message: Option<String>,
    /// Seconds since the conversation started.
    pub time_in_call_secs: u64,
    /// `(tool_call_id, tool_name, parameters)` of a tool call made in this turn.
    pub tool_call: Option<(String, String, serde_json::Value)>,
    /// The result received for that tool call.
    pub tool_result: Option<SimToolResult>,
    /// True when the caller cut this agent turn short.
    pub interrupted: bool,
}

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimEnd {
    /// The agent's script ended it (close 1000 from the agent).
    AgentEnded,
    /// The client closed with this code.
    ClientClosed(u16),
    /// The connection broke without a close.
    Disconnected,
}

/// One post-call webhook attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimWebhookDelivery {
    /// The conversation reported.
    pub conversation_id: String,
    /// The raw body sent.
    pub body: String,
    /// The `ElevenLabs-Signature` header sent.
    pub signature: String,
    /// The status answered; `None` when no answer came.
    pub status: Option<u16>,
}

/// Everything the simulator saw and sent in one conversation (one WebSocket connection).
#[derive(Debug, Clone)]
pub struct SimConversation {
    /// The agent.
    pub agent_id: String,
    /// The conversation id sent in the metadata.
    pub conversation_id: String,
    /// `dynamic_variables.call_id` of the initiation, when given.
    pub call_id: Option<String>,
    /// The `conversation_initiation_client_data` received, as JSON.
    pub initiation: Option<serde_json::Value>,
    /// Every text frame received, raw.
    pub client_frames: Vec<String>,
    /// Every text frame sent, raw.
    pub server_frames: Vec<String>,
    /// Every `contextual_update` text received.
    pub contextual_updates: Vec<String>,
    /// Every `client_tool_result` received.
    pub tool_results: Vec<SimToolResult>,
    /// The `event_id` of every ping sent.
    pub pings: Vec<u64>,
    /// Every pong received.
    pub pongs: Vec<SimPong>,
    /// Bytes of caller audio received.
    pub user_audio_bytes: u64,
    /// When each `interruption` was sent (for barge-in latency).
    pub interruptions: Vec<Instant>,
    /// The index of the script step this connection started at (0 unless resumed).
    pub first_step: usize,
    /// The transcript.
    pub transcript: Vec<SimTurn>,
    /// When the connection was accepted.
    pub started_at: Instant,
    /// The same, in unix seconds.
    pub start_unix_secs: i64,
    /// How long it lasted, once ended.
    pub duration: Option<Duration>,
    /// How it ended; `None` while it runs.
    pub ended: Option<SimEnd>,
}

impl SimConversation {
    /// Returns the pongs whose `event_id` matched no waiting ping.
    #[must_use]
    pub fn wrong_pongs(&self) -> Vec<SimPong> {
        self.pongs
            .iter()
            .filter(|pong| !pong.matched)
            .copied()
            .collect()
    }
}

/// A signed URL's signature.
#[derive(Debug)]
struct Signature {
    agent_id: String,
    issued: Instant,
    used: bool,
}

#[derive(Debug, Default)]
struct Book {
    signatures: HashMap<String, Signature>,
    conversations: Vec<SimConversation>,
    /// The next script step per `call_id`.
    progress: HashMap<String, usize>,
    webhooks: Vec<SimWebhookDelivery>,
}

/// Where post-call webhooks go.
#[derive(Debug, Clone)]
struct PostCallWebhook {
    url: String,
    secret: Secret<String>,
}

/// The simulator's configuration and record; clones share the record.
#[derive(Debug, Clone)]
pub struct ElevenLabsSimState {
    api_key: Secret<String>,
    agents: Arc<BTreeMap<String, AgentBehaviour>>,
    webhook: Option<PostCallWebhook>,
    ping_interval: Duration,
    audio_speed: f64,
    speech: audio::SpeechDetection,
    listen_timeout: Duration,
    tool_timeout: Duration,
    formats: (String, String),
    http: reqwest::Client,
    book: Arc<Mutex<Book>>,
}

impl Default for ElevenLabsSimState {
    /// Returns a simulator accepting [`super::sim::SimAccounts`]' default ElevenLabs key,
    /// with no agents.
    fn default() -> Self {
        Self::new(&super::sim::SimAccounts::default().elevenlabs_api_key)
    }
}

impl ElevenLabsSimState {
    /// Returns a simulator accepting `api_key`, with no agents, pings every 2 s, audio paced
    /// at real time, 10 s listen and 20 s tool timeouts, and `ulaw_8000` both ways.
    #[must_use]
    pub fn new(api_key: &str) -> Self {
        Self {
            api_key: Secret::new(api_key.to_owned()),
            agents: Arc::new(BTreeMap::new()),
            webhook: None,
            ping_interval: Duration::from_secs(2),
            audio_speed: 1.0,
            speech: audio::SpeechDetection::default(),
            listen_timeout: Duration::from_secs(10),
            tool_timeout: Duration::from_secs(20),
            formats: ("ulaw_8000".to_owned(), "ulaw_8000".to_owned()),
            http: super::http::client(),
            book: Arc::new(Mutex::new(Book::default())),
        }
    }

    /// Returns the simulator with agent `agent_id` following `script`.
    #[must_use]
    pub fn with_agent(self, agent_id: &str, script: Script) -> Self {
        self.with_behaviour(agent_id, AgentBehaviour::Script(script))
    }

    /// Returns the simulator with an echo agent `agent_id`.
    #[must_use]
    pub fn with_echo_agent(self, agent_id: &str) -> Self {
        self.with_behaviour(agent_id, AgentBehaviour::Echo)
    }

    /// Returns the simulator with agent `agent_id` behaving as `behaviour`.
    #[must_use]
    pub fn with_behaviour(mut self, agent_id: &str, behaviour: AgentBehaviour) -> Self {
        Arc::make_mut(&mut self.agents).insert(agent_id.to_owned(), behaviour);
        self
    }

    /// Returns the simulator posting signed post-call webhooks to `url`.
    #[must_use]
    pub fn with_post_call_webhook(self, url: &str, secret: &str) -> Self {
        Self {
            webhook: Some(PostCallWebhook {
                url: url.to_owned(),
                secret: Secret::new(secret.to_owned()),
            }),
            ..self
        }
    }

    /// Returns the simulator pinging every `interval`.
    #[must_use]
    pub fn with_ping_interval(self, interval: Duration) -> Self {
        Self {
            ping_interval: interval.max(Duration::from_millis(1)),
            ..self
        }
    }

    /// Returns the simulator sending agent audio `speed` times faster than real time
    /// (playback, and so barge-in, still follows the wall clock at real time).
    #[must_use]
    pub fn with_audio_speed(self, speed: f64) -> Self {
        Self {
            audio_speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
            ..self
        }
    }

    /// Returns the simulator giving up listening after `timeout` (then sending the
    /// transcript anyway).
    #[must_use]
    pub fn with_listen_timeout(self, timeout: Duration) -> Self {
        Self {
            listen_timeout: timeout,
            ..self
        }
    }

    /// Returns the simulator waiting at most `timeout` for a tool result.
    #[must_use]
    pub fn with_tool_timeout(self, timeout: Duration) -> Self {
        Self {
            tool_timeout: timeout,
            ..self
        }
    }

    /// Returns the simulator detecting speech with `detection`.
    #[must_use]
    pub fn with_speech_detection(self, detection: audio::SpeechDetection) -> Self {
        Self {
            speech: detection,
            ..self
        }
    }

    /// Returns the simulator announcing these audio formats in its metadata (to test
    /// clients against a misconfigured agent; the audio sent stays μ-law).
    #[must_use]
    pub fn with_audio_formats(self, agent_output: &str, user_input: &str) -> Self {
        Self {
            formats: (agent_output.to_owned(), user_input.to_owned()),
            ..self
        }
    }

    /// Returns every conversation, in the order they were opened.
    #[must_use]
    pub fn conversations(&self) -> Vec<SimConversation> {
        self.book().conversations.clone()
    }

    /// Returns conversation `conversation_id`.
    #[must_use]
    pub fn conversation(&self, conversation_id: &str) -> Option<SimConversation> {
        self.book()
            .conversations
            .iter()
            .find(|conversation| conversation.conversation_id == conversation_id)
            .cloned()
    }

    /// Returns every post-call webhook attempt, in order.
    #[must_use]
    pub fn webhook_deliveries(&self) -> Vec<SimWebhookDelivery> {
        self.book().webhooks.clone()
    }

    /// Returns the next script step of call `call_id` (0 if it never connected).
    #[must_use]
    pub fn progress(&self, call_id: &str) -> usize {
        self.book().progress.get(call_id).copied().unwrap_or(0)
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panicking test thread must not hide the record from the others.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to conversation number `index`.
    fn update(&self, index: usize, change: impl FnOnce(&mut SimConversation)) {
        if let Some(conversation) = self.book().conversations.get_mut(index) {
            change(conversation);
        }
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        headers
            .get("xi-api-key")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|key| {
                subtle::ConstantTimeEq::ct_eq(key.as_bytes(), self.api_key.expose().as_bytes())
                    .into()
            })
    }

    /// Issues a signature for `agent_id`.
    fn issue_signature(&self, agent_id: &str) -> String {
        let signature = format!("cvtkn_{}", uuid::Uuid::new_v4().simple());
        self.book().signatures.insert(
            signature.clone(),
            Signature {
                agent_id: agent_id.to_owned(),
                issued: Instant::now(),
                used: false,
            },
        );
        signature
    }

    /// Spends `signature` for `agent_id`; returns the agent's behaviour if it was valid.
    fn redeem(&self, agent_id: &str, signature: &str) -> Option<AgentBehaviour> {
        let mut book = self.book();
        let entry = book.signatures.get_mut(signature)?;
        if entry.used || entry.agent_id != agent_id || entry.issued.elapsed() > SIGNATURE_TTL {
            return None;
        }
        entry.used = true;
        self.agents.get(agent_id).cloned()
    }
}

/// Returns the pings still waiting for their pong, shared by a connection's tasks.
type PendingPings = BTreeSet<u64>;

/// Returns the simulator's router over `state`.
pub fn router(state: ElevenLabsSimState) -> Router {
    Router::new()
        .route(
            "/v1/convai/conversation/get-signed-url",
            get(rest::signed_url),
        )
        .route(
            "/v1/convai/conversation/get_signed_url",
            get(rest::signed_url),
        )
        .route("/v1/convai/conversation", get(ws::connect))
        .route("/v1/convai/conversations", get(rest::list_conversations))
        .route(
            "/v1/convai/conversations/{conversation_id}",
            get(rest::get_conversation),
        )
        .with_state(state)
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(state: ElevenLabsSimState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the elevenlabs simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    // Audio events are small and frequent: Nagle's algorithm would delay them.
    let listener = axum::serve::ListenerExt::tap_io(listener, |socket| {
        let _unset = socket.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %err, "elevenlabs simulator stopped");
        }
    });
    (addr, task)
}
