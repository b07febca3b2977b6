//! A small JSON Schema validator for tests: enough to check our vendor wire types against the
//! vendor schemas we keep under `schemas/vendor/` (Twilio Media Streams, ElevenLabs AsyncAPI).
//!
//! There is no JSON Schema crate in the dependency tree, and the two schemas use a small set of
//! keywords, so this implements exactly those. A keyword it does not know is an error rather
//! than silently ignored, so a schema update that starts using one fails the tests instead of
//! passing them vacuously.
//!
//! Assertions: `type` (one or a list; `integer` is a number without a fraction), `nullable`
//! (OpenAPI-style, as the AsyncAPI file uses it: `null` is accepted whatever the other keywords
//! say), `const`, `enum` (numbers compare by value, so `1` equals `1.0`), `required`,
//! `properties`, `additionalProperties` (boolean or schema), `items` (one schema), `minItems`,
//! `maxItems`, `minLength`, `maxLength`, `minimum`, `maximum`, `allOf`, `anyOf`, `oneOf`, local
//! `$ref` (a JSON pointer into the same document, siblings applied too), and `pattern` for the
//! subset of regular expressions the schemas use (anchors, literals, classes, `{n}`, `{n,m}`,
//! `+`, `*`, `?`); any other pattern syntax is reported as unsupported. OpenAPI's `example`,
//! `readOnly` and `writeOnly` only annotate.

use serde_json::{Map, Value};

/// Keywords that only annotate: they never make an instance invalid.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "title",
    "description",
    "examples",
    "default",
    "format",
    "contentEncoding",
    "contentMediaType",
    "deprecated",
    // OpenAPI 3.0 annotations (the HighLevel specs use them).
    "example",
    "readOnly",
    "writeOnly",
];

/// Checks `instance` against the schema at `pointer` (e.g. `#/$defs/ToTwilio`) inside `root`.
/// Returns every violation found, each as `path: reason`.
pub fn validate_at(root: &Value, pointer: &str, instance: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    match resolve(root, pointer) {
        Some(schema) => check(root, schema, instance, "$", &mut errors),
        None => errors.push(format!("unresolvable schema pointer {pointer}")),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Resolves a local `$ref` such as `#/components/schemas/PongPayload`.
fn resolve<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let path = pointer.strip_prefix('#')?;
    root.pointer(path)
}

fn check(root: &Value, schema: &Value, instance: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{path}: schema `false` admits nothing")),
        Value::Object(schema) => schema,
        other => return errors.push(format!("{path}: schema is not an object: {other}")),
    };
    if instance.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    for (keyword, arg) in schema {
        if ANNOTATIONS.contains(&keyword.as_str()) || keyword.starts_with("x-") {
            continue;
        }
        check_keyword(root, schema, keyword, arg, instance, path, errors);
    }
}

fn check_keyword(
    root: &Value,
    schema: &Map<String, Value>,
    keyword: &str,
    arg: &Value,
    instance: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    match keyword {
        "nullable" => {} // handled before the other keywords
        "$ref" => match arg.as_str().and_then(|pointer| resolve(root, pointer)) {
            Some(target) => check(root, target, instance, path, errors),
            None => errors.push(format!("{path}: unresolvable $ref {arg}")),
        },
        "type" => {
            let types: Vec<&str> = match arg {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.iter().any(|name| has_type(instance, name)) {
                errors.push(format!(
                    "{path}: expected type {arg}, got {}",
                    type_name(instance)
                ));
            }
        }
        "const" if !same(arg, instance) => errors.push(format!("{path}: expected const {arg}")),
        "enum" => {
            let options = arg.as_array().map(Vec::as_slice).unwrap_or_default();
            if !options.iter().any(|option| same(option, instance)) {
                errors.push(format!("{path}: {instance} is not one of {arg}"));
            }
        }
        "required" => {
            if let (Some(names), Some(object)) = (arg.as_array(), instance.as_object()) {
                for name in names.iter().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        errors.push(format!("{path}: missing required property `{name}`"));
                    }
                }
            }
        }
        "properties" => {
            if let (Some(properties), Some(object)) = (arg.as_object(), instance.as_object()) {
                for (name, sub) in properties {
                    if let Some(value) = object.get(name) {
                        check(root, sub, value, &format!("{path}.{name}"), errors);
                    }
                }
            }
        }
        "additionalProperties" => {
            let declared = schema.get("properties").and_then(Value::as_object);
            if let Some(object) = instance.as_object() {
                for (name, value) in object {
                    if declared.is_none_or(|declared| !declared.contains_key(name)) {
                        check(root, arg, value, &format!("{path}.{name}"), errors);
                    }
                }
            }
        }
        "items" => {
            if let Some(items) = instance.as_array() {
                for (index, item) in items.iter().enumerate() {
                    check(root, arg, item, &format!("{path}[{index}]"), errors);
                }
            }
        }
        "minItems" | "maxItems" => {
            if let (Some(limit), Some(items)) = (arg.as_u64(), instance.as_array()) {
                let len = items.len() as u64;
                let ok = if keyword == "minItems" {
                    len >= limit
                } else {
                    len <= limit
                };
                if !ok {
                    errors.push(format!("{path}: {len} items violates {keyword} {limit}"));
                }
            }
        }
        "minLength" | "maxLength" => {
            if let (Some(limit), Some(text)) = (arg.as_u64(), instance.as_str()) {
                let length = text.chars().count() as u64;
                let ok = if keyword == "minLength" {
                    length >= limit
                } else {
                    length <= limit
                };
                if !ok {
                    errors.push(format!(
                        "{path}: {length} characters violates {keyword} {limit}"
                    ));
                }
            }
        }
        "minimum" | "maximum" => {
            if let (Some(limit), Some(number)) = (arg.as_f64(), instance.as_f64()) {
                let ok = if keyword == "minimum" {
                    number >= limit
                } else {
                    number <= limit
                };
                if !ok {
                    errors.push(format!("{path}: {number} violates {keyword} {limit}"));
                }
            }
        }
        "pattern" => {
            if let (Some(pattern), Some(text)) = (arg.as_str(), instance.as_str()) {
                match pattern::matches(pattern, text) {
                    Ok(true) => {}
                    Ok(false) => errors.push(format!("{path}: {text:?} does not match {pattern}")),
                    Err(why) => {
                        errors.push(format!("{path}: unsupported pattern {pattern}: {why}"))
                    }
                }
            }
        }
        "allOf" | "anyOf" | "oneOf" => {
            let branches = arg.as_array().map(Vec::as_slice).unwrap_or_default();
            let passing = branches
                .iter()
                .filter(|branch| {
                    let mut sub = Vec::new();
                    check(root, branch, instance, path, &mut sub);
                    sub.is_empty()
                })
                .count();
            let ok = match keyword {
                "allOf" => passing == branches.len(),
                "anyOf" => passing >= 1,
                _ => passing == 1,
            };
            if !ok {
                errors.push(format!(
                    "{path}: {passing} of {} branches match {keyword}",
                    branches.len()
                ));
            }
        }
        "const" => {} // matched above when it fails
        unknown => errors.push(format!("{path}: unsupported schema keyword `{unknown}`")),
    }
}

fn has_type(instance: &Value, name: &str) -> bool {
    match name {
        "null" => instance.is_null(),
        "boolean" => instance.is_boolean(),
        "string" => instance.is_string(),
        "array" => instance.is_array(),
        "object" => instance.is_object(),
        "number" => instance.is_number(),
        "integer" => {
            instance.is_i64()
                || instance.is_u64()
                || instance.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_name(instance: &Value) -> &'static str {
    match instance {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON equality, except that numbers compare by value (`serde_json` keeps `1` and `1.0` apart).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The subset of regular expressions the vendor schemas use: `^`, `$`, literal characters,
/// classes like `[0-9a-fA-F]` or `[0-9*#A-Da-d]`, and the quantifiers `{n}`, `{n,m}`, `+`, `*`,
/// `?`. Anything else (groups, alternation, escapes, `.`) is refused, not approximated.
mod pattern {
    /// One element of a pattern: the characters it accepts and how many times it may repeat.
    struct Atom {
        accepts: Vec<(char, char)>,
        min: usize,
        max: usize,
    }

    pub(super) fn matches(pattern: &str, text: &str) -> Result<bool, String> {
        let anchored_start = pattern.starts_with('^');
        let anchored_end = pattern.ends_with('$');
        if !anchored_start || !anchored_end {
            return Err("only fully anchored patterns (^…$) are supported".to_owned());
        }
        let body = &pattern[1..pattern.len() - 1];
        let atoms = compile(body)?;
        let chars: Vec<char> = text.chars().collect();
        Ok(match_from(&atoms, &chars))
    }

    fn compile(body: &str) -> Result<Vec<Atom>, String> {
        let mut atoms: Vec<Atom> = Vec::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '[' => {
                    let mut accepts = Vec::new();
                    loop {
                        let Some(low) = chars.next() else {
                            return Err("unclosed [".to_owned());
                        };
                        if low == ']' {
                            break;
                        }
                        if matches!(low, '\\' | '^') {
                            return Err(format!("`{low}` inside a class"));
                        }
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') => {
                                    accepts.extend([(low, low), ('-', '-')]);
                                    break;
                                }
                                Some(high) => accepts.push((low, high)),
                                None => return Err("unclosed [".to_owned()),
                            }
                        } else {
                            accepts.push((low, low));
                        }
                    }
                    atoms.push(Atom {
                        accepts,
                        min: 1,
                        max: 1,
                    });
                }
                '{' | '+' | '*' | '?' => {
                    let Some(last) = atoms.last_mut() else {
                        return Err(format!("`{c}` with nothing to repeat"));
                    };
                    let (min, max) = match c {
                        '+' => (1, usize::MAX),
                        '*' => (0, usize::MAX),
                        '?' => (0, 1),
                        _ => {
                            let spec: String = chars.by_ref().take_while(|&c| c != '}').collect();
                            repetition(&spec)?
                        }
                    };
                    last.min = min;
                    last.max = max;
                }
                '(' | ')' | '|' | '.' | '\\' | '^' | '$' | ']' | '}' => {
                    return Err(format!("`{c}` is not supported"));
                }
                literal => atoms.push(Atom {
                    accepts: vec![(literal, literal)],
                    min: 1,
                    max: 1,
                }),
            }
        }
        Ok(atoms)
    }

    fn repetition(spec: &str) -> Result<(usize, usize), String> {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad {{{spec}}}"))
        };
        match spec.split_once(',') {
            None => number(spec).map(|n| (n, n)),
            Some((min, "")) => Ok((number(min)?, usize::MAX)),
            Some((min, max)) => Ok((number(min)?, number(max)?)),
        }
    }

    /// Backtracking match; the patterns are tiny and the strings short (ids, digits).
    fn match_from(atoms: &[Atom], text: &[char]) -> bool {
        let Some((atom, rest)) = atoms.split_first() else {
            return text.is_empty();
        };
        let accepts = |c: &char| {
            atom.accepts
                .iter()
                .any(|&(low, high)| (low..=high).contains(c))
        };
        let run = text.iter().take_while(|c| accepts(c)).count().min(atom.max);
        (atom.min..=run).rev().any(|n| match_from(rest, &text[n..]))
    }

    #[cfg(test)]
    mod tests {
        use super::matches;

        #[test]
        fn the_vendor_patterns_behave_like_regular_expressions() {
            let sid = "^MZ[0-9a-fA-F]{32}$";
            assert_eq!(matches(sid, &format!("MZ{}", "a".repeat(32))), Ok(true));
            assert_eq!(matches(sid, &format!("MZ{}", "a".repeat(31))), Ok(false));
            assert_eq!(matches(sid, &format!("MZ{}g", "a".repeat(31))), Ok(false));
            assert_eq!(matches(sid, "MZ…"), Ok(false));
            assert_eq!(matches("^[0-9]+$", "12"), Ok(true));
            assert_eq!(matches("^[0-9]+$", ""), Ok(false));
            assert_eq!(matches("^[0-9]+$", "1a"), Ok(false));
            assert_eq!(matches("^[0-9*#A-Da-d]$", "#"), Ok(true));
            assert_eq!(matches("^[0-9*#A-Da-d]$", "E"), Ok(false));
        }

        #[test]
        fn unsupported_syntax_is_refused_not_guessed() {
            assert!(matches("^(a|b)$", "a").is_err());
            assert!(matches("[0-9]", "1").is_err());
            assert!(matches("^\\d$", "1").is_err());
        }
    }
}

/// The ElevenLabs Agents AsyncAPI plus two synthetic schemas, `#/x-client` and `#/x-server`:
/// each the `oneOf` of the channel's message payloads in that direction, so a frame must
/// match exactly one message of its direction.
pub fn elevenlabs_asyncapi() -> Value {
    let mut spec = vendor_schema("elevenlabs.agents.asyncapi.json");
    for (direction, name) in [("subscribe", "x-client"), ("publish", "x-server")] {
        let branches: Vec<Value> = spec["channels"]["AgentMessages"][direction]["message"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| {
                let pointer = message["$ref"].as_str().unwrap().trim_start_matches('#');
                spec.pointer(pointer).unwrap()["payload"].clone()
            })
            .collect();
        spec[name] = serde_json::json!({ "oneOf": branches });
    }
    spec
}

/// Panics naming the first of `frames` (JSON text our code sent to Twilio's Media Streams)
/// that breaks Twilio's schema (`#/$defs/ToTwilio`); also when there are none.
pub fn assert_valid_to_twilio(frames: &[String]) {
    let schema = vendor_schema("twilio.media-streams.messages.schema.json");
    assert_all_valid(&schema, "#/$defs/ToTwilio", frames);
}

/// Panics naming the first of `frames` (JSON text our code sent to an ElevenLabs agent) that
/// matches no client message of the AsyncAPI; also when there are none.
pub fn assert_valid_to_elevenlabs(frames: &[String]) {
    assert_all_valid(&elevenlabs_asyncapi(), "#/x-client", frames);
}

fn assert_all_valid(schema: &Value, pointer: &str, frames: &[String]) {
    assert!(!frames.is_empty(), "no frames to check against {pointer}");
    for frame in frames {
        let value: Value = serde_json::from_str(frame).unwrap();
        if let Err(errors) = validate_at(schema, pointer, &value) {
            panic!("{frame} does not match {pointer}:\n{}", errors.join("\n"));
        }
    }
}

/// Reads `schemas/vendor/<name>` as JSON.
pub fn vendor_schema(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/vendor")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Returns the text of `schemas/fixtures/<dir>/<name>`.
pub fn fixture(dir: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/fixtures")
        .join(dir)
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// Returns every file of `schemas/fixtures/<dir>` whose name starts with `prefix`, as (file
/// name, text), sorted by name.
pub fn fixtures(dir: &str, prefix: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/fixtures")
        .join(dir);
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            name.starts_with(prefix)
                .then(|| (name, std::fs::read_to_string(&path).unwrap()))
        })
        .collect();
    found.sort();
    found
}
