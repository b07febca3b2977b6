//! The `converse` stage: answered calls become conversations between the caller and the
//! tenant's voice agent (ARCHITECTURE.md section 6, ADR 0018).
//!
//! - Consumes: `call.answered` (`calls.answered.<tenant>` on `CALLS`), from the media gateway.
//! - Writes: one `conversations` row (state `waiting`) with the start context
//!   ([`context::SessionContext`]: agent, variant, variables such as the lead's name, the
//!   business, free slots and the previous call's summary), in the claim's transaction. The
//!   message is acked then: a call lasts minutes, and ownership is a lease, not an unacked
//!   message.
//! - Runs beside the consumer ([`supervisor`]): every worker claims waiting sessions and
//!   sessions whose owner's lease ran out, up to `converse.max_sessions` (its capacity), and
//!   bridges each ([`session`]) until the call ends: caller audio → engine, agent audio →
//!   gateway, barge-in → `clear`, turns and tool calls ([`tools`]) → database.
//! - Emits (directly, after the end is stored; [`relay`]): `conversation.ended`.
//! - Rejects (dead letter): the client or the attempt does not exist; the lead is unreadable;
//!   the client has no voice agent.

pub mod context;
pub mod engines;
pub mod relay;
pub mod session;
pub mod supervisor;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;

use super::{Stage, StageContext};
use crate::booking::lead_updates::PendingLeadUpdates;
use crate::booking::{Calendar, Calendars, SlotQuery};
use crate::bus::Bus;
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::conversation::{CallAnswered, ConversationEnded};
use crate::events::lead_flow::LeadResolved;
use crate::settings::ConverseSettings;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::conversations::{self, NewConversation};
use crate::tenancy::directory::Directory;
use crate::voice::engine::VoiceEngine;
use context::{ContextInputs, SLOT_LOOKAHEAD, SessionContext};
use tools::Tools;

/// How long opening a conversation waits for the calendar's free slots.
const SLOTS_TIMEOUT: Duration = Duration::from_secs(2);

/// Slots named in the opening context.
const OPENING_SLOTS: usize = 3;

/// Opens conversations for answered calls.
pub struct Converse {
    directory: Directory,
    calendar: Calendars,
}

impl std::fmt::Debug for Converse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Converse").finish_non_exhaustive()
    }
}

/// What sessions share in one worker process.
pub struct Deps {
    /// The bus (media subjects and `conversation.ended`).
    pub bus: Bus,
    /// The database.
    pub store: Store,
    /// Tenant snapshots (engine credentials, telephony accounts).
    pub directory: Directory,
    /// Tuning.
    pub settings: ConverseSettings,
    /// Agent tools.
    pub tools: Tools,
    /// Outbound HTTP (engines, telephony).
    pub http: reqwest::Client,
    /// This worker's id in `conversations.owner`.
    pub owner: String,
    /// The process's shutdown signal.
    pub shutdown: Shutdown,
}

impl Deps {
    /// Builds the worker's shared parts from the process runtime.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(runtime: &Runtime, shutdown: Shutdown) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()?;
        let settings = runtime.stages.converse.clone();
        let tools = Tools {
            calendar: Arc::new(runtime.calendars.clone()),
            leads: Arc::new(PendingLeadUpdates::new(runtime.store.clone())),
            store: runtime.store.clone(),
            directory: runtime.directory.clone(),
            http: http.clone(),
            timeout: Duration::from_millis(settings.tool_timeout_ms),
            public_base_url: runtime.stages.telephony.public_base_url.clone(),
        };
        Ok(Self {
            bus: runtime.bus.clone(),
            store: runtime.store.clone(),
            directory: runtime.directory.clone(),
            settings,
            tools,
            http,
            owner: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            shutdown,
        })
    }

    /// The tenant's voice engine.
    ///
    /// # Errors
    ///
    /// A sentence naming what the tenant lacks.
    pub async fn engine(
        &self,
        tenant: crate::ids::TenantId,
    ) -> Result<Arc<dyn VoiceEngine>, String> {
        let snapshot = self
            .directory
            .existing(tenant)
            .await
            .map_err(|error| error.to_string())?;
        engines::for_tenant(&snapshot, self.http.clone())
    }
}

impl Stage for Converse {
    const NAME: &'static str = "converse";
    type Input = CallAnswered;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
            calendar: runtime.calendars.clone(),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        // Emitted by sessions (relay), not by the handler; declared so the pipeline graph
        // knows where it comes from.
        vec![EventSpec::of::<ConversationEnded>()]
    }

    fn companion(
        runtime: &Runtime,
        shutdown: Shutdown,
    ) -> Option<BoxFuture<'static, anyhow::Result<()>>> {
        let deps = match Deps::new(runtime, shutdown) {
            Ok(deps) => Arc::new(deps),
            Err(error) => return Some(Box::pin(async move { Err(error) })),
        };
        Some(Box::pin(supervisor::run(deps)))
    }

    async fn handle(
        &self,
        input: &Envelope<CallAnswered>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let answered = &input.payload;
        let Some(snapshot) = self.directory.tenant(tenant).await? else {
            return Err(StageError::rejected(format!(
                "client {tenant} does not exist"
            )));
        };
        let row: Option<(serde_json::Value, i32)> = sqlx::query_as(
            "SELECT k.lead, a.attempt_number FROM call_attempts a JOIN calls k ON k.id = a.call_id \
             WHERE a.id = $1 AND a.call_id = $2 AND a.tenant_id = $3",
        )
        .bind(answered.attempt_id.as_uuid())
        .bind(answered.call_id.as_uuid())
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *cx.tx)
        .await?;
        let Some((lead, attempt_number)) = row else {
            return Err(StageError::rejected(format!(
                "attempt {} of call {} does not exist",
                answered.attempt_id, answered.call_id
            )));
        };
        let lead: LeadResolved = serde_json::from_value(lead).map_err(|error| {
            StageError::rejected(format!("the stored lead is unreadable: {error}"))
        })?;
        let now = Utc::now();
        let from = now + chrono::TimeDelta::hours(1);
        let zone = lead.timezone.parse().unwrap_or(snapshot.timezone);
        let slots = match SlotQuery::new(from, from + SLOT_LOOKAHEAD, OPENING_SLOTS, zone, now) {
            Ok(query) => {
                tokio::time::timeout(SLOTS_TIMEOUT, self.calendar.free_slots(tenant, query)).await
            }
            Err(error) => Ok(Err(error)),
        };
        let free_slots = match slots {
            Ok(Ok(slots)) => slots,
            Ok(Err(error)) => {
                tracing::info!(%error, "no free slots for the opening context");
                Vec::new()
            }
            Err(_elapsed) => {
                tracing::warn!("the calendar was too slow for the opening context");
                Vec::new()
            }
        };
        let previous_summary =
            conversations::previous_summary(cx.tx, tenant, lead.phone.as_str(), answered.call_id)
                .await?;
        let context = SessionContext::build(&ContextInputs {
            snapshot: &snapshot,
            call: answered.call_id,
            lead: &lead,
            attempt_number,
            free_slots: &free_slots,
            previous_summary,
            now,
        })
        .map_err(|error| StageError::rejected(error.0))?;
        let context = serde_json::to_value(&context)
            .map_err(|error| StageError::rejected(format!("context does not encode: {error}")))?;
        conversations::open(
            cx.tx,
            &NewConversation {
                tenant,
                call: answered.call_id,
                attempt: answered.attempt_id,
                answered_event_id: input.meta.event_id.as_uuid(),
                provider_call_id: &answered.provider_call_id,
                stream_id: &answered.stream_id,
                context,
            },
        )
        .await?;
        Ok(())
    }
}
