//! The worker side of session ownership (ARCHITECTURE.md section 6): claim sessions without a
//! live owner up to this worker's capacity, renew their leases by heartbeat, stop any whose
//! lease moved, and relay unconfirmed ends.
//!
//! A worker that dies stops renewing; `converse.lease_ttl_ms` later its sessions are claimable
//! and the next scan of any worker takes them over (epoch + 1), reconnecting the engine with
//! the transcript so far. A worker that merely stalls past its lease finds its next write
//! fenced and stops, so a call never has two voices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Deps;
use super::relay;
use super::session::{self, Stopped};
use crate::store::conversations;

/// How long shutdown waits for sessions to release their leases.
const DRAIN: Duration = Duration::from_secs(10);

/// How often unconfirmed ends are republished.
const RELAY_EVERY: Duration = Duration::from_secs(2);

/// Runs until shutdown, then releases every session it holds.
pub async fn run(deps: Arc<Deps>) -> anyhow::Result<()> {
    let settings = deps.settings.clone();
    let ttl_ms = i64::try_from(settings.lease_ttl_ms).unwrap_or(3_000);
    let mut held: HashMap<Uuid, (i32, CancellationToken)> = HashMap::new();
    let mut sessions: JoinSet<(Uuid, Stopped)> = JoinSet::new();
    let mut scan = tokio::time::interval(Duration::from_millis(settings.scan_ms.max(10)));
    let mut beat = tokio::time::interval(Duration::from_millis(settings.heartbeat_ms.max(10)));
    let mut relay_tick = tokio::time::interval(RELAY_EVERY);
    for ticker in [&mut scan, &mut beat, &mut relay_tick] {
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let mut last_renewed = Instant::now();
    tracing::info!(
        owner = deps.owner,
        capacity = settings.max_sessions,
        "converse worker taking sessions"
    );
    loop {
        tokio::select! {
            biased;
            () = deps.shutdown.cancelled() => break,
            Some(joined) = sessions.join_next() => {
                match joined {
                    Ok((attempt, stopped)) => {
                        held.remove(&attempt);
                        tracing::debug!(%attempt, ?stopped, "session left this worker");
                    }
                    Err(error) => tracing::error!(%error, "a session task failed"),
                }
            }
            _ = beat.tick() => {
                match renew(&deps, ttl_ms).await {
                    Ok(still) => {
                        last_renewed = Instant::now();
                        for (attempt, (epoch, lost)) in &held {
                            if still.get(attempt) != Some(epoch) {
                                lost.cancel();
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lease heartbeat failed");
                        // Past the lease another worker may own them: stop speaking for them.
                        if last_renewed.elapsed() > Duration::from_millis(settings.lease_ttl_ms) {
                            for (_, lost) in held.values() {
                                lost.cancel();
                            }
                        }
                    }
                }
            }
            _ = scan.tick() => {
                let free = settings.max_sessions.saturating_sub(held.len());
                if free == 0 {
                    continue;
                }
                match claim(&deps, ttl_ms, free).await {
                    Ok(claimed) => {
                        for claimed in claimed {
                            let lost = CancellationToken::new();
                            let attempt = claimed.attempt_id;
                            held.insert(attempt, (claimed.epoch, lost.clone()));
                            let deps = deps.clone();
                            sessions.spawn(async move {
                                (attempt, session::run(deps, claimed, lost).await)
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "session claim failed"),
                }
            }
            _ = relay_tick.tick() => {
                if let Err(error) = relay::republish_leftovers(&deps).await {
                    tracing::warn!(error = format!("{error:#}"), "republishing conversation ends failed");
                }
            }
        }
    }
    // Sessions see the shutdown and release their leases; wait for them, briefly.
    let drained = tokio::time::timeout(DRAIN, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "sessions still running at shutdown; their leases expire"
        );
    }
    Ok(())
}

async fn renew(deps: &Deps, ttl_ms: i64) -> Result<HashMap<Uuid, i32>, sqlx::Error> {
    let mut tx = deps.store.begin_platform().await?;
    let held = conversations::renew(&mut tx, &deps.owner, ttl_ms).await?;
    tx.commit().await?;
    Ok(held.into_iter().collect())
}

async fn claim(
    deps: &Deps,
    ttl_ms: i64,
    free: usize,
) -> Result<Vec<conversations::Claimed>, sqlx::Error> {
    let mut tx = deps.store.begin_platform().await?;
    let limit = i64::try_from(free).unwrap_or(i64::MAX).min(50);
    let claimed = conversations::claim(&mut tx, &deps.owner, ttl_ms, limit).await?;
    tx.commit().await?;
    Ok(claimed)
}
