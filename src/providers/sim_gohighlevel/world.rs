//! The simulated HighLevel data: locations with their contacts, custom fields, notes,
//! pipelines and opportunities, calendars and appointments, conversations; and the tokens
//! that reach them. Pure state and rules, no HTTP: `handlers` turns requests into calls here.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveTime, SecondsFormat, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// Returns a new 20-character alphanumeric id, like HighLevel's.
pub(super) fn new_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(20);
    id
}

/// Formats an instant as HighLevel does in record dates (`2021-07-02T05:18:26.704Z`).
pub(super) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A custom field of a location.
#[derive(Clone, Debug)]
pub(super) struct CustomField {
    pub(super) id: String,
    pub(super) name: String,
    /// `contact.<key>`.
    pub(super) field_key: String,
}

impl CustomField {
    /// Returns true when `key` names this field, with or without the `contact.` prefix.
    pub(super) fn answers_to(&self, key: &str) -> bool {
        self.field_key == key || self.field_key.strip_prefix("contact.") == Some(key)
    }
}

/// A contact.
#[derive(Clone, Debug, Default)]
pub(super) struct Contact {
    pub(super) id: String,
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) dnd: bool,
    /// `dndSettings.Call.status`, when set.
    pub(super) dnd_call: Option<String>,
    pub(super) tags: Vec<String>,
    /// Values by custom field id, as written.
    pub(super) custom: BTreeMap<String, Value>,
    pub(super) added: DateTime<Utc>,
    pub(super) updated: DateTime<Utc>,
}

impl Contact {
    /// Returns the contact in `GetContectByIdSchema`'s shape (custom fields as `{id, value}`).
    pub(super) fn to_json(&self, location: &str) -> Value {
        let mut contact = Map::new();
        contact.insert("id".to_owned(), json!(self.id));
        contact.insert("locationId".to_owned(), json!(location));
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            contact.insert("name".to_owned(), json!(name));
        }
        let mut text = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                contact.insert(key.to_owned(), json!(value));
            }
        };
        text("firstName", &self.first_name);
        text("lastName", &self.last_name);
        text("email", &self.email);
        text(
            "emailLowerCase",
            &self.email.as_ref().map(|e| e.to_lowercase()),
        );
        text("phone", &self.phone);
        text("timezone", &self.timezone);
        contact.insert("dnd".to_owned(), json!(self.dnd));
        if let Some(status) = &self.dnd_call {
            contact.insert(
                "dndSettings".to_owned(),
                json!({"Call": {"status": status, "message": "", "code": ""}}),
            );
        }
        contact.insert("type".to_owned(), json!("lead"));
        contact.insert("source".to_owned(), json!("public api"));
        contact.insert("tags".to_owned(), json!(self.tags));
        contact.insert("dateAdded".to_owned(), json!(stamp(self.added)));
        contact.insert("dateUpdated".to_owned(), json!(stamp(self.updated)));
        let custom: Vec<Value> = self
            .custom
            .iter()
            .map(|(id, value)| json!({"id": id, "value": value}))
            .collect();
        contact.insert("customFields".to_owned(), Value::Array(custom));
        Value::Object(contact)
    }
}

/// A note on a contact.
#[derive(Clone, Debug)]
pub(super) struct Note {
    pub(super) id: String,
    pub(super) contact_id: String,
    pub(super) title: Option<String>,
    pub(super) body: String,
    pub(super) user_id: Option<String>,
    pub(super) added: DateTime<Utc>,
}

impl Note {
    /// Returns the note in `GetNoteSchema`'s shape.
    pub(super) fn to_json(&self) -> Value {
        let mut note = json!({
            "id": self.id,
            "body": self.body,
            "contactId": self.contact_id,
            "dateAdded": stamp(self.added),
        });
        if let Some(title) = &self.title {
            note["title"] = json!(title);
        }
        if let Some(user) = &self.user_id {
            note["userId"] = json!(user);
        }
        note
    }
}

/// A pipeline and its stage ids, in order.
#[derive(Clone, Debug)]
pub(super) struct Pipeline {
    pub(super) id: String,
    pub(super) stages: Vec<String>,
}

/// An opportunity (deal).
#[derive(Clone, Debug)]
pub(super) struct Opportunity {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) pipeline_id: String,
    pub(super) stage_id: String,
    pub(super) status: String,
    pub(super) contact_id: String,
    pub(super) created: DateTime<Utc>,
    pub(super) updated: DateTime<Utc>,
}

impl Opportunity {
    /// Returns the opportunity in `SearchOpportunitiesResponseSchema`'s shape.
    pub(super) fn to_json(&self, location: &str) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "pipelineId": self.pipeline_id,
            "pipelineStageId": self.stage_id,
            "status": self.status,
            "contactId": self.contact_id,
            "locationId": location,
            "source": "",
            "createdAt": stamp(self.created),
            "updatedAt": stamp(self.updated),
            "lastStageChangeAt": stamp(self.updated),
        })
    }
}

/// A calendar with weekly open hours; slots are back to back, `slot_minutes` long.
#[derive(Clone, Debug)]
pub(super) struct Calendar {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) timezone: Tz,
    pub(super) slot_minutes: u32,
    /// Open hours per weekday, in the calendar's zone.
    pub(super) open_hours: Vec<(Weekday, NaiveTime, NaiveTime)>,
}

impl Calendar {
    /// Returns the calendar in `CalendarDTO`'s shape.
    pub(super) fn to_json(&self, location: &str) -> Value {
        json!({
            "id": self.id,
            "locationId": location,
            "name": self.name,
            "calendarType": "event",
            "isActive": true,
            "slotDuration": self.slot_minutes,
            "slotDurationUnit": "mins",
            "slotInterval": self.slot_minutes,
            "slotIntervalUnit": "mins",
            "appoinmentPerSlot": 1,
        })
    }

    fn slot(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.slot_minutes))
    }
}

/// An appointment.
#[derive(Clone, Debug)]
pub(super) struct Appointment {
    pub(super) id: String,
    pub(super) calendar_id: String,
    pub(super) contact_id: String,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) status: String,
    pub(super) title: Option<String>,
    pub(super) assigned_user_id: Option<String>,
}

impl Appointment {
    /// Returns the appointment in `AppointmentSchemaResponse`'s shape, times in `zone`.
    pub(super) fn to_json(&self, location: &str, zone: Tz) -> Value {
        let mut appointment = json!({
            "id": self.id,
            "calendarId": self.calendar_id,
            "locationId": location,
            "contactId": self.contact_id,
            "startTime": self.start.with_timezone(&zone).to_rfc3339(),
            "endTime": self.end.with_timezone(&zone).to_rfc3339(),
            "appointmentStatus": self.status,
            "address": "",
            "isRecurring": false,
        });
        if let Some(title) = &self.title {
            appointment["title"] = json!(title);
        }
        if let Some(user) = &self.assigned_user_id {
            appointment["assignedUserId"] = json!(user);
        }
        appointment
    }

    fn holds_time(&self) -> bool {
        self.status != "cancelled" && self.status != "invalid"
    }
}

/// A conversation and the altIds of the calls logged in it, with their message ids.
#[derive(Clone, Debug)]
pub(super) struct Conversation {
    pub(super) id: String,
    pub(super) contact_id: String,
    pub(super) added: DateTime<Utc>,
    pub(super) calls: Vec<(Option<String>, String)>,
}

/// One location (sub-account).
#[derive(Clone, Debug)]
pub(super) struct Location {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) timezone: Tz,
    pub(super) contacts: BTreeMap<String, Contact>,
    pub(super) custom_fields: Vec<CustomField>,
    pub(super) notes: Vec<Note>,
    pub(super) pipelines: Vec<Pipeline>,
    pub(super) opportunities: BTreeMap<String, Opportunity>,
    pub(super) calendars: BTreeMap<String, Calendar>,
    pub(super) appointments: BTreeMap<String, Appointment>,
    pub(super) conversations: BTreeMap<String, Conversation>,
    /// The conversation provider ids calls may be logged with.
    pub(super) conversation_providers: Vec<String>,
}

impl Location {
    pub(super) fn new(id: &str, timezone: Tz) -> Self {
        Self {
            id: id.to_owned(),
            name: format!("Location {id}"),
            timezone,
            contacts: BTreeMap::new(),
            custom_fields: Vec::new(),
            notes: Vec::new(),
            pipelines: Vec::new(),
            opportunities: BTreeMap::new(),
            calendars: BTreeMap::new(),
            appointments: BTreeMap::new(),
            conversations: BTreeMap::new(),
            conversation_providers: Vec::new(),
        }
    }

    /// Returns the custom field `key` or `id` names.
    pub(super) fn field(&self, id: Option<&str>, key: Option<&str>) -> Option<&CustomField> {
        self.custom_fields.iter().find(|field| {
            id.is_some_and(|id| field.id == id) || key.is_some_and(|key| field.answers_to(key))
        })
    }

    /// Returns the contact an upsert merges into: by e-mail first (case-insensitive), then
    /// by phone (HighLevel's order when duplicates are allowed).
    pub(super) fn duplicate(&self, email: Option<&str>, phone: Option<&str>) -> Option<&Contact> {
        if let Some(email) = email.filter(|email| !email.is_empty()) {
            let found = self.contacts.values().find(|contact| {
                contact
                    .email
                    .as_deref()
                    .is_some_and(|known| known.eq_ignore_ascii_case(email))
            });
            if found.is_some() {
                return found;
            }
        }
        let digits = phone
            .map(phone_digits)
            .filter(|digits| !digits.is_empty())?;
        self.contacts.values().find(|contact| {
            contact
                .phone
                .as_deref()
                .is_some_and(|known| phone_digits(known) == digits)
        })
    }

    /// Returns the free slot starts of `calendar` in `[from, to]`, not before `now`, earliest
    /// first; `ignoring` an appointment (the one being moved).
    pub(super) fn free_slots(
        &self,
        calendar: &Calendar,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ignoring: Option<&str>,
    ) -> Vec<DateTime<Utc>> {
        let zone = calendar.timezone;
        let first_day = from.with_timezone(&zone).date_naive() - TimeDelta::days(1);
        let last_day = to.with_timezone(&zone).date_naive() + TimeDelta::days(1);
        let busy: Vec<&Appointment> = self
            .appointments
            .values()
            .filter(|appointment| {
                appointment.calendar_id == calendar.id
                    && appointment.holds_time()
                    && Some(appointment.id.as_str()) != ignoring
            })
            .collect();
        let mut slots = Vec::new();
        let mut day = first_day;
        while day <= last_day {
            for (weekday, open, close) in &calendar.open_hours {
                if *weekday != day.weekday() {
                    continue;
                }
                let mut at = *open;
                while at + calendar.slot() <= *close && at >= *open {
                    let Some(start) = zone.from_local_datetime(&day.and_time(at)).single() else {
                        at += calendar.slot();
                        continue;
                    };
                    let start = start.with_timezone(&Utc);
                    let end = start + calendar.slot();
                    let free = busy
                        .iter()
                        .all(|appointment| appointment.end <= start || end <= appointment.start);
                    if start >= from && start <= to && start >= now && free {
                        slots.push(start);
                    }
                    let next = at + calendar.slot();
                    if next <= at {
                        break; // wrapped past midnight
                    }
                    at = next;
                }
            }
            day += TimeDelta::days(1);
        }
        slots.sort();
        slots.dedup();
        slots
    }

    /// Returns true when `start` is a free slot of `calendar` (ignoring one appointment).
    pub(super) fn is_free(
        &self,
        calendar: &Calendar,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
        ignoring: Option<&str>,
    ) -> bool {
        self.free_slots(calendar, start, start, now, ignoring)
            .contains(&start)
    }
}

/// The digits of a phone number (`+1 512-555-0142` and `+15125550142` are the same phone).
pub(super) fn phone_digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// What a Bearer token grants.
#[derive(Clone, Debug)]
pub(super) struct Grant {
    pub(super) location: String,
    /// When an OAuth access token stops working; `None` for a Private Integration Token.
    pub(super) expires_at: Option<Instant>,
}

/// A location's request budget: a token bucket of `capacity` refilled over `interval`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) at: Instant,
}

/// Everything the simulator holds.
#[derive(Debug, Default)]
pub(super) struct World {
    pub(super) locations: BTreeMap<String, Location>,
    /// Bearer tokens (PITs and access tokens) → grant.
    pub(super) tokens: HashMap<String, Grant>,
    /// Refresh tokens → location; a used one is removed (rotation).
    pub(super) refresh_tokens: HashMap<String, String>,
    /// Authorization codes → location; single use.
    pub(super) codes: HashMap<String, String>,
    pub(super) buckets: HashMap<String, Bucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> Calendar {
        Calendar {
            id: "cal".to_owned(),
            name: "Consultations".to_owned(),
            timezone: chrono_tz::America::Chicago,
            slot_minutes: 30,
            open_hours: vec![(
                Weekday::Mon,
                NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
            )],
        }
    }

    #[test]
    fn slots_follow_open_hours_and_skip_held_times() {
        let mut location = Location::new("loc", chrono_tz::America::Chicago);
        let calendar = calendar();
        location
            .calendars
            .insert(calendar.id.clone(), calendar.clone());
        // Monday 2030-01-07, 09:00 Chicago = 15:00 UTC.
        let from = Utc.with_ymd_and_hms(2030, 1, 7, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2030, 1, 8, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
        let slots = location.free_slots(&calendar, from, to, now, None);
        assert_eq!(slots.len(), 4);
        assert_eq!(
            slots[0],
            Utc.with_ymd_and_hms(2030, 1, 7, 15, 0, 0).unwrap()
        );
        location.appointments.insert(
            "a".to_owned(),
            Appointment {
                id: "a".to_owned(),
                calendar_id: "cal".to_owned(),
                contact_id: "c".to_owned(),
                start: slots[1],
                end: slots[1] + TimeDelta::minutes(30),
                status: "confirmed".to_owned(),
                title: None,
                assigned_user_id: None,
            },
        );
        let after = location.free_slots(&calendar, from, to, now, None);
        assert_eq!(after.len(), 3);
        assert!(!after.contains(&slots[1]));
        assert!(location.is_free(&calendar, slots[1], now, Some("a")));
        assert!(!location.is_free(&calendar, slots[1] + TimeDelta::minutes(7), now, None));
    }

    #[test]
    fn duplicates_match_email_case_insensitively_then_phone_digits() {
        let mut location = Location::new("loc", chrono_tz::UTC);
        location.contacts.insert(
            "c1".to_owned(),
            Contact {
                id: "c1".to_owned(),
                email: Some("Ada@Example.com".to_owned()),
                phone: Some("+1 512-555-0142".to_owned()),
                ..Contact::default()
            },
        );
        assert!(location.duplicate(Some("ada@example.COM"), None).is_some());
        assert!(location.duplicate(None, Some("+15125550142")).is_some());
        assert!(
            location
                .duplicate(Some("x@example.com"), Some("+1999"))
                .is_none()
        );
    }
}
