use chrono_tz::America::New_York;
use serde_json::json;

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn schedule(settings: &serde_json::Value) -> Schedule {
    Schedule::parse(New_York, Some(settings), &[]).unwrap()
}

fn starts(slots: &[Slot]) -> Vec<String> {
    slots
        .iter()
        .map(|slot| {
            slot.starts_at
                .with_timezone(&New_York)
                .format("%a %H:%M")
                .to_string()
        })
        .collect()
}

#[test]
fn weekly_rules_are_cut_into_slots_in_the_business_zone() {
    let schedule = schedule(&json!({
        "rules": [{"day": "mon", "open": "09:00", "close": "10:30"},
                  {"day": "tue", "open": "14:00", "close": "15:00"}],
        "slot_minutes": 30
    }));
    // Monday 2026-11-30 to Wednesday, New York is UTC-5.
    let slots = schedule.slots(at("2026-11-30T05:00:00Z"), at("2026-12-02T05:00:00Z"));
    assert_eq!(
        starts(&slots),
        [
            "Mon 09:00",
            "Mon 09:30",
            "Mon 10:00",
            "Tue 14:00",
            "Tue 14:30"
        ]
    );
    assert!(
        slots
            .iter()
            .all(|slot| slot.ends_at - slot.starts_at == TimeDelta::minutes(30))
    );
    assert_eq!(slots[0].starts_at, at("2026-11-30T14:00:00Z"));
}

#[test]
fn buffers_space_the_slots_and_widen_what_a_booking_blocks() {
    let schedule = schedule(&json!({
        "rules": [{"day": "mon", "open": "09:00", "close": "11:00"}],
        "slot_minutes": 30, "buffer_before_minutes": 5, "buffer_after_minutes": 10
    }));
    let slots = schedule.slots(at("2026-11-30T05:00:00Z"), at("2026-12-01T05:00:00Z"));
    assert_eq!(starts(&slots), ["Mon 09:05", "Mon 09:50"]);
    let (from, until) = schedule.blocked(&slots[0]);
    assert_eq!(from, at("2026-11-30T14:00:00Z"));
    assert_eq!(until, at("2026-11-30T14:45:00Z"));
    // Consecutive blocked ranges touch but never overlap.
    assert_eq!(schedule.blocked(&slots[1]).0, until);
}

#[test]
fn holidays_have_no_slots() {
    let schedule = schedule(&json!({
        "rules": [{"day": "fri", "open": "09:00", "close": "10:00"}],
        "holidays": ["2026-12-25"]
    }));
    let slots = schedule.slots(at("2026-12-20T00:00:00Z"), at("2027-01-03T00:00:00Z"));
    // Two Fridays, two slots each; the 25th is skipped.
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert!(
        slots
            .iter()
            .all(|slot| slot.starts_at.date_naive()
                != NaiveDate::from_ymd_opt(2026, 12, 25).unwrap())
    );
}

#[test]
fn a_local_time_missing_at_the_dst_change_is_skipped_and_a_repeated_one_taken_once() {
    // 2026-03-08: New York clocks jump from 02:00 to 03:00.
    let schedule = schedule(&json!({
        "rules": [{"day": "sun", "open": "01:00", "close": "04:00"}],
        "slot_minutes": 60
    }));
    let slots = schedule.slots(at("2026-03-08T00:00:00Z"), at("2026-03-09T00:00:00Z"));
    assert_eq!(starts(&slots), ["Sun 01:00", "Sun 03:00"]);
    // 2026-11-01: 01:00-02:00 happens twice; the slot starts at the first one.
    let slots = schedule.slots(at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"));
    assert_eq!(slots[0].starts_at, at("2026-11-01T05:00:00Z"));
    assert_eq!(slots.len(), 3);
}

#[test]
fn a_slot_is_found_only_at_its_exact_start() {
    let schedule = schedule(&json!({"rules": [{"day": "mon", "open": "09:00", "close": "10:00"}]}));
    assert!(schedule.slot_at(at("2026-11-30T14:30:00Z")).is_some());
    assert!(schedule.slot_at(at("2026-11-30T14:37:00Z")).is_none());
    assert!(schedule.slot_at(at("2026-12-01T14:30:00Z")).is_none());
}

#[test]
fn business_hours_are_the_default_rules_and_bad_settings_name_their_field() {
    let hours = [DayHours {
        day: Weekday::Sat,
        open: "10:00".to_owned(),
        close: "11:00".to_owned(),
    }];
    let schedule = Schedule::parse(New_York, None, &hours).unwrap();
    let slots = schedule.slots(at("2026-11-28T00:00:00Z"), at("2026-11-29T00:00:00Z"));
    assert_eq!(starts(&slots), ["Sat 10:00", "Sat 10:30"]);
    for (settings, field) in [
        (json!({"slot_minutes": 2}), "slot_minutes"),
        (json!({"capacity": 0}), "capacity"),
        (json!({"buffer_after_minutes": -1}), "buffer_after_minutes"),
        (
            json!({"rules": [{"day": "mon", "open": "10:00", "close": "09:00"}]}),
            "rules[0]",
        ),
        (json!({"holidays": ["someday"]}), "providers.static"),
        (json!({"colour": "blue"}), "providers.static"),
    ] {
        let error = Schedule::parse(New_York, Some(&settings), &[]).unwrap_err();
        assert!(error.contains(field), "{error} should name {field}");
    }
}
