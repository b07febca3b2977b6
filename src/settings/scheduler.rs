//! The scheduler's claim loop (`stages::scheduler::claimer`).

use std::time::Duration;

use serde::Deserialize;

/// How the scheduler claims and fires due jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Pause between claim rounds when nothing was due.
    pub poll_ms: u64,
    /// Jobs claimed, published and marked fired per transaction.
    pub batch: i64,
    /// Test only: the step at which the claim loop pauses forever, so a test can kill the
    /// process mid-batch (`after_publish`: published, not yet marked fired).
    pub fault_pause_at: String,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            poll_ms: 1_000,
            batch: 500,
            fault_pause_at: String::new(),
        }
    }
}

impl SchedulerSettings {
    /// The pause between idle rounds.
    #[must_use]
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(1))
    }
}
