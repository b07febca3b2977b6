//! Properties of scheduled times: for random instants, zones (with daylight saving and
//! half- and quarter-hour offsets), outcomes and policies, a retry's time lies inside every
//! window, never in the past, never before its ladder step, and no later than needed.

use chrono::{Datelike, NaiveDate, NaiveTime, TimeDelta, Timelike};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::calls::state::{Failure, Outcome};
use crate::scheduling::retry::{self, Decision};
use crate::tenancy::config::{ClientConfiguration, DayHours, RetryPolicy, Weekday};

const ZONES: &[Tz] = &[
    Tz::UTC,
    Tz::America__New_York,
    Tz::America__Chicago,
    Tz::America__Los_Angeles,
    Tz::America__St_Johns,
    Tz::America__Sao_Paulo,
    Tz::Europe__London,
    Tz::Europe__Berlin,
    Tz::Asia__Kolkata,
    Tz::Asia__Kathmandu,
    Tz::Asia__Tehran,
    Tz::Australia__Adelaide,
    Tz::Australia__Lord_Howe,
    Tz::Pacific__Chatham,
    Tz::Pacific__Apia,
];

/// Daylight-saving changes of 2026 in the zones above (UTC), to aim instants near them.
const TRANSITIONS: &[&str] = &[
    "2026-03-08T08:00:00Z",
    "2026-11-01T06:00:00Z",
    "2026-03-29T01:00:00Z",
    "2026-10-25T01:00:00Z",
    "2026-04-04T15:00:00Z",
    "2026-10-03T16:30:00Z",
    "2026-04-04T14:00:00Z",
    "2026-09-26T14:00:00Z",
    "2026-03-08T05:30:00Z",
];

const DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Per weekday, maybe one window `[open, close)` in quarter hours within `[low, high)`.
fn week(low: u32, high: u32) -> impl Strategy<Value = Vec<DayHours>> {
    proptest::collection::vec(
        proptest::option::weighted(0.75, (low..high, 1u32..=(high - low))),
        7,
    )
    .prop_map(move |days| {
        days.into_iter()
            .zip(DAYS)
            .filter_map(|(window, day)| {
                let (open, length) = window?;
                let close = (open + length).min(high);
                (close > open).then(|| DayHours {
                    day,
                    open: hhmm(open * 15),
                    close: hhmm(close * 15),
                })
            })
            .collect()
    })
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let anywhere = (1_704_067_200i64..1_956_528_000)
        .prop_map(|secs| DateTime::from_timestamp(secs, 0).unwrap_or_default());
    let near_change = (0..TRANSITIONS.len(), -172_800i64..172_800).prop_map(|(index, secs)| {
        TRANSITIONS[index].parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(secs)
    });
    prop_oneof![anywhere, near_change]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::NoAnswer),
        Just(Outcome::Busy),
        Just(Outcome::Machine),
        Just(Outcome::Unknown),
        Just(Outcome::Failed(Failure {
            code: Some(31005),
            reason: None,
        })),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    now: DateTime<Utc>,
    callee_tz: Tz,
    business_tz: Tz,
    config: ClientConfiguration,
    outcome: Outcome,
    attempt: u32,
    key: u128,
}

fn case() -> impl Strategy<Value = Case> {
    (
        instant(),
        0..ZONES.len(),
        0..ZONES.len(),
        // Calling windows lie within the legal hours (validation refuses others).
        proptest::option::of(week(32, 84)),
        proptest::option::of(week(0, 95)),
        proptest::collection::vec(0i64..40, 0..4),
        proptest::collection::vec(1u32..3_000, 1..6),
        outcome(),
        1u32..6,
        any::<u128>(),
    )
        .prop_map(
            |(now, callee, business, windows, hours, holidays, ladder, outcome, attempt, key)| {
                let holidays = holidays
                    .into_iter()
                    .map(|days| now.date_naive() + TimeDelta::days(days))
                    .collect();
                let config = ClientConfiguration {
                    calling_windows: windows.unwrap_or_default(),
                    business_hours: hours.unwrap_or_default(),
                    holidays,
                    retry_policy: RetryPolicy {
                        ladder_minutes: ladder,
                        max_attempts: 10,
                        ..RetryPolicy::default()
                    },
                    ..ClientConfiguration::default()
                };
                Case {
                    now,
                    callee_tz: ZONES[callee],
                    business_tz: ZONES[business],
                    config,
                    outcome,
                    attempt,
                    key,
                }
            },
        )
}

/// Whether `clock`'s weekday and time lie in one of `windows`: written out again here, apart
/// from the code under test.
fn inside(windows: &[DayHours], clock: chrono::NaiveDateTime) -> bool {
    let day = DAYS[clock.weekday().num_days_from_monday() as usize];
    let minutes = clock.hour() * 60 + clock.minute();
    let minute_of = |text: &str| {
        let time = NaiveTime::parse_from_str(text, "%H:%M").unwrap();
        time.hour() * 60 + time.minute()
    };
    // Whole minutes are enough: every window edge is a whole minute, and so is every
    // transition of the zones above.
    windows.iter().any(|window| {
        window.day == day
            && minute_of(&window.open) <= minutes
            && minutes < minute_of(&window.close)
    })
}

fn allowed(case: &Case, at: DateTime<Utc>) -> bool {
    let callee = at.with_timezone(&case.callee_tz).naive_local();
    let business = at.with_timezone(&case.business_tz).naive_local();
    let legal = (8 * 60..21 * 60).contains(&(callee.hour() * 60 + callee.minute()));
    let windows =
        case.config.calling_windows.is_empty() || inside(&case.config.calling_windows, callee);
    let hours =
        case.config.business_hours.is_empty() || inside(&case.config.business_hours, business);
    let holiday: bool = case
        .config
        .holidays
        .iter()
        .any(|day: &NaiveDate| *day == business.date());
    legal && windows && hours && !holiday
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_retry_lies_in_every_window_never_in_the_past_never_before_its_step(case in case()) {
        let policy = CallingPolicy::from_config(&case.config, case.business_tz).unwrap();
        let decision = retry::decide(
            &case.config.retry_policy,
            &case.outcome,
            case.attempt,
            case.now,
            false,
            Uuid::from_u128(case.key),
        );
        let Decision::Retry { earliest, .. } = decision else {
            return Err(TestCaseError::fail(format!("no retry: {decision:?}")));
        };
        // Never earlier than its ladder step (or the technical delay).
        let step = match case.outcome {
            Outcome::NoAnswer | Outcome::Busy | Outcome::Machine => TimeDelta::minutes(i64::from(
                retry::ladder_step(&case.config.retry_policy, case.attempt),
            )),
            _ => TimeDelta::minutes(2),
        };
        prop_assert!(earliest >= case.now + step);
        let Some(at) = fit(&policy, case.callee_tz, earliest, case.now) else {
            // Only when nothing within two weeks is allowed: then no minute of them is.
            prop_assert_eq!(policy.next_allowed(case.callee_tz, earliest), Admission::Never);
            return Ok(());
        };
        prop_assert!(at >= case.now, "in the past: {at} < {}", case.now);
        prop_assert!(at >= earliest, "before its step: {at} < {earliest}");
        prop_assert!(allowed(&case, at), "outside a window: {at} ({case:?})");
        // No later than needed: it is the step itself, or the instant before it is closed.
        prop_assert!(at == earliest || !allowed(&case, at - TimeDelta::seconds(1)),
            "later than needed: {at}, yet {} is allowed", at - TimeDelta::seconds(1));
    }

    #[test]
    fn a_follow_up_stage_lies_in_every_window_and_not_before_its_time(
        case in case(),
        day_offset in 0u32..40,
        minutes in 0u32..1_440,
    ) {
        let policy = CallingPolicy::from_config(&case.config, case.business_tz).unwrap();
        let stage = crate::scheduling::campaign::CampaignStage {
            day_offset,
            time: hhmm(minutes),
            agent_variant: None,
            message: None,
        };
        let planned = crate::scheduling::campaign::stage_time(case.now, case.callee_tz, &stage);
        prop_assert!(planned >= case.now);
        // The planned instant reads the stage's date and time on the lead's clock (or the
        // first minute after a gap), unless that had already passed at enrollment.
        if planned > case.now {
            let local = planned.with_timezone(&case.callee_tz).naive_local();
            let date = case.now.with_timezone(&case.callee_tz).date_naive()
                + TimeDelta::days(i64::from(day_offset));
            prop_assert_eq!(local.date(), date);
            prop_assert!(local.time() >= NaiveTime::parse_from_str(&stage.time, "%H:%M").unwrap());
        }
        if let Some(at) = fit(&policy, case.callee_tz, planned, case.now) {
            prop_assert!(at >= planned);
            prop_assert!(allowed(&case, at), "outside a window: {at} ({case:?})");
        }
    }
}
