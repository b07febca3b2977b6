//! The Media Streams client (A8): Twilio's side of a `<Connect><Stream>` WebSocket.
//!
//! It sends `connected`, then `start` (`sequenceNumber` `"1"`, the `<Parameter>`s as
//! `customParameters`), then a `media` frame of 160 bytes of μ-law silence every 20 ms, and
//! `stop` when told to (the talk time is over, the call was hung up or redirected). Every
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
        book.media.push(MediaSession {
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
        let started = Instant::now();
        let mut chunk: u64 = 0;
        let mut ticks = tokio::time::interval(FRAME);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
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
                    return MediaEnd::Stopped;
                }
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
                    chunk += 1;
                    let media = json!({
                        "event": "media",
                        "sequenceNumber": self.next_sequence(),
                        "media": {
                            "track": "inbound",
                            "chunk": chunk.to_string(),
                            "timestamp": started.elapsed().as_millis().to_string(),
                            "payload": silence,
                        },
                        "streamSid": self.stream_sid,
                    });
                    if self.send(&media).await.is_err() {
                        return MediaEnd::Closed;
                    }
                    record(&self.state, self.index, |session| session.frames_sent += 1);
                }
            }
            let due = self.playback.due();
            if self.echo_marks(due).await.is_err() {
                return MediaEnd::Closed;
            }
        }
    }

    /// Takes in one message from the server.
    fn receive(&mut self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        match message["event"].as_str() {
            Some("media") => {
                let payload = message["media"]["payload"].as_str().unwrap_or_default();
                let bytes = BASE64.decode(payload).map_or(0, |audio| audio.len());
                self.playback.queue_audio(bytes);
                record(&self.state, self.index, |session| {
                    session.media_received += 1
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
                record(&self.state, self.index, |session| session.clears += 1);
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
