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
//! - Summarizer per tenant ([`Summarizers`]): a tenant that configures `providers.openai`
//!   gets the OpenAI-compatible one ([`crate::summary::llm`]), its key `openai.api_key` opened
//!   at the point of use; every other tenant gets the extractive one. A failing LLM (or a
//!   missing key) falls back to the extractive summary, so the stage never waits on it.
//! - No external side effects beyond that read-only completion request.
//! - Replay is safe: the claim skips a delivered event; a new event for the same attempt
//!   (a republished `conversation.ended`) recomputes the same summary from the same rows,
//!   and the upsert leaves an identical row untouched (an LLM tenant's model is asked again and
//!   may word it differently; the row then takes the new text). The output's id derives from the
//!   input's, so it is deduplicated on the bus.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::crypto::Keyring;
use crate::error::StageError;
use crate::events::conversation::{ConversationEnded, ConversationSummarized};
use crate::events::{Event, EventSpec};
use crate::ids::TenantId;
use crate::providers::error::ProviderError;
use crate::providers::tenant_secret;
use crate::store::{Store, summaries};
use crate::summary::llm::{self, OpenAi, OpenAiSettings};
use crate::summary::{
    self, Draft, Extractive, Facts, ProviderAnalysis, SummarizeError, Summarizer,
};
use crate::tenancy::directory::Directory;

/// How long after a conversation ends the stage waits for the provider's post-call report.
pub const REPORT_GRACE: Duration = Duration::from_secs(60);
/// How often the stage looks again for the report.
pub const REPORT_POLL: Duration = Duration::from_secs(3);

/// Which summarizer writes a tenant's summary.
pub enum Summarizers {
    /// The same one for every tenant (tests).
    One(Arc<dyn Summarizer>),
    /// Per tenant, from its configuration (what [`Stage::build`] picks).
    PerTenant(PerTenant),
}

/// Picks each tenant's summarizer: OpenAI-compatible when it configures `providers.openai`,
/// else [`Extractive`].
#[derive(Clone, Debug)]
pub struct PerTenant {
    directory: Directory,
    store: Store,
    keyring: Option<Arc<Keyring>>,
    client: reqwest::Client,
}

impl PerTenant {
    /// Reads tenants' settings from `directory` and their keys from `store` with `keyring`
    /// (without one, LLM tenants fall back to the extractive summary, with a warning).
    #[must_use]
    pub fn new(directory: Directory, store: Store, keyring: Option<Arc<Keyring>>) -> Self {
        Self {
            directory,
            store,
            keyring,
            client: crate::providers::http::client(),
        }
    }

    /// Returns the tenant's LLM summarizer, `None` when it configures none.
    ///
    /// # Errors
    ///
    /// The tenant configures one that cannot be used now: unreadable settings, no key, no
    /// keyring, or the database failed.
    pub async fn llm(&self, tenant: TenantId) -> Result<Option<OpenAi>, SummarizeError> {
        let snapshot =
            self.directory
                .tenant(tenant)
                .await
                .map_err(|error| ProviderError::Unavailable {
                    reason: format!("database: {error}"),
                })?;
        let Some(settings) = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.configuration.providers.get(llm::PROVIDER))
        else {
            return Ok(None);
        };
        let settings = OpenAiSettings::parse(settings, "providers.openai").map_err(|errors| {
            let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
            SummarizeError::Invalid(format!("invalid settings: {}", fields.join(", ")))
        })?;
        let Some(keyring) = &self.keyring else {
            return Err(SummarizeError::Unavailable(
                "this process has no keyring to open the LLM key with".to_owned(),
            ));
        };
        let key = tenant_secret::open(&self.store, keyring, tenant, llm::API_KEY_KIND)
            .await?
            .ok_or_else(|| {
                SummarizeError::Invalid(format!("no credential `{}`", llm::API_KEY_KIND))
            })?;
        Ok(Some(OpenAi::new(self.client.clone(), settings, key)))
    }
}

impl Summarizers {
    /// Summarizes `facts` of `tenant` with the tenant's summarizer.
    ///
    /// # Errors
    ///
    /// The summarizer failed or could not be set up; the caller falls back.
    pub async fn summarize(
        &self,
        tenant: TenantId,
        facts: &Facts,
    ) -> Result<Draft, SummarizeError> {
        match self {
            Self::One(summarizer) => summarizer.summarize(facts).await,
            Self::PerTenant(per_tenant) => match per_tenant.llm(tenant).await? {
                Some(llm) => llm.summarize(facts).await,
                None => Extractive.summarize(facts).await,
            },
        }
    }
}

/// Summarizes finished conversations.
pub struct Summarize {
    summarizers: Summarizers,
}

impl std::fmt::Debug for Summarize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summarize").finish_non_exhaustive()
    }
}

impl Summarize {
    /// Builds the stage around one summarizer for every tenant (the runner uses
    /// [`Stage::build`], which picks per tenant).
    #[must_use]
    pub fn new(summarizer: Arc<dyn Summarizer>) -> Self {
        Self {
            summarizers: Summarizers::One(summarizer),
        }
    }
}

impl Stage for Summarize {
    const NAME: &'static str = "summarize";
    type Input = ConversationEnded;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            summarizers: Summarizers::PerTenant(PerTenant::new(
                runtime.directory.clone(),
                runtime.store.clone(),
                runtime.directory.keyring().cloned(),
            )),
        })
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
        let own = match self.summarizers.summarize(tenant, &facts).await {
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
