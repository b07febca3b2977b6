use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::audio::{self, Speech, SpeechDetection, SpeechDetector};
use super::{ElevenLabsSimState, Script, SimEnd, Step, signature_header, spawn};
use crate::secret::Secret;
use crate::voice::elevenlabs::{ElevenLabsAccount, ElevenLabsEngine};
use crate::voice::engine::{EngineEvent, VoiceEngine as _};

const KEY: &str = "sk_sim_test_key";

fn state() -> ElevenLabsSimState {
    ElevenLabsSimState::new(KEY)
        .with_agent("agent_a", Script::new().say("Hello.", 200).end())
        .with_agent("agent_idle", Script::new().pause(5000))
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let client = crate::providers::http::client();
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.header("xi-api-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn signed_url(base: &str, agent: &str) -> String {
    let url = format!("{base}/v1/convai/conversation/get-signed-url?agent_id={agent}");
    let (status, body) = get(&url, Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    body["signed_url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn signed_urls_need_the_key_and_a_known_agent() {
    let (addr, _task) = spawn(state()).await;
    let base = format!("http://{addr}");
    let url = format!("{base}/v1/convai/conversation/get-signed-url?agent_id=agent_a");

    let (status, body) = get(&url, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["detail"]["status"], "invalid_api_key");
    let (status, _) = get(&url, Some("sk_other")).await;
    assert_eq!(status, 401);

    let (status, body) = get(&url, Some(KEY)).await;
    assert_eq!(status, 200);
    let signed = body["signed_url"].as_str().unwrap();
    let prefix = format!(
        "ws://{addr}/v1/convai/conversation?agent_id=agent_a&conversation_signature=cvtkn_"
    );
    assert!(signed.starts_with(&prefix), "{signed}");

    let deprecated = format!("{base}/v1/convai/conversation/get_signed_url?agent_id=agent_a");
    assert_eq!(get(&deprecated, Some(KEY)).await.0, 200);

    let unknown = format!("{base}/v1/convai/conversation/get-signed-url?agent_id=nobody");
    let (status, body) = get(&unknown, Some(KEY)).await;
    assert_eq!(status, 404);
    assert!(body["detail"]["message"].is_string());

    let missing = format!("{base}/v1/convai/conversation/get-signed-url");
    let (status, body) = get(&missing, Some(KEY)).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "agent_id"]));
}

#[tokio::test]
async fn a_signature_opens_one_connection_only() {
    let (addr, _task) = spawn(state()).await;
    let signed = signed_url(&format!("http://{addr}"), "agent_idle").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(signed.as_str())
        .await
        .unwrap();
    socket.close(None).await.unwrap();

    let again = tokio_tungstenite::connect_async(signed.as_str()).await;
    assert!(
        matches!(&again, Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 403),
        "{again:?}"
    );
    let forged = format!(
        "ws://{addr}/v1/convai/conversation?agent_id=agent_idle&conversation_signature=cvtkn_forged"
    );
    assert!(
        tokio_tungstenite::connect_async(forged.as_str())
            .await
            .is_err()
    );
    let unsigned = format!("ws://{addr}/v1/convai/conversation?agent_id=agent_idle");
    assert!(
        tokio_tungstenite::connect_async(unsigned.as_str())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_wrong_pong_is_flagged_and_a_right_one_matched() {
    let state = state().with_ping_interval(Duration::from_millis(50));
    let (addr, _task) = spawn(state.clone()).await;
    let signed = signed_url(&format!("http://{addr}"), "agent_idle").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(signed.as_str())
        .await
        .unwrap();
    socket
        .send(Message::text(
            r#"{"type":"conversation_initiation_client_data","dynamic_variables":{"call_id":"c1"}}"#,
        ))
        .await
        .unwrap();
    let mut pings = 0;
    while pings < 2 {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("the socket closed");
        };
        let frame: Value = serde_json::from_str(text.as_str()).unwrap();
        if frame["type"] == "ping" {
            let event_id = frame["ping_event"]["event_id"].as_u64().unwrap();
            // The first answer is wrong on purpose.
            let answer = if pings == 0 {
                event_id + 1000
            } else {
                event_id
            };
            let pong = json!({"type": "pong", "event_id": answer}).to_string();
            socket.send(Message::text(pong)).await.unwrap();
            pings += 1;
        }
    }
    socket.close(None).await.unwrap();
    while socket.next().await.is_some() {}
    let conversation = wait_ended(&state).await;
    assert_eq!(conversation.call_id.as_deref(), Some("c1"));
    assert_eq!(conversation.pongs.len(), 2);
    assert!(!conversation.pongs[0].matched);
    assert!(conversation.pongs[1].matched);
    assert_eq!(conversation.wrong_pongs().len(), 1);
    assert_eq!(
        conversation.ended,
        Some(SimEnd::ClientClosed(1005)),
        "a close without a code"
    );
}

async fn wait_ended(state: &ElevenLabsSimState) -> super::SimConversation {
    for _ in 0..250 {
        if let Some(conversation) = state.conversations().first()
            && conversation.ended.is_some()
        {
            return conversation.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the conversation never ended: {:?}", state.conversations());
}

#[test]
fn the_webhook_signature_reproduces_the_b11_test_vector() {
    let body = r#"{"type":"post_call_audio","event_timestamp":1739537319,"data":{"agent_id":"xyz","conversation_id":"abc","full_audio":"SUQzBAAAAAAA"}}"#;
    assert_eq!(
        signature_header("wsec_example_secret", 1_739_537_319, body),
        "t=1739537319,v0=717c42d6effac7b5b309f3b82b00fa5587572d7f3ab0a5e4cf13bf106ff439a8"
    );
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver answering 200 and keeping every request.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

const B10_REQUIRED: [&str; 9] = [
    "agent_id",
    "status",
    "metadata",
    "conversation_id",
    "has_audio",
    "has_user_audio",
    "has_response_audio",
    "has_auxiliary_audio",
    "transcript",
];

#[tokio::test]
async fn a_finished_conversation_is_posted_signed_and_readable_by_id() {
    let (hook, received) = receiver().await;
    let state = state().with_post_call_webhook(&hook, "wsec_test");
    let (addr, _task) = spawn(state.clone()).await;
    let engine = ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(KEY.to_owned()),
            base_url: Some(format!("http://{addr}")),
        },
        crate::providers::http::client(),
    );
    let request = crate::voice::conformance::request("agent_a".to_owned());
    let mut session = engine.start(request).await.unwrap();
    let mut conversation_id = String::new();
    while let Some(event) = session.events.recv().await {
        if let EngineEvent::Started {
            conversation_id: id,
        } = event
        {
            conversation_id = id;
        }
    }
    for _ in 0..250 {
        if !state.webhook_deliveries().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = state.webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));
    let (headers, body) = received.lock().unwrap()[0].clone();
    let signature = headers["elevenlabs-signature"].to_str().unwrap().to_owned();
    let timestamp: i64 = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(signature, signature_header("wsec_test", timestamp, &body));

    let posted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(posted["type"], "post_call_transcription");
    assert_eq!(posted["event_timestamp"], json!(timestamp));
    let data = &posted["data"];
    for field in B10_REQUIRED {
        assert!(!data[field].is_null(), "no `{field}` in {data}");
    }
    assert_eq!(data["conversation_id"], json!(conversation_id));
    assert_eq!(data["status"], "done");
    assert_eq!(data["user_id"], "tenant:contact");
    assert_eq!(data["transcript"][0]["role"], "agent");
    assert_eq!(data["transcript"][0]["message"], "Hello.");
    assert!(data["transcript"][0]["time_in_call_secs"].is_u64());
    assert_eq!(data["has_response_audio"], json!(true));
    assert!(data["metadata"]["start_time_unix_secs"].is_i64());
    assert!(data["analysis"]["transcript_summary"].is_string());

    let url = format!("http://{addr}/v1/convai/conversations/{conversation_id}");
    let (status, fetched) = get(&url, Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(&fetched, data);
    let (status, _) = get(&url, None).await;
    assert_eq!(status, 401);
    let missing = format!("http://{addr}/v1/convai/conversations/conv_nobody");
    assert_eq!(get(&missing, Some(KEY)).await.0, 404);

    let list = format!("http://{addr}/v1/convai/conversations");
    let (status, listed) = get(&list, Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["conversations"][0]["conversation_id"],
        json!(conversation_id)
    );
}

#[tokio::test]
async fn a_tool_turn_shows_its_call_and_result_in_the_details() {
    let state = ElevenLabsSimState::new(KEY).with_agent(
        "agent_tool",
        Script::new()
            .tool("book_appointment", json!({"slot": "15:00"}), true)
            .end(),
    );
    let (addr, _task) = spawn(state.clone()).await;
    let engine = ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(KEY.to_owned()),
            base_url: Some(format!("http://{addr}")),
        },
        crate::providers::http::client(),
    );
    let mut session = engine
        .start(crate::voice::conformance::request("agent_tool".to_owned()))
        .await
        .unwrap();
    while let Some(event) = session.events.recv().await {
        if let EngineEvent::ToolCall { tool_call_id, .. } = event {
            let result = crate::voice::engine::EngineCommand::ToolResult {
                tool_call_id,
                result: r#"{"booked":true}"#.to_owned(),
                is_error: false,
            };
            session.commands.send(result).await.unwrap();
        }
    }
    let conversation = wait_ended(&state).await;
    assert_eq!(conversation.ended, Some(SimEnd::AgentEnded));
    let details = super::rest::details(&conversation);
    let turn = &details["transcript"][0];
    assert_eq!(turn["tool_calls"][0]["tool_name"], "book_appointment");
    assert_eq!(
        turn["tool_calls"][0]["params_as_json"],
        json!(r#"{"slot":"15:00"}"#)
    );
    assert_eq!(
        turn["tool_results"][0]["result_value"],
        r#"{"booked":true}"#
    );
    assert_eq!(turn["tool_results"][0]["is_error"], json!(false));
}

#[test]
fn scripts_load_from_json_with_defaults() {
    let text = r#"{"steps":[
        {"say":{"text":"Hi"}},
        {"listen":{"transcript":"Hello"}},
        {"tool":{"name":"get_available_slots"}},
        {"pause":{"ms":250}},
        "end"
    ]}"#;
    let script: Script = serde_json::from_str(text).unwrap();
    assert_eq!(
        script,
        Script::new()
            .say("Hi", 1000)
            .listen("Hello")
            .tool("get_available_slots", json!({}), true)
            .pause(250)
            .end()
    );
    let demo = Script::demo();
    assert_eq!(demo.steps.last(), Some(&Step::End));
    let back: Script = serde_json::from_str(&serde_json::to_string(&demo).unwrap()).unwrap();
    assert_eq!(back, demo);
}

fn detect(audio: &[u8], chunk: usize) -> Vec<Speech> {
    let mut detector = SpeechDetector::new(SpeechDetection::default());
    let mut found = Vec::new();
    for piece in audio.chunks(chunk) {
        detector.push(piece, |speech| found.push(speech));
    }
    found
}

#[test]
fn speech_then_silence_is_one_utterance_whatever_the_chunking() {
    let mut utterance = audio::tone(300, 0);
    utterance.extend(audio::silence(500));
    for chunk in [7, 160, 800, utterance.len()] {
        assert_eq!(
            detect(&utterance, chunk),
            [Speech::Started, Speech::Ended],
            "{chunk}"
        );
    }
    let mut blip = audio::tone(100, 0);
    blip.extend(audio::silence(500));
    assert!(detect(&blip, 160).is_empty(), "100 ms is not speech");
    let mut pause = audio::tone(300, 0);
    pause.extend(audio::silence(300));
    assert_eq!(
        detect(&pause, 160),
        [Speech::Started],
        "300 ms of silence does not end it"
    );
}

#[test]
fn mulaw_round_trips_within_its_quantisation() {
    assert_eq!(audio::encode(0), audio::SILENCE);
    assert_eq!(audio::decode(audio::SILENCE), 0);
    for sample in [-32_000_i16, -10_000, -100, 100, 1234, 10_000, 32_000] {
        let back = audio::decode(audio::encode(sample));
        let error = (i32::from(back) - i32::from(sample)).abs();
        assert!(
            error <= i32::from(sample).abs() / 16 + 8,
            "{sample} -> {back}"
        );
    }
    let tone = audio::tone(100, 0);
    assert_eq!(tone.len(), 800);
    assert!(
        tone.iter().any(|&byte| audio::decode(byte).abs() > 5000),
        "audible"
    );
}

#[tokio::test(start_paused = true)]
async fn a_signature_expires_after_fifteen_minutes_and_names_one_agent() {
    let state = state();
    let expired = state.issue_signature("agent_a");
    tokio::time::advance(super::SIGNATURE_TTL + Duration::from_secs(1)).await;
    assert!(state.redeem("agent_a", &expired).is_none());

    let fresh = state.issue_signature("agent_a");
    assert!(
        state.redeem("agent_idle", &fresh).is_none(),
        "another agent"
    );
    assert!(state.redeem("agent_a", &fresh).is_some());
    assert!(state.redeem("agent_a", &fresh).is_none(), "used");
}

#[tokio::test]
async fn a_silent_caller_gets_the_transcript_after_the_listen_timeout() {
    let state = ElevenLabsSimState::new(KEY)
        .with_listen_timeout(Duration::from_millis(100))
        .with_agent("agent_listen", Script::new().listen("Silence.").end());
    let (addr, _task) = spawn(state.clone()).await;
    let engine = ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(KEY.to_owned()),
            base_url: Some(format!("http://{addr}")),
        },
        crate::providers::http::client(),
    );
    let mut session = engine
        .start(crate::voice::conformance::request(
            "agent_listen".to_owned(),
        ))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = session.events.recv().await {
        events.push(event);
    }
    assert_eq!(
        events[1..],
        [
            EngineEvent::UserTranscript("Silence.".to_owned()),
            EngineEvent::Ended(crate::voice::engine::EndReason::AgentEnded),
        ]
    );
    let conversation = wait_ended(&state).await;
    assert_eq!(conversation.transcript[0].role, "user");
}
