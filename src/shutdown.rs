//! One shutdown signal passed to every role.
//!
//! A [`Shutdown`] is a cancellation token: cloning it is cheap, and every task that loops
//! selects on [`Shutdown::cancelled`] so that SIGTERM or SIGINT drains the whole process.

use tokio_util::sync::CancellationToken;

/// The process-wide shutdown signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// Returns a signal that has not fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal: every role stops taking new work and drains.
    pub fn trigger(&self) {
        self.0.cancel();
    }

    /// Returns true once the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when the signal fires.
    pub async fn cancelled(&self) {
        self.0.cancelled().await;
    }

    /// Fires the signal on the first SIGTERM or SIGINT.
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let token = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            token.trigger();
        });
        Ok(())
    }
}
