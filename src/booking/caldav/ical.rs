//! The iCalendar (RFC 5545) subset the CalDAV calendar reads and writes.
//!
//! - Reading is lenient and never panics: lines are unfolded (CRLF or bare LF), properties
//!   that do not parse are skipped, and a time that cannot be read leaves its event out.
//! - Busy time comes from `FREEBUSY` properties of a VFREEBUSY (RFC 4791 §7.10 answers) or
//!   from VEVENTs (calendar-query answers): `DTSTART`/`DTEND` in UTC, with a `TZID`, floating
//!   (read in the business's zone) or all-day dates; `DURATION` when there is no `DTEND`.
//!   Cancelled and transparent events are not busy.
//! - Writing produces one VEVENT in UTC (`Z`), text escaped, lines folded at 75 octets and
//!   ended with CRLF.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;

/// A half-open span of time `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interval {
    /// Inclusive start.
    pub(crate) start: DateTime<Utc>,
    /// Exclusive end.
    pub(crate) end: DateTime<Utc>,
}

impl Interval {
    /// Returns true when the two spans share any instant.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// One content line: `NAME;PARAM=VALUE:value`.
#[derive(Debug)]
struct Property<'a> {
    name: String,
    params: Vec<(String, String)>,
    value: &'a str,
}

impl Property<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Joins folded lines (a line starting with a space or tab continues the previous one).
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (line.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(rest), Some(previous)) => previous.push_str(rest),
            _ if line.is_empty() => {}
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

/// Splits a content line; `None` for a line without a `:` outside quotes.
fn property(line: &str) -> Option<Property<'_>> {
    let mut in_quotes = false;
    let colon = line.char_indices().find_map(|(index, c)| match c {
        '"' => {
            in_quotes = !in_quotes;
            None
        }
        ':' if !in_quotes => Some(index),
        _ => None,
    })?;
    let (head, value) = (&line[..colon], &line[colon + 1..]);
    let mut parts = head.split(';');
    let name = parts.next()?.trim().to_ascii_uppercase();
    let params = parts
        .filter_map(|param| {
            let (key, value) = param.split_once('=')?;
            Some((
                key.trim().to_ascii_uppercase(),
                value.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect();
    Some(Property {
        name,
        params,
        value,
    })
}

/// Returns the busy periods of every VFREEBUSY in `text` (FBTYPE `BUSY`, `BUSY-UNAVAILABLE`
/// and `BUSY-TENTATIVE`; `FREE` is skipped). Periods are `start/end` or `start/duration`.
pub(crate) fn free_busy(text: &str) -> Vec<Interval> {
    let mut busy = Vec::new();
    let mut inside = false;
    for line in unfold(text) {
        let Some(property) = property(&line) else {
            continue;
        };
        match (property.name.as_str(), property.value.trim()) {
            ("BEGIN", component) if component.eq_ignore_ascii_case("VFREEBUSY") => inside = true,
            ("END", component) if component.eq_ignore_ascii_case("VFREEBUSY") => inside = false,
            ("FREEBUSY", periods) if inside => {
                let kind = property.param("FBTYPE").unwrap_or("BUSY");
                if kind.eq_ignore_ascii_case("FREE") {
                    continue;
                }
                busy.extend(periods.split(',').filter_map(period));
            }
            _ => {}
        }
    }
    busy
}

/// Reads `start/end` or `start/duration` in UTC.
fn period(text: &str) -> Option<Interval> {
    let (start, rest) = text.trim().split_once('/')?;
    let start = utc_datetime(start)?;
    let end = if rest.starts_with(['P', '+', '-']) {
        start.checked_add_signed(duration(rest)?)?
    } else {
        utc_datetime(rest)?
    };
    (end > start).then_some(Interval { start, end })
}

/// Reads `20250310T090000Z`.
fn utc_datetime(text: &str) -> Option<DateTime<Utc>> {
    let naive =
        NaiveDateTime::parse_from_str(text.trim().strip_suffix('Z')?, "%Y%m%dT%H%M%S").ok()?;
    Some(naive.and_utc())
}

/// Reads an RFC 5545 duration: `PT30M`, `P1D`, `-PT15M`, `P1W`, `P1DT2H`.
pub(crate) fn duration(text: &str) -> Option<TimeDelta> {
    let text = text.trim();
    let (negative, text) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let mut rest = text.strip_prefix('P')?;
    let mut total = TimeDelta::zero();
    let mut in_time = false;
    let mut seen = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('T') {
            in_time = true;
            rest = after;
            continue;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: i64 = rest.get(..digits)?.parse().ok()?;
        let unit = rest.get(digits..=digits)?;
        let part = match (unit, in_time) {
            ("W", false) => TimeDelta::try_weeks(number)?,
            ("D", false) => TimeDelta::try_days(number)?,
            ("H", true) => TimeDelta::try_hours(number)?,
            ("M", true) => TimeDelta::try_minutes(number)?,
            ("S", true) => TimeDelta::try_seconds(number)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
        seen = true;
        rest = &rest[digits + 1..];
    }
    seen.then_some(if negative { -total } else { total })
}

/// A time property's value, read as an instant: UTC, in its `TZID`, floating (in `zone`), or a
/// date (midnight in `zone`). The flag says it was a date.
fn instant(property: &Property<'_>, zone: Tz) -> Option<(DateTime<Utc>, bool)> {
    let value = property.value.trim();
    let is_date = property
        .param("VALUE")
        .is_some_and(|kind| kind.eq_ignore_ascii_case("DATE"))
        || (value.len() == 8 && value.bytes().all(|byte| byte.is_ascii_digit()));
    if is_date {
        let date = NaiveDate::parse_from_str(value, "%Y%m%d").ok()?;
        return Some((local(zone, date.and_hms_opt(0, 0, 0)?)?, true));
    }
    if value.ends_with('Z') {
        return Some((utc_datetime(value)?, false));
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok()?;
    // NOTE(caldav): a TZID we cannot name (a Windows zone, a custom VTIMEZONE) is read in the
    // business's zone: the common case of a calendar kept in its owner's zone.
    let event_zone = property
        .param("TZID")
        .and_then(|tzid| {
            tzid.parse::<Tz>().ok().or_else(|| {
                // Some clients prefix the IANA name: `/mozilla.org/20050126_1/Europe/Berlin`.
                let mut parts = tzid.rsplitn(3, '/');
                let city = parts.next()?;
                let region = parts.next()?;
                format!("{region}/{city}").parse().ok()
            })
        })
        .unwrap_or(zone);
    Some((local(event_zone, naive)?, false))
}

/// A wall-clock time in `zone` as an instant: the earlier of an ambiguous (autumn) time, and
/// the first valid time after a skipped (spring) one.
pub(crate) fn local(zone: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    for shift in 0..=2 {
        let candidate = naive.checked_add_signed(TimeDelta::hours(shift))?;
        if let Some(at) = zone.from_local_datetime(&candidate).earliest() {
            return Some(at.with_timezone(&Utc));
        }
    }
    None
}

/// An event's identity and time, as busy time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventTime {
    /// Its `UID` (empty when it has none).
    pub(crate) uid: String,
    /// When it is busy.
    pub(crate) interval: Interval,
}

/// Returns every busy VEVENT of `text` (all calendar objects of a calendar-query answer).
pub(crate) fn events(text: &str, zone: Tz) -> Vec<EventTime> {
    #[derive(Default)]
    struct Draft {
        uid: String,
        start: Option<(DateTime<Utc>, bool)>,
        end: Option<DateTime<Utc>>,
        duration: Option<TimeDelta>,
        free: bool,
    }
    let mut found = Vec::new();
    let mut draft: Option<Draft> = None;
    // Components nested in a VEVENT (VALARM) have their own DTSTART-like lines.
    let mut nested = 0_u32;
    for line in unfold(text) {
        let Some(property) = property(&line) else {
            continue;
        };
        let value = property.value.trim();
        match property.name.as_str() {
            "BEGIN" if value.eq_ignore_ascii_case("VEVENT") => draft = Some(Draft::default()),
            "BEGIN" if draft.is_some() => nested += 1,
            "END" if nested > 0 => nested -= 1,
            "END" if value.eq_ignore_ascii_case("VEVENT") => {
                let Some(event) = draft.take() else { continue };
                let Some((start, is_date)) = event.start else {
                    continue;
                };
                let end = event
                    .end
                    .or_else(|| event.duration.and_then(|d| start.checked_add_signed(d)))
                    .unwrap_or(if is_date {
                        start + TimeDelta::days(1)
                    } else {
                        start
                    });
                if !event.free && end > start {
                    found.push(EventTime {
                        uid: event.uid,
                        interval: Interval { start, end },
                    });
                }
            }
            _ if nested > 0 => {}
            name => {
                let Some(event) = draft.as_mut() else {
                    continue;
                };
                match name {
                    "UID" => value.clone_into(&mut event.uid),
                    "DTSTART" => event.start = instant(&property, zone),
                    "DTEND" => event.end = instant(&property, zone).map(|(at, _)| at),
                    "DURATION" => event.duration = duration(value),
                    "STATUS" if value.eq_ignore_ascii_case("CANCELLED") => event.free = true,
                    "TRANSP" if value.eq_ignore_ascii_case("TRANSPARENT") => event.free = true,
                    _ => {}
                }
            }
        }
    }
    found
}

/// Returns the first VEVENT's time in `text`, if it has one.
pub(crate) fn first_event(text: &str, zone: Tz) -> Option<EventTime> {
    events(text, zone).into_iter().next()
}

/// What a booking's VEVENT says.
#[derive(Clone, Debug)]
pub(crate) struct NewEvent<'a> {
    /// The resource's UID.
    pub(crate) uid: &'a str,
    /// When it starts.
    pub(crate) start: DateTime<Utc>,
    /// When it ends.
    pub(crate) end: DateTime<Utc>,
    /// The title.
    pub(crate) summary: &'a str,
    /// The details, one line each.
    pub(crate) description: &'a str,
    /// When it was written.
    pub(crate) stamp: DateTime<Utc>,
}

/// Returns a VCALENDAR with one VEVENT, CRLF lines folded at 75 octets.
pub(crate) fn write_event(event: &NewEvent<'_>) -> String {
    let mut out = String::new();
    for line in [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//caller//caldav//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}", event.uid),
        format!("DTSTAMP:{}", utc_text(event.stamp)),
        format!("DTSTART:{}", utc_text(event.start)),
        format!("DTEND:{}", utc_text(event.end)),
        format!("SUMMARY:{}", escape(event.summary)),
        format!("DESCRIPTION:{}", escape(event.description)),
        "STATUS:CONFIRMED".to_owned(),
        "TRANSP:OPAQUE".to_owned(),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ] {
        fold_into(&line, &mut out);
    }
    out
}

/// Returns `existing` with its first VEVENT moved to `[start, end)` (UTC), a new `DTSTAMP` and
/// the `SEQUENCE` raised; everything else the calendar holds is kept. `None` when `existing`
/// has no VEVENT.
pub(crate) fn moved_event(
    existing: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    stamp: DateTime<Utc>,
) -> Option<String> {
    let mut out = String::new();
    let mut state = 0_u8; // 0 before the VEVENT, 1 inside it, 2 after it
    let mut nested = 0_u32;
    let mut sequence = 0_i64;
    for line in unfold(existing) {
        let parsed = property(&line);
        let name = parsed.as_ref().map(|p| p.name.as_str()).unwrap_or_default();
        let value = parsed.as_ref().map(|p| p.value.trim()).unwrap_or_default();
        if state == 1 && nested == 0 {
            match name {
                "DTSTART" | "DTEND" | "DURATION" | "DTSTAMP" => continue,
                "SEQUENCE" => {
                    sequence = value.parse().unwrap_or(0);
                    continue;
                }
                "BEGIN" => nested += 1,
                "END" if value.eq_ignore_ascii_case("VEVENT") => {
                    for added in [
                        format!("DTSTAMP:{}", utc_text(stamp)),
                        format!("DTSTART:{}", utc_text(start)),
                        format!("DTEND:{}", utc_text(end)),
                        format!("SEQUENCE:{}", sequence.saturating_add(1)),
                    ] {
                        fold_into(&added, &mut out);
                    }
                    state = 2;
                }
                _ => {}
            }
        } else if state == 1 {
            match name {
                "BEGIN" => nested += 1,
                "END" => nested -= 1,
                _ => {}
            }
        } else if state == 0 && name == "BEGIN" && value.eq_ignore_ascii_case("VEVENT") {
            state = 1;
        }
        fold_into(&line, &mut out);
    }
    (state == 2).then_some(out)
}

fn utc_text(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 §3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (never inside a UTF-8 character), ending in CRLF.
fn fold_into(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let size = c.len_utf8();
        if width + size > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += size;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn free_busy_periods_are_read_with_ends_and_durations() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VFREEBUSY\r\n\
            DTSTART:20300310T000000Z\r\nDTEND:20300311T000000Z\r\n\
            FREEBUSY;FBTYPE=BUSY:20300310T090000Z/20300310T093000Z,20300310T120000Z/PT1H\r\n\
            FREEBUSY;FBTYPE=FREE:20300310T140000Z/20300310T150000Z\r\n\
            FREEBUSY:20300310T16\r\n 0000Z/20300310T163000Z\r\n\
            FREEBUSY;FBTYPE=BUSY-TENTATIVE:garbage/20300310T163000Z\r\n\
            END:VFREEBUSY\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            free_busy(text),
            vec![
                Interval {
                    start: at("2030-03-10T09:00:00Z"),
                    end: at("2030-03-10T09:30:00Z")
                },
                Interval {
                    start: at("2030-03-10T12:00:00Z"),
                    end: at("2030-03-10T13:00:00Z")
                },
                Interval {
                    start: at("2030-03-10T16:00:00Z"),
                    end: at("2030-03-10T16:30:00Z")
                },
            ]
        );
    }

    #[test]
    fn nonsense_is_no_busy_time_and_no_panic() {
        for text in [
            "",
            ":",
            "BEGIN:VFREEBUSY\nFREEBUSY:/\nFREEBUSY:20300310T090000Z/P\n",
            "BEGIN:VFREEBUSY\nFREEBUSY:20300310T090000Z/PT99999999999999999999H\n",
            "BEGIN:VEVENT\nDTSTART;TZID=\"Nowhere:20300310T090000\nEND:VEVENT",
            "BEGIN:VEVENT\nDTSTART:2030ü310T090000Z\nDTEND:x\nEND:VEVENT\nEND:VEVENT\nEND:VALARM",
            "\u{0}\r\n \r\n\t",
        ] {
            assert!(free_busy(text).is_empty(), "{text:?}");
            assert!(events(text, Tz::UTC).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn durations_follow_rfc_5545() {
        assert_eq!(duration("PT30M"), Some(TimeDelta::minutes(30)));
        assert_eq!(duration("P1DT2H"), Some(TimeDelta::hours(26)));
        assert_eq!(duration("-PT15M"), Some(TimeDelta::minutes(-15)));
        assert_eq!(duration("P1W"), Some(TimeDelta::days(7)));
        assert_eq!(duration("P"), None);
        assert_eq!(duration("PT1D"), None);
        assert_eq!(duration("P1H"), None);
    }

    #[test]
    fn events_are_read_in_their_zone_and_cancelled_ones_are_free() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let text = "BEGIN:VCALENDAR\r\n\
            BEGIN:VEVENT\r\nUID:zoned\r\nDTSTART;TZID=Europe/Berlin:20300310T100000\r\n\
            DTEND;TZID=Europe/Berlin:20300310T103000\r\n\
            BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nDTSTART:19990101T000000Z\r\nEND:VALARM\r\n\
            END:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:floating\r\nDTSTART:20300310T120000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:allday\r\nDTSTART;VALUE=DATE:20300311\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:off\r\nDTSTART:20300310T090000Z\r\nDTEND:20300310T100000Z\r\n\
            STATUS:CANCELLED\r\nEND:VEVENT\r\n\
            BEGIN:VEVENT\r\nUID:transparent\r\nDTSTART:20300310T090000Z\r\nDTEND:20300310T100000Z\r\n\
            TRANSP:TRANSPARENT\r\nEND:VEVENT\r\n\
            END:VCALENDAR\r\n";
        let found = events(text, berlin);
        let uids: Vec<&str> = found.iter().map(|event| event.uid.as_str()).collect();
        assert_eq!(uids, ["zoned", "floating", "allday"]);
        assert_eq!(found[0].interval.start, at("2030-03-10T09:00:00Z"));
        assert_eq!(found[0].interval.end, at("2030-03-10T09:30:00Z"));
        assert_eq!(found[1].interval.start, at("2030-03-10T11:00:00Z"));
        assert_eq!(found[1].interval.end, at("2030-03-10T12:00:00Z"));
        assert_eq!(found[2].interval.start, at("2030-03-10T23:00:00Z"));
        assert_eq!(found[2].interval.end, at("2030-03-11T23:00:00Z"));
    }

    #[test]
    fn a_written_event_reads_back_and_has_crlf_lines_of_at_most_75_octets() {
        let description =
            "Phone: +15125550142\nNotes: wants a quote; prefers mornings, ".repeat(4) + "ünïcödé";
        let text = write_event(&NewEvent {
            uid: "caller-0123",
            start: at("2030-03-10T09:00:00Z"),
            end: at("2030-03-10T09:30:00Z"),
            summary: "Appointment: Ada",
            description: &description,
            stamp: at("2030-01-01T00:00:00Z"),
        });
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        for line in text.split_terminator("\r\n") {
            assert!(line.len() <= 75, "{line:?}");
            assert!(!line.contains('\n'));
        }
        assert!(text.contains("DTSTART:20300310T090000Z\r\n"));
        let event = first_event(&text, Tz::UTC).unwrap();
        assert_eq!(event.uid, "caller-0123");
        assert_eq!(event.interval.end, at("2030-03-10T09:30:00Z"));
        let unfolded = unfold(&text).join("\n");
        assert!(unfolded.contains("wants a quote\\; prefers mornings\\, "));
    }

    #[test]
    fn a_moved_event_keeps_its_other_properties() {
        let existing = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:u1\r\nSEQUENCE:2\r\n\
            DTSTART;TZID=Europe/Berlin:20300310T100000\r\nDURATION:PT30M\r\nSUMMARY:Kept\r\n\
            BEGIN:VALARM\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let moved = moved_event(
            existing,
            at("2030-03-11T08:00:00Z"),
            at("2030-03-11T08:30:00Z"),
            at("2030-01-01T00:00:00Z"),
        )
        .unwrap();
        let event = first_event(&moved, Tz::UTC).unwrap();
        assert_eq!(event.interval.start, at("2030-03-11T08:00:00Z"));
        assert_eq!(event.interval.end, at("2030-03-11T08:30:00Z"));
        assert!(moved.contains("SUMMARY:Kept\r\n"));
        assert!(moved.contains("SEQUENCE:3\r\n"));
        assert!(moved.contains("TRIGGER:-PT15M\r\n"));
        assert!(!moved.contains("DURATION"));
        assert_eq!(
            moved_event(
                "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                at("2030-03-11T08:00:00Z"),
                at("2030-03-11T08:30:00Z"),
                at("2030-01-01T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn local_times_survive_daylight_saving_changes() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let skipped = NaiveDate::from_ymd_opt(2025, 3, 30)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(local(berlin, skipped), Some(at("2025-03-30T01:30:00Z")));
        let repeated = NaiveDate::from_ymd_opt(2025, 10, 26)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(local(berlin, repeated), Some(at("2025-10-26T00:30:00Z")));
    }
}
