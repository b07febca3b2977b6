//! The call state machine: pure transitions of `calls.state` and `call_attempts.state`.
//!
//! No I/O and no clock. The dial stage and the status-callback handler call
//! [`CallState::apply`] or [`AttemptState::apply`] with the state they read, then write the
//! result with a compare-and-set (`UPDATE … SET state = $to WHERE id = $id AND state = $from`)
//! and append a `call_state_transitions` row in the same transaction. A lost compare-and-set
//! means someone else moved the row first: read it again and apply again.
//!
//! # Events
//!
//! An [`Event`] is either a provider fact (a status callback's `CallStatus`, an answering
//! machine detection `AnsweredBy`, the provider accepting or refusing the create request) or an
//! internal decision (intent recorded, retry scheduled, media dropped, recovery, cancel).
//! Provider facts arrive late, twice and out of order (Twilio: "there is no guarantee they will
//! arrive in the same order"), so they only move a state *up* the ranking below. Internal
//! decisions are made one at a time by our own code, so they are explicit edges instead.
//!
//! # Ranking
//!
//! A provider fact names a target state. It moves the state only if the target ranks strictly
//! higher than the current state: a late `ringing` after `in-progress` is stale, a second
//! `completed` is a duplicate, and Twilio skipping events (`completed` straight after
//! `initiated`) is fine.
//!
//! | rank | `calls.state` | `call_attempts.state` |
//! |---|---|---|
//! | 0 | `queued` | `dialing`, `unknown` |
//! | 1 | `initiated` | `initiated` |
//! | 2 | `ringing` | `ringing` |
//! | 3 | `connected` | `answered` |
//! | 4 | `dropped`, `recovering`, `resumed` | `completed`, `failed`, `no_answer`, `busy`, `cancelled` |
//! | 5 | `completed`, `failed`, `no_answer`, `busy`, `cancelled`, `retry_scheduled` | `voicemail` |
//!
//! Targets of provider facts:
//!
//! | fact | call | attempt |
//! |---|---|---|
//! | provider accepted, `queued`, `initiated` | `initiated` | `initiated` |
//! | `ringing` | `ringing` | `ringing` |
//! | `in-progress`; `AnsweredBy` `human` or `unknown` | `connected` | `answered` |
//! | `AnsweredBy` `machine_*` or `fax` | `connected` | `voicemail` |
//! | `completed` | `completed` | `completed` |
//! | `busy`, `no-answer`, `canceled` | `busy`, `no_answer`, `cancelled` | same |
//! | `failed`, permanent provider error | `failed` | `failed` |
//!
//! Absorbing states:
//!
//! - Call: every rank-5 state ignores provider facts. `completed` and `cancelled` are terminal
//!   and ignore everything but one internal edge: the scheduler retries a call a machine
//!   answered (`completed` → `retry_scheduled`). `no_answer`, `busy` and `failed` are *settled*: final unless the
//!   scheduler decides on a retry (the seed retries technical failures too), and
//!   `retry_scheduled` waits for the next dial or a cancel.
//! - Attempt: `completed`, `failed`, `no_answer`, `busy`, `cancelled` and `voicemail` are
//!   final and ignore everything, with one exception: a machine `AnsweredBy` turns `completed`
//!   into `voicemail`, because the asynchronous AMD callback may arrive after `completed`.
//!   Final means the outcome is known, not that the line is closed: an attempt is `voicemail`
//!   as soon as the machine answers, and its terminal status callback
//!   ([`ProviderStatus::is_terminal`]) still carries the duration.
//!
//! # Internal edges
//!
//! | event | call | attempt |
//! |---|---|---|
//! | dial requested (intent recorded) | `queued`, `retry_scheduled` → `initiated` | duplicate in `dialing` |
//! | dial unconfirmed | — | `dialing` → `unknown` |
//! | retry scheduled | `no_answer`, `busy`, `failed`, `initiated`, `completed` (voicemail) → `retry_scheduled` | — |
//! | readmitted (the retry's admission) | `retry_scheduled` → `queued` | — |
//! | media dropped | `initiated`, `ringing`, `connected`, `resumed` → `dropped` | — |
//! | recovery started | `dropped` → `recovering` | — |
//! | resumed | `recovering` → `resumed` | — |
//! | recovery failed | `recovering` → `failed` | — |
//! | cancelled by us | `queued`, `initiated`, `ringing`, `retry_scheduled` → `cancelled` | `dialing`, `unknown`, `initiated`, `ringing` → `cancelled` |
//!
//! A media drop may precede the `in-progress` callback (the media socket opens when the call
//! is answered), hence `initiated` and `ringing` as sources. `initiated` → `retry_scheduled`
//! exists for an attempt left `unknown` (ARCHITECTURE.md 5: "under doubt, a lead gets a
//! delayed retry"). An answered call is hung up, not cancelled: its `completed` settles it.
//!
//! # Contract for callers
//!
//! - Provider facts MUST be applied to the call only when they belong to its current
//!   (highest-numbered) attempt: after `retry_scheduled` → `initiated` a late callback of the
//!   previous attempt would otherwise move the new one.
//! - A callback carrying both `CallStatus` and `AnsweredBy` is two events; either order gives
//!   the same final state.
//! - A [`Transition::Ignore`] is not an error. [`IgnoreReason::NotAllowed`] is worth a
//!   warning: it means our own code asked for an edge that does not exist.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Error returned when text is not one of the names of a state, status or AMD result.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a {kind}")]
pub struct UnknownName {
    kind: &'static str,
    input: String,
}

/// `Display` as the name, and `FromStr` from it (an [`UnknownName`] naming `$kind`), for an
/// enum with `ALL` and `as_str`.
macro_rules! named {
    ($type:ty, $kind:literal) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = UnknownName;

            fn from_str(input: &str) -> Result<Self, Self::Err> {
                parse_name(&Self::ALL, Self::as_str, $kind, input)
            }
        }
    };
}

fn parse_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    kind: &'static str,
    input: &str,
) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|candidate| name(*candidate) == input)
        .ok_or_else(|| UnknownName {
            kind,
            input: input.chars().take(64).collect(),
        })
}

/// The state of a call (`calls.state`): one logical call to a lead, over all its attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Waiting to be dialed.
    Queued,
    /// The dial stage recorded its intent; the provider may or may not have the call yet.
    Initiated,
    /// The callee's phone is ringing.
    Ringing,
    /// Answered, by a person or a machine.
    Connected,
    /// Ended normally after an answer. Terminal.
    Completed,
    /// Could not be placed, or failed for good. Settled: final unless a retry is scheduled.
    Failed,
    /// Rang out unanswered. Settled: final unless a retry is scheduled.
    NoAnswer,
    /// The line was busy. Settled: final unless a retry is scheduled.
    Busy,
    /// The scheduler decided on another attempt; the next dial moves it to `initiated`.
    RetryScheduled,
    /// The media connection was lost while the call was live.
    Dropped,
    /// Trying to restore the media connection.
    Recovering,
    /// The media connection was restored; the conversation goes on.
    Resumed,
    /// Cancelled by us (or at our request) before it was answered. Terminal.
    Cancelled,
}

impl CallState {
    /// Every state, in the order of the migration's CHECK list.
    pub const ALL: [Self; 13] = [
        Self::Queued,
        Self::Initiated,
        Self::Ringing,
        Self::Connected,
        Self::Completed,
        Self::Failed,
        Self::NoAnswer,
        Self::Busy,
        Self::RetryScheduled,
        Self::Dropped,
        Self::Recovering,
        Self::Resumed,
        Self::Cancelled,
    ];

    /// Returns the stored name, e.g. `no_answer`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Connected => "connected",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::RetryScheduled => "retry_scheduled",
            Self::Dropped => "dropped",
            Self::Recovering => "recovering",
            Self::Resumed => "resumed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Returns true for `completed` and `cancelled`, which no event leaves.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// Returns true for the states that ignore provider facts: the terminal ones, `failed`,
    /// `no_answer`, `busy` (final unless the scheduler retries) and `retry_scheduled`.
    #[must_use]
    pub const fn is_settled(self) -> bool {
        self.rank() == 5
    }

    /// Returns the rank of the module docs' table.
    const fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Initiated => 1,
            Self::Ringing => 2,
            Self::Connected => 3,
            Self::Dropped | Self::Recovering | Self::Resumed => 4,
            Self::Completed
            | Self::Failed
            | Self::NoAnswer
            | Self::Busy
            | Self::RetryScheduled
            | Self::Cancelled => 5,
        }
    }

    /// Returns what `event` does to a call in this state.
    pub fn apply(self, event: &Event) -> Transition<Self> {
        use CallState as S;
        match event {
            Event::DialRequested => self.internal(&[S::Queued, S::RetryScheduled], S::Initiated),
            Event::ProviderAccepted { .. } => self.by_rank(S::Initiated),
            Event::Status(status) => self.by_rank(match status {
                ProviderStatus::Queued | ProviderStatus::Initiated => S::Initiated,
                ProviderStatus::Ringing => S::Ringing,
                ProviderStatus::InProgress => S::Connected,
                ProviderStatus::Completed => S::Completed,
                ProviderStatus::Busy => S::Busy,
                ProviderStatus::NoAnswer => S::NoAnswer,
                ProviderStatus::Failed => S::Failed,
                ProviderStatus::Canceled => S::Cancelled,
            }),
            // Any AMD result means someone or something answered; the call has no machine state.
            Event::Answered(_) => self.by_rank(S::Connected),
            Event::PermanentError(_) => self.by_rank(S::Failed),
            Event::DialUnconfirmed => Transition::ignore(IgnoreReason::NotApplicable),
            // `completed` is a call a machine answered (voicemail): the scheduler retries those.
            Event::RetryScheduled => self.internal(
                &[S::NoAnswer, S::Busy, S::Failed, S::Initiated, S::Completed],
                S::RetryScheduled,
            ),
            Event::Readmitted => self.internal(&[S::RetryScheduled], S::Queued),
            Event::MediaDropped => self.internal(
                &[S::Initiated, S::Ringing, S::Connected, S::Resumed],
                S::Dropped,
            ),
            Event::RecoveryStarted => self.internal(&[S::Dropped], S::Recovering),
            Event::Resumed => self.internal(&[S::Recovering], S::Resumed),
            Event::RecoveryFailed => self.internal(&[S::Recovering], S::Failed),
            Event::CancelledByUs => self.internal(
                &[S::Queued, S::Initiated, S::Ringing, S::RetryScheduled],
                S::Cancelled,
            ),
        }
    }

    fn by_rank(self, target: Self) -> Transition<Self> {
        if self == target {
            Transition::ignore(IgnoreReason::Duplicate)
        } else if self.is_terminal() {
            Transition::ignore(IgnoreReason::Terminal)
        } else if self.is_settled() {
            Transition::ignore(IgnoreReason::Settled)
        } else if target.rank() > self.rank() {
            Transition::Move {
                from: self,
                to: target,
            }
        } else {
            Transition::ignore(IgnoreReason::Stale)
        }
    }

    fn internal(self, sources: &[Self], target: Self) -> Transition<Self> {
        if sources.contains(&self) {
            Transition::Move {
                from: self,
                to: target,
            }
        } else if self == target {
            Transition::ignore(IgnoreReason::Duplicate)
        } else if self.is_terminal() {
            Transition::ignore(IgnoreReason::Terminal)
        } else if self.is_settled() {
            Transition::ignore(IgnoreReason::Settled)
        } else {
            Transition::ignore(IgnoreReason::NotAllowed)
        }
    }
}

named!(CallState, "call state");

/// The state of one dial (`call_attempts.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Intent recorded, the provider not asked yet (or its answer not recorded yet).
    Dialing,
    /// The provider has the call.
    Initiated,
    /// The callee's phone is ringing.
    Ringing,
    /// Answered by a person, or AMD could not tell (or was off).
    Answered,
    /// Ended after an answer. Final, but a late machine AMD result still makes it `voicemail`.
    Completed,
    /// Could not be placed or failed. Final.
    Failed,
    /// Rang out unanswered. Final.
    NoAnswer,
    /// The line was busy. Final.
    Busy,
    /// Answered by a machine (voicemail or fax). Final.
    Voicemail,
    /// Cancelled before it was answered. Final.
    Cancelled,
    /// The dial could not be confirmed: the provider may or may not have the call.
    Unknown,
}

impl AttemptState {
    /// Every state, in the order of the migration's CHECK list.
    pub const ALL: [Self; 11] = [
        Self::Dialing,
        Self::Initiated,
        Self::Ringing,
        Self::Answered,
        Self::Completed,
        Self::Failed,
        Self::NoAnswer,
        Self::Busy,
        Self::Voicemail,
        Self::Cancelled,
        Self::Unknown,
    ];

    /// Returns the stored name, e.g. `no_answer`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dialing => "dialing",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Voicemail => "voicemail",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }

    /// Returns true when the attempt's outcome is known (see the module docs: the line may
    /// still be open in `voicemail`). `unknown` is not final: the provider may still report.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::NoAnswer
                | Self::Busy
                | Self::Voicemail
                | Self::Cancelled
        )
    }

    /// Returns the rank of the module docs' table.
    const fn rank(self) -> u8 {
        match self {
            Self::Dialing | Self::Unknown => 0,
            Self::Initiated => 1,
            Self::Ringing => 2,
            Self::Answered => 3,
            Self::Completed | Self::Failed | Self::NoAnswer | Self::Busy | Self::Cancelled => 4,
            Self::Voicemail => 5,
        }
    }

    /// Returns what `event` does to an attempt in this state.
    pub fn apply(self, event: &Event) -> Transition<Self> {
        use AttemptState as S;
        match event {
            // The dial stage inserts the row in `dialing`; replaying the intent changes nothing.
            Event::DialRequested => self.by_rank(S::Dialing),
            Event::ProviderAccepted { .. } => self.by_rank(S::Initiated),
            Event::Status(status) => self.by_rank(match status {
                ProviderStatus::Queued | ProviderStatus::Initiated => S::Initiated,
                ProviderStatus::Ringing => S::Ringing,
                ProviderStatus::InProgress => S::Answered,
                ProviderStatus::Completed => S::Completed,
                ProviderStatus::Busy => S::Busy,
                ProviderStatus::NoAnswer => S::NoAnswer,
                ProviderStatus::Failed => S::Failed,
                ProviderStatus::Canceled => S::Cancelled,
            }),
            Event::Answered(answered_by) => self.by_rank(if answered_by.is_machine() {
                S::Voicemail
            } else {
                S::Answered
            }),
            Event::PermanentError(_) => self.by_rank(S::Failed),
            Event::DialUnconfirmed => self.internal(&[S::Dialing], S::Unknown),
            Event::CancelledByUs => self.internal(
                &[S::Dialing, S::Unknown, S::Initiated, S::Ringing],
                S::Cancelled,
            ),
            Event::RetryScheduled
            | Event::Readmitted
            | Event::MediaDropped
            | Event::RecoveryStarted
            | Event::Resumed
            | Event::RecoveryFailed => Transition::ignore(IgnoreReason::NotApplicable),
        }
    }

    fn by_rank(self, target: Self) -> Transition<Self> {
        // NOTE: the one way out of a final state: the asynchronous AMD callback may arrive
        // after `completed`, and a machine answer must not depend on that race.
        let late_machine_answer = self == Self::Completed && target == Self::Voicemail;
        if self == target {
            Transition::ignore(IgnoreReason::Duplicate)
        } else if self.is_final() && !late_machine_answer {
            Transition::ignore(IgnoreReason::Terminal)
        } else if target.rank() > self.rank() {
            Transition::Move {
                from: self,
                to: target,
            }
        } else {
            Transition::ignore(IgnoreReason::Stale)
        }
    }

    fn internal(self, sources: &[Self], target: Self) -> Transition<Self> {
        if sources.contains(&self) {
            Transition::Move {
                from: self,
                to: target,
            }
        } else if self == target {
            Transition::ignore(IgnoreReason::Duplicate)
        } else if self.is_final() {
            Transition::ignore(IgnoreReason::Terminal)
        } else {
            Transition::ignore(IgnoreReason::NotAllowed)
        }
    }
}

named!(AttemptState, "call attempt state");

/// Twilio's `CallStatus` of a status callback, spelled as Twilio spells it (`in-progress`,
/// `no-answer`, `canceled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderStatus {
    /// `queued`: accepted, waiting for capacity (calls per second).
    Queued,
    /// `initiated`: dialing started (callbacks only; the REST `status` never says it).
    Initiated,
    /// `ringing`.
    Ringing,
    /// `in-progress`: answered.
    InProgress,
    /// `completed`: ended after an answer.
    Completed,
    /// `busy`.
    Busy,
    /// `no-answer`.
    NoAnswer,
    /// `failed`: could not be placed.
    Failed,
    /// `canceled`: cancelled through the REST API while queued or ringing.
    Canceled,
}

impl ProviderStatus {
    /// Every status.
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::Initiated,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
    ];

    /// Returns Twilio's name, e.g. `in-progress`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Returns true for the values of Twilio's `completed` event, which ends the call and
    /// carries `CallDuration` and `SipResponseCode`.
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }
}

named!(ProviderStatus, "twilio call status");

/// Twilio's answering machine detection result (`AnsweredBy`).
///
/// `MachineDetection=Enable` gives `machine_start`, `human`, `fax` or `unknown`;
/// `DetectMessageEnd` gives the `machine_end_*` values instead of `machine_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    /// `human`.
    Human,
    /// `machine_start`: a machine, detected as it began speaking.
    MachineStart,
    /// `machine_end_beep`: a machine's greeting ended with a beep.
    MachineEndBeep,
    /// `machine_end_silence`: a machine's greeting ended with silence.
    MachineEndSilence,
    /// `machine_end_other`: a machine's greeting ended otherwise.
    MachineEndOther,
    /// `fax`.
    Fax,
    /// `unknown`: detection could not decide (the call was answered).
    Unknown,
}

impl AnsweredBy {
    /// Every result.
    pub const ALL: [Self; 7] = [
        Self::Human,
        Self::MachineStart,
        Self::MachineEndBeep,
        Self::MachineEndSilence,
        Self::MachineEndOther,
        Self::Fax,
        Self::Unknown,
    ];

    /// Returns Twilio's name, e.g. `machine_end_beep`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::MachineStart => "machine_start",
            Self::MachineEndBeep => "machine_end_beep",
            Self::MachineEndSilence => "machine_end_silence",
            Self::MachineEndOther => "machine_end_other",
            Self::Fax => "fax",
            Self::Unknown => "unknown",
        }
    }

    /// Returns true for the machine results and `fax`: nobody to talk to.
    #[must_use]
    pub const fn is_machine(self) -> bool {
        !matches!(self, Self::Human | Self::Unknown)
    }
}

named!(AnsweredBy, "twilio answered-by result");

/// Why a call or attempt failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    /// The provider's error code (Twilio's, e.g. `21211` for an invalid `To`), when known.
    pub code: Option<u32>,
    /// A short description, e.g. the provider's message.
    pub reason: Option<String>,
}

/// Something that happened to a call; the input of [`CallState::apply`] and
/// [`AttemptState::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The dial stage recorded its intent (an attempt row in `dialing`, committed).
    DialRequested,
    /// The provider accepted the create request and returned its call id.
    ProviderAccepted {
        /// The provider's call id (Twilio `CallSid`, `CA…`).
        provider_call_id: String,
    },
    /// A status callback's `CallStatus`.
    Status(ProviderStatus),
    /// An answering machine detection result (`AnsweredBy`), synchronous or asynchronous.
    Answered(AnsweredBy),
    /// The provider refused the call for good (e.g. an invalid number).
    PermanentError(Failure),
    /// The dial stage could not tell whether the provider has the call.
    DialUnconfirmed,
    /// The scheduler decided on another attempt.
    RetryScheduled,
    /// Admission let the scheduled attempt through: the call waits for its dial again.
    Readmitted,
    /// The media connection of a live call was lost.
    MediaDropped,
    /// Recovery of the media connection started.
    RecoveryStarted,
    /// The media connection was restored.
    Resumed,
    /// Recovery of the media connection gave up.
    RecoveryFailed,
    /// We cancelled the call (the lead opted out, the campaign stopped, …).
    CancelledByUs,
}

impl Event {
    /// Returns true for facts reported by the provider, which may arrive late, twice or out
    /// of order; false for our own decisions.
    #[must_use]
    pub const fn is_from_provider(&self) -> bool {
        matches!(
            self,
            Self::ProviderAccepted { .. }
                | Self::Status(_)
                | Self::Answered(_)
                | Self::PermanentError(_)
        )
    }
}

/// What an event does to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Transition<S> {
    /// Compare-and-set `from` → `to` and log it.
    Move {
        /// The state the update MUST still find (the compare of compare-and-set).
        from: S,
        /// The new state.
        to: S,
    },
    /// Leave the row alone.
    Ignore {
        /// Why.
        reason: IgnoreReason,
    },
}

impl<S: Copy> Transition<S> {
    const fn ignore(reason: IgnoreReason) -> Self {
        Self::Ignore { reason }
    }

    /// Returns the new state of a move, `None` when ignored.
    #[must_use]
    pub const fn target(&self) -> Option<S> {
        match self {
            Self::Move { to, .. } => Some(*to),
            Self::Ignore { .. } => None,
        }
    }
}

/// Why an event leaves the state alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The state already is where the event leads (a repeated callback or decision).
    Duplicate,
    /// A provider fact ranking at or below the current state: it arrived late.
    Stale,
    /// The state is terminal (for an attempt: final).
    Terminal,
    /// The call is settled (`failed`, `no_answer`, `busy`, `retry_scheduled`): only the
    /// scheduler's decisions move it.
    Settled,
    /// An internal decision with no edge from the current state: a bug or a race in our code.
    NotAllowed,
    /// The event does not concern this machine (media events for an attempt, …).
    NotApplicable,
}

impl IgnoreReason {
    /// Returns the name used in logs and metric labels, e.g. `not_allowed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Terminal => "terminal",
            Self::Settled => "settled",
            Self::NotAllowed => "not_allowed",
            Self::NotApplicable => "not_applicable",
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call attempt ended, as the scheduler and analytics see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A person answered (or detection was off or undecided).
    Human,
    /// A machine answered: voicemail or fax.
    Machine,
    /// Nobody answered.
    NoAnswer,
    /// The line was busy.
    Busy,
    /// The call failed.
    Failed(Failure),
    /// We cancelled it before it was answered.
    Cancelled,
    /// The dial could not be confirmed.
    Unknown,
}

impl Outcome {
    /// Returns the outcome of an attempt in `state`, or `None` while it is not known yet.
    ///
    /// `answered_by` is the last AMD result seen, if any: a machine result counts even when
    /// the attempt was left `completed`. `failure` fills [`Outcome::Failed`].
    #[must_use]
    pub fn of_attempt(
        state: AttemptState,
        answered_by: Option<AnsweredBy>,
        failure: Option<Failure>,
    ) -> Option<Self> {
        let machine = answered_by.is_some_and(AnsweredBy::is_machine);
        match state {
            AttemptState::Dialing
            | AttemptState::Initiated
            | AttemptState::Ringing
            | AttemptState::Answered => None,
            AttemptState::Completed if machine => Some(Self::Machine),
            AttemptState::Completed => Some(Self::Human),
            AttemptState::Voicemail => Some(Self::Machine),
            AttemptState::NoAnswer => Some(Self::NoAnswer),
            AttemptState::Busy => Some(Self::Busy),
            AttemptState::Failed => Some(Self::Failed(failure.unwrap_or_default())),
            AttemptState::Cancelled => Some(Self::Cancelled),
            AttemptState::Unknown => Some(Self::Unknown),
        }
    }

    /// Returns the name stored in `calls.outcome`, e.g. `no_answer`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine => "machine",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests;
