//! Tests of the call state machine: transition tables and the shuffled-callbacks property.

use proptest::prelude::*;

use super::*;

use AnsweredBy as Amd;
use ProviderStatus as Tw;

const MIGRATION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/migrations/20261124000004_calls.sql"
));

/// Returns the names in the `state` CHECK list of `table` in the calls migration.
fn check_list(table: &str) -> Vec<String> {
    let start = MIGRATION
        .find(&format!("CREATE TABLE {table} ("))
        .expect("table in migration");
    let rest = &MIGRATION[start..];
    let list_start = rest.find("CHECK (state IN (").expect("state check") + 17;
    let list_end = list_start + rest[list_start..].find("))").expect("end of check");
    rest[list_start..list_end]
        .split(',')
        .map(|name| name.trim().trim_matches('\'').to_owned())
        .collect()
}

fn every_event() -> Vec<Event> {
    let mut events = vec![
        Event::DialRequested,
        Event::ProviderAccepted {
            provider_call_id: "CAaaaa".to_owned(),
        },
        Event::PermanentError(Failure {
            code: Some(21211),
            reason: None,
        }),
        Event::DialUnconfirmed,
        Event::RetryScheduled,
        Event::Readmitted,
        Event::MediaDropped,
        Event::RecoveryStarted,
        Event::Resumed,
        Event::RecoveryFailed,
        Event::CancelledByUs,
    ];
    events.extend(Tw::ALL.map(Event::Status));
    events.extend(Amd::ALL.map(Event::Answered));
    events
}

fn accepted() -> Event {
    Event::ProviderAccepted {
        provider_call_id: "CAaaaa".to_owned(),
    }
}

fn rejected() -> Event {
    Event::PermanentError(Failure {
        code: Some(21211),
        reason: Some("invalid 'To' phone number".to_owned()),
    })
}

fn result<S: Copy>(transition: Transition<S>) -> Result<S, IgnoreReason> {
    match transition {
        Transition::Move { to, .. } => Ok(to),
        Transition::Ignore { reason } => Err(reason),
    }
}

#[test]
fn state_names_match_the_migration_check_lists() {
    let call_names: Vec<&str> = CallState::ALL.iter().map(|state| state.as_str()).collect();
    assert_eq!(call_names, check_list("calls"));
    let attempt_names: Vec<&str> = AttemptState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(attempt_names, check_list("call_attempts"));
}

#[test]
fn names_parse_back_and_serde_uses_them() {
    for state in CallState::ALL {
        assert_eq!(state.as_str().parse::<CallState>(), Ok(state));
        let json = serde_json::to_string(&state).expect("serialize");
        assert_eq!(json, format!("\"{state}\""));
    }
    for state in AttemptState::ALL {
        assert_eq!(state.as_str().parse::<AttemptState>(), Ok(state));
        let json = serde_json::to_string(&state).expect("serialize");
        assert_eq!(json, format!("\"{state}\""));
    }
    for status in Tw::ALL {
        let json = serde_json::to_string(&status).expect("serialize");
        assert_eq!(json, format!("\"{status}\""));
    }
    for answered_by in Amd::ALL {
        let json = serde_json::to_string(&answered_by).expect("serialize");
        assert_eq!(json, format!("\"{answered_by}\""));
    }
    assert!("Queued".parse::<CallState>().is_err());
    assert!("cancelled".parse::<AttemptState>().is_ok());
}

#[test]
fn twilio_statuses_parse_from_their_exact_strings() {
    let expected = [
        ("queued", Tw::Queued),
        ("initiated", Tw::Initiated),
        ("ringing", Tw::Ringing),
        ("in-progress", Tw::InProgress),
        ("completed", Tw::Completed),
        ("busy", Tw::Busy),
        ("no-answer", Tw::NoAnswer),
        ("failed", Tw::Failed),
        ("canceled", Tw::Canceled),
    ];
    for (text, status) in expected {
        assert_eq!(text.parse::<Tw>(), Ok(status), "{text}");
        assert_eq!(
            serde_json::from_str::<Tw>(&format!("\"{text}\"")).ok(),
            Some(status)
        );
    }
    for wrong in [
        "cancelled",
        "in_progress",
        "no_answer",
        "answered",
        "Ringing",
        "",
    ] {
        assert!(wrong.parse::<Tw>().is_err(), "{wrong}");
    }
    let error = "cancelled".parse::<Tw>().expect_err("british spelling");
    assert_eq!(error.to_string(), "`cancelled` is not a twilio call status");
}

#[test]
fn answering_machine_results_parse_from_their_exact_strings() {
    let expected = [
        ("human", Amd::Human, false),
        ("machine_start", Amd::MachineStart, true),
        ("machine_end_beep", Amd::MachineEndBeep, true),
        ("machine_end_silence", Amd::MachineEndSilence, true),
        ("machine_end_other", Amd::MachineEndOther, true),
        ("fax", Amd::Fax, true),
        ("unknown", Amd::Unknown, false),
    ];
    for (text, answered_by, machine) in expected {
        assert_eq!(text.parse::<Amd>(), Ok(answered_by), "{text}");
        assert_eq!(answered_by.is_machine(), machine, "{text}");
    }
    assert!("machine".parse::<Amd>().is_err());
}

#[test]
fn call_transitions_follow_the_table() {
    use CallState as S;
    use IgnoreReason as R;
    let dial = Event::DialRequested;
    let status = Event::Status;
    let rows: Vec<(S, Event, Result<S, R>)> = vec![
        // Dialing.
        (S::Queued, dial.clone(), Ok(S::Initiated)),
        (S::RetryScheduled, dial.clone(), Ok(S::Initiated)),
        (S::Initiated, dial.clone(), Err(R::Duplicate)),
        (S::Ringing, dial.clone(), Err(R::NotAllowed)),
        (S::Completed, dial.clone(), Err(R::Terminal)),
        (S::NoAnswer, dial, Err(R::Settled)),
        (S::Initiated, accepted(), Err(R::Duplicate)),
        (S::Queued, accepted(), Ok(S::Initiated)),
        (S::Ringing, accepted(), Err(R::Stale)),
        (S::Initiated, Event::DialUnconfirmed, Err(R::NotApplicable)),
        // Provider progress, in order and skipping.
        (S::Initiated, status(Tw::Queued), Err(R::Duplicate)),
        (S::Initiated, status(Tw::Initiated), Err(R::Duplicate)),
        (S::Initiated, status(Tw::Ringing), Ok(S::Ringing)),
        (S::Ringing, status(Tw::InProgress), Ok(S::Connected)),
        (S::Initiated, status(Tw::InProgress), Ok(S::Connected)),
        (S::Connected, status(Tw::Completed), Ok(S::Completed)),
        (S::Initiated, status(Tw::Completed), Ok(S::Completed)),
        (S::Ringing, status(Tw::Busy), Ok(S::Busy)),
        (S::Ringing, status(Tw::NoAnswer), Ok(S::NoAnswer)),
        (S::Initiated, status(Tw::Failed), Ok(S::Failed)),
        (S::Ringing, status(Tw::Canceled), Ok(S::Cancelled)),
        (S::Initiated, rejected(), Ok(S::Failed)),
        // Late, duplicated and out-of-order callbacks.
        (S::Connected, status(Tw::Ringing), Err(R::Stale)),
        (S::Connected, status(Tw::Initiated), Err(R::Stale)),
        (S::Ringing, status(Tw::Ringing), Err(R::Duplicate)),
        (S::Connected, status(Tw::InProgress), Err(R::Duplicate)),
        (S::Completed, status(Tw::Completed), Err(R::Duplicate)),
        (S::Completed, status(Tw::Ringing), Err(R::Terminal)),
        (S::Failed, status(Tw::Completed), Err(R::Settled)),
        (S::Busy, status(Tw::NoAnswer), Err(R::Settled)),
        (S::NoAnswer, status(Tw::InProgress), Err(R::Settled)),
        (S::RetryScheduled, status(Tw::Completed), Err(R::Settled)),
        (S::Cancelled, status(Tw::InProgress), Err(R::Terminal)),
        (S::Dropped, status(Tw::InProgress), Err(R::Stale)),
        (S::Resumed, status(Tw::Ringing), Err(R::Stale)),
        (S::Recovering, status(Tw::Completed), Ok(S::Completed)),
        // Answering machine detection only says the call was answered.
        (
            S::Ringing,
            Event::Answered(Amd::MachineStart),
            Ok(S::Connected),
        ),
        (S::Connected, Event::Answered(Amd::Human), Err(R::Duplicate)),
        (
            S::Completed,
            Event::Answered(Amd::MachineEndBeep),
            Err(R::Terminal),
        ),
        // The scheduler's decisions.
        (S::NoAnswer, Event::RetryScheduled, Ok(S::RetryScheduled)),
        (S::Busy, Event::RetryScheduled, Ok(S::RetryScheduled)),
        (S::Failed, Event::RetryScheduled, Ok(S::RetryScheduled)),
        (S::Initiated, Event::RetryScheduled, Ok(S::RetryScheduled)),
        (S::RetryScheduled, Event::RetryScheduled, Err(R::Duplicate)),
        (S::Connected, Event::RetryScheduled, Err(R::NotAllowed)),
        (S::Completed, Event::RetryScheduled, Ok(S::RetryScheduled)),
        (S::RetryScheduled, Event::Readmitted, Ok(S::Queued)),
        (S::Queued, Event::Readmitted, Err(R::Duplicate)),
        (S::Connected, Event::Readmitted, Err(R::NotAllowed)),
        (S::Cancelled, Event::RetryScheduled, Err(R::Terminal)),
        // Media drop and recovery.
        (S::Connected, Event::MediaDropped, Ok(S::Dropped)),
        (S::Ringing, Event::MediaDropped, Ok(S::Dropped)),
        (S::Resumed, Event::MediaDropped, Ok(S::Dropped)),
        (S::Dropped, Event::MediaDropped, Err(R::Duplicate)),
        (S::Queued, Event::MediaDropped, Err(R::NotAllowed)),
        (S::Dropped, Event::RecoveryStarted, Ok(S::Recovering)),
        (S::Connected, Event::RecoveryStarted, Err(R::NotAllowed)),
        (S::Recovering, Event::Resumed, Ok(S::Resumed)),
        (S::Dropped, Event::Resumed, Err(R::NotAllowed)),
        (S::Recovering, Event::RecoveryFailed, Ok(S::Failed)),
        (S::Connected, Event::RecoveryFailed, Err(R::NotAllowed)),
        (S::Completed, Event::MediaDropped, Err(R::Terminal)),
        // Cancelling.
        (S::Queued, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Initiated, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Ringing, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::RetryScheduled, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Connected, Event::CancelledByUs, Err(R::NotAllowed)),
        (S::NoAnswer, Event::CancelledByUs, Err(R::Settled)),
        (S::Cancelled, Event::CancelledByUs, Err(R::Duplicate)),
    ];
    for (current, event, expected) in rows {
        let transition = current.apply(&event);
        if let Transition::Move { from, .. } = transition {
            assert_eq!(from, current, "{current} + {event:?}");
        }
        assert_eq!(result(transition), expected, "{current} + {event:?}");
    }
}

#[test]
fn attempt_transitions_follow_the_table() {
    use AttemptState as S;
    use IgnoreReason as R;
    let status = Event::Status;
    let rows: Vec<(S, Event, Result<S, R>)> = vec![
        (S::Dialing, Event::DialRequested, Err(R::Duplicate)),
        (S::Ringing, Event::DialRequested, Err(R::Stale)),
        (S::Dialing, accepted(), Ok(S::Initiated)),
        (S::Unknown, accepted(), Ok(S::Initiated)),
        (S::Initiated, accepted(), Err(R::Duplicate)),
        // The callback won the race against the REST response.
        (S::Ringing, accepted(), Err(R::Stale)),
        (S::Dialing, Event::DialUnconfirmed, Ok(S::Unknown)),
        (S::Unknown, Event::DialUnconfirmed, Err(R::Duplicate)),
        (S::Ringing, Event::DialUnconfirmed, Err(R::NotAllowed)),
        (S::Dialing, rejected(), Ok(S::Failed)),
        (S::Completed, rejected(), Err(R::Terminal)),
        // Provider progress.
        (S::Dialing, status(Tw::Queued), Ok(S::Initiated)),
        (S::Dialing, status(Tw::Initiated), Ok(S::Initiated)),
        (S::Initiated, status(Tw::Ringing), Ok(S::Ringing)),
        (S::Ringing, status(Tw::InProgress), Ok(S::Answered)),
        (S::Answered, status(Tw::Completed), Ok(S::Completed)),
        (S::Initiated, status(Tw::Completed), Ok(S::Completed)),
        (S::Dialing, status(Tw::Completed), Ok(S::Completed)),
        (S::Unknown, status(Tw::Ringing), Ok(S::Ringing)),
        (S::Ringing, status(Tw::Busy), Ok(S::Busy)),
        (S::Ringing, status(Tw::NoAnswer), Ok(S::NoAnswer)),
        (S::Initiated, status(Tw::Failed), Ok(S::Failed)),
        (S::Ringing, status(Tw::Canceled), Ok(S::Cancelled)),
        // Late, duplicated, out of order.
        (S::Answered, status(Tw::Ringing), Err(R::Stale)),
        (S::Ringing, status(Tw::Queued), Err(R::Stale)),
        (S::Answered, status(Tw::InProgress), Err(R::Duplicate)),
        (S::Completed, status(Tw::Completed), Err(R::Duplicate)),
        (S::Failed, status(Tw::Completed), Err(R::Terminal)),
        (S::Completed, status(Tw::Failed), Err(R::Terminal)),
        (S::Busy, status(Tw::Ringing), Err(R::Terminal)),
        (S::Cancelled, status(Tw::InProgress), Err(R::Terminal)),
        (S::Voicemail, status(Tw::Completed), Err(R::Terminal)),
        (S::Voicemail, status(Tw::InProgress), Err(R::Terminal)),
        // Answering machine detection.
        (
            S::Answered,
            Event::Answered(Amd::MachineStart),
            Ok(S::Voicemail),
        ),
        (S::Answered, Event::Answered(Amd::Fax), Ok(S::Voicemail)),
        (
            S::Ringing,
            Event::Answered(Amd::MachineEndBeep),
            Ok(S::Voicemail),
        ),
        (
            S::Completed,
            Event::Answered(Amd::MachineEndSilence),
            Ok(S::Voicemail),
        ),
        (S::Answered, Event::Answered(Amd::Human), Err(R::Duplicate)),
        (S::Ringing, Event::Answered(Amd::Human), Ok(S::Answered)),
        (S::Initiated, Event::Answered(Amd::Unknown), Ok(S::Answered)),
        (S::Completed, Event::Answered(Amd::Human), Err(R::Terminal)),
        (S::Voicemail, Event::Answered(Amd::Human), Err(R::Terminal)),
        (
            S::Voicemail,
            Event::Answered(Amd::MachineStart),
            Err(R::Duplicate),
        ),
        (
            S::NoAnswer,
            Event::Answered(Amd::MachineStart),
            Err(R::Terminal),
        ),
        (S::Failed, Event::Answered(Amd::Fax), Err(R::Terminal)),
        // Cancelling.
        (S::Dialing, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Unknown, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Ringing, Event::CancelledByUs, Ok(S::Cancelled)),
        (S::Answered, Event::CancelledByUs, Err(R::NotAllowed)),
        (S::Completed, Event::CancelledByUs, Err(R::Terminal)),
        // Call-level decisions do not touch attempts.
        (S::NoAnswer, Event::RetryScheduled, Err(R::NotApplicable)),
        (S::Answered, Event::MediaDropped, Err(R::NotApplicable)),
        (S::Answered, Event::RecoveryFailed, Err(R::NotApplicable)),
    ];
    for (current, event, expected) in rows {
        let transition = current.apply(&event);
        if let Transition::Move { from, .. } = transition {
            assert_eq!(from, current, "{current} + {event:?}");
        }
        assert_eq!(result(transition), expected, "{current} + {event:?}");
    }
}

#[test]
fn provider_facts_only_move_states_up_the_ranking() {
    for event in every_event()
        .iter()
        .filter(|event| event.is_from_provider())
    {
        for call in CallState::ALL {
            if let Transition::Move { from, to } = call.apply(event) {
                assert!(to.rank() > from.rank(), "{from} -> {to} on {event:?}");
            }
        }
        for attempt in AttemptState::ALL {
            if let Transition::Move { from, to } = attempt.apply(event) {
                assert!(to.rank() > from.rank(), "{from} -> {to} on {event:?}");
            }
        }
    }
}

#[test]
fn terminal_states_absorb_every_event() {
    for event in every_event() {
        for call in CallState::ALL
            .into_iter()
            .filter(|state| state.is_terminal())
        {
            // The one way out: the scheduler retries a call a machine answered.
            let voicemail_retry = call == CallState::Completed && event == Event::RetryScheduled;
            if !voicemail_retry {
                assert_eq!(call.apply(&event).target(), None, "{call} + {event:?}");
            }
        }
        for attempt in AttemptState::ALL
            .into_iter()
            .filter(|state| state.is_final())
        {
            let late_machine_answer = attempt == AttemptState::Completed
                && matches!(event, Event::Answered(by) if by.is_machine());
            if !late_machine_answer {
                let transition = attempt.apply(&event);
                assert_eq!(transition.target(), None, "{attempt} + {event:?}");
            }
        }
    }
}

#[test]
fn settled_calls_move_only_by_the_schedulers_decisions() {
    let settled = [
        CallState::NoAnswer,
        CallState::Busy,
        CallState::Failed,
        CallState::RetryScheduled,
    ];
    for event in every_event() {
        for call in settled {
            let moved = call.apply(&event).target().is_some();
            let decision = matches!(
                event,
                Event::RetryScheduled
                    | Event::Readmitted
                    | Event::DialRequested
                    | Event::CancelledByUs
            );
            assert!(!moved || decision, "{call} + {event:?}");
        }
    }
}

#[test]
fn outcomes_follow_the_final_attempt_state_and_the_amd_result() {
    use AttemptState as S;
    let failure = Failure {
        code: Some(21211),
        reason: Some("invalid 'To' phone number".to_owned()),
    };
    let rows = [
        (S::Dialing, None, None),
        (S::Ringing, None, None),
        (S::Answered, Some(Amd::Human), None),
        (S::Completed, None, Some(Outcome::Human)),
        (S::Completed, Some(Amd::Human), Some(Outcome::Human)),
        (S::Completed, Some(Amd::Unknown), Some(Outcome::Human)),
        (
            S::Completed,
            Some(Amd::MachineEndBeep),
            Some(Outcome::Machine),
        ),
        (S::Voicemail, Some(Amd::Fax), Some(Outcome::Machine)),
        (S::NoAnswer, None, Some(Outcome::NoAnswer)),
        (S::Busy, None, Some(Outcome::Busy)),
        (S::Cancelled, None, Some(Outcome::Cancelled)),
        (S::Unknown, None, Some(Outcome::Unknown)),
    ];
    for (state, answered_by, expected) in rows {
        assert_eq!(
            Outcome::of_attempt(state, answered_by, None),
            expected,
            "{state}"
        );
    }
    let failed = Outcome::of_attempt(S::Failed, None, Some(failure.clone()));
    assert_eq!(failed, Some(Outcome::Failed(failure)));
    let json = serde_json::to_value(failed).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({"kind": "failed", "code": 21211, "reason": "invalid 'To' phone number"})
    );
    let unexplained = Outcome::of_attempt(S::Failed, None, None);
    assert_eq!(unexplained, Some(Outcome::Failed(Failure::default())));
}

/// A true call history, as the provider lived it.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Human(Option<AnsweredBy>),
    Machine(AnsweredBy),
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl Ending {
    /// Returns the callbacks the provider sends, in true order: progress statuses (which
    /// Twilio may leave out), then any AMD result, then the terminal status.
    fn callbacks(self) -> (Vec<ProviderStatus>, Option<AnsweredBy>, ProviderStatus) {
        let answered = vec![Tw::Queued, Tw::Initiated, Tw::Ringing, Tw::InProgress];
        let rang = vec![Tw::Queued, Tw::Initiated, Tw::Ringing];
        match self {
            Self::Human(answered_by) => (answered, answered_by, Tw::Completed),
            Self::Machine(answered_by) => (answered, Some(answered_by), Tw::Completed),
            Self::Busy => (rang, None, Tw::Busy),
            Self::NoAnswer => (rang, None, Tw::NoAnswer),
            Self::Failed => (vec![Tw::Queued, Tw::Initiated], None, Tw::Failed),
            Self::Canceled => (rang, None, Tw::Canceled),
        }
    }

    fn final_states(self) -> (CallState, AttemptState) {
        match self {
            Self::Human(_) => (CallState::Completed, AttemptState::Completed),
            Self::Machine(_) => (CallState::Completed, AttemptState::Voicemail),
            Self::Busy => (CallState::Busy, AttemptState::Busy),
            Self::NoAnswer => (CallState::NoAnswer, AttemptState::NoAnswer),
            Self::Failed => (CallState::Failed, AttemptState::Failed),
            Self::Canceled => (CallState::Cancelled, AttemptState::Cancelled),
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            Self::Human(_) => Outcome::Human,
            Self::Machine(_) => Outcome::Machine,
            Self::Busy => Outcome::Busy,
            Self::NoAnswer => Outcome::NoAnswer,
            Self::Failed => Outcome::Failed(Failure::default()),
            Self::Canceled => Outcome::Cancelled,
        }
    }
}

fn endings() -> impl Strategy<Value = Ending> {
    let human_amd = [None, Some(Amd::Human), Some(Amd::Unknown)];
    let machines: Vec<AnsweredBy> = Amd::ALL.into_iter().filter(|by| by.is_machine()).collect();
    prop_oneof![
        prop::sample::select(human_amd.to_vec()).prop_map(Ending::Human),
        prop::sample::select(machines).prop_map(Ending::Machine),
        Just(Ending::Busy),
        Just(Ending::NoAnswer),
        Just(Ending::Failed),
        Just(Ending::Canceled),
    ]
}

/// Returns a true history and what reaches us: a subset of its progress callbacks, its
/// AMD result and terminal status, the provider's acceptance, some of them repeated, all
/// shuffled.
fn deliveries() -> impl Strategy<Value = (Ending, Vec<Event>)> {
    (
        endings(),
        prop::collection::vec(any::<bool>(), 4),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    )
        .prop_flat_map(|(ending, kept, repeated)| {
            let (progress, answered_by, terminal) = ending.callbacks();
            let mut events: Vec<Event> = progress
                .into_iter()
                .zip(kept)
                .filter(|(_, keep)| *keep)
                .map(|(status, _)| Event::Status(status))
                .collect();
            events.extend(answered_by.map(Event::Answered));
            events.push(Event::Status(terminal));
            events.push(accepted());
            for index in repeated {
                let repeat = events[index.index(events.len())].clone();
                events.push(repeat);
            }
            (Just(ending), Just(events).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn shuffled_and_duplicated_callbacks_leave_the_true_final_state(
        (ending, events) in deliveries(),
    ) {
        let mut call = CallState::Queued
            .apply(&Event::DialRequested)
            .target()
            .expect("intent moves a queued call");
        let mut attempt = AttemptState::Dialing;
        let mut answered_by = None;
        for event in &events {
            if let Transition::Move { from, to } = call.apply(event) {
                prop_assert_eq!(from, call);
                prop_assert!(to.rank() > from.rank(), "{} -> {} on {:?}", from, to, event);
                call = to;
            }
            if let Transition::Move { from, to } = attempt.apply(event) {
                prop_assert_eq!(from, attempt);
                prop_assert!(to.rank() > from.rank(), "{} -> {} on {:?}", from, to, event);
                attempt = to;
            }
            if let Event::Answered(by) = event {
                answered_by = Some(*by);
            }
        }
        let (true_call, true_attempt) = ending.final_states();
        prop_assert_eq!(call, true_call);
        prop_assert_eq!(attempt, true_attempt);
        prop_assert_eq!(Outcome::of_attempt(attempt, answered_by, None), Some(ending.outcome()));
    }
}
