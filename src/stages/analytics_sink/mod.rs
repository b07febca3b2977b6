//! The `analytics_sink` stage: every fact of the pipeline into the `analytics` schema that
//! Metabase reads (ADR 0021, migration 0013, docs/analytics.md).
//!
//! - Consumes: every event on `FACTS` (a stream sourcing LEADS and CALLS), as one input type,
//!   [`Fact`]; an event type this build does not know is recorded by its envelope alone.
//! - Writes, in the claim's transaction: the envelope (`event_facts`), the stage latency of
//!   its causal link (`stage_latency_facts`), the typed fact (lead, admitted attempt, attempt
//!   outcome, conversation, summary, bookings) and the rollups that fact feeds.
//! - Idempotent on its own, not only through the runner's claim: each fact is keyed by what
//!   it describes and inserted `ON CONFLICT DO NOTHING`; rollups are bumped only when the
//!   insert happened. So replaying every fact (a reset consumer, an expired claim) changes
//!   nothing, and each rollup equals a recount of its facts (`store::analytics::RECOUNT`).
//! - Writes as the platform: a causal chain crosses tenants (a webhook lead is under the nil
//!   tenant until resolve_tenant finds its client), and the sink links both ends.
//! - Emits nothing; no external side effects.
//! - Companion ([`snapshot`]): every [`snapshot::EVERY`] it stores each consumer's state and
//!   each tenant's admission queue, for `analytics.queue_status_view`.

pub mod snapshot;

use futures::future::BoxFuture;
use serde::Serialize;

use super::{Stage, StageContext};
use crate::bus::envelope::{Envelope, Meta};
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::fact::Fact;
use crate::shutdown::Shutdown;
use crate::store::analytics::{self as facts, AiCounts, Counts};
use crate::summary::Outcome as SummaryOutcome;
use crate::tenancy::directory::Directory;

/// The analytics sink.
pub struct AnalyticsSink {
    directory: Directory,
}

impl Stage for AnalyticsSink {
    const NAME: &'static str = "analytics_sink";
    type Input = Fact;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        Vec::new()
    }

    fn companion(
        runtime: &Runtime,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        Some(Box::pin(snapshot::run(runtime.clone(), shutdown)))
    }

    async fn handle(
        &self,
        input: &Envelope<Fact>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let meta = &input.meta;
        facts::as_platform(cx.tx).await?;
        facts::lock_link(cx.tx, meta).await?;
        let call_id = match (&input.payload, meta.call_id) {
            (_, Some(call)) => Some(call.as_uuid()),
            (Fact::CallStatusReported(report), None) => {
                facts::call_of_attempt(cx.tx, report.attempt_id.as_uuid()).await?
            }
            _ => None,
        };
        if !facts::record_event(cx.tx, meta, call_id).await? {
            // Recorded before: everything below happened with it.
            return Ok(());
        }
        facts::record_latencies(cx.tx, meta).await?;
        let tenant = if meta.tenant_id.as_uuid().is_nil() {
            None
        } else {
            self.directory.tenant(meta.tenant_id).await?
        };
        if let Some(snapshot) = &tenant {
            facts::remember_tenant(cx.tx, snapshot).await?;
        }
        let value = tenant
            .as_ref()
            .and_then(|t| t.configuration.appointment_value.as_ref())
            .map(|v| {
                (
                    i64::try_from(v.amount_cents).unwrap_or(i64::MAX),
                    v.currency.as_str(),
                )
            });
        record_typed(cx, meta, &input.payload, value).await
    }
}

/// Writes the typed fact and, when it is new, its rollups.
async fn record_typed(
    cx: &mut StageContext<'_>,
    meta: &Meta,
    fact: &Fact,
    value: Option<(i64, &str)>,
) -> Result<(), StageError> {
    let tenant = meta.tenant_id.as_uuid();
    match fact {
        Fact::LeadResolved(lead) => {
            let kind = lead.schedule.as_ref().map_or("new", |s| s.kind.as_str());
            let row = facts::LeadFact {
                kind,
                source: lead.source.as_str(),
                campaign: lead.campaign_id.as_deref(),
                timezone: &lead.timezone,
                received_at: lead.received_at,
            };
            if facts::insert_lead(cx.tx, meta, &row).await? && kind == "new" {
                let counts = Counts {
                    leads: 1,
                    ..Counts::default()
                };
                facts::bump_counts(cx.tx, tenant, meta.occurred_at, &counts).await?;
            }
        }
        Fact::CallRequested(request) => {
            facts::insert_call_request(
                cx.tx,
                meta,
                request.call_id.as_uuid(),
                request.attempt_number,
                request.lead.source.as_str(),
                request.lead.campaign_id.as_deref(),
            )
            .await?;
        }
        Fact::CallOutcome(outcome) => {
            let row = facts::CallFact {
                attempt_id: outcome.attempt_id.as_uuid(),
                call_id: outcome.call_id.as_uuid(),
                attempt_number: outcome.attempt_number,
                outcome: outcome.outcome.as_str(),
                answered_by: outcome.answered_by.map(|a| a.as_str()),
                duration_secs: outcome.duration_secs,
                ended_at: outcome.ended_at,
            };
            if facts::insert_call(cx.tx, meta, &row).await? {
                let counts = Counts::attempt(&outcome.outcome, row.duration_secs);
                facts::bump_counts(cx.tx, tenant, row.ended_at, &counts).await?;
            }
        }
        Fact::ConversationEnded(ended) => {
            let end_reason = serde_name(&ended.end);
            let row = facts::ConversationFact {
                attempt_id: ended.attempt_id.as_uuid(),
                call_id: ended.call_id.as_uuid(),
                end_reason: &end_reason,
                started_at: ended.started_at,
                ended_at: ended.ended_at,
                turns: ended.turns,
                tool_calls: ended.tool_calls,
                resumes: ended.resumes,
            };
            if facts::insert_conversation(cx.tx, meta, &row).await? {
                let counts = Counts {
                    conversations: 1,
                    talk_secs: row.duration_secs(),
                    ..Counts::default()
                };
                facts::bump_counts(cx.tx, tenant, row.ended_at, &counts).await?;
                let ai = AiCounts {
                    conversations: 1,
                    turns: saturating(row.turns),
                    tool_calls: saturating(row.tool_calls),
                    resumes: saturating(row.resumes),
                    ..AiCounts::default()
                };
                facts::bump_ai(cx.tx, tenant, row.ended_at, &ai).await?;
            }
            // Bookings are looked for even when the conversation was recorded already: they
            // have their own key, so a booking is counted once whichever delivery finds it.
            let bookings =
                facts::insert_bookings(cx.tx, meta, row.call_id, row.attempt_id, value).await?;
            for booking in &bookings {
                let counts = Counts {
                    bookings: 1,
                    ..Counts::default()
                };
                facts::bump_counts(cx.tx, tenant, booking.booked_at, &counts).await?;
                facts::bump_revenue(cx.tx, tenant, booking).await?;
            }
        }
        Fact::ConversationSummarized(summary) => {
            let row = facts::SummaryFact {
                attempt_id: summary.attempt_id.as_uuid(),
                call_id: summary.call_id.as_uuid(),
                outcome: summary.outcome.as_str(),
                sentiment: summary.sentiment.as_str(),
                sentiment_score: summary.sentiment_score,
                source: summary.source.as_str(),
                provider_analysis: summary.provider_analysis,
                call_successful: summary.call_successful.as_deref(),
            };
            if facts::insert_summary(cx.tx, meta, &row).await? {
                let sentiment = Counts::sentiment(summary.sentiment);
                facts::bump_counts(cx.tx, tenant, meta.occurred_at, &sentiment).await?;
                let ai = AiCounts {
                    summaries: 1,
                    booked: i32::from(summary.outcome == SummaryOutcome::Booked),
                    positive: sentiment.positive,
                    neutral: sentiment.neutral,
                    negative: sentiment.negative,
                    sentiment_sum: f64::from(row.sentiment_score),
                    provider_success: i32::from(row.call_successful == Some("success")),
                    provider_failure: i32::from(row.call_successful == Some("failure")),
                    ..AiCounts::default()
                };
                facts::bump_ai(cx.tx, tenant, meta.occurred_at, &ai).await?;
            }
        }
        // Their envelopes (and stage latencies) are all analytics needs of them.
        Fact::LeadReceived(_)
        | Fact::LeadUnique(_)
        | Fact::CallStatusReported(_)
        | Fact::CallAnswered(_)
        | Fact::PostCallReported(_)
        | Fact::Other => {}
    }
    Ok(())
}

/// The serde name of a unit enum value (`caller_hung_up`).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

fn saturating(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
