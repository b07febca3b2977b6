//! The latency the media path adds: per-frame round trip from a simulated Twilio Media Streams
//! client through the media gateway, NATS, the `converse` stage and a simulated voice engine
//! that echoes, and back — at 100, 500 and 1,000 concurrent calls — plus barge-in latency.
//!
//! `cargo bench --bench media --features test-util` starts a private `nats-server` and a
//! private PostgreSQL database, onboards one tenant (voice `elevenlabs`, an echo agent on an
//! in-process ElevenLabs simulator, `concurrency_cap` 10,000), serves the real media gateway
//! router on a loopback port (with its own NATS connection, as its own process would have), and
//! runs the real `converse` stage in-process (consumer and session supervisor, its own NATS
//! connection).
//!
//! For each level N of `BENCH_CALLS` (default `100,500,1000`) it creates N calls and attempts,
//! then opens N WebSocket clients acting as Twilio: `connected`, `start` (signed stream
//! parameters), then one `media` frame of 160 μ-law bytes every 20 ms, the calls' send phases
//! spread evenly over the 20 ms. Each payload carries the call's index, a sequence number and
//! its send time (bytes 0–20, silence after); the echo agent returns every `user_audio_chunk`
//! unchanged as `audio` and the converse worker forwards it unchanged, so each client checks
//! every echoed payload byte for byte and takes receive time − send time as the frame's
//! latency. Setup (all N opened at once): from `start` sent to the first echoed frame. Once
//! every call has echoed, after `BENCH_WARMUP_MS` (default 1000) it measures frames sent during
//! `BENCH_SECONDS` (default 10); a frame not back 2 s after that window is lost. Then every
//! client sends `stop` and the run waits for every conversation to end.
//!
//! Then it reports the largest N whose p99 ≤ 20 ms (one frame), probing up to
//! `BENCH_EXTRA_LEVELS` (default 3) extra levels to find it, and measures barge-in latency:
//! `BENCH_BARGE_CALLS` (default 20) calls to a scripted agent that talks for a minute, each
//! caller speaking (a loud tone) from 1 s after the agent's first audio; from the simulator
//! sending `interruption` to the client receiving `clear`.
//!
//! Everything runs in one process on this machine: the clients compete with the gateway, the
//! worker, the simulator and nats-server for the same cores, so the figures are an upper
//! bound of what the path adds. Environment: `BENCH_CALLS`, `BENCH_SECONDS`,
//! `BENCH_WARMUP_MS`, `BENCH_EXTRA_LEVELS`, `BENCH_BARGE_CALLS`, `CALLER_TEST_DATABASE_URL`,
//! `NATS_SERVER_BIN`. Prints Markdown tables.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use caller::bus::Bus;
use caller::bus::provision::{self, Definitions};
use caller::bus::runner::Runtime;
use caller::calls::stream_token::{StreamClaims, StreamTokens};
use caller::crypto::Keyring;
use caller::events::lead::LeadSource;
use caller::events::lead_flow::{LeadResolved, TimezoneSource};
use caller::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};
use caller::media::gateway::MediaGateway;
use caller::media::twilio_stream::Outbound;
use caller::metrics::Metrics;
use caller::providers::sim_elevenlabs::{self, ElevenLabsSimState, Script, audio};
use caller::providers::sim_twilio::TwilioSimState;
use caller::settings::{ConverseSettings, MediaSettings, RunnerSettings, TelephonySettings};
use caller::shutdown::Shutdown;
use caller::store::Store;
use caller::store::calls::{self, NewAttempt, NewCall};
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::Utc;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

mod support;
use support::{cpu_time, env_number, percentile, start_nats};

/// One Twilio media frame: 20 ms of 8 kHz μ-law.
const FRAME: Duration = Duration::from_millis(20);
const FRAME_BYTES: usize = 160;
/// Bytes of the payload that identify a frame: call index, sequence number, send time.
const HEADER_BYTES: usize = 20;
/// How long after the measured window a frame may still come back.
const GRACE: Duration = Duration::from_secs(2);
/// The target: one frame time.
const TARGET: Duration = Duration::from_millis(20);
const EL_KEY: &str = "sim-elevenlabs-key";
const ECHO_AGENT: &str = "agent_echo";
const TALKING_AGENT: &str = "agent_talking";
const CALLER_NUMBER: &str = "+15125550100";

/// What the clients of one level share.
struct Shared {
    /// Send times are nanoseconds since this instant.
    epoch: Instant,
    /// The calls' send phases are offsets from this instant.
    base: Instant,
    /// The measured window, in nanoseconds since `epoch` (`u64::MAX` until set).
    from_ns: AtomicU64,
    until_ns: AtomicU64,
    /// Clients that have had a frame echoed.
    echoed: AtomicUsize,
    /// Tells the clients to send `stop`.
    stop: CancellationToken,
}

impl Shared {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            epoch: now,
            base: now,
            from_ns: AtomicU64::new(u64::MAX),
            until_ns: AtomicU64::new(u64::MAX),
            echoed: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn measured(&self, sent_ns: u64) -> bool {
        sent_ns >= self.from_ns.load(Ordering::Relaxed)
            && sent_ns < self.until_ns.load(Ordering::Relaxed)
    }
}

/// One simulated call's stream parameters.
struct Stream {
    index: u32,
    url: String,
    tenant: TenantId,
    call: CallId,
    attempt: AttemptId,
    token: String,
}

/// What one echo client saw.
#[derive(Default)]
struct EchoResult {
    sent: u64,
    sent_measured: u64,
    /// Round trips of measured frames, in microseconds.
    latencies_us: Vec<u32>,
    /// From `start` sent to the first echoed frame.
    setup: Option<Duration>,
    /// Echoed payloads that were not byte for byte what this call sent.
    corrupt: u64,
    /// Frames from the gateway that were not `media` (`mark`, `clear`).
    other: u64,
    /// The socket failed or closed before `stop`.
    broken: bool,
}

/// The payload of frame `seq` of call `index`, sent at `sent_ns`.
fn payload(index: u32, seq: u64, sent_ns: u64) -> [u8; FRAME_BYTES] {
    let mut bytes = [audio::SILENCE; FRAME_BYTES];
    bytes[0..4].copy_from_slice(&index.to_le_bytes());
    bytes[4..12].copy_from_slice(&seq.to_le_bytes());
    bytes[12..HEADER_BYTES].copy_from_slice(&sent_ns.to_le_bytes());
    bytes
}

fn media_frame(stream_sid: &str, seq: u64, elapsed_ms: u128, audio: &[u8]) -> String {
    // Built by hand: 50 frames per second per call, no need for a JSON value per frame.
    format!(
        r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"{elapsed_ms}","payload":"{}"}},"streamSid":"{stream_sid}"}}"#,
        seq + 1,
        BASE64.encode(audio)
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and sends `connected` and `start`; returns the socket, the stream sid and when
/// `start` was sent.
async fn open(stream: &Stream) -> anyhow::Result<(Socket, String, Instant)> {
    // Small frames every 20 ms: without TCP_NODELAY, Nagle's algorithm would hold them back.
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(stream.url.as_str(), None, true).await?;
    let sid = |prefix: &str| format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let (stream_sid, call_sid, account_sid) = (sid("MZ"), sid("CA"), sid("AC"));
    let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
    let start = json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {
                "tenant_id": stream.tenant.to_string(),
                "call_id": stream.call.to_string(),
                "attempt_id": stream.attempt.to_string(),
                "token": stream.token,
            },
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": stream_sid,
    });
    socket
        .send(Message::Text(connected.to_string().into()))
        .await?;
    socket.send(Message::Text(start.to_string().into())).await?;
    Ok((socket, stream_sid, Instant::now()))
}

/// Sends `stop` and waits (briefly) for the gateway to close the socket.
async fn hang_up(socket: &mut Socket, stream_sid: &str) {
    let stop = json!({
        "event": "stop", "sequenceNumber": "0", "streamSid": stream_sid,
        "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": "CA00000000000000000000000000000000"},
    });
    if socket
        .send(Message::Text(stop.to_string().into()))
        .await
        .is_ok()
    {
        // A gateway that does not close in time is counted by the conversations left open.
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(message)) = socket.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await
        .ok();
    }
    // Already closed by the gateway, most of the time.
    socket.close(None).await.ok();
}

/// The first instant at or after now that is `phase` past a 20 ms boundary from `base`.
fn next_slot(base: Instant, phase: Duration) -> Instant {
    let now = Instant::now();
    let first = base + phase;
    if now <= first {
        return first;
    }
    let behind = (now - first).as_nanos();
    let frame = FRAME.as_nanos();
    let frames = u32::try_from(behind.div_ceil(frame)).unwrap_or(u32::MAX);
    first + FRAME * frames
}

/// One simulated call of a latency run.
async fn echo_client(stream: Stream, phase: Duration, shared: Arc<Shared>) -> EchoResult {
    let mut result = EchoResult::default();
    let Ok((mut socket, stream_sid, started)) = open(&stream).await else {
        result.broken = true;
        return result;
    };
    let mut ticker = tokio::time::interval_at(next_slot(shared.base, phase), FRAME);
    // A client starved of CPU skips frames rather than bursting them: the send rate shows it.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0_u64;
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            _ = ticker.tick() => {
                seq += 1;
                let sent_ns = shared.now_ns();
                let audio = payload(stream.index, seq, sent_ns);
                let text = media_frame(&stream_sid, seq, started.elapsed().as_millis(), &audio);
                if socket.send(Message::Text(text.into())).await.is_err() {
                    result.broken = true;
                    return result;
                }
                result.sent += 1;
                if shared.measured(sent_ns) {
                    result.sent_measured += 1;
                }
            }
            message = socket.next() => {
                let received_ns = shared.now_ns();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        result.broken = true;
                        return result;
                    }
                    Some(Ok(_)) => continue,
                };
                let Ok(Outbound::Media { media, .. }) = serde_json::from_str::<Outbound>(text.as_str()) else {
                    result.other += 1;
                    continue;
                };
                let Ok(echoed) = media.decode_payload() else {
                    result.corrupt += 1;
                    continue;
                };
                if echoed.len() != FRAME_BYTES {
                    result.corrupt += 1;
                    continue;
                }
                let field = |range: std::ops::Range<usize>| {
                    let mut bytes = [0_u8; 8];
                    bytes[..range.len()].copy_from_slice(&echoed[range]);
                    u64::from_le_bytes(bytes)
                };
                let (index, echoed_seq, sent_ns) = (field(0..4), field(4..12), field(12..HEADER_BYTES));
                let expected = payload(stream.index, echoed_seq, sent_ns);
                if index != u64::from(stream.index) || echoed_seq == 0 || echoed_seq > seq || echoed != expected {
                    result.corrupt += 1;
                    continue;
                }
                if result.setup.is_none() {
                    result.setup = Some(started.elapsed());
                    shared.echoed.fetch_add(1, Ordering::Relaxed);
                }
                if shared.measured(sent_ns) {
                    let latency = received_ns.saturating_sub(sent_ns) / 1_000;
                    result.latencies_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
                }
            }
        }
    }
    hang_up(&mut socket, &stream_sid).await;
    result
}

/// What one barge-in client saw.
#[derive(Default)]
struct BargeResult {
    call: String,
    /// When the caller started speaking (first loud frame sent).
    spoke: Option<Instant>,
    /// When `clear` arrived.
    cleared: Option<Instant>,
}

/// One simulated call of the barge-in run: silence until 1 s after the agent's first audio,
/// then a loud tone until `clear` arrives (or 10 s pass).
async fn barge_client(stream: Stream, phase: Duration, shared: Arc<Shared>) -> BargeResult {
    let mut result = BargeResult {
        call: stream.call.to_string(),
        ..BargeResult::default()
    };
    let Ok((mut socket, stream_sid, started)) = open(&stream).await else {
        return result;
    };
    let mut ticker = tokio::time::interval_at(next_slot(shared.base, phase), FRAME);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut speak_at: Option<Instant> = None;
    let mut seq = 0_u64;
    let mut tone_offset = 0_u64;
    let silence = [audio::SILENCE; FRAME_BYTES];
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => {
                seq += 1;
                let speaking = speak_at.is_some_and(|at| Instant::now() >= at) && result.cleared.is_none();
                let text = if speaking {
                    let tone = audio::tone(20, tone_offset);
                    tone_offset += FRAME_BYTES as u64;
                    if result.spoke.is_none() {
                        result.spoke = Some(Instant::now());
                    }
                    media_frame(&stream_sid, seq, started.elapsed().as_millis(), &tone)
                } else {
                    media_frame(&stream_sid, seq, started.elapsed().as_millis(), &silence)
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return result;
                }
                if let Some(cleared) = result.cleared
                    && cleared.elapsed() > Duration::from_millis(500)
                {
                    break;
                }
            }
            message = socket.next() => {
                let at = Instant::now();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return result,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<Outbound>(text.as_str()) {
                    Ok(Outbound::Media { .. }) if speak_at.is_none() => {
                        speak_at = Some(at + Duration::from_secs(1));
                    }
                    Ok(Outbound::Clear { .. }) if result.cleared.is_none() => {
                        result.cleared = Some(at);
                    }
                    _ => {}
                }
            }
        }
    }
    hang_up(&mut socket, &stream_sid).await;
    result
}

fn lead(phone: &str) -> LeadResolved {
    LeadResolved {
        source: LeadSource::Api,
        source_event_id: None,
        dedupe_key: format!("api:{phone}"),
        external_id: None,
        phone: PhoneNumber::parse(phone).unwrap(),
        phone_raw: phone.to_owned(),
        phone_region: Some("US".to_owned()),
        first_name: Some("Jane".to_owned()),
        last_name: None,
        full_name: None,
        email: None,
        timezone: "America/New_York".to_owned(),
        timezone_source: TimezoneSource::Lead,
        tags: Vec::new(),
        custom_fields: std::collections::BTreeMap::new(),
        campaign_id: None,
        received_at: Utc::now(),
        occurred_at: None,
        trigger: None,
        schedule: None,
    }
}

/// What every level needs.
struct Bench {
    store: Store,
    tokens: StreamTokens,
    media_url: String,
    /// Calls created so far (each gets its own number).
    calls: AtomicU64,
}

impl Bench {
    /// Creates `count` calls of `tenant`, each with a dialing attempt, as dial would.
    async fn create_calls(&self, tenant: TenantId, count: usize) -> Vec<Stream> {
        let from = PhoneNumber::parse(CALLER_NUMBER).unwrap();
        let mut streams = Vec::with_capacity(count);
        let expires = Utc::now() + chrono::TimeDelta::hours(1);
        for chunk in (0..count).collect::<Vec<_>>().chunks(250) {
            let mut tx = self.store.begin_tenant(tenant).await.unwrap();
            for &index in chunk {
                let number = self.calls.fetch_add(1, Ordering::Relaxed);
                let phone = format!("+1201{}", 2_000_000 + number);
                let to = PhoneNumber::parse(&phone).unwrap();
                let lead = serde_json::to_value(lead(&phone)).unwrap();
                let call = CallId::from_uuid(uuid::Uuid::now_v7());
                let attempt = AttemptId::from_uuid(uuid::Uuid::now_v7());
                calls::create_queued(
                    &mut tx,
                    &NewCall {
                        id: call,
                        tenant,
                        to: &to,
                        from: &from,
                        crm_contact_id: None,
                        lead: &lead,
                        request_event_id: EventId::new_v7(),
                    },
                )
                .await
                .unwrap();
                calls::insert_intent(
                    &mut tx,
                    &NewAttempt {
                        id: attempt,
                        call_id: call,
                        tenant,
                        attempt_number: 1,
                        input_event_id: EventId::new_v7(),
                        provider: "twilio",
                        from: &from,
                    },
                )
                .await
                .unwrap();
                let claims = StreamClaims {
                    tenant,
                    call,
                    attempt,
                };
                streams.push(Stream {
                    index: u32::try_from(index).unwrap(),
                    url: self.media_url.clone(),
                    tenant,
                    call,
                    attempt,
                    token: self.tokens.issue(&claims, expires),
                });
            }
            tx.commit().await.unwrap();
        }
        streams
    }

    /// Waits until no conversation is open; returns false after `limit`.
    async fn all_ended(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut tx = self.store.begin_platform().await.unwrap();
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM conversations WHERE state <> 'ended'")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            tx.commit().await.unwrap();
            if open == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One level's figures.
struct Level {
    calls: usize,
    sent: u64,
    received: u64,
    lost: u64,
    corrupt: u64,
    send_rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    setup_p50: Duration,
    setup_p99: Duration,
    not_echoed: usize,
    cpu: Option<f64>,
    nats_cpu: Option<f64>,
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn percent(cpu: Option<f64>) -> String {
    cpu.map_or_else(|| "–".to_owned(), |cpu| format!("{:.0} %", cpu * 100.0))
}

impl Level {
    fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} / {} | {} | {} |",
            self.calls,
            self.sent,
            self.received,
            self.lost,
            self.send_rate,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            ms(self.setup_p50),
            ms(self.setup_p99),
            percent(self.cpu),
            percent(self.nats_cpu),
        )
    }

    fn within_target(&self) -> bool {
        self.lost == 0 && self.corrupt == 0 && self.not_echoed == 0 && self.p99 <= TARGET
    }
}

/// Runs one level of `count` echo calls.
async fn level(bench: &Bench, tenant: TenantId, count: usize, nats_pid: &str) -> Level {
    let seconds = env_number("BENCH_SECONDS", 10u64);
    let warmup = Duration::from_millis(env_number("BENCH_WARMUP_MS", 1_000u64));
    let streams = bench.create_calls(tenant, count).await;
    let shared = Arc::new(Shared::new());
    let mut clients = tokio::task::JoinSet::new();
    let divisor = u32::try_from(count).unwrap();
    for (index, stream) in streams.into_iter().enumerate() {
        let phase = FRAME * u32::try_from(index).unwrap() / divisor;
        clients.spawn(echo_client(stream, phase, shared.clone()));
    }
    // Warm-up: every call answered, its conversation opened and claimed, its engine connected.
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.echoed.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(warmup).await;
    let (cpu0, nats0) = (cpu_time("self"), cpu_time(nats_pid));
    let clock = Instant::now();
    shared.from_ns.store(shared.now_ns(), Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    shared.until_ns.store(shared.now_ns(), Ordering::Relaxed);
    let window = clock.elapsed().as_secs_f64();
    let (cpu1, nats1) = (cpu_time("self"), cpu_time(nats_pid));
    tokio::time::sleep(GRACE).await;
    shared.stop.cancel();
    let mut results = Vec::with_capacity(count);
    while let Some(result) = clients.join_next().await {
        results.push(result.unwrap());
    }
    if !bench.all_ended(Duration::from_secs(60)).await {
        eprintln!("warning: some conversations of the {count}-call level did not end in 60 s");
    }
    let share = |before: Option<Duration>, after: Option<Duration>| {
        Some((after? - before?).as_secs_f64() / window)
    };
    let mut latencies: Vec<Duration> = results
        .iter()
        .flat_map(|result| result.latencies_us.iter())
        .map(|us| Duration::from_micros(u64::from(*us)))
        .collect();
    latencies.sort();
    let mut setups: Vec<Duration> = results.iter().filter_map(|result| result.setup).collect();
    setups.sort();
    let sent: u64 = results.iter().map(|result| result.sent_measured).sum();
    let received = latencies.len() as u64;
    let broken = results.iter().filter(|result| result.broken).count();
    let other: u64 = results.iter().map(|result| result.other).sum();
    if broken > 0 || other > 0 {
        eprintln!("warning: {broken} sockets broke, {other} non-media frames at {count} calls");
    }
    #[allow(clippy::cast_precision_loss)]
    let send_rate = sent as f64 / window / count as f64;
    Level {
        calls: count,
        sent,
        received,
        lost: sent.saturating_sub(received),
        corrupt: results.iter().map(|result| result.corrupt).sum(),
        send_rate,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        setup_p50: percentile(&setups, 0.50),
        setup_p99: percentile(&setups, 0.99),
        not_echoed: count - setups.len(),
        cpu: share(cpu0, cpu1),
        nats_cpu: share(nats0, nats1),
    }
}

/// Levels to try after `done` to find the largest one within the target.
fn next_level(done: &[Level]) -> Option<usize> {
    let passed = done
        .iter()
        .filter(|level| level.within_target())
        .map(|level| level.calls)
        .max();
    let failed_above = |floor: usize| {
        done.iter()
            .filter(|level| !level.within_target() && level.calls > floor)
            .map(|level| level.calls)
            .min()
    };
    let tried = |calls: usize| done.iter().any(|level| level.calls == calls);
    // Steps of 10 calls below 200, of 50 above.
    let step = |calls: usize| if calls < 200 { 10 } else { 50 };
    let round = |calls: usize| (calls / step(calls) * step(calls)).max(10);
    let candidate = match (passed, failed_above(passed.unwrap_or(0))) {
        // Everything passed: go up by half again.
        (Some(passed), None) => round(passed * 3 / 2),
        // Nothing passed: go down by half.
        (None, Some(failed)) => (failed / 2).max(1),
        (Some(passed), Some(failed)) => {
            if failed - passed <= step(passed) {
                return None;
            }
            round(passed + (failed - passed) / 2)
        }
        (None, None) => return None,
    };
    (!tried(candidate) && candidate > 0).then_some(candidate)
}

/// Onboards a tenant whose voice agent is `agent` on the simulator at `el_base`.
async fn onboard(
    store: &Store,
    keyring: &Keyring,
    slug: &str,
    agent: &str,
    el_base: &str,
) -> TenantId {
    let request = serde_json::from_value(json!({
        "slug": slug, "name": slug, "timezone": "UTC",
        "configuration": {
            "telephony": "twilio", "caller_numbers": [CALLER_NUMBER],
            "concurrency_cap": 10_000, "calls_per_second": 1_000.0,
            "voice": "elevenlabs",
            "agent": {"agent_id": agent},
            "providers": {
                // Never called: calls end by the caller's `stop`, so nobody hangs up through it.
                "twilio": {"account_sid": TwilioSimState::default().account_sid(), "base_url": "http://127.0.0.1:9"},
                "elevenlabs": {"base_url": el_base},
            }
        },
        "credentials": {
            "twilio.auth_token": {"value": "sim-twilio-auth-token"},
            "elevenlabs.api_key": {"value": EL_KEY},
        }
    }))
    .unwrap();
    let mut tx = store.begin_platform().await.unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("bench"), keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client.id
}

/// Serves an ElevenLabs simulator on a loopback port; returns its base URL.
async fn serve_elevenlabs(state: ElevenLabsSimState) -> String {
    let (addr, _task) = sim_elevenlabs::spawn(state).await;
    format!("http://{addr}")
}

/// Measures barge-in: from the simulator's `interruption` to the client's `clear`.
async fn barge_in(bench: &Bench, tenant: TenantId, sim: &ElevenLabsSimState, count: usize) {
    let streams = bench.create_calls(tenant, count).await;
    let shared = Arc::new(Shared::new());
    let mut clients = tokio::task::JoinSet::new();
    let divisor = u32::try_from(count).unwrap();
    for (index, stream) in streams.into_iter().enumerate() {
        let phase = FRAME * u32::try_from(index).unwrap() / divisor;
        clients.spawn(barge_client(stream, phase, shared.clone()));
    }
    let mut results = Vec::with_capacity(count);
    while let Some(result) = clients.join_next().await {
        results.push(result.unwrap());
    }
    if !bench.all_ended(Duration::from_secs(60)).await {
        eprintln!("warning: some barge-in conversations did not end in 60 s");
    }
    let interruptions: HashMap<String, Instant> = sim
        .conversations()
        .into_iter()
        .filter_map(|conversation| {
            Some((conversation.call_id?, *conversation.interruptions.first()?))
        })
        .collect();
    let mut path = Vec::new();
    let mut from_speech = Vec::new();
    for result in &results {
        let (Some(cleared), Some(interrupted)) = (result.cleared, interruptions.get(&result.call))
        else {
            continue;
        };
        path.push(cleared.saturating_duration_since(*interrupted));
        if let Some(spoke) = result.spoke {
            from_speech.push(cleared.saturating_duration_since(spoke));
        }
    }
    path.sort();
    from_speech.sort();
    println!();
    println!(
        "Barge-in, {count} calls ({} interrupted and cleared); the agent talks for 60 s, each \
         caller speaks a loud tone from 1 s after its first audio (the simulator detects \
         speech after 200 ms above amplitude 500):",
        path.len()
    );
    println!();
    println!("| from → to | p50 | p99 | max | vs one 20 ms frame (p99) |");
    println!("|---|---:|---:|---:|---:|");
    for (what, figures) in [
        (
            "simulator sends `interruption` → client receives `clear`",
            &path,
        ),
        (
            "caller starts speaking → client receives `clear`",
            &from_speech,
        ),
    ] {
        if figures.is_empty() {
            println!("| {what} | – | – | – | – |");
            continue;
        }
        let p99 = percentile(figures, 0.99);
        println!(
            "| {what} | {} | {} | {} | {:.2}× |",
            ms(percentile(figures, 0.50)),
            ms(p99),
            ms(*figures.last().unwrap()),
            p99.as_secs_f64() / TARGET.as_secs_f64()
        );
    }
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let levels: Vec<usize> = std::env::var("BENCH_CALLS")
        .unwrap_or_else(|_| "100,500,1000".to_owned())
        .split(',')
        .filter_map(|level| level.trim().parse().ok())
        .filter(|level| *level > 0)
        .collect();
    let extra_levels = env_number("BENCH_EXTRA_LEVELS", 3usize);
    let barge_calls = env_number("BENCH_BARGE_CALLS", 20usize);
    let max_calls = levels.iter().copied().max().unwrap_or(1) * 2;

    let store_dir = tempfile::tempdir().unwrap();
    let (server, nats_url) = start_nats(store_dir.path());
    let nats_pid = server.pid().to_string();
    let connect = || Bus::connect(&nats_url, Duration::from_secs(5));
    let (worker_bus, gateway_bus) = (connect().await.unwrap(), connect().await.unwrap());
    let nats_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nats");
    let definitions = Definitions::load(&nats_dir).unwrap();
    provision::provision(&worker_bus, &definitions)
        .await
        .unwrap();
    let (store, database) = support::Database::create().await;
    let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [42u8; 32])]).unwrap());

    let echo_sim = ElevenLabsSimState::new(EL_KEY).with_echo_agent(ECHO_AGENT);
    let talking_sim = ElevenLabsSimState::new(EL_KEY).with_agent(
        TALKING_AGENT,
        Script::new().say("Let me tell you all about our offer.", 60_000),
    );
    let echo_tenant = onboard(
        &store,
        &keyring,
        "bench-echo",
        ECHO_AGENT,
        &serve_elevenlabs(echo_sim.clone()).await,
    )
    .await;
    let talking_tenant = onboard(
        &store,
        &keyring,
        "bench-barge-in",
        TALKING_AGENT,
        &serve_elevenlabs(talking_sim.clone()).await,
    )
    .await;

    let shutdown = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let directory = Directory::new(
        store.clone(),
        Some(keyring.clone()),
        Duration::from_secs(60),
    );
    let recordings = tempfile::tempdir().unwrap();
    let gateway = MediaGateway::new(
        gateway_bus,
        store.clone(),
        directory.clone(),
        MediaSettings {
            recordings_dir: recordings.path().to_owned(),
            ..MediaSettings::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let media_url = format!("ws://{}/media/twilio", listener.local_addr().unwrap());
    tasks.spawn(caller::http::serve(
        listener,
        caller::http::with_fallback(caller::media::gateway::router(Arc::new(gateway))),
        shutdown.clone(),
    ));

    let mut runtime = Runtime::new(
        worker_bus,
        store.clone(),
        Metrics::default(),
        RunnerSettings::default(),
    );
    runtime.directory = directory;
    runtime.stages.telephony = TelephonySettings {
        public_base_url: "http://127.0.0.1:9".to_owned(),
        ..TelephonySettings::default()
    };
    runtime.stages.converse = ConverseSettings {
        max_sessions: max_calls.max(10_000),
        scan_ms: 20,
        ..ConverseSettings::default()
    };
    let pipelines =
        caller::pipeline::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"))
            .unwrap();
    let topology = caller::pipeline::compile(pipelines, &definitions).unwrap();
    let spec = topology.stage("converse").unwrap().clone();
    let descriptor = caller::stages::find("converse").unwrap();
    tasks.spawn((descriptor.run)(spec, runtime, shutdown.clone()));

    let bench = Bench {
        store: store.clone(),
        tokens: StreamTokens::from_keyring(&keyring),
        media_url,
        calls: AtomicU64::new(0),
    };
    println!(
        "Media path round trip per 20 ms frame: client → gateway WS → NATS media.<call>.in → \
         converse → engine WS (ElevenLabs simulator, echo) → converse → NATS media.<call>.out → \
         gateway → client WS. Everything in one process on {} cores (clients, gateway, converse \
         worker, simulator; nats-server beside it): the simulated callers compete for the same \
         CPU. CPU is of this process and of nats-server during the measured window (100 % = \
         one core).",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!(
        "| calls | frames sent | frames echoed | lost | frames/s per call sent | p50 | p99 | max | \
         setup p50 / p99 | CPU (process) | CPU (nats-server) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut done: Vec<Level> = Vec::new();
    for count in levels {
        let measured = level(&bench, echo_tenant, count, &nats_pid).await;
        println!("{}", measured.row());
        done.push(measured);
    }
    for _ in 0..extra_levels {
        let Some(count) = next_level(&done) else {
            break;
        };
        let measured = level(&bench, echo_tenant, count, &nats_pid).await;
        println!("{} (probe)", measured.row());
        done.push(measured);
    }
    let corrupt: u64 = done.iter().map(|level| level.corrupt).sum();
    let not_echoed: usize = done.iter().map(|level| level.not_echoed).sum();
    println!();
    println!(
        "Payloads checked byte for byte: {corrupt} differed. Calls that never echoed: \
         {not_echoed}. Setup: from `start` sent to the first echoed frame, all calls of a level \
         opened at once."
    );
    match done
        .iter()
        .filter(|level| level.within_target())
        .map(|level| level.calls)
        .max()
    {
        Some(calls) => println!(
            "Largest concurrency with p99 ≤ 20 ms (and no loss) among those measured: {calls} calls."
        ),
        None => println!("No measured concurrency kept p99 ≤ 20 ms without loss."),
    }

    if barge_calls > 0 {
        barge_in(&bench, talking_tenant, &talking_sim, barge_calls).await;
    }

    shutdown.trigger();
    while tasks.join_next().await.is_some() {}
    store.pool().close().await;
    database.drop().await;
    drop(server);
}
