//! The CalDAV calendar against a real Radicale server (installed from PyPI by
//! `scripts/test.sh`, see `tests/common/radicale.rs`) and a real database: the calendar
//! conformance suite, retried bookings, slots taken by other clients of the calendar, refused
//! credentials and unusable settings.

mod common;
#[path = "common/radicale.rs"]
mod radicale;

use std::sync::Arc;
use std::time::Duration;

use caller::booking::caldav::{CalDav, appointment_id};
use caller::booking::conformance::{self, Subject};
use caller::booking::{BookingError, BookingRequest, Calendar as _, SlotQuery};
use caller::crypto::Keyring;
use caller::ids::{PhoneNumber, TenantId};
use caller::providers::error::ProviderError;
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{DateTime, Datelike as _, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use common::TestDatabase;
use serde_json::{Value, json};

const MASTER_KEY: [u8; 32] = [7u8; 32];
const ZONE: Tz = chrono_tz::Europe::Berlin;

fn keyring() -> Arc<Keyring> {
    Arc::new(Keyring::from_parts("k1", [("k1", MASTER_KEY)]).unwrap())
}

/// A database, a tenant whose calendar is `collection`, and the adapter.
struct Setup {
    db: TestDatabase,
    tenant: TenantId,
    calendar: CalDav,
}

impl Setup {
    async fn start(slug: &str, caldav: Value, password: &str) -> Self {
        caller::telemetry::init_for_tests();
        let db = TestDatabase::create().await;
        let request = json!({
            "slug": slug,
            "name": slug,
            "timezone": ZONE.name(),
            "configuration": {
                "calendar": "caldav",
                "business_hours": [
                    {"day": "mon", "open": "09:00", "close": "12:00"},
                    {"day": "tue", "open": "09:00", "close": "12:00"},
                    {"day": "wed", "open": "09:00", "close": "12:00"},
                    {"day": "thu", "open": "09:00", "close": "12:00"},
                    {"day": "fri", "open": "09:00", "close": "12:00"}
                ],
                "providers": {"caldav": caldav}
            },
            "credentials": {"caldav.password": {"value": password}}
        });
        let keyring = keyring();
        let mut tx = db.store.begin_platform().await.unwrap();
        let client = service::onboard(
            &mut tx,
            &Actor::operator("test"),
            &keyring,
            serde_json::from_value(request).unwrap(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let directory = Directory::new(db.store.clone(), None, Duration::from_secs(60));
        let calendar = CalDav::new(db.store.clone(), directory, keyring);
        Self {
            db,
            tenant: client.id,
            calendar,
        }
    }

    async fn finish(self) {
        self.db.drop_database().await;
    }
}

/// The settings of a calendar at `collection` reached as the test user.
fn settings(collection: &str) -> Value {
    json!({"url": collection, "username": radicale::USER, "slot_minutes": 30})
}

/// Monday 00:00 in the business's zone, one to two weeks ahead: wholly in the future.
fn next_week() -> DateTime<Utc> {
    let today = Utc::now().with_timezone(&ZONE).date_naive();
    let monday = today + TimeDelta::days(14 - i64::from(today.weekday().num_days_from_monday()));
    ZONE.from_local_datetime(&monday.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn request(tenant: TenantId, starts_at: DateTime<Utc>, key: &str) -> BookingRequest {
    BookingRequest {
        tenant,
        call: None,
        starts_at,
        zone: ZONE,
        name: Some("Ada Lovelace".to_owned()),
        phone: Some(PhoneNumber::parse("+4930901820").unwrap()),
        email: Some("ada@example.com".to_owned()),
        contact: None,
        notes: Some("wants a quote; mornings, please".to_owned()),
        idempotency_key: key.to_owned(),
    }
}

fn week_query(week: DateTime<Utc>) -> SlotQuery {
    SlotQuery::new(week, week + TimeDelta::days(7), 100, ZONE, Utc::now()).unwrap()
}

#[tokio::test]
async fn caldav_passes_the_calendar_conformance_suite() {
    let server = radicale::server().await;
    let collection = server.calendar("conformance").await;
    let setup = Setup::start(
        "caldav-conformance",
        settings(&collection),
        radicale::PASSWORD,
    )
    .await;
    conformance::run(&Subject {
        calendar: &setup.calendar,
        tenant: setup.tenant,
        zone: ZONE,
        week: next_week(),
        contact: None,
        capacity: 1,
    })
    .await
    .unwrap();
    conformance::queries_are_checked_at_the_edge().unwrap();
    setup.finish().await;
}

#[tokio::test]
async fn a_retried_booking_is_the_same_appointment() {
    let server = radicale::server().await;
    let collection = server.calendar("retries").await;
    let setup = Setup::start("caldav-retries", settings(&collection), radicale::PASSWORD).await;
    let week = next_week();
    let free = setup
        .calendar
        .free_slots(setup.tenant, week_query(week))
        .await
        .unwrap();
    let first = setup
        .calendar
        .book(request(setup.tenant, free[0].starts_at, "tool-call-7"))
        .await
        .unwrap();
    assert_eq!(
        first.appointment_id,
        appointment_id(setup.tenant, "tool-call-7")
    );

    // The same tool call again: its slot is busy with its own booking.
    let again = setup
        .calendar
        .book(request(setup.tenant, free[0].starts_at, "tool-call-7"))
        .await
        .unwrap();
    assert_eq!(again, first);

    // Moved meanwhile, the retry finds the slot free, its PUT meets 412 on the same resource,
    // and it answers with the appointment where it now is.
    let moved = setup
        .calendar
        .reschedule(setup.tenant, &first.appointment_id, free[4].starts_at)
        .await
        .unwrap();
    let retried = setup
        .calendar
        .book(request(setup.tenant, free[0].starts_at, "tool-call-7"))
        .await
        .unwrap();
    assert_eq!(retried, moved);
    let after = setup
        .calendar
        .free_slots(setup.tenant, week_query(week))
        .await
        .unwrap();
    assert!(after.iter().any(|slot| slot.starts_at == free[0].starts_at));
    assert!(after.iter().all(|slot| slot.starts_at != free[4].starts_at));

    // What the calendar holds: one event, in UTC, with CRLF lines and the request's details.
    let stored = server
        .get_event(&collection, &first.appointment_id)
        .await
        .unwrap();
    assert!(stored.contains(&format!(
        "DTSTART:{}\r\n",
        free[4].starts_at.format("%Y%m%dT%H%M%SZ")
    )));
    assert!(
        stored.contains("SUMMARY:Appointment: Ada Lovelace\r\n"),
        "{stored}"
    );
    assert!(stored.contains("SEQUENCE:1"), "{stored}");
    setup.finish().await;
}

#[tokio::test]
async fn a_slot_taken_directly_on_the_server_is_refused() {
    let server = radicale::server().await;
    let collection = server.calendar("taken").await;
    let setup = Setup::start("caldav-taken", settings(&collection), radicale::PASSWORD).await;
    let week = next_week();
    let free = setup
        .calendar
        .free_slots(setup.tenant, week_query(week))
        .await
        .unwrap();
    // Someone books 10:00–10:45 Berlin time from their phone, with a TZID (and the matching
    // VTIMEZONE), overlapping two of our slots.
    let taken = free[2].starts_at.with_timezone(&ZONE);
    let local = |at: DateTime<Tz>| at.format("%Y%m%dT%H%M%S").to_string();
    let ics = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//phone//EN",
        "BEGIN:VTIMEZONE",
        "TZID:Europe/Berlin",
        "BEGIN:STANDARD",
        "DTSTART:19701025T030000",
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
        "TZOFFSETFROM:+0200",
        "TZOFFSETTO:+0100",
        "END:STANDARD",
        "BEGIN:DAYLIGHT",
        "DTSTART:19700329T020000",
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        "TZOFFSETFROM:+0100",
        "TZOFFSETTO:+0200",
        "END:DAYLIGHT",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        "UID:phone-booking-1",
        "DTSTAMP:20250101T000000Z",
        &format!("DTSTART;TZID=Europe/Berlin:{}", local(taken)),
        &format!(
            "DTEND;TZID=Europe/Berlin:{}",
            local(taken + TimeDelta::minutes(45))
        ),
        "SUMMARY:Dentist",
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    .join("\r\n");
    assert_eq!(
        server.put_event(&collection, "phone-booking-1", &ics).await,
        201
    );

    let after = setup
        .calendar
        .free_slots(setup.tenant, week_query(week))
        .await
        .unwrap();
    for blocked in [&free[2], &free[3]] {
        assert!(
            after.iter().all(|slot| slot.starts_at != blocked.starts_at),
            "{blocked:?} is still offered"
        );
    }
    assert!(after.iter().any(|slot| slot.starts_at == free[4].starts_at));
    for slot in [&free[2], &free[3]] {
        match setup
            .calendar
            .book(request(setup.tenant, slot.starts_at, "tool-call-9"))
            .await
        {
            Err(BookingError::Unavailable(_)) => {}
            other => panic!("booking a slot taken on the server must be Unavailable: {other:?}"),
        }
    }
    // Rescheduling onto it is refused too.
    let booked = setup
        .calendar
        .book(request(setup.tenant, free[0].starts_at, "tool-call-10"))
        .await
        .unwrap();
    match setup
        .calendar
        .reschedule(setup.tenant, &booked.appointment_id, free[3].starts_at)
        .await
    {
        Err(BookingError::Unavailable(_)) => {}
        other => panic!("rescheduling onto a taken slot must be Unavailable: {other:?}"),
    }
    setup.finish().await;
}

#[tokio::test]
async fn refused_credentials_are_unauthorized() {
    let server = radicale::server().await;
    let collection = server.calendar("refused").await;
    let setup = Setup::start("caldav-refused", settings(&collection), "not-the-password").await;
    match setup
        .calendar
        .free_slots(setup.tenant, week_query(next_week()))
        .await
    {
        Err(BookingError::Provider(ProviderError::Unauthorized { reason })) => {
            assert!(!reason.contains("not-the-password"), "{reason}");
        }
        other => panic!("a wrong password must be Unauthorized, got {other:?}"),
    }
    setup.finish().await;
}

#[tokio::test]
async fn unusable_settings_are_refused_naming_the_field() {
    for (caldav, field) in [
        (json!({"username": "alice"}), "providers.caldav.url"),
        (
            json!({"url": "ftp://example.com/cal/", "username": "alice"}),
            "providers.caldav.url",
        ),
        (
            json!({"url": "https://example.com/cal/", "slot_minutes": 2}),
            "providers.caldav.slot_minutes",
        ),
        (
            json!({"url": "https://example.com/cal/", "hours": [{"day": "mon", "open": "10:00", "close": "09:00"}]}),
            "providers.caldav.hours[0].close",
        ),
    ] {
        let setup = Setup::start("caldav-unusable", caldav, "x").await;
        match setup
            .calendar
            .free_slots(setup.tenant, week_query(next_week()))
            .await
        {
            Err(BookingError::NotConfigured(message)) => {
                assert!(message.contains(field), "{message} does not name {field}");
            }
            other => panic!("bad settings must be NotConfigured, got {other:?}"),
        }
        setup.finish().await;
    }
}
