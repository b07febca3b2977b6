//! Stages: one module per stage, one name per stage everywhere.
//!
//! A stage's name is its module name, its `Stage::NAME`, its durable consumer, its key in
//! `pipelines/*.yaml`, its `stage` metric label and its log field. The runner
//! (`bus::runner`) does everything but the business step: pulling, decoding, the idempotency
//! claim, the transaction, publishing outputs, acking, retries and dead letters.

pub mod analytics_sink;
pub mod call_status;
pub mod canary;
pub mod converse;
pub mod crm_sync;
pub mod dedupe;
pub mod dial;
pub mod post_call;
pub mod rate_limit;
pub mod resolve_tenant;
pub mod scheduler;
pub mod summarize;

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::bus::envelope::Envelope;
use crate::bus::outbox::Outbox;
use crate::bus::runner::{self, Runtime};
use crate::error::StageError;
use crate::events::{Event, EventSpec};
use crate::pipeline::StageSpec;
use crate::shutdown::Shutdown;

/// What a handler gets besides its input.
pub struct StageContext<'a> {
    /// The transaction that already holds this input's idempotency claim; every write of the
    /// handler goes through it so it commits, or not, together with the claim.
    pub tx: &'a mut PgConnection,
    /// Where the handler puts its outputs.
    pub outbox: &'a mut Outbox,
}

/// A pipeline stage.
///
/// `handle` MUST be idempotent with respect to external side effects (claim → act → record,
/// the dial protocol of `../shared/ARCHITECTURE.md` section 5); database writes through `cx.tx` are covered by the claim.
/// It MUST NOT publish directly: outputs go through `cx.outbox`.
pub trait Stage: Sized + Send + Sync + 'static {
    /// The stage's one name.
    const NAME: &'static str;
    /// The event type it consumes.
    type Input: Event;

    /// Builds the handler from what the process provides (settings, store, directory).
    fn build(runtime: &Runtime) -> anyhow::Result<Self>;

    /// Returns every event type the stage may emit; `pipelines/` may declare a subset.
    fn outputs() -> Vec<EventSpec>;

    /// Returns work that runs beside the consumer in every process of this stage, until
    /// shutdown (e.g. `rate_limit`'s admission cycles); none by default.
    fn companion(
        runtime: &Runtime,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        let _ = (runtime, shutdown);
        None
    }

    /// Handles one input.
    fn handle(
        &self,
        input: &Envelope<Self::Input>,
        cx: &mut StageContext<'_>,
    ) -> impl Future<Output = Result<(), StageError>> + Send;
}

/// Static facts about a registered stage, and how to run it.
#[derive(Clone, Copy)]
pub struct StageDescriptor {
    /// `Stage::NAME`.
    pub name: &'static str,
    /// Returns the input event's spec.
    pub input: fn() -> EventSpec,
    /// Returns every output the stage may emit.
    pub outputs: fn() -> Vec<EventSpec>,
    /// Runs the stage until shutdown.
    pub run: fn(StageSpec, Runtime, Shutdown) -> BoxFuture<'static, anyhow::Result<()>>,
}

impl std::fmt::Debug for StageDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDescriptor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Returns the descriptor of stage `S`, whose handler is built with `S::build`.
pub fn descriptor<S: Stage>() -> StageDescriptor {
    StageDescriptor {
        name: S::NAME,
        input: EventSpec::of::<S::Input>,
        outputs: S::outputs,
        run: |spec, runtime, shutdown| {
            Box::pin(async move {
                let stage = S::build(&runtime)?;
                let Some(companion) = S::companion(&runtime, shutdown.clone()) else {
                    return runner::run_stage(Arc::new(stage), spec, runtime, shutdown).await;
                };
                let consumer = runner::run_stage(Arc::new(stage), spec, runtime, shutdown.clone());
                // Either ending ends both: a companion that fails stops the process, as a
                // consumer failing does.
                let (consumed, accompanied) = futures::future::join(consumer, async {
                    let result = companion.await;
                    shutdown.trigger();
                    result
                })
                .await;
                consumed.and(accompanied)
            })
        },
    }
}

/// Returns every stage this build can run.
pub fn registry() -> Vec<StageDescriptor> {
    vec![
        descriptor::<canary::CanaryStage>(),
        descriptor::<dedupe::Dedupe>(),
        descriptor::<resolve_tenant::ResolveTenant>(),
        descriptor::<rate_limit::RateLimit>(),
        descriptor::<dial::Dial>(),
        descriptor::<call_status::CallStatus>(),
        descriptor::<converse::Converse>(),
        descriptor::<post_call::PostCall>(),
        descriptor::<crm_sync::CrmSync>(),
        descriptor::<scheduler::Scheduler>(),
        descriptor::<summarize::Summarize>(),
        descriptor::<analytics_sink::AnalyticsSink>(),
    ]
}

/// Returns one registered stage by name.
pub fn find(name: &str) -> Option<StageDescriptor> {
    registry().into_iter().find(|stage| stage.name == name)
}
