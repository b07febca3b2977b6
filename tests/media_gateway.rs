//! The media gateway with a real NATS server and a real database: a Media Streams client
//! (tokio-tungstenite, speaking as Twilio) on one side, the media plane on the other.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use caller::bus::envelope::Envelope;
use caller::bus::subjects::{self, CALLS_STREAM};
use caller::calls::stream_token::{StreamClaims, StreamTokens};
use caller::crypto::Keyring;
use caller::events::conversation::CallAnswered;
use caller::ids::{AttemptId, CallId, TenantId};
use caller::media::frame::{MediaFrame, Sequenced};
use caller::media::gateway::{self, MediaGateway};
use caller::recording::{mulaw, sealed};
use caller::settings::MediaSettings;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::Utc;
use common::{TestEnv, eventually};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const MASTER_KEY: [u8; 32] = [7u8; 32];
const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const WAIT: Duration = Duration::from_secs(10);

/// A loud μ-law pattern (a square wave of ±~3,000), unmistakably not silence.
fn tone(len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| if (index / 10) % 2 == 0 { 0x9F } else { 0x1F })
        .collect()
}

struct Setup {
    env: TestEnv,
    tenant: TenantId,
    keyring: Keyring,
    url: String,
    recordings: tempfile::TempDir,
    /// Requests the stub Twilio REST API received: (path, form body).
    rest: Requests,
}

impl Setup {
    async fn start(record_calls: bool) -> Self {
        let env = TestEnv::start(None).await;
        let keyring = Keyring::from_parts("k1", [("k1", MASTER_KEY)]).unwrap();
        let (rest_base, rest) = stub_twilio().await;
        let request = json!({
            "slug": "acme-dental",
            "name": "Acme Dental",
            "timezone": "UTC",
            "configuration": {
                "telephony": "twilio",
                "caller_numbers": ["+15125550100"],
                "record_calls": record_calls,
                "providers": {"twilio": {"account_sid": ACCOUNT_SID, "base_url": rest_base}}
            },
            "credentials": {"twilio.auth_token": {"value": "stub-auth-token"}}
        });
        let mut tx = env.db.store.begin_platform().await.unwrap();
        let client = service::onboard(
            &mut tx,
            &Actor::operator("test"),
            &keyring,
            serde_json::from_value(request).unwrap(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let directory = Directory::new(
            env.db.store.clone(),
            Some(Arc::new(keyring.clone())),
            Duration::from_secs(60),
        );
        let recordings = tempfile::tempdir().unwrap();
        let settings = MediaSettings {
            recordings_dir: recordings.path().to_owned(),
            start_timeout_ms: 500,
            hangup_drain_timeout_ms: 5_000,
        };
        let gateway =
            MediaGateway::new(env.bus.clone(), env.db.store.clone(), directory, settings).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/media/twilio", listener.local_addr().unwrap());
        let router = gateway::router(Arc::new(gateway));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            env,
            tenant: client.id,
            keyring,
            url,
            recordings,
            rest,
        }
    }

    /// Creates a call and its attempt (the recording row refers to them).
    async fn call(&self) -> StreamClaims {
        let claims = StreamClaims {
            tenant: self.tenant,
            call: CallId::from_uuid(uuid::Uuid::now_v7()),
            attempt: AttemptId::from_uuid(uuid::Uuid::now_v7()),
        };
        sqlx::query(
            "INSERT INTO calls (id, tenant_id, direction, to_number, request_event_id)
             VALUES ($1, $2, 'outbound', '+15125550111', $3)",
        )
        .bind(claims.call.as_uuid())
        .bind(claims.tenant.as_uuid())
        .bind(uuid::Uuid::now_v7())
        .execute(&self.env.db.observer)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO call_attempts (id, call_id, tenant_id, attempt_number, input_event_id,
                                        provider, state)
             VALUES ($1, $2, $3, 1, $4, 'twilio', 'answered')",
        )
        .bind(claims.attempt.as_uuid())
        .bind(claims.call.as_uuid())
        .bind(claims.tenant.as_uuid())
        .bind(uuid::Uuid::now_v7())
        .execute(&self.env.db.observer)
        .await
        .unwrap();
        claims
    }

    fn token(&self, claims: &StreamClaims) -> String {
        StreamTokens::from_keyring(&self.keyring)
            .issue(claims, Utc::now() + chrono::Duration::minutes(10))
    }

    fn parameters(&self, claims: &StreamClaims) -> Value {
        json!({
            "tenant_id": claims.tenant.to_string(),
            "call_id": claims.call.to_string(),
            "attempt_id": claims.attempt.to_string(),
            "token": self.token(claims),
        })
    }

    async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(&self.url).await.unwrap();
        Client {
            ws,
            stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
            call_sid: format!("CA{}", uuid::Uuid::new_v4().simple()),
            sequence: 0,
            chunk: 0,
            received: Vec::new(),
        }
    }

    /// Messages on the CALLS stream.
    async fn calls_stream_messages(&self) -> u64 {
        let mut stream = self
            .env
            .bus
            .jetstream()
            .get_stream(CALLS_STREAM)
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn answered(&self) -> Option<(Envelope<CallAnswered>, Option<String>)> {
        let stream = self
            .env
            .bus
            .jetstream()
            .get_stream(CALLS_STREAM)
            .await
            .unwrap();
        let subject = subjects::calls_answered(subjects::TenantToken::Id(&self.tenant));
        let message = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .ok()?;
        let message_id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|value| value.as_str().to_owned());
        let envelope = Envelope::decode(Some(&message.headers), &message.payload).unwrap();
        Some((envelope, message_id))
    }
}

/// Requests a stub received: (path, form body).
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A stand-in for Twilio's REST API that records call updates.
async fn stub_twilio() -> (String, Requests) {
    use axum::extract::{Path, State};
    let seen: Requests = Arc::default();
    let router = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{call}",
            axum::routing::post(
                |State(seen): State<Requests>,
                 Path((account, call)): Path<(String, String)>,
                 body: String| async move {
                    seen.lock()
                        .unwrap()
                        .push((format!("{account}/{call}"), body));
                    axum::Json(
                        json!({"sid": call.trim_end_matches(".json"), "status": "completed"}),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, seen)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Twilio's side of the socket.
struct Client {
    ws: Socket,
    stream_sid: String,
    call_sid: String,
    sequence: u64,
    chunk: u64,
    /// Every text frame received from the gateway.
    received: Vec<String>,
}

impl Client {
    async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    async fn connected(&mut self) {
        self.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            .await;
    }

    async fn start(&mut self, parameters: Value) {
        let start = json!({
            "event": "start",
            "sequenceNumber": self.next_sequence(),
            "start": {
                "accountSid": ACCOUNT_SID,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.stream_sid,
        });
        self.send(start).await;
    }

    async fn media(&mut self, audio: &[u8]) {
        self.chunk += 1;
        let media = json!({
            "event": "media",
            "sequenceNumber": self.next_sequence(),
            "media": {
                "track": "inbound",
                "chunk": self.chunk.to_string(),
                "timestamp": (self.chunk * 20).to_string(),
                "payload": BASE64.encode(audio),
            },
            "streamSid": self.stream_sid,
        });
        self.send(media).await;
    }

    async fn mark(&mut self, name: &str) {
        let mark = json!({
            "event": "mark",
            "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid,
            "mark": {"name": name},
        });
        self.send(mark).await;
    }

    async fn stop(&mut self) {
        let stop = json!({
            "event": "stop",
            "sequenceNumber": self.next_sequence(),
            "stop": {"accountSid": ACCOUNT_SID, "callSid": self.call_sid},
            "streamSid": self.stream_sid,
        });
        self.send(stop).await;
    }

    /// The next text frame from the gateway, as JSON.
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame from the gateway in time")
                .expect("the socket is open")
                .unwrap();
            match message {
                Message::Text(text) => {
                    self.received.push(text.to_string());
                    return serde_json::from_str(text.as_str()).unwrap();
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Waits for the gateway to close the socket; returns the close code.
    async fn closed(&mut self) -> Option<CloseCode> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the gateway closes the socket in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code),
                Some(Ok(Message::Text(text))) => self.received.push(text.to_string()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

async fn next_frame(subscriber: &mut async_nats::Subscriber) -> Sequenced {
    let message = tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("a media frame in time")
        .unwrap();
    Sequenced::decode(&message.payload).unwrap()
}

async fn publish(setup: &Setup, subject: String, seq: u64, frame: MediaFrame) {
    let client = setup.env.bus.client();
    client
        .publish(subject, Sequenced { seq, frame }.encode())
        .await
        .unwrap();
    client.flush().await.unwrap();
}

#[tokio::test]
async fn an_authenticated_stream_is_answered_and_bridged_both_ways() {
    let setup = Setup::start(false).await;
    let claims = setup.call().await;
    let mut inbound = setup
        .env
        .bus
        .client()
        .subscribe(subjects::media_in(&claims.call))
        .await
        .unwrap();
    let mut client = setup.connect().await;
    client.connected().await;
    client.start(setup.parameters(&claims)).await;

    eventually(WAIT, "call.answered on CALLS", || async {
        setup.answered().await.is_some()
    })
    .await;
    let (answered, message_id) = setup.answered().await.unwrap();
    assert_eq!(answered.meta.tenant_id, claims.tenant);
    assert_eq!(answered.meta.call_id, Some(claims.call));
    assert_eq!(answered.payload.call_id, claims.call);
    assert_eq!(answered.payload.attempt_id, claims.attempt);
    assert_eq!(answered.payload.provider_call_id, client.call_sid);
    assert_eq!(answered.payload.stream_id, client.stream_sid);
    let message_id = message_id.unwrap();
    assert!(message_id.starts_with("answered-"), "{message_id}");
    assert_ne!(message_id, answered.meta.event_id.to_string());

    // Caller audio: the exact bytes, numbered from 1.
    let frames: Vec<Vec<u8>> = (0u8..3).map(|n| vec![n + 1; 160]).collect();
    for frame in &frames {
        client.media(frame).await;
    }
    for (seq, frame) in (1..).zip(&frames) {
        let received = next_frame(&mut inbound).await;
        assert_eq!(received.seq, seq);
        assert_eq!(
            received.frame,
            MediaFrame::Audio(Bytes::from(frame.clone()))
        );
    }

    // Agent audio and control reach Twilio.
    let agent = tone(320);
    publish(
        &setup,
        subjects::media_out(&claims.call),
        1,
        MediaFrame::Audio(Bytes::from(agent.clone())),
    )
    .await;
    let media = client.next().await;
    assert_eq!(media["event"], "media");
    assert_eq!(media["streamSid"], client.stream_sid.as_str());
    let payload = BASE64
        .decode(media["media"]["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, agent);
    publish(
        &setup,
        subjects::media_ctl(&claims.call),
        1,
        MediaFrame::Clear,
    )
    .await;
    let clear = client.next().await;
    assert_eq!(
        clear,
        json!({"event": "clear", "streamSid": client.stream_sid})
    );
    publish(
        &setup,
        subjects::media_ctl(&claims.call),
        2,
        MediaFrame::Mark("utt-1".to_owned()),
    )
    .await;
    let mark = client.next().await;
    assert_eq!(mark["event"], "mark");
    assert_eq!(mark["mark"]["name"], "utt-1");

    // Marks echoed and digits come back on `in`; so does the end of the stream.
    client.mark("utt-1").await;
    let echoed = next_frame(&mut inbound).await;
    assert_eq!(echoed.seq, 4);
    assert_eq!(echoed.frame, MediaFrame::MarkPlayed("utt-1".to_owned()));
    let dtmf = json!({"event": "dtmf", "streamSid": client.stream_sid, "sequenceNumber": client.next_sequence(),
                      "dtmf": {"track": "inbound_track", "digit": "7"}});
    client.send(dtmf).await;
    assert_eq!(next_frame(&mut inbound).await.frame, MediaFrame::Dtmf('7'));
    // Malformed frames are skipped, not fatal.
    client
        .send(json!({"event": "media", "nonsense": true}))
        .await;
    client
        .ws
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    client.stop().await;
    let stopped = next_frame(&mut inbound).await;
    assert_eq!(stopped.frame, MediaFrame::Stopped);
    assert_eq!(stopped.seq, 6);
    assert_eq!(client.closed().await, Some(CloseCode::Normal));

    caller::schema_check::assert_valid_to_twilio(&client.received);
    assert_eq!(setup.calls_stream_messages().await, 1);
    setup.env.finish().await;
}

/// What a refused client does.
enum Attempt {
    ForgedToken,
    WrongCall,
    ExpiredToken,
    MissingToken,
    NoStart,
    StartFirst,
}

#[tokio::test]
async fn bad_streams_are_closed_with_1008_and_publish_nothing() {
    let setup = Setup::start(false).await;
    let claims = setup.call().await;
    let mut media = setup.env.bus.client().subscribe("media.>").await.unwrap();
    let cases = [
        Attempt::ForgedToken,
        Attempt::WrongCall,
        Attempt::ExpiredToken,
        Attempt::MissingToken,
        Attempt::NoStart,
        Attempt::StartFirst,
    ];
    for case in cases {
        let mut client = setup.connect().await;
        let mut parameters = setup.parameters(&claims);
        match case {
            Attempt::ForgedToken => {
                let forged = Keyring::from_parts("k1", [("k1", [9u8; 32])]).unwrap();
                parameters["token"] = json!(
                    StreamTokens::from_keyring(&forged)
                        .issue(&claims, Utc::now() + chrono::Duration::minutes(5))
                );
            }
            Attempt::WrongCall => {
                parameters["call_id"] = json!(CallId::from_uuid(uuid::Uuid::now_v7()).to_string());
            }
            Attempt::ExpiredToken => {
                parameters["token"] = json!(
                    StreamTokens::from_keyring(&setup.keyring)
                        .issue(&claims, Utc::now() - chrono::Duration::minutes(1))
                );
            }
            Attempt::MissingToken => {
                parameters.as_object_mut().unwrap().remove("token");
            }
            Attempt::NoStart | Attempt::StartFirst => {}
        }
        match case {
            Attempt::NoStart => client.connected().await,
            Attempt::StartFirst => client.start(parameters).await,
            _ => {
                client.connected().await;
                client.start(parameters).await;
            }
        }
        assert_eq!(client.closed().await, Some(CloseCode::Policy));
    }
    // Anything published would have arrived by now behind this round trip.
    setup.env.bus.client().flush().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), media.next())
            .await
            .is_err(),
        "a refused stream published on the media plane"
    );
    assert_eq!(setup.calls_stream_messages().await, 0);
    setup.env.finish().await;
}

#[tokio::test]
async fn a_hang_up_plays_out_then_ends_the_call_through_the_rest_api() {
    let setup = Setup::start(false).await;
    let claims = setup.call().await;
    let mut inbound = setup
        .env
        .bus
        .client()
        .subscribe(subjects::media_in(&claims.call))
        .await
        .unwrap();
    let mut client = setup.connect().await;
    client.connected().await;
    client.start(setup.parameters(&claims)).await;
    eventually(WAIT, "call.answered", || async {
        setup.answered().await.is_some()
    })
    .await;
    publish(
        &setup,
        subjects::media_ctl(&claims.call),
        1,
        MediaFrame::Hangup,
    )
    .await;
    let mark = client.next().await;
    assert_eq!(mark["event"], "mark");
    let name = mark["mark"]["name"].as_str().unwrap().to_owned();
    assert!(
        setup.rest.lock().unwrap().is_empty(),
        "hung up before the audio played"
    );
    client.mark(&name).await;
    assert_eq!(client.closed().await, Some(CloseCode::Normal));
    let rest = setup.rest.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].0, format!("{ACCOUNT_SID}/{}.json", client.call_sid));
    assert!(rest[0].1.contains("Status=completed"), "{}", rest[0].1);
    let stopped = next_frame(&mut inbound).await;
    assert_eq!(stopped.frame, MediaFrame::Stopped);
    caller::schema_check::assert_valid_to_twilio(&client.received);
    setup.env.finish().await;
}

#[tokio::test]
async fn a_recorded_call_is_sealed_with_both_channels() {
    let setup = Setup::start(true).await;
    let claims = setup.call().await;
    let mut client = setup.connect().await;
    client.connected().await;
    client.start(setup.parameters(&claims)).await;
    eventually(WAIT, "call.answered", || async {
        setup.answered().await.is_some()
    })
    .await;
    eventually(WAIT, "the recording row", || async {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM call_recordings WHERE attempt_id = $1")
                .bind(claims.attempt.as_uuid())
                .fetch_optional(&setup.env.db.observer)
                .await
                .unwrap();
        state.as_deref() == Some("recording")
    })
    .await;
    // The agent speaks 40 ms; once Twilio has it, the caller's frames play against it.
    let agent = vec![0x80_u8; 320];
    publish(
        &setup,
        subjects::media_out(&claims.call),
        1,
        MediaFrame::Audio(Bytes::from(agent.clone())),
    )
    .await;
    assert_eq!(client.next().await["event"], "media");
    let caller = tone(160);
    const FRAMES: usize = 25;
    for _ in 0..FRAMES {
        client.media(&caller).await;
    }
    client.stop().await;
    client.closed().await;

    eventually(WAIT, "the recording completes", || async {
        let state: String =
            sqlx::query_scalar("SELECT state FROM call_recordings WHERE attempt_id = $1")
                .bind(claims.attempt.as_uuid())
                .fetch_one(&setup.env.db.observer)
                .await
                .unwrap();
        state == "complete"
    })
    .await;
    let (location, key_id, duration, completed): (String, String, Option<f64>, bool) =
        sqlx::query_as(
            "SELECT location, key_id, duration_secs, completed_at IS NOT NULL
               FROM call_recordings WHERE attempt_id = $1",
        )
        .bind(claims.attempt.as_uuid())
        .fetch_one(&setup.env.db.observer)
        .await
        .unwrap();
    assert_eq!(key_id, "k1");
    assert!(completed);
    assert_eq!(
        location,
        gateway::recording_location(claims.tenant, claims.call, claims.attempt).to_string_lossy()
    );
    let path = setup.recordings.path().join(&location);
    let context = gateway::recording_context(claims.tenant, claims.call, claims.attempt);
    let wav = sealed::open(&path, |id| (id == "k1").then_some(MASTER_KEY), &context).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8_000
    );
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let data_len = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    let samples: Vec<(i16, i16)> = wav[44..44 + data_len]
        .chunks_exact(4)
        .map(|s| {
            (
                i16::from_le_bytes([s[0], s[1]]),
                i16::from_le_bytes([s[2], s[3]]),
            )
        })
        .collect();
    assert_eq!(samples.len(), FRAMES * 160);
    let expected_caller: Vec<i16> = caller.iter().map(|b| mulaw::decode(*b)).collect();
    for (index, (left, right)) in samples.iter().enumerate() {
        assert_eq!(*left, expected_caller[index % 160], "left sample {index}");
        let expected_right = if index < agent.len() {
            mulaw::decode(agent[index])
        } else {
            0
        };
        assert_eq!(*right, expected_right, "right sample {index}");
    }
    assert!(expected_caller.iter().all(|sample| sample.abs() > 1_000));
    let duration = duration.unwrap();
    assert!(
        (duration - (FRAMES * 160) as f64 / 8_000.0).abs() < 1e-9,
        "{duration}"
    );
    setup.env.finish().await;
}

#[tokio::test]
async fn the_simulated_callee_speaks_waits_for_the_agent_and_hangs_up() {
    use caller::calls::twiml;
    use caller::ids::PhoneNumber;
    use caller::providers::sim_twilio::{self, CallerStep, SimBehaviour, TwilioSimState};
    use caller::providers::telephony::{CallInstructions, PlaceCall, Telephony as _};
    use caller::providers::twilio::Twilio;

    let setup = Setup::start(false).await;
    let claims = setup.call().await;
    let behaviour = SimBehaviour {
        dial: Duration::from_millis(10),
        ring: Duration::from_millis(10),
        caller_script: vec![
            CallerStep::Speak { ms: 200 },
            CallerStep::WaitForAgentAudio { timeout_ms: 5_000 },
            CallerStep::Hangup,
        ],
        ..SimBehaviour::default()
    };
    let sim = TwilioSimState::default().with_behaviour(behaviour);
    let (sim_addr, _) = sim_twilio::spawn(sim.clone()).await;
    let twilio = Twilio::new(
        sim.account_sid(),
        caller::secret::Secret::new("sim-twilio-auth-token".to_owned()),
    )
    .unwrap()
    .with_base_url(&format!("http://{sim_addr}"));
    let mut inbound = setup
        .env
        .bus
        .client()
        .subscribe(subjects::media_in(&claims.call))
        .await
        .unwrap();
    let parameters = setup.parameters(&claims);
    let pairs: Vec<(&str, &str)> = ["tenant_id", "call_id", "attempt_id", "token"]
        .into_iter()
        .map(|name| (name, parameters[name].as_str().unwrap()))
        .collect();
    twilio
        .place_call(&PlaceCall {
            to: PhoneNumber::parse("+15125550111").unwrap(),
            from: PhoneNumber::parse("+15125550100").unwrap(),
            instructions: CallInstructions::Twiml(twiml::connect_stream(&setup.url, &pairs)),
            status_callback: "http://127.0.0.1:9/status".to_owned(),
            machine_detection_callback: None,
            record: false,
            timeout_secs: 30,
        })
        .await
        .unwrap();

    // The callee speaks 200 ms (10 tone frames) and then waits for the agent.
    let tone = sim_twilio::tone_frame();
    let mut frames = Vec::new();
    while frames
        .iter()
        .filter(|frame: &&Sequenced| frame.frame == MediaFrame::Audio(Bytes::from(tone.clone())))
        .count()
        < 10
    {
        frames.push(next_frame(&mut inbound).await);
    }
    let agent: Vec<u8> = (0..800).map(|index| (index % 200) as u8).collect();
    for (seq, chunk) in (1..).zip(agent.chunks(160)) {
        publish(
            &setup,
            subjects::media_out(&claims.call),
            seq,
            MediaFrame::Audio(Bytes::copy_from_slice(chunk)),
        )
        .await;
    }
    // Once the agent is quiet, the callee hangs up.
    loop {
        let frame = next_frame(&mut inbound).await;
        let stopped = frame.frame == MediaFrame::Stopped;
        frames.push(frame);
        if stopped {
            break;
        }
    }
    let sequence: Vec<u64> = frames.iter().map(|frame| frame.seq).collect();
    assert_eq!(sequence, (1..=frames.len() as u64).collect::<Vec<_>>());

    eventually(WAIT, "the simulator's session ends", || async {
        sim.media_sessions()
            .first()
            .is_some_and(|session| session.stopped)
    })
    .await;
    let session = sim.media_sessions().remove(0);
    assert_eq!(session.speech_frames_sent, 10);
    assert_eq!(session.agent_audio, agent);
    assert_eq!(session.agent_audio_at.len(), 5);
    assert!(!session.reconnected);
    assert!(session.clears_at.is_empty());
    // Recorded, not asserted: timing on a loaded machine varies.
    eprintln!("agent gaps: {}", session.agent_gaps);
    caller::schema_check::assert_valid_to_twilio(&session.raw_received);
    setup.env.finish().await;
}
