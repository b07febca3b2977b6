//! The time the scheduler lives in: the system clock in production, a clock a test moves.
//!
//! Only the scheduling decisions read it (when a retry or follow-up is due, whether a due
//! job is ripe): the rest of the pipeline (pacing, the dial stage's window check, leases)
//! runs on real time. A test can so walk a lead through days of retries in seconds, while
//! every call it causes is still placed, paced and window-checked for real.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of "now".
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `start` until [`Clock::set`] or [`Clock::advance`] moves it.
    #[must_use]
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// Returns now.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Moves a manual clock to `at` (the system clock ignores it).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(current) = &self.manual {
            *current.lock().unwrap_or_else(PoisonError::into_inner) = at;
        }
    }

    /// Moves a manual clock forward by `by` (the system clock ignores it).
    pub fn advance(&self, by: TimeDelta) {
        if let Some(current) = &self.manual {
            let mut at = current.lock().unwrap_or_else(PoisonError::into_inner);
            *at += by;
        }
    }

    /// Returns true for a manual clock.
    #[must_use]
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::minutes(15));
        assert_eq!(clock.now(), start + TimeDelta::minutes(15));
        let copy = clock.clone();
        copy.set(start);
        assert_eq!(clock.now(), start, "clones share the time");
        assert!(!Clock::system().is_manual());
    }
}
