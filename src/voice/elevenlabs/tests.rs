use std::time::Duration;

use serde_json::{Value, json};

use super::{ElevenLabsAccount, ElevenLabsEngine, user_audio_frame};
use crate::providers::sim_elevenlabs::{ElevenLabsSimState, spawn};
use crate::schema_check::validate_at;
use crate::secret::Secret;
use crate::voice::conformance::{self, Scenario, SimHarness};
use crate::voice::elevenlabs_wire::ClientMessage;
use crate::voice::engine::{
    AgentOverrides, EndReason, EngineCommand, EngineError, EngineEvent, PriorTurn, TurnRole,
    VariableValue, VoiceEngine,
};

const KEY: &str = "sk_conformance_key_0123456789";

/// A simulator with every conformance agent, and an engine pointed at it with `key`.
async fn setup(state: ElevenLabsSimState, key: &str) -> (SimHarness, ElevenLabsEngine) {
    let (addr, _task) = spawn(state.clone()).await;
    let engine = ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(key.to_owned()),
            base_url: Some(format!("http://{addr}")),
        },
        crate::providers::http::client(),
    );
    (SimHarness { state }, engine)
}

async fn conformance_setup() -> (SimHarness, ElevenLabsEngine) {
    setup(conformance::sim_state(KEY), KEY).await
}

#[tokio::test]
async fn greeting_starts_then_speaks() {
    let (harness, engine) = conformance_setup().await;
    conformance::greeting_starts_then_speaks(&engine, &harness)
        .await
        .unwrap();
}

#[tokio::test]
async fn tool_call_round_trips() {
    let (harness, engine) = conformance_setup().await;
    conformance::tool_call_round_trips(&engine, &harness)
        .await
        .unwrap();
}

#[tokio::test]
async fn caller_speech_interrupts_the_agent() {
    let (harness, engine) = conformance_setup().await;
    conformance::caller_speech_interrupts_the_agent(&engine, &harness)
        .await
        .unwrap();
    let conversation = &harness.state.conversations()[0];
    assert_eq!(conversation.interruptions.len(), 1);
    assert!(conversation.transcript[0].interrupted);
    let interruption = conversation
        .server_frames
        .iter()
        .position(|frame| frame.contains(r#""type":"interruption""#))
        .unwrap();
    assert!(
        !conversation.server_frames[interruption..]
            .iter()
            .any(|frame| frame.contains(r#""type":"audio""#)),
        "no agent audio follows the interruption"
    );
}

#[tokio::test]
async fn pings_are_answered() {
    let (harness, engine) = conformance_setup().await;
    conformance::pings_are_answered(&engine, &harness)
        .await
        .unwrap();
}

#[tokio::test]
async fn agent_end_ends_the_session() {
    let (harness, engine) = conformance_setup().await;
    conformance::agent_end_ends_the_session(&engine, &harness)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_key_is_refused_without_showing_it() {
    let bad_key = "sk_wrong_key_987654321";
    let (harness, engine) = setup(conformance::sim_state(KEY), bad_key).await;
    conformance::bad_key_is_refused(&engine, &harness, bad_key)
        .await
        .unwrap();
}

#[tokio::test]
async fn resumed_session_continues_the_script() {
    let (harness, engine) = conformance_setup().await;
    conformance::resumed_session_continues(&engine, &harness)
        .await
        .unwrap();
    let conversations = harness.state.conversations();
    assert_eq!(conversations.len(), 2);
    assert_eq!(conversations[0].call_id, conversations[1].call_id);
    assert_eq!(conversations[1].first_step, 1, "resumed at the tool call");
    let variables = &conversations[1].initiation.as_ref().unwrap()["dynamic_variables"];
    assert_eq!(variables["resumed"], json!(true));
    assert_eq!(
        variables["transcript_so_far"],
        json!(format!("agent: {}", conformance::RESUME_BEFORE))
    );
    assert_eq!(conversations[1].contextual_updates.len(), 1);
    assert!(conversations[1].contextual_updates[0].contains("agent: Before the tool."));
    assert!(conversations[0].contextual_updates.is_empty());
}

#[tokio::test]
async fn echo_agent_returns_audio() {
    let (harness, engine) = conformance_setup().await;
    conformance::echo_agent_returns_audio(&engine, &harness)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_frame_either_side_sent_matches_the_asyncapi() {
    let (harness, engine) = conformance_setup().await;
    conformance::tool_call_round_trips(&engine, &harness)
        .await
        .unwrap();
    conformance::caller_speech_interrupts_the_agent(&engine, &harness)
        .await
        .unwrap();
    conformance::pings_are_answered(&engine, &harness)
        .await
        .unwrap();
    conformance::resumed_session_continues(&engine, &harness)
        .await
        .unwrap();
    let spec = crate::schema_check::elevenlabs_asyncapi();
    let mut kinds = std::collections::BTreeSet::new();
    for conversation in harness.state.conversations() {
        for frame in &conversation.client_frames {
            let wire: Value = serde_json::from_str(frame).unwrap();
            kinds.insert(format!(
                "client {}",
                wire["type"].as_str().unwrap_or("audio")
            ));
            if let Err(errors) = validate_at(&spec, "#/x-client", &wire) {
                panic!(
                    "client frame {frame} breaks the AsyncAPI:\n{}",
                    errors.join("\n")
                );
            }
        }
        for frame in &conversation.server_frames {
            let wire: Value = serde_json::from_str(frame).unwrap();
            kinds.insert(format!("server {}", wire["type"].as_str().unwrap()));
            if let Err(errors) = validate_at(&spec, "#/x-server", &wire) {
                panic!(
                    "server frame {frame} breaks the AsyncAPI:\n{}",
                    errors.join("\n")
                );
            }
        }
    }
    for kind in [
        "client conversation_initiation_client_data",
        "client audio",
        "client pong",
        "client client_tool_result",
        "client contextual_update",
        "server conversation_initiation_metadata",
        "server audio",
        "server agent_response",
        "server interruption",
        "server ping",
        "server client_tool_call",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} frame was checked: {kinds:?}"
        );
    }
}

#[tokio::test]
async fn the_initiation_carries_variables_ids_overrides_and_source() {
    let (harness, engine) = conformance_setup().await;
    let mut request = conformance::request(Scenario::AgentEnds.sim_agent_id().to_owned());
    request
        .variables
        .insert("visits".to_owned(), VariableValue::Integer(3));
    request
        .variables
        .insert("is_new".to_owned(), VariableValue::Bool(false));
    request.overrides = AgentOverrides {
        first_message: Some("Hi Jane!".to_owned()),
        language: None,
        prompt: None,
        voice_id: Some("voice_7".to_owned()),
    };
    let mut session = engine.start(request.clone()).await.unwrap();
    let mut said = Vec::new();
    while let Some(event) = session.events.recv().await {
        if let EngineEvent::AgentResponse(text) = event {
            said.push(text);
        }
    }
    assert_eq!(
        said,
        ["Hi Jane!"],
        "the first message replaces the agent's greeting"
    );
    let conversation = &harness.state.conversations()[0];
    let initiation = conversation.initiation.clone().unwrap();
    assert_eq!(
        initiation,
        json!({
            "type": "conversation_initiation_client_data",
            "dynamic_variables": {
                "lead_name": "Jane",
                "visits": 3,
                "is_new": false,
                "call_id": request.call.to_string(),
                "tenant_id": request.tenant.to_string(),
                "attempt_id": request.attempt.to_string(),
            },
            "conversation_config_override": {
                "agent": {"first_message": "Hi Jane!"},
                "tts": {"voice_id": "voice_7"},
            },
            "user_id": "tenant:contact",
            "source_info": {"source": "caller", "version": env!("CARGO_PKG_VERSION")},
        })
    );
    assert!(
        conversation.client_frames[0].contains("conversation_initiation_client_data"),
        "the initiation is the first frame"
    );
}

#[tokio::test]
async fn an_agent_not_on_ulaw_fails_the_session_with_a_clear_message() {
    let state = conformance::sim_state(KEY).with_audio_formats("pcm_16000", "ulaw_8000");
    let (_harness, engine) = setup(state, KEY).await;
    let request = conformance::request(Scenario::Greeting.sim_agent_id().to_owned());
    let mut session = engine.start(request).await.unwrap();
    assert!(matches!(
        session.events.recv().await,
        Some(EngineEvent::Started { .. })
    ));
    let Some(EngineEvent::Ended(EndReason::Failed { kind, message })) = session.events.recv().await
    else {
        panic!("no failure");
    };
    assert_eq!(kind, "unsupported_audio_format");
    assert!(message.contains("pcm_16000") && message.contains("without transcoding"));
    assert_eq!(session.events.recv().await, None);
}

#[tokio::test]
async fn an_unknown_agent_is_refused_and_an_unreachable_host_is_unavailable() {
    let (_harness, engine) = conformance_setup().await;
    let refused = engine
        .start(conformance::request("agent_nobody".to_owned()))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, EngineError::Refused(message) if message.contains("404")),
        "{refused}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = listener.local_addr().unwrap();
    drop(listener);
    let nowhere = ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(KEY.to_owned()),
            base_url: Some(format!("http://{closed_port}")),
        },
        crate::providers::http::client(),
    );
    let unavailable = nowhere
        .start(conformance::request("agent".to_owned()))
        .await
        .unwrap_err();
    assert!(
        matches!(unavailable, EngineError::Unavailable(_)),
        "{unavailable}"
    );
    assert!(!format!("{unavailable:?}").contains(KEY));
}

#[tokio::test]
async fn dropping_the_commands_ends_the_session_as_requested() {
    let (harness, engine) = conformance_setup().await;
    let request = conformance::request(Scenario::Pings.sim_agent_id().to_owned());
    let mut session = engine.start(request).await.unwrap();
    assert!(matches!(
        session.events.recv().await,
        Some(EngineEvent::Started { .. })
    ));
    drop(session.commands);
    let mut last = None;
    while let Some(event) = session.events.recv().await {
        last = Some(event);
    }
    assert_eq!(last, Some(EngineEvent::Ended(EndReason::Requested)));
    for _ in 0..100 {
        if harness.state.conversations()[0].ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        harness.state.conversations()[0].ended,
        Some(crate::providers::sim_elevenlabs::SimEnd::ClientClosed(1000))
    );
}

#[tokio::test]
async fn contextual_updates_and_tool_errors_reach_the_agent() {
    let (harness, engine) = conformance_setup().await;
    let request = conformance::request(Scenario::Pings.sim_agent_id().to_owned());
    let session = engine.start(request).await.unwrap();
    session
        .commands
        .send(EngineCommand::ContextualUpdate(
            "The lead opened the email.".to_owned(),
        ))
        .await
        .unwrap();
    session
        .commands
        .send(EngineCommand::ToolResult {
            tool_call_id: "toolu_x".to_owned(),
            result: "The calendar is down.".to_owned(),
            is_error: true,
        })
        .await
        .unwrap();
    drop(session.commands);
    let mut events = session.events;
    while events.recv().await.is_some() {}
    let conversation = &harness.state.conversations()[0];
    assert_eq!(
        conversation.contextual_updates,
        ["The lead opened the email."]
    );
    assert!(conversation.tool_results[0].is_error);
}

#[test]
fn the_audio_frame_is_the_serde_form_of_user_audio() {
    for audio in [
        &[][..],
        &[0xff][..],
        &[0xff, 0x7f, 0x00, 0x12][..],
        &[0x55; 160][..],
    ] {
        assert_eq!(
            user_audio_frame(audio),
            serde_json::to_string(&ClientMessage::user_audio(audio)).unwrap()
        );
    }
}

#[test]
fn the_transcript_so_far_is_role_colon_text_lines() {
    let turns = [
        PriorTurn {
            role: TurnRole::Agent,
            text: "Hi Jane.".to_owned(),
        },
        PriorTurn {
            role: TurnRole::User,
            text: "Hello?".to_owned(),
        },
    ];
    assert_eq!(
        super::transcript_text(&turns),
        "agent: Hi Jane.\nuser: Hello?"
    );
}

/// How a [`fake_agent`] ends its connection.
#[derive(Clone, Copy)]
enum FakeEnd {
    Close(u16),
    Drop,
}

/// A hand-scripted agent: answers the signed URL, then sends `frames` (after metadata) and
/// ends as `end` says, to drive the adapter through what the simulator never sends.
async fn fake_agent(frames: Vec<String>, end: FakeEnd) -> ElevenLabsEngine {
    use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
    use axum::http::HeaderMap;

    let frames = std::sync::Arc::new(frames);
    let app = axum::Router::new()
        .route(
            "/v1/convai/conversation/get-signed-url",
            axum::routing::get(|headers: HeaderMap| async move {
                let host = headers["host"].to_str().unwrap().to_owned();
                axum::Json(json!({"signed_url": format!("ws://{host}/ws")}))
            }),
        )
        .route(
            "/ws",
            axum::routing::get(move |upgrade: WebSocketUpgrade| {
                let frames = frames.clone();
                async move {
                    upgrade.on_upgrade(move |mut socket| async move {
                        let _initiation = socket.recv().await;
                        let metadata = json!({"type": "conversation_initiation_metadata",
                            "conversation_initiation_metadata_event": {"conversation_id": "conv_fake",
                            "agent_output_audio_format": "ulaw_8000", "user_input_audio_format": "ulaw_8000"}});
                        let mut all = vec![metadata.to_string()];
                        all.extend(frames.iter().cloned());
                        for frame in all {
                            socket.send(Message::Text(frame.into())).await.unwrap();
                        }
                        match end {
                            FakeEnd::Close(code) => {
                                let close = CloseFrame { code, reason: "bye".into() };
                                let _sent = socket.send(Message::Close(Some(close))).await;
                                while let Some(Ok(_)) = socket.recv().await {}
                            }
                            FakeEnd::Drop => drop(socket),
                        }
                    })
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    ElevenLabsEngine::new(
        ElevenLabsAccount {
            api_key: Secret::new(KEY.to_owned()),
            base_url: Some(format!("http://{addr}")),
        },
        crate::providers::http::client(),
    )
}

async fn all_events(engine: &ElevenLabsEngine) -> Vec<EngineEvent> {
    let mut session = engine
        .start(conformance::request("agent_fake".to_owned()))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), session.events.recv())
        .await
        .expect("the session ends")
    {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn bad_and_unknown_messages_are_skipped_and_an_error_explains_the_close() {
    let frames = [
        "not json".to_owned(),
        r#"{"type":"agent_typing","agent_typing_event":{"is_typing":true}}"#.to_owned(),
        r#"{"type":"audio","audio_event":{"audio_base_64":"!!","event_id":1}}"#.to_owned(),
        r#"{"type":"ping","ping_event":{"event_id":"x"}}"#.to_owned(),
        r#"{"type":"audio","audio_event":{"audio_base_64":"/38A","event_id":2}}"#.to_owned(),
        r#"{"type":"user_transcript","user_transcription_event":{"user_transcript":"Hi","event_id":3}}"#.to_owned(),
        r#"{"type":"error","error_event":{"code":1008,"error_type":"missing_dynamic_variable","message":"Missing lead_name"}}"#.to_owned(),
    ];
    let engine = fake_agent(frames.to_vec(), FakeEnd::Close(1008)).await;
    assert_eq!(
        all_events(&engine).await,
        [
            EngineEvent::Started {
                conversation_id: "conv_fake".to_owned()
            },
            EngineEvent::Audio(bytes::Bytes::from_static(&[0xff, 0x7f, 0x00])),
            EngineEvent::UserTranscript("Hi".to_owned()),
            EngineEvent::Ended(EndReason::Failed {
                kind: "missing_dynamic_variable".to_owned(),
                message: "Missing lead_name".to_owned(),
            }),
        ]
    );
}

#[tokio::test]
async fn a_close_without_an_error_frame_fails_with_its_code() {
    let engine = fake_agent(Vec::new(), FakeEnd::Close(1011)).await;
    let events = all_events(&engine).await;
    assert_eq!(
        events.last(),
        Some(&EngineEvent::Ended(EndReason::Failed {
            kind: "1011".to_owned(),
            message: "bye".to_owned(),
        }))
    );
}

#[tokio::test]
async fn a_connection_dropped_without_a_close_is_disconnected() {
    let engine = fake_agent(Vec::new(), FakeEnd::Drop).await;
    let events = all_events(&engine).await;
    assert!(
        matches!(
            events.last(),
            Some(EngineEvent::Ended(EndReason::Disconnected(_)))
        ),
        "{events:?}"
    );
}
