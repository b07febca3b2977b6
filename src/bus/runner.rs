//! The stage runner: the one place that maps a handler's outcome to an ack kind.
//!
//! For every delivery of the stage's durable pull consumer:
//!
//! 1. decode the envelope; undecodable → dead letter + TERM (never retried);
//! 2. past the consumer's last useful delivery → dead letter + TERM;
//! 3. open a transaction and claim `(stage, event_id)`; a claim already held means an earlier
//!    delivery committed: skip the handler and re-emit its stored outputs;
//! 4. run the handler; store its outbox with the claim; commit;
//! 5. publish every output with its deterministic `Nats-Msg-Id` and await every PubAck;
//! 6. ack.
//!
//! | outcome                     | action                                                   |
//! |-----------------------------|----------------------------------------------------------|
//! | `Ok`                        | commit → publish, await PubAcks → ack                    |
//! | `Retryable`                 | rollback → NAK with backoff (dead letter on the last try) |
//! | `Rejected`, undecodable     | rollback → dead letter with reason → TERM                |
//! | `Unavailable` (PG, NATS)    | hold the message (in-progress acks), pause, retry in place |
//! | panic / dropped             | the `Delivery` NAKs itself                               |
//!
//! A crash anywhere loses nothing: before the commit nothing happened and the message is
//! redelivered; after it, the claim turns the redelivery into a re-emit of the same ids.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::Bus;
use super::codec;
use super::dead_letter::dead_letter_message;
use super::delivery::{Delivery, DeliveryInfo};
use super::envelope::{BusMessage, Envelope};
use super::outbox::Outbox;
use crate::error::StageError;
use crate::metrics::{Metrics, StageMetrics, bump};
use crate::pipeline::StageSpec;
use crate::providers::zoho::ZohoRecords;
use crate::settings::{
    AdmissionSettings, ConverseSettings, DedupeSettings, RunnerSettings, TelephonySettings,
    TenancySettings,
};
use crate::shutdown::Shutdown;
use crate::stages::{Stage, StageContext};
use crate::store::{Store, processed_events};
use crate::tenancy::directory::Directory;

/// What every stage needs from the process.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The bus.
    pub bus: Bus,
    /// The database.
    pub store: Store,
    /// Process metrics.
    pub metrics: Metrics,
    /// Runner tuning.
    pub settings: RunnerSettings,
    /// Settings of individual stages.
    pub stages: StageSettings,
    /// Cached tenant snapshots.
    pub directory: Directory,
    /// Reads clients' Zoho records (when this process has the keyring).
    pub zoho: Option<Arc<ZohoRecords>>,
    /// Every tenant's calendar (static schedules only without the keyring).
    pub calendars: crate::booking::Calendars,
    /// Every tenant's CRM (none without the keyring).
    pub crms: crate::crm::Crms,
    /// The time scheduling decisions are made in (the system clock but in tests).
    pub clock: crate::clock::Clock,
}

/// Settings individual stages read when they are built (`Stage::build`).
#[derive(Clone, Debug, Default)]
pub struct StageSettings {
    /// The dedupe stage.
    pub dedupe: DedupeSettings,
    /// The rate_limit stage's admission cycles.
    pub admission: AdmissionSettings,
    /// The dial stage.
    pub telephony: TelephonySettings,
    /// The converse stage.
    pub converse: ConverseSettings,
    /// The crm_sync stage.
    pub crm_sync: crate::settings::CrmSyncSettings,
    /// The scheduler.
    pub scheduler: crate::settings::SchedulerSettings,
}

impl Runtime {
    /// Builds a runtime with default stage settings and a directory without secrets, whose
    /// snapshots expire after `tenancy.cache_ttl_secs` (tests, tools).
    pub fn new(bus: Bus, store: Store, metrics: Metrics, settings: RunnerSettings) -> Self {
        let ttl = Duration::from_secs(TenancySettings::default().cache_ttl_secs);
        let directory = Directory::new(store.clone(), None, ttl);
        Self {
            calendars: crate::booking::Calendars::new(store.clone(), directory.clone()),
            crms: crate::crm::Crms::new(),
            directory,
            bus,
            store,
            metrics,
            settings,
            stages: StageSettings::default(),
            zoho: None,
            clock: crate::clock::Clock::system(),
        }
    }
}

/// Longest pause between checks of an unavailable dependency.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How long a draining worker waits for more messages of its open pull before letting go.
const RELEASE_QUIET: Duration = Duration::from_millis(200);

enum Attempt {
    /// The handler ran and committed; these are its outputs.
    Processed(Vec<BusMessage>),
    /// An earlier delivery committed; these are its stored outputs.
    Duplicate(Vec<BusMessage>),
    /// The last delivery found no commit: dead-letter with this reason.
    GiveUp(String),
}

struct Worker<S> {
    stage: Arc<S>,
    spec: Arc<StageSpec>,
    runtime: Runtime,
    metrics: Arc<StageMetrics>,
    max_deliver: i64,
    shutdown: Shutdown,
}

impl<S> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self {
            stage: self.stage.clone(),
            spec: self.spec.clone(),
            runtime: self.runtime.clone(),
            metrics: self.metrics.clone(),
            max_deliver: self.max_deliver,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Runs stage `S` on its durable consumer until `shutdown`, then drains in-flight work.
pub async fn run_stage<S: Stage>(
    stage: Arc<S>,
    spec: StageSpec,
    runtime: Runtime,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        spec.name == S::NAME,
        "pipeline stage `{}` is bound to the `{}` implementation",
        spec.name,
        S::NAME
    );
    let consumer: async_nats::jetstream::consumer::PullConsumer = runtime
        .bus
        .jetstream()
        .get_consumer_from_stream(&spec.consumer, &spec.stream)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "consumer `{}` on stream `{}` unavailable: {e} (run `caller provision`)",
                spec.consumer,
                spec.stream
            )
        })?;
    let max_deliver = consumer.cached_info().config.max_deliver;
    let concurrency = spec.concurrency.max(1);
    let worker = Worker {
        stage,
        metrics: runtime.metrics.stage(&spec.name),
        spec: Arc::new(spec),
        runtime,
        max_deliver,
        shutdown: shutdown.clone(),
    };
    tracing::info!(stage = S::NAME, concurrency, max_deliver, "stage started");

    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let expires = Duration::from_millis(worker.runtime.settings.pull_expires_ms.max(100));
    'pull: loop {
        while let Some(joined) = tasks.try_join_next() {
            report_task_end(S::NAME, joined);
        }
        let first_permit = tokio::select! {
            () = shutdown.cancelled() => break 'pull,
            permit = permits.clone().acquire_owned() => permit?,
        };
        // Pull only as many messages as there are free handler slots, so no message waits
        // unstarted in this process (where a crash would only delay it by `ack_wait`).
        let wanted = permits.available_permits() + 1;
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(expires)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(stage = S::NAME, %error, "pull failed; pausing");
                bump(&worker.metrics.paused);
                drop(first_permit);
                tokio::select! {
                    () = shutdown.cancelled() => break 'pull,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue 'pull,
                }
            }
        };
        let mut held_permit = Some(first_permit);
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => {
                    release_unstarted(S::NAME, &mut batch).await;
                    break 'pull;
                }
                next = batch.next() => next,
            };
            let message = match next {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::debug!(stage = S::NAME, %error, "pull batch ended");
                    break;
                }
            };
            let permit = match held_permit.take() {
                Some(permit) => permit,
                None => permits.clone().acquire_owned().await?,
            };
            let worker = worker.clone();
            tasks.spawn(async move {
                worker.process(Delivery::new(message)).await;
                drop(permit);
            });
        }
    }
    tracing::info!(stage = S::NAME, in_flight = tasks.len(), "stage draining");
    while let Some(joined) = tasks.join_next().await {
        report_task_end(S::NAME, joined);
    }
    tracing::info!(stage = S::NAME, "stage stopped");
    Ok(())
}

/// NAKs messages of an open pull that arrive after shutdown, so another worker takes them
/// at once instead of after `ack_wait`. Stops after a short quiet period.
async fn release_unstarted<E: std::fmt::Display>(
    stage: &str,
    batch: &mut (impl futures::Stream<Item = Result<async_nats::jetstream::Message, E>> + Unpin),
) {
    let mut released = 0_u32;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(RELEASE_QUIET, batch.next()).await {
        if Delivery::new(message).nak(None).await.is_ok() {
            released += 1;
        }
    }
    if released > 0 {
        tracing::info!(stage, released, "released unstarted messages on shutdown");
    }
}

fn decode_outputs(stored: Option<Vec<u8>>) -> Result<Vec<BusMessage>, StageError> {
    match stored {
        Some(bytes) => codec::decode::<Vec<BusMessage>>(&bytes)
            .map_err(|e| StageError::rejected(format!("stored outputs unreadable: {e}"))),
        None => Ok(Vec::new()),
    }
}

fn report_task_end(stage: &str, joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        // The delivery was dropped unsettled inside the task, so it NAKed itself.
        tracing::error!(stage, %error, "handler task panicked; its message was NAKed");
    }
}

impl<S: Stage> Worker<S> {
    async fn process(&self, delivery: Delivery) {
        let info = delivery.info();
        let envelope = match delivery.decode::<S::Input>() {
            Ok(envelope) => envelope,
            Err(error) => {
                bump(&self.metrics.rejected);
                let reason = format!("undecodable input: {error}");
                return self.dead_letter(delivery, info.as_ref(), &reason).await;
            }
        };
        let meta = &envelope.meta;
        let span = tracing::info_span!(
            "message",
            stage = S::NAME,
            tenant_id = %meta.tenant_id,
            call_id = meta.call_id.map(|id| id.to_string()),
            event_id = %meta.event_id,
            delivered = info.as_ref().map(|i| i.delivered),
        );
        self.process_envelope(delivery, info, envelope)
            .instrument(span)
            .await;
    }

    async fn process_envelope(
        &self,
        delivery: Delivery,
        info: Option<DeliveryInfo>,
        envelope: Envelope<S::Input>,
    ) {
        let delivered = info.as_ref().map_or(1, |i| i.delivered);
        // The last delivery is reserved for dead-lettering: the handler does not run again,
        // but an earlier delivery may have committed (a crash before its publish), in which
        // case its stored outputs are re-emitted instead.
        let last_delivery = self.max_deliver > 0 && delivered >= self.max_deliver;
        let mut pause = Duration::from_millis(100);
        let mut current = delivery;
        loop {
            let outcome = if last_delivery {
                self.recover(&envelope).await
            } else {
                self.attempt(&envelope).await
            };
            let result = match outcome {
                Ok(Attempt::Processed(outputs)) => self.finish(current, &outputs, false).await,
                Ok(Attempt::Duplicate(outputs)) => self.finish(current, &outputs, true).await,
                Ok(Attempt::GiveUp(reason)) => {
                    return self.dead_letter(current, info.as_ref(), &reason).await;
                }
                Err(error) => Err((current, error)),
            };
            let (returned, error) = match result {
                Ok(()) => return,
                Err(failed) => failed,
            };
            match error {
                StageError::Retryable { reason, after } => {
                    bump(&self.metrics.retried);
                    // The final delivery is reserved for dead-lettering: give up one early.
                    if self.max_deliver > 0 && delivered + 1 >= self.max_deliver {
                        let reason = format!("gave up after {delivered} deliveries: {reason}");
                        return self.dead_letter(returned, info.as_ref(), &reason).await;
                    }
                    let delay = after.unwrap_or_else(|| self.runtime.settings.backoff(delivered));
                    tracing::warn!(%reason, delay_ms = delay.as_millis() as u64, "retrying later");
                    if let Err(error) = returned.nak(Some(delay)).await {
                        tracing::warn!(%error, "nak failed; the server redelivers after ack_wait");
                    }
                    return;
                }
                StageError::Rejected { reason } => {
                    bump(&self.metrics.rejected);
                    return self.dead_letter(returned, info.as_ref(), &reason).await;
                }
                StageError::Unavailable { dependency, reason } => {
                    bump(&self.metrics.paused);
                    tracing::warn!(dependency, %reason, pause_ms = pause.as_millis() as u64, "dependency unavailable; pausing");
                    // Re-run from the claim: if the commit happened, the retry only re-emits.
                    let Some(kept) = self.hold(returned, pause).await else {
                        return;
                    };
                    current = kept;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    /// Waits `pause` while keeping the message (in-progress ack); NAKs it on shutdown.
    async fn hold(&self, delivery: Delivery, pause: Duration) -> Option<Delivery> {
        tokio::select! {
            () = self.shutdown.cancelled() => {
                if let Err(error) = delivery.nak(None).await {
                    tracing::debug!(%error, "nak on shutdown failed; redelivered after ack_wait");
                }
                None
            }
            () = tokio::time::sleep(pause) => {
                if let Err(error) = delivery.in_progress().await {
                    tracing::debug!(%error, "in-progress ack failed");
                }
                Some(delivery)
            }
        }
    }

    /// On the last delivery: re-emits an earlier commit's outputs, or gives up.
    async fn recover(&self, envelope: &Envelope<S::Input>) -> Result<Attempt, StageError> {
        let meta = &envelope.meta;
        let mut tx = self.runtime.store.begin_tenant(meta.tenant_id).await?;
        let claimed = processed_events::claimed(&mut tx, S::NAME, meta.event_id).await?;
        tx.commit().await?;
        match claimed {
            Some(stored) => Ok(Attempt::Duplicate(decode_outputs(stored)?)),
            None => Ok(Attempt::GiveUp(format!(
                "exceeded {} deliveries (earlier attempts crashed or timed out)",
                self.max_deliver - 1
            ))),
        }
    }

    /// Claims, runs the handler and commits; or finds an earlier commit.
    async fn attempt(&self, envelope: &Envelope<S::Input>) -> Result<Attempt, StageError> {
        let meta = &envelope.meta;
        let mut tx = self.runtime.store.begin_tenant(meta.tenant_id).await?;
        let claimed =
            processed_events::claim(&mut tx, S::NAME, meta.event_id, meta.tenant_id).await?;
        if !claimed {
            let stored = processed_events::claimed(&mut tx, S::NAME, meta.event_id).await?;
            tx.commit().await?;
            return Ok(Attempt::Duplicate(decode_outputs(stored.flatten())?));
        }
        let started = Instant::now();
        let mut outbox = Outbox::new(S::NAME, &self.spec.outputs, meta);
        let mut cx = StageContext {
            tx: &mut tx,
            outbox: &mut outbox,
        };
        self.stage.handle(envelope, &mut cx).await?;
        let outputs = outbox.into_messages();
        // A claim without stored outputs means "emitted nothing": skip the round trip.
        if !outputs.is_empty() {
            let encoded = codec::encode(&outputs)
                .map_err(|e| StageError::rejected(format!("outputs not encodable: {e}")))?;
            let count = i32::try_from(outputs.len()).unwrap_or(i32::MAX);
            processed_events::record_outputs(&mut tx, S::NAME, meta.event_id, &encoded, count)
                .await?;
        }
        tx.commit().await?;
        self.metrics.observe_latency(started.elapsed());
        Ok(Attempt::Processed(outputs))
    }

    /// Publishes outputs, awaits every PubAck, then acks the input.
    async fn finish(
        &self,
        delivery: Delivery,
        outputs: &[BusMessage],
        duplicate: bool,
    ) -> Result<(), (Delivery, StageError)> {
        if let Err(error) = self.runtime.bus.publish_all(outputs).await {
            let error = StageError::Unavailable {
                dependency: "nats",
                reason: error.to_string(),
            };
            return Err((delivery, error));
        }
        if let Err(error) = delivery.ack().await {
            // Effects are durable; a redelivery will find the claim and only re-emit.
            tracing::warn!(%error, "ack failed after outputs were published");
        }
        if duplicate {
            bump(&self.metrics.duplicate);
            tracing::debug!(
                outputs = outputs.len(),
                "duplicate delivery; outputs re-emitted"
            );
        } else {
            bump(&self.metrics.processed);
            tracing::debug!(outputs = outputs.len(), "processed");
        }
        Ok(())
    }

    /// Publishes the message to `dlq.<stage>` with the reason, then TERMs it.
    async fn dead_letter(&self, delivery: Delivery, info: Option<&DeliveryInfo>, reason: &str) {
        let letter = dead_letter_message(&self.spec.name, delivery.message(), info, reason);
        let mut pause = Duration::from_millis(100);
        let mut delivery = delivery;
        loop {
            match self
                .runtime
                .bus
                .publish_all(std::slice::from_ref(&letter))
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    bump(&self.metrics.paused);
                    tracing::warn!(%error, "dead-letter publish failed; pausing");
                    match self.hold(delivery, pause).await {
                        Some(kept) => delivery = kept,
                        None => return,
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
        bump(&self.metrics.dead_lettered);
        tracing::warn!(stage = S::NAME, reason, subject = %letter.subject, "dead-lettered");
        if let Err(error) = delivery.term().await {
            // The dead letter is stored; a redelivery would dead-letter it again under the
            // same message id, which the DLQ stream's duplicate window drops.
            tracing::warn!(%error, "term failed after dead-lettering");
        }
    }
}
