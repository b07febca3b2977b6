//! The one normalization every rule matches on: lower case, typographic apostrophes made
//! plain, contractions expanded (`don't` → `do not`), words separated by single spaces.
//!
//! Matching phrases on whole words of this form keeps "not interested" from matching
//! "interested" alone, and "don't call" and "do not call" from needing two rules.

/// Returns the words of `text`, normalized.
#[must_use]
pub fn words(text: &str) -> Vec<String> {
    let lowered = text
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '`'], "'");
    let mut words = Vec::new();
    for raw in lowered.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let word = raw.trim_matches('\'');
        if word.is_empty() {
            continue;
        }
        expand(word, &mut words);
    }
    words
}

/// Expands one contraction into its words.
fn expand(word: &str, into: &mut Vec<String>) {
    let whole: Option<&[&str]> = match word {
        "won't" => Some(&["will", "not"]),
        "can't" | "cannot" => Some(&["can", "not"]),
        "shan't" => Some(&["shall", "not"]),
        "i'm" => Some(&["i", "am"]),
        _ => None,
    };
    if let Some(parts) = whole {
        into.extend(parts.iter().map(|part| (*part).to_owned()));
        return;
    }
    if let Some(stem) = word.strip_suffix("n't") {
        into.push(stem.to_owned());
        into.push("not".to_owned());
        return;
    }
    for suffix in ["'re", "'ve", "'ll", "'d", "'s"] {
        if let Some(stem) = word.strip_suffix(suffix) {
            into.push(stem.to_owned());
            // `'s` is "is" or a possessive; either way the stem is the word that matters.
            if suffix != "'s" {
                let expanded = match suffix {
                    "'re" => "are",
                    "'ve" => "have",
                    "'ll" => "will",
                    _ => "would",
                };
                into.push(expanded.to_owned());
            }
            return;
        }
    }
    into.push(word.to_owned());
}

/// Returns `text` normalized and wrapped in spaces, so a phrase `" a b "` matches whole
/// words only.
#[must_use]
pub fn padded(text: &str) -> String {
    format!(" {} ", words(text).join(" "))
}

/// Returns the first phrase of `phrases` that occurs in `padded` (made by [`padded`]), on
/// whole words.
#[must_use]
pub fn find<'a>(padded: &str, phrases: &[&'a str]) -> Option<&'a str> {
    phrases
        .iter()
        .copied()
        .find(|phrase| padded.contains(&format!(" {phrase} ")))
}

/// Cuts `text` to at most `max` characters, at a word boundary when there is one, marking
/// the cut with `…`.
#[must_use]
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match kept.rfind(char::is_whitespace) {
        Some(space) if space > kept.len() / 2 => kept[..space].trim_end(),
        _ => kept.as_str(),
    };
    format!("{cut}…")
}

/// Splits `text` into sentences at `.`, `!` and `?` (and line breaks).
#[must_use]
pub fn sentences(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let ends = match c {
            '\n' => true,
            '.' | '!' | '?' => chars.peek().is_none_or(|(_, next)| next.is_whitespace()),
            _ => false,
        };
        if ends {
            let end = index + c.len_utf8();
            let sentence = text[start..end].trim();
            if !sentence.is_empty() {
                sentences.push(sentence);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest);
    }
    sentences
}
