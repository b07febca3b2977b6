//! Calling windows: whether a lead may be called now, and if not, the next instant it may.
//!
//! Pure: no I/O and no clock; the caller passes `now`. Three rules must all hold at the instant
//! a call starts:
//!
//! 1. **Legal**: [`LEGAL_HOURS`] (08:00–21:00) on the callee's local clock, every day.
//! 2. **Calling windows**: the tenant's `calling_windows`, on the callee's local clock, when
//!    it configured any (none means no extra restriction).
//! 3. **Business hours**: the tenant's `business_hours`, on the business's clock, when it
//!    configured any (none means no restriction).
//!
//! The `rate_limit` stage asks [`CallingPolicy::next_allowed`], which answers
//! [`Admission::Now`], [`Admission::Defer`] with the earliest allowed instant, or
//! [`Admission::Never`] when nothing is allowed within [`SEARCH_HORIZON`] (14 days) of `now`.
//!
//! # How it computes
//!
//! Each rule becomes a list of UTC intervals over the range asked for, and the lists are
//! intersected ([`CallingPolicy::allowed_intervals`]); the answer is the start of the first
//! piece. Nothing steps through minutes. A zone's clock is UTC shifted by an offset that is
//! constant between two transitions, so within each such stretch a window `[open, close)` of a
//! local date is exactly the UTC interval `[date + open - offset, date + close - offset)`,
//! clipped to the stretch.
//!
//! NOTE(window): chrono-tz exposes no list of transitions, so they are found by reading the
//! offset every `TRANSITION_PROBE` (one hour) and bisecting to the second where it changes.
//! Two transitions less than an hour apart would be missed; since 2000 the tz database has
//! none closer than a week (`zdump -v -c 2000,2038` over every zone).
//!
//! # Daylight saving time
//!
//! A rule holds at an instant exactly when the local clock at that instant reads inside one of
//! its windows, on that window's weekday ([`CallingPolicy::is_allowed_at`] is that definition,
//! evaluated directly). Windows are half-open: at `close` the window is shut. Consequences:
//!
//! - **Spring forward (gap).** A window opening at a time no clock shows (02:30 in Chicago on
//!   2026-03-08, when 02:00 CST jumps to 03:00 CDT) opens at the first instant after the gap,
//!   03:00 CDT. A window closing inside a gap closes when the gap starts.
//! - **Fall back (repeated hour).** Clocks show each time of the repeated hour twice, and a
//!   window is open during both passes. An opening inside the repeated hour opens at the
//!   *earlier* instant. If the window closes after the repeated hour, it shuts when clocks go
//!   back (they then read a time before `open`) and reopens at the second pass of `open`:
//!   business hours 01:30–03:00 in Chicago on 2026-11-01 are open 01:30–02:00 CDT, then
//!   01:30–03:00 CST.
//! - The legal hours lie far from every US and European transition, so these cases concern
//!   business hours, and zones that change their clocks in the daytime.

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::tenancy::config::{ClientConfiguration, DayHours, Weekday};

/// Hours in which a call is legal on the callee's local clock: from 08:00, until 21:00.
///
/// The US Telephone Consumer Protection Act rules (47 CFR § 64.1200(c)(1)) forbid telephone
/// solicitations "before the hour of 8 a.m. or after 9 p.m. (local time at the called party's
/// location)". We apply it to every lead whatever its country, and read it half-open: a call
/// may start at 08:00:00 and must have started before 21:00:00.
pub const LEGAL_HOURS: (NaiveTime, NaiveTime) = (
    NaiveTime::from_hms_opt(8, 0, 0).expect("valid time"),
    NaiveTime::from_hms_opt(21, 0, 0).expect("valid time"),
);

/// How far after `now` [`CallingPolicy::next_allowed`] looks before answering
/// [`Admission::Never`].
///
/// Two weeks cover every weekly schedule in both zones, with a margin for a daylight-saving
/// change on the way. An intersection that exists only while the two zones' offsets differ
/// unusually (the weeks when the US and Europe have changed clocks on different dates) can lie
/// beyond it: `Never` means "not within the horizon", so check again later rather than drop
/// the lead.
pub const SEARCH_HORIZON: TimeDelta = TimeDelta::days(14);

/// Spacing of the offset reads that find a zone's transitions (see the module docs).
const TRANSITION_PROBE: TimeDelta = TimeDelta::hours(1);

/// How much [`CallingPolicy::next_allowed`] computes at once: most answers lie within a day.
const SEARCH_CHUNK: TimeDelta = TimeDelta::days(1);

/// The legal hours as a weekly schedule.
const LEGAL_WEEK: [Window; 7] = [
    legal_day(chrono::Weekday::Mon),
    legal_day(chrono::Weekday::Tue),
    legal_day(chrono::Weekday::Wed),
    legal_day(chrono::Weekday::Thu),
    legal_day(chrono::Weekday::Fri),
    legal_day(chrono::Weekday::Sat),
    legal_day(chrono::Weekday::Sun),
];

const fn legal_day(day: chrono::Weekday) -> Window {
    Window {
        day,
        open: LEGAL_HOURS.0,
        close: LEGAL_HOURS.1,
    }
}

/// Whether a call may start now, and if not, when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Every rule holds at `now`.
    Now,
    /// Some rule fails at `now`; `until` is the earliest later instant at which all hold.
    Defer {
        /// The earliest instant after `now` at which a call may start.
        until: DateTime<Utc>,
    },
    /// No instant within [`SEARCH_HORIZON`] of `now` satisfies every rule.
    Never,
}

/// Why a [`CallingPolicy`] could not be built from a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A window's `open` or `close` is not a time `HH:MM`.
    #[error("`{field}` must be a time HH:MM, got `{value}`")]
    BadTime {
        /// The field, e.g. `business_hours[0].open`.
        field: String,
        /// The text found there.
        value: String,
    },
    /// A window's `close` is not after its `open` (it would never open).
    #[error("`{field}` must be after `open`")]
    EmptyWindow {
        /// The field, e.g. `calling_windows[2].close`.
        field: String,
    },
}

/// One weekly opening on some clock: `[open, close)` on every `day`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    day: chrono::Weekday,
    open: NaiveTime,
    close: NaiveTime,
}

/// A tenant's calling rules: business hours on the business's clock, calling windows on the
/// callee's, and always the legal hours on the callee's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallingPolicy {
    business_tz: Tz,
    business_hours: Vec<Window>,
    calling_windows: Vec<Window>,
}

impl CallingPolicy {
    /// Builds the policy of a configuration whose business time zone is `business_tz`.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] names the first window whose times do not parse or whose `close` is not
    /// after its `open` (a validated configuration has none).
    pub fn from_config(config: &ClientConfiguration, business_tz: Tz) -> Result<Self, PolicyError> {
        Ok(Self {
            business_tz,
            business_hours: parse_windows("business_hours", &config.business_hours)?,
            calling_windows: parse_windows("calling_windows", &config.calling_windows)?,
        })
    }

    /// Returns whether a call to a callee in `callee_tz` may start at `at`.
    ///
    /// This is the definition the other methods compute: every rule's clock reads inside one
    /// of its windows at `at`.
    #[must_use]
    pub fn is_allowed_at(&self, callee_tz: Tz, at: DateTime<Utc>) -> bool {
        let callee_clock = at.with_timezone(&callee_tz).naive_local();
        let business_clock = at.with_timezone(&self.business_tz).naive_local();
        reads_inside(&LEGAL_WEEK, callee_clock)
            && (self.calling_windows.is_empty()
                || reads_inside(&self.calling_windows, callee_clock))
            && (self.business_hours.is_empty()
                || reads_inside(&self.business_hours, business_clock))
    }

    /// Returns the earliest instant at or after `now` at which a call to a callee in
    /// `callee_tz` may start, looking at most [`SEARCH_HORIZON`] ahead.
    #[must_use]
    pub fn next_allowed(&self, callee_tz: Tz, now: DateTime<Utc>) -> Admission {
        let horizon = now
            .checked_add_signed(SEARCH_HORIZON)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut chunk_start = now;
        while chunk_start < horizon {
            let chunk_end = chunk_start
                .checked_add_signed(SEARCH_CHUNK)
                .map_or(horizon, |end| end.min(horizon));
            let allowed = self.allowed_intervals(callee_tz, chunk_start, chunk_end);
            if let Some(first) = allowed.first() {
                return if first.start == now {
                    Admission::Now
                } else {
                    Admission::Defer { until: first.start }
                };
            }
            chunk_start = chunk_end;
        }
        Admission::Never
    }

    /// Returns the instants of `[from, to)` at which a call to a callee in `callee_tz` may
    /// start, as sorted, disjoint, non-adjacent half-open intervals.
    #[must_use]
    pub fn allowed_intervals(
        &self,
        callee_tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Range<DateTime<Utc>>> {
        if from >= to {
            return Vec::new();
        }
        let callee_stretches = stretches(callee_tz, from, to);
        let mut allowed = open_intervals(&callee_stretches, &LEGAL_WEEK);
        if !self.calling_windows.is_empty() {
            let windows = open_intervals(&callee_stretches, &self.calling_windows);
            allowed = intersect(&allowed, &windows);
        }
        if !self.business_hours.is_empty() && !allowed.is_empty() {
            let business_stretches = stretches(self.business_tz, from, to);
            let hours = open_intervals(&business_stretches, &self.business_hours);
            allowed = intersect(&allowed, &hours);
        }
        allowed
    }
}

fn parse_windows(field: &str, days: &[DayHours]) -> Result<Vec<Window>, PolicyError> {
    let mut windows = Vec::with_capacity(days.len());
    for (index, hours) in days.iter().enumerate() {
        let open = parse_time(&format!("{field}[{index}].open"), &hours.open)?;
        let close_field = format!("{field}[{index}].close");
        let close = parse_time(&close_field, &hours.close)?;
        if close <= open {
            return Err(PolicyError::EmptyWindow { field: close_field });
        }
        windows.push(Window {
            day: chrono_weekday(hours.day),
            open,
            close,
        });
    }
    Ok(windows)
}

fn parse_time(field: &str, text: &str) -> Result<NaiveTime, PolicyError> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| PolicyError::BadTime {
        field: field.to_owned(),
        value: text.to_owned(),
    })
}

fn chrono_weekday(day: Weekday) -> chrono::Weekday {
    match day {
        Weekday::Mon => chrono::Weekday::Mon,
        Weekday::Tue => chrono::Weekday::Tue,
        Weekday::Wed => chrono::Weekday::Wed,
        Weekday::Thu => chrono::Weekday::Thu,
        Weekday::Fri => chrono::Weekday::Fri,
        Weekday::Sat => chrono::Weekday::Sat,
        Weekday::Sun => chrono::Weekday::Sun,
    }
}

/// Returns whether a local clock reading lies inside one of `windows`.
fn reads_inside(windows: &[Window], clock: NaiveDateTime) -> bool {
    let (day, time) = (clock.weekday(), clock.time());
    windows
        .iter()
        .any(|window| window.day == day && window.open <= time && time < window.close)
}

/// A stretch of UTC time during which a zone's offset is constant.
#[derive(Debug)]
struct Stretch {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Local time minus UTC.
    offset: TimeDelta,
}

fn offset_at(tz: Tz, at: DateTime<Utc>) -> TimeDelta {
    let seconds = tz
        .offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc();
    TimeDelta::seconds(i64::from(seconds))
}

/// Splits `[from, to)` into stretches of constant offset in `tz`.
fn stretches(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Stretch> {
    let mut result = Vec::new();
    let mut start = from;
    let mut offset = offset_at(tz, from);
    let mut probe = from;
    while probe < to {
        let next_probe = probe
            .checked_add_signed(TRANSITION_PROBE)
            .map_or(to, |next| next.min(to));
        let next_offset = offset_at(tz, next_probe);
        if next_offset != offset {
            let change = transition_between(tz, probe, next_probe, offset);
            result.push(Stretch {
                start,
                end: change,
                offset,
            });
            start = change;
            offset = next_offset;
        }
        probe = next_probe;
    }
    if start < to {
        result.push(Stretch {
            start,
            end: to,
            offset,
        });
    }
    result
}

/// Returns the first instant of `(before, after]` whose offset is not `old_offset`, given that
/// `before` has `old_offset`, `after` does not, and one transition lies between them.
///
/// Transitions fall on whole seconds, so bisecting over whole seconds finds it exactly.
fn transition_between(
    tz: Tz,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
    old_offset: TimeDelta,
) -> DateTime<Utc> {
    let mut low = before.timestamp();
    let mut high = after.timestamp();
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        let at_middle = DateTime::from_timestamp(middle, 0).unwrap_or(after);
        if offset_at(tz, at_middle) == old_offset {
            low = middle;
        } else {
            high = middle;
        }
    }
    DateTime::from_timestamp(high, 0).unwrap_or(after)
}

/// Returns the instants of `stretches` at which the local clock reads inside `windows`, sorted
/// and merged.
fn open_intervals(stretches: &[Stretch], windows: &[Window]) -> Vec<Range<DateTime<Utc>>> {
    let mut intervals = Vec::new();
    for stretch in stretches {
        // Within a stretch the local clock is UTC plus a constant: map, clip, map back.
        let clock_start = stretch.start.naive_utc() + stretch.offset;
        let clock_end = stretch.end.naive_utc() + stretch.offset;
        for date in clock_start.date().iter_days() {
            if date > clock_end.date() {
                break;
            }
            for window in windows.iter().filter(|window| window.day == date.weekday()) {
                let open = date.and_time(window.open).max(clock_start);
                let close = date.and_time(window.close).min(clock_end);
                if open < close {
                    intervals.push(
                        (open - stretch.offset).and_utc()..(close - stretch.offset).and_utc(),
                    );
                }
            }
        }
    }
    merge(intervals)
}

/// Sorts intervals and joins those that overlap or touch.
fn merge(mut intervals: Vec<Range<DateTime<Utc>>>) -> Vec<Range<DateTime<Utc>>> {
    intervals.sort_by_key(|interval| interval.start);
    let mut merged: Vec<Range<DateTime<Utc>>> = Vec::with_capacity(intervals.len());
    for interval in intervals {
        match merged.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    merged
}

/// Intersects two sorted lists of disjoint intervals.
fn intersect(
    left: &[Range<DateTime<Utc>>],
    right: &[Range<DateTime<Utc>>],
) -> Vec<Range<DateTime<Utc>>> {
    let mut result = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        let start = left[i].start.max(right[j].start);
        let end = left[i].end.min(right[j].end);
        if start < end {
            result.push(start..end);
        }
        // The interval that ends first cannot meet anything further in the other list.
        if left[i].end <= right[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use proptest::prelude::*;

    use super::*;

    fn local(tz: Tz, date: (i32, u32, u32), time: (u32, u32)) -> DateTime<Utc> {
        let naive = NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .unwrap()
            .and_hms_opt(time.0, time.1, 0)
            .unwrap();
        tz.from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn hours(day: Weekday, open: &str, close: &str) -> DayHours {
        DayHours {
            day,
            open: open.to_owned(),
            close: close.to_owned(),
        }
    }

    fn policy(business_tz: Tz, business: Vec<DayHours>, windows: Vec<DayHours>) -> CallingPolicy {
        let config = ClientConfiguration {
            business_hours: business,
            calling_windows: windows,
            ..ClientConfiguration::default()
        };
        CallingPolicy::from_config(&config, business_tz).unwrap()
    }

    fn unrestricted() -> CallingPolicy {
        policy(Tz::UTC, vec![], vec![])
    }

    fn weekdays(open: &str, close: &str) -> Vec<DayHours> {
        [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
        .into_iter()
        .map(|day| hours(day, open, close))
        .collect()
    }

    #[test]
    fn a_late_evening_lead_is_deferred_to_eight_the_next_morning() {
        let new_york = Tz::America__New_York;
        let now = local(new_york, (2026, 1, 14), (22, 30));
        assert_eq!(now, utc("2026-01-15T03:30:00Z"));
        let until = utc("2026-01-15T13:00:00Z");
        assert_eq!(
            unrestricted().next_allowed(new_york, now),
            Admission::Defer { until }
        );
        assert_eq!(until, local(new_york, (2026, 1, 15), (8, 0)));
    }

    #[test]
    fn a_deferral_across_a_us_dst_start_lands_on_eight_cdt() {
        let chicago = Tz::America__Chicago;
        // Saturday 22:30 CST (UTC-6); Sunday 08:00 is CDT (UTC-5).
        let now = local(chicago, (2026, 3, 7), (22, 30));
        assert_eq!(now, utc("2026-03-08T04:30:00Z"));
        assert_eq!(
            unrestricted().next_allowed(chicago, now),
            Admission::Defer {
                until: utc("2026-03-08T13:00:00Z")
            }
        );
    }

    #[test]
    fn a_deferral_across_a_us_dst_end_lands_on_eight_cst() {
        let chicago = Tz::America__Chicago;
        // Saturday 22:30 CDT (UTC-5); Sunday 08:00 is CST (UTC-6).
        let now = local(chicago, (2026, 10, 31), (22, 30));
        assert_eq!(now, utc("2026-11-01T03:30:00Z"));
        assert_eq!(
            unrestricted().next_allowed(chicago, now),
            Admission::Defer {
                until: utc("2026-11-01T14:00:00Z")
            }
        );
    }

    #[test]
    fn deferrals_across_london_clock_changes_land_on_eight_local() {
        let london = Tz::Europe__London;
        // BST starts on 2026-03-29 and ends on 2026-10-25.
        let spring = local(london, (2026, 3, 28), (22, 30));
        assert_eq!(spring, utc("2026-03-28T22:30:00Z"));
        assert_eq!(
            unrestricted().next_allowed(london, spring),
            Admission::Defer {
                until: utc("2026-03-29T07:00:00Z")
            }
        );
        let autumn = local(london, (2026, 10, 24), (22, 30));
        assert_eq!(autumn, utc("2026-10-24T21:30:00Z"));
        assert_eq!(
            unrestricted().next_allowed(london, autumn),
            Admission::Defer {
                until: utc("2026-10-25T08:00:00Z")
            }
        );
    }

    #[test]
    fn a_mid_morning_lead_without_tenant_rules_is_called_now() {
        let now = local(Tz::America__Denver, (2026, 6, 10), (10, 0));
        assert_eq!(
            unrestricted().next_allowed(Tz::America__Denver, now),
            Admission::Now
        );
    }

    #[test]
    fn the_legal_window_is_half_open() {
        let new_york = Tz::America__New_York;
        let policy = unrestricted();
        let eight = local(new_york, (2026, 6, 10), (8, 0));
        assert_eq!(policy.next_allowed(new_york, eight), Admission::Now);
        let nine_pm = local(new_york, (2026, 6, 10), (21, 0));
        assert_eq!(
            policy.next_allowed(new_york, nine_pm - TimeDelta::seconds(1)),
            Admission::Now
        );
        assert_eq!(
            policy.next_allowed(new_york, nine_pm),
            Admission::Defer {
                until: local(new_york, (2026, 6, 11), (8, 0))
            }
        );
    }

    #[test]
    fn business_hours_in_new_york_and_legal_hours_in_los_angeles_both_apply() {
        let (new_york, los_angeles) = (Tz::America__New_York, Tz::America__Los_Angeles);
        let policy = policy(new_york, weekdays("09:00", "17:00"), vec![]);
        // Monday 07:00 PST: business opened at 09:00 EST (06:00 PST), legal opens at 08:00 PST.
        let monday_early = local(los_angeles, (2026, 1, 12), (7, 0));
        assert_eq!(
            policy.next_allowed(los_angeles, monday_early),
            Admission::Defer {
                until: utc("2026-01-12T16:00:00Z")
            }
        );
        // Friday 13:00 PST is 16:00 EST: open.
        let friday_lunch = local(los_angeles, (2026, 1, 16), (13, 0));
        assert_eq!(
            policy.next_allowed(los_angeles, friday_lunch),
            Admission::Now
        );
        // Friday 14:00 and 15:00 PST are 17:00 and 18:00 EST: closed until Monday 08:00 PST.
        let next_monday = Admission::Defer {
            until: local(los_angeles, (2026, 1, 19), (8, 0)),
        };
        for hour in [14, 15] {
            let friday = local(los_angeles, (2026, 1, 16), (hour, 0));
            assert_eq!(policy.next_allowed(los_angeles, friday), next_monday);
        }
    }

    #[test]
    fn calling_windows_restrict_further() {
        let new_york = Tz::America__New_York;
        let policy = policy(Tz::UTC, vec![], vec![hours(Weekday::Tue, "12:00", "13:00")]);
        // 2026-01-12 is a Monday.
        let monday = local(new_york, (2026, 1, 12), (10, 0));
        assert_eq!(
            policy.next_allowed(new_york, monday),
            Admission::Defer {
                until: local(new_york, (2026, 1, 13), (12, 0))
            }
        );
        let tuesday_noon = local(new_york, (2026, 1, 13), (12, 30));
        assert_eq!(policy.next_allowed(new_york, tuesday_noon), Admission::Now);
        let tuesday_one = local(new_york, (2026, 1, 13), (13, 0));
        assert_eq!(
            policy.next_allowed(new_york, tuesday_one),
            Admission::Defer {
                until: local(new_york, (2026, 1, 20), (12, 0))
            }
        );
    }

    #[test]
    fn hours_opening_inside_a_spring_forward_gap_open_when_the_gap_ends() {
        // Chicago's 02:30 does not exist on 2026-03-08: 02:00 CST jumps to 03:00 CDT (08:00Z).
        // The callee is in Berlin (CET, 09:00 at 08:00Z), so only business hours bind.
        let policy = policy(
            Tz::America__Chicago,
            vec![hours(Weekday::Sun, "02:30", "05:00")],
            vec![],
        );
        let berlin = Tz::Europe__Berlin;
        assert_eq!(
            policy.next_allowed(berlin, utc("2026-03-07T12:00:00Z")),
            Admission::Defer {
                until: utc("2026-03-08T08:00:00Z")
            }
        );
        assert!(!policy.is_allowed_at(berlin, utc("2026-03-08T07:59:59Z")));
        assert_eq!(
            policy.allowed_intervals(
                berlin,
                utc("2026-03-08T00:00:00Z"),
                utc("2026-03-09T00:00:00Z")
            ),
            vec![utc("2026-03-08T08:00:00Z")..utc("2026-03-08T10:00:00Z")]
        );
        // A week later there is no gap: 02:30 CDT.
        assert_eq!(
            policy.next_allowed(berlin, utc("2026-03-14T12:00:00Z")),
            Admission::Defer {
                until: utc("2026-03-15T07:30:00Z")
            }
        );
    }

    #[test]
    fn hours_inside_a_fall_back_repeat_are_open_during_both_passes() {
        // On 2026-11-01 Chicago reads 01:00-02:00 twice: CDT (06:00-07:00Z), then CST
        // (07:00-08:00Z). The callee is in Tokyo (UTC+9), where it is afternoon.
        let policy = policy(
            Tz::America__Chicago,
            vec![hours(Weekday::Sun, "01:30", "03:00")],
            vec![],
        );
        let tokyo = Tz::Asia__Tokyo;
        assert_eq!(
            policy.allowed_intervals(
                tokyo,
                utc("2026-11-01T00:00:00Z"),
                utc("2026-11-01T12:00:00Z")
            ),
            vec![
                utc("2026-11-01T06:30:00Z")..utc("2026-11-01T07:00:00Z"),
                utc("2026-11-01T07:30:00Z")..utc("2026-11-01T09:00:00Z"),
            ]
        );
        assert_eq!(
            policy.next_allowed(tokyo, utc("2026-11-01T06:00:00Z")),
            Admission::Defer {
                until: utc("2026-11-01T06:30:00Z")
            }
        );
        // 01:10 CST reads before `open`.
        assert_eq!(
            policy.next_allowed(tokyo, utc("2026-11-01T07:10:00Z")),
            Admission::Defer {
                until: utc("2026-11-01T07:30:00Z")
            }
        );
    }

    #[test]
    fn rules_that_never_meet_answer_never() {
        let new_york = Tz::America__New_York;
        let night_shift = policy(
            new_york,
            vec![hours(Weekday::Sun, "02:00", "04:00")],
            vec![],
        );
        let now = local(new_york, (2026, 1, 12), (10, 0));
        assert_eq!(night_shift.next_allowed(new_york, now), Admission::Never);
        let different_days = policy(
            new_york,
            vec![hours(Weekday::Tue, "09:00", "17:00")],
            vec![hours(Weekday::Mon, "09:00", "17:00")],
        );
        assert_eq!(different_days.next_allowed(new_york, now), Admission::Never);
    }

    #[test]
    fn unparsable_or_empty_windows_name_their_field() {
        let config = ClientConfiguration {
            business_hours: vec![hours(Weekday::Mon, "09:00", "17:00")],
            calling_windows: vec![
                hours(Weekday::Mon, "09:00", "17:00"),
                hours(Weekday::Tue, "9am", "17:00"),
            ],
            ..ClientConfiguration::default()
        };
        assert_eq!(
            CallingPolicy::from_config(&config, Tz::UTC),
            Err(PolicyError::BadTime {
                field: "calling_windows[1].open".to_owned(),
                value: "9am".to_owned(),
            })
        );
        let config = ClientConfiguration {
            business_hours: vec![hours(Weekday::Mon, "17:00", "09:00")],
            ..ClientConfiguration::default()
        };
        let error = CallingPolicy::from_config(&config, Tz::UTC).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`business_hours[0].close` must be after `open`"
        );
    }

    const WEEK: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// A schedule as tenants write them: the same hours on some days, opening in
    /// `[earliest, latest)` and closing by `latest` (minutes of the day), plus up to two
    /// irregular entries anywhere. Five-minute steps make boundaries shared between rules likely.
    fn schedule(earliest: u32, latest: u32) -> impl Strategy<Value = Vec<DayHours>> {
        let text = |minute: u32| format!("{:02}:{:02}", minute / 60, minute % 60);
        let regular = (
            prop::collection::vec(any::<bool>(), 7),
            (earliest / 5)..(latest / 5),
            1_u32..=(latest - earliest) / 5,
        )
            .prop_map(move |(days, open, length)| {
                let open_minute = open * 5;
                let close_minute = (open_minute + length * 5).min(latest);
                WEEK.iter()
                    .zip(days)
                    .filter(|(_, chosen)| *chosen)
                    .map(|(day, _)| hours(*day, &text(open_minute), &text(close_minute)))
                    .collect::<Vec<_>>()
            });
        let irregular = prop::collection::vec(
            (prop::sample::select(WEEK.to_vec()), 0_u32..287, 1_u32..288).prop_map(
                move |(day, open, length)| {
                    let open_minute = open * 5;
                    let close_minute = (open_minute + length * 5).min(23 * 60 + 59);
                    hours(day, &text(open_minute), &text(close_minute))
                },
            ),
            0..2,
        );
        (regular, irregular).prop_map(|(mut regular, irregular)| {
            regular.extend(irregular);
            regular
        })
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000 to 2036, half of them in the months when most zones change their clocks
        // (March-April and September-November, both hemispheres).
        let anytime = (946_684_800_i64..2_082_758_400)
            .prop_map(|seconds| DateTime::from_timestamp(seconds, 0).unwrap());
        let near_a_change = (
            2000_i32..2036,
            prop::sample::select(vec![3_u32, 4, 9, 10, 11]),
            1_u32..=28,
            0_i64..86_400,
        )
            .prop_map(|(year, month, day, seconds)| {
                let midnight = NaiveDate::from_ymd_opt(year, month, day)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc();
                midnight + TimeDelta::seconds(seconds)
            });
        prop_oneof![anytime, near_a_change]
    }

    fn any_policy() -> impl Strategy<Value = CallingPolicy> {
        let business = prop_oneof![Just(Vec::new()), schedule(0, 23 * 60 + 59)];
        let calling = prop_oneof![Just(Vec::new()), schedule(8 * 60, 21 * 60)];
        (zone(), business, calling)
            .prop_map(|(business_tz, business, calling)| policy(business_tz, business, calling))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn next_allowed_is_the_earliest_allowed_instant(
            policy in any_policy(),
            callee_tz in zone(),
            now in instant(),
        ) {
            let minute = TimeDelta::minutes(1);
            match policy.next_allowed(callee_tz, now) {
                Admission::Now => prop_assert!(policy.is_allowed_at(callee_tz, now)),
                Admission::Defer { until } => {
                    prop_assert!(until > now);
                    prop_assert!(until < now + SEARCH_HORIZON);
                    prop_assert!(policy.is_allowed_at(callee_tz, until));
                    prop_assert!(!policy.is_allowed_at(callee_tz, until - TimeDelta::seconds(1)));
                    let mut at = now;
                    while at < until {
                        prop_assert!(!policy.is_allowed_at(callee_tz, at), "allowed at {}", at);
                        at += minute;
                    }
                }
                Admission::Never => {
                    let mut at = now;
                    while at < now + SEARCH_HORIZON {
                        prop_assert!(!policy.is_allowed_at(callee_tz, at), "allowed at {}", at);
                        at += minute;
                    }
                }
            }
        }

        #[test]
        fn allowed_intervals_agree_with_the_rules_at_every_minute(
            policy in any_policy(),
            callee_tz in zone(),
            from in instant(),
        ) {
            let to = from + TimeDelta::days(2);
            let intervals = policy.allowed_intervals(callee_tz, from, to);
            for pair in intervals.windows(2) {
                prop_assert!(pair[0].end < pair[1].start);
            }
            let mut at = from;
            while at < to {
                let inside = intervals.iter().any(|interval| interval.contains(&at));
                prop_assert_eq!(inside, policy.is_allowed_at(callee_tz, at), "at {}", at);
                at += TimeDelta::minutes(1);
            }
        }
    }
}
