use serde_json::{Value, json};

use super::{
    AgentOverride, ClientMessage, ConfigOverride, ConversationInitiation, ConversationOverride,
    DynamicValue, PromptOverride, ServerMessage, SourceInfo, TtsOverride, WireError, parse_server,
};
use crate::schema_check::{fixture, fixtures, validate_at};

/// The payload schema of the message whose `type` is `kind`, as a pointer.
fn payload_pointer(spec: &Value, kind: &str) -> String {
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    let (name, _) = schemas
        .iter()
        .find(|(name, schema)| {
            name.ends_with("Payload") && schema["properties"]["type"]["const"] == kind
        })
        .unwrap_or_else(|| panic!("no payload schema for {kind}"));
    format!("#/components/schemas/{name}")
}

fn assert_valid(spec: &Value, pointer: &str, frame: &Value) {
    if let Err(errors) = validate_at(spec, pointer, frame) {
        panic!("{frame} does not match {pointer}:\n{}", errors.join("\n"));
    }
}

#[test]
fn every_server_example_parses_matches_the_asyncapi_and_round_trips() {
    let spec = crate::schema_check::elevenlabs_asyncapi();
    let examples = fixtures("elevenlabs-agent", "server.");
    assert_eq!(
        examples.len(),
        super::KNOWN_TYPES.len(),
        "one fixture per modelled type"
    );
    for (name, text) in examples {
        let message = parse_server(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let wire: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(format!("server.{}.json", message.kind()), name);
        assert_valid(&spec, &payload_pointer(&spec, message.kind()), &wire);
        assert_valid(&spec, "#/x-server", &wire);
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            wire,
            "{name} round-trips"
        );
    }
}

#[test]
fn an_unmodelled_server_type_is_unknown_not_an_error() {
    for (name, text) in fixtures("elevenlabs-agent", "unknown.") {
        let message = parse_server(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            message,
            ServerMessage::Unknown {
                kind: "agent_typing".to_owned()
            }
        );
        assert_valid(
            &crate::schema_check::elevenlabs_asyncapi(),
            "#/x-server",
            &serde_json::from_str(&text).unwrap(),
        );
    }
    let message = parse_server(r#"{"type":"brand_new","brand_new_event":{"x":[1]}}"#).unwrap();
    assert_eq!(message.kind(), "brand_new");
}

#[test]
fn bad_server_input_is_classified_without_panicking() {
    assert!(matches!(parse_server(""), Err(WireError::Malformed(_))));
    assert!(matches!(parse_server("null"), Err(WireError::Malformed(_))));
    assert!(matches!(
        parse_server(r#"{"audio_event":{}}"#),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        parse_server(r#"{"type":"ping","ping_event":{"event_id":"12"}}"#),
        Err(WireError::Invalid { kind, .. }) if kind == "ping"
    ));
    assert!(matches!(
        parse_server(r#"{"type":"audio"}"#),
        Err(WireError::Invalid { kind, .. }) if kind == "audio"
    ));
}

#[test]
fn a_ping_is_answered_with_a_pong_of_the_same_event_id() {
    let text = fixture("elevenlabs-agent", "server.ping.json");
    let ServerMessage::Ping { ping_event } = parse_server(&text).unwrap() else {
        panic!("ping")
    };
    assert_eq!(ping_event.ping_ms, Some(48));
    let pong = serde_json::to_value(ping_event.pong()).unwrap();
    assert_eq!(pong, json!({"type": "pong", "event_id": 12}));
    let first = r#"{"type":"ping","ping_event":{"event_id":1,"ping_ms":null}}"#;
    assert!(
        matches!(parse_server(first), Ok(ServerMessage::Ping { ping_event }) if ping_event.ping_ms.is_none())
    );
}

#[test]
fn audio_decodes_from_base64_and_bad_audio_is_an_error() {
    let good = r#"{"type":"audio","audio_event":{"audio_base_64":"/38A","event_id":1}}"#;
    let Ok(ServerMessage::Audio { audio_event }) = parse_server(good) else {
        panic!("audio")
    };
    assert_eq!(audio_event.decode_audio().unwrap(), vec![0xff, 0x7f, 0x00]);

    let text = fixture("elevenlabs-agent", "server.audio.json");
    let Ok(ServerMessage::Audio { audio_event }) = parse_server(&text) else {
        panic!("audio")
    };
    assert!(matches!(
        audio_event.decode_audio(),
        Err(WireError::Audio(_))
    ));
}

/// Every client message we know how to build, each with the fields it can carry.
fn client_messages() -> Vec<ClientMessage> {
    let initiation = ConversationInitiation {
        dynamic_variables: [
            ("customer_name".to_owned(), DynamicValue::from("Jane Doe")),
            ("visits".to_owned(), DynamicValue::from(3)),
            ("balance".to_owned(), DynamicValue::Number(12.5)),
            ("is_new".to_owned(), DynamicValue::from(true)),
        ]
        .into_iter()
        .collect(),
        conversation_config_override: Some(ConfigOverride {
            agent: Some(AgentOverride {
                first_message: Some("Hi Jane, this is Alex from Acme Dental.".to_owned()),
                language: Some("en".to_owned()),
                prompt: Some(PromptOverride {
                    prompt: Some("Be brief.".to_owned()),
                    llm: None,
                }),
            }),
            tts: Some(TtsOverride {
                voice_id: Some("voice_1".to_owned()),
                stability: Some(0.5),
                speed: Some(1.0),
                similarity_boost: Some(0.8),
            }),
            asr: Some(super::AsrOverride {
                keywords: Some(vec!["Acme".to_owned()]),
            }),
            conversation: Some(ConversationOverride {
                text_only: Some(false),
                client_events: Some(vec!["audio".to_owned(), "interruption".to_owned()]),
            }),
        }),
        custom_llm_extra_body: Some(json!({"temperature": 0.2}).as_object().unwrap().clone()),
        user_id: Some("t1:contact_8812".to_owned()),
        source_info: Some(SourceInfo {
            source: Some("caller".to_owned()),
            version: None,
        }),
    };
    vec![
        ClientMessage::initiation(initiation),
        ClientMessage::initiation(ConversationInitiation::default()),
        ClientMessage::user_audio(&[0xff; 160]),
        ClientMessage::user_audio_base64("no+JhoaJjpzS"),
        ClientMessage::Pong { event_id: 12 },
        ClientMessage::tool_result("toolu_01AbC", r#"{"booked":true}"#, false),
        ClientMessage::ContextualUpdate {
            text: "The user is on the pricing page.".to_owned(),
            context_id: None,
        },
        ClientMessage::ContextualUpdate {
            text: "Slot taken.".to_owned(),
            context_id: Some("slots".to_owned()),
        },
        ClientMessage::UserMessage {
            text: Some("Yes, three works.".to_owned()),
        },
        ClientMessage::UserMessage { text: None },
        ClientMessage::UserActivity,
    ]
}

#[test]
fn every_client_message_we_build_matches_exactly_one_asyncapi_message() {
    let spec = crate::schema_check::elevenlabs_asyncapi();
    for message in client_messages() {
        let wire = serde_json::to_value(&message).unwrap();
        let pointer = match wire["type"].as_str() {
            Some(kind) => payload_pointer(&spec, kind),
            None => "#/components/schemas/UserAudioPayload".to_owned(),
        };
        assert_valid(&spec, &pointer, &wire);
        assert_valid(&spec, "#/x-client", &wire);
        let back: ClientMessage = serde_json::from_value(wire).unwrap();
        assert_eq!(back, message);
    }
}

#[test]
fn client_examples_read_back_and_match_the_asyncapi() {
    let spec = crate::schema_check::elevenlabs_asyncapi();
    let examples = fixtures("elevenlabs-agent", "client.");
    assert!(!examples.is_empty());
    for (name, text) in examples {
        let message: ClientMessage =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let wire: Value = serde_json::from_str(&text).unwrap();
        assert_valid(&spec, "#/x-client", &wire);
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            wire,
            "{name} round-trips"
        );
    }
}

#[test]
fn wire_shapes_are_the_documented_ones() {
    let audio = serde_json::to_value(ClientMessage::user_audio(&[0xff, 0x7f, 0x00])).unwrap();
    assert_eq!(
        audio,
        json!({"user_audio_chunk": "/38A"}),
        "audio has no `type`"
    );
    let variables = serde_json::to_value(ClientMessage::initiation(ConversationInitiation {
        dynamic_variables: [("n".to_owned(), DynamicValue::from(3))]
            .into_iter()
            .collect(),
        ..ConversationInitiation::default()
    }))
    .unwrap();
    assert_eq!(
        variables,
        json!({"type": "conversation_initiation_client_data", "dynamic_variables": {"n": 3}})
    );
    let empty = serde_json::to_value(ClientMessage::UserMessage { text: None }).unwrap();
    assert_eq!(empty, json!({"type": "user_message", "text": null}));
}

#[test]
fn the_validator_rejects_client_messages_that_break_the_asyncapi() {
    let spec = crate::schema_check::elevenlabs_asyncapi();
    let bad = [
        json!({"type": "pong"}),
        json!({"type": "pong", "event_id": "12"}),
        json!({"type": "client_tool_result", "tool_call_id": "t", "result": "r"}),
        json!({"type": "conversation_initiation_client_data",
               "conversation_config_override": {"tts": {"speed": 9}}}),
        json!({"type": "conversation_initiation_client_data",
               "conversation_config_override": {"conversation": {"client_events": []}}}),
        json!({"type": "hang_up"}),
    ];
    for frame in bad {
        assert!(validate_at(&spec, "#/x-client", &frame).is_err(), "{frame}");
    }
}
