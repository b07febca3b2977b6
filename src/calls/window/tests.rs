//! Tests of calling windows: fixed cases across DST changes and the earliest-instant properties.

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
