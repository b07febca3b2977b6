//! The API routes of the HighLevel simulator. Each runs after the gate admitted the request
//! (`Version`, token, rate limit) and reads the parsed body and query from [`Caller`].

// NOTE: a refusal here is the answer itself (`Result<Response, Response>`, axum's idiom);
// boxing it would only add noise to a test double that is never on a hot path.
#![allow(clippy::result_large_err)]

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::world::{self, Appointment, Contact, Conversation, Location, Note, Opportunity};
use super::{Caller, GoHighLevelSimState, error, lock, unprocessable};

type Answer = Result<Response, Response>;

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Json(body)).into_response())
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("{what} not found"))
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "The token does not have access to this location",
    )
}

/// Refuses a request naming another location than its token's.
fn same_location(caller: &Caller, named: Option<&str>) -> Result<(), Response> {
    match named {
        Some(named) if named != caller.location => Err(forbidden()),
        _ => Ok(()),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

impl GoHighLevelSimState {
    /// Runs `change` on the caller's location.
    fn at<R>(
        &self,
        caller: &Caller,
        change: impl FnOnce(&mut Location) -> R,
    ) -> Result<R, Response> {
        let mut world = lock(&self.inner.world);
        let location = world
            .locations
            .get_mut(&caller.location)
            .ok_or_else(|| not_found("Location"))?;
        Ok(change(location))
    }
}

pub(super) async fn get_location(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(location_id): Path<String>,
) -> Answer {
    same_location(&caller, Some(&location_id))?;
    let body = sim.at(&caller, |location| {
        json!({"location": {
            "id": location.id,
            "name": location.name,
            "timezone": location.timezone.name(),
        }})
    })?;
    ok(StatusCode::OK, body)
}

pub(super) async fn custom_fields(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(location_id): Path<String>,
) -> Answer {
    same_location(&caller, Some(&location_id))?;
    let fields = sim.at(&caller, |location| {
        location
            .custom_fields
            .iter()
            .enumerate()
            .map(|(position, field)| {
                json!({
                    "id": field.id,
                    "name": field.name,
                    "fieldKey": field.field_key,
                    "dataType": "TEXT",
                    "position": position,
                    "locationId": location.id,
                    "model": "contact",
                })
            })
            .collect::<Vec<_>>()
    })?;
    ok(StatusCode::OK, json!({"customFields": fields}))
}

// --- contacts ---------------------------------------------------------------------------------

pub(super) async fn find_duplicate(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let Some(location_id) = caller.query.get("locationId") else {
        return Err(unprocessable(
            &["locationId should not be empty".to_owned()],
        ));
    };
    same_location(&caller, Some(location_id))?;
    let email = caller.query.get("email").map(String::as_str);
    let number = caller.query.get("number").map(String::as_str);
    let found = sim.at(&caller, |location| {
        location
            .duplicate(email, number)
            .map(|contact| contact.to_json(&location.id))
    })?;
    ok(
        StatusCode::OK,
        json!({"contact": found.unwrap_or(Value::Null)}),
    )
}

pub(super) async fn get_contact(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let found = sim.at(&caller, |location| {
        location
            .contacts
            .get(&contact_id)
            .map(|contact| contact.to_json(&location.id))
    })?;
    match found {
        Some(contact) => ok(StatusCode::OK, json!({"contact": contact})),
        None => Err(not_found("Contact")),
    }
}

/// Applies the writable fields of an upsert or update body to `contact`; returns the custom
/// field keys whose value changed.
fn apply_contact_fields(
    location: &Location,
    contact: &mut Contact,
    body: &Value,
) -> Result<Vec<String>, Response> {
    let set = |key: &str, target: &mut Option<String>| match body.get(key) {
        Some(Value::String(value)) => *target = Some(value.clone()),
        Some(Value::Null) => *target = None,
        _ => {}
    };
    set("firstName", &mut contact.first_name);
    set("lastName", &mut contact.last_name);
    set("email", &mut contact.email);
    set("phone", &mut contact.phone);
    set("timezone", &mut contact.timezone);
    if let Some(dnd) = body.get("dnd").and_then(Value::as_bool) {
        contact.dnd = dnd;
    }
    if let Some(tags) = body.get("tags").and_then(Value::as_array) {
        // NOTE: like HighLevel, tags in a contact write replace every tag.
        contact.tags = tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    let mut changed = Vec::new();
    let Some(fields) = body.get("customFields") else {
        return Ok(changed);
    };
    let Some(fields) = fields.as_array() else {
        return Err(unprocessable(&["customFields must be an array".to_owned()]));
    };
    for (index, entry) in fields.iter().enumerate() {
        let Some(field) = location.field(text(entry, "id"), text(entry, "key")) else {
            return Err(unprocessable(&[format!(
                "customFields.{index} must name an existing custom field by id or key"
            )]));
        };
        // NOTE: `field_value` is the documented write key; `value` (the read key) is accepted.
        let Some(value) = entry.get("field_value").or_else(|| entry.get("value")) else {
            return Err(unprocessable(&[format!(
                "customFields.{index}.field_value should not be empty"
            )]));
        };
        if contact.custom.get(&field.id) != Some(value) {
            changed.push(field.field_key.clone());
        }
        contact.custom.insert(field.id.clone(), value.clone());
    }
    Ok(changed)
}

pub(super) async fn upsert_contact(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let body = &caller.body;
    let Some(location_id) = text(body, "locationId") else {
        return Err(unprocessable(
            &["locationId should not be empty".to_owned()],
        ));
    };
    same_location(&caller, Some(location_id))?;
    let (created, contact, changed) = sim.at(&caller, |location| {
        let existing = location
            .duplicate(text(body, "email"), text(body, "phone"))
            .cloned();
        let created = existing.is_none();
        let now = Utc::now();
        let mut contact = existing.unwrap_or_else(|| Contact {
            id: world::new_id(),
            added: now,
            ..Contact::default()
        });
        let changed = apply_contact_fields(location, &mut contact, body)?;
        contact.updated = now;
        let answer = contact.to_json(&location.id);
        location.contacts.insert(contact.id.clone(), contact);
        Ok::<_, Response>((created, answer, changed))
    })??;
    sim.count_field_changes(changed);
    ok(
        StatusCode::OK,
        json!({"new": created, "contact": contact, "traceId": uuid::Uuid::new_v4().to_string()}),
    )
}

pub(super) async fn update_contact(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let (contact, changed) = sim.at(&caller, |location| {
        let Some(mut contact) = location.contacts.get(&contact_id).cloned() else {
            return Err(not_found("Contact"));
        };
        let changed = apply_contact_fields(location, &mut contact, &caller.body)?;
        contact.updated = Utc::now();
        let answer = contact.to_json(&location.id);
        location.contacts.insert(contact.id.clone(), contact);
        Ok((answer, changed))
    })??;
    sim.count_field_changes(changed);
    // NOTE: `succeded` is HighLevel's spelling (UpdateContactsSuccessfulResponseDto).
    ok(
        StatusCode::OK,
        json!({"succeded": true, "contact": contact}),
    )
}

fn tags_of(body: &Value) -> Result<Vec<String>, Response> {
    body.get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .ok_or_else(|| unprocessable(&["tags must be an array".to_owned()]))
}

pub(super) async fn add_tags(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let tags = tags_of(&caller.body)?;
    let (all, added) = sim.at(&caller, |location| {
        let contact = location
            .contacts
            .get_mut(&contact_id)
            .ok_or_else(|| not_found("Contact"))?;
        let mut added = 0;
        for tag in tags {
            if !contact.tags.contains(&tag) {
                contact.tags.push(tag);
                added += 1;
            }
        }
        Ok::<_, Response>((contact.tags.clone(), added))
    })??;
    sim.count(|counters| counters.tags_added += added);
    ok(StatusCode::CREATED, json!({"tags": all}))
}

pub(super) async fn remove_tags(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let tags = tags_of(&caller.body)?;
    let (all, removed) = sim.at(&caller, |location| {
        let contact = location
            .contacts
            .get_mut(&contact_id)
            .ok_or_else(|| not_found("Contact"))?;
        let before = contact.tags.len();
        contact.tags.retain(|tag| !tags.contains(tag));
        Ok::<_, Response>((contact.tags.clone(), (before - contact.tags.len()) as u64))
    })??;
    sim.count(|counters| counters.tags_removed += removed);
    ok(StatusCode::OK, json!({"tags": all}))
}

pub(super) async fn add_note(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let Some(body) = text(&caller.body, "body").filter(|body| !body.is_empty()) else {
        return Err(unprocessable(&["body should not be empty".to_owned()]));
    };
    let note = sim.at(&caller, |location| {
        if !location.contacts.contains_key(&contact_id) {
            return Err(not_found("Contact"));
        }
        let note = Note {
            id: world::new_id(),
            contact_id: contact_id.clone(),
            title: text(&caller.body, "title").map(str::to_owned),
            body: body.to_owned(),
            user_id: text(&caller.body, "userId").map(str::to_owned),
            added: Utc::now(),
        };
        location.notes.push(note.clone());
        Ok(note.to_json())
    })??;
    sim.count(|counters| counters.notes_written += 1);
    ok(StatusCode::CREATED, json!({"note": note}))
}

pub(super) async fn list_notes(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(contact_id): Path<String>,
) -> Answer {
    let notes = sim.at(&caller, |location| {
        if !location.contacts.contains_key(&contact_id) {
            return Err(not_found("Contact"));
        }
        Ok(location
            .notes
            .iter()
            .rev()
            .filter(|note| note.contact_id == contact_id)
            .map(Note::to_json)
            .collect::<Vec<_>>())
    })??;
    ok(StatusCode::OK, json!({"notes": notes}))
}

// --- opportunities ----------------------------------------------------------------------------

const DEAL_STATUSES: &[&str] = &["open", "won", "lost", "abandoned"];

pub(super) async fn search_opportunities(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    // NOTE: this endpoint's query keys are snake_case, unlike every other one.
    let Some(location_id) = caller.query.get("location_id") else {
        return Err(unprocessable(&[
            "location_id should not be empty".to_owned()
        ]));
    };
    same_location(&caller, Some(location_id))?;
    let query = &caller.query;
    let found = sim.at(&caller, |location| {
        location
            .opportunities
            .values()
            .filter(|deal| {
                query
                    .get("contact_id")
                    .is_none_or(|id| *id == deal.contact_id)
            })
            .filter(|deal| {
                query
                    .get("pipeline_id")
                    .is_none_or(|id| *id == deal.pipeline_id)
            })
            .filter(|deal| {
                query
                    .get("status")
                    .is_none_or(|status| status == "all" || *status == deal.status)
            })
            .map(|deal| deal.to_json(&location.id))
            .collect::<Vec<_>>()
    })?;
    let total = found.len();
    ok(
        StatusCode::OK,
        json!({"opportunities": found, "meta": {"total": total, "currentPage": 1}}),
    )
}

/// Checks a deal's pipeline, stage and status; returns the stage to use.
fn deal_target(
    location: &Location,
    body: &Value,
    current: Option<&Opportunity>,
) -> Result<(String, String), Response> {
    let pipeline_id = text(body, "pipelineId")
        .map(str::to_owned)
        .or_else(|| current.map(|deal| deal.pipeline_id.clone()))
        .ok_or_else(|| unprocessable(&["pipelineId should not be empty".to_owned()]))?;
    let Some(pipeline) = location.pipelines.iter().find(|p| p.id == pipeline_id) else {
        return Err(error(StatusCode::BAD_REQUEST, "Pipeline not found"));
    };
    let stage = match text(body, "pipelineStageId") {
        Some(stage) if pipeline.stages.iter().any(|known| known == stage) => stage.to_owned(),
        Some(_) => return Err(error(StatusCode::BAD_REQUEST, "Pipeline stage not found")),
        None => match current {
            Some(deal) if deal.pipeline_id == pipeline_id => deal.stage_id.clone(),
            _ => pipeline.stages.first().cloned().unwrap_or_default(),
        },
    };
    if let Some(status) = text(body, "status")
        && !DEAL_STATUSES.contains(&status)
    {
        return Err(unprocessable(&[format!(
            "status must be one of the following values: {}",
            DEAL_STATUSES.join(", ")
        )]));
    }
    Ok((pipeline_id, stage))
}

pub(super) async fn create_opportunity(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let body = &caller.body;
    let mut missing = Vec::new();
    for key in ["pipelineId", "locationId", "name", "status", "contactId"] {
        if text(body, key).is_none() {
            missing.push(format!("{key} should not be empty"));
        }
    }
    if !missing.is_empty() {
        return Err(unprocessable(&missing));
    }
    same_location(&caller, text(body, "locationId"))?;
    let deal = sim.at(&caller, |location| {
        let (pipeline_id, stage_id) = deal_target(location, body, None)?;
        let contact_id = text(body, "contactId").unwrap_or_default().to_owned();
        if !location.contacts.contains_key(&contact_id) {
            return Err(not_found("Contact"));
        }
        let duplicate = location
            .opportunities
            .values()
            .any(|deal| deal.contact_id == contact_id && deal.pipeline_id == pipeline_id);
        if duplicate {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Can not create duplicate opportunity for the contact.",
            ));
        }
        let now = Utc::now();
        let deal = Opportunity {
            id: world::new_id(),
            name: text(body, "name").unwrap_or_default().to_owned(),
            pipeline_id,
            stage_id,
            status: text(body, "status").unwrap_or("open").to_owned(),
            contact_id,
            created: now,
            updated: now,
        };
        let answer = deal.to_json(&location.id);
        location.opportunities.insert(deal.id.clone(), deal);
        Ok(answer)
    })??;
    sim.count(|counters| counters.stage_changes += 1);
    ok(StatusCode::CREATED, json!({"opportunity": deal}))
}

pub(super) async fn update_opportunity(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let body = &caller.body;
    let (deal, moved) = sim.at(&caller, |location| {
        let Some(current) = location.opportunities.get(&id).cloned() else {
            return Err(not_found("Opportunity"));
        };
        let (pipeline_id, stage_id) = deal_target(location, body, Some(&current))?;
        let status = text(body, "status").unwrap_or(&current.status).to_owned();
        let moved = pipeline_id != current.pipeline_id
            || stage_id != current.stage_id
            || status != current.status;
        let deal = Opportunity {
            pipeline_id,
            stage_id,
            status,
            name: text(body, "name").unwrap_or(&current.name).to_owned(),
            updated: Utc::now(),
            ..current
        };
        let answer = deal.to_json(&location.id);
        location.opportunities.insert(deal.id.clone(), deal);
        Ok((answer, moved))
    })??;
    if moved {
        sim.count(|counters| counters.stage_changes += 1);
    }
    ok(StatusCode::OK, json!({"opportunity": deal}))
}

// --- calendars --------------------------------------------------------------------------------

pub(super) async fn get_calendar(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(calendar_id): Path<String>,
) -> Answer {
    let found = sim.at(&caller, |location| {
        location
            .calendars
            .get(&calendar_id)
            .map(|calendar| calendar.to_json(&location.id))
    })?;
    match found {
        Some(calendar) => ok(StatusCode::OK, json!({"calendar": calendar})),
        None => Err(not_found("Calendar")),
    }
}

fn millis(
    query: &std::collections::BTreeMap<String, String>,
    key: &str,
) -> Result<DateTime<Utc>, Response> {
    query
        .get(key)
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|ms| ms.is_finite())
        .and_then(|ms| {
            #[allow(clippy::cast_possible_truncation)]
            let whole = ms as i64;
            DateTime::from_timestamp_millis(whole)
        })
        .ok_or_else(|| unprocessable(&[format!("{key} must be a number (epoch milliseconds)")]))
}

pub(super) async fn free_slots(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(calendar_id): Path<String>,
) -> Answer {
    let start = millis(&caller.query, "startDate")?;
    let end = millis(&caller.query, "endDate")?;
    if end < start || end - start > TimeDelta::days(31) {
        return Err(unprocessable(&[
            "endDate must be after startDate and within 31 days of it".to_owned(),
        ]));
    }
    let asked_zone = match caller.query.get("timezone") {
        Some(name) => Some(
            name.parse::<Tz>()
                .map_err(|_| unprocessable(&["timezone must be a valid IANA zone".to_owned()]))?,
        ),
        None => None,
    };
    let answer = sim.at(&caller, |location| {
        let Some(calendar) = location.calendars.get(&calendar_id) else {
            return Err(not_found("Calendar"));
        };
        let zone = asked_zone.unwrap_or(calendar.timezone);
        let mut days = serde_json::Map::new();
        for slot in location.free_slots(calendar, start, end, Utc::now(), None) {
            let local = slot.with_timezone(&zone);
            let day = local.format("%Y-%m-%d").to_string();
            let entry = days.entry(day).or_insert_with(|| json!({"slots": []}));
            if let Some(slots) = entry["slots"].as_array_mut() {
                slots.push(json!(local.to_rfc3339()));
            }
        }
        // NOTE: not in the spec, but HighLevel sends it beside the days.
        days.insert(
            "traceId".to_owned(),
            json!(uuid::Uuid::new_v4().to_string()),
        );
        Ok(Value::Object(days))
    })??;
    ok(StatusCode::OK, answer)
}

fn parse_time(body: &Value, key: &str) -> Result<Option<DateTime<Utc>>, Response> {
    match text(body, key) {
        None => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|_| unprocessable(&[format!("{key} must be a valid ISO 8601 date string")])),
    }
}

fn slot_taken() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "The slot you have selected is no longer available.",
    )
}

pub(super) async fn book(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let body = &caller.body;
    let mut missing = Vec::new();
    for key in ["calendarId", "locationId", "contactId", "startTime"] {
        if text(body, key).is_none() {
            missing.push(format!("{key} should not be empty"));
        }
    }
    if !missing.is_empty() {
        return Err(unprocessable(&missing));
    }
    same_location(&caller, text(body, "locationId"))?;
    let start = parse_time(body, "startTime")?.unwrap_or_default();
    let end = parse_time(body, "endTime")?;
    let validate = !body
        .get("ignoreFreeSlotValidation")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let appointment = sim.at(&caller, |location| {
        let calendar_id = text(body, "calendarId").unwrap_or_default();
        let Some(calendar) = location.calendars.get(calendar_id).cloned() else {
            return Err(not_found("Calendar"));
        };
        let contact_id = text(body, "contactId").unwrap_or_default().to_owned();
        if !location.contacts.contains_key(&contact_id) {
            return Err(not_found("Contact"));
        }
        if validate && !location.is_free(&calendar, start, Utc::now(), None) {
            return Err(slot_taken());
        }
        let appointment = Appointment {
            id: world::new_id(),
            calendar_id: calendar.id.clone(),
            contact_id,
            start,
            end: end.unwrap_or(start + TimeDelta::minutes(i64::from(calendar.slot_minutes))),
            status: text(body, "appointmentStatus")
                .unwrap_or("confirmed")
                .to_owned(),
            title: text(body, "title").map(str::to_owned),
            assigned_user_id: text(body, "assignedUserId").map(str::to_owned),
        };
        let answer = appointment.to_json(&location.id, calendar.timezone);
        location
            .appointments
            .insert(appointment.id.clone(), appointment);
        Ok(answer)
    })??;
    sim.count(|counters| counters.appointments_booked += 1);
    ok(StatusCode::OK, appointment)
}

pub(super) async fn edit_appointment(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(event_id): Path<String>,
) -> Answer {
    let body = &caller.body;
    let start = parse_time(body, "startTime")?;
    let end = parse_time(body, "endTime")?;
    let validate = !body
        .get("ignoreFreeSlotValidation")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (appointment, moved, cancelled) = sim.at(&caller, |location| {
        let Some(current) = location.appointments.get(&event_id).cloned() else {
            return Err(not_found("Appointment"));
        };
        let calendar_id = text(body, "calendarId").unwrap_or(&current.calendar_id);
        let Some(calendar) = location.calendars.get(calendar_id).cloned() else {
            return Err(not_found("Calendar"));
        };
        let status = text(body, "appointmentStatus")
            .unwrap_or(&current.status)
            .to_owned();
        let new_start = start.unwrap_or(current.start);
        let moved = new_start != current.start || calendar.id != current.calendar_id;
        if moved
            && status != "cancelled"
            && validate
            && !location.is_free(&calendar, new_start, Utc::now(), Some(&event_id))
        {
            return Err(slot_taken());
        }
        let duration = current.end - current.start;
        let cancelled = status == "cancelled" && current.status != "cancelled";
        let updated = Appointment {
            calendar_id: calendar.id.clone(),
            start: new_start,
            end: end.unwrap_or(new_start + duration),
            status,
            title: text(body, "title")
                .map(str::to_owned)
                .or(current.title.clone()),
            ..current
        };
        let answer = updated.to_json(&location.id, calendar.timezone);
        location.appointments.insert(updated.id.clone(), updated);
        Ok((answer, moved, cancelled))
    })??;
    sim.count(|counters| {
        if moved {
            counters.appointments_rescheduled += 1;
        }
        if cancelled {
            counters.appointments_cancelled += 1;
        }
    });
    ok(StatusCode::OK, appointment)
}

pub(super) async fn get_appointment(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
    Path(event_id): Path<String>,
) -> Answer {
    let found = sim.at(&caller, |location| {
        let appointment = location.appointments.get(&event_id)?;
        let zone = location
            .calendars
            .get(&appointment.calendar_id)
            .map_or(location.timezone, |calendar| calendar.timezone);
        Some(appointment.to_json(&location.id, zone))
    })?;
    match found {
        Some(event) => ok(StatusCode::OK, json!({"event": event})),
        None => Err(not_found("Appointment")),
    }
}

// --- conversations ----------------------------------------------------------------------------

pub(super) async fn search_conversations(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let Some(location_id) = caller.query.get("locationId") else {
        return Err(unprocessable(
            &["locationId should not be empty".to_owned()],
        ));
    };
    same_location(&caller, Some(location_id))?;
    let contact_id = caller.query.get("contactId");
    let found = sim.at(&caller, |location| {
        location
            .conversations
            .values()
            .filter(|conversation| contact_id.is_none_or(|id| *id == conversation.contact_id))
            .map(|conversation| {
                let contact = location.contacts.get(&conversation.contact_id);
                let field =
                    |get: fn(&Contact) -> Option<String>| contact.and_then(get).unwrap_or_default();
                let name = field(|c| {
                    Some(format!(
                        "{} {}",
                        c.first_name.clone().unwrap_or_default(),
                        c.last_name.clone().unwrap_or_default()
                    ))
                })
                .trim()
                .to_owned();
                json!({
                    "id": conversation.id,
                    "contactId": conversation.contact_id,
                    "locationId": location.id,
                    "lastMessageBody": "",
                    "lastMessageType": "TYPE_CALL",
                    "type": "TYPE_PHONE",
                    "unreadCount": 0,
                    "fullName": name,
                    "contactName": name,
                    "email": field(|c| c.email.clone()),
                    "phone": field(|c| c.phone.clone()),
                })
            })
            .collect::<Vec<_>>()
    })?;
    let total = found.len();
    ok(
        StatusCode::OK,
        json!({"conversations": found, "total": total}),
    )
}

pub(super) async fn create_conversation(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let body = &caller.body;
    let (Some(location_id), Some(contact_id)) = (text(body, "locationId"), text(body, "contactId"))
    else {
        return Err(unprocessable(&[
            "locationId and contactId should not be empty".to_owned(),
        ]));
    };
    same_location(&caller, Some(location_id))?;
    let conversation = sim.at(&caller, |location| {
        if !location.contacts.contains_key(contact_id) {
            return Err(not_found("Contact"));
        }
        if location
            .conversations
            .values()
            .any(|conversation| conversation.contact_id == contact_id)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Conversation already exists",
            ));
        }
        let conversation = Conversation {
            id: world::new_id(),
            contact_id: contact_id.to_owned(),
            added: Utc::now(),
            calls: Vec::new(),
        };
        let at = world::stamp(conversation.added);
        let answer = json!({
            "id": conversation.id,
            "dateUpdated": at,
            "dateAdded": at,
            "deleted": false,
            "contactId": conversation.contact_id,
            "locationId": location.id,
            "lastMessageDate": at,
        });
        location
            .conversations
            .insert(conversation.id.clone(), conversation);
        Ok(answer)
    })??;
    ok(
        StatusCode::CREATED,
        json!({"success": true, "conversation": conversation}),
    )
}

pub(super) async fn log_call(
    State(sim): State<GoHighLevelSimState>,
    Extension(caller): Extension<Caller>,
) -> Answer {
    let body = &caller.body;
    if text(body, "type") != Some("Call") {
        return Err(unprocessable(&["type must be Call".to_owned()]));
    }
    let (Some(conversation_id), Some(provider)) = (
        text(body, "conversationId"),
        text(body, "conversationProviderId"),
    ) else {
        return Err(unprocessable(&[
            "conversationId and conversationProviderId should not be empty".to_owned(),
        ]));
    };
    let alt_id = text(body, "altId").map(str::to_owned);
    let (message_id, contact_id, fresh) = sim.at(&caller, |location| {
        if !location
            .conversation_providers
            .iter()
            .any(|known| known == provider)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "Conversation provider not found",
            ));
        }
        let Some(conversation) = location.conversations.get_mut(conversation_id) else {
            return Err(not_found("Conversation"));
        };
        // A call logged again under the same altId is the same message.
        if let Some((_, message)) = conversation
            .calls
            .iter()
            .find(|(known, _)| alt_id.is_some() && *known == alt_id)
        {
            return Ok((message.clone(), conversation.contact_id.clone(), false));
        }
        let message = world::new_id();
        conversation.calls.push((alt_id.clone(), message.clone()));
        Ok((message, conversation.contact_id.clone(), true))
    })??;
    if fresh {
        sim.count(|counters| counters.calls_logged += 1);
    }
    ok(
        StatusCode::OK,
        json!({
            "success": true,
            "conversationId": conversation_id,
            "messageId": message_id,
            "message": "Message added successfully",
            "contactId": contact_id,
            "dateAdded": world::stamp(Utc::now()),
        }),
    )
}

impl GoHighLevelSimState {
    fn count_field_changes(&self, keys: Vec<String>) {
        self.count(|counters| {
            for key in keys {
                *counters.field_changes.entry(key).or_default() += 1;
            }
        });
    }
}
