//! The Media Streams client (A8): Twilio's side of a `<Connect><Stream>` WebSocket.
//!
//! It sends `connected`, then `start` (`sequenceNumber` `"1"`, the `<Parameter>`s as
//! `customParameters`), then a `media` frame of 160 bytes of μ-law every 20 ms, and
//! `stop` when told to (the talk time is over, the call was hung up or redirected). The
//! frames are silence unless the behaviour's `caller_script` says to speak (a tone), wait for
//! the agent, talk over it or hang up (see [`CallerStep`]). Every
//! counter is a string and `sequenceNumber` counts every message after `connected`.
//!
//! From the server it counts `media` frames and keeps a playback clock: each frame's audio
//! (8 bytes per millisecond) queues after the last, a `mark` is echoed back once the audio
//! queued before it has "played", and `clear` empties the queue and echoes every pending
//! mark at once, as Twilio does. The upgrade request carries `X-Twilio-Signature` over the
//! stream URL (UNCONFIRMED for `<Stream>`, see A6).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use super::TwilioSimState;
use super::behaviour::CallerStep;
use super::twiml::StreamSpec;

/// What the simulator saw of one Media Stream session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaSession {
    /// The call the stream belongs to.
    pub call_sid: String,
    /// The stream's SID (`MZ` + 32 hex digits).
    pub stream_sid: String,
    /// The `<Stream url>` connected to.
    pub url: String,
    /// The `<Parameter>`s sent in `start.customParameters`.
    pub custom_parameters: BTreeMap<String, String>,
    /// True once the WebSocket handshake succeeded.
    pub connected: bool,
    /// `media` frames received from the server.
    pub media_received: usize,
    /// Names of the `mark`s received from the server, in order.
    pub marks_received: Vec<String>,
    /// Names of the `mark`s echoed back, in order.
    pub marks_echoed: Vec<String>,
    /// `clear` messages received.
    pub clears: usize,
    /// `media` frames sent to the server.
    pub frames_sent: usize,
    /// True once `stop` was sent.
    pub stopped: bool,
    /// Why connecting failed, if it did (the call then falls through its TwiML and ends).
    pub error: Option<String>,
    /// Every text frame received from the server, as sent (for schema checks).
    pub raw_received: Vec<String>,
    /// The agent's audio: the bytes of every `media` frame received, in order.
    pub agent_audio: Vec<u8>,
    /// When each `media` frame from the server arrived.
    pub agent_audio_at: Vec<Instant>,
    /// Stutters: consecutive agent `media` frames that arrived more than 200 ms but less than
    /// [`AGENT_PAUSE`] apart (a longer pause is the end of a sentence, not a gap).
    pub agent_gaps: usize,
    /// When each `clear` arrived.
    pub clears_at: Vec<Instant>,
    /// `media` frames of speech (the tone) sent.
    pub speech_frames_sent: usize,
    /// True when the call already had a stream before this one (the stream reconnected).
    pub reconnected: bool,
}

/// Silence from the agent this long after its audio means it finished a sentence.
pub const AGENT_PAUSE: Duration = Duration::from_millis(400);

/// A gap between agent frames longer than this (and shorter than [`AGENT_PAUSE`]) is a stutter.
const AGENT_GAP: Duration = Duration::from_millis(200);

/// Returns 20 ms of the simulated callee's speech: a 400 Hz square wave of about ±8,300
/// (μ-law `0x9F`/`0x1F`), far above silence.
#[must_use]
pub fn tone_frame() -> Vec<u8> {
    (0..FRAME_BYTES)
        .map(|index| if (index / 10) % 2 == 0 { 0x9F } else { 0x1F })
        .collect()
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaEnd {
    /// The simulator sent `stop` when asked to.
    Stopped,
    /// The server closed the socket (or it broke).
    Closed,
    /// The connection could not be opened.
    Failed,
}

/// Twilio's inbound packetisation: 20 ms frames.
const FRAME: Duration = Duration::from_millis(20);

/// 20 ms of 8 kHz μ-law.
const FRAME_BYTES: usize = 160;

/// μ-law silence (the encoding of a zero sample).
const MULAW_SILENCE: u8 = 0xFF;

/// How long the WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Streams call `call_sid` to `spec.url` until `stop` is cancelled or the server leaves.
pub(super) async fn run(
    state: TwilioSimState,
    call_sid: String,
    spec: StreamSpec,
    stop: CancellationToken,
) -> MediaEnd {
    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let index = {
        let mut book = state.book();
        let reconnected = book
            .media
            .iter()
            .any(|session| session.call_sid == call_sid);
        book.media.push(MediaSession {
            reconnected,
            call_sid: call_sid.clone(),
            stream_sid: stream_sid.clone(),
            url: spec.url.clone(),
            custom_parameters: spec.parameters.clone(),
            ..MediaSession::default()
        });
        book.media.len() - 1
    };
    let socket = match connect(&state, &spec.url).await {
        Ok(socket) => socket,
        Err(error) => {
            record(&state, index, |session| session.error = Some(error));
            return MediaEnd::Failed;
        }
    };
    record(&state, index, |session| session.connected = true);
    let mut session = Session {
        state,
        index,
        socket,
        call_sid,
        stream_sid,
        sequence: 0,
        playback: Playback::new(),
        last_agent_audio: None,
    };
    session.stream(&spec, &stop).await
}

async fn connect(state: &TwilioSimState, url: &str) -> Result<Socket, String> {
    let mut request = url
        .into_client_request()
        .map_err(|error| format!("invalid stream url: {error}"))?;
    if let Some(signature) = state.sign(url, &[])
        && let Ok(value) = HeaderValue::from_str(&signature)
    {
        request.headers_mut().insert("X-Twilio-Signature", value);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_elapsed) => Err("connecting timed out".to_owned()),
        Ok(Err(error)) => Err(format!("connecting failed: {error}")),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// Applies `change` to session `index` of the record.
fn record(state: &TwilioSimState, index: usize, change: impl FnOnce(&mut MediaSession)) {
    if let Some(session) = state.book().media.get_mut(index) {
        change(session);
    }
}

struct Session {
    state: TwilioSimState,
    index: usize,
    socket: Socket,
    call_sid: String,
    stream_sid: String,
    /// The last `sequenceNumber` sent.
    sequence: u64,
    playback: Playback,
    /// When the last agent `media` frame arrived.
    last_agent_audio: Option<Instant>,
}

impl Session {
    async fn stream(&mut self, spec: &StreamSpec, stop: &CancellationToken) -> MediaEnd {
        let account_sid = self.state.account_sid.clone();
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let start = json!({
            "event": "start",
            "sequenceNumber": self.next_sequence(),
            "start": {
                "accountSid": account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": spec.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.stream_sid,
        });
        if self.send(&connected).await.is_err() || self.send(&start).await.is_err() {
            return MediaEnd::Closed;
        }
        let silence = BASE64.encode([MULAW_SILENCE; FRAME_BYTES]);
        let speech = BASE64.encode(tone_frame());
        let mut script = Script::new(&self.state.behaviour().caller_script);
        let started = Instant::now();
        let mut chunk: u64 = 0;
        let mut ticks = tokio::time::interval(FRAME);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return self.stop(&account_sid).await,
                incoming = self.socket.next() => {
                    let Some(Ok(message)) = incoming else {
                        return MediaEnd::Closed;
                    };
                    match message {
                        Message::Text(text) => self.receive(text.as_str()),
                        Message::Close(_) => return MediaEnd::Closed,
                        Message::Binary(_) | Message::Ping(_) | Message::Pong(_)
                        | Message::Frame(_) => {}
                    }
                }
                _ = ticks.tick() => {
                    let (payload, speaking) = match script.tick(Instant::now(), self.last_agent_audio) {
                        Tick::Silence => (&silence, false),
                        Tick::Speech => (&speech, true),
                        Tick::Hangup => return self.stop(&account_sid).await,
                    };
                    chunk += 1;
                    let media = json!({
                        "event": "media",
                        "sequenceNumber": self.next_sequence(),
                        "media": {
                            "track": "inbound",
                            "chunk": chunk.to_string(),
                            "timestamp": started.elapsed().as_millis().to_string(),
                            "payload": payload,
                        },
                        "streamSid": self.stream_sid,
                    });
                    if self.send(&media).await.is_err() {
                        return MediaEnd::Closed;
                    }
                    record(&self.state, self.index, |session| {
                        session.frames_sent += 1;
                        session.speech_frames_sent += usize::from(speaking);
                    });
                }
            }
            let due = self.playback.due();
            if self.echo_marks(due).await.is_err() {
                return MediaEnd::Closed;
            }
        }
    }

    /// Sends `stop` and closes the socket.
    async fn stop(&mut self, account_sid: &str) -> MediaEnd {
        let stop = json!({
            "event": "stop",
            "sequenceNumber": self.next_sequence(),
            "stop": {"accountSid": account_sid, "callSid": self.call_sid},
            "streamSid": self.stream_sid,
        });
        if self.send(&stop).await.is_ok() {
            record(&self.state, self.index, |session| session.stopped = true);
        }
        let _closed = self.socket.close(None).await;
        MediaEnd::Stopped
    }

    /// Takes in one message from the server.
    fn receive(&mut self, text: &str) {
        record(&self.state, self.index, |session| {
            session.raw_received.push(text.to_owned());
        });
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        match message["event"].as_str() {
            Some("media") => {
                let payload = message["media"]["payload"].as_str().unwrap_or_default();
                let audio = BASE64.decode(payload).unwrap_or_default();
                self.playback.queue_audio(audio.len());
                let now = Instant::now();
                let gap = self.last_agent_audio.is_some_and(|last| {
                    let since = now.duration_since(last);
                    since > AGENT_GAP && since < AGENT_PAUSE
                });
                self.last_agent_audio = Some(now);
                record(&self.state, self.index, |session| {
                    session.media_received += 1;
                    session.agent_audio.extend_from_slice(&audio);
                    session.agent_audio_at.push(now);
                    session.agent_gaps += usize::from(gap);
                });
            }
            Some("mark") => {
                let name = message["mark"]["name"].as_str().unwrap_or_default();
                self.playback.mark(name.to_owned());
                record(&self.state, self.index, |session| {
                    session.marks_received.push(name.to_owned());
                });
            }
            Some("clear") => {
                self.playback.clear();
                let now = Instant::now();
                record(&self.state, self.index, |session| {
                    session.clears += 1;
                    session.clears_at.push(now);
                });
            }
            _ => {}
        }
    }

    async fn echo_marks(&mut self, names: Vec<String>) -> Result<(), ()> {
        for name in names {
            let echo = json!({
                "event": "mark",
                "sequenceNumber": self.next_sequence(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            });
            self.send(&echo).await?;
            record(&self.state, self.index, |session| {
                session.marks_echoed.push(name);
            });
        }
        Ok(())
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    async fn send(&mut self, message: &Value) -> Result<(), ()> {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(drop)
    }
}

/// Twilio's playback buffer, as far as marks can tell.
struct Playback {
    /// When the audio queued so far has finished playing.
    until: Instant,
    /// Marks waiting for the audio before them, with when that audio ends.
    pending: VecDeque<(Instant, String)>,
}

impl Playback {
    fn new() -> Self {
        Self {
            until: Instant::now(),
            pending: VecDeque::new(),
        }
    }

    fn queue_audio(&mut self, bytes: usize) {
        // 8 kHz μ-law: 8 bytes per millisecond.
        let millis = u64::try_from(bytes / 8).unwrap_or(u64::MAX);
        self.until = self.until.max(Instant::now()) + Duration::from_millis(millis);
    }

    fn mark(&mut self, name: String) {
        let played_at = self.until.max(Instant::now());
        self.pending.push_back((played_at, name));
    }

    /// Empties the buffer: every pending mark is due at once.
    fn clear(&mut self) {
        let now = Instant::now();
        self.until = now;
        for (played_at, _) in &mut self.pending {
            *played_at = now;
        }
    }

    /// Removes and returns the marks whose audio has played, in order.
    fn due(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((played_at, _)) = self.pending.front() {
            if *played_at > now {
                break;
            }
            if let Some((_, name)) = self.pending.pop_front() {
                due.push(name);
            }
        }
        due
    }
}

/// What the callee sends on one 20 ms tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    Silence,
    Speech,
    Hangup,
}

/// The step being played.
#[derive(Debug, Clone, Copy)]
enum Running {
    /// Frames of silence or speech left.
    Frames { left: u64, speak: bool },
    /// Waiting since `since` for the agent to finish a sentence, at most until `until`.
    AgentSentence { since: Instant, until: Instant },
    /// Waiting since `since` for agent audio, then speaking for `ms`.
    OverAgent { since: Instant, ms: u64 },
}

/// The callee's script, played one tick at a time.
struct Script {
    steps: VecDeque<CallerStep>,
    current: Option<Running>,
}

impl Script {
    fn new(steps: &[CallerStep]) -> Self {
        Self {
            steps: steps.iter().copied().collect(),
            current: None,
        }
    }

    /// Returns what to send now; `last_agent` is when agent audio last arrived.
    fn tick(&mut self, now: Instant, last_agent: Option<Instant>) -> Tick {
        let frames = |ms: u64| ms.div_ceil(20);
        loop {
            let running = match self.current.take() {
                Some(running) => running,
                None => match self.steps.pop_front() {
                    None => return Tick::Silence,
                    Some(CallerStep::Hangup) => return Tick::Hangup,
                    Some(CallerStep::Silence { ms }) => Running::Frames {
                        left: frames(ms),
                        speak: false,
                    },
                    Some(CallerStep::Speak { ms }) => Running::Frames {
                        left: frames(ms),
                        speak: true,
                    },
                    Some(CallerStep::WaitForAgentAudio { timeout_ms }) => Running::AgentSentence {
                        since: now,
                        until: now + Duration::from_millis(timeout_ms),
                    },
                    Some(CallerStep::SpeakOverAgent { ms }) => {
                        Running::OverAgent { since: now, ms }
                    }
                },
            };
            match running {
                Running::Frames { left: 0, .. } => {}
                Running::Frames { left, speak } => {
                    self.current = Some(Running::Frames {
                        left: left - 1,
                        speak,
                    });
                    return if speak { Tick::Speech } else { Tick::Silence };
                }
                Running::AgentSentence { since, until } => {
                    let finished = last_agent
                        .is_some_and(|at| at >= since && now.duration_since(at) >= AGENT_PAUSE);
                    if !finished && now < until {
                        self.current = Some(running);
                        return Tick::Silence;
                    }
                }
                Running::OverAgent { since, ms } => {
                    if last_agent.is_some_and(|at| at >= since) {
                        self.current = Some(Running::Frames {
                            left: frames(ms),
                            speak: true,
                        });
                    } else {
                        self.current = Some(running);
                        return Tick::Silence;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod script_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_script_speaks_waits_for_the_agent_and_hangs_up() {
        let mut script = Script::new(&[
            CallerStep::Speak { ms: 40 },
            CallerStep::WaitForAgentAudio { timeout_ms: 10_000 },
            CallerStep::SpeakOverAgent { ms: 20 },
            CallerStep::Hangup,
        ]);
        let start = Instant::now();
        assert_eq!(script.tick(start, None), Tick::Speech);
        assert_eq!(script.tick(start, None), Tick::Speech);
        // Waiting: no agent audio yet, then audio that is still too recent.
        let t1 = start + Duration::from_millis(60);
        assert_eq!(script.tick(t1, None), Tick::Silence);
        let agent = t1 + Duration::from_millis(20);
        assert_eq!(
            script.tick(agent + Duration::from_millis(100), Some(agent)),
            Tick::Silence
        );
        // The agent finished: the next step (talk over the agent) waits for new audio.
        let later = agent + AGENT_PAUSE;
        assert_eq!(script.tick(later, Some(agent)), Tick::Silence);
        let again = later + Duration::from_millis(20);
        assert_eq!(script.tick(again, Some(again)), Tick::Speech);
        assert_eq!(script.tick(again, Some(again)), Tick::Hangup);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_agent_gives_up_after_its_timeout() {
        let mut script = Script::new(&[CallerStep::WaitForAgentAudio { timeout_ms: 100 }]);
        let start = Instant::now();
        assert_eq!(script.tick(start, None), Tick::Silence);
        assert_eq!(
            script.tick(start + Duration::from_millis(100), None),
            Tick::Silence
        );
        assert!(script.current.is_none() && script.steps.is_empty());
        assert_eq!(tone_frame().len(), FRAME_BYTES);
    }
}
