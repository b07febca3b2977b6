//! The `post_call` stage: merges the voice provider's post-call report (its transcript,
//! analysis and metadata) into the conversation it is about.
//!
//! - Consumes: `conversation.post_call_reported` (`calls.post_call.<tenant>` on `CALLS`), from
//!   ingress (ElevenLabs' signed post-call webhook).
//! - Writes: `conversations.provider_transcript`, `provider_analysis`, `provider_metadata`
//!   of the conversation whose engine ids include the report's conversation id.
//! - A report can arrive before the session recorded the engine's conversation id (the id is
//!   written a moment after the engine accepts the session): that is retried with backoff;
//!   after the consumer's delivery limit it is a dead letter naming the conversation id.

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::conversation::PostCallReported;
use crate::store::conversations;

/// Merges post-call reports.
#[derive(Debug)]
pub struct PostCall;

impl Stage for PostCall {
    const NAME: &'static str = "post_call";
    type Input = PostCallReported;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    async fn handle(
        &self,
        input: &Envelope<PostCallReported>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let report = &input.payload;
        let merged = conversations::merge_post_call(
            cx.tx,
            input.meta.tenant_id,
            &report.conversation_id,
            &report.transcript,
            &report.analysis,
            &report.metadata,
        )
        .await?;
        if merged {
            Ok(())
        } else {
            Err(StageError::retryable(format!(
                "no conversation has engine conversation id {} yet",
                report.conversation_id
            )))
        }
    }
}
