//! The `canary` stage: answers pipeline probes.
//!
//! - Consumes: `canary.requested` (`canary.requested.<tenant>` on `CANARY`).
//! - Emits: `canary.answered`.
//! - Writes: nothing besides the runner's idempotency claim.
//! - External side effects: none.
//! - Replay: a redelivered probe finds its claim and re-emits the stored answer with the same
//!   event id, which the stream's duplicate window drops.

use chrono::Utc;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::canary::{CanaryAnswered, CanaryRequested};

/// Answers every probe.
#[derive(Debug, Default)]
pub struct CanaryStage;

impl Stage for CanaryStage {
    const NAME: &'static str = "canary";
    type Input = CanaryRequested;

    fn build(_runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<CanaryAnswered>()]
    }

    async fn handle(
        &self,
        input: &Envelope<CanaryRequested>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        if input.payload.origin.trim().is_empty() {
            return Err(StageError::rejected("probe has an empty `origin`"));
        }
        cx.outbox.push(CanaryAnswered {
            origin: input.payload.origin.clone(),
            requested_at: input.meta.occurred_at,
            answered_at: Utc::now(),
        })?;
        Ok(())
    }
}
