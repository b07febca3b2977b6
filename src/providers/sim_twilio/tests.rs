//! Tests of the Twilio simulator: the REST endpoints against the vendored spec, each call's
//! lifecycle through a tiny webhook receiver, answering machine detection, and the Media
//! Streams client against a WebSocket server. Durations only order events here: nothing
//! asserts how long anything took.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::providers::twilio_spec::{check_against, spec};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::behaviour::OutcomePicker;
use super::twiml::{StreamSpec, Verb, verbs};
use super::*;
use crate::ingress::verify::twilio::TwilioSignature;

const CALLER: &str = "+18668675310";

fn token() -> String {
    crate::providers::sim::SimAccounts::default().twilio_auth_token
}

fn verifier() -> TwilioSignature {
    TwilioSignature::new(&[Secret::new(token())]).expect("a token")
}

/// Phases of tens of milliseconds, a person answering.
fn fast() -> SimBehaviour {
    SimBehaviour {
        dial: Duration::from_millis(20),
        ring: Duration::from_millis(20),
        talk: Duration::from_millis(60),
        amd_delay: Duration::from_millis(20),
        ..SimBehaviour::default()
    }
}

/// Waits (at most 10 s, a guard against hangs, not a timing check) until `probe` finds it.
async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(found) = probe() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

// -----------------------------------------------------------------------------------------
// A webhook receiver and the simulator's REST API.

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    /// Path and query as requested.
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl Received {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Records every request; answers the scripted failures first, then 200 (with `twiml` as
/// the body on `/twiml`).
#[derive(Clone, Default)]
struct Receiver {
    base: String,
    seen: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<VecDeque<u16>>>,
    twiml: Arc<Mutex<String>>,
}

impl Receiver {
    async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        let receiver = Self {
            base: format!("http://{addr}"),
            ..Self::default()
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// Status callbacks about `sid`, in the order they arrived.
    fn statuses(&self, sid: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.target.starts_with("/status") && r.param("CallSid") == Some(sid))
            .collect()
    }

    /// Waits for the terminal status callback about `sid`, then returns them all.
    async fn until_terminal(&self, sid: &str) -> Vec<Received> {
        eventually("the terminal status callback", || {
            let statuses = self.statuses(sid);
            let terminal = statuses
                .iter()
                .any(|r| r.param("CallStatus").is_some_and(super::is_terminal));
            terminal.then_some(statuses)
        })
        .await
    }

    /// Checks `X-Twilio-Signature` of `request` as our ingress would.
    fn verify(&self, request: &Received) -> bool {
        let url = self.url(&request.target);
        verifier()
            .verify(&url, &request.headers, &request.body)
            .is_ok()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let params = if method == Method::GET {
        crate::http::form::parse(uri.query().unwrap_or_default().as_bytes())
    } else {
        crate::http::form::parse(&body)
    };
    let is_twiml = target.starts_with("/twiml");
    receiver.seen.lock().expect("lock").push(Received {
        method,
        target,
        headers,
        body: body.to_vec(),
        params,
    });
    if let Some(status) = receiver.failures.lock().expect("lock").pop_front() {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    if is_twiml {
        let document = receiver.twiml.lock().expect("lock").clone();
        return ([("content-type", "text/xml")], document).into_response();
    }
    StatusCode::OK.into_response()
}

/// A simulator on a loopback port with `behaviour`, and its base URL.
async fn simulator(behaviour: SimBehaviour) -> (TwilioSimState, String) {
    let state = TwilioSimState::default().with_behaviour(behaviour);
    let (addr, _task) = spawn(state.clone()).await;
    (state, format!("http://{addr}"))
}

fn calls_path(state: &TwilioSimState) -> String {
    format!("/2010-04-01/Accounts/{}/Calls.json", state.account_sid())
}

/// Creates a call from `CALLER` to `to` with `extra` parameters; returns its sid.
async fn create(base: &str, state: &TwilioSimState, to: &str, extra: &[(&str, &str)]) -> String {
    let mut form = vec![("To", to), ("From", CALLER)];
    form.extend_from_slice(extra);
    let response = crate::providers::http::client()
        .post(format!("{base}{}", calls_path(state)))
        .basic_auth(state.account_sid(), Some(token()))
        .form(&form)
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("json");
    created["sid"].as_str().expect("a sid").to_owned()
}

async fn get_json(state: &TwilioSimState, url: &str) -> (StatusCode, Value) {
    let response = crate::providers::http::client()
        .get(url)
        .basic_auth(state.account_sid(), Some(token()))
        .send()
        .await
        .expect("the simulator answers");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

async fn update(base: &str, state: &TwilioSimState, sid: &str, form: &[(&str, &str)]) -> Value {
    let url = format!(
        "{base}/2010-04-01/Accounts/{}/Calls/{sid}.json",
        state.account_sid()
    );
    let response = crate::providers::http::client()
        .post(url)
        .basic_auth(state.account_sid(), Some(token()))
        .form(form)
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn fetch(base: &str, state: &TwilioSimState, sid: &str) -> Value {
    let url = format!(
        "{base}/2010-04-01/Accounts/{}/Calls/{sid}.json",
        state.account_sid()
    );
    let (status, call) = get_json(state, &url).await;
    assert_eq!(status, StatusCode::OK);
    call
}

fn call_statuses(callbacks: &[Received]) -> Vec<&str> {
    callbacks
        .iter()
        .map(|r| r.param("CallStatus").unwrap_or_default())
        .collect()
}

fn sequence_numbers(callbacks: &[Received]) -> Vec<u32> {
    callbacks
        .iter()
        .map(|r| {
            r.param("SequenceNumber")
                .and_then(|n| n.parse().ok())
                .expect("a numeric SequenceNumber")
        })
        .collect()
}

const ALL_EVENTS: [(&str, &str); 4] = [
    ("StatusCallbackEvent", "initiated"),
    ("StatusCallbackEvent", "ringing"),
    ("StatusCallbackEvent", "answered"),
    ("StatusCallbackEvent", "completed"),
];

// -----------------------------------------------------------------------------------------
// Status callbacks.

#[tokio::test]
async fn status_callbacks_are_signed_and_follow_the_lifecycle() {
    let receiver = Receiver::spawn().await;
    let (state, base) = simulator(fast()).await;
    let callback = receiver.url("/status?attempt=a1&lead=%2B1");
    let mut extra = vec![
        ("Twiml", "<Response><Say>hello</Say></Response>"),
        ("StatusCallback", callback.as_str()),
        ("Record", "true"),
    ];
    extra.extend(ALL_EVENTS);
    let sid = create(&base, &state, "+14155550101", &extra).await;

    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(
        call_statuses(&callbacks),
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert_eq!(sequence_numbers(&callbacks), [0, 1, 2, 3]);
    for request in &callbacks {
        assert!(receiver.verify(request), "unsigned: {:?}", request.params);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.target, "/status?attempt=a1&lead=%2B1");
        assert_eq!(request.headers["user-agent"], "TwilioProxy/1.1");
        assert_eq!(
            request.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        for (name, value) in [
            ("AccountSid", state.account_sid()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", &sid),
            ("Called", "+14155550101"),
            ("Caller", CALLER),
            ("Direction", "outbound-api"),
            ("From", CALLER),
            ("To", "+14155550101"),
            ("CallbackSource", "call-progress-events"),
        ] {
            assert_eq!(request.param(name), Some(value), "{name}");
        }
        let timestamp = request.param("Timestamp").expect("a Timestamp");
        assert!(chrono::DateTime::parse_from_rfc2822(timestamp).is_ok());
        assert_eq!(request.param("AnsweredBy"), None, "no AMD was asked for");
    }
    let completed = &callbacks[3];
    for name in ["CallDuration", "Duration"] {
        let value = completed.param(name).expect(name);
        assert!(value.parse::<u64>().is_ok(), "{name}={value}");
    }
    assert_eq!(completed.param("Duration"), Some("1"));
    assert_eq!(completed.param("SipResponseCode"), Some("200"));
    assert!(
        completed
            .param("RecordingSid")
            .is_some_and(|s| s.starts_with("RE"))
    );
    assert!(callbacks[0].param("CallDuration").is_none());

    // A signature over another URL does not verify: the query string is signed.
    let mut moved = callbacks[0].clone();
    moved.target = "/status?attempt=a2&lead=%2B1".to_owned();
    assert!(!receiver.verify(&moved));

    let call = fetch(&base, &state, &sid).await;
    assert_eq!(call["status"], "completed");
    assert!(
        call["duration"]
            .as_str()
            .is_some_and(|d| d.parse::<u64>().is_ok())
    );
    for field in ["start_time", "end_time"] {
        let time = call[field].as_str().expect(field);
        assert!(chrono::DateTime::parse_from_rfc2822(time).is_ok());
    }
    let recorded = state.call(&sid).expect("recorded");
    let (started, answered, ended) = (
        recorded.started_at.expect("started"),
        recorded.answered_at.expect("answered"),
        recorded.ended_at.expect("ended"),
    );
    assert!(recorded.created_at <= started && started <= answered && answered <= ended);
    // The receiver answers after it records, so the simulator may record a moment later.
    let attempts = eventually("four recorded attempts", || {
        let attempts: Vec<_> = state
            .callbacks()
            .into_iter()
            .filter(|sent| sent.kind == CallbackKind::Status)
            .map(|sent| (sent.status, sent.attempt))
            .collect();
        (attempts.len() == 4).then_some(attempts)
    })
    .await;
    assert_eq!(attempts, [(Some(200), 0); 4]);
    assert_eq!(state.active_calls(), 0);
}

#[tokio::test]
async fn unanswered_outcomes_post_only_the_requested_events_and_their_terminal_status() {
    let receiver = Receiver::spawn().await;
    let mut behaviour = fast();
    for (to, outcome) in [
        ("+14155550102", SimOutcome::Busy),
        ("+14155550103", SimOutcome::NoAnswer),
        ("+14155550104", SimOutcome::Failed),
        ("+14155550105", SimOutcome::Canceled),
    ] {
        behaviour.by_callee.insert(to.to_owned(), outcome);
    }
    let (state, base) = simulator(behaviour).await;
    let callback = receiver.url("/status");
    let ringing_only = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", callback.as_str()),
        ("StatusCallbackEvent", "ringing"),
    ];
    for (to, expected) in [
        ("+14155550102", vec!["busy"]),
        ("+14155550103", vec!["ringing", "no-answer"]),
        ("+14155550104", vec!["failed"]),
        ("+14155550105", vec!["ringing", "canceled"]),
    ] {
        let sid = create(&base, &state, to, &ringing_only).await;
        let callbacks = receiver.until_terminal(&sid).await;
        assert_eq!(call_statuses(&callbacks), expected, "{to}");
        let sequence: Vec<u32> = (0..).take(expected.len()).collect();
        assert_eq!(sequence_numbers(&callbacks), sequence);
        let terminal = callbacks.last().expect("a terminal callback");
        assert_eq!(terminal.param("CallDuration"), Some("0"));
        assert_eq!(terminal.param("Duration"), None);
        assert!(terminal.param("SipResponseCode").is_some());
        assert!(callbacks.iter().all(|r| receiver.verify(r)));
        let call = fetch(&base, &state, &sid).await;
        assert_eq!(call["status"], *expected.last().expect("a status"));
        assert_eq!(call["duration"], "0");
        assert_eq!(call["answered_by"], Value::Null);
    }

    // No `StatusCallbackEvent` at all: Twilio sends `completed` only.
    let plain = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", callback.as_str()),
    ];
    let sid = create(&base, &state, "+14155550106", &plain).await;
    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(call_statuses(&callbacks), ["completed"]);
    assert_eq!(sequence_numbers(&callbacks), [0]);
    assert_eq!(state.active_calls(), 0);
}

#[tokio::test]
async fn get_callbacks_carry_their_parameters_in_the_signed_url() {
    let receiver = Receiver::spawn().await;
    let (state, base) = simulator(fast()).await;
    let callback = receiver.url("/status?attempt=a1");
    let extra = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", callback.as_str()),
        ("StatusCallbackMethod", "GET"),
    ];
    let sid = create(&base, &state, "+14155550107", &extra).await;
    let callbacks = receiver.until_terminal(&sid).await;
    let completed = callbacks.last().expect("a callback");
    assert_eq!(completed.method, Method::GET);
    assert!(
        completed
            .target
            .starts_with("/status?attempt=a1&AccountSid=")
    );
    assert!(completed.body.is_empty());
    assert!(receiver.verify(completed));
}

#[tokio::test]
async fn failed_callbacks_are_retried_then_dropped() {
    let receiver = Receiver::spawn().await;
    receiver.failures.lock().expect("lock").extend([500, 503]);
    let mut behaviour = fast();
    behaviour
        .by_callee
        .insert("+14155550109".to_owned(), SimOutcome::Busy);
    let (state, base) = simulator(behaviour).await;
    let callback = receiver.url("/status");
    let extra = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", callback.as_str()),
        ("StatusCallbackEvent", "initiated"),
    ];
    let sid = create(&base, &state, "+14155550108", &extra).await;
    receiver.until_terminal(&sid).await;
    let attempts: Vec<_> = state
        .callbacks()
        .into_iter()
        .filter(|sent| sent.call_sid == sid)
        .map(|sent| {
            (
                sent.param("CallStatus").map(str::to_owned),
                sent.status,
                sent.attempt,
            )
        })
        .collect();
    let initiated = Some("initiated".to_owned());
    assert_eq!(
        attempts[..3],
        [
            (initiated.clone(), Some(500), 0),
            (initiated.clone(), Some(503), 1),
            (initiated, Some(200), 2),
        ]
    );

    // Nobody listens: every attempt fails without an answer, then the callback is dropped.
    let closed = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let dead = format!("http://{}/status", closed.local_addr().expect("an address"));
    drop(closed);
    let extra = [("Twiml", "<Response/>"), ("StatusCallback", dead.as_str())];
    let busy = create(&base, &state, "+14155550109", &extra).await;
    let failures = eventually("three failed attempts", || {
        let sent: Vec<_> = state
            .callbacks()
            .into_iter()
            .filter(|sent| sent.call_sid == busy)
            .collect();
        (sent.len() == 3).then_some(sent)
    })
    .await;
    assert!(failures.iter().all(|sent| sent.status.is_none()));
    assert_eq!(
        failures.iter().map(|sent| sent.attempt).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    // `#rc=0` asks for no retry; the fragment is neither sent nor signed.
    receiver.failures.lock().expect("lock").push_back(500);
    let no_retry = receiver.url("/status#rc=0");
    let extra = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", no_retry.as_str()),
    ];
    let once = create(&base, &state, "+14155550109", &extra).await;
    let sent = eventually("the single attempt", || {
        let sent: Vec<_> = state
            .callbacks()
            .into_iter()
            .filter(|sent| sent.call_sid == once)
            .collect();
        (!sent.is_empty()).then_some(sent)
    })
    .await;
    assert_eq!(sent[0].status, Some(500));
    assert_eq!(sent[0].url, receiver.url("/status"));
    let got = eventually("the request", || {
        receiver
            .requests()
            .into_iter()
            .find(|r| r.param("CallSid") == Some(once.as_str()))
    })
    .await;
    assert_eq!(got.target, "/status");
    assert!(receiver.verify(&got));
}

// -----------------------------------------------------------------------------------------
// Answering machine detection.

#[tokio::test]
async fn async_amd_posts_the_result_to_its_own_callback() {
    let receiver = Receiver::spawn().await;
    let mut behaviour = fast();
    for to in ["+14155550111", "+14155550112"] {
        behaviour
            .by_callee
            .insert(to.to_owned(), SimOutcome::Machine);
    }
    let (state, base) = simulator(behaviour).await;
    let status = receiver.url("/status");
    let amd = receiver.url("/amd?attempt=a1");
    for (to, mode, expected) in [
        ("+14155550110", "Enable", "human"),
        ("+14155550111", "Enable", "machine_start"),
        ("+14155550112", "DetectMessageEnd", "machine_end_beep"),
    ] {
        let mut extra = vec![
            ("Twiml", "<Response/>"),
            ("StatusCallback", status.as_str()),
            ("MachineDetection", mode),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", amd.as_str()),
        ];
        extra.extend(ALL_EVENTS);
        let sid = create(&base, &state, to, &extra).await;
        let result = eventually("the amd callback", || {
            receiver
                .requests()
                .into_iter()
                .find(|r| r.target.starts_with("/amd") && r.param("CallSid") == Some(sid.as_str()))
        })
        .await;
        assert!(receiver.verify(&result));
        assert_eq!(result.param("AccountSid"), Some(state.account_sid()));
        assert_eq!(result.param("AnsweredBy"), Some(expected));
        let detection = result
            .param("MachineDetectionDuration")
            .expect("a duration");
        assert!(detection.parse::<u64>().is_ok());
        let callbacks = receiver.until_terminal(&sid).await;
        assert!(callbacks.iter().all(|r| r.param("AnsweredBy").is_none()));
        assert_eq!(
            state.call(&sid).expect("recorded").answered_by.as_deref(),
            Some(expected)
        );
        let call = fetch(&base, &state, &sid).await;
        assert_eq!(call["answered_by"], expected);
    }
}

#[tokio::test]
async fn synchronous_amd_rides_on_the_answered_and_completed_callbacks() {
    let receiver = Receiver::spawn().await;
    let mut behaviour = fast();
    behaviour
        .by_callee
        .insert("+14155550113".to_owned(), SimOutcome::Machine);
    let (state, base) = simulator(behaviour).await;
    let status = receiver.url("/status");
    let mut extra = vec![
        ("Twiml", "<Response/>"),
        ("StatusCallback", status.as_str()),
        ("MachineDetection", "Enable"),
    ];
    extra.extend(ALL_EVENTS);
    let sid = create(&base, &state, "+14155550113", &extra).await;
    let callbacks = receiver.until_terminal(&sid).await;
    let answered_by: Vec<_> = callbacks.iter().map(|r| r.param("AnsweredBy")).collect();
    assert_eq!(
        answered_by,
        [None, None, Some("machine_start"), Some("machine_start")]
    );
    assert!(
        !receiver
            .requests()
            .iter()
            .any(|r| r.target.starts_with("/amd")),
        "no asynchronous result without AsyncAmd"
    );
}

// -----------------------------------------------------------------------------------------
// Media Streams.

/// A WebSocket server for one stream: reports every message it gets, and once `start`
/// arrives plays a frame, a mark, a long clip, a second mark, and clears.
struct StreamServer {
    url: String,
    messages: mpsc::UnboundedReceiver<Value>,
    signature: Arc<Mutex<Option<String>>>,
}

impl StreamServer {
    async fn spawn() -> Self {
        use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port");
        let url = format!("ws://{}/media", listener.local_addr().expect("an address"));
        let (report, messages) = mpsc::unbounded_channel();
        let signature: Arc<Mutex<Option<String>>> = Arc::default();
        let seen_signature = Arc::clone(&signature);
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // tungstenite's handshake `Callback` fixes this signature, large error and all.
            #[allow(clippy::result_large_err)]
            let capture =
                move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
                    let header = request.headers().get("x-twilio-signature");
                    *seen_signature.lock().expect("lock") = header
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    Ok(response)
                };
            let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(tcp, capture).await else {
                return;
            };
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).expect("json frames");
                let started = value["event"] == "start";
                let stream_sid = value["streamSid"].clone();
                if report.send(value).is_err() {
                    return;
                }
                if !started {
                    continue;
                }
                let audio = |bytes: usize| {
                    base64::engine::general_purpose::STANDARD.encode(vec![0xFF; bytes])
                };
                let script = [
                    json!({"event": "media", "streamSid": stream_sid, "media": {"payload": audio(160)}}),
                    json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "m1"}}),
                    json!({"event": "media", "streamSid": stream_sid, "media": {"payload": audio(80_000)}}),
                    json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "m2"}}),
                    json!({"event": "clear", "streamSid": stream_sid}),
                ];
                for frame in script {
                    if socket
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Self {
            url,
            messages,
            signature,
        }
    }

    /// Every message until `stop`, inclusive.
    async fn until_stop(&mut self) -> Vec<Value> {
        let mut received = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.messages.recv()).await;
            let message = next
                .expect("a message within the guard")
                .expect("the stream");
            let stopped = message["event"] == "stop";
            received.push(message);
            if stopped {
                return received;
            }
        }
    }
}

#[tokio::test]
async fn media_streams_speak_connected_start_media_marks_and_stop() {
    let receiver = Receiver::spawn().await;
    let mut server = StreamServer::spawn().await;
    *receiver.twiml.lock().expect("lock") = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Connect>
    <Stream url="{}" name='agent'>
      <Parameter name="tenantId" value="t1"/>
      <Parameter name="callId" value="c&amp;1"/>
    </Stream>
  </Connect>
  <Say>Sorry, the assistant is unavailable.</Say>
  <Hangup/>
</Response>"#,
        server.url
    );
    let behaviour = SimBehaviour {
        talk: Duration::from_millis(400),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let twiml_url = receiver.url("/twiml?attempt=a1");
    let status = receiver.url("/status");
    let extra = [
        ("Url", twiml_url.as_str()),
        ("StatusCallback", status.as_str()),
    ];
    let sid = create(&base, &state, "+14155550120", &extra).await;
    let messages = server.until_stop().await;

    // The TwiML request: signed call parameters, like a voice webhook.
    let fetched = receiver
        .requests()
        .into_iter()
        .find(|r| r.target.starts_with("/twiml"))
        .expect("the twiml was requested");
    assert!(receiver.verify(&fetched));
    assert_eq!(fetched.param("CallSid"), Some(sid.as_str()));
    assert_eq!(fetched.param("CallStatus"), Some("in-progress"));
    assert_eq!(fetched.param("SequenceNumber"), None);
    let signature = server
        .signature
        .lock()
        .expect("lock")
        .clone()
        .expect("signed upgrade");
    let mut upgrade = HeaderMap::new();
    upgrade.insert(
        "x-twilio-signature",
        HeaderValue::from_str(&signature).expect("ascii"),
    );
    assert!(verifier().verify(&server.url, &upgrade, b"").is_ok());

    assert_eq!(
        messages[0],
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    );
    let start = &messages[1];
    let stream_sid = start["streamSid"].as_str().expect("a stream sid");
    assert!(stream_sid.starts_with("MZ") && stream_sid.len() == 34);
    assert_eq!(start["event"], "start");
    assert_eq!(start["sequenceNumber"], "1");
    assert_eq!(
        start["start"],
        json!({
            "accountSid": state.account_sid(),
            "streamSid": stream_sid,
            "callSid": sid,
            "tracks": ["inbound"],
            "customParameters": {"tenantId": "t1", "callId": "c&1"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        })
    );
    let sequence: Vec<u64> = messages[1..]
        .iter()
        .map(|m| {
            m["sequenceNumber"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("a string counter")
        })
        .collect();
    assert_eq!(sequence, (1..=sequence.len() as u64).collect::<Vec<_>>());
    assert!(messages[1..].iter().all(|m| m["streamSid"] == stream_sid));

    let media: Vec<&Value> = messages.iter().filter(|m| m["event"] == "media").collect();
    assert!(!media.is_empty());
    let mut last_timestamp = 0;
    for (index, frame) in media.iter().enumerate() {
        assert_eq!(frame["media"]["track"], "inbound");
        assert_eq!(frame["media"]["chunk"], (index + 1).to_string());
        let timestamp: u64 = frame["media"]["timestamp"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("ms");
        assert!(timestamp >= last_timestamp);
        last_timestamp = timestamp;
        let payload = frame["media"]["payload"].as_str().expect("a payload");
        let audio = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .expect("base64");
        assert_eq!(audio.len(), 160);
    }
    let echoed: Vec<&str> = messages
        .iter()
        .filter(|m| m["event"] == "mark")
        .map(|m| m["mark"]["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        echoed,
        ["m1", "m2"],
        "m2 is only echoed early because of clear"
    );
    let stop = messages.last().expect("stop");
    assert_eq!(
        stop["stop"],
        json!({"accountSid": state.account_sid(), "callSid": sid})
    );

    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(call_statuses(&callbacks), ["completed"]);
    let sessions = state.media_sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.call_sid, sid);
    assert_eq!(session.stream_sid, stream_sid);
    assert_eq!(session.url, server.url);
    assert!(session.connected && session.stopped && session.error.is_none());
    assert_eq!(session.custom_parameters["callId"], "c&1");
    assert_eq!(session.media_received, 2);
    assert_eq!(session.marks_received, ["m1", "m2"]);
    assert_eq!(session.marks_echoed, ["m1", "m2"]);
    assert_eq!(session.clears, 1);
    assert_eq!(session.frames_sent, media.len());
}

#[tokio::test]
async fn a_stream_that_cannot_connect_falls_through_and_the_call_completes() {
    let receiver = Receiver::spawn().await;
    let closed = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let dead = format!("ws://{}/media", closed.local_addr().expect("an address"));
    drop(closed);
    // The talk time outlasts the test's guard: only the fall-through can end this call.
    let behaviour = SimBehaviour {
        talk: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let twiml = format!("<Response><Connect><Stream url=\"{dead}\"/></Connect></Response>");
    let status = receiver.url("/status");
    let extra = [
        ("Twiml", twiml.as_str()),
        ("StatusCallback", status.as_str()),
    ];
    let sid = create(&base, &state, "+14155550121", &extra).await;
    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(call_statuses(&callbacks), ["completed"]);
    let session = &state.media_sessions()[0];
    assert!(!session.connected);
    assert!(session.error.is_some());
    assert_eq!(session.frames_sent, 0);

    // `wss://` goes through rustls: a server that hangs up during the TLS handshake is a
    // connection error like any other.
    let plain = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let secure = format!("wss://{}/media", plain.local_addr().expect("an address"));
    tokio::spawn(async move {
        while let Ok((socket, _)) = plain.accept().await {
            drop(socket);
        }
    });
    let twiml = format!("<Response><Connect><Stream url=\"{secure}\"/></Connect></Response>");
    let extra = [
        ("Twiml", twiml.as_str()),
        ("StatusCallback", status.as_str()),
    ];
    let sid = create(&base, &state, "+14155550122", &extra).await;
    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(call_statuses(&callbacks), ["completed"]);
    let session = &state.media_sessions()[1];
    assert_eq!(session.url, secure);
    assert!(!session.connected);
    let error = session
        .error
        .as_deref()
        .expect("an error")
        .to_ascii_lowercase();
    assert!(error.contains("tls"), "a handshake was attempted: {error}");
}

// -----------------------------------------------------------------------------------------
// Hang-up, cancel, redirect, concurrency.

#[tokio::test]
async fn a_rest_hang_up_ends_the_lifecycle_with_its_terminal_callback() {
    let receiver = Receiver::spawn().await;
    let behaviour = SimBehaviour {
        talk: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let status = receiver.url("/status");
    let mut extra = vec![
        ("Twiml", "<Response/>"),
        ("StatusCallback", status.as_str()),
    ];
    extra.extend(ALL_EVENTS);
    let sid = create(&base, &state, "+14155550130", &extra).await;
    eventually("the answer", || {
        let statuses = receiver.statuses(&sid);
        (call_statuses(&statuses).contains(&"in-progress")).then_some(())
    })
    .await;
    assert_eq!(state.active_calls(), 1);
    // `canceled` does not end an answered call.
    let unchanged = update(&base, &state, &sid, &[("Status", "canceled")]).await;
    assert_eq!(unchanged["status"], "in-progress");
    let ended = update(&base, &state, &sid, &[("Status", "completed")]).await;
    assert_eq!(ended["status"], "completed");
    assert_eq!(state.active_calls(), 0);
    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(
        call_statuses(&callbacks),
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert_eq!(sequence_numbers(&callbacks), [0, 1, 2, 3]);
    assert_eq!(callbacks[3].param("SipResponseCode"), Some("200"));
}

#[tokio::test]
async fn canceling_a_ringing_call_posts_canceled_and_a_queued_one_posts_nothing() {
    let receiver = Receiver::spawn().await;
    let behaviour = SimBehaviour {
        ring: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let status = receiver.url("/status");
    let mut extra = vec![
        ("Twiml", "<Response/>"),
        ("StatusCallback", status.as_str()),
    ];
    extra.extend(ALL_EVENTS);
    let ringing = create(&base, &state, "+14155550131", &extra).await;
    eventually("ringing", || {
        (state.call(&ringing)?.status == "ringing").then_some(())
    })
    .await;
    update(&base, &state, &ringing, &[("Status", "canceled")]).await;
    let callbacks = receiver.until_terminal(&ringing).await;
    assert_eq!(
        call_statuses(&callbacks),
        ["initiated", "ringing", "canceled"]
    );

    // A call that stays queued (dialing takes a minute), without the `initiated` event.
    let stuck = SimBehaviour {
        dial: Duration::from_secs(60),
        ..fast()
    };
    let (queued_state, queued_base) = simulator(stuck).await;
    let later_events = [
        ("Twiml", "<Response/>"),
        ("StatusCallback", status.as_str()),
        ("StatusCallbackEvent", "ringing"),
        ("StatusCallbackEvent", "answered"),
    ];
    let queued = create(&queued_base, &queued_state, "+14155550132", &later_events).await;
    let canceled = update(
        &queued_base,
        &queued_state,
        &queued,
        &[("Status", "canceled")],
    )
    .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(queued_state.active_calls(), 0);
    // A call canceled while queued fires no callback. Absence cannot be awaited: give a wrong
    // callback time to arrive (this can only pass wrongly, never fail wrongly).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.statuses(&queued).is_empty());
    assert!(queued_state.callbacks().is_empty());
}

#[tokio::test]
async fn a_redirect_to_hangup_twiml_completes_a_live_call() {
    let receiver = Receiver::spawn().await;
    let behaviour = SimBehaviour {
        talk: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let status = receiver.url("/status");
    let extra = [
        ("Twiml", "<Response><Say>hi</Say></Response>"),
        ("StatusCallback", status.as_str()),
    ];
    let sid = create(&base, &state, "+14155550134", &extra).await;
    eventually("the answer", || {
        (state.call(&sid)?.status == "in-progress").then_some(())
    })
    .await;
    let twiml = "<Response><Say>bye</Say><Hangup/></Response>";
    let redirected = update(&base, &state, &sid, &[("Twiml", twiml)]).await;
    assert_eq!(redirected["status"], "in-progress");
    let callbacks = receiver.until_terminal(&sid).await;
    assert_eq!(call_statuses(&callbacks), ["completed"]);
    assert_eq!(state.call(&sid).expect("recorded").redirects, [twiml]);
}

#[tokio::test]
async fn concurrency_counts_calls_from_create_until_they_end() {
    let long = SimBehaviour {
        talk: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(long).await;
    let mut sids = Vec::new();
    for to in ["+14155550140", "+14155550141", "+14155550142"] {
        sids.push(create(&base, &state, to, &[("Twiml", "<Response/>")]).await);
    }
    eventually("three answered calls", || {
        let answered = state
            .calls()
            .iter()
            .filter(|c| c.status == "in-progress")
            .count();
        (answered == 3).then_some(())
    })
    .await;
    assert_eq!(state.active_calls(), 3);
    for sid in &sids[..2] {
        update(&base, &state, sid, &[("Status", "completed")]).await;
    }
    assert_eq!(state.active_calls(), 1);
    assert_eq!(state.max_concurrency(), 3);

    // Calls that end by themselves stop counting when they end.
    let (short, short_base) = simulator(fast()).await;
    for to in ["+14155550143", "+14155550144"] {
        create(&short_base, &short, to, &[("Twiml", "<Response/>")]).await;
    }
    eventually("both calls ended", || {
        short.calls().iter().all(SimCall::has_ended).then_some(())
    })
    .await;
    assert_eq!(short.active_calls(), 0);
    assert!((1..=2).contains(&short.max_concurrency()));
}

#[tokio::test]
async fn create_requests_are_recorded_on_arrival_in_order() {
    let behaviour = SimBehaviour {
        create_latency: Duration::from_secs(1),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let creating = {
        let (state, base) = (state.clone(), base.clone());
        tokio::spawn(async move {
            create(&base, &state, "+14155550150", &[("Twiml", "<Response/>")]).await
        })
    };
    eventually("the recorded call", || state.calls().first().cloned()).await;
    assert!(
        !creating.is_finished(),
        "the call is recorded before the create request is answered"
    );
    let sid = creating.await.expect("the create request");
    let second = create(&base, &state, "+14155550151", &[("Twiml", "<Response/>")]).await;
    let arrivals = state.created_at();
    let order: Vec<(&str, &str)> = arrivals
        .iter()
        .map(|(sid, to, _)| (sid.as_str(), to.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (sid.as_str(), "+14155550150"),
            (second.as_str(), "+14155550151")
        ]
    );
    assert!(arrivals[0].2 <= arrivals[1].2);
    let instants = state.arrivals();
    assert!(instants[0].1.instant <= instants[1].1.instant);
}

// -----------------------------------------------------------------------------------------
// Listing.

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    // Calls stay queued: statuses change only through the hang-up below.
    let behaviour = SimBehaviour {
        dial: Duration::from_secs(60),
        ..fast()
    };
    let (state, base) = simulator(behaviour).await;
    let a = create(&base, &state, "+14155550160", &[("Twiml", "<Response/>")]).await;
    let b = create(&base, &state, "+14155550161", &[("Twiml", "<Response/>")]).await;
    let c = create(&base, &state, "+14155550160", &[("Twiml", "<Response/>")]).await;
    update(&base, &state, &a, &[("Status", "completed")]).await;
    let today = state.call(&a).expect("recorded").created_at.date_naive();
    let tomorrow = today.succ_opt().expect("a next day");
    let path = calls_path(&state);
    let list = |query: String| {
        let (state, url) = (state.clone(), format!("{base}{path}?{query}"));
        async move { get_json(&state, &url).await }
    };
    let sids = |page: &Value| -> Vec<String> {
        page["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .map(|call| call["sid"].as_str().expect("a sid").to_owned())
            .collect()
    };

    let (status, all) = list(String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (a, b, c) = (a.as_str(), b.as_str(), c.as_str());
    assert_eq!(sids(&all), [c, b, a]);
    assert_eq!(all["page_size"], 50);
    assert_eq!(all["next_page_uri"], Value::Null);
    assert_eq!(all["previous_page_uri"], Value::Null);
    assert_eq!(
        (all["start"].as_u64(), all["end"].as_u64()),
        (Some(0), Some(2))
    );
    for (query, expected) in [
        ("To=%2B14155550160".to_owned(), vec![c, a]),
        ("From=%2B18668675310".to_owned(), vec![c, b, a]),
        ("From=%2B19998887777".to_owned(), Vec::new()),
        ("Status=completed".to_owned(), vec![a]),
        ("Status=queued&To=%2B14155550160".to_owned(), vec![c]),
        (format!("StartTime={today}"), vec![c, b, a]),
        (format!("StartTime%3E={tomorrow}"), Vec::new()),
        (format!("StartTime>={today}"), vec![c, b, a]),
        (format!("StartTime%3C={tomorrow}"), vec![c, b, a]),
        (format!("StartTime<={today}"), Vec::new()),
        (format!("EndTime={today}"), vec![a]),
        (
            "ParentCallSid=CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
            Vec::new(),
        ),
    ] {
        let (status, page) = list(query.clone()).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(sids(&page), expected, "{query}");
    }

    // Pages of two: the next page continues after the last call, then the list ends.
    let (_, first) = list("To=%2B14155550160&PageSize=1".to_owned()).await;
    assert_eq!(sids(&first), [c]);
    let next = first["next_page_uri"]
        .as_str()
        .expect("a next page")
        .to_owned();
    assert!(next.starts_with(&format!(
        "{path}?To=%2B14155550160&PageSize=1&Page=1&PageToken=PA"
    )));
    let (_, second) = get_json(&state, &format!("{base}{next}")).await;
    assert_eq!(sids(&second), [a]);
    assert_eq!(second["page"], 1);
    assert_eq!(
        (second["start"].as_u64(), second["end"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(second["next_page_uri"], Value::Null);
    let previous = second["previous_page_uri"]
        .as_str()
        .expect("a previous page");
    let (_, back) = get_json(&state, &format!("{base}{previous}")).await;
    assert_eq!(sids(&back), [c]);
    assert_eq!(
        second["first_page_uri"],
        format!("{path}?To=%2B14155550160&PageSize=1&Page=0")
    );

    let (_, paged) = list("PageSize=2".to_owned()).await;
    assert_eq!(sids(&paged), [c, b]);
    let rest = paged["next_page_uri"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, last) = get_json(&state, &format!("{base}{rest}")).await;
    assert_eq!(sids(&last), [a]);
    assert_eq!(last["next_page_uri"], Value::Null);

    let (_, capped) = list("PageSize=5000".to_owned()).await;
    assert_eq!(capped["page_size"], 1000);
    for bad in [
        "PageSize=0",
        "StartTime=yesterday",
        "PageToken=XX1",
        "Page=-1",
    ] {
        let (status, error) = list(bad.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error["code"], 20001);
    }
}

// -----------------------------------------------------------------------------------------
// The REST resources against the vendored OpenAPI description.

#[tokio::test]
async fn list_and_fetch_answers_match_the_official_schema() {
    let spec = spec();
    let calls = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"];
    let list_schema = &calls["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        list_schema["title"], "ListCallResponse",
        "the vendored spec lists calls"
    );
    let call_path = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"];
    let fetch_schema =
        &call_path["get"]["responses"]["200"]["content"]["application/json"]["schema"];

    let mut behaviour = SimBehaviour {
        talk: Duration::from_secs(60),
        ..fast()
    };
    behaviour
        .by_callee
        .insert("+14155550171".to_owned(), SimOutcome::Busy);
    let (state, base) = simulator(behaviour).await;
    let amd = [("Twiml", "<Response/>"), ("MachineDetection", "Enable")];
    let live = create(&base, &state, "+14155550170", &amd).await;
    let busy = create(&base, &state, "+14155550171", &amd).await;
    let queued = create(&base, &state, "+14155550172", &amd).await;
    update(&base, &state, &queued, &[("Status", "canceled")]).await;
    eventually("an answered, detected call and a busy one", || {
        let detected = state.call(&live)?.answered_by.is_some();
        let ended = state.call(&busy)?.has_ended();
        (detected && ended).then_some(())
    })
    .await;

    let (status, list) =
        get_json(&state, &format!("{base}{}?PageSize=2", calls_path(&state))).await;
    assert_eq!(status, StatusCode::OK);
    check_against(&spec, "list", list_schema, &list);
    for envelope in [
        "calls",
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    ] {
        assert!(list.get(envelope).is_some(), "`{envelope}` is missing");
    }
    for sid in [&live, &busy, &queued] {
        let call = fetch(&base, &state, sid).await;
        check_against(&spec, "call", fetch_schema, &call);
    }
    assert_eq!(fetch(&base, &state, &live).await["answered_by"], "human");
}

// -----------------------------------------------------------------------------------------
// Pure parts: TwiML, outcomes, forms.

#[test]
fn twiml_streams_parameters_and_entities_are_read_tolerantly() {
    let document = r#"<?xml version="1.0"?>
<!-- the agent -->
<Response>
  <Say voice='alice'>Hi &amp; welcome</Say>
  <Connect action="/after">
    <Stream url='wss://media.example.com/twilio?x=1&amp;y=2' name=agent>
      <Parameter name="token" value="a&quot;b&#39;c&#x26;d"/>
      <Parameter name='empty'/>
      <Parameter value="nameless"/>
    </Stream>
  </Connect>
  <Start><Stream url="wss://fork.example.com"/></Start>
  <Hangup/>
</Response>"#;
    let expected_stream = StreamSpec {
        url: "wss://media.example.com/twilio?x=1&y=2".to_owned(),
        name: Some("agent".to_owned()),
        parameters: [
            ("token".to_owned(), "a\"b'c&d".to_owned()),
            ("empty".to_owned(), String::new()),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        verbs(document),
        [
            Verb::Other("Say".to_owned()),
            Verb::ConnectStream(expected_stream),
            Verb::Other("Start".to_owned()),
            Verb::Hangup,
        ]
    );
    assert_eq!(verbs("<Hangup/>"), [Verb::Hangup]);
    assert_eq!(
        verbs("<Response><Connect><Room>r</Room></Connect>"),
        [Verb::Other("Connect".to_owned())]
    );
    assert!(verbs("not xml at all <").is_empty());
    assert!(verbs("<Response><").is_empty());
    assert_eq!(
        super::twiml::decode_entities("&bogus; &#xZZ; &"),
        "&bogus; &#xZZ; &"
    );
}

#[test]
fn outcomes_are_drawn_from_a_seeded_mix_unless_the_callee_is_overridden() {
    let mut behaviour = SimBehaviour {
        outcomes: vec![
            (SimOutcome::Human, 3),
            (SimOutcome::NoAnswer, 1),
            (SimOutcome::Busy, 0),
        ],
        seed: 42,
        ..SimBehaviour::default()
    };
    let draw = |behaviour: &SimBehaviour| {
        let mut picker = OutcomePicker::new(behaviour);
        (0..400)
            .map(|_| picker.pick("+14155550100"))
            .collect::<Vec<_>>()
    };
    let first = draw(&behaviour);
    assert_eq!(
        first,
        draw(&behaviour),
        "the same seed draws the same outcomes"
    );
    assert!(
        !first.contains(&SimOutcome::Busy),
        "a zero weight is never drawn"
    );
    let humans = first.iter().filter(|o| **o == SimOutcome::Human).count();
    assert!(
        (200..=380).contains(&humans),
        "{humans} of 400 for a 3:1 mix"
    );

    behaviour
        .by_callee
        .insert("+14155550199".to_owned(), SimOutcome::Failed);
    let mut picker = OutcomePicker::new(&behaviour);
    let mut mixed = Vec::new();
    for index in 0..400 {
        if index % 2 == 0 {
            assert_eq!(picker.pick("+14155550199"), SimOutcome::Failed);
        }
        mixed.push(picker.pick("+14155550100"));
    }
    assert_eq!(mixed, first, "overridden callees draw nothing");

    let empty = SimBehaviour {
        outcomes: Vec::new(),
        ..SimBehaviour::default()
    };
    assert_eq!(OutcomePicker::new(&empty).pick("+1"), SimOutcome::Human);
}

#[test]
fn outcome_mixes_parse_or_name_the_problem() {
    assert_eq!(
        parse_outcomes("human=8, machine=1,no-answer=1,canceled=0"),
        Ok(vec![
            (SimOutcome::Human, 8),
            (SimOutcome::Machine, 1),
            (SimOutcome::NoAnswer, 1),
            (SimOutcome::Canceled, 0),
        ])
    );
    assert_eq!(
        parse_outcomes("robot=1"),
        Err(OutcomeMixError::UnknownOutcome("robot".to_owned()))
    );
    assert!(matches!(
        parse_outcomes("human"),
        Err(OutcomeMixError::Malformed(_))
    ));
    assert!(matches!(
        parse_outcomes("human=-1"),
        Err(OutcomeMixError::Malformed(_))
    ));
    assert_eq!(parse_outcomes("busy=0"), Err(OutcomeMixError::ZeroTotal));
    assert_eq!(parse_outcomes(""), Err(OutcomeMixError::ZeroTotal));
}

#[test]
fn forms_encode_as_the_whatwg_serializer_and_fragments_set_retries() {
    let pairs = [
        (
            "StartTime>".to_owned(),
            "06/11/2019 22:05:25 MST".to_owned(),
        ),
        ("To".to_owned(), "+1 (415) ü*-._~".to_owned()),
    ];
    let encoded = super::callback::form_encode(&pairs);
    assert_eq!(
        encoded,
        "StartTime%3E=06%2F11%2F2019+22%3A05%3A25+MST&To=%2B1+%28415%29+%C3%BC*-._%7E"
    );
    assert_eq!(crate::http::form::parse(encoded.as_bytes()), pairs);
    use super::callback::{DEFAULT_RETRIES, split_overrides};
    assert_eq!(
        split_overrides("https://x/s"),
        ("https://x/s", DEFAULT_RETRIES)
    );
    assert_eq!(
        split_overrides("https://x/s?a=1#rc=4&rp=all"),
        ("https://x/s?a=1", 4)
    );
    assert_eq!(split_overrides("https://x/s#rc=99"), ("https://x/s", 5));
    assert_eq!(
        split_overrides("https://x/s#ct=100"),
        ("https://x/s", DEFAULT_RETRIES)
    );
}

#[test]
fn form_bodies_decode_repeated_keys_and_escapes() {
    let pairs = crate::http::form::parse(b"To=%2B14155551212&StatusCallbackEvent=initiated&Twiml=%3CSay%3Ehi+there%3C%2FSay%3E&StatusCallbackEvent=completed");
    assert_eq!(pairs[0], ("To".to_owned(), "+14155551212".to_owned()));
    assert_eq!(pairs[2].1, "<Say>hi there</Say>");
    let events: Vec<_> = pairs
        .iter()
        .filter(|(key, _)| key == "StatusCallbackEvent")
        .collect();
    assert_eq!(events.len(), 2);
}

#[test]
fn endpoints_are_e164_sip_or_client() {
    use super::rest::is_endpoint;
    assert!(is_endpoint("+14155551212"));
    assert!(is_endpoint("sip:agent@example.com"));
    assert!(is_endpoint("client:agent"));
    assert!(!is_endpoint("+1555"));
    assert!(!is_endpoint("+1555123"));
    assert!(!is_endpoint("4155551212"));
    assert!(!is_endpoint("+1 415 555 1212"));
}
