//! Booking against calendars we hold (static schedules) over the real PostgreSQL: the calendar
//! conformance suite, no double booking under 100 concurrent agents, capacity, idempotency,
//! and the slot cache's invalidation.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use caller::booking::static_schedule::StaticSchedule;
use caller::booking::{
    BookingError, BookingRequest, Calendar, Calendars, SlotQuery, conformance,
    slot_cache::SlotCache,
};
use caller::crypto::Keyring;
use caller::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};
use caller::stages::converse::context::SessionContext;
use caller::stages::converse::tools::{CallScope, Tools};
use caller::store::calls::{self, NewCall};
use caller::tenancy::audit::Actor;
use caller::tenancy::directory::Directory;
use caller::tenancy::service;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use common::TestDatabase;
use serde_json::{Value, json};

const ZONE: chrono_tz::Tz = chrono_tz::America::Chicago;

async fn tenant(db: &TestDatabase, slug: &str, static_settings: Value) -> TenantId {
    let keyring = Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap();
    let request = serde_json::from_value(json!({
        "slug": slug,
        "name": "Booking Dental",
        "timezone": ZONE.name(),
        "configuration": {"calendar": "static", "providers": {"static": static_settings}},
    }))
    .unwrap();
    let mut tx = db.store.begin_platform().await.unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("test"), &keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    client.id
}

fn directory(db: &TestDatabase) -> Directory {
    Directory::new(db.store.clone(), None, Duration::from_secs(60))
}

/// Midnight UTC of next week's Monday: a week nothing else books.
fn next_monday() -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    let days = 7 - i64::from(today.weekday().num_days_from_monday());
    (today + TimeDelta::days(days + 7))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

fn weekdays() -> Value {
    json!([
        {"day": "mon", "open": "09:00", "close": "12:00"},
        {"day": "tue", "open": "09:00", "close": "12:00"},
        {"day": "wed", "open": "09:00", "close": "12:00"},
        {"day": "thu", "open": "09:00", "close": "12:00"},
        {"day": "fri", "open": "09:00", "close": "12:00"},
    ])
}

#[tokio::test]
async fn static_schedules_pass_the_calendar_conformance_suite() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db, "conformance-static", json!({"rules": weekdays()})).await;
    let schedule = StaticSchedule::new(db.store.clone(), directory(&db));
    conformance::run(&conformance::Subject {
        calendar: &schedule,
        tenant,
        zone: ZONE,
        week: next_monday(),
        contact: None,
        capacity: 1,
    })
    .await
    .unwrap();
    // And through the dispatcher, with its cache and ledger in front.
    let calendars = Calendars::new(db.store.clone(), directory(&db));
    conformance::run(&conformance::Subject {
        calendar: &calendars,
        tenant,
        zone: ZONE,
        week: next_monday() + TimeDelta::days(7),
        contact: None,
        capacity: 1,
    })
    .await
    .unwrap();
    conformance::queries_are_checked_at_the_edge().unwrap();
    db.drop_database().await;
}

/// `count` calls of distinct callers, each with a scope the tools can act in.
async fn callers(db: &TestDatabase, tenant: TenantId, count: usize) -> Vec<CallScope> {
    let mut scopes = Vec::new();
    let mut tx = db.store.begin_tenant(tenant).await.unwrap();
    for index in 0..count {
        let call = CallId::from_uuid(uuid::Uuid::now_v7());
        let to = PhoneNumber::parse(&format!("+1201555{:04}", 1000 + index)).unwrap();
        let from = PhoneNumber::parse("+15125550100").unwrap();
        calls::create_queued(
            &mut tx,
            &NewCall {
                id: call,
                tenant,
                to: &to,
                from: &from,
                crm_contact_id: None,
                lead: &json!({}),
                request_event_id: EventId::new_v7(),
            },
        )
        .await
        .unwrap();
        scopes.push(CallScope {
            tenant,
            call,
            attempt: AttemptId::from_uuid(uuid::Uuid::now_v7()),
            provider_call_id: format!("CA{index:032x}"),
            context: Arc::new(SessionContext {
                agent_id: "agent".to_owned(),
                variant: None,
                user_id: None,
                variables: BTreeMap::new(),
                first_message: None,
                language: None,
                prompt: None,
                voice_id: None,
                transfer: None,
                business_timezone: ZONE.name().to_owned(),
                phone: to.to_string(),
                lead_name: Some(format!("Caller {index}")),
                lead_timezone: Some("America/New_York".to_owned()),
                crm_contact_id: None,
                email: None,
            }),
        });
    }
    tx.commit().await.unwrap();
    scopes
}

fn tools(db: &TestDatabase, calendar: Arc<dyn Calendar>) -> Tools {
    Tools {
        calendar,
        leads: Arc::new(caller::booking::lead_updates::PendingLeadUpdates::new(
            db.store.clone(),
        )),
        store: db.store.clone(),
        directory: directory(db),
        http: caller::providers::http::client(),
        timeout: Duration::from_secs(60),
        public_base_url: "http://127.0.0.1:1".to_owned(),
    }
}

async fn book_concurrently(
    tools: &Tools,
    scopes: &[CallScope],
    start: DateTime<Utc>,
) -> Vec<Value> {
    let asks = scopes.iter().enumerate().map(|(index, scope)| {
        let tools = tools.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            let answer = tools
                .run(
                    &scope,
                    &format!("toolu_{index}"),
                    "book_appointment",
                    &json!({"start": start.to_rfc3339()}),
                )
                .await;
            serde_json::from_str::<Value>(&answer.result).unwrap()
        })
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

async fn booked_in_slot(db: &TestDatabase, tenant: TenantId, start: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM appointments \
         WHERE tenant_id = $1 AND starts_at = $2 AND status = 'booked'",
    )
    .bind(tenant.as_uuid())
    .bind(start)
    .fetch_one(&db.observer)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_hundred_agents_booking_one_slot_make_one_booking_and_the_rest_get_alternatives() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db, "hundred-agents", json!({"rules": weekdays()})).await;
    let calendars = Calendars::new(db.store.clone(), directory(&db));
    let tools = tools(&db, Arc::new(calendars.clone()));
    let now = Utc::now();
    let query = SlotQuery::new(
        next_monday(),
        next_monday() + TimeDelta::days(7),
        1,
        ZONE,
        now,
    )
    .unwrap();
    let slot = calendars.free_slots(tenant, query).await.unwrap()[0].clone();
    let scopes = callers(&db, tenant, 100).await;

    let answers = book_concurrently(&tools, &scopes, slot.starts_at).await;

    let booked: Vec<&Value> = answers
        .iter()
        .filter(|answer| answer["booked"] == true)
        .collect();
    assert_eq!(booked.len(), 1, "exactly one booking: {booked:?}");
    // The winner hears the time in its own zone (the lead's, not the business's).
    assert!(
        booked[0]["start"].as_str().unwrap().ends_with("-05:00")
            || booked[0]["start"].as_str().unwrap().ends_with("-04:00"),
        "{}",
        booked[0]["start"]
    );
    for answer in answers.iter().filter(|answer| answer["booked"] != true) {
        assert_eq!(answer["booked"], false, "{answer}");
        let alternatives = answer["alternatives"].as_array().unwrap();
        assert!(
            !alternatives.is_empty(),
            "no alternatives offered: {answer}"
        );
        assert!(
            alternatives
                .iter()
                .all(|alternative| alternative["start"] != booked[0]["start"]),
            "the taken slot was offered again: {answer}"
        );
    }
    assert_eq!(booked_in_slot(&db, tenant, slot.starts_at).await, 1);
    db.drop_database().await;
}

#[tokio::test]
async fn a_slot_with_capacity_takes_that_many_bookings_and_buffers_block_neighbours() {
    let db = TestDatabase::create().await;
    let tenant = tenant(
        &db,
        "two-chairs",
        json!({"rules": weekdays(), "capacity": 2, "slot_minutes": 30, "buffer_after_minutes": 15}),
    )
    .await;
    let calendars = Calendars::new(db.store.clone(), directory(&db));
    let tools = tools(&db, Arc::new(calendars.clone()));
    let query = SlotQuery::new(
        next_monday(),
        next_monday() + TimeDelta::days(7),
        3,
        ZONE,
        Utc::now(),
    )
    .unwrap();
    let slots = calendars.free_slots(tenant, query).await.unwrap();
    // Slots are spaced by slot + buffer.
    assert_eq!(
        slots[1].starts_at - slots[0].starts_at,
        TimeDelta::minutes(45)
    );
    let scopes = callers(&db, tenant, 20).await;

    let answers = book_concurrently(&tools, &scopes, slots[0].starts_at).await;

    let booked = answers
        .iter()
        .filter(|answer| answer["booked"] == true)
        .count();
    assert_eq!(booked, 2, "{answers:?}");
    assert_eq!(booked_in_slot(&db, tenant, slots[0].starts_at).await, 2);
    // Full now: no longer offered (the cache was dropped by the bookings).
    let after = calendars.free_slots(tenant, query).await.unwrap();
    assert!(
        after
            .iter()
            .all(|slot| slot.starts_at != slots[0].starts_at)
    );
    db.drop_database().await;
}

#[tokio::test]
async fn the_same_lead_and_slot_is_the_same_booking() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db, "same-lead", json!({"rules": weekdays()})).await;
    let calendars = Calendars::new(db.store.clone(), directory(&db));
    let query = SlotQuery::new(
        next_monday(),
        next_monday() + TimeDelta::days(7),
        1,
        ZONE,
        Utc::now(),
    )
    .unwrap();
    let slot = calendars.free_slots(tenant, query).await.unwrap()[0].clone();
    let request = |key: &str| BookingRequest {
        tenant,
        call: None,
        starts_at: slot.starts_at,
        zone: ZONE,
        name: Some("Jane Doe".to_owned()),
        phone: Some(PhoneNumber::parse("+15125550142").unwrap()),
        email: None,
        contact: None,
        notes: None,
        idempotency_key: key.to_owned(),
    };
    let first = calendars.book(request("first-call:toolu_1")).await.unwrap();
    // A retried tool call, and the same lead asking again on a later call.
    let retried = calendars.book(request("first-call:toolu_1")).await.unwrap();
    let again = calendars
        .book(request("second-call:toolu_9"))
        .await
        .unwrap();
    assert_eq!(retried, first);
    assert_eq!(again, first);
    assert_eq!(booked_in_slot(&db, tenant, slot.starts_at).await, 1);
    // Someone else cannot.
    let other = BookingRequest {
        phone: Some(PhoneNumber::parse("+15125550143").unwrap()),
        ..request("third-call:toolu_2")
    };
    assert!(matches!(
        calendars.book(other).await,
        Err(BookingError::Unavailable(_))
    ));
    db.drop_database().await;
}

#[tokio::test]
async fn a_cached_slot_list_is_dropped_when_this_process_books() {
    let db = TestDatabase::create().await;
    let tenant = tenant(&db, "cache-drop", json!({"rules": weekdays()})).await;
    let calendars = Calendars::new(db.store.clone(), directory(&db))
        .with_cache(SlotCache::new(Duration::from_secs(600), 100));
    let query = SlotQuery::new(
        next_monday(),
        next_monday() + TimeDelta::days(7),
        2,
        ZONE,
        Utc::now(),
    )
    .unwrap();
    let before = calendars.free_slots(tenant, query).await.unwrap();
    // Booked behind the cache's back (another process): still offered from the cache...
    let direct = StaticSchedule::new(db.store.clone(), directory(&db));
    let request = BookingRequest {
        tenant,
        call: None,
        starts_at: before[0].starts_at,
        zone: ZONE,
        name: None,
        phone: Some(PhoneNumber::parse("+15125550142").unwrap()),
        email: None,
        contact: None,
        notes: None,
        idempotency_key: "elsewhere".to_owned(),
    };
    direct.book(request.clone()).await.unwrap();
    assert_eq!(calendars.free_slots(tenant, query).await.unwrap(), before);
    // ...but never double-booked, and gone once this process learns of it.
    let mine = BookingRequest {
        phone: Some(PhoneNumber::parse("+15125550143").unwrap()),
        idempotency_key: "mine".to_owned(),
        ..request
    };
    assert!(matches!(
        calendars.book(mine).await,
        Err(BookingError::Unavailable(_))
    ));
    let after = calendars.free_slots(tenant, query).await.unwrap();
    assert_ne!(after[0], before[0]);
    db.drop_database().await;
}

/// A tenant whose calendar is its HighLevel location's, on a simulator.
async fn highlevel_tenant(
    db: &TestDatabase,
) -> (
    TenantId,
    Calendars,
    caller::providers::sim_gohighlevel::GoHighLevelSimState,
    tokio::task::JoinHandle<()>,
) {
    use caller::providers::sim_gohighlevel::{GoHighLevelSimState, spawn};
    let keyring = Arc::new(Keyring::from_parts("k1", [("k1", [7u8; 32])]).unwrap());
    let sim = GoHighLevelSimState::new("client", "secret");
    let (addr, task) = spawn(sim.clone()).await;
    let seed = sim.add_location("locBooking0000000001", ZONE);
    sim.add_private_token(&seed.location_id, "pit-booking");
    let request = serde_json::from_value(json!({
        "slug": "highlevel-booking",
        "name": "Booking Dental",
        "timezone": ZONE.name(),
        "configuration": {"crm": "gohighlevel", "calendar": "crm", "providers": {"gohighlevel": {
            "base_url": format!("http://{addr}"),
            "location_id": seed.location_id,
            "calendar_id": seed.calendar_id,
        }}},
        "credentials": {"gohighlevel.private_token": {"value": "pit-booking"}},
    }))
    .unwrap();
    let mut tx = db.store.begin_platform().await.unwrap();
    let client = service::onboard(&mut tx, &Actor::operator("test"), &keyring, request)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let directory = Directory::new(
        db.store.clone(),
        Some(Arc::clone(&keyring)),
        Duration::from_secs(60),
    );
    let adapter = Arc::new(caller::crm::gohighlevel::GoHighLevel::new(
        db.store.clone(),
        directory.clone(),
        keyring,
        caller::settings::GoHighLevelSettings::default(),
    ));
    let calendars = Calendars::new(db.store.clone(), directory).with("gohighlevel", adapter);
    (client.id, calendars, sim, task)
}

#[tokio::test]
async fn a_hundred_agents_booking_one_highlevel_slot_make_one_appointment_there() {
    let db = TestDatabase::create().await;
    let (tenant, calendars, sim, _task) = highlevel_tenant(&db).await;
    let tools = tools(&db, Arc::new(calendars.clone()));
    let query = SlotQuery::new(
        next_monday(),
        next_monday() + TimeDelta::days(7),
        1,
        ZONE,
        Utc::now(),
    )
    .unwrap();
    let slot = calendars.free_slots(tenant, query).await.unwrap()[0].clone();
    let scopes = callers(&db, tenant, 100).await;

    let answers = book_concurrently(&tools, &scopes, slot.starts_at).await;

    let booked = answers
        .iter()
        .filter(|answer| answer["booked"] == true)
        .count();
    assert_eq!(booked, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|answer| answer["booked"] != true)
            .all(|answer| answer["alternatives"]
                .as_array()
                .is_some_and(|slots| !slots.is_empty())),
        "every other agent is offered alternatives: {answers:?}"
    );
    // One appointment at the vendor, one row in our ledger.
    assert_eq!(sim.counters().appointments_booked, 1);
    assert_eq!(booked_in_slot(&db, tenant, slot.starts_at).await, 1);
    // The winner asking again (a retried tool call) gets the same appointment, not a second.
    let winner = answers
        .iter()
        .position(|answer| answer["booked"] == true)
        .unwrap();
    let again = book_concurrently(&tools, &scopes[winner..=winner], slot.starts_at).await;
    assert_eq!(
        again[0]["appointment_id"],
        answers[winner]["appointment_id"]
    );
    assert_eq!(sim.counters().appointments_booked, 1);
    db.drop_database().await;
}
