//! The outcome classifier: what an answered call amounted to.
//!
//! Facts outrank words: a booking in our ledger, answering machine detection, a scheduled
//! callback and a transfer decide before anything said does. Then keyword rules over what
//! the caller said, on normalized words ([`super::text`]), so "not interested" never matches
//! "interested" and "don't call" matches "do not call". The first rule that holds wins, and
//! its name is stored with the outcome so people can check the classifier.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text;
use super::{Facts, Role};

/// What an answered call amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The agent booked an appointment.
    Booked,
    /// The caller asked to be called back (the agent scheduled it, or they said so).
    CallbackRequested,
    /// The caller declined.
    NotInterested,
    /// The person reached is not the lead.
    WrongNumber,
    /// The caller asked never to be called again.
    DoNotCall,
    /// A machine answered.
    Voicemail,
    /// The line was answered but nobody spoke.
    NoAnswer,
    /// The call was handed to a person.
    Transferred,
    /// A conversation took place with none of the above.
    Completed,
}

impl Outcome {
    /// The stored name (`conversation_summaries.outcome`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::CallbackRequested => "callback_requested",
            Self::NotInterested => "not_interested",
            Self::WrongNumber => "wrong_number",
            Self::DoNotCall => "do_not_call",
            Self::Voicemail => "voicemail",
            Self::NoAnswer => "no_answer",
            Self::Transferred => "transferred",
            Self::Completed => "completed",
        }
    }
}

/// Opt-outs. Checked before "not interested": "not interested, don't call again" is an
/// opt-out, which the CRM and the blocklist must hear.
const DO_NOT_CALL: &[&str] = &[
    "do not call",
    "stop calling",
    "never call",
    "remove me",
    "remove my number",
    "take me off",
    "put me on your do not",
    "unsubscribe",
    "lose my number",
];

const WRONG_NUMBER: &[&str] = &[
    "wrong number",
    "wrong person",
    "no one by that name",
    "nobody by that name",
    "no one here by that name",
    "nobody here by that name",
    "does not live here",
    "you have the wrong",
    "you got the wrong",
    "never heard of",
];

const NOT_INTERESTED: &[&str] = &[
    "not interested",
    "no interest",
    "not really interested",
    "no thanks",
    "no thank you",
    "not for me",
    "do not need",
    "do not want",
    "not looking",
    "not right now",
    "not at this time",
    "i will pass",
    "i am good thanks",
    "not today",
];

const CALLBACK: &[&str] = &[
    "call me back",
    "call back later",
    "call me later",
    "call me tomorrow",
    "call me next week",
    "call again later",
    "try again later",
    "try me later",
    "ring me back",
    "bad time",
    "in a meeting",
];

const VOICEMAIL: &[&str] = &[
    "leave a message",
    "leave your message",
    "after the tone",
    "after the beep",
    "at the tone",
    "not available to take your call",
    "voicemail",
    "mailbox",
];

/// Whether a tool call named `name` ran without error.
fn used(facts: &Facts, name: &str) -> bool {
    facts
        .tools
        .iter()
        .any(|tool| tool.name == name && !tool.is_error)
}

/// Classifies the conversation: the outcome and the rule that decided it.
#[must_use]
pub fn classify(facts: &Facts) -> (Outcome, &'static str) {
    if facts.booked {
        return (Outcome::Booked, "an appointment is booked");
    }
    if facts.machine_answered {
        return (Outcome::Voicemail, "answering machine detection");
    }
    let caller: Vec<String> = facts
        .turns
        .iter()
        .filter(|turn| turn.role == Role::User)
        .map(|turn| text::padded(&turn.text))
        .collect();
    let said = |phrases: &[&str]| {
        caller
            .iter()
            .any(|turn| text::find(turn, phrases).is_some())
    };
    if said(DO_NOT_CALL) {
        return (Outcome::DoNotCall, "the caller asked not to be called");
    }
    if facts.callback_scheduled || used(facts, "schedule_callback") {
        return (Outcome::CallbackRequested, "the agent scheduled a callback");
    }
    if facts.transferred || used(facts, "transfer_to_human") {
        return (Outcome::Transferred, "the call was transferred");
    }
    if said(VOICEMAIL) {
        return (Outcome::Voicemail, "a voicemail greeting answered");
    }
    if said(WRONG_NUMBER) {
        return (
            Outcome::WrongNumber,
            "the caller said it is the wrong number",
        );
    }
    if said(NOT_INTERESTED) {
        return (Outcome::NotInterested, "the caller declined");
    }
    if said(CALLBACK) {
        return (
            Outcome::CallbackRequested,
            "the caller asked to be called later",
        );
    }
    if caller.iter().all(|turn| turn.trim().is_empty()) {
        return (Outcome::NoAnswer, "the caller never spoke");
    }
    (
        Outcome::Completed,
        "a conversation with no decisive outcome",
    )
}
