//! The `dedupe` stage: lets the first copy of each lead through, within the dedupe horizon.
//!
//! - Consumes: `lead.received` (`leads.received.<tenant>` on `LEADS`).
//! - Emits: `lead.unique`, the same lead, when it is the first copy of its dedupe key within
//!   `dedupe.horizon_hours` (default 7 days); nothing for a later copy.
//! - Writes: `lead_dedupe` (one row per tenant, scope and key), in the claim's transaction.
//! - External side effects: none.
//!
//! Two layers (HOUSE-STYLE 4.2): ingress publishes every copy of a delivery under one
//! `Nats-Msg-Id`, so the stream's 2-minute duplicate window drops quick retries before they
//! reach this stage; this stage's PostgreSQL record catches the copies that arrive later (a CRM
//! that fires the same webhook again hours later). A lead whose tenant ingress could not tell
//! yet (the platform tenant) is remembered under its tenant key as the scope.
//!
//! Replay: a redelivered input finds its runner claim and re-emits the stored output; a copy
//! with another event id finds the record and is dropped.

use chrono::Utc;

use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::lead::LeadReceived;
use crate::events::lead_flow::LeadUnique;
use crate::ids::TenantId;
use crate::store::lead_dedupe::{self, Seen};

/// Longest dedupe key the record holds (ingress hashes longer provider ids).
const MAX_KEY_LEN: usize = 300;

/// Drops later copies of a lead.
#[derive(Debug)]
pub struct Dedupe {
    horizon: chrono::Duration,
}

impl Stage for Dedupe {
    const NAME: &'static str = "dedupe";
    type Input = LeadReceived;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            horizon: runtime.stages.dedupe.horizon(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<LeadUnique>()]
    }

    async fn handle(
        &self,
        input: &Envelope<LeadReceived>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let lead = &input.payload;
        if lead.dedupe_key.is_empty() || lead.dedupe_key.len() > MAX_KEY_LEN {
            return Err(StageError::rejected(format!(
                "dedupe key must be 1-{MAX_KEY_LEN} bytes, found {}",
                lead.dedupe_key.len()
            )));
        }
        let tenant = input.meta.tenant_id;
        let scope = if tenant == TenantId::PLATFORM {
            lead.tenant_key.scope()
        } else {
            String::new()
        };
        let now = Utc::now();
        let seen = lead_dedupe::record(
            cx.tx,
            tenant,
            &scope,
            &lead.dedupe_key,
            input.meta.event_id,
            now,
            now - self.horizon,
        )
        .await?;
        match seen {
            Seen::First => {
                cx.outbox.push(LeadUnique(lead.clone()))?;
            }
            Seen::Again {
                first_event_id,
                first_seen_at,
            } => {
                tracing::info!(
                    dedupe_key = %lead.dedupe_key,
                    %first_event_id,
                    %first_seen_at,
                    "duplicate lead dropped"
                );
            }
        }
        Ok(())
    }
}
