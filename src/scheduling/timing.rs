//! Moving a planned instant into the lead's next allowed window.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::calls::window::{Admission, CallingPolicy};

/// Returns the first instant at or after both `earliest` and `now` at which `policy` allows a
/// call to a callee in `callee_tz`, or `None` when none exists within the policy's search
/// horizon (two weeks) of it.
#[must_use]
pub fn fit(
    policy: &CallingPolicy,
    callee_tz: Tz,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from = earliest.max(now);
    match policy.next_allowed(callee_tz, from) {
        Admission::Now => Some(from),
        Admission::Defer { until } => Some(until),
        Admission::Never => None,
    }
}

#[cfg(test)]
mod tests;
