//! The `analytics` schema (migration 0013, ADR 0021): facts, rollups and snapshots, written
//! only by the analytics_sink stage.
//!
//! Every fact insert says whether it inserted (`ON CONFLICT DO NOTHING`); the caller bumps
//! the rollups only when it did, in the same transaction, so a replayed fact changes nothing
//! and every rollup equals a recount of its facts ([`RECOUNT`] is that recount).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::bus::envelope::Meta;
use crate::calls::state::Outcome;
use crate::summary::Sentiment;
use crate::tenancy::directory::TenantSnapshot;

/// Lets the transaction read and write every tenant's analytics: a causal chain crosses
/// tenants (a webhook lead is under the nil tenant until resolve_tenant finds its client).
pub async fn as_platform(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('app.platform', 'on', true)")
        .execute(conn)
        .await?;
    Ok(())
}

/// Serializes the facts of one causal link: a fact and its cause are recorded one after the
/// other, never both at once, so exactly one of them sees the other and writes the link's
/// stage latency. Locks are taken in key order, so two links never wait on each other.
pub async fn lock_link(conn: &mut PgConnection, meta: &Meta) -> Result<(), sqlx::Error> {
    // The keys are the ids' 64-bit hashes with a seed of our own: other advisory locks
    // (bookings, OAuth refreshes) hash other text, so a collision only makes one wait.
    let mut ids = vec![meta.event_id.as_uuid()];
    ids.extend(meta.causation_id.map(|cause| cause.as_uuid()));
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended(id::text, 2113) AS k FROM unnest($1::uuid[]) id
         ) keys ORDER BY k",
    )
    .bind(&ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records an event's envelope, under `call_id` (the envelope's, or one the sink found);
/// returns false when it was recorded before.
pub async fn record_event(
    conn: &mut PgConnection,
    meta: &Meta,
    call_id: Option<Uuid>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO analytics.event_facts
             (tenant_id, event_id, event_type, version, source, call_id, causation_id, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(meta.event_id.as_uuid())
    .bind(&meta.event_type)
    .bind(i32::try_from(meta.version).unwrap_or(i32::MAX))
    .bind(&meta.source)
    .bind(call_id)
    .bind(meta.causation_id.map(|cause| cause.as_uuid()))
    .bind(meta.occurred_at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Returns the call of a provider's status report (telephony callbacks reach ingress with
/// the attempt id alone).
pub async fn call_of_attempt(
    conn: &mut PgConnection,
    attempt: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT call_id FROM call_attempts WHERE id = $1")
        .bind(attempt)
        .fetch_optional(conn)
        .await
}

/// Writes the stage latency of the link from `meta`'s cause to it, and of the links from it
/// to effects recorded before it (facts may arrive out of causal order). The stage is the
/// effect's emitter (`caller/stage/dial` → `dial`).
pub async fn record_latencies(conn: &mut PgConnection, meta: &Meta) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics.stage_latency_facts
             (tenant_id, event_id, stage, event_type, cause_type, occurred_at, latency_ms)
         SELECT e.tenant_id, e.event_id,
                regexp_replace(e.source, '^caller/(stage/)?', ''),
                e.event_type, c.event_type, e.occurred_at,
                extract(epoch FROM (e.occurred_at - c.occurred_at)) * 1000
         FROM analytics.event_facts e
         JOIN analytics.event_facts c ON c.event_id = e.causation_id
         WHERE e.event_id = $1 OR e.causation_id = $1
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(meta.event_id.as_uuid())
    .execute(conn)
    .await?;
    Ok(())
}

/// Copies a tenant's name, slug and business zone the first time the sink meets it.
pub async fn remember_tenant(
    conn: &mut PgConnection,
    tenant: &TenantSnapshot,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics.tenants (tenant_id, slug, name, timezone) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant.id.as_uuid())
    .bind(&tenant.slug)
    .bind(&tenant.name)
    .bind(tenant.timezone.name())
    .execute(conn)
    .await?;
    Ok(())
}

/// A lead that reached its tenant.
#[derive(Debug)]
pub struct LeadFact<'a> {
    /// `new`, `retry`, `follow_up` or `callback`.
    pub kind: &'a str,
    /// Where it came from (`LeadSource::as_str`).
    pub source: &'a str,
    /// Its campaign, if any.
    pub campaign: Option<&'a str>,
    /// The lead's zone.
    pub timezone: &'a str,
    /// When ingress received it.
    pub received_at: DateTime<Utc>,
}

/// Inserts a lead fact; returns false when it was there.
pub async fn insert_lead(
    conn: &mut PgConnection,
    meta: &Meta,
    lead: &LeadFact<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO analytics.lead_facts
             (tenant_id, event_id, kind, source, campaign, timezone, received_at, resolved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(meta.event_id.as_uuid())
    .bind(lead.kind)
    .bind(lead.source)
    .bind(lead.campaign)
    .bind(lead.timezone)
    .bind(lead.received_at)
    .bind(meta.occurred_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts an admitted attempt; returns false when it was there.
pub async fn insert_call_request(
    conn: &mut PgConnection,
    meta: &Meta,
    call_id: Uuid,
    attempt_number: u32,
    lead_source: &str,
    campaign: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO analytics.call_request_facts
             (tenant_id, call_id, attempt_number, event_id, lead_source, campaign, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(call_id)
    .bind(i32::try_from(attempt_number).unwrap_or(i32::MAX))
    .bind(meta.event_id.as_uuid())
    .bind(lead_source)
    .bind(campaign)
    .bind(meta.occurred_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How one attempt ended.
#[derive(Debug)]
pub struct CallFact<'a> {
    /// The attempt.
    pub attempt_id: Uuid,
    /// Its call.
    pub call_id: Uuid,
    /// 1 for the first dial.
    pub attempt_number: u32,
    /// `Outcome::as_str`.
    pub outcome: &'a str,
    /// `human`, `machine_start`, … when detection ran.
    pub answered_by: Option<&'a str>,
    /// Billable seconds, when known.
    pub duration_secs: Option<u32>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

/// Inserts an attempt's outcome; returns false when the attempt already had one.
pub async fn insert_call(
    conn: &mut PgConnection,
    meta: &Meta,
    call: &CallFact<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO analytics.call_facts (tenant_id, attempt_id, call_id, attempt_number,
             event_id, outcome, answered_by, duration_secs, ended_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(call.attempt_id)
    .bind(call.call_id)
    .bind(i32::try_from(call.attempt_number).unwrap_or(i32::MAX))
    .bind(meta.event_id.as_uuid())
    .bind(call.outcome)
    .bind(call.answered_by)
    .bind(
        call.duration_secs
            .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX)),
    )
    .bind(call.ended_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A finished conversation.
#[derive(Debug)]
pub struct ConversationFact<'a> {
    /// The attempt.
    pub attempt_id: Uuid,
    /// Its call.
    pub call_id: Uuid,
    /// How it ended (`agent_ended`, `caller_hung_up`, …).
    pub end_reason: &'a str,
    /// When the media connected.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
    /// Turns spoken.
    pub turns: u32,
    /// Tools the agent called.
    pub tool_calls: u32,
    /// Engine sessions resumed after a drop.
    pub resumes: u32,
}

impl ConversationFact<'_> {
    /// Whole seconds from start to end (never negative).
    pub fn duration_secs(&self) -> i64 {
        (self.ended_at - self.started_at).num_seconds().max(0)
    }
}

/// Inserts a conversation; returns false when it was there.
pub async fn insert_conversation(
    conn: &mut PgConnection,
    meta: &Meta,
    fact: &ConversationFact<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO analytics.conversation_facts (tenant_id, attempt_id, call_id, event_id,
             end_reason, started_at, ended_at, duration_secs, turns, tool_calls, resumes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(fact.attempt_id)
    .bind(fact.call_id)
    .bind(meta.event_id.as_uuid())
    .bind(fact.end_reason)
    .bind(fact.started_at)
    .bind(fact.ended_at)
    .bind(i32::try_from(fact.duration_secs()).unwrap_or(i32::MAX))
    .bind(saturating_i32(fact.turns))
    .bind(saturating_i32(fact.tool_calls))
    .bind(saturating_i32(fact.resumes))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A conversation's summary.
#[derive(Debug)]
pub struct SummaryFact<'a> {
    /// The attempt.
    pub attempt_id: Uuid,
    /// Its call.
    pub call_id: Uuid,
    /// `booked`, `not_interested`, …
    pub outcome: &'a str,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: &'a str,
    /// In [-1, 1].
    pub sentiment_score: f32,
    /// `extractive` or `llm`.
    pub source: &'a str,
    /// Whether the provider's analysis was merged.
    pub provider_analysis: bool,
    /// The provider's verdict.
    pub call_successful: Option<&'a str>,
}

/// Inserts a summary; returns false when it was there.
pub async fn insert_summary(
    conn: &mut PgConnection,
    meta: &Meta,
    fact: &SummaryFact<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO analytics.summary_facts (tenant_id, attempt_id, call_id, event_id, outcome,
             sentiment, sentiment_score, source, provider_analysis, call_successful, summarized_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(fact.attempt_id)
    .bind(fact.call_id)
    .bind(meta.event_id.as_uuid())
    .bind(fact.outcome)
    .bind(fact.sentiment)
    .bind(fact.sentiment_score)
    .bind(fact.source)
    .bind(fact.provider_analysis)
    .bind(fact.call_successful)
    .bind(meta.occurred_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A booking fact just inserted, for the rollups.
#[derive(Debug, sqlx::FromRow)]
pub struct NewBooking {
    /// Attributed lead source.
    pub lead_source: String,
    /// Value in minor units, when configured.
    pub value_cents: Option<i64>,
    /// Its currency, when valued.
    pub currency: Option<String>,
    /// When it was booked.
    pub booked_at: DateTime<Utc>,
}

/// Inserts a booking fact for each appointment booked in `call_id` that has none yet,
/// attributed to this attempt and to the lead source of the call's request; returns the
/// ones inserted.
pub async fn insert_bookings(
    conn: &mut PgConnection,
    meta: &Meta,
    call_id: Uuid,
    attempt_id: Uuid,
    value: Option<(i64, &str)>,
) -> Result<Vec<NewBooking>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO analytics.booking_facts (tenant_id, appointment_id, call_id, attempt_id,
             event_id, calendar, lead_source, starts_at, booked_at, value_cents, currency)
         SELECT a.tenant_id, a.id, a.call_id, $3, $4, a.calendar,
                coalesce((SELECT r.lead_source FROM analytics.call_request_facts r
                          WHERE r.call_id = a.call_id
                          ORDER BY r.attempt_number DESC LIMIT 1), 'unknown'),
                a.starts_at, a.created_at, $5, $6
         FROM appointments a
         WHERE a.tenant_id = $1 AND a.call_id = $2 AND a.status = 'booked'
         ON CONFLICT (appointment_id) DO NOTHING
         RETURNING lead_source, value_cents, currency, booked_at",
    )
    .bind(meta.tenant_id.as_uuid())
    .bind(call_id)
    .bind(attempt_id)
    .bind(meta.event_id.as_uuid())
    .bind(value.map(|(cents, _)| cents))
    .bind(value.map(|(_, currency)| currency))
    .fetch_all(conn)
    .await
}

/// What one fact adds to a tenant's day (`analytics.daily_call_summary`) and week
/// (`analytics.weekly_performance_summary`); a field absent from a table is not added there.
#[derive(Debug, Default)]
pub struct Counts {
    /// New leads.
    pub leads: i32,
    /// Attempts ended.
    pub attempts: i32,
    /// … answered by a person.
    pub human: i32,
    /// … by a machine.
    pub machine: i32,
    /// … not answered.
    pub no_answer: i32,
    /// … busy.
    pub busy: i32,
    /// … failed.
    pub failed: i32,
    /// … cancelled by us.
    pub cancelled: i32,
    /// … unconfirmed.
    pub unknown: i32,
    /// Billable seconds of attempts.
    pub call_secs: i64,
    /// Conversations ended.
    pub conversations: i32,
    /// Their seconds.
    pub talk_secs: i64,
    /// Appointments booked.
    pub bookings: i32,
    /// Summaries by sentiment (weekly only).
    pub positive: i32,
    /// …
    pub neutral: i32,
    /// …
    pub negative: i32,
}

impl Counts {
    /// The counts of one ended attempt.
    pub fn attempt(outcome: &Outcome, duration_secs: Option<u32>) -> Self {
        let mut counts = Self {
            attempts: 1,
            call_secs: duration_secs.map_or(0, i64::from),
            ..Self::default()
        };
        match outcome {
            Outcome::Human => counts.human = 1,
            Outcome::Machine => counts.machine = 1,
            Outcome::NoAnswer => counts.no_answer = 1,
            Outcome::Busy => counts.busy = 1,
            Outcome::Failed(_) => counts.failed = 1,
            Outcome::Cancelled => counts.cancelled = 1,
            Outcome::Unknown => counts.unknown = 1,
        }
        counts
    }

    /// The counts of one summary's sentiment.
    pub fn sentiment(sentiment: Sentiment) -> Self {
        let mut counts = Self::default();
        match sentiment {
            Sentiment::Positive => counts.positive = 1,
            Sentiment::Neutral => counts.neutral = 1,
            Sentiment::Negative => counts.negative = 1,
        }
        counts
    }
}

/// Adds `counts` to the tenant's day and week of `at`.
pub async fn bump_counts(
    conn: &mut PgConnection,
    tenant: Uuid,
    at: DateTime<Utc>,
    counts: &Counts,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics.daily_call_summary AS d (tenant_id, day, leads, attempts, human,
             machine, no_answer, busy, failed, cancelled, unknown, call_secs, conversations,
             talk_secs, bookings)
         VALUES ($1, analytics.local_day($1, $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 $13, $14, $15)
         ON CONFLICT (tenant_id, day) DO UPDATE SET
             leads = d.leads + EXCLUDED.leads, attempts = d.attempts + EXCLUDED.attempts,
             human = d.human + EXCLUDED.human, machine = d.machine + EXCLUDED.machine,
             no_answer = d.no_answer + EXCLUDED.no_answer, busy = d.busy + EXCLUDED.busy,
             failed = d.failed + EXCLUDED.failed, cancelled = d.cancelled + EXCLUDED.cancelled,
             unknown = d.unknown + EXCLUDED.unknown, call_secs = d.call_secs + EXCLUDED.call_secs,
             conversations = d.conversations + EXCLUDED.conversations,
             talk_secs = d.talk_secs + EXCLUDED.talk_secs,
             bookings = d.bookings + EXCLUDED.bookings",
    )
    .bind(tenant)
    .bind(at)
    .bind(counts.leads)
    .bind(counts.attempts)
    .bind(counts.human)
    .bind(counts.machine)
    .bind(counts.no_answer)
    .bind(counts.busy)
    .bind(counts.failed)
    .bind(counts.cancelled)
    .bind(counts.unknown)
    .bind(counts.call_secs)
    .bind(counts.conversations)
    .bind(counts.talk_secs)
    .bind(counts.bookings)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO analytics.weekly_performance_summary AS w (tenant_id, week, leads,
             attempts, human, conversations, talk_secs, bookings, positive, neutral, negative)
         VALUES ($1, analytics.local_week($1, $2), $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, week) DO UPDATE SET
             leads = w.leads + EXCLUDED.leads, attempts = w.attempts + EXCLUDED.attempts,
             human = w.human + EXCLUDED.human,
             conversations = w.conversations + EXCLUDED.conversations,
             talk_secs = w.talk_secs + EXCLUDED.talk_secs,
             bookings = w.bookings + EXCLUDED.bookings,
             positive = w.positive + EXCLUDED.positive,
             neutral = w.neutral + EXCLUDED.neutral, negative = w.negative + EXCLUDED.negative",
    )
    .bind(tenant)
    .bind(at)
    .bind(counts.leads)
    .bind(counts.attempts)
    .bind(counts.human)
    .bind(counts.conversations)
    .bind(counts.talk_secs)
    .bind(counts.bookings)
    .bind(counts.positive)
    .bind(counts.neutral)
    .bind(counts.negative)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds one booking to the tenant's month, under its lead source and currency (`none` when
/// the tenant configured no appointment value).
pub async fn bump_revenue(
    conn: &mut PgConnection,
    tenant: Uuid,
    booking: &NewBooking,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics.monthly_revenue_attribution AS m
             (tenant_id, month, lead_source, currency, bookings, value_cents)
         VALUES ($1, analytics.local_month($1, $2), $3, coalesce($4, 'none'), 1, coalesce($5, 0))
         ON CONFLICT (tenant_id, month, lead_source, currency) DO UPDATE SET
             bookings = m.bookings + 1, value_cents = m.value_cents + EXCLUDED.value_cents",
    )
    .bind(tenant)
    .bind(booking.booked_at)
    .bind(&booking.lead_source)
    .bind(booking.currency.as_deref())
    .bind(booking.value_cents)
    .execute(conn)
    .await?;
    Ok(())
}

/// What one fact adds to a tenant's day in `analytics.ai_performance_trends`.
#[derive(Debug, Default)]
pub struct AiCounts {
    /// Conversations ended.
    pub conversations: i32,
    /// Their turns.
    pub turns: i32,
    /// Their tool calls.
    pub tool_calls: i32,
    /// Their engine resumes.
    pub resumes: i32,
    /// Summaries.
    pub summaries: i32,
    /// Summaries whose outcome is `booked`.
    pub booked: i32,
    /// By sentiment.
    pub positive: i32,
    /// …
    pub neutral: i32,
    /// …
    pub negative: i32,
    /// Sum of sentiment scores.
    pub sentiment_sum: f64,
    /// The provider said `success`.
    pub provider_success: i32,
    /// The provider said `failure`.
    pub provider_failure: i32,
}

/// Adds `counts` to the tenant's day of `at` in `analytics.ai_performance_trends`.
pub async fn bump_ai(
    conn: &mut PgConnection,
    tenant: Uuid,
    at: DateTime<Utc>,
    counts: &AiCounts,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO analytics.ai_performance_trends AS a (tenant_id, day, conversations, turns,
             tool_calls, resumes, summaries, booked, positive, neutral, negative, sentiment_sum,
             provider_success, provider_failure)
         VALUES ($1, analytics.local_day($1, $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 $13, $14)
         ON CONFLICT (tenant_id, day) DO UPDATE SET
             conversations = a.conversations + EXCLUDED.conversations,
             turns = a.turns + EXCLUDED.turns, tool_calls = a.tool_calls + EXCLUDED.tool_calls,
             resumes = a.resumes + EXCLUDED.resumes, summaries = a.summaries + EXCLUDED.summaries,
             booked = a.booked + EXCLUDED.booked, positive = a.positive + EXCLUDED.positive,
             neutral = a.neutral + EXCLUDED.neutral, negative = a.negative + EXCLUDED.negative,
             sentiment_sum = a.sentiment_sum + EXCLUDED.sentiment_sum,
             provider_success = a.provider_success + EXCLUDED.provider_success,
             provider_failure = a.provider_failure + EXCLUDED.provider_failure",
    )
    .bind(tenant)
    .bind(at)
    .bind(counts.conversations)
    .bind(counts.turns)
    .bind(counts.tool_calls)
    .bind(counts.resumes)
    .bind(counts.summaries)
    .bind(counts.booked)
    .bind(counts.positive)
    .bind(counts.neutral)
    .bind(counts.negative)
    .bind(counts.sentiment_sum)
    .bind(counts.provider_success)
    .bind(counts.provider_failure)
    .execute(conn)
    .await?;
    Ok(())
}

/// One consumer's state at a snapshot.
#[derive(Debug)]
pub struct ConsumerSnapshot {
    /// Stream.
    pub stream: String,
    /// Durable name.
    pub consumer: String,
    /// Messages not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: u64,
    /// Redelivered at least once.
    pub redelivered: u64,
    /// Pull requests waiting.
    pub waiting: u64,
    /// Last delivered stream sequence.
    pub delivered_seq: u64,
}

/// Stores one round of snapshots taken at `taken_at` (a round boundary: several sink
/// processes taking the same round store it once), with each tenant's admission queue, and
/// drops snapshots older than `keep_days`.
pub async fn store_snapshots(
    conn: &mut PgConnection,
    taken_at: DateTime<Utc>,
    consumers: &[ConsumerSnapshot],
    keep_days: i32,
) -> Result<(), sqlx::Error> {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for snapshot in consumers {
        sqlx::query(
            "INSERT INTO analytics.consumer_snapshots (taken_at, stream, consumer, pending,
                 ack_pending, redelivered, waiting, delivered_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(taken_at)
        .bind(&snapshot.stream)
        .bind(&snapshot.consumer)
        .bind(clamp(snapshot.pending))
        .bind(clamp(snapshot.ack_pending))
        .bind(clamp(snapshot.redelivered))
        .bind(clamp(snapshot.waiting))
        .bind(clamp(snapshot.delivered_seq))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        // Every tenant the sink knows, so an emptied queue reads 0, not its last depth.
        "INSERT INTO analytics.admission_snapshots (tenant_id, taken_at, waiting, admitted)
         SELECT t.tenant_id, $1, count(q.tenant_id) FILTER (WHERE q.state = 'waiting'),
                count(q.tenant_id) FILTER (WHERE q.state = 'admitted')
         FROM analytics.tenants t LEFT JOIN admission_queue q ON q.tenant_id = t.tenant_id
         GROUP BY t.tenant_id
         ON CONFLICT DO NOTHING",
    )
    .bind(taken_at)
    .execute(&mut *conn)
    .await?;
    // Snapshots are the one thing the sink deletes: they describe the present, and a month
    // of them is plenty for trends (about 3,000 rows per consumer per day at 30 s).
    for table in ["consumer_snapshots", "admission_snapshots"] {
        sqlx::query(&format!(
            "DELETE FROM analytics.{table} WHERE taken_at < $1 - make_interval(days => $2)"
        ))
        .bind(taken_at)
        .bind(keep_days)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Recounts every rollup from the facts: one row per (rollup, key, column) whose stored
/// value differs from the recount. Empty means every rollup is exact (the test and
/// `caller analytics check` run it).
pub const RECOUNT: &str = include_str!("analytics_recount.sql");

fn saturating_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
