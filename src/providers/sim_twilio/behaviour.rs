//! How simulated calls behave: the timings of each phase, the outcome mix and per-callee
//! overrides. Outcomes are drawn from a seeded RNG in the order create requests arrive, so a
//! run with the same seed and the same order of callees gets the same outcomes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;

/// What happens to a simulated call once it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimOutcome {
    /// A person answers after `ring` (`AnsweredBy=human` when detection is on).
    Human,
    /// An answering machine answers after `ring` (`machine_start`, or `machine_end_beep` with
    /// `MachineDetection=DetectMessageEnd`).
    Machine,
    /// It rings for `ring` and ends `no-answer`.
    NoAnswer,
    /// The line is busy: `busy` after `dial`, without ringing.
    Busy,
    /// The call cannot be connected: `failed` after `dial`, without ringing.
    Failed,
    /// The caller side gives up while it rings: `canceled` after `ring`.
    Canceled,
}

impl SimOutcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Human,
        Self::Machine,
        Self::NoAnswer,
        Self::Busy,
        Self::Failed,
        Self::Canceled,
    ];

    /// Returns the outcome's name as `--outcomes` spells it, e.g. `no_answer`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine => "machine",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Returns true when somebody (or something) picks up.
    #[must_use]
    pub const fn answers(self) -> bool {
        matches!(self, Self::Human | Self::Machine)
    }
}

impl fmt::Display for SimOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SimOutcome {
    type Err = OutcomeMixError;

    /// Reads a name as [`SimOutcome::as_str`] spells it; Twilio's `no-answer` and the British
    /// `cancelled` are accepted too.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let name = input.trim().to_ascii_lowercase().replace('-', "_");
        let name = if name == "cancelled" {
            "canceled"
        } else {
            &name
        };
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
            .ok_or_else(|| OutcomeMixError::UnknownOutcome(input.chars().take(40).collect()))
    }
}

/// Why an outcome mix such as `human=8,machine=1,no_answer=1` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeMixError {
    /// A name is not one of [`SimOutcome::ALL`].
    #[error("`{0}` is not an outcome (human, machine, no_answer, busy, failed, canceled)")]
    UnknownOutcome(String),
    /// An entry is not `outcome=weight` with a whole-number weight.
    #[error("`{0}` is not `outcome=weight`")]
    Malformed(String),
    /// Every weight is zero, so nothing could ever be drawn.
    #[error("the outcome weights add up to zero")]
    ZeroTotal,
}

/// Parses a comma-separated outcome mix, e.g. `human=8,machine=1,no_answer=1`.
///
/// # Errors
///
/// [`OutcomeMixError`] for an unknown name, an entry without a weight, or only zero weights.
pub fn parse_outcomes(text: &str) -> Result<Vec<(SimOutcome, u32)>, OutcomeMixError> {
    let mut mix = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let malformed = || OutcomeMixError::Malformed(entry.chars().take(40).collect());
        let (name, weight) = entry.split_once('=').ok_or_else(malformed)?;
        let weight: u32 = weight.trim().parse().map_err(|_| malformed())?;
        mix.push((name.parse()?, weight));
    }
    if mix.iter().all(|(_, weight)| *weight == 0) {
        return Err(OutcomeMixError::ZeroTotal);
    }
    Ok(mix)
}

/// How the simulator's calls behave; [`TwilioSimState::with_behaviour`] sets it.
///
/// Every duration is measured from the end of the previous phase: `create_latency`, then
/// `dial` (to `ringing`), then `ring` (to the answer or the unanswered end), then `talk` (to
/// the callee hanging up). `amd_delay` runs from the answer.
///
/// [`TwilioSimState::with_behaviour`]: super::TwilioSimState::with_behaviour
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBehaviour {
    /// How long the create request waits before it is answered; the call is recorded (and
    /// counted as active) when the request arrives.
    pub create_latency: Duration,
    /// From the answered create request to `ringing` (`initiated` is immediate); a busy or
    /// failed call ends after it.
    pub dial: Duration,
    /// How long it rings before it is answered or given up.
    pub ring: Duration,
    /// How long an answered call lasts before the callee hangs up, unless the media stream
    /// or a REST hang-up ends it first.
    pub talk: Duration,
    /// How long answering machine detection takes after the answer.
    pub amd_delay: Duration,
    /// The outcome mix: each outcome with its weight.
    pub outcomes: Vec<(SimOutcome, u32)>,
    /// The seed of the RNG that draws outcomes from `outcomes`.
    pub seed: u64,
    /// Outcomes for specific callees (`To` as sent), which override the mix.
    pub by_callee: BTreeMap<String, SimOutcome>,
    /// What the callee does on an answered call's media stream, step by step; after the last
    /// step (or with none) they stay silent until the call ends.
    pub caller_script: Vec<CallerStep>,
}

/// One step of a simulated callee on the media stream. Audio is sent as Twilio does: 160
/// bytes of μ-law every 20 ms, silence or a tone ([`super::tone_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerStep {
    /// Stays silent for `ms`.
    Silence {
        /// Milliseconds.
        ms: u64,
    },
    /// Speaks (a tone) for `ms`.
    Speak {
        /// Milliseconds.
        ms: u64,
    },
    /// Stays silent until the agent finished a sentence: agent audio arrived since this step
    /// began and then none for 400 ms. Gives up after `timeout_ms`.
    WaitForAgentAudio {
        /// Longest wait, in milliseconds.
        timeout_ms: u64,
    },
    /// Stays silent until agent audio is arriving, then speaks for `ms` over it (barge-in).
    SpeakOverAgent {
        /// Milliseconds of speech.
        ms: u64,
    },
    /// Hangs up: sends `stop` and closes the socket.
    Hangup,
}

impl Default for SimBehaviour {
    /// Returns no create latency and a person answering after a second of setup and a
    /// second of ringing, who then stays on the line for an hour (in practice until hung up).
    fn default() -> Self {
        Self {
            create_latency: Duration::ZERO,
            dial: Duration::from_secs(1),
            ring: Duration::from_secs(1),
            talk: Duration::from_secs(3600),
            amd_delay: Duration::from_secs(1),
            outcomes: vec![(SimOutcome::Human, 1)],
            seed: 0,
            by_callee: BTreeMap::new(),
            caller_script: Vec::new(),
        }
    }
}

/// Draws each call's outcome: a `by_callee` entry, else the weighted mix.
#[derive(Debug)]
pub(super) struct OutcomePicker {
    rng: StdRng,
    outcomes: Vec<SimOutcome>,
    /// `None` when the mix is empty or all zero: every call is then [`SimOutcome::Human`].
    weights: Option<WeightedIndex<u32>>,
    by_callee: BTreeMap<String, SimOutcome>,
}

impl OutcomePicker {
    pub(super) fn new(behaviour: &SimBehaviour) -> Self {
        let weights = WeightedIndex::new(behaviour.outcomes.iter().map(|(_, weight)| *weight));
        Self {
            rng: StdRng::seed_from_u64(behaviour.seed),
            outcomes: behaviour
                .outcomes
                .iter()
                .map(|(outcome, _)| *outcome)
                .collect(),
            weights: weights.ok(),
            by_callee: behaviour.by_callee.clone(),
        }
    }

    /// Returns the outcome of the next call to `to`; overridden callees draw nothing, so the
    /// others keep their sequence.
    pub(super) fn pick(&mut self, to: &str) -> SimOutcome {
        if let Some(outcome) = self.by_callee.get(to) {
            return *outcome;
        }
        let Some(weights) = &self.weights else {
            return SimOutcome::Human;
        };
        self.outcomes[weights.sample(&mut self.rng)]
    }
}
