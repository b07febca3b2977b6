//! Candidate slots from weekly opening hours in the business's zone.
//!
//! Unlike [`crate::calls::window::CallingPolicy`], which also holds every instant to the legal
//! calling hours, appointments follow only the hours configured for them. Slots start at each
//! opening time and follow each other every `length`; a slot never runs past the closing time.
//! Across a daylight-saving change the wall clock decides: 09:00 is 09:00 local on both sides.

use chrono::{DateTime, Datelike as _, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::ical::local;
use crate::booking::Slot;
use crate::tenancy::config::{DayHours, Weekday};

/// One parsed opening window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opening {
    day: chrono::Weekday,
    open: NaiveTime,
    close: NaiveTime,
}

/// Parses `hours`; the error names the first entry (`hours[2].close`) that is unreadable or
/// closes before it opens.
pub(crate) fn openings(field: &str, hours: &[DayHours]) -> Result<Vec<Opening>, String> {
    let mut parsed = Vec::with_capacity(hours.len());
    for (index, hours) in hours.iter().enumerate() {
        let time = |name: &str, text: &str| {
            NaiveTime::parse_from_str(text, "%H:%M")
                .map_err(|_| format!("`{field}[{index}].{name}` must be `HH:MM`, got `{text}`"))
        };
        let open = time("open", &hours.open)?;
        let close = time("close", &hours.close)?;
        if close <= open {
            return Err(format!("`{field}[{index}].close` must be after its `open`"));
        }
        parsed.push(Opening {
            day: weekday(hours.day),
            open,
            close,
        });
    }
    Ok(parsed)
}

const fn weekday(day: Weekday) -> chrono::Weekday {
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

/// Returns every slot of `length` inside the openings that lies within `[from, to)`, earliest
/// first.
pub(crate) fn slots(
    openings: &[Opening],
    zone: Tz,
    length: TimeDelta,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Slot> {
    let mut found = Vec::new();
    if length <= TimeDelta::zero() || to <= from {
        return found;
    }
    // One local day before and after: an opening near midnight may straddle the range's edge.
    let first = from.with_timezone(&zone).date_naive().pred_opt();
    let last = to.with_timezone(&zone).date_naive().succ_opt();
    let (Some(mut day), Some(last)) = (first, last) else {
        return found;
    };
    while day <= last {
        for opening in openings
            .iter()
            .filter(|opening| opening.day == day.weekday())
        {
            let (Some(open), Some(close)) = (
                local(zone, day.and_time(opening.open)),
                local(zone, day.and_time(opening.close)),
            ) else {
                continue;
            };
            let mut start = open;
            while start + length <= close {
                let end = start + length;
                if start >= from && end <= to {
                    found.push(Slot {
                        starts_at: start,
                        ends_at: end,
                    });
                }
                start = end;
            }
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    found.sort_by_key(|slot| slot.starts_at);
    found.dedup_by_key(|slot| slot.starts_at);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn hours(day: Weekday, open: &str, close: &str) -> DayHours {
        DayHours {
            day,
            open: open.to_owned(),
            close: close.to_owned(),
        }
    }

    #[test]
    fn slots_follow_the_opening_hours_in_the_business_zone() {
        let zone: Tz = "America/Chicago".parse().unwrap();
        let rules = openings("hours", &[hours(Weekday::Mon, "09:00", "10:45")]).unwrap();
        // Monday 2030-03-11, CDT (UTC-5).
        let found = slots(
            &rules,
            zone,
            TimeDelta::minutes(30),
            at("2030-03-11T00:00:00Z"),
            at("2030-03-12T00:00:00Z"),
        );
        let starts: Vec<_> = found.iter().map(|slot| slot.starts_at).collect();
        assert_eq!(
            starts,
            [
                at("2030-03-11T14:00:00Z"),
                at("2030-03-11T14:30:00Z"),
                at("2030-03-11T15:00:00Z")
            ]
        );
        assert!(
            found
                .iter()
                .all(|slot| slot.ends_at - slot.starts_at == TimeDelta::minutes(30))
        );
    }

    #[test]
    fn the_wall_clock_decides_across_a_daylight_saving_change() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let rules = openings(
            "hours",
            &[
                hours(Weekday::Fri, "09:00", "09:30"),
                hours(Weekday::Mon, "09:00", "09:30"),
            ],
        )
        .unwrap();
        let found = slots(
            &rules,
            zone,
            TimeDelta::minutes(30),
            at("2025-03-28T00:00:00Z"),
            at("2025-04-01T00:00:00Z"),
        );
        let starts: Vec<_> = found.iter().map(|slot| slot.starts_at).collect();
        assert_eq!(
            starts,
            [at("2025-03-28T08:00:00Z"), at("2025-03-31T07:00:00Z")]
        );
    }

    #[test]
    fn slots_stay_inside_the_range() {
        let rules = openings("hours", &[hours(Weekday::Mon, "09:00", "12:00")]).unwrap();
        let found = slots(
            &rules,
            Tz::UTC,
            TimeDelta::minutes(60),
            at("2030-03-11T09:10:00Z"),
            at("2030-03-11T11:30:00Z"),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].starts_at, at("2030-03-11T10:00:00Z"));
    }

    #[test]
    fn bad_hours_name_the_entry() {
        let error = openings(
            "providers.caldav.hours",
            &[
                hours(Weekday::Mon, "09:00", "10:00"),
                hours(Weekday::Tue, "10:00", "09:00"),
            ],
        )
        .unwrap_err();
        assert!(
            error.contains("`providers.caldav.hours[1].close`"),
            "{error}"
        );
        let error = openings("hours", &[hours(Weekday::Mon, "9am", "10:00")]).unwrap_err();
        assert!(error.contains("`hours[0].open`"), "{error}");
    }
}
