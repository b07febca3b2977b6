//! What happened to each demo call, gathered from PostgreSQL in one query, checked against the
//! HighLevel simulator, and printed as a table.
//!
//! [`CallRow`] is the one place per-call facts are collected: a check against another store
//! (such as the analytics tables) is one more field filled in [`gather`] and one more column
//! in [`render`].

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::leads::DemoLead;
use crate::ids::TenantId;
use crate::providers::sim::SimAccounts;
use crate::providers::sim_gohighlevel::VERSION_CALENDARS;
use crate::store::Store;

/// One demo call, as the platform recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRow {
    /// The call.
    pub call_id: uuid::Uuid,
    /// The callee (E.164).
    pub phone: String,
    /// `calls.state` (`completed`, `retry_scheduled`, …).
    pub state: String,
    /// `calls.outcome` (`human`, `no_answer`, `busy`, …), once settled.
    pub outcome: Option<String>,
    /// The latest attempt's state (`dialing`, `ringing`, `answered`, …).
    pub attempt_state: Option<String>,
    /// When the latest attempt was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Its talk time, as the provider reported it.
    pub duration_seconds: Option<i32>,
    /// The appointment the agent booked on this call.
    pub booked_at: Option<DateTime<Utc>>,
    /// The appointment's id in its calendar (HighLevel's event id).
    pub booking_external_id: Option<String>,
    /// Its calendar (`gohighlevel:<id>`, `static`, …).
    pub booking_calendar: Option<String>,
    /// Whether the summarize stage stored a summary.
    pub summarized: bool,
    /// Whether crm_sync wrote the call's note to the CRM.
    pub crm_synced: bool,
    /// Whether the booking was found at the HighLevel simulator (`None`: not checked).
    pub in_highlevel: Option<bool>,
    /// Whether the analytics sink recorded the call's outcome and, when it booked, the
    /// booking (`analytics.call_facts`, `analytics.booking_facts`).
    pub in_analytics: bool,
}

impl CallRow {
    /// Returns true once nothing more will happen to the call in the demo's time.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.crm_synced && self.in_analytics
    }
}

/// Returns the tenant's calls to `phones` created since `since`, oldest first.
pub async fn gather(
    store: &Store,
    tenant: TenantId,
    since: DateTime<Utc>,
    phones: &[String],
) -> anyhow::Result<Vec<CallRow>> {
    let mut transaction = store.begin_tenant(tenant).await?;
    let rows = sqlx::query!(
        r#"
        SELECT c.id AS "call_id!", c.to_number AS "phone!", c.state AS "state!", c.outcome,
               a.state AS "attempt_state?", a.answered_at AS "answered_at?",
               a.ended_at AS "ended_at?", a.duration_seconds AS "duration_seconds?",
               ap.starts_at AS "booked_at?", ap.external_id AS "booking_external_id?",
               ap.calendar AS "booking_calendar?",
               EXISTS (SELECT 1 FROM conversation_summaries s WHERE s.call_id = c.id)
                   AS "summarized!",
               EXISTS (SELECT 1 FROM crm_writes w
                        WHERE w.tenant_id = c.tenant_id AND w.fact_key = 'attempt:' || a.id::text
                          AND w.action = 'note' AND w.state = 'done') AS "crm_synced!",
               (EXISTS (SELECT 1 FROM analytics.call_facts f WHERE f.call_id = c.id)
                AND (ap.id IS NULL OR EXISTS (SELECT 1 FROM analytics.booking_facts b
                                              WHERE b.appointment_id = ap.id)))
                   AS "in_analytics!"
        FROM calls c
        LEFT JOIN LATERAL (SELECT * FROM call_attempts x WHERE x.call_id = c.id
                           ORDER BY x.attempt_number DESC LIMIT 1) a ON true
        LEFT JOIN LATERAL (SELECT * FROM appointments y WHERE y.call_id = c.id
                             AND y.status = 'booked' ORDER BY y.starts_at LIMIT 1) ap ON true
        WHERE c.tenant_id = $1 AND c.created_at >= $2 AND c.to_number = ANY($3)
        ORDER BY c.created_at
        "#,
        tenant.as_uuid(),
        since,
        phones,
    )
    .fetch_all(&mut *transaction)
    .await
    .context("read the demo's calls")?;
    transaction.rollback().await?;
    Ok(rows
        .into_iter()
        .map(|row| CallRow {
            call_id: row.call_id,
            phone: row.phone,
            state: row.state,
            outcome: row.outcome,
            attempt_state: row.attempt_state,
            answered_at: row.answered_at,
            ended_at: row.ended_at,
            duration_seconds: row.duration_seconds,
            booked_at: row.booked_at,
            booking_external_id: row.booking_external_id,
            booking_calendar: row.booking_calendar,
            summarized: row.summarized,
            crm_synced: row.crm_synced,
            in_highlevel: None,
            in_analytics: row.in_analytics,
        })
        .collect())
}

/// Looks up each HighLevel booking at the simulator's API (`GET
/// /calendars/events/appointments/{eventId}`) and fills [`CallRow::in_highlevel`]: found with
/// the same start time, or not.
pub async fn check_highlevel(http: &reqwest::Client, simulator: &str, rows: &mut [CallRow]) {
    let token = SimAccounts::default().gohighlevel_token;
    for row in rows.iter_mut() {
        let (Some(event_id), Some(calendar), Some(booked_at)) = (
            &row.booking_external_id,
            &row.booking_calendar,
            row.booked_at,
        ) else {
            continue;
        };
        if !calendar.starts_with("gohighlevel") {
            continue;
        }
        let answer = http
            .get(format!(
                "{simulator}/calendars/events/appointments/{event_id}"
            ))
            .bearer_auth(&token)
            .header("version", VERSION_CALENDARS)
            .send()
            .await;
        let event = match answer {
            Ok(response) if response.status().is_success() => {
                response.json::<Value>().await.unwrap_or(Value::Null)
            }
            Ok(_) | Err(_) => Value::Null,
        };
        let start = event["event"]["startTime"]
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok());
        row.in_highlevel = Some(start.is_some_and(|start| start == booked_at));
    }
}

/// Returns the summary table: one line per lead, in the lead's zone.
#[must_use]
pub fn render(leads: &[DemoLead], rows: &[CallRow]) -> String {
    let header = [
        "lead",
        "source",
        "zone",
        "outcome",
        "duration",
        "appointment (lead's time)",
        "in HighLevel",
        "CRM synced",
        "in analytics",
    ];
    let mut table = vec![header.map(str::to_owned).to_vec()];
    for lead in leads {
        let row = rows.iter().find(|row| row.phone == lead.phone);
        let outcome = row.map_or_else(|| "no call".to_owned(), outcome_label);
        let duration = row
            .filter(|row| row.answered_at.is_some())
            .and_then(|row| row.duration_seconds)
            .map_or_else(|| "-".to_owned(), |seconds| format!("{seconds}s"));
        let appointment = row.and_then(|row| row.booked_at).map_or_else(
            || "-".to_owned(),
            |at| {
                at.with_timezone(&lead.zone)
                    .format("%a %d %b %H:%M")
                    .to_string()
            },
        );
        let yes_no = |value: Option<bool>| match value {
            Some(true) => "yes".to_owned(),
            Some(false) => "NO".to_owned(),
            None => "-".to_owned(),
        };
        table.push(vec![
            lead.name(),
            lead.channel.label().to_owned(),
            lead.zone.name().to_owned(),
            outcome,
            duration,
            appointment,
            yes_no(row.and_then(|row| row.in_highlevel)),
            yes_no(row.map(|row| row.crm_synced)),
            yes_no(row.map(|row| row.in_analytics)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            table
                .iter()
                .map(|line| line[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for (index, line) in table.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
        if index == 0 {
            let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
            text.push_str(&rule.join("  "));
            text.push('\n');
        }
    }
    text
}

/// Returns the outcome as the table shows it.
#[must_use]
pub fn outcome_label(row: &CallRow) -> String {
    if row.booked_at.is_some() {
        return "booked".to_owned();
    }
    match row.outcome.as_deref() {
        Some("human") => "answered, not booked".to_owned(),
        Some("no_answer") => "no answer".to_owned(),
        Some(other) => other.replace('_', " "),
        None => format!("still {}", row.state.replace('_', " ")),
    }
}
