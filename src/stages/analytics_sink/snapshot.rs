//! Periodic snapshots of queue state for `analytics.queue_status_view`: every durable
//! consumer's pending, in-flight and redelivered counts (from JetStream), and each tenant's
//! admission queue (from `admission_queue`).
//!
//! Snapshots are taken on round boundaries ([`EVERY`]): several sink processes taking the
//! same round store it once (the rows are keyed by it), so scaling the sink does not
//! multiply them.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, DurationRound, Utc};
use futures::TryStreamExt;

use crate::bus::runner::Runtime;
use crate::shutdown::Shutdown;
use crate::store::analytics::{self, ConsumerSnapshot};

/// How often a snapshot is taken.
pub const EVERY: Duration = Duration::from_secs(30);
/// How long snapshots are kept.
pub const KEEP_DAYS: i32 = 30;

/// Takes a snapshot every [`EVERY`] until shutdown; a failed one is logged and the next
/// round tries again (a missed snapshot is a gap in a chart, not lost data).
pub async fn run(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    loop {
        let now = runtime.clock.now();
        let round = now
            .duration_trunc(chrono::Duration::from_std(EVERY).context("snapshot period")?)
            .unwrap_or(now);
        if let Err(error) = take(&runtime, round).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "queue snapshot failed; next round retries"
            );
        }
        let next = round + chrono::Duration::from_std(EVERY).context("snapshot period")?;
        let pause = (next - runtime.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Reads every consumer of every stream and stores the round.
pub async fn take(runtime: &Runtime, taken_at: DateTime<Utc>) -> anyhow::Result<()> {
    let jetstream = runtime.bus.jetstream();
    let mut consumers = Vec::new();
    let streams: Vec<_> = jetstream
        .streams()
        .try_collect()
        .await
        .context("list streams")?;
    for info in streams {
        let stream = jetstream
            .get_stream_no_info(&info.config.name)
            .await
            .with_context(|| format!("stream {}", info.config.name))?;
        let infos: Vec<_> = stream
            .consumers()
            .try_collect()
            .await
            .with_context(|| format!("consumers of {}", info.config.name))?;
        consumers.extend(infos.into_iter().map(|c| ConsumerSnapshot {
            stream: c.stream_name,
            consumer: c.name,
            pending: c.num_pending,
            ack_pending: c.num_ack_pending as u64,
            redelivered: c.num_redelivered as u64,
            waiting: c.num_waiting as u64,
            delivered_seq: c.delivered.stream_sequence,
        }));
    }
    let mut tx = runtime.store.begin_platform().await?;
    analytics::store_snapshots(&mut tx, taken_at, &consumers, KEEP_DAYS).await?;
    tx.commit().await?;
    Ok(())
}
