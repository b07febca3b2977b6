//! The optional LLM summarizer: an OpenAI-compatible chat completions API
//! (`POST {base_url}/chat/completions`), for tenants that configure `providers.openai`.
//!
//! - **Settings** ([`OpenAiSettings`]): `providers.openai.{model, base_url, max_tokens,
//!   temperature}`; `base_url` is operator-only and defaults to [`DEFAULT_BASE_URL`]. The
//!   credential is `openai.api_key`, sent as `Authorization: Bearer <key>`.
//! - **Request**: a system prompt ([`SYSTEM_PROMPT`]) and one user message holding the
//!   transcript as `Agent: …` / `Lead: …` lines (cut to [`MAX_TRANSCRIPT_CHARS`]), `model`,
//!   `max_tokens` (default [`DEFAULT_MAX_TOKENS`], at most [`MAX_TOKENS_LIMIT`]), `temperature`
//!   only when configured (some models refuse it), within [`REQUEST_TIMEOUT`].
//! - **Answer**: `choices[0].message.content`, trimmed and cut to [`MAX_SUMMARY_CHARS`]. The key
//!   points stay the extractive picks, so they remain quotations of the transcript.
//! - **Failures** are [`ProviderError`]s: 401/403 Unauthorized, 429 RateLimited (with
//!   `Retry-After`), 5xx and transport failures Unavailable, a timeout Timeout, an answer not in
//!   the documented shape `Unavailable("malformed answer: …")`. The summarize stage falls back to
//!   the extractive summary on any of them.
//!
//! Invariant: the key is only ever in a sensitive header; error texts carry the vendor's error
//! `code`/`type`, never its `message` (OpenAI's 401 message quotes part of the key).

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Draft, Facts, MAX_SUMMARY_CHARS, Role, Source, SummarizeError, Summarizer, text};
use crate::providers::error::ProviderError;
use crate::providers::http::{self, Exchange};
use crate::secret::Secret;
use crate::tenancy::FieldError;

/// The provider name under `providers` and the credential prefix.
pub const PROVIDER: &str = "openai";

/// The credential kind of the API key.
pub const API_KEY_KIND: &str = "openai.api_key";

/// Where requests go when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// `max_tokens` when not configured: a few sentences.
pub const DEFAULT_MAX_TOKENS: u32 = 300;

/// The largest `max_tokens` accepted (a summary is at most [`MAX_SUMMARY_CHARS`] characters).
pub const MAX_TOKENS_LIMIT: u32 = 1_000;

/// The most transcript characters sent; longer transcripts keep their beginning.
pub const MAX_TRANSCRIPT_CHARS: usize = 32_000;

/// How long one completion may take. Longer than the crate's default HTTP timeout (a model
/// writes slowly) but bounded: the stage holds its claim while it waits.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest accepted `model` name.
const MAX_MODEL_CHARS: usize = 128;

/// What the model is asked to do.
pub const SYSTEM_PROMPT: &str = "You summarize phone calls between an AI agent calling on \
    behalf of a business and a lead. Write a short, factual summary (at most three sentences) \
    of what was discussed and agreed: appointments, callbacks, objections, requests. Use only \
    what the transcript says; do not invent names, times or commitments. Answer with the \
    summary text only.";

/// A tenant's `providers.openai` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAiSettings {
    /// The model (`gpt-4o-mini`, or whatever the server serves).
    pub model: String,
    /// The API root, without a trailing `/`.
    pub base_url: String,
    /// The completion's token bound.
    pub max_tokens: u32,
    /// The sampling temperature, when configured.
    pub temperature: Option<f64>,
}

impl OpenAiSettings {
    /// Reads `providers.openai`; `at` prefixes the field names of the errors
    /// (e.g. `configuration.providers.openai`).
    ///
    /// # Errors
    ///
    /// Every invalid field, named.
    pub fn parse(settings: &Value, at: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let field = |key: &str| format!("{at}.{key}");
        let model = match settings.get("model") {
            Some(Value::String(model))
                if !model.trim().is_empty() && model.chars().count() <= MAX_MODEL_CHARS =>
            {
                Some(model.trim().to_owned())
            }
            _ => {
                errors.push(FieldError::new(
                    field("model"),
                    format!("must be a model name of 1-{MAX_MODEL_CHARS} characters"),
                ));
                None
            }
        };
        let base_url = match settings.get("base_url") {
            None | Some(Value::Null) => Some(DEFAULT_BASE_URL.to_owned()),
            Some(Value::String(url)) => match reqwest::Url::parse(url) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https")
                        && parsed.host().is_some()
                        && parsed.query().is_none()
                        && parsed.username().is_empty()
                        && parsed.password().is_none() =>
                {
                    Some(url.trim_end_matches('/').to_owned())
                }
                _ => {
                    errors.push(FieldError::new(
                        field("base_url"),
                        "must be an http(s) URL without credentials or query",
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(FieldError::new(field("base_url"), "must be a string"));
                None
            }
        };
        let max_tokens = match settings.get("max_tokens") {
            None | Some(Value::Null) => Some(DEFAULT_MAX_TOKENS),
            Some(value) => match value
                .as_u64()
                .and_then(|tokens| u32::try_from(tokens).ok())
                .filter(|tokens| (1..=MAX_TOKENS_LIMIT).contains(tokens))
            {
                Some(tokens) => Some(tokens),
                None => {
                    errors.push(FieldError::new(
                        field("max_tokens"),
                        format!("must be an integer between 1 and {MAX_TOKENS_LIMIT}"),
                    ));
                    None
                }
            },
        };
        let temperature = match settings.get("temperature") {
            None | Some(Value::Null) => Some(None),
            Some(value) => match value
                .as_f64()
                .filter(|temperature| (0.0..=2.0).contains(temperature))
            {
                Some(temperature) => Some(Some(temperature)),
                None => {
                    errors.push(FieldError::new(
                        field("temperature"),
                        "must be a number between 0 and 2",
                    ));
                    None
                }
            },
        };
        match (model, base_url, max_tokens, temperature) {
            (Some(model), Some(base_url), Some(max_tokens), Some(temperature))
                if errors.is_empty() =>
            {
                Ok(Self {
                    model,
                    base_url,
                    max_tokens,
                    temperature,
                })
            }
            _ => Err(errors),
        }
    }
}

/// The OpenAI-compatible summarizer of one tenant: its settings and its opened key.
pub struct OpenAi {
    client: reqwest::Client,
    settings: OpenAiSettings,
    api_key: Secret<String>,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// A summarizer sending `api_key` to `settings.base_url` with `client`
    /// (from [`crate::providers::http::client`]).
    #[must_use]
    pub const fn new(
        client: reqwest::Client,
        settings: OpenAiSettings,
        api_key: Secret<String>,
    ) -> Self {
        Self {
            client,
            settings,
            api_key,
        }
    }

    /// The request body for `facts`.
    #[must_use]
    pub fn request_body(&self, facts: &Facts) -> Value {
        let mut body = json!({
            "model": self.settings.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": transcript(facts)},
            ],
            "max_tokens": self.settings.max_tokens,
        });
        if let Some(temperature) = self.settings.temperature {
            body["temperature"] = json!(temperature);
        }
        body
    }

    /// Asks for the completion and returns the summary text.
    ///
    /// # Errors
    ///
    /// The failure, classified (see the module documentation).
    pub async fn complete(&self, facts: &Facts) -> Result<String, ProviderError> {
        let url = format!("{}/chat/completions", self.settings.base_url);
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            .map_err(|_| ProviderError::Invalid {
                reason: format!("credential `{API_KEY_KIND}` is not a valid header value"),
            })?;
        authorization.set_sensitive(true);
        let request = self
            .client
            .post(url)
            .header(AUTHORIZATION, authorization)
            .timeout(REQUEST_TIMEOUT)
            .json(&self.request_body(facts));
        let Exchange {
            status,
            headers,
            body,
        } = http::exchange(request).await?;
        if !status.is_success() {
            return Err(ProviderError::from_status(
                status,
                &headers,
                "model",
                error_code(&body),
            ));
        }
        parse_content(&body)
    }
}

impl Summarizer for OpenAi {
    fn summarize<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Result<Draft, SummarizeError>> {
        Box::pin(async move {
            // Nothing was said: there is nothing for a model to summarize but plenty to invent.
            if !facts.turns.iter().any(|turn| !turn.text.trim().is_empty()) {
                return Ok(super::extractive::summarize(&facts.turns));
            }
            let content = self.complete(facts).await?;
            Ok(Draft {
                text: text::truncate(&content, MAX_SUMMARY_CHARS),
                key_points: super::extractive::summarize(&facts.turns).key_points,
                source: Source::Llm,
            })
        })
    }
}

/// The transcript as `Agent: …` / `Lead: …` lines, at most [`MAX_TRANSCRIPT_CHARS`].
#[must_use]
pub fn transcript(facts: &Facts) -> String {
    let lines: Vec<String> = facts
        .turns
        .iter()
        .filter(|turn| !turn.text.trim().is_empty())
        .map(|turn| {
            let who = match turn.role {
                Role::Agent => "Agent",
                Role::User => "Lead",
            };
            format!("{who}: {}", turn.text.trim())
        })
        .collect();
    text::truncate(&lines.join("\n"), MAX_TRANSCRIPT_CHARS)
}

/// The part of a chat completion we read.
#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

/// Reads `choices[0].message.content` of a chat completion.
///
/// # Errors
///
/// [`ProviderError::malformed`] when the body is not a completion or holds no text.
pub fn parse_content(body: &[u8]) -> Result<String, ProviderError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|_| ProviderError::malformed("not a chat completion"))?;
    let content = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::malformed("no choices"))?
        .message
        .content
        .map(|content| content.trim().to_owned())
        .filter(|content| !content.is_empty())
        .ok_or_else(|| ProviderError::malformed("an empty message"))?;
    Ok(content)
}

/// The error's `code` (else `type`) of an OpenAI error body, never its `message`.
fn error_code(body: &[u8]) -> String {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body.get("error").cloned());
    let field = |key: &str| {
        error
            .as_ref()
            .and_then(|error| error.get(key))
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty() && text.len() <= 64)
            .map(str::to_owned)
    };
    field("code")
        .or_else(|| field("type"))
        .unwrap_or_else(|| "no error code".to_owned())
}

#[cfg(test)]
mod tests;
