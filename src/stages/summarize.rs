//! The `summarize` stage: turns a finished conversation into its summary, outcome and
//! sentiment (`crate::summary`), merged with the voice provider's post-call analysis.
//!
//! - Consumes: `conversation.ended` (`calls.conversation_ended.<tenant>` on `CALLS`), from
//!   converse workers.
//! - Waits for the provider: an ElevenLabs conversation's post-call report usually lands
//!   seconds after the call (post_call merges it). While it has not, the stage retries every
//!   [`REPORT_POLL`], for at most [`REPORT_GRACE`] after the conversation ended, then
//!   summarizes without it. Other engines send no report and are not waited for.
//! - Writes: one `conversation_summaries` row per attempt, upserted in the claim's
//!   transaction ([`crate::store::summaries::upsert`]).
//! - Emits: `conversation.summarized`, for crm_sync and analytics.
//! - No external side effects: the default summarizer is extractive and local.
//! - Replay is safe: the claim skips a delivered event; a new event for the same attempt
//!   (a republished `conversation.ended`) recomputes the same summary from the same rows,
//!   and the upsert leaves an identical row untouched. The output's id derives from the
//!   input's, so it is deduplicated on the bus.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::conversation::{ConversationEnded, ConversationSummarized};
use crate::events::{Event, EventSpec};
use crate::store::summaries;
use crate::summary::{self, Extractive, ProviderAnalysis, Summarizer};

/// How long after a conversation ends the stage waits for the provider's post-call report.
pub const REPORT_GRACE: Duration = Duration::from_secs(60);
/// How often the stage looks again for the report.
pub const REPORT_POLL: Duration = Duration::from_secs(3);

/// Summarizes finished conversations.
pub struct Summarize {
    summarizer: Arc<dyn Summarizer>,
}

impl std::fmt::Debug for Summarize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summarize").finish_non_exhaustive()
    }
}

impl Summarize {
    /// Builds the stage around a summarizer (the runner uses [`Stage::build`], which picks
    /// [`Extractive`]).
    #[must_use]
    pub fn new(summarizer: Arc<dyn Summarizer>) -> Self {
        Self { summarizer }
    }
}

impl Stage for Summarize {
    const NAME: &'static str = "summarize";
    type Input = ConversationEnded;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self::new(Arc::new(Extractive)))
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<ConversationSummarized>()]
    }

    async fn handle(
        &self,
        input: &Envelope<ConversationEnded>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let ended = &input.payload;
        let Some(conversation) = summaries::conversation(cx.tx, tenant, ended.attempt_id).await?
        else {
            return Err(StageError::rejected(format!(
                "no conversation for attempt {}",
                ended.attempt_id.as_uuid()
            )));
        };
        if conversation.call != ended.call_id {
            return Err(StageError::rejected(
                "the event's call is not the conversation's",
            ));
        }
        // The event is published after the row ends; a row still open is a lagging replica
        // or a bug, and either resolves by looking again.
        if conversation.state != "ended" {
            return Err(StageError::Retryable {
                reason: "the conversation has not ended yet".to_owned(),
                after: Some(REPORT_POLL),
            });
        }
        let ended_at = conversation.ended_at.unwrap_or(ended.ended_at);
        let awaiting_report = conversation.engine == "elevenlabs"
            && !conversation.provider_reported
            && Utc::now() - ended_at
                < chrono::TimeDelta::from_std(REPORT_GRACE).unwrap_or_default();
        if awaiting_report {
            return Err(StageError::Retryable {
                reason: "waiting for the provider's post-call report".to_owned(),
                after: Some(REPORT_POLL),
            });
        }
        let facts = summaries::facts(cx.tx, tenant, ended.call_id, ended.attempt_id).await?;
        let own = match self.summarizer.summarize(&facts).await {
            Ok(draft) => draft,
            Err(error) => {
                // Our own summary never depends on a remote service: fall back, and say so.
                tracing::warn!(%tenant, %error, "summarizer failed; using the extractive one");
                summary::extractive::summarize(&facts.turns)
            }
        };
        let provider = conversation
            .provider_analysis
            .as_ref()
            .filter(|analysis| analysis.is_object())
            .map(ProviderAnalysis::from_json);
        let summary = summary::merge(&facts, own, provider);
        summaries::upsert(cx.tx, tenant, ended.call_id, ended.attempt_id, &summary).await?;
        cx.outbox.push(ConversationSummarized {
            call_id: ended.call_id,
            attempt_id: ended.attempt_id,
            outcome: summary.outcome,
            sentiment: summary.sentiment,
            sentiment_score: summary.sentiment_score,
            summary: summary.summary.clone(),
            source: summary.own.source,
            provider_analysis: summary.provider.is_some(),
            call_successful: summary
                .provider
                .as_ref()
                .and_then(|provider| provider.call_successful.clone()),
        })?;
        tracing::debug!(
            %tenant,
            outcome = summary.outcome.as_str(),
            event = ConversationSummarized::TYPE,
            "conversation summarized"
        );
        Ok(())
    }
}
