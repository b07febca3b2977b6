//! The extractive summarizer: the transcript's most informative sentences, in the order
//! they were said, each labelled with its speaker.
//!
//! A sentence scores by its content words (no stop words): how often each recurs in the
//! whole conversation (the topic), plus a bonus for words that carry what a call decides
//! (times, days, bookings, callbacks, prices, refusals). Greetings and one-word answers
//! score nothing. Ties go to the earlier sentence, so the result is deterministic.

use std::collections::HashMap;

use futures::future::BoxFuture;

use super::text;
use super::{Draft, Facts, MAX_SUMMARY_CHARS, Role, Source, SummarizeError, Summarizer, Turn};

/// How many sentences a summary quotes at most.
const SENTENCES: usize = 4;
/// How long one quoted sentence may be.
const SENTENCE_CHARS: usize = 240;
/// What the summary says when there is nothing to quote.
const NOTHING_SAID: &str = "No conversation: nothing was said that could be summarized.";

const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did",
    "do", "does", "for", "from", "had", "has", "have", "he", "her", "hi", "hello", "him", "his",
    "how", "i", "if", "in", "is", "it", "its", "just", "let", "me", "my", "of", "oh", "on", "or",
    "our", "she", "so", "that", "the", "their", "them", "then", "there", "they", "this", "to",
    "um", "uh", "us", "was", "we", "well", "were", "what", "when", "where", "which", "who", "will",
    "with", "would", "you", "your", "shall", "okay", "ok", "yes", "yeah", "bye", "goodbye",
    "thanks", "thank", "great", "sure", "right",
];

/// Words that carry what a call decides.
const DECISIVE: &[&str] = &[
    "book",
    "booked",
    "booking",
    "appointment",
    "schedule",
    "scheduled",
    "callback",
    "call",
    "back",
    "tomorrow",
    "today",
    "week",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "morning",
    "afternoon",
    "evening",
    "o'clock",
    "am",
    "pm",
    "price",
    "cost",
    "quote",
    "interested",
    "not",
    "wrong",
    "number",
    "later",
    "available",
    "time",
    "times",
    "check",
    "visit",
    "confirm",
    "confirmed",
    "cancel",
    "transfer",
];

/// The extractive summarizer (always available; no I/O).
#[derive(Clone, Copy, Debug, Default)]
pub struct Extractive;

impl Summarizer for Extractive {
    fn summarize<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Result<Draft, SummarizeError>> {
        Box::pin(async move { Ok(summarize(&facts.turns)) })
    }
}

fn content_words(sentence: &str) -> Vec<String> {
    text::words(sentence)
        .into_iter()
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .filter(|word| word.chars().count() >= 3 || word.chars().any(|c| c.is_ascii_digit()))
        .collect()
}

struct Candidate<'a> {
    order: usize,
    role: Role,
    sentence: &'a str,
    score: f32,
}

/// Summarizes `turns`: at most [`SENTENCES`] sentences, at most [`MAX_SUMMARY_CHARS`].
#[must_use]
pub fn summarize(turns: &[Turn]) -> Draft {
    let mut frequency: HashMap<String, u32> = HashMap::new();
    let mut sentences = Vec::new();
    for turn in turns {
        for sentence in text::sentences(&turn.text) {
            let words = content_words(sentence);
            for word in &words {
                *frequency.entry(word.clone()).or_default() += 1;
            }
            sentences.push((turn.role, sentence, words));
        }
    }
    let mut candidates: Vec<Candidate<'_>> = sentences
        .iter()
        .enumerate()
        .filter(|(_, (_, _, words))| !words.is_empty())
        .map(|(order, (role, sentence, words))| {
            let mut seen: Vec<&str> = Vec::new();
            let mut score = 0.0_f32;
            for word in words {
                if seen.contains(&word.as_str()) {
                    continue;
                }
                seen.push(word);
                let recurs = frequency.get(word).copied().unwrap_or(1);
                // Counts stay small (a call's worth of words): the cast is exact.
                score += (recurs as f32).sqrt();
                if DECISIVE.contains(&word.as_str()) {
                    score += 2.0;
                }
            }
            Candidate {
                order,
                role: *role,
                sentence,
                score,
            }
        })
        .collect();
    // Highest score first; the earlier sentence wins a tie.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.order.cmp(&b.order)));
    candidates.truncate(SENTENCES);
    let key_points: Vec<String> = candidates.iter().map(labelled).collect();
    candidates.sort_by_key(|candidate| candidate.order);
    let mut summary = String::new();
    for candidate in &candidates {
        let line = labelled(candidate);
        let needed = summary.chars().count() + line.chars().count() + 1;
        if needed > MAX_SUMMARY_CHARS {
            break;
        }
        if !summary.is_empty() {
            summary.push(' ');
        }
        summary.push_str(&line);
    }
    if summary.is_empty() {
        summary = NOTHING_SAID.to_owned();
    }
    Draft {
        text: summary,
        key_points,
        source: Source::Extractive,
    }
}

fn labelled(candidate: &Candidate<'_>) -> String {
    let who = match candidate.role {
        Role::Agent => "Agent",
        Role::User => "Caller",
    };
    format!(
        "{who}: {}",
        text::truncate(candidate.sentence, SENTENCE_CHARS)
    )
}
