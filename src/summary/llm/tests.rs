use std::time::Duration;

use serde_json::json;

use super::*;
use crate::providers::sim_openai::{self, Fault, OpenAiSimState};
use crate::summary::Turn;

const KEY: &str = "sk-test-secret-0123456789";

fn facts() -> Facts {
    Facts {
        turns: vec![
            Turn {
                role: Role::Agent,
                text: "Hi Jane, would you like to book a check-up?".to_owned(),
            },
            Turn {
                role: Role::User,
                text: "Yes, tomorrow at ten works.".to_owned(),
            },
        ],
        ..Facts::default()
    }
}

async fn simulator() -> (OpenAiSimState, OpenAiSettings) {
    let state = OpenAiSimState::new(KEY);
    let (addr, _task) = sim_openai::spawn(state.clone()).await;
    let settings = OpenAiSimState::settings(&format!("http://{addr}"), "gpt-sim");
    let settings = OpenAiSettings::parse(&settings, "providers.openai").unwrap();
    (state, settings)
}

fn summarizer(settings: OpenAiSettings, key: &str) -> OpenAi {
    OpenAi::new(
        crate::providers::http::client(),
        settings,
        Secret::new(key.to_owned()),
    )
}

#[test]
fn settings_have_defaults_and_errors_name_the_field() {
    let settings = OpenAiSettings::parse(&json!({"model": "gpt-4o-mini"}), "p.openai").unwrap();
    assert_eq!(settings.base_url, DEFAULT_BASE_URL);
    assert_eq!(settings.max_tokens, DEFAULT_MAX_TOKENS);
    assert_eq!(settings.temperature, None);
    let settings = OpenAiSettings::parse(
        &json!({"model": "m", "base_url": "http://h:1/v1/", "max_tokens": 50, "temperature": 0.2}),
        "p.openai",
    )
    .unwrap();
    assert_eq!(settings.base_url, "http://h:1/v1");
    assert_eq!(settings.max_tokens, 50);
    assert_eq!(settings.temperature, Some(0.2));

    let errors = OpenAiSettings::parse(
        &json!({"base_url": "ftp://x", "max_tokens": 0, "temperature": 3}),
        "p.openai",
    )
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "p.openai.model",
            "p.openai.base_url",
            "p.openai.max_tokens",
            "p.openai.temperature"
        ]
    );
    for bad in [
        json!({"model": ""}),
        json!({"model": "m", "base_url": "https://user:pw@h/v1"}),
        json!({"model": "m", "max_tokens": 1_001}),
        json!({"model": "m", "max_tokens": "300"}),
    ] {
        assert!(OpenAiSettings::parse(&bad, "p").is_err(), "{bad}");
    }
}

#[test]
fn the_request_carries_the_prompt_the_transcript_and_the_bounds() {
    let mut settings = OpenAiSettings::parse(&json!({"model": "m"}), "p").unwrap();
    let body = summarizer(settings.clone(), KEY).request_body(&facts());
    assert_eq!(body["model"], "m");
    assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
    assert!(body.get("temperature").is_none());
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], SYSTEM_PROMPT);
    assert_eq!(body["messages"][1]["role"], "user");
    assert_eq!(
        body["messages"][1]["content"],
        "Agent: Hi Jane, would you like to book a check-up?\nLead: Yes, tomorrow at ten works."
    );
    settings.temperature = Some(0.0);
    let body = summarizer(settings, KEY).request_body(&facts());
    assert_eq!(body["temperature"], 0.0);

    let long = Facts {
        turns: vec![Turn {
            role: Role::User,
            text: "word ".repeat(20_000),
        }],
        ..Facts::default()
    };
    assert!(transcript(&long).chars().count() <= MAX_TRANSCRIPT_CHARS);
}

#[tokio::test]
async fn the_simulated_model_writes_the_summary() {
    let (sim, settings) = simulator().await;
    sim.set_answer("  Jane booked a check-up for tomorrow at ten.  ");
    let draft = summarizer(settings, KEY).summarize(&facts()).await.unwrap();
    assert_eq!(draft.source, Source::Llm);
    assert_eq!(draft.text, "Jane booked a check-up for tomorrow at ten.");
    assert!(!draft.key_points.is_empty(), "the extractive picks stay");
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].authorized);
    assert_eq!(requests[0].status, 200);
    assert_eq!(requests[0].body["model"], "gpt-sim");
    assert_eq!(sim.completions(), 1);
}

#[tokio::test]
async fn nothing_said_asks_no_model() {
    let (sim, settings) = simulator().await;
    let draft = summarizer(settings, KEY)
        .summarize(&Facts::default())
        .await
        .unwrap();
    assert_eq!(draft.source, Source::Extractive);
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn failures_are_classified_without_the_key() {
    let (sim, settings) = simulator().await;
    let llm = summarizer(settings.clone(), KEY);

    sim.push_fault(Fault::RateLimited {
        retry_after_secs: 7,
    });
    assert_eq!(
        llm.complete(&facts()).await,
        Err(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
    sim.push_fault(Fault::ServerError);
    assert!(matches!(
        llm.complete(&facts()).await,
        Err(ProviderError::Unavailable { .. })
    ));
    sim.push_fault(Fault::Unauthorized);
    assert!(matches!(
        llm.complete(&facts()).await,
        Err(ProviderError::Unauthorized { .. })
    ));
    sim.push_fault(Fault::Malformed);
    let malformed = llm.complete(&facts()).await.unwrap_err();
    assert!(
        malformed.to_string().contains("malformed answer"),
        "{malformed}"
    );
    assert!(matches!(
        llm.summarize(&facts()).await,
        Ok(Draft {
            source: Source::Llm,
            ..
        })
    ));

    // A wrong key: the simulator quotes its start, as OpenAI does; we never pass it on.
    let wrong = summarizer(settings, "sk-wrong-key-abcdef");
    let error = wrong.summarize(&facts()).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(matches!(
        error,
        SummarizeError::Provider(ProviderError::Unauthorized { .. })
    ));
    assert!(text.contains("invalid_api_key"), "{text}");
    for secret in ["sk-wrong", "sk-test", KEY] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(!format!("{llm:?}").contains(KEY));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let settings = OpenAiSettings::parse(
        &json!({"model": "m", "base_url": format!("http://{addr}/v1")}),
        "p",
    )
    .unwrap();
    let error = summarizer(settings, KEY).complete(&facts()).await;
    assert!(
        matches!(error, Err(ProviderError::Unavailable { .. })),
        "{error:?}"
    );
}

#[test]
fn answers_not_in_the_documented_shape_are_malformed() {
    for body in [
        &b"not json"[..],
        br#"{"choices": []}"#,
        br#"{"choices": [{"message": {"role": "assistant", "content": null}}]}"#,
        br#"{"choices": [{"message": {"role": "assistant", "content": "   "}}]}"#,
    ] {
        let error = parse_content(body).unwrap_err();
        assert!(error.to_string().contains("malformed answer"), "{error}");
    }
    assert_eq!(
        parse_content(br#"{"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}"#),
        Ok("ok".to_owned())
    );
}
