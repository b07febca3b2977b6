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
//! 4. **Holidays**: none of the tenant's `holidays`, dates on the business's clock.
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

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
};
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
    /// Sorted.
    holidays: Vec<NaiveDate>,
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
            holidays: {
                let mut holidays = config.holidays.clone();
                holidays.sort_unstable();
                holidays.dedup();
                holidays
            },
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
            && self.holidays.binary_search(&business_clock.date()).is_err()
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
        if !self.holidays.is_empty() && !allowed.is_empty() {
            let business_stretches = stretches(self.business_tz, from, to);
            let working = working_days(&business_stretches, &self.holidays);
            allowed = intersect(&allowed, &working);
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
    local_intervals(stretches, |date| {
        windows
            .iter()
            .filter(move |window| window.day == date.weekday())
            .map(move |window| (date.and_time(window.open), date.and_time(window.close)))
    })
}

/// Returns the instants of `stretches` whose local date is not one of `holidays` (sorted),
/// sorted and merged.
fn working_days(stretches: &[Stretch], holidays: &[NaiveDate]) -> Vec<Range<DateTime<Utc>>> {
    local_intervals(stretches, |date| {
        let day_start = date.and_time(NaiveTime::MIN);
        holidays
            .binary_search(&date)
            .is_err()
            .then_some((day_start, day_start + TimeDelta::days(1)))
    })
}

/// Returns the instants of `stretches` at which the local clock reads inside one of the
/// local ranges `ranges_of(date)` gives for each date the stretches cover, sorted and merged.
fn local_intervals<I>(
    stretches: &[Stretch],
    mut ranges_of: impl FnMut(NaiveDate) -> I,
) -> Vec<Range<DateTime<Utc>>>
where
    I: IntoIterator<Item = (NaiveDateTime, NaiveDateTime)>,
{
    let mut intervals = Vec::new();
    for stretch in stretches {
        // Within a stretch the local clock is UTC plus a constant: map, clip, map back.
        let clock_start = stretch.start.naive_utc() + stretch.offset;
        let clock_end = stretch.end.naive_utc() + stretch.offset;
        for date in clock_start.date().iter_days() {
            if date > clock_end.date() {
                break;
            }
            for (open, close) in ranges_of(date) {
                let open = open.max(clock_start);
                let close = close.min(clock_end);
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
mod tests;
