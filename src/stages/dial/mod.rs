//! The `dial` stage: an admitted call is placed with the tenant's telephony provider, never
//! twice (the dial protocol of ARCHITECTURE.md section 5).
//!
//! - Consumes: `call.requested` (`calls.requested.<tenant>` on `CALLS`).
//! - Emits: `call.outcome` only when the provider refuses the call for good (the call then
//!   failed without ringing); every other outcome comes from the provider's callbacks
//!   through `call_status`.
//! - Protocol, per input event:
//!   1. an attempt already recorded for this event with a provider call id: nothing to do;
//!   2. one in `dialing` without a provider id (a crash, or an unconfirmed create): reconcile
//!      ([`reconcile`]) and never dial blindly;
//!   3. otherwise record the intent (`call_attempts` row in `dialing`, committed in its own
//!      transaction), wait for the pacing slot (taking a fresh one if the stage is late), ask
//!      the provider, and record its call id in the claim's transaction.
//! - Cancellation: checked before a fresh dial: a cancelled call, a cancelled scheduled job
//!   (cancelled after it fired), a number put on a do-not-call list or a disabled client is
//!   not dialed; the call moves to `cancelled`.
//! - Calling window: checked again before a fresh dial; a request delivered after its window
//!   closed (an outage) waits on the stream until the window opens, never dialed outside it.
//! - Errors: a transient provider failure (429, 5xx, connection refused) deletes the intent
//!   (the provider did not act) and retries with backoff; a permanent one (21211 invalid
//!   number, 21215 no geographic permission) fails the call with code and reason, not
//!   retried; rejected credentials (20003) dead-letter the request with a reason the tenant
//!   sees (replay it after reconnecting Twilio) and log an error.

mod reconcile;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::call_status::{apply, decide_call};
use super::{Stage, StageContext};
use crate::bus::envelope::Envelope;
use crate::bus::runner::Runtime;
use crate::calls::state::{AttemptState, CallState, Event, Failure};
use crate::calls::stream_token::{StreamClaims, StreamTokens};
use crate::calls::twiml;
use crate::calls::window::{Admission, CallingPolicy};
use crate::error::StageError;
use crate::events::EventSpec;
use crate::events::call_flow::{CallOutcome, CallRequested};
use crate::ids::{AttemptId, EventId, TenantId};
use crate::providers::telephony::{CallInstructions, PlaceCall, Telephony, TelephonyError};
use crate::providers::twilio::Twilio;
use crate::settings::{AdmissionSettings, TelephonySettings};
use crate::store::Store;
use crate::store::admission::{self, TENANT_KEY};
use crate::store::calls::{self, AttemptFacts, NewAttempt};
use crate::store::{call_blocklist, scheduled_jobs};
use crate::tenancy::directory::{Directory, TenantSnapshot};

/// The provider name stored on attempts.
const PROVIDER: &str = "twilio";

/// Connections for the transactions a handler commits on its own (intent, fresh pacing
/// slot, forgetting an intent); each is a few statements long.
const SIDE_CONNECTIONS: u32 = 8;

/// Places admitted calls.
#[derive(Debug)]
pub struct Dial {
    directory: Directory,
    store: Store,
    http: reqwest::Client,
    telephony: TelephonySettings,
    admission: AdmissionSettings,
    /// Signs the media stream's parameters (with the keyring; without one no call can be
    /// placed anyway, since the tenant's Twilio token cannot be opened).
    stream_tokens: Option<StreamTokens>,
}

/// Returns the attempt a `call.requested` event becomes: derived from it, so replays agree.
#[must_use]
pub fn attempt_id_of(input_event_id: EventId) -> AttemptId {
    AttemptId::from_uuid(EventId::derived(input_event_id, &[b"attempt"]).as_uuid())
}

impl Stage for Dial {
    const NAME: &'static str = "dial";
    type Input = CallRequested;

    fn build(runtime: &Runtime) -> anyhow::Result<Self> {
        Ok(Self {
            directory: runtime.directory.clone(),
            // Intents and pacing are written while the claim's connection is held.
            store: runtime.store.detached(SIDE_CONNECTIONS),
            http: crate::providers::http::client(),
            telephony: runtime.stages.telephony.clone(),
            admission: runtime.stages.admission.clone(),
            stream_tokens: runtime
                .directory
                .keyring()
                .map(|keyring| StreamTokens::from_keyring(keyring)),
        })
    }

    fn outputs() -> Vec<EventSpec> {
        vec![EventSpec::of::<CallOutcome>()]
    }

    async fn handle(
        &self,
        input: &Envelope<CallRequested>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let Some(snapshot) = self.directory.tenant(tenant).await? else {
            return Err(StageError::rejected(format!(
                "client {tenant} does not exist"
            )));
        };
        let telephony = self.telephony_of(&snapshot)?;
        // Duplicate deliveries of one event are serialized by the runner's claim, so this
        // read cannot race another handler of the same event.
        if let Some(attempt) = calls::attempt_by_input(cx.tx, tenant, input.meta.event_id).await? {
            if attempt.provider_call_id.is_some() || attempt.state != AttemptState::Dialing {
                return Ok(());
            }
            return self
                .reconcile(&telephony, &snapshot, input, attempt, cx)
                .await;
        }
        if let Some(reason) = cancelled(cx, &snapshot, &input.payload).await? {
            cancel_call(cx, tenant, &input.payload, input.meta.event_id, &reason).await?;
            return Ok(());
        }
        check_window(&snapshot, &input.payload)?;
        let attempt_id = attempt_id_of(input.meta.event_id);
        let intent = NewAttempt {
            id: attempt_id,
            call_id: input.payload.call_id,
            tenant,
            attempt_number: input.payload.attempt_number,
            input_event_id: input.meta.event_id,
            provider: PROVIDER,
            from: &input.payload.from,
        };
        let mut tx = self.store.begin_tenant(tenant).await?;
        calls::insert_intent(&mut tx, &intent).await?;
        tx.commit().await?;
        self.fault_point("after_intent").await;
        self.wait_for_slot(&snapshot, &input.payload).await?;
        self.place(&telephony, &snapshot, input, attempt_id, cx)
            .await
    }
}

impl Dial {
    fn telephony_of(&self, snapshot: &TenantSnapshot) -> Result<Twilio, StageError> {
        Twilio::for_tenant(snapshot, self.http.clone()).map_err(StageError::rejected)
    }

    /// Waits until the call may start: its admission slot, or, when this stage is later than
    /// `late_tolerance_ms` after it (it was busy, or the message was redelivered), a fresh
    /// slot from the same pacing rows. Called right before the provider request, so that
    /// spacing holds where the provider sees it: a backlog is never released as a burst.
    async fn wait_for_slot(
        &self,
        snapshot: &TenantSnapshot,
        request: &CallRequested,
    ) -> Result<(), StageError> {
        let tolerance = chrono::Duration::milliseconds(
            i64::try_from(self.telephony.late_tolerance_ms).unwrap_or(25),
        );
        let mut slot = request.dial_not_before;
        // Taking a fresh slot can itself be slow (a lock wait): check again after each.
        for _ in 0..5 {
            sleep_until(slot).await;
            if Utc::now() <= slot + tolerance {
                return Ok(());
            }
            slot = self.fresh_slot(snapshot, request).await?;
        }
        Ok(())
    }

    /// Reserves the next slot of the tenant's and the caller number's pacing rows.
    async fn fresh_slot(
        &self,
        snapshot: &TenantSnapshot,
        request: &CallRequested,
    ) -> Result<DateTime<Utc>, StageError> {
        let tenant = snapshot.id;
        let number_key = admission::number_key(&request.from);
        let keys = [TENANT_KEY.to_owned(), number_key.clone()];
        let mut tx = self.store.begin_tenant(tenant).await?;
        let tats = admission::lock_pacing(&mut tx, tenant, &keys).await?;
        // Read the clock after the lock: the wait for it must not make the slot stale.
        let slot = tats
            .iter()
            .map(|(_, tat)| *tat)
            .fold(Utc::now(), DateTime::max);
        let tenant_interval = self
            .admission
            .interval(snapshot.configuration.calls_per_second);
        let number_interval = self
            .admission
            .interval(self.admission.caller_number_calls_per_second);
        admission::set_tat(&mut tx, tenant, TENANT_KEY, slot + tenant_interval).await?;
        admission::set_tat(&mut tx, tenant, &number_key, slot + number_interval).await?;
        tx.commit().await?;
        Ok(slot)
    }

    /// Stops here forever when the test-only fault point `point` is configured, so that a
    /// test can SIGKILL the process at exactly this step of the protocol.
    async fn fault_point(&self, point: &str) {
        if self.telephony.fault_pause_at == point {
            tracing::error!(point, "fault point reached; pausing until killed");
            std::future::pending::<()>().await;
        }
    }

    /// Asks the provider to place the attempt's call and records the answer.
    async fn place(
        &self,
        telephony: &Twilio,
        snapshot: &TenantSnapshot,
        input: &Envelope<CallRequested>,
        attempt_id: AttemptId,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let tenant = input.meta.tenant_id;
        let request = self.place_request(snapshot, input, attempt_id);
        match telephony.place_call(&request).await {
            Ok(placed) => {
                self.fault_point("after_provider").await;
                let Some(attempt) = calls::lock_attempt(cx.tx, tenant, attempt_id).await? else {
                    return Err(StageError::retryable("the attempt vanished after dialing"));
                };
                if !calls::set_provider_call_id(cx.tx, attempt_id, &placed.provider_call_id).await?
                {
                    // A callback recorded it first; nothing more to do.
                    return Ok(());
                }
                let accepted = Event::ProviderAccepted {
                    provider_call_id: placed.provider_call_id,
                };
                apply(
                    cx,
                    &attempt,
                    &accepted,
                    &AttemptFacts::default(),
                    input.meta.event_id,
                )
                .await?;
                Ok(())
            }
            Err(error @ TelephonyError::Transient { .. }) => {
                self.forget_intent(tenant, attempt_id).await;
                Err(error.into())
            }
            Err(TelephonyError::Permanent { code, reason }) => {
                let Some(attempt) = calls::lock_attempt(cx.tx, tenant, attempt_id).await? else {
                    return Err(StageError::retryable("the attempt vanished after dialing"));
                };
                tracing::warn!(tenant_id = %tenant, ?code, %reason, "the provider refused the call for good");
                let failure = Failure {
                    code,
                    reason: Some(reason),
                };
                let facts = AttemptFacts {
                    failure: Some(failure.clone()),
                    ..AttemptFacts::default()
                };
                apply(
                    cx,
                    &attempt,
                    &Event::PermanentError(failure),
                    &facts,
                    input.meta.event_id,
                )
                .await?;
                Ok(())
            }
            Err(error @ (TelephonyError::Unauthorized { .. } | TelephonyError::NotFound)) => {
                self.forget_intent(tenant, attempt_id).await;
                tracing::error!(tenant_id = %tenant, %error, "telephony credentials rejected; the client must reconnect Twilio");
                Err(StageError::rejected(format!(
                    "Twilio rejected the client's credentials ({error}); reconnect Twilio, then \
                     replay this dead letter"
                )))
            }
            Err(TelephonyError::Unconfirmed { reason }) => {
                // The provider may have the call: the redelivery reconciles after the grace.
                tracing::warn!(tenant_id = %tenant, %reason, "create call unconfirmed; reconciling");
                Err(StageError::Retryable {
                    reason: format!("create call unconfirmed: {reason}"),
                    after: Some(std::time::Duration::from_secs(
                        self.telephony.reconcile_grace_secs.max(1),
                    )),
                })
            }
        }
    }

    /// Deletes an intent the provider did not act on; a failure only means the redelivery
    /// reconciles instead of dialing at once.
    async fn forget_intent(&self, tenant: TenantId, attempt_id: AttemptId) {
        let result = async {
            let mut tx = self.store.begin_tenant(tenant).await?;
            calls::delete_intent(&mut tx, attempt_id).await?;
            tx.commit().await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not delete an unplaced intent; the retry reconciles");
        }
    }

    fn place_request(
        &self,
        snapshot: &TenantSnapshot,
        input: &Envelope<CallRequested>,
        attempt_id: AttemptId,
    ) -> PlaceCall {
        let tenant = input.meta.tenant_id;
        let call_id = input.payload.call_id.to_string();
        let attempt = attempt_id.to_string();
        let tenant_text = tenant.to_string();
        let base = self.telephony.public_base_url.trim_end_matches('/');
        let callbacks = format!("{base}/webhooks/{tenant}/twilio/calls/{attempt}");
        let configuration = &snapshot.configuration;
        let mut parameters = vec![
            ("tenant_id", tenant_text.as_str()),
            ("call_id", call_id.as_str()),
            ("attempt_id", attempt.as_str()),
        ];
        // The stream opens when the callee answers: within the ring timeout, plus margin.
        let expires = Utc::now()
            + chrono::Duration::seconds(i64::from(self.telephony.ring_timeout_secs))
            + chrono::Duration::minutes(5);
        let token = self.stream_tokens.as_ref().map(|tokens| {
            let claims = StreamClaims {
                tenant,
                call: input.payload.call_id,
                attempt: attempt_id,
            };
            tokens.issue(&claims, expires)
        });
        if let Some(token) = &token {
            parameters.push(("token", token.as_str()));
        }
        PlaceCall {
            to: input.payload.to.clone(),
            from: input.payload.from.clone(),
            instructions: CallInstructions::Twiml(twiml::connect_stream(
                &self.telephony.media_stream_url,
                &parameters,
            )),
            status_callback: format!("{callbacks}/status"),
            machine_detection_callback: configuration
                .answering_machine_detection
                .then(|| format!("{callbacks}/amd")),
            // `record_calls` is honoured by the media gateway, which seals both channels at rest
            // (ADR 0018); a second, unencrypted copy at the provider would defeat that.
            record: false,
            timeout_secs: self.telephony.ring_timeout_secs,
        }
    }
}

/// Returns why a requested call must not be dialed any more, if it must not: it was
/// cancelled, the scheduled job it came from was cancelled after it fired (a booking, an
/// opt-out, the API), its number was put on a do-not-call list, or its client was disabled.
async fn cancelled(
    cx: &mut StageContext<'_>,
    snapshot: &TenantSnapshot,
    request: &CallRequested,
) -> Result<Option<String>, StageError> {
    let tenant = snapshot.id;
    if !snapshot.active {
        return Ok(Some("the client is disabled".to_owned()));
    }
    if calls::call_state(cx.tx, tenant, request.call_id).await? == Some(CallState::Cancelled) {
        return Ok(Some("the call was cancelled".to_owned()));
    }
    if let Some(schedule) = &request.lead.schedule
        && let Some((state, reason)) =
            scheduled_jobs::lock_state(cx.tx, tenant, schedule.job_id).await?
        && state == "cancelled"
    {
        return Ok(Some(format!(
            "its scheduled attempt was cancelled ({})",
            reason.unwrap_or_default()
        )));
    }
    let lists = call_blocklist::lists_of(cx.tx, tenant, &request.to).await?;
    if let Some(list) = lists.first() {
        return Ok(Some(format!("the number is on the {} list", list.as_str())));
    }
    Ok(None)
}

/// Moves a call that will not be dialed to `cancelled` (from `queued`; a call already
/// cancelled stays so).
async fn cancel_call(
    cx: &mut StageContext<'_>,
    tenant: TenantId,
    request: &CallRequested,
    cause: EventId,
    reason: &str,
) -> Result<(), StageError> {
    tracing::info!(tenant_id = %tenant, call_id = %request.call_id, %reason, "call not dialed");
    if decide_call(cx.tx, tenant, request.call_id, &Event::CancelledByUs, cause).await? {
        calls::set_outcome(cx.tx, request.call_id, "cancelled").await?;
    }
    Ok(())
}

/// Refuses to start a call outside the callee's calling window. Admission checked it at the
/// slot, but a request delivered late (an outage, a long backlog) may arrive after the window
/// closed: it is put back on the stream until the window opens (one delivery, NAK with that
/// delay), never dialed at 21:00 or later.
fn check_window(snapshot: &TenantSnapshot, request: &CallRequested) -> Result<(), StageError> {
    let policy = CallingPolicy::from_config(&snapshot.configuration, snapshot.timezone)
        .map_err(|error| StageError::rejected(format!("unusable calling windows: {error}")))?;
    let timezone = request
        .lead
        .timezone
        .parse::<Tz>()
        .unwrap_or(snapshot.timezone);
    let now = Utc::now();
    match policy.next_allowed(timezone, now) {
        Admission::Now => Ok(()),
        Admission::Defer { until } => Err(StageError::Retryable {
            reason: "outside the calling window; waiting for it to open".to_owned(),
            after: Some((until - now).to_std().unwrap_or_default()),
        }),
        Admission::Never => Err(StageError::rejected(
            "no allowed calling time within 14 days (check the client's calling windows)",
        )),
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}
