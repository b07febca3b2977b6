//! The conversation WebSocket (B2–B6): one connection is one conversation.
//!
//! Four parts share a connection: the reader (this task) records client frames, answers
//! barge-in and echoes; the writer owns the socket's sending half and records what it sends;
//! the pinger; and the driver running the script. They share [`Live`] under a lock that is
//! never held across an await, and the reader tells the driver what it heard over a channel.
//!
//! Barge-in: agent audio "plays" at real time from when it is sent (`play_until`). When the
//! caller's speech starts (per [`super::audio::SpeechDetector`]) before that, the reader sends
//! `interruption` at once and the current `Say` sends no further chunk. The check and the
//! chunk sends happen under the same lock, so no chunk follows an interruption.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::stream::SplitStream;
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::audio::{self, Speech, SpeechDetector};
use super::script::{AgentBehaviour, FIRST_SLOT, Step};
use super::{
    ElevenLabsSimState, PendingPings, SimConversation, SimEnd, SimPong, SimToolResult, SimTurn,
};
use crate::voice::elevenlabs_wire::{
    AgentResponse, AudioEvent, ClientMessage, ClientToolCall, EventRef, InitiationMetadata, Ping,
    ServerMessage, Transcript,
};

/// Agent audio goes out in 100 ms chunks.
const CHUNK_MS: u64 = 100;

/// How long the agent waits for the optional initiation before starting anyway.
const INITIATION_WAIT: Duration = Duration::from_secs(2);

/// How long the agent waits for the client's close after its own.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What goes to the writer.
#[derive(Debug)]
enum Out {
    /// A server message.
    Frame(String),
    /// An `interruption` (its send time is recorded).
    Interruption(String),
    /// Close with this code.
    Close(u16),
    /// Break the connection without a close frame.
    Drop,
}

/// What the reader tells the driver.
#[derive(Debug)]
enum Heard {
    SpeechStarted,
    UtteranceEnded,
    ToolResult(String),
}

/// Per-connection state shared by the reader, the driver and the pinger.
#[derive(Debug)]
struct Live {
    next_event_id: u64,
    /// When the agent audio sent so far will have played out.
    play_until: Instant,
    /// Set by a barge-in; the current `Say` stops.
    interrupted: bool,
    /// The index of the agent turn a `Say` is speaking, to mark it interrupted.
    speaking_turn: Option<usize>,
    /// True once the agent has closed.
    agent_closed: bool,
    /// The script broke the connection ([`Step::Drop`]).
    dropped: bool,
    pending_pings: PendingPings,
}

impl Live {
    fn event_id(&mut self) -> u64 {
        self.next_event_id += 1;
        self.next_event_id
    }
}

/// One connection: the shared handles.
#[derive(Debug, Clone)]
struct Conn {
    state: ElevenLabsSimState,
    index: usize,
    out: mpsc::UnboundedSender<Out>,
    live: Arc<Mutex<Live>>,
    started_at: Instant,
}

impl Conn {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, message: &ServerMessage) {
        // A closed writer means the connection is over; the reader notices on its own.
        let _closed = self.out.send(Out::Frame(frame(message)));
    }

    fn event_id(&self) -> u64 {
        self.live().event_id()
    }

    fn seconds_in(&self) -> u64 {
        self.started_at.elapsed().as_secs()
    }

    fn push_turn(&self, turn: SimTurn) -> usize {
        let mut index = 0;
        self.state.update(self.index, |conversation| {
            conversation.transcript.push(turn);
            index = conversation.transcript.len() - 1;
        });
        index
    }
}

fn frame(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("server messages always serialize")
}

/// The query of the conversation URL.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ConnectQuery {
    agent_id: Option<String>,
    conversation_signature: Option<String>,
}

/// `GET /v1/convai/conversation?agent_id&conversation_signature` (WebSocket upgrade).
pub(super) async fn connect(
    State(state): State<ElevenLabsSimState>,
    Query(query): Query<ConnectQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (Some(agent_id), Some(signature)) = (query.agent_id, query.conversation_signature) else {
        return super::rest::detail(
            StatusCode::FORBIDDEN,
            "missing_signature",
            "A conversation signature is required",
        );
    };
    let Some(behaviour) = state.redeem(&agent_id, &signature) else {
        return super::rest::detail(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "The conversation signature is invalid, expired or already used",
        );
    };
    upgrade
        .on_upgrade(move |socket| converse(state, agent_id, behaviour, socket))
        .into_response()
}

async fn converse(
    state: ElevenLabsSimState,
    agent_id: String,
    behaviour: AgentBehaviour,
    socket: WebSocket,
) {
    let (sink, mut stream) = socket.split();
    let started_at = Instant::now();
    // The optional initiation comes first, if at all.
    let first = tokio::time::timeout(INITIATION_WAIT, stream.next())
        .await
        .ok()
        .flatten();
    let (first_text, initiation) = match first {
        Some(Ok(Message::Text(text))) => {
            let text = text.as_str().to_owned();
            match serde_json::from_str::<ClientMessage>(&text) {
                Ok(ClientMessage::ConversationInitiationClientData(_)) => {
                    let raw = serde_json::from_str::<serde_json::Value>(&text).ok();
                    (Some(text), raw)
                }
                _ => (Some(text), None),
            }
        }
        Some(Ok(Message::Close(_)) | Err(_)) => return,
        _ => (None, None),
    };
    let call_id = initiation
        .as_ref()
        .and_then(|raw| raw["dynamic_variables"]["call_id"].as_str())
        .map(str::to_owned);
    let first_message = initiation
        .as_ref()
        .and_then(|raw| raw["conversation_config_override"]["agent"]["first_message"].as_str())
        .filter(|text| !text.is_empty())
        .map(str::to_owned);
    let first_step = call_id.as_deref().map_or(0, |call| state.progress(call));
    let conversation_id = format!("conv_{}", uuid::Uuid::new_v4().simple());
    let index = {
        let mut book = state.book();
        book.conversations.push(SimConversation {
            agent_id: agent_id.clone(),
            conversation_id: conversation_id.clone(),
            call_id: call_id.clone(),
            initiation: initiation.clone(),
            client_frames: Vec::new(),
            server_frames: Vec::new(),
            contextual_updates: Vec::new(),
            tool_results: Vec::new(),
            pings: Vec::new(),
            pongs: Vec::new(),
            user_audio_bytes: 0,
            interruptions: Vec::new(),
            first_step,
            transcript: Vec::new(),
            started_at,
            start_unix_secs: chrono::Utc::now().timestamp(),
            duration: None,
            ended: None,
        });
        book.conversations.len() - 1
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let closing = CancellationToken::new();
    let writer = tokio::spawn(write(state.clone(), index, sink, out_rx, closing.clone()));
    let conn = Conn {
        state: state.clone(),
        index,
        out: out_tx,
        live: Arc::new(Mutex::new(Live {
            next_event_id: 0,
            play_until: started_at,
            interrupted: false,
            speaking_turn: None,
            agent_closed: false,
            dropped: false,
            pending_pings: PendingPings::new(),
        })),
        started_at,
    };
    conn.send(&ServerMessage::ConversationInitiationMetadata {
        conversation_initiation_metadata_event: InitiationMetadata {
            conversation_id,
            agent_output_audio_format: state.formats.0.clone(),
            user_input_audio_format: state.formats.1.clone(),
        },
    });
    let pinger = tokio::spawn(ping(conn.clone()));
    let (heard_tx, heard_rx) = mpsc::unbounded_channel();
    let echo = matches!(behaviour, AgentBehaviour::Echo);
    let driver = match behaviour {
        AgentBehaviour::Script(script) => {
            let mut steps: Vec<(Option<usize>, Step)> = script
                .steps
                .into_iter()
                .enumerate()
                .skip(first_step)
                .map(|(number, step)| (Some(number), step))
                .collect();
            if let Some(text) = first_message {
                // As ElevenLabs does, the override replaces the agent's greeting (a fresh
                // conversation's opening Say); a resumed one says it before going on.
                match steps.first_mut() {
                    Some((Some(0), Step::Say { text: greeting, .. })) => *greeting = text,
                    _ => {
                        let audio_ms = (text.len() as u64 * 50).clamp(400, 3000);
                        steps.insert(0, (None, Step::Say { text, audio_ms }));
                    }
                }
            }
            Some(tokio::spawn(drive(conn.clone(), call_id, steps, heard_rx)))
        }
        AgentBehaviour::Echo => None,
    };
    let mut reader = Reader {
        conn: conn.clone(),
        heard: heard_tx,
        detector: SpeechDetector::new(state.speech),
        echo,
    };
    if let Some(text) = first_text {
        reader.on_text(text);
    }
    let end = reader.run(&mut stream, &closing).await;
    if let Some(driver) = driver {
        driver.abort();
    }
    pinger.abort();
    drop(reader);
    drop(conn);
    // The writer ends once every sender is gone (it closes the socket).
    if writer.await.is_err() {
        tracing::warn!("elevenlabs simulator writer panicked");
    }
    state.update(index, |conversation| {
        conversation.ended = Some(end);
        conversation.duration = Some(started_at.elapsed());
    });
    super::webhook::deliver(&state, index).await;
}

/// Sends what the other parts queue, recording each frame.
async fn write(
    state: ElevenLabsSimState,
    index: usize,
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut out: mpsc::UnboundedReceiver<Out>,
    closing: CancellationToken,
) {
    while let Some(item) = out.recv().await {
        let (text, interruption) = match item {
            Out::Frame(text) => (text, false),
            Out::Interruption(text) => (text, true),
            Out::Drop => {
                // No close frame: both halves go, and the client sees the connection break.
                closing.cancel();
                return;
            }
            Out::Close(code) => {
                let close = CloseFrame {
                    code,
                    reason: "".into(),
                };
                // A failed close means the client is already gone.
                let _gone = sink.send(Message::Close(Some(close))).await;
                let grace = closing.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(CLOSE_GRACE).await;
                    grace.cancel();
                });
                // Nothing may follow a close: drain and drop the rest.
                while out.recv().await.is_some() {}
                return;
            }
        };
        if sink.send(Message::Text(text.clone().into())).await.is_err() {
            break;
        }
        let sent_at = Instant::now();
        state.update(index, |conversation| {
            conversation.server_frames.push(text);
            if interruption {
                conversation.interruptions.push(sent_at);
            }
        });
    }
    // The connection is over (or broken): close our half if we still can.
    let _gone = sink.close().await;
}

/// Pings every interval, remembering which pings await their pong.
async fn ping(conn: Conn) {
    let mut ticks = tokio::time::interval_at(
        Instant::now() + conn.state.ping_interval,
        conn.state.ping_interval,
    );
    loop {
        ticks.tick().await;
        let event_id = {
            let mut live = conn.live();
            if live.agent_closed {
                return;
            }
            let event_id = live.event_id();
            live.pending_pings.insert(event_id);
            event_id
        };
        conn.state
            .update(conn.index, |conversation| conversation.pings.push(event_id));
        conn.send(&ServerMessage::Ping {
            ping_event: Ping {
                event_id,
                ping_ms: None,
            },
        });
    }
}

/// The reading half of a connection.
struct Reader {
    conn: Conn,
    heard: mpsc::UnboundedSender<Heard>,
    detector: SpeechDetector,
    echo: bool,
}

impl Reader {
    async fn run(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        closing: &CancellationToken,
    ) -> SimEnd {
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = closing.cancelled() => {
                    if self.conn.live().dropped {
                        return SimEnd::Disconnected;
                    }
                    return SimEnd::AgentEnded;
                }
            };
            match frame {
                Some(Ok(Message::Text(text))) => self.on_text(text.as_str().to_owned()),
                Some(Ok(Message::Close(close))) => {
                    if self.conn.live().agent_closed {
                        return SimEnd::AgentEnded;
                    }
                    return SimEnd::ClientClosed(close.map_or(1005, |close| close.code));
                }
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) | None => {
                    if self.conn.live().agent_closed {
                        return SimEnd::AgentEnded;
                    }
                    return SimEnd::Disconnected;
                }
            }
        }
    }

    fn on_text(&mut self, text: String) {
        let message = serde_json::from_str::<ClientMessage>(&text);
        let conn = self.conn.clone();
        match message {
            Ok(ClientMessage::UserAudioChunk { user_audio_chunk }) => {
                self.on_audio(user_audio_chunk);
            }
            Ok(ClientMessage::Pong { event_id }) => {
                let matched = conn.live().pending_pings.remove(&event_id);
                conn.state.update(conn.index, |conversation| {
                    conversation.pongs.push(SimPong { event_id, matched });
                });
            }
            Ok(ClientMessage::ClientToolResult {
                tool_call_id,
                result,
                is_error,
            }) => {
                let received = SimToolResult {
                    tool_call_id: tool_call_id.clone(),
                    result,
                    is_error,
                };
                conn.state.update(conn.index, |conversation| {
                    let turn = conversation.transcript.iter_mut().rev().find(|turn| {
                        turn.tool_call
                            .as_ref()
                            .is_some_and(|(id, _, _)| *id == tool_call_id)
                    });
                    if let Some(turn) = turn {
                        turn.tool_result = Some(received.clone());
                    }
                    conversation.tool_results.push(received);
                });
                // The driver may be gone (echo, or the script is over).
                let _gone = self.heard.send(Heard::ToolResult(tool_call_id));
            }
            Ok(ClientMessage::ContextualUpdate { text: update, .. }) => {
                conn.state.update(conn.index, |conversation| {
                    conversation.contextual_updates.push(update);
                });
            }
            Ok(_) => {}
            Err(_) => tracing::warn!("elevenlabs simulator skipped an unreadable client frame"),
        }
        conn.state.update(conn.index, |conversation| {
            conversation.client_frames.push(text)
        });
    }

    fn on_audio(&mut self, base64: String) {
        let Ok(audio) = BASE64.decode(&base64) else {
            tracing::warn!("elevenlabs simulator skipped undecodable caller audio");
            return;
        };
        let conn = self.conn.clone();
        conn.state.update(conn.index, |conversation| {
            conversation.user_audio_bytes += audio.len() as u64;
        });
        if self.echo {
            let event_id = conn.event_id();
            conn.send(&ServerMessage::Audio {
                audio_event: AudioEvent {
                    audio_base_64: base64,
                    event_id,
                    alignment: None,
                },
            });
            return;
        }
        let heard = &self.heard;
        self.detector.push(&audio, |speech| match speech {
            Speech::Started => {
                barge_in(&conn);
                let _gone = heard.send(Heard::SpeechStarted);
            }
            Speech::Ended => {
                let _gone = heard.send(Heard::UtteranceEnded);
            }
        });
    }
}

/// Interrupts the agent if its audio is still playing.
fn barge_in(conn: &Conn) {
    let mut live = conn.live();
    let now = Instant::now();
    if live.agent_closed || live.play_until <= now {
        return;
    }
    live.interrupted = true;
    live.play_until = now;
    let turn = live.speaking_turn;
    let event_id = live.event_id();
    let message = ServerMessage::Interruption {
        interruption_event: EventRef { event_id },
    };
    // Under the lock, so no chunk of the interrupted `Say` can follow it.
    let _closed = conn.out.send(Out::Interruption(frame(&message)));
    drop(live);
    if let Some(turn) = turn {
        conn.state.update(conn.index, |conversation| {
            if let Some(turn) = conversation.transcript.get_mut(turn) {
                turn.interrupted = true;
            }
        });
    }
}

/// Runs the script's `steps` (the script index of each, `None` for the first message),
/// recording the progress of `call_id`.
async fn drive(
    conn: Conn,
    call_id: Option<String>,
    steps: Vec<(Option<usize>, Step)>,
    mut heard: mpsc::UnboundedReceiver<Heard>,
) {
    let mut tool_calls = 0_u32;
    for (number, step) in steps {
        match step {
            Step::Say { text, audio_ms } => say(&conn, text, audio_ms).await,
            Step::Listen { transcript } => {
                listen(&conn, &mut heard).await;
                let event_id = conn.event_id();
                conn.send(&ServerMessage::UserTranscript {
                    user_transcription_event: Transcript {
                        user_transcript: transcript.clone(),
                        event_id,
                    },
                });
                conn.push_turn(SimTurn {
                    role: "user",
                    message: Some(transcript),
                    time_in_call_secs: conn.seconds_in(),
                    tool_call: None,
                    tool_result: None,
                    interrupted: false,
                });
            }
            Step::Tool {
                name,
                parameters,
                wait,
            } => {
                tool_calls += 1;
                let tool_call_id = format!("toolu_sim_{}_{tool_calls}", conn.index);
                let parameters = fill_first_slot(&conn, parameters);
                call_tool(&conn, &tool_call_id, name, parameters);
                if wait {
                    await_tool_result(&conn, &tool_call_id, &mut heard).await;
                }
            }
            Step::Pause { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            Step::Drop => {
                record_progress(&conn, call_id.as_deref(), number);
                conn.live().dropped = true;
                let _closed = conn.out.send(Out::Drop);
                return;
            }
            Step::End => {
                let play_until = conn.live().play_until;
                tokio::time::sleep_until(play_until).await;
                record_progress(&conn, call_id.as_deref(), number);
                conn.live().agent_closed = true;
                let _closed = conn.out.send(Out::Close(1000));
                return;
            }
        }
        record_progress(&conn, call_id.as_deref(), number);
    }
}

fn record_progress(conn: &Conn, call_id: Option<&str>, number: Option<usize>) {
    if let (Some(call_id), Some(number)) = (call_id, number) {
        conn.state
            .book()
            .progress
            .insert(call_id.to_owned(), number + 1);
    }
}

/// Sends `agent_response`, then the audio in paced chunks until done or interrupted.
async fn say(conn: &Conn, text: String, audio_ms: u64) {
    let event_id = conn.event_id();
    conn.send(&ServerMessage::AgentResponse {
        agent_response_event: AgentResponse {
            agent_response: text.clone(),
            event_id,
        },
    });
    let turn = conn.push_turn(SimTurn {
        role: "agent",
        message: Some(text),
        time_in_call_secs: conn.seconds_in(),
        tool_call: None,
        tool_result: None,
        interrupted: false,
    });
    {
        let mut live = conn.live();
        live.interrupted = false;
        live.speaking_turn = Some(turn);
    }
    let mut sent_ms = 0;
    while sent_ms < audio_ms {
        let chunk_ms = CHUNK_MS.min(audio_ms - sent_ms);
        let chunk = audio::tone(chunk_ms, sent_ms * audio::BYTES_PER_MS as u64);
        {
            let mut live = conn.live();
            if live.interrupted {
                break;
            }
            let now = Instant::now();
            live.play_until = live.play_until.max(now) + Duration::from_millis(chunk_ms);
            let event_id = live.event_id();
            let message = ServerMessage::Audio {
                audio_event: AudioEvent {
                    audio_base_64: BASE64.encode(&chunk),
                    event_id,
                    alignment: None,
                },
            };
            // Under the lock: see `barge_in`.
            let _closed = conn.out.send(Out::Frame(frame(&message)));
        }
        sent_ms += chunk_ms;
        if sent_ms < audio_ms {
            let pace = Duration::from_millis(chunk_ms).div_f64(conn.state.audio_speed);
            tokio::time::sleep(pace).await;
        }
    }
    conn.live().speaking_turn = None;
}

/// Waits for the end of an utterance, or the listen timeout.
async fn listen(conn: &Conn, heard: &mut mpsc::UnboundedReceiver<Heard>) {
    let deadline = Instant::now() + conn.state.listen_timeout;
    loop {
        match tokio::time::timeout_at(deadline, heard.recv()).await {
            Ok(Some(Heard::UtteranceEnded)) | Err(_) => return,
            Ok(Some(Heard::SpeechStarted | Heard::ToolResult(_))) => {}
            // The reader is gone: so is the connection.
            Ok(None) => std::future::pending().await,
        }
    }
}

/// Replaces every string parameter equal to [`FIRST_SLOT`] with the `start` of the first slot
/// (or alternative) in the latest tool result that offered any, so a script can book what it
/// was just offered whatever the lead's zone, the day or earlier bookings. Without such a
/// result the placeholder stays, and the platform refuses it as a time.
fn fill_first_slot(conn: &Conn, parameters: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(mut map) = parameters else {
        return parameters;
    };
    if !map.values().any(|value| value == FIRST_SLOT) {
        return serde_json::Value::Object(map);
    }
    let mut offered = None;
    conn.state.update(conn.index, |conversation| {
        offered = conversation
            .tool_results
            .iter()
            .rev()
            .find_map(|result| first_offered_start(&result.result));
    });
    if let Some(start) = offered {
        for value in map.values_mut() {
            if value == FIRST_SLOT {
                *value = serde_json::Value::String(start.clone());
            }
        }
    }
    serde_json::Value::Object(map)
}

/// The `start` of the first entry of `slots` (else `alternatives`) in a tool result's JSON.
fn first_offered_start(result: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(result).ok()?;
    ["slots", "alternatives"].into_iter().find_map(|key| {
        value
            .get(key)?
            .as_array()?
            .first()?
            .get("start")?
            .as_str()
            .map(str::to_owned)
    })
}

fn call_tool(conn: &Conn, tool_call_id: &str, name: String, parameters: serde_json::Value) {
    let parameters = match parameters {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let event_id = conn.event_id();
    conn.send(&ServerMessage::ClientToolCall {
        client_tool_call: ClientToolCall {
            tool_name: name.clone(),
            tool_call_id: tool_call_id.to_owned(),
            parameters: parameters.clone(),
            event_id,
        },
    });
    conn.push_turn(SimTurn {
        role: "agent",
        message: None,
        time_in_call_secs: conn.seconds_in(),
        tool_call: Some((
            tool_call_id.to_owned(),
            name,
            serde_json::Value::Object(parameters),
        )),
        tool_result: None,
        interrupted: false,
    });
}

/// Waits for the result of `tool_call_id`, or the tool timeout.
async fn await_tool_result(
    conn: &Conn,
    tool_call_id: &str,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) {
    let deadline = Instant::now() + conn.state.tool_timeout;
    loop {
        match tokio::time::timeout_at(deadline, heard.recv()).await {
            Ok(Some(Heard::ToolResult(id))) if id == tool_call_id => return,
            Ok(Some(_)) => {}
            Err(_) => {
                tracing::warn!(
                    tool_call_id,
                    "elevenlabs simulator gave up waiting for a tool result"
                );
                return;
            }
            Ok(None) => std::future::pending().await,
        }
    }
}
