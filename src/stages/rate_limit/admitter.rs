//! Admission cycles: waiting leads become calls within their tenant's limits (ADR 0016).
//!
//! Every `cycle_ms`, each `rate_limit` process:
//!
//! 1. publishes leftovers: admitted rows a crash left unpublished (older than a few seconds);
//! 2. lists tenants with ready leads, least recently served first;
//! 3. for each, in one transaction under that tenant: locks its pacing row with
//!    `FOR UPDATE SKIP LOCKED` (a tenant another process is serving is skipped: exactly one
//!    admitter per tenant at a time, with no coordination), counts its live calls against the
//!    cap, and admits its oldest ready leads while free slots remain and the next pacing slot
//!    (tenant and caller number, GCRA) lies within `horizon_ms`. Each admitted lead gets a
//!    `calls` row in `queued` (which is what the next count sees), its caller id and its
//!    slot; a lead whose window closed meanwhile is deferred to the next one instead;
//! 4. after the commit, publishes each admitted lead's `call.requested` (id derived from the
//!    lead event, so republishing is harmless) and deletes its row once the PubAck arrived.
//!
//! Fairness: every ready tenant gets its turn in every cycle, whatever others have queued,
//! so one tenant's 10,000 leads delay another's single lead by at most one cycle.
//!
//! Concurrency: a call counts from admission (`queued`) until it settles; the provider's own
//! view of "in progress" is a subset of that, so the cap holds at the provider too.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::bus::envelope::{Envelope, Meta};
use crate::bus::runner::Runtime;
use crate::calls::caller_id;
use crate::calls::state::Event;
use crate::calls::window::{Admission, CallingPolicy};
use crate::events::call_flow::CallRequested;
use crate::events::lead_flow::LeadResolved;
use crate::ids::{EventId, PhoneNumber, TenantId};
use crate::settings::AdmissionSettings;
use crate::shutdown::Shutdown;
use crate::stages::call_status::decide_call;
use crate::store::admission::{self, Queued, TENANT_KEY};
use crate::store::calls::{self, NewCall};
use crate::tenancy::directory::TenantSnapshot;

/// Admitted rows older than this without a confirmed publish are republished by any process.
const LEFTOVER_AFTER: chrono::Duration = chrono::Duration::seconds(5);

/// Leftovers republished per cycle.
const LEFTOVER_BATCH: i64 = 500;

/// Most leads one tenant gets admitted in one cycle: bounds how long its pacing row stays
/// locked (late dials wait for it); the next cycle continues.
const MAX_ADMITTED_PER_TENANT: i64 = 500;

/// Runs admission cycles until shutdown. Failures are logged and the next cycle retries.
pub async fn run(runtime: Runtime, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = runtime.stages.admission.clone();
    let mut backoff = settings.cycle();
    loop {
        let started = tokio::time::Instant::now();
        let pause = match cycle(&runtime, &settings).await {
            Ok(()) => {
                backoff = settings.cycle();
                settings.cycle().saturating_sub(started.elapsed())
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "admission cycle failed; retrying"
                );
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One admission cycle over every ready tenant.
pub async fn cycle(runtime: &Runtime, settings: &AdmissionSettings) -> anyhow::Result<()> {
    republish_leftovers(runtime).await?;
    let tenants = {
        let mut tx = runtime.store.begin_platform().await?;
        let tenants = admission::ready_tenants(&mut tx, settings.max_tenants_per_cycle).await?;
        tx.commit().await?;
        tenants
    };
    for tenant in tenants {
        let admitted = admit_tenant(runtime, settings, tenant).await?;
        if !admitted.is_empty() {
            publish(runtime, tenant, &admitted).await?;
        }
    }
    Ok(())
}

/// An admitted lead: its queue row's key and its `call.requested`.
type Admitted = (uuid::Uuid, Envelope<CallRequested>);

/// Admits what the tenant's limits allow now; returns the admitted leads (committed).
async fn admit_tenant(
    runtime: &Runtime,
    settings: &AdmissionSettings,
    tenant: TenantId,
) -> anyhow::Result<Vec<Admitted>> {
    let snapshot = runtime.directory.tenant(tenant).await?;
    let mut tx = runtime.store.begin_tenant(tenant).await?;
    let Some(tenant_tat) = admission::lock_tenant(&mut tx, tenant).await? else {
        // Another process is serving this tenant right now.
        return Ok(Vec::new());
    };
    let Some(snapshot) = snapshot.filter(|snapshot| snapshot.active) else {
        // A disabled (or deleted) client's leads wait; enabling it resumes admission.
        admission::touch_tenant(&mut tx, tenant).await?;
        tx.commit().await?;
        return Ok(Vec::new());
    };
    let cap = i64::from(snapshot.configuration.concurrency_cap);
    let free = cap - admission::live_calls(&mut tx, tenant).await?;
    if free <= 0 {
        admission::touch_tenant(&mut tx, tenant).await?;
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let leads = admission::ready_leads(&mut tx, tenant, free.min(MAX_ADMITTED_PER_TENANT)).await?;
    let keys: Vec<String> = snapshot
        .configuration
        .caller_numbers
        .iter()
        .map(admission::number_key)
        .collect();
    let number_tats: HashMap<String, DateTime<Utc>> =
        admission::lock_pacing(&mut tx, tenant, &keys)
            .await?
            .into_iter()
            .collect();
    let mut plan = Plan::new(settings, &snapshot, tenant_tat, number_tats);
    let mut admitted = Vec::new();
    for lead in leads {
        match plan.place(&lead) {
            Placement::Admit { slot, from } => {
                let parsed: LeadResolved = match serde_json::from_value(lead.lead.clone()) {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        // Only this build writes the column; an unreadable row is a bug, and
                        // leaving it waiting keeps it visible instead of losing it.
                        tracing::error!(%error, lead_event_id = %lead.lead_event_id, "queued lead unreadable; left waiting");
                        continue;
                    }
                };
                let call = NewCall {
                    id: lead.call_id,
                    tenant,
                    to: &parsed.phone,
                    from: &from,
                    crm_contact_id: parsed.external_id.as_deref(),
                    lead: &lead.lead,
                    request_event_id: lead.lead_event_id,
                };
                if !calls::create_queued(&mut tx, &call).await? && lead.attempt_number > 1 {
                    // A scheduled retry of an existing call: it waits for its dial again.
                    readmit(&mut tx, tenant, &lead).await?;
                }
                admission::admit(&mut tx, tenant, lead.lead_event_id, slot, &from).await?;
                admitted.push((
                    lead.lead_event_id.as_uuid(),
                    request(&lead, parsed, from, slot),
                ));
            }
            Placement::Defer { until, reason } => {
                admission::defer(&mut tx, tenant, lead.lead_event_id, until, reason).await?;
            }
            Placement::Later => break,
        }
    }
    admission::set_tat(&mut tx, tenant, TENANT_KEY, plan.tenant_tat).await?;
    for (key, tat) in plan.changed_numbers() {
        admission::set_tat(&mut tx, tenant, key, tat).await?;
    }
    tx.commit().await?;
    if !admitted.is_empty() {
        tracing::debug!(tenant_id = %tenant, admitted = admitted.len(), "admitted");
    }
    Ok(admitted)
}

/// Where one lead goes in this cycle.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Admit it: dial from `from` at `slot`.
    Admit {
        /// The pacing slot.
        slot: DateTime<Utc>,
        /// The caller id.
        from: PhoneNumber,
    },
    /// Its window is closed at its slot: wait until `until`.
    Defer {
        /// The next allowed instant.
        until: DateTime<Utc>,
        /// Why, for operators.
        reason: &'static str,
    },
    /// The next pacing slot is beyond the horizon: stop admitting this tenant this cycle.
    Later,
}

/// One tenant's pacing state during a cycle (GCRA on the tenant and on each caller number).
struct Plan {
    now: DateTime<Utc>,
    horizon_end: DateTime<Utc>,
    policy: Option<CallingPolicy>,
    business_tz: Tz,
    pool: Vec<PhoneNumber>,
    tenant_interval: chrono::Duration,
    number_interval: chrono::Duration,
    tenant_tat: DateTime<Utc>,
    number_tats: HashMap<String, DateTime<Utc>>,
    /// Numbers whose pacing row this cycle moved.
    changed: BTreeSet<String>,
}

impl Plan {
    fn new(
        settings: &AdmissionSettings,
        snapshot: &TenantSnapshot,
        tenant_tat: DateTime<Utc>,
        number_tats: HashMap<String, DateTime<Utc>>,
    ) -> Self {
        let now = Utc::now();
        let config = &snapshot.configuration;
        Self {
            now,
            horizon_end: now + settings.horizon(),
            policy: CallingPolicy::from_config(config, snapshot.timezone).ok(),
            business_tz: snapshot.timezone,
            pool: config.caller_numbers.clone(),
            tenant_interval: settings.interval(config.calls_per_second),
            number_interval: settings.interval(settings.caller_number_calls_per_second),
            tenant_tat,
            number_tats,
            changed: BTreeSet::new(),
        }
    }

    fn place(&mut self, lead: &Queued) -> Placement {
        let Ok(to) = PhoneNumber::parse(&lead.to_number) else {
            // The column's CHECK makes this unreachable; defer rather than lose the lead.
            return Placement::Defer {
                until: self.now + chrono::Duration::days(1),
                reason: "unreadable number",
            };
        };
        let number_tats = &self.number_tats;
        let Some(from) = caller_id::choose(&self.pool, &to, |number| {
            number_tats.get(&admission::number_key(number)).copied()
        })
        .cloned() else {
            return Placement::Defer {
                until: self.now + chrono::Duration::minutes(5),
                reason: "the client has no caller numbers",
            };
        };
        let key = admission::number_key(&from);
        let number_tat = self.number_tats.get(&key).copied().unwrap_or(self.now);
        let slot = self.now.max(self.tenant_tat).max(number_tat);
        if slot > self.horizon_end {
            return Placement::Later;
        }
        let timezone = lead.timezone.parse::<Tz>().unwrap_or(self.business_tz);
        match self
            .policy
            .as_ref()
            .map(|policy| policy.next_allowed(timezone, slot))
        {
            Some(Admission::Now) => {}
            Some(Admission::Defer { until }) => {
                return Placement::Defer {
                    until,
                    reason: "outside the calling window",
                };
            }
            Some(Admission::Never) | None => {
                return Placement::Defer {
                    until: self.now + chrono::Duration::hours(1),
                    reason: "no allowed calling time (check the client's calling windows)",
                };
            }
        }
        self.tenant_tat = slot + self.tenant_interval;
        self.number_tats
            .insert(key.clone(), slot + self.number_interval);
        self.changed.insert(key);
        Placement::Admit { slot, from }
    }

    fn changed_numbers(&self) -> impl Iterator<Item = (&String, DateTime<Utc>)> {
        self.changed
            .iter()
            .filter_map(|key| self.number_tats.get(key).map(|tat| (key, *tat)))
    }
}

/// Returns the `call.requested` of an admitted lead: its id derived from the lead event, so
/// republishing after a crash is harmless.
fn request(
    row: &Queued,
    lead: LeadResolved,
    from: PhoneNumber,
    dial_not_before: DateTime<Utc>,
) -> Envelope<CallRequested> {
    let mut meta = Meta::new::<CallRequested>(row.tenant, "caller/stage/rate_limit");
    meta.event_id = EventId::derived(row.lead_event_id, &[b"rate_limit", b"call.requested"]);
    meta.call_id = Some(row.call_id);
    meta.causation_id = Some(row.lead_event_id);
    Envelope {
        meta,
        payload: CallRequested {
            call_id: row.call_id,
            attempt_number: row.attempt_number.max(1),
            to: lead.phone.clone(),
            from,
            dial_not_before,
            lead,
        },
    }
}

/// Moves a retried call from `retry_scheduled` back to `queued`, so it counts against the
/// tenant's concurrency cap from now on. A call in any other state (cancelled meanwhile) is
/// left alone: the dial stage sees it and does not dial.
async fn readmit(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    lead: &Queued,
) -> Result<(), sqlx::Error> {
    decide_call(
        tx,
        tenant,
        lead.call_id,
        &Event::Readmitted,
        lead.lead_event_id,
    )
    .await?;
    Ok(())
}

/// Returns the `call.requested` of a stored admitted row (a crash's leftover).
fn request_of(row: &Queued) -> anyhow::Result<Envelope<CallRequested>> {
    let lead: LeadResolved = serde_json::from_value(row.lead.clone())?;
    let from = PhoneNumber::parse(row.from_number.as_deref().unwrap_or_default())?;
    let dial_not_before = row
        .dial_not_before
        .ok_or_else(|| anyhow::anyhow!("admitted row without a slot"))?;
    Ok(request(row, lead, from, dial_not_before))
}

/// Publishes admitted leads' requests and awaits every PubAck; returns the keys of the rows
/// that may now be deleted.
async fn send(runtime: &Runtime, admitted: &[Admitted]) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut messages = Vec::with_capacity(admitted.len());
    let mut published = Vec::with_capacity(admitted.len());
    for (key, envelope) in admitted {
        match envelope.to_message() {
            Ok(message) => {
                messages.push(message);
                published.push(*key);
            }
            Err(error) => {
                tracing::error!(%error, lead_event_id = %key, "admitted lead cannot be published; kept for inspection");
            }
        }
    }
    runtime.bus.publish_all(&messages).await?;
    Ok(published)
}

/// Publishes freshly admitted leads, then deletes their rows.
async fn publish(runtime: &Runtime, tenant: TenantId, admitted: &[Admitted]) -> anyhow::Result<()> {
    let published = send(runtime, admitted).await?;
    let mut tx = runtime.store.begin_tenant(tenant).await?;
    admission::delete_published(&mut tx, tenant, &published).await?;
    tx.commit().await?;
    Ok(())
}

/// Publishes admitted rows a crashed process left behind.
async fn republish_leftovers(runtime: &Runtime) -> anyhow::Result<()> {
    let mut tx = runtime.store.begin_platform().await?;
    let rows = admission::unpublished(&mut tx, Utc::now() - LEFTOVER_AFTER, LEFTOVER_BATCH).await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(());
    }
    tracing::info!(
        rows = rows.len(),
        "republishing admitted calls a crash left unpublished"
    );
    let mut by_tenant: HashMap<TenantId, Vec<Admitted>> = HashMap::new();
    for row in rows {
        match request_of(&row) {
            Ok(envelope) => by_tenant
                .entry(row.tenant)
                .or_default()
                .push((row.lead_event_id.as_uuid(), envelope)),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), lead_event_id = %row.lead_event_id, "admitted lead cannot be published; kept for inspection");
            }
        }
    }
    // The rows stay locked by this transaction until they are deleted in it, so no other
    // process sends them at the same time.
    for (tenant, rows) in &by_tenant {
        let published = send(runtime, rows).await?;
        admission::delete_published(&mut tx, *tenant, &published).await?;
    }
    tx.commit().await?;
    Ok(())
}
