//! A lexicon score of the caller's mood, in [-1, 1], with negation.
//!
//! Only the caller's words count (the agent is always polite). A word of the lexicon
//! preceded, within three words, by a negator ("not", "never", …) counts reversed and
//! damped: "not happy" is negative, "not bad" mildly positive. The sum is squashed with
//! `s / sqrt(s² + 15)` (the normalization VADER uses), so a long call does not saturate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text;
use super::{Role, Turn};

/// Below this score the caller was negative; above its opposite, positive.
const THRESHOLD: f32 = 0.2;
/// How far back a negator reaches.
const NEGATION_WINDOW: usize = 3;
/// A negated word counts this much of its opposite.
const NEGATED: f32 = -0.75;

/// The caller's mood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    /// Score ≥ 0.2.
    Positive,
    /// In between.
    Neutral,
    /// Score ≤ −0.2.
    Negative,
}

impl Sentiment {
    /// The label of a score.
    #[must_use]
    pub fn of(score: f32) -> Self {
        if score >= THRESHOLD {
            Self::Positive
        } else if score <= -THRESHOLD {
            Self::Negative
        } else {
            Self::Neutral
        }
    }

    /// The stored name (`conversation_summaries.sentiment`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
        }
    }
}

const NEGATORS: &[&str] = &[
    "not", "never", "nobody", "nothing", "neither", "nor", "without", "hardly",
];

/// The lexicon: word and valence.
const LEXICON: &[(&str, f32)] = &[
    ("great", 1.5),
    ("perfect", 1.5),
    ("excellent", 1.5),
    ("wonderful", 1.5),
    ("awesome", 1.5),
    ("love", 1.5),
    ("fantastic", 1.5),
    // Strong on a sales call: "not interested" is the commonest refusal.
    ("interested", 1.5),
    ("good", 1.0),
    ("nice", 1.0),
    ("happy", 1.0),
    ("glad", 1.0),
    ("helpful", 1.0),
    ("appreciate", 1.0),
    ("like", 0.5),
    ("works", 0.5),
    ("sure", 0.5),
    ("yes", 0.5),
    ("yeah", 0.5),
    ("thanks", 0.5),
    ("thank", 0.5),
    ("fine", 0.5),
    ("okay", 0.3),
    ("ok", 0.3),
    ("no", -0.5),
    ("busy", -0.5),
    ("stop", -1.0),
    ("bad", -1.0),
    ("wrong", -0.5),
    ("problem", -0.5),
    ("expensive", -0.5),
    ("unhappy", -1.5),
    ("disappointed", -1.5),
    ("annoying", -1.5),
    ("annoyed", -1.5),
    ("frustrated", -1.5),
    ("upset", -1.5),
    ("angry", -2.0),
    ("hate", -2.0),
    ("terrible", -2.0),
    ("awful", -2.0),
    ("rude", -2.0),
    ("scam", -2.0),
    ("spam", -1.5),
    ("waste", -1.5),
    ("harassment", -2.0),
];

fn valence(word: &str) -> Option<f32> {
    LEXICON
        .iter()
        .find(|(known, _)| *known == word)
        .map(|(_, valence)| *valence)
}

/// The caller's score in [-1, 1]; 0 when they said nothing the lexicon knows.
#[must_use]
pub fn score(turns: &[Turn]) -> f32 {
    let mut sum = 0.0_f32;
    for turn in turns.iter().filter(|turn| turn.role == Role::User) {
        let words = text::words(&turn.text);
        for (index, word) in words.iter().enumerate() {
            let Some(mut value) = valence(word) else {
                continue;
            };
            let window = &words[index.saturating_sub(NEGATION_WINDOW)..index];
            if window
                .iter()
                .any(|before| NEGATORS.contains(&before.as_str()))
            {
                value *= NEGATED;
            }
            sum += value;
        }
    }
    (sum / (sum * sum + 15.0).sqrt()).clamp(-1.0, 1.0)
}
