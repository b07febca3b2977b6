//! Conversations on the bus: opened (`call.answered`), reported on by the voice provider
//! after the fact (`conversation.post_call_reported`), ended (`conversation.ended`),
//! summarized (`conversation.summarized`).
//!
//! - The media gateway emits [`CallAnswered`] once a call's media stream is authenticated;
//!   the converse stage opens a session for it.
//! - Ingress emits [`PostCallReported`] for each verified ElevenLabs post-call webhook; the
//!   post_call stage merges it into the conversation.
//! - A converse worker emits [`ConversationEnded`] when a session ends, for summarize and
//!   analytics.
//! - The summarize stage emits [`ConversationSummarized`] once the summary is stored.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use crate::bus::envelope::Meta;
use crate::bus::subjects::{self, TenantToken};
use crate::ids::{AttemptId, CallId};
use crate::summary::{Outcome, Sentiment, Source};

/// A call's media stream connected, with a valid stream token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallAnswered {
    /// The call.
    #[schemars(with = "String")]
    pub call_id: CallId,
    /// The attempt whose stream connected.
    #[schemars(with = "String")]
    pub attempt_id: AttemptId,
    /// The provider's call id (`callSid`).
    pub provider_call_id: String,
    /// The provider's stream id (`streamSid`).
    pub stream_id: String,
    /// When the stream started.
    pub connected_at: DateTime<Utc>,
}

impl Event for CallAnswered {
    const TYPE: &'static str = "call.answered";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_answered(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_answered(TenantToken::Any)
    }
}

/// How a conversation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEnd {
    /// The agent ended it (its end-call tool or the engine's close).
    AgentEnded,
    /// The caller hung up.
    CallerHungUp,
    /// The call was handed to a person.
    Transferred,
    /// The engine kept failing; the caller heard a goodbye.
    EngineFailed,
    /// No audio arrived for too long (the stream died without a stop).
    MediaLost,
}

/// A conversation ended: its turns, tool calls and recording are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationEnded {
    /// The call.
    #[schemars(with = "String")]
    pub call_id: CallId,
    /// The attempt.
    #[schemars(with = "String")]
    pub attempt_id: AttemptId,
    /// How it ended.
    pub end: ConversationEnd,
    /// When the session opened.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Transcript turns stored.
    pub turns: u32,
    /// Tool calls run.
    pub tool_calls: u32,
    /// Times a worker took over the session after another died or the engine dropped.
    pub resumes: u32,
    /// The voice engine's conversation ids, in order (one per engine session).
    pub engine_conversation_ids: Vec<String>,
}

impl Event for ConversationEnded {
    const TYPE: &'static str = "conversation.ended";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_conversation_ended(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_conversation_ended(TenantToken::Any)
    }
}

/// A verified post-call report of the voice provider (ElevenLabs `post_call_transcription`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostCallReported {
    /// The provider (`elevenlabs`).
    pub provider: String,
    /// The webhook's `type`.
    pub report_type: String,
    /// The provider's conversation id.
    pub conversation_id: String,
    /// The provider's transcript (its own JSON shape, kept as it came).
    #[serde(default)]
    pub transcript: serde_json::Value,
    /// The provider's analysis (summary, success, data collected), as it came.
    #[serde(default)]
    pub analysis: serde_json::Value,
    /// The provider's metadata (duration, cost, termination reason), as it came.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl Event for PostCallReported {
    const TYPE: &'static str = "conversation.post_call_reported";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_post_call(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_post_call(TenantToken::Any)
    }
}

/// A conversation's summary, outcome and sentiment are stored (`conversation_summaries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationSummarized {
    /// The call.
    #[schemars(with = "String")]
    pub call_id: CallId,
    /// The attempt.
    #[schemars(with = "String")]
    pub attempt_id: AttemptId,
    /// What the call amounted to.
    pub outcome: Outcome,
    /// The caller's mood.
    pub sentiment: Sentiment,
    /// The caller's lexicon score in [-1, 1].
    pub sentiment_score: f32,
    /// The summary shown to people: the provider's when it sent one, else ours.
    pub summary: String,
    /// Who wrote our own summary.
    pub source: Source,
    /// Whether the voice provider's post-call analysis was merged.
    pub provider_analysis: bool,
    /// The provider's verdict (`success`, `failure`, `unknown`), when it sent one.
    #[serde(default)]
    pub call_successful: Option<String>,
}

impl Event for ConversationSummarized {
    const TYPE: &'static str = "conversation.summarized";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_conversation_summarized(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_conversation_summarized(TenantToken::Any)
    }
}
