//! Agent tools, run by the converse worker: `get_available_slots`, `book_appointment`,
//! `update_lead`, `transfer_to_human`, `end_call`, `schedule_callback`.
//!
//! Every tool runs under a timeout and always answers: a failure, a timeout or an unknown tool
//! becomes an error result the agent can speak about ("I couldn't reach the calendar"), never
//! a hang. Results are JSON text, the shape the LLM reads.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::context::{SessionContext, speak_slots};
use crate::booking::{BookingError, BookingRequest, Calendar, LeadChange, LeadRecords, SlotQuery};
use crate::calls::window::CallingPolicy;
use crate::crm::ContactId;
use crate::events::lead_flow::{JobKind, LeadResolved};
use crate::ids::{AttemptId, CallId, EventId, PhoneNumber, TenantId};
use crate::providers::telephony::{CallInstructions, Telephony as _};
use crate::providers::twilio::Twilio;
use crate::store::Store;
use crate::store::scheduled_jobs::{self, NewJob};
use crate::tenancy::directory::Directory;

/// What the session must do after a tool answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the conversation goes on.
    Continue,
    /// Let the agent's last words play, then hang up.
    EndCall,
    /// The call was redirected to a person; the media stream is about to stop.
    Transferred,
}

/// A tool's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolAnswer {
    /// JSON text for the agent.
    pub result: String,
    /// True when the tool failed.
    pub is_error: bool,
    /// What the session does next.
    pub action: Action,
}

impl ToolAnswer {
    fn ok(result: &Value) -> Self {
        Self {
            result: result.to_string(),
            is_error: false,
            action: Action::Continue,
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Self {
            result: json!({"error": message.into()}).to_string(),
            is_error: true,
            action: Action::Continue,
        }
    }

    /// A refusal with details the agent can use (e.g. alternatives to a taken slot).
    fn error_with(result: &Value) -> Self {
        Self {
            result: result.to_string(),
            is_error: true,
            action: Action::Continue,
        }
    }
}

/// The call a tool acts on.
#[derive(Clone, Debug)]
pub struct CallScope {
    /// The tenant.
    pub tenant: TenantId,
    /// The call.
    pub call: CallId,
    /// The attempt.
    pub attempt: AttemptId,
    /// The provider's call id (for transfer and hang-up).
    pub provider_call_id: String,
    /// The start context (time zone, transfer target, phone, name).
    pub context: Arc<SessionContext>,
}

/// The tools and what they act through.
#[derive(Clone)]
pub struct Tools {
    /// Free slots and bookings.
    pub calendar: Arc<dyn Calendar>,
    /// Lead changes.
    pub leads: Arc<dyn LeadRecords>,
    /// Callbacks go to the admission queue.
    pub store: Store,
    /// Tenants' telephony accounts.
    pub directory: Directory,
    /// HTTP client for telephony requests.
    pub http: reqwest::Client,
    /// How long a tool may take.
    pub timeout: Duration,
    /// Our public base URL (warm transfers' whisper route).
    pub public_base_url: String,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Reads a time the LLM gave: RFC 3339, or a local `YYYY-MM-DDTHH:MM[:SS]` (or with a space) on
/// the business's clock.
fn parse_time(text: &str, timezone: Tz) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    let normalized = text.replace(' ', "T");
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&normalized, format).ok())
        .and_then(|local| timezone.from_local_datetime(&local).earliest())
        .map(|at| at.with_timezone(&Utc))
}

fn string(parameters: &Value, key: &str) -> Option<String> {
    parameters
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn booking_error(error: &BookingError) -> ToolAnswer {
    ToolAnswer::error(error.to_string())
}

impl Tools {
    /// Runs tool `name`; always answers within the timeout.
    pub async fn run(
        &self,
        scope: &CallScope,
        tool_call_id: &str,
        name: &str,
        parameters: &Value,
    ) -> ToolAnswer {
        let work = self.dispatch(scope, tool_call_id, name, parameters);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(answer) => answer,
            Err(_elapsed) => ToolAnswer::error(format!(
                "{name} took longer than {} seconds; tell the caller you could not do it now",
                self.timeout.as_secs()
            )),
        }
    }

    async fn dispatch(
        &self,
        scope: &CallScope,
        tool_call_id: &str,
        name: &str,
        parameters: &Value,
    ) -> ToolAnswer {
        match name {
            "get_available_slots" => self.available_slots(scope, parameters).await,
            "book_appointment" => self.book(scope, tool_call_id, parameters).await,
            "update_lead" => self.update_lead(scope, tool_call_id, parameters).await,
            "transfer_to_human" => self.transfer(scope, parameters).await,
            "end_call" => ToolAnswer {
                result: json!({"ending": true}).to_string(),
                is_error: false,
                action: Action::EndCall,
            },
            "schedule_callback" => {
                self.schedule_callback(scope, tool_call_id, parameters)
                    .await
            }
            other => ToolAnswer::error(format!("there is no tool named {other}")),
        }
    }

    async fn available_slots(&self, scope: &CallScope, parameters: &Value) -> ToolAnswer {
        let timezone = scope.context.lead_tz();
        let now = Utc::now();
        // Nothing sooner than an hour from now: the business needs notice.
        let earliest = now + TimeDelta::hours(1);
        let from = string(parameters, "from")
            .and_then(|text| {
                parse_time(&text, timezone).or_else(|| {
                    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                        .ok()
                        .and_then(|day| day.and_hms_opt(0, 0, 0))
                        .and_then(|local| timezone.from_local_datetime(&local).earliest())
                        .map(|at| at.with_timezone(&Utc))
                })
            })
            .map_or(earliest, |from| from.max(earliest));
        let days = parameters
            .get("days")
            .and_then(Value::as_i64)
            .unwrap_or(7)
            .clamp(1, 14);
        let limit = parameters
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|limit| usize::try_from(limit).ok())
            .unwrap_or(5)
            .clamp(1, 20);
        let query = match SlotQuery::new(from, from + TimeDelta::days(days), limit, timezone, now) {
            Ok(query) => query,
            Err(error) => return booking_error(&error),
        };
        match self.calendar.free_slots(scope.tenant, query).await {
            Ok(slots) => ToolAnswer::ok(&json!({
                "timezone": timezone.name(),
                "slots": slots.iter().map(|slot| json!({
                    "start": slot.starts_at.with_timezone(&timezone).to_rfc3339(),
                    "end": slot.ends_at.with_timezone(&timezone).to_rfc3339(),
                })).collect::<Vec<_>>(),
                "spoken": speak_slots(&slots, timezone),
            })),
            Err(error) => booking_error(&error),
        }
    }

    async fn book(&self, scope: &CallScope, tool_call_id: &str, parameters: &Value) -> ToolAnswer {
        let timezone = scope.context.lead_tz();
        let Some(starts_at) =
            string(parameters, "start").and_then(|text| parse_time(&text, timezone))
        else {
            return ToolAnswer::error("book_appointment needs `start`, a date and time");
        };
        if starts_at <= Utc::now() {
            return ToolAnswer::error("that time is in the past");
        }
        let request = BookingRequest {
            tenant: scope.tenant,
            call: Some(scope.call),
            starts_at,
            zone: timezone,
            name: string(parameters, "name").or_else(|| scope.context.lead_name.clone()),
            phone: PhoneNumber::parse(&scope.context.phone).ok(),
            email: string(parameters, "email").or_else(|| scope.context.email.clone()),
            contact: scope
                .context
                .crm_contact_id
                .clone()
                .and_then(|id| ContactId::try_from(id).ok()),
            notes: string(parameters, "notes"),
            idempotency_key: format!("{}:{tool_call_id}", scope.attempt),
        };
        match self.calendar.book(request).await {
            Ok(booked) => ToolAnswer::ok(&json!({
                "booked": true,
                "appointment_id": booked.appointment_id,
                "start": booked.starts_at.with_timezone(&timezone).to_rfc3339(),
                "spoken": speak_slots(&[crate::booking::Slot {
                    starts_at: booked.starts_at,
                    ends_at: booked.ends_at,
                }], timezone),
            })),
            Err(BookingError::Unavailable(reason)) => {
                self.alternatives(scope, starts_at, timezone, &reason).await
            }
            Err(error) => booking_error(&error),
        }
    }

    /// The answer to a booking whose slot is taken: the reason and the nearest free slots
    /// from a little before the asked time, so the agent can offer them at once.
    async fn alternatives(
        &self,
        scope: &CallScope,
        asked: DateTime<Utc>,
        timezone: Tz,
        reason: &str,
    ) -> ToolAnswer {
        let now = Utc::now();
        let from = (asked - TimeDelta::hours(3)).max(now + TimeDelta::hours(1));
        let slots = match SlotQuery::new(from, from + TimeDelta::days(7), 3, timezone, now) {
            Ok(query) => self
                .calendar
                .free_slots(scope.tenant, query)
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut answer = json!({
            "booked": false,
            "reason": format!("that time is not available: {reason}"),
            "alternatives": slots.iter().map(|slot| json!({
                "start": slot.starts_at.with_timezone(&timezone).to_rfc3339(),
                "end": slot.ends_at.with_timezone(&timezone).to_rfc3339(),
            })).collect::<Vec<_>>(),
        });
        answer["spoken"] = if slots.is_empty() {
            json!("There are no other free times this week.")
        } else {
            json!(format!(
                "That time was just taken. I can offer {}",
                speak_slots(&slots, timezone)
            ))
        };
        ToolAnswer::error_with(&answer)
    }

    async fn update_lead(
        &self,
        scope: &CallScope,
        tool_call_id: &str,
        parameters: &Value,
    ) -> ToolAnswer {
        let change = LeadChange {
            status: string(parameters, "status"),
            notes: string(parameters, "notes"),
            tags: parameters
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            custom_fields: parameters
                .get("custom_fields")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        if change == LeadChange::default() {
            return ToolAnswer::error("update_lead needs a status, notes, tags or custom_fields");
        }
        let key = format!("{}:{tool_call_id}", scope.attempt);
        match self
            .leads
            .update(scope.tenant, scope.call, change, key)
            .await
        {
            Ok(()) => ToolAnswer::ok(&json!({"updated": true})),
            Err(error) => booking_error(&error),
        }
    }

    async fn telephony(&self, tenant: TenantId) -> Result<Twilio, String> {
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| error.to_string())?;
        Twilio::for_tenant(&snapshot, self.http.clone()).map_err(str::to_owned)
    }

    async fn transfer(&self, scope: &CallScope, parameters: &Value) -> ToolAnswer {
        let Some(target) = scope.context.transfer.clone() else {
            return ToolAnswer::error(
                "no one is available to take the call; offer a callback instead",
            );
        };
        let whisper_url = target.warm.then(|| {
            let reason = string(parameters, "reason").unwrap_or_else(|| "a question".to_owned());
            let name = scope.context.lead_name.as_deref().unwrap_or("a caller");
            let text = format!("Transferred call from {name} about {reason}. Connecting now.");
            let query = crate::http::form::encode(&[("text", text.as_str())]);
            format!(
                "{}/webhooks/{}/twilio/calls/{}/whisper?{query}",
                self.public_base_url.trim_end_matches('/'),
                scope.tenant,
                scope.attempt
            )
        });
        let twiml = transfer_twiml(&target.number, whisper_url.as_deref());
        let telephony = match self.telephony(scope.tenant).await {
            Ok(telephony) => telephony,
            Err(error) => return ToolAnswer::error(error),
        };
        match telephony
            .redirect(&scope.provider_call_id, &CallInstructions::Twiml(twiml))
            .await
        {
            Ok(()) => ToolAnswer {
                result: json!({"transferred": true}).to_string(),
                is_error: false,
                action: Action::Transferred,
            },
            Err(error) => ToolAnswer::error(format!("the transfer failed: {error}")),
        }
    }

    async fn schedule_callback(
        &self,
        scope: &CallScope,
        tool_call_id: &str,
        parameters: &Value,
    ) -> ToolAnswer {
        let timezone = scope.context.business_tz();
        let Some(requested) = string(parameters, "at").and_then(|text| parse_time(&text, timezone))
        else {
            return ToolAnswer::error("schedule_callback needs `at`, a date and time");
        };
        match self.enqueue_callback(scope, tool_call_id, requested).await {
            Ok(at) => ToolAnswer::ok(&json!({
                "scheduled": true,
                "at": at.with_timezone(&timezone).to_rfc3339(),
                "moved_into_calling_hours": at != requested,
            })),
            Err(error) => ToolAnswer::error(error),
        }
    }

    /// Schedules the callback as a job of the scheduler (ADR 0020): fired at `at`, or at the
    /// first instant the calling windows allow after it, as a new call; listed and cancelled
    /// like every scheduled attempt (a booking or an opt-out cancels it).
    async fn enqueue_callback(
        &self,
        scope: &CallScope,
        tool_call_id: &str,
        requested: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, String> {
        let database = |error: sqlx::Error| format!("database: {error}");
        let snapshot = self
            .directory
            .existing(scope.tenant)
            .await
            .map_err(|error| error.to_string())?;
        let mut tx = self
            .store
            .begin_tenant(scope.tenant)
            .await
            .map_err(database)?;
        let lead: (Value,) =
            sqlx::query_as("SELECT lead FROM calls WHERE tenant_id = $1 AND id = $2")
                .bind(scope.tenant.as_uuid())
                .bind(scope.call.as_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(database)?;
        let lead: LeadResolved = serde_json::from_value(lead.0)
            .map_err(|error| format!("the stored lead is unreadable: {error}"))?;
        let zone = crate::scheduling::zone::of(&lead, snapshot.timezone);
        let policy = CallingPolicy::from_config(&snapshot.configuration, snapshot.timezone)
            .map_err(|error| error.to_string())?;
        let now = Utc::now();
        let Some(at) = crate::scheduling::timing::fit(&policy, zone.tz, requested, now) else {
            return Err("no calling hours allow a callback".to_owned());
        };
        // Derived from the tool call: asking twice schedules once.
        let parent = EventId::from_uuid(scope.attempt.as_uuid());
        let job = EventId::derived(parent, &[b"callback", tool_call_id.as_bytes()]).as_uuid();
        // Asking again (a retried tool call) inserts nothing: the id is taken.
        scheduled_jobs::insert(
            &mut tx,
            &NewJob {
                id: job,
                tenant: scope.tenant,
                kind: JobKind::Callback,
                to: &lead.phone,
                crm_contact_id: lead.external_id.as_deref(),
                call_id: None,
                attempt_number: 1,
                campaign: None,
                paused: false,
                due_at: at,
                earliest_at: requested,
                reason: "callback requested by the lead",
                timezone: zone.tz.name(),
                timezone_fallback: zone.fallback,
                lead: &crate::stages::scheduler::plan::lead_json(&lead),
                source_event_id: parent,
            },
        )
        .await
        .map_err(database)?;
        tx.commit().await.map_err(database)?;
        Ok(at)
    }
}

/// The TwiML that hands the call to a person; a warm transfer first has Twilio fetch
/// `whisper_url` when the person answers, which tells them who is calling and why.
fn transfer_twiml(number: &str, whisper_url: Option<&str>) -> String {
    use crate::calls::twiml::escape;
    let number = escape(number);
    let dial = match whisper_url {
        None => format!("<Dial>{number}</Dial>"),
        Some(url) => format!(
            r#"<Dial><Number url="{}">{number}</Number></Dial>"#,
            escape(url)
        ),
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>One moment, I am connecting you.</Say>{dial}</Response>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_dial_the_number_and_warm_ones_whisper_first() {
        let cold = transfer_twiml("+15550100", None);
        assert!(
            cold.ends_with("<Dial>+15550100</Dial></Response>"),
            "{cold}"
        );
        let warm = transfer_twiml("+15550100", Some("https://x/w?text=a&b=1"));
        assert!(
            warm.contains(r#"<Number url="https://x/w?text=a&amp;b=1">+15550100</Number>"#),
            "{warm}"
        );
    }

    #[test]
    fn times_read_as_rfc3339_or_local_business_time() {
        let chicago: Tz = "America/Chicago".parse().unwrap();
        let utc = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_time("2026-11-25T10:00:00-06:00", chicago),
            Some(utc("2026-11-25T16:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-25T10:00", chicago),
            Some(utc("2026-11-25T16:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-25 10:00:00", chicago),
            Some(utc("2026-11-25T16:00:00Z"))
        );
        assert_eq!(parse_time("tomorrow at ten", chicago), None);
    }
}
