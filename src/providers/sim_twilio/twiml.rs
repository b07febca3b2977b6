//! A small, tolerant reader of the TwiML the simulator acts on (A7): the verbs of
//! `<Response>` in order, where `<Connect><Stream url>` with its `<Parameter name value/>`
//! children opens a Media Stream and `<Hangup/>` ends the call. Every other verb is kept by
//! name and otherwise ignored (`<Start><Stream>` forks included).
//!
//! Tolerant means: no XML crate, no validation. Attribute values may use either quote or
//! none; the five predefined entities and numeric references are decoded; the prolog,
//! comments, CDATA and unknown elements are skipped; a missing end tag closes at the next
//! end tag of an enclosing element.

use std::collections::BTreeMap;

/// A `<Stream>` inside `<Connect>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamSpec {
    /// The `url` attribute (`wss://…`, or `ws://…` in tests).
    pub(super) url: String,
    /// The `name` attribute, if any.
    pub(super) name: Option<String>,
    /// The `<Parameter>` children, which arrive as `start.customParameters`.
    pub(super) parameters: BTreeMap<String, String>,
}

/// One verb of `<Response>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verb {
    /// `<Connect>` holding a `<Stream>`: a bidirectional Media Stream that blocks the call.
    ConnectStream(StreamSpec),
    /// `<Hangup/>`.
    Hangup,
    /// Any other verb, by element name.
    Other(String),
}

/// Returns the verbs of `document` in order.
pub(super) fn verbs(document: &str) -> Vec<Verb> {
    let mut verbs = Vec::new();
    // Open elements below `<Response>`; the root itself is not pushed, so verbs sit at depth 0.
    let mut open: Vec<String> = Vec::new();
    for tag in tags(document) {
        if tag.name == "Response" {
            continue;
        }
        match tag.kind {
            TagKind::Close => {
                if let Some(position) = open.iter().rposition(|name| *name == tag.name) {
                    open.truncate(position);
                }
                continue;
            }
            TagKind::Open | TagKind::SelfClosing => {}
        }
        let parents: Vec<&str> = open.iter().map(String::as_str).collect();
        match (parents.as_slice(), tag.name.as_str()) {
            ([], "Hangup") => verbs.push(Verb::Hangup),
            ([], name) => verbs.push(Verb::Other(name.to_owned())),
            (["Connect"], "Stream") => {
                if let Some(last @ Verb::Other(_)) = verbs.last_mut() {
                    *last = Verb::ConnectStream(StreamSpec {
                        url: tag.attribute("url").unwrap_or_default(),
                        name: tag.attribute("name"),
                        parameters: BTreeMap::new(),
                    });
                }
            }
            (["Connect", "Stream"], "Parameter") => {
                if let Some(Verb::ConnectStream(stream)) = verbs.last_mut()
                    && let Some(name) = tag.attribute("name")
                {
                    let value = tag.attribute("value").unwrap_or_default();
                    stream.parameters.insert(name, value);
                }
            }
            _ => {}
        }
        if tag.kind == TagKind::Open {
            open.push(tag.name);
        }
    }
    verbs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Open,
    Close,
    SelfClosing,
}

#[derive(Debug)]
struct Tag {
    name: String,
    kind: TagKind,
    attributes: Vec<(String, String)>,
}

impl Tag {
    fn attribute(&self, name: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// The element tags of `document`, skipping the prolog, comments, CDATA and declarations.
fn tags(document: &str) -> Vec<Tag> {
    let mut found = Vec::new();
    let mut rest = document;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if rest.starts_with("<?") {
            rest = skip_to("?>", rest);
        } else if rest.starts_with("<!--") {
            rest = skip_to("-->", rest);
        } else if rest.starts_with("<![CDATA[") {
            rest = skip_to("]]>", rest);
        } else if rest.starts_with("<!") {
            rest = skip_to(">", rest);
        } else {
            let (tag, after) = read_tag(&rest[1..]);
            found.extend(tag);
            rest = after;
        }
    }
    found
}

/// The text after the first `end` in `rest`; empty when `end` never comes.
fn skip_to<'a>(end: &str, rest: &'a str) -> &'a str {
    rest.find(end).map_or("", |at| &rest[at + end.len()..])
}

/// Reads one tag after its `<`; returns it (if it has a name) and the text after its `>`.
fn read_tag(text: &str) -> (Option<Tag>, &str) {
    let end = tag_end(text);
    let inner = &text[..end];
    let after = text.get(end + 1..).unwrap_or("");
    let (kind, inner) = if let Some(name) = inner.strip_prefix('/') {
        (TagKind::Close, name)
    } else if let Some(body) = inner.trim_end().strip_suffix('/') {
        (TagKind::SelfClosing, body)
    } else {
        (TagKind::Open, inner)
    };
    let name_end = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = inner[..name_end].trim();
    if name.is_empty() {
        return (None, after);
    }
    let tag = Tag {
        name: name.to_owned(),
        kind,
        attributes: attributes(&inner[name_end..]),
    };
    (Some(tag), after)
}

/// The index of the `>` closing a tag, skipping `>` inside quoted values; the text's length
/// when the tag never closes.
fn tag_end(text: &str) -> usize {
    let mut quote = None;
    for (index, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), c) if c == open => quote = None,
            (None, '>') => return index,
            _ => {}
        }
    }
    text.len()
}

/// Parses `name="value" name='value' name=value name` pairs, values entity-decoded.
fn attributes(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let Some(after_equals) = rest.strip_prefix('=') else {
            if !name.is_empty() {
                pairs.push((name.to_owned(), String::new()));
            }
            continue;
        };
        rest = after_equals.trim_start();
        let (value, after) = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let body = &rest[1..];
                let close = body.find(quote).unwrap_or(body.len());
                (&body[..close], body.get(close + 1..).unwrap_or(""))
            }
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if !name.is_empty() {
            pairs.push((name.to_owned(), decode_entities(value)));
        }
        rest = after.trim_start();
    }
    pairs
}

/// Decodes `&amp; &lt; &gt; &quot; &apos;` and `&#NN;` / `&#xNN;`; anything else stays.
pub(super) fn decode_entities(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        decoded.push_str(&rest[..start]);
        rest = &rest[start..];
        let entity = rest
            .find(';')
            .filter(|&end| end <= 12)
            .and_then(|end| Some((entity_char(&rest[1..end])?, end)));
        match entity {
            Some((c, end)) => {
                decoded.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                decoded.push('&');
                rest = &rest[1..];
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

fn entity_char(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}
