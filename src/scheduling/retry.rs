//! What an ended attempt leads to.
//!
//! | outcome | retried? | earliest next attempt |
//! |---|---|---|
//! | answered by a person | no | — |
//! | cancelled by us | no | — |
//! | failed, permanent code (invalid number, no permission, blocked) | no | — |
//! | failed otherwise, or dial unconfirmed (technical) | yes | `technical_retry_minutes` + jitter in `[0, jitter_secs]` |
//! | no answer, busy, voicemail | yes, except follow-up calls | ladder step `n` (the `n`-th attempt ended), the last step repeating |
//!
//! Every attempt counts against `max_attempts`. When an unanswered call has used them all it
//! escalates to the follow-up campaign `escalate_to`, if one is named. A follow-up call is not
//! retried along the ladder (the campaign's next stage is its retry), only after technical
//! failures, so escalation never loops.
//!
//! The jitter is derived from the attempt, not drawn: a replayed decision gives the same
//! instant, which is what makes the job's row (keyed by the attempt) idempotent.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::calls::state::{Failure, Outcome};
use crate::tenancy::config::RetryPolicy;

/// Twilio error codes after which dialing the number again cannot succeed.
///
/// 13224 invalid number, 13225 forbidden (blocked) number, 13227 no international
/// permission, 21210 caller id not verified, 21211 invalid `To`, 21214 `To` not reachable,
/// 21215 no geographic permission, 21216 number blocked, 21217 number does not appear valid.
pub const PERMANENT_FAILURE_CODES: &[u32] = &[
    13224, 13225, 13227, 21210, 21211, 21214, 21215, 21216, 21217,
];

/// What to do after an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Dial again, not before `earliest` (windows then move it further).
    Retry {
        /// The attempt number of the retry.
        attempt_number: u32,
        /// The ladder step's (or technical delay's) instant.
        earliest: DateTime<Utc>,
        /// Why, e.g. `no_answer (attempt 2 of 5, ladder step 60 min)`.
        reason: String,
    },
    /// The attempts ran out unanswered: enroll the lead in this follow-up campaign.
    Escalate {
        /// The campaign's name.
        campaign: String,
        /// Why.
        reason: String,
    },
    /// Nothing more.
    Done {
        /// Why.
        reason: String,
    },
}

/// How an outcome is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unanswered(&'static str),
    Technical,
    Final(&'static str),
}

fn kind_of(outcome: &Outcome) -> Kind {
    match outcome {
        Outcome::Human => Kind::Final("answered"),
        Outcome::Cancelled => Kind::Final("cancelled"),
        Outcome::NoAnswer => Kind::Unanswered("no_answer"),
        Outcome::Busy => Kind::Unanswered("busy"),
        Outcome::Machine => Kind::Unanswered("voicemail"),
        Outcome::Failed(failure) if is_permanent(failure) => Kind::Final("permanent failure"),
        Outcome::Failed(_) | Outcome::Unknown => Kind::Technical,
    }
}

/// Returns true when the failure's code says the number cannot be reached by retrying.
#[must_use]
pub fn is_permanent(failure: &Failure) -> bool {
    failure
        .code
        .is_some_and(|code| PERMANENT_FAILURE_CODES.contains(&code))
}

/// Decides what follows attempt `attempt_number` of a call, which ended at `ended_at` with
/// `outcome`. `follow_up` is true for a call a follow-up campaign placed; `jitter_key`
/// identifies the attempt (its id), and spreads technical retries.
#[must_use]
pub fn decide(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempt_number: u32,
    ended_at: DateTime<Utc>,
    follow_up: bool,
    jitter_key: Uuid,
) -> Decision {
    let attempt_number = attempt_number.max(1);
    let exhausted = attempt_number >= policy.max_attempts;
    match kind_of(outcome) {
        Kind::Final(why) => Decision::Done {
            reason: why.to_owned(),
        },
        Kind::Technical if exhausted => Decision::Done {
            reason: format!(
                "technical failure on attempt {attempt_number}; all {} attempts used",
                policy.max_attempts
            ),
        },
        Kind::Technical => {
            let jitter = jitter_secs(jitter_key, policy.jitter_secs);
            let delay = TimeDelta::minutes(i64::from(policy.technical_retry_minutes))
                + TimeDelta::seconds(i64::from(jitter));
            let what = match outcome {
                Outcome::Failed(Failure {
                    code: Some(code), ..
                }) => format!("technical: failed with code {code}"),
                Outcome::Failed(_) => "technical: failed".to_owned(),
                _ => "technical: dial unconfirmed".to_owned(),
            };
            Decision::Retry {
                attempt_number: attempt_number + 1,
                earliest: ended_at + delay,
                reason: format!(
                    "{what} (attempt {} of {}, after {} min + {jitter} s jitter)",
                    attempt_number + 1,
                    policy.max_attempts,
                    policy.technical_retry_minutes
                ),
            }
        }
        Kind::Unanswered(why) if follow_up => Decision::Done {
            reason: format!("{why} on a follow-up call: the campaign's next stage follows"),
        },
        Kind::Unanswered(why) if exhausted => match &policy.escalate_to {
            Some(campaign) => Decision::Escalate {
                campaign: campaign.clone(),
                reason: format!(
                    "escalated: {why} on attempt {attempt_number}, all {} attempts used",
                    policy.max_attempts
                ),
            },
            None => Decision::Done {
                reason: format!(
                    "{why} on attempt {attempt_number}; all {} attempts used",
                    policy.max_attempts
                ),
            },
        },
        Kind::Unanswered(why) => {
            let minutes = ladder_step(policy, attempt_number);
            Decision::Retry {
                attempt_number: attempt_number + 1,
                earliest: ended_at + TimeDelta::minutes(i64::from(minutes)),
                reason: format!(
                    "{why} (attempt {} of {}, ladder step {minutes} min)",
                    attempt_number + 1,
                    policy.max_attempts
                ),
            }
        }
    }
}

/// Returns the ladder delay after attempt `attempt_number` ended (1 → the first step), the
/// last step repeating.
#[must_use]
pub fn ladder_step(policy: &RetryPolicy, attempt_number: u32) -> u32 {
    let index = usize::try_from(attempt_number.saturating_sub(1)).unwrap_or(usize::MAX);
    policy
        .ladder_minutes
        .get(index)
        .or(policy.ladder_minutes.last())
        .copied()
        .unwrap_or(15)
}

/// Spreads `key` over `[0, max]` seconds.
fn jitter_secs(key: Uuid, max: u32) -> u32 {
    if max == 0 {
        return 0;
    }
    let bytes = key.as_bytes();
    let low = u64::from_be_bytes(bytes[8..16].try_into().unwrap_or_default());
    u32::try_from(low % (u64::from(max) + 1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-03-02T15:00:00Z".parse().unwrap()
    }

    fn decide_default(outcome: &Outcome, attempt: u32) -> Decision {
        decide(
            &RetryPolicy::default(),
            outcome,
            attempt,
            at(),
            false,
            Uuid::from_u128(7),
        )
    }

    #[test]
    fn unanswered_calls_follow_the_default_ladder() {
        for (attempt, minutes) in [(1, 15), (2, 60), (3, 240), (4, 1_440)] {
            match decide_default(&Outcome::NoAnswer, attempt) {
                Decision::Retry {
                    attempt_number,
                    earliest,
                    ..
                } => {
                    assert_eq!(attempt_number, attempt + 1);
                    assert_eq!(earliest, at() + TimeDelta::minutes(minutes));
                }
                other => panic!("attempt {attempt}: {other:?}"),
            }
        }
        assert!(matches!(
            decide_default(&Outcome::Busy, 5),
            Decision::Done { .. }
        ));
    }

    #[test]
    fn exhausted_unanswered_calls_escalate_when_a_campaign_is_named() {
        let policy = RetryPolicy {
            max_attempts: 2,
            escalate_to: Some("nurture".into()),
            ..RetryPolicy::default()
        };
        let decision = decide(&policy, &Outcome::Machine, 2, at(), false, Uuid::nil());
        assert!(
            matches!(&decision, Decision::Escalate { campaign, .. } if campaign == "nurture"),
            "{decision:?}"
        );
        // A follow-up call never escalates again, nor follows the ladder.
        let decision = decide(&policy, &Outcome::NoAnswer, 1, at(), true, Uuid::nil());
        assert!(matches!(decision, Decision::Done { .. }), "{decision:?}");
    }

    #[test]
    fn technical_failures_retry_soon_with_bounded_jitter_and_permanent_ones_never() {
        let policy = RetryPolicy::default();
        let failure = Outcome::Failed(Failure {
            code: Some(31005),
            reason: None,
        });
        for key in 0..200u128 {
            let Decision::Retry { earliest, .. } =
                decide(&policy, &failure, 1, at(), true, Uuid::from_u128(key << 64))
            else {
                panic!("technical failures are retried, also on follow-up calls");
            };
            let delay = earliest - at();
            assert!(delay >= TimeDelta::minutes(2));
            assert!(delay <= TimeDelta::minutes(2) + TimeDelta::seconds(60));
        }
        let invalid = Outcome::Failed(Failure {
            code: Some(21211),
            reason: None,
        });
        assert!(matches!(decide_default(&invalid, 1), Decision::Done { .. }));
        assert!(matches!(
            decide_default(&Outcome::Human, 1),
            Decision::Done { .. }
        ));
        assert!(matches!(
            decide_default(&Outcome::Unknown, 1),
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn the_last_ladder_step_repeats() {
        let policy = RetryPolicy {
            ladder_minutes: vec![10, 30],
            max_attempts: 6,
            ..RetryPolicy::default()
        };
        assert_eq!(ladder_step(&policy, 1), 10);
        assert_eq!(ladder_step(&policy, 2), 30);
        assert_eq!(ladder_step(&policy, 5), 30);
    }
}
