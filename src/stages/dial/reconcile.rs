//! Reconciling an attempt left in `dialing` without a provider call id.
//!
//! That happens when a dial worker died between recording its intent and recording the
//! provider's answer, or when the provider's answer to the create request was lost. The
//! provider may or may not have the call, so the attempt is never dialed blindly:
//!
//! 1. If the provider's callbacks arrived meanwhile, they carried our attempt id and
//!    `call_status` recorded the call id: the redelivery sees it and stops before coming here.
//! 2. Ask the provider for calls between the same two numbers since the intent was dialed,
//!    ignoring calls already recorded on other attempts. One found: record it; it is ours.
//! 3. None found while the grace period (`reconcile_grace_secs`) since dialing runs: retry
//!    later, giving late callbacks and the provider's list time to show the call.
//! 4. None found after the grace period: the provider never received the create request;
//!    dial now, with the same attempt.

use chrono::Utc;

use super::Dial;
use crate::bus::envelope::Envelope;
use crate::calls::state::{Event, ProviderStatus};
use crate::error::StageError;
use crate::events::call_flow::CallRequested;
use crate::ids::PhoneNumber;
use crate::providers::telephony::Telephony;
use crate::providers::twilio::Twilio;
use crate::stages::StageContext;
use crate::stages::call_status::apply;
use crate::store::calls::{self, Attempt, AttemptFacts};
use crate::tenancy::directory::TenantSnapshot;

impl Dial {
    pub(super) async fn reconcile(
        &self,
        telephony: &Twilio,
        snapshot: &TenantSnapshot,
        input: &Envelope<CallRequested>,
        attempt: Attempt,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let from = attempt
            .from_number
            .as_deref()
            .and_then(|number| PhoneNumber::parse(number).ok())
            .unwrap_or_else(|| input.payload.from.clone());
        let dialed_at = attempt.dialed_at.unwrap_or(attempt.created_at);
        let found = telephony
            .find_calls(&input.payload.to, &from, dialed_at)
            .await?;
        let ids: Vec<String> = found
            .iter()
            .map(|call| call.provider_call_id.clone())
            .collect();
        let known = calls::known_provider_call_ids(cx.tx, super::PROVIDER, &ids).await?;
        // The list is newest first; the oldest unclaimed call is the one our create placed.
        if let Some(call) = found
            .into_iter()
            .rev()
            .find(|call| !known.contains(&call.provider_call_id))
        {
            tracing::info!(attempt_id = %attempt.id, "reconciled: the provider has the call");
            calls::set_provider_call_id(cx.tx, attempt.id, &call.provider_call_id).await?;
            let accepted = Event::ProviderAccepted {
                provider_call_id: call.provider_call_id.clone(),
            };
            let facts = AttemptFacts {
                answered_by: call.answered_by,
                duration_secs: call.duration_secs,
                failure: None,
            };
            let (attempt_state, call_state) =
                apply(cx, &attempt, &accepted, &facts, input.meta.event_id).await?;
            // Catch up with what the provider already knows; callbacks may follow, and the
            // state machine ignores what is stale or repeated.
            if call.status != ProviderStatus::Queued {
                let mut caught_up = attempt.clone();
                caught_up.state = attempt_state;
                caught_up.call_state = call_state;
                apply(
                    cx,
                    &caught_up,
                    &Event::Status(call.status),
                    &facts,
                    input.meta.event_id,
                )
                .await?;
            }
            return Ok(());
        }
        let grace = chrono::Duration::seconds(
            i64::try_from(self.telephony.reconcile_grace_secs).unwrap_or(15),
        );
        let waited = Utc::now() - dialed_at;
        if waited < grace {
            let remaining = (grace - waited).to_std().unwrap_or_default();
            return Err(StageError::Retryable {
                reason: "dial unconfirmed; waiting for the provider to show the call".to_owned(),
                after: Some(remaining.max(std::time::Duration::from_millis(200))),
            });
        }
        tracing::info!(attempt_id = %attempt.id, "reconciled: the provider never had the call; dialing");
        let mut tx = self.store.begin_tenant(input.meta.tenant_id).await?;
        calls::mark_dialed(&mut tx, attempt.id).await?;
        tx.commit().await?;
        self.wait_for_slot(snapshot, &input.payload).await?;
        self.place(telephony, snapshot, input, attempt.id, cx).await
    }
}
