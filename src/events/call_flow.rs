//! Calls on the bus: admitted (`call.requested`), reported on by the provider
//! (`call.status_reported`), ended (`call.outcome`).
//!
//! - `rate_limit`'s admission cycle emits [`CallRequested`] once a lead fits its tenant's
//!   concurrency cap, pacing and calling window; the envelope's `ce-callid` is the call.
//! - Telephony callbacks (ingress) emit [`CallStatusReported`], one per verified callback.
//! - `call_status` applies reports to the call state machine and emits [`CallOutcome`] when a
//!   call settles.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Event;
use super::lead_flow::LeadResolved;
use crate::bus::envelope::Meta;
use crate::bus::subjects::{self, TenantToken};
use crate::calls::state::{AnsweredBy, Failure, Outcome, ProviderStatus};
use crate::ids::{AttemptId, CallId, PhoneNumber};

/// A lead admitted as a call: the dial stage places it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallRequested {
    /// The call (`calls.id`), created in `queued` by the admission.
    #[schemars(with = "String")]
    pub call_id: CallId,
    /// Which dial of the call this is, from 1.
    pub attempt_number: u32,
    /// The callee (E.164).
    #[schemars(with = "String")]
    pub to: PhoneNumber,
    /// The caller id chosen from the tenant's pool (same area code when one exists).
    #[schemars(with = "String")]
    pub from: PhoneNumber,
    /// The pacing slot: the dial stage does not place the call before it.
    pub dial_not_before: DateTime<Utc>,
    /// The lead as resolved (name, time zone, CRM ids, custom fields).
    pub lead: LeadResolved,
}

impl Event for CallRequested {
    const TYPE: &'static str = "call.requested";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_requested(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_requested(TenantToken::Any)
    }
}

/// Which provider callback a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// A call progress event (`StatusCallback`).
    Status,
    /// An asynchronous answering machine detection result (`AsyncAmdStatusCallback`).
    MachineDetection,
}

/// A verified provider callback about one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallStatusReported {
    /// The attempt, from the callback URL we gave the provider.
    #[schemars(with = "String")]
    pub attempt_id: AttemptId,
    /// Which callback.
    pub kind: ReportKind,
    /// The provider's call id (`CallSid`).
    pub provider_call_id: String,
    /// `CallStatus`, when the callback carried one.
    #[serde(default)]
    pub status: Option<ProviderStatus>,
    /// `AnsweredBy`, when machine detection decided.
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// `SequenceNumber` of a call progress event.
    #[serde(default)]
    pub sequence_number: Option<u32>,
    /// `CallDuration` of a completed call, in seconds.
    #[serde(default)]
    pub duration_secs: Option<u32>,
    /// `ErrorCode` the provider attached (a failed call), with `ErrorMessage` when given.
    #[serde(default)]
    pub failure: Option<Failure>,
    /// `Timestamp` of the event at the provider, when given.
    #[serde(default)]
    pub provider_time: Option<DateTime<Utc>>,
}

impl Event for CallStatusReported {
    const TYPE: &'static str = "call.status_reported";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_status(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_status(TenantToken::Any)
    }
}

/// How a call attempt ended; the call has settled (`completed`, `failed`, `no_answer`,
/// `busy`, `cancelled`).
///
/// Keyed by `attempt_id`: a later `call.outcome` of the same attempt supersedes an earlier
/// one. That happens once at most, when asynchronous machine detection reports a machine
/// after the call ended (`human` becomes `machine`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CallOutcome {
    /// The call.
    #[schemars(with = "String")]
    pub call_id: CallId,
    /// The attempt that ended.
    #[schemars(with = "String")]
    pub attempt_id: AttemptId,
    /// Which dial of the call it was, from 1.
    pub attempt_number: u32,
    /// The outcome.
    pub outcome: Outcome,
    /// The callee.
    #[schemars(with = "String")]
    pub to: PhoneNumber,
    /// The machine detection result, when detection ran.
    #[serde(default)]
    pub answered_by: Option<AnsweredBy>,
    /// The call's length in seconds, when it was answered.
    #[serde(default)]
    pub duration_secs: Option<u32>,
    /// When the call settled.
    pub ended_at: DateTime<Utc>,
}

impl Event for CallOutcome {
    const TYPE: &'static str = "call.outcome";
    const VERSION: u32 = 1;

    fn subject(meta: &Meta) -> String {
        subjects::calls_outcome(TenantToken::Id(&meta.tenant_id))
    }

    fn subject_pattern() -> String {
        subjects::calls_outcome(TenantToken::Any)
    }
}
