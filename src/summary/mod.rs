//! Conversation summaries, pure: what a finished conversation amounted to.
//!
//! The summarize stage (`stages::summarize`) reads a conversation's [`Facts`] from the
//! database, asks a [`Summarizer`] for a draft, and merges it with the voice provider's
//! post-call analysis ([`ProviderAnalysis`]) into a [`Summary`]. Everything here is
//! deterministic and does no I/O except what a [`Summarizer`] implementation chooses to do.
//!
//! - [`text`]: the one normalization (lower case, contractions expanded) the rules match on.
//! - [`extractive`]: the default summarizer, picking the transcript's most informative
//!   sentences.
//! - [`llm`]: the optional summarizer of tenants that configure `providers.openai` (an
//!   OpenAI-compatible chat completions API).
//! - [`outcome`]: the outcome classifier (tool calls and bookings first, then keyword rules).
//! - [`sentiment`]: a lexicon score of what the caller said, with negation.

pub mod extractive;
pub mod llm;
pub mod outcome;
pub mod sentiment;
pub mod text;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use extractive::Extractive;
pub use outcome::Outcome;
pub use sentiment::Sentiment;

/// The longest summary we store, in characters (the provider's is cut to it too).
pub const MAX_SUMMARY_CHARS: usize = 1_000;

/// Who spoke a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The voice agent.
    Agent,
    /// The person called.
    User,
}

impl Role {
    /// Reads a stored `conversation_turns.role`; anything but `agent` is the caller.
    #[must_use]
    pub fn from_stored(role: &str) -> Self {
        if role == "agent" {
            Self::Agent
        } else {
            Self::User
        }
    }
}

/// One transcript turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Who spoke.
    pub role: Role,
    /// What was said.
    pub text: String,
}

/// One tool call the agent made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolUse {
    /// The tool's name (`book_appointment`, `schedule_callback`, …).
    pub name: String,
    /// Whether the tool answered with an error.
    pub is_error: bool,
}

/// Everything the summary is computed from, for one answered attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The transcript, in order.
    pub turns: Vec<Turn>,
    /// The agent's tool calls, in order.
    pub tools: Vec<ToolUse>,
    /// The call has an appointment in status `booked`.
    pub booked: bool,
    /// A `callback` job was scheduled from this attempt.
    pub callback_scheduled: bool,
    /// Answering machine detection said a machine answered.
    pub machine_answered: bool,
    /// The conversation ended by handing the call to a person.
    pub transferred: bool,
}

/// Who wrote our own summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// [`Extractive`]: sentences picked from the transcript.
    Extractive,
    /// A language model the tenant configured.
    Llm,
}

impl Source {
    /// The stored name (`conversation_summaries.source`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Extractive => "extractive",
            Self::Llm => "llm",
        }
    }
}

/// A summarizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The summary, at most [`MAX_SUMMARY_CHARS`].
    pub text: String,
    /// The points it is made of, most informative first.
    pub key_points: Vec<String>,
    /// Who wrote it.
    pub source: Source,
}

/// Why a summarizer could not answer; the stage falls back to [`Extractive`].
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// The service was unreachable, timed out or failed; trying again may work.
    #[error("the summarizer is unavailable: {0}")]
    Unavailable(String),
    /// The service answered something unusable.
    #[error("the summarizer answered something unusable: {0}")]
    Invalid(String),
    /// A remote summarizer's request failed, classified ([`llm`]).
    #[error(transparent)]
    Provider(#[from] crate::providers::error::ProviderError),
}

/// Writes a summary of a conversation. Provider-neutral: [`Extractive`] is always there; an
/// HTTP implementation (an OpenAI-compatible chat API) can stand in for it per tenant.
pub trait Summarizer: Send + Sync {
    /// Summarizes the conversation in `facts`.
    fn summarize<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Result<Draft, SummarizeError>>;
}

/// The voice provider's post-call analysis, as far as we use it (ElevenLabs'
/// `analysis` object: `transcript_summary`, `call_successful`, `data_collection_results`,
/// `evaluation_criteria_results`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderAnalysis {
    /// The provider's summary of the transcript.
    pub summary: Option<String>,
    /// The provider's verdict: `success`, `failure` or `unknown`.
    pub call_successful: Option<String>,
    /// Data collection results, as they came (an object).
    pub data_collection: Value,
    /// Evaluation criteria results, as they came (an object).
    pub evaluation: Value,
}

impl ProviderAnalysis {
    /// Reads the stored `conversations.provider_analysis`; unknown or mistyped parts are
    /// left out rather than refused (the provider's shape is not ours to enforce).
    #[must_use]
    pub fn from_json(analysis: &Value) -> Self {
        let text = |key: &str| {
            analysis
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|text| !text.is_empty())
                .map(|text| text::truncate(text, MAX_SUMMARY_CHARS))
        };
        let object = |key: &str| {
            analysis
                .get(key)
                .filter(|value| value.is_object())
                .cloned()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
        };
        Self {
            summary: text("transcript_summary"),
            call_successful: text("call_successful"),
            data_collection: object("data_collection_results"),
            evaluation: object("evaluation_criteria_results"),
        }
    }
}

/// A conversation's summary, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The summary shown to people: the provider's when it sent one, else ours.
    pub summary: String,
    /// Ours, always kept.
    pub own: Draft,
    /// The provider's analysis, when it came.
    pub provider: Option<ProviderAnalysis>,
    /// What the call amounted to.
    pub outcome: Outcome,
    /// The rule that decided the outcome.
    pub outcome_reason: &'static str,
    /// The caller's mood.
    pub sentiment: Sentiment,
    /// The caller's lexicon score in [-1, 1].
    pub sentiment_score: f32,
}

/// Merges our draft, the outcome and sentiment of `facts`, and the provider's analysis.
#[must_use]
pub fn merge(facts: &Facts, own: Draft, provider: Option<ProviderAnalysis>) -> Summary {
    let (outcome, outcome_reason) = outcome::classify(facts);
    let score = sentiment::score(&facts.turns);
    let summary = provider
        .as_ref()
        .and_then(|provider| provider.summary.clone())
        .unwrap_or_else(|| own.text.clone());
    Summary {
        summary,
        own,
        provider,
        outcome,
        outcome_reason,
        sentiment: Sentiment::of(score),
        sentiment_score: score,
    }
}

#[cfg(test)]
mod tests;
