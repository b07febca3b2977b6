//! A test double of an OpenAI-compatible chat completions API, for the LLM summarizer
//! ([`crate::summary::llm`]): `POST /v1/chat/completions`, with every request recorded.
//!
//! - **Shape.** There is no OpenAI specification in `/work/shared/specs`; the shapes follow
//!   OpenAI's public API reference ("The chat completion object"): `{id, object:
//!   "chat.completion", created, model, choices: [{index, message: {role: "assistant", content},
//!   finish_reason: "stop"}], usage: {prompt_tokens, completion_tokens, total_tokens}}`, and
//!   errors as `{"error": {message, type, param, code}}`. Token counts are word counts, which is
//!   all a caller can check.
//! - **Authentication.** `Authorization: Bearer <key>` must be the simulator's key; anything
//!   else is 401 `invalid_api_key` before the request is looked at (like OpenAI, the message
//!   quotes the start of the key sent, so the adapter must not pass it on).
//! - **Answers.** The content is [`OpenAiSimState::set_answer`]'s text (default
//!   [`DEFAULT_ANSWER`]). A body without `model` or `messages` is 400.
//! - **Faults.** [`OpenAiSimState::push_fault`] answers the next authenticated requests first:
//!   429 with `Retry-After`, 500, 401, or [`Fault::Malformed`] (200 with a body that is not a
//!   completion).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// The key the simulator accepts unless told otherwise.
pub const DEFAULT_KEY: &str = "sk-sim-openai-key";

/// The content of every completion unless told otherwise.
pub const DEFAULT_ANSWER: &str =
    "The lead agreed to a check-up appointment tomorrow at ten; no objections were raised.";

/// A scripted failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 `rate_limit_exceeded` with `Retry-After` in seconds.
    RateLimited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// 500 `server_error`.
    ServerError,
    /// 401 `invalid_api_key`, whatever key was sent.
    Unauthorized,
    /// 200 with a JSON body that is not a chat completion.
    Malformed,
}

/// One request the simulator received.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRequest {
    /// The path.
    pub path: String,
    /// Whether the bearer key was the simulator's.
    pub authorized: bool,
    /// The JSON body (`null` when unreadable).
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug)]
struct Inner {
    key: String,
    answer: String,
    faults: VecDeque<Fault>,
    requests: Vec<SimRequest>,
    completions: u64,
}

/// The simulator's state, shared with the test that drives it.
#[derive(Clone, Debug)]
pub struct OpenAiSimState {
    inner: Arc<Mutex<Inner>>,
}

impl Default for OpenAiSimState {
    fn default() -> Self {
        Self::new(DEFAULT_KEY)
    }
}

impl OpenAiSimState {
    /// A simulator accepting `key`.
    #[must_use]
    pub fn new(key: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                key: key.to_owned(),
                answer: DEFAULT_ANSWER.to_owned(),
                faults: VecDeque::new(),
                requests: Vec::new(),
                completions: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key it accepts.
    #[must_use]
    pub fn key(&self) -> String {
        self.lock().key.clone()
    }

    /// Returns `providers.openai` pointing at the simulator served at `base_url` (its root,
    /// e.g. `http://127.0.0.1:1234`).
    #[must_use]
    pub fn settings(base_url: &str, model: &str) -> Value {
        json!({"model": model, "base_url": format!("{}/v1", base_url.trim_end_matches('/'))})
    }

    /// Sets the content of the next completions.
    pub fn set_answer(&self, answer: &str) {
        answer.clone_into(&mut self.lock().answer);
    }

    /// Queues a failure for the next authenticated request.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Every request received, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<SimRequest> {
        self.lock().requests.clone()
    }

    /// How many completions were answered successfully.
    #[must_use]
    pub fn completions(&self) -> u64 {
        self.lock().completions
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {"message": message, "type": kind, "param": null, "code": code}
        })),
    )
        .into_response()
}

fn words(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

async fn completions(
    State(state): State<OpenAiSimState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = state.lock();
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let authorized = sent == inner.key;
    let response = if authorized {
        answer(&mut inner, &body)
    } else {
        // OpenAI quotes the key's start and end; the adapter must never repeat it.
        let shown: String = sent.chars().take(6).collect();
        error(
            StatusCode::UNAUTHORIZED,
            &format!("Incorrect API key provided: {shown}***."),
            "invalid_request_error",
            "invalid_api_key",
        )
    };
    inner.requests.push(SimRequest {
        path: "/v1/chat/completions".to_owned(),
        authorized,
        body,
        status: response.status().as_u16(),
    });
    response
}

fn answer(inner: &mut Inner, body: &Value) -> Response {
    if let Some(fault) = inner.faults.pop_front() {
        return match fault {
            Fault::RateLimited { retry_after_secs } => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit reached for requests",
                    "requests",
                    "rate_limit_exceeded",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_secs.into());
                response
            }
            Fault::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request.",
                "server_error",
                "server_error",
            ),
            Fault::Unauthorized => error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
            ),
            Fault::Malformed => axum::Json(json!({"object": "chat.completion"})).into_response(),
        };
    }
    let (Some(model), Some(messages)) = (
        body.get("model").and_then(Value::as_str),
        body.get("messages").and_then(Value::as_array),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter and messages",
            "invalid_request_error",
            "invalid_request",
        );
    };
    let prompt_tokens: u64 = messages
        .iter()
        .filter_map(|message| message.get("content").and_then(Value::as_str))
        .map(words)
        .sum();
    let completion_tokens = words(&inner.answer);
    inner.completions += 1;
    axum::Json(json!({
        "id": format!("chatcmpl-sim{}", inner.completions),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": inner.answer},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

/// Returns the simulator's router over `state`.
pub fn router(state: OpenAiSimState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(state)
}

/// Binds `127.0.0.1:0`, serves the simulator on a task, and returns its address and the task.
///
/// # Panics
///
/// Panics if no loopback port can be bound (a broken test host).
pub async fn spawn(state: OpenAiSimState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port for the openai simulator");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %err, "openai simulator stopped");
        }
    });
    (addr, task)
}
