//! What crm_sync writes about one settled call: read once from our database, then turned into
//! the status, fields, tags, note, stage and call log.
//!
//! Tenant settings under `providers.<crm>` (all optional):
//! - `status_map`: `{"booked": "Appointment Booked", "human": "Contacted", …}` by outcome
//!   label (`booked`, `human`, `machine`, `no_answer`, `busy`, `failed`, `cancelled`,
//!   `unknown`); defaults below;
//! - `outcome_field`: a custom field key that receives the outcome label;
//! - `stages`: `{"booked": {"pipeline": "…", "stage": "…", "status": "open"}, …}` by label.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sqlx::PgConnection;

use crate::calls::state::Outcome;
use crate::crm::{DealStatus, StageMove};
use crate::error::StageError;
use crate::events::call_flow::CallOutcome;
use crate::events::lead_flow::LeadResolved;
use crate::ids::{AttemptId, CallId, PhoneNumber, TenantId};
use crate::settings::CrmSyncSettings;
use crate::store::Store;

/// How many transcript turns the note quotes.
const QUOTED_TURNS: usize = 12;
/// How much of one turn the note quotes.
const QUOTED_CHARS: usize = 300;

/// The marker that identifies the note of one attempt in the CRM.
#[must_use]
pub(super) fn marker(attempt: AttemptId) -> String {
    format!("[caller:{}]", attempt.as_uuid())
}

/// An appointment the agent booked on the call.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Booking {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

/// Everything crm_sync writes about one attempt.
#[derive(Debug)]
pub(super) struct CallFacts {
    pub(super) call: CallId,
    pub(super) attempt: AttemptId,
    pub(super) outcome: Outcome,
    pub(super) to: PhoneNumber,
    pub(super) from: PhoneNumber,
    pub(super) crm_contact_id: Option<String>,
    pub(super) lead: LeadResolved,
    pub(super) started_at: DateTime<Utc>,
    pub(super) duration_secs: u32,
    /// The conversation exists and has not ended yet.
    pub(super) conversation_open: bool,
    /// The conversation exists (the call was answered and bridged to the agent).
    pub(super) has_conversation: bool,
    turns: Vec<(String, String)>,
    provider_summary: Option<String>,
    /// The summarize stage's summary, once written: (summary, outcome, sentiment).
    pub(super) summary: Option<(String, String, String)>,
    bookings: Vec<Booking>,
    /// Pending changes the agent asked for (status, notes, tags, custom fields), in order.
    changes: Vec<Value>,
    has_recording: bool,
}

fn unreadable(what: &str, error: impl std::fmt::Display) -> StageError {
    StageError::rejected(format!("the stored {what} is unreadable: {error}"))
}

impl CallFacts {
    /// Reads the call, its conversation, bookings and pending lead changes.
    pub(super) async fn load(
        tx: &mut PgConnection,
        tenant: TenantId,
        outcome: &CallOutcome,
    ) -> Result<Self, StageError> {
        let call: Option<(Option<String>, Value, String, Option<String>)> = sqlx::query_as(
            "SELECT crm_contact_id, lead, to_number, from_number FROM calls \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(outcome.call_id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((crm_contact_id, lead, to, from)) = call else {
            return Err(StageError::rejected("the call does not exist"));
        };
        let lead: LeadResolved =
            serde_json::from_value(lead).map_err(|error| unreadable("lead", error))?;
        let to = PhoneNumber::parse(&to).map_err(|error| unreadable("number", error))?;
        let from = from
            .as_deref()
            .and_then(|from| PhoneNumber::parse(from).ok())
            .unwrap_or_else(|| to.clone());
        let attempt = outcome.attempt_id;
        let conversation: Option<(String, Option<Value>)> = sqlx::query_as(
            "SELECT state, provider_analysis FROM conversations \
             WHERE tenant_id = $1 AND attempt_id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(attempt.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let summary: Option<(String, String, String)> = sqlx::query_as(
            "SELECT summary, outcome, sentiment FROM conversation_summaries \
             WHERE tenant_id = $1 AND attempt_id = $2",
        )
        .bind(tenant.as_uuid())
        .bind(attempt.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let turns = crate::store::conversations::turns(tx, attempt).await?;
        let bookings: Vec<Booking> = sqlx::query_as(
            "SELECT starts_at, ends_at FROM appointments \
             WHERE tenant_id = $1 AND call_id = $2 AND status = 'booked' ORDER BY starts_at",
        )
        .bind(tenant.as_uuid())
        .bind(outcome.call_id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let changes: Vec<(Value,)> = sqlx::query_as(
            "SELECT changes FROM lead_updates \
             WHERE tenant_id = $1 AND call_id = $2 AND state = 'pending' ORDER BY id",
        )
        .bind(tenant.as_uuid())
        .bind(outcome.call_id.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let has_recording: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM call_recordings \
             WHERE tenant_id = $1 AND attempt_id = $2 AND state <> 'recording')",
        )
        .bind(tenant.as_uuid())
        .bind(attempt.as_uuid())
        .fetch_one(&mut *tx)
        .await?;
        let duration_secs = outcome.duration_secs.unwrap_or(0);
        Ok(Self {
            call: outcome.call_id,
            attempt,
            outcome: outcome.outcome.clone(),
            to,
            from,
            crm_contact_id,
            lead,
            started_at: outcome.ended_at - chrono::TimeDelta::seconds(i64::from(duration_secs)),
            duration_secs,
            conversation_open: conversation
                .as_ref()
                .is_some_and(|(state, _)| state != "ended"),
            has_conversation: conversation.is_some(),
            summary,
            turns,
            provider_summary: conversation.and_then(|(_, analysis)| analysis).and_then(
                |analysis| {
                    analysis
                        .get("transcript_summary")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                },
            ),
            bookings,
            changes: changes.into_iter().map(|(change,)| change).collect(),
            has_recording,
        })
    }

    /// The outcome as the CRM hears it: `booked` when the agent booked, else the call's.
    #[must_use]
    pub(super) fn label(&self) -> &'static str {
        if self.bookings.is_empty() {
            self.outcome.as_str()
        } else {
            "booked"
        }
    }

    fn lead_tz(&self) -> Tz {
        self.lead.timezone.parse().unwrap_or(Tz::UTC)
    }

    fn changed<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.changes
            .iter()
            .filter_map(move |change| change.get(key))
    }

    /// The lead status: the agent's last explicit one, else the tenant's map, else ours.
    #[must_use]
    pub(super) fn status(&self, settings: &Value) -> Option<String> {
        if let Some(status) = self.changed("status").filter_map(Value::as_str).last() {
            return Some(status.to_owned());
        }
        if let Some(mapped) = settings
            .get("status_map")
            .and_then(|map| map.get(self.label()))
        {
            return mapped.as_str().map(str::to_owned);
        }
        let default = match self.label() {
            "booked" => "Appointment Booked",
            "human" => "Contacted",
            "machine" => "Voicemail",
            "no_answer" => "No Answer",
            "busy" => "Busy",
            "failed" => "Call Failed",
            _ => return None,
        };
        Some(default.to_owned())
    }

    /// Custom fields: the agent's, and the outcome in the tenant's `outcome_field`.
    #[must_use]
    pub(super) fn custom_fields_with(&self, settings: &Value) -> BTreeMap<String, Value> {
        let mut fields = BTreeMap::new();
        if let Some(field) = settings.get("outcome_field").and_then(Value::as_str) {
            fields.insert(field.to_owned(), Value::from(self.label()));
        }
        for change in self.changed("custom_fields").filter_map(Value::as_object) {
            for (key, value) in change {
                fields.insert(key.clone(), value.clone());
            }
        }
        fields
    }

    /// Tags to add.
    #[must_use]
    pub(super) fn tags(&self) -> Vec<String> {
        let mut tags = vec![
            "ai-called".to_owned(),
            format!("ai-{}", self.label().replace('_', "-")),
        ];
        for tag in self
            .changed("tags")
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_str)
        {
            if !tags.iter().any(|known| known == tag) {
                tags.push(tag.to_owned());
            }
        }
        tags
    }

    /// The tenant's pipeline move for this outcome.
    #[must_use]
    pub(super) fn stage_move(&self, settings: &Value) -> Option<StageMove> {
        let to = settings.get("stages")?.get(self.label())?;
        Some(StageMove {
            pipeline: to.get("pipeline")?.as_str()?.to_owned(),
            stage: to.get("stage").and_then(Value::as_str).map(str::to_owned),
            status: to
                .get("status")
                .and_then(|status| serde_json::from_value::<DealStatus>(status.clone()).ok()),
            deal_name: self
                .lead
                .full_name
                .clone()
                .unwrap_or_else(|| format!("Lead {}", self.to)),
        })
    }

    /// The call log's status, in the CRMs' vocabulary.
    #[must_use]
    pub(super) const fn call_status(&self) -> &'static str {
        match self.outcome {
            Outcome::Human => "completed",
            Outcome::Machine => "voicemail",
            Outcome::NoAnswer => "no-answer",
            Outcome::Busy => "busy",
            Outcome::Cancelled => "canceled",
            Outcome::Failed(_) | Outcome::Unknown => "failed",
        }
    }

    /// Where an authorised user finds the recording (our API, never the file).
    #[must_use]
    pub(super) fn recording_link(
        &self,
        settings: &CrmSyncSettings,
        tenant: TenantId,
    ) -> Option<String> {
        (self.has_recording && !settings.app_base_url.is_empty()).then(|| {
            format!(
                "{}/v1/clients/{}/calls/{}",
                settings.app_base_url.trim_end_matches('/'),
                tenant.as_uuid(),
                self.call.as_uuid()
            )
        })
    }

    /// The note's title.
    #[must_use]
    pub(super) fn note_title(&self) -> String {
        let day = self
            .started_at
            .with_timezone(&self.lead_tz())
            .format("%Y-%m-%d %H:%M %Z");
        format!("AI call {day}: {}", self.label().replace('_', " "))
    }

    /// The note: summary, bookings, the agent's notes, a transcript excerpt, the recording
    /// link, and the marker that recognises it on a replay.
    #[must_use]
    pub(super) fn note_body(
        &self,
        settings: &CrmSyncSettings,
        tenant: TenantId,
        marker: &str,
    ) -> String {
        let zone = self.lead_tz();
        let mut lines = vec![format!(
            "Outcome: {} ({} s).",
            self.label().replace('_', " "),
            self.duration_secs
        )];
        match (&self.summary, &self.provider_summary) {
            (Some((summary, outcome, sentiment)), _) => {
                lines.push(format!("Summary: {summary}"));
                lines.push(format!(
                    "Result: {}; the caller sounded {sentiment}.",
                    outcome.replace('_', " ")
                ));
            }
            (None, Some(summary)) => lines.push(format!("Summary: {summary}")),
            (None, None) => {}
        }
        for booking in &self.bookings {
            lines.push(format!(
                "Booked: {} to {}.",
                booking
                    .starts_at
                    .with_timezone(&zone)
                    .format("%A %-d %B %Y %H:%M %Z"),
                booking.ends_at.with_timezone(&zone).format("%H:%M"),
            ));
        }
        for note in self.changed("notes").filter_map(Value::as_str) {
            lines.push(format!("Agent note: {note}"));
        }
        if !self.turns.is_empty() {
            lines.push("Transcript (start):".to_owned());
            for (role, text) in self.turns.iter().take(QUOTED_TURNS) {
                let who = if role == "agent" { "Agent" } else { "Caller" };
                let text: String = text.chars().take(QUOTED_CHARS).collect();
                lines.push(format!("{who}: {text}"));
            }
        }
        if let Some(link) = self.recording_link(settings, tenant) {
            lines.push(format!("Recording: {link}"));
        }
        lines.push(marker.to_owned());
        lines.join("\n")
    }
}

/// Marks the call's pending lead changes as written.
pub(super) async fn mark_lead_updates_synced(
    store: &Store,
    tenant: TenantId,
    facts: &CallFacts,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_tenant(tenant).await?;
    sqlx::query(
        "UPDATE lead_updates SET state = 'synced' \
         WHERE tenant_id = $1 AND call_id = $2 AND state = 'pending'",
    )
    .bind(tenant.as_uuid())
    .bind(facts.call.as_uuid())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
