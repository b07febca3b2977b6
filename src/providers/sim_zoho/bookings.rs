//! Zoho Bookings (`protocols/crm-calendar.md` B.7; no official spec exists): `GET
//! availableslots`, `POST appointment`, `POST rescheduleappointment`, `POST
//! updateappointment` (`action=cancel`). Forms are `multipart/form-data` (urlencoded is
//! accepted too). Weekdays offer slots from `opens` to `closes`; a booked slot is no longer
//! offered and cannot be booked again. Failures answer `returnvalue.status: failure` with a
//! message (the real failure shape is UNCONFIRMED).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Weekday};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::{Appointment, OrgId, ZohoSimState, body_value};

fn success(returned: Value) -> Response {
    let mut answer = json!({"response": {"status": "success"}});
    answer["response"]["returnvalue"] = returned;
    Json(answer).into_response()
}

fn failure(message: &str) -> Response {
    success(json!({"status": "failure", "message": message}))
}

/// The local starts `date` offers, booked ones included.
fn day_slots(state: &ZohoSimState, date: NaiveDate) -> Vec<NaiveDateTime> {
    let bookings = &state.config().bookings;
    if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        return Vec::new();
    }
    let step = TimeDelta::minutes(i64::from(bookings.slot_minutes.max(1)));
    let mut slots = Vec::new();
    let mut start = date.and_time(bookings.opens);
    while start + step <= date.and_time(bookings.closes) {
        slots.push(start);
        start += step;
    }
    slots
}

/// The starts still free on `date` (`except` is an appointment being moved).
fn free(
    state: &ZohoSimState,
    org: &str,
    date: NaiveDate,
    except: Option<&str>,
) -> Vec<NaiveDateTime> {
    let taken: Vec<NaiveDateTime> = state
        .lock()
        .orgs
        .get(org)
        .map(|org| {
            org.appointments
                .iter()
                .filter(|(id, appointment)| !appointment.cancelled && Some(id.as_str()) != except)
                .map(|(_, appointment)| appointment.start)
                .collect()
        })
        .unwrap_or_default();
    day_slots(state, date)
        .into_iter()
        .filter(|slot| !taken.contains(slot))
        .collect()
}

pub(super) async fn available(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let bookings = &state.config().bookings;
    if query.get("service_id") != Some(&bookings.service_id)
        || query.get("staff_id") != Some(&bookings.staff_id)
    {
        return failure("Invalid service or staff");
    }
    let Some(date) = query
        .get("selected_date")
        .and_then(|date| NaiveDate::parse_from_str(date, "%d-%b-%Y").ok())
    else {
        return failure("Invalid date format");
    };
    let zone = bookings.time_zone.name();
    let slots: Vec<String> = free(&state, &org, date, None)
        .iter()
        .map(|slot| slot.format("%I:%M %p").to_string())
        .collect();
    if slots.is_empty() {
        return success(
            json!({"reponse": false, "data": "Slots Not Available", "time_zone": zone}),
        );
    }
    success(json!({"reponse": true, "data": slots, "time_zone": zone}))
}

pub(super) async fn post(
    State(state): State<ZohoSimState>,
    Extension(OrgId(org)): Extension<OrgId>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = body_value(&headers, &body).unwrap_or_default();
    let field = |name: &str| form.get(name).and_then(Value::as_str).map(str::to_owned);
    match endpoint.as_str() {
        "appointment" => book(&state, &org, &field),
        "rescheduleappointment" => reschedule(&state, &org, &field),
        "updateappointment" => update(&state, &org, &field),
        _ => failure("Invalid URL"),
    }
}

/// A local time in `zone` read as the workspace's local time.
fn workspace_time(state: &ZohoSimState, text: &str, zone: Tz) -> Option<NaiveDateTime> {
    let local = NaiveDateTime::parse_from_str(text, "%d-%b-%Y %H:%M:%S").ok()?;
    let instant = zone.from_local_datetime(&local).earliest()?;
    Some(
        instant
            .with_timezone(&state.config().bookings.time_zone)
            .naive_local(),
    )
}

fn returned(state: &ZohoSimState, id: &str, appointment: &Appointment) -> Value {
    let bookings = &state.config().bookings;
    let end = appointment.start + TimeDelta::minutes(i64::from(bookings.slot_minutes));
    json!({
        "booking_id": id,
        "service_id": bookings.service_id,
        "staff_id": bookings.staff_id,
        "start_time": appointment.start.format("%d-%b-%Y %H:%M:%S").to_string(),
        "end_time": end.format("%d-%b-%Y %H:%M:%S").to_string(),
        "time_zone": bookings.time_zone.name(),
        "customer_name": appointment.customer.get("name"),
        "status": if appointment.cancelled { "cancel" } else { "upcoming" },
    })
}

fn book(state: &ZohoSimState, org: &str, field: &dyn Fn(&str) -> Option<String>) -> Response {
    let bookings = &state.config().bookings;
    if field("service_id").as_ref() != Some(&bookings.service_id)
        || field("staff_id").as_ref() != Some(&bookings.staff_id)
    {
        return failure("Invalid service or staff");
    }
    let zone = field("timezone")
        .and_then(|zone| zone.parse::<Tz>().ok())
        .unwrap_or(bookings.time_zone);
    let Some(start) = field("from_time").and_then(|time| workspace_time(state, &time, zone)) else {
        return failure("Invalid from_time");
    };
    let customer: Option<Value> =
        field("customer_details").and_then(|text| serde_json::from_str(&text).ok());
    let Some(customer) =
        customer.filter(|customer| customer.get("name").is_some_and(Value::is_string))
    else {
        return failure("Invalid customer_details");
    };
    if !free(state, org, start.date(), None).contains(&start) {
        return failure("Slot Not Available");
    }
    let mut inner = state.lock();
    inner.next_id += 1;
    let id = format!("#ZB-{:05}", inner.next_id % 100_000);
    let appointment = Appointment {
        start,
        cancelled: false,
        customer,
    };
    let answer = returned(state, &id, &appointment);
    inner
        .orgs
        .entry(org.to_owned())
        .or_default()
        .appointments
        .insert(id, appointment);
    inner.counters.appointments_booked += 1;
    drop(inner);
    success(answer)
}

fn reschedule(state: &ZohoSimState, org: &str, field: &dyn Fn(&str) -> Option<String>) -> Response {
    let Some(id) = field("booking_id") else {
        return failure("Invalid booking id");
    };
    let zone = state.config().bookings.time_zone;
    let Some(start) = field("start_time").and_then(|time| workspace_time(state, &time, zone))
    else {
        return failure("Invalid start_time");
    };
    let known = state
        .lock()
        .orgs
        .get(org)
        .and_then(|org| org.appointments.get(&id))
        .is_some_and(|appointment| !appointment.cancelled);
    if !known {
        return failure("Invalid booking id");
    }
    if !free(state, org, start.date(), Some(&id)).contains(&start) {
        return failure("Slot Not Available");
    }
    let mut inner = state.lock();
    let Some(appointment) = inner
        .orgs
        .get_mut(org)
        .and_then(|org| org.appointments.get_mut(&id))
    else {
        return failure("Invalid booking id");
    };
    appointment.start = start;
    let appointment = appointment.clone();
    inner.counters.appointments_rescheduled += 1;
    drop(inner);
    success(returned(state, &id, &appointment))
}

fn update(state: &ZohoSimState, org: &str, field: &dyn Fn(&str) -> Option<String>) -> Response {
    let (Some(id), Some(action)) = (field("booking_id"), field("action")) else {
        return failure("Invalid booking id");
    };
    let mut inner = state.lock();
    let Some(appointment) = inner
        .orgs
        .get_mut(org)
        .and_then(|org| org.appointments.get_mut(&id))
        .filter(|appointment| !appointment.cancelled)
    else {
        return failure("Invalid booking id");
    };
    match action.as_str() {
        "cancel" => appointment.cancelled = true,
        "completed" | "noshow" => {}
        _ => return failure("Invalid action"),
    }
    let appointment = appointment.clone();
    if action == "cancel" {
        inner.counters.appointments_cancelled += 1;
    }
    drop(inner);
    success(returned(state, &id, &appointment))
}
