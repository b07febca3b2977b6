//! Body templates: `{{name}}` placeholders inside string values (keys and non-string values
//! are left alone).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Every placeholder a template may use.
pub(crate) const KNOWN: &[&str] = &[
    "tenant.id",
    "tenant.crm_account_id",
    "lead.id",
    "lead.first_name",
    "lead.last_name",
    "lead.full_name",
    "lead.email",
    "lead.phone",
    "lead.timezone",
    "request.id",
    "request.seq",
    "now",
];

/// Adds the names of the placeholders in `value` to `out`.
pub(crate) fn placeholders(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                out.insert(after[..end].trim().to_owned());
                rest = &after[end + 2..];
            }
        }
        Value::Array(items) => items.iter().for_each(|item| placeholders(item, out)),
        Value::Object(map) => map.values().for_each(|item| placeholders(item, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Returns `value` with every placeholder replaced from `values` (checked beforehand, so an
/// unknown name cannot occur; it would be left as written).
pub(crate) fn render(value: &Value, values: &BTreeMap<&str, String>) -> Value {
    match value {
        Value::String(text) => {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                out.push_str(&rest[..start]);
                match values.get(after[..end].trim()) {
                    Some(replacement) => out.push_str(replacement),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| render(item, values)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), render(item, values)))
                .collect(),
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_inside_strings_only() {
        let template = serde_json::json!({"a": "x {{lead.phone}} y", "{{b}}": 1, "c": ["{{now}}"]});
        let values = BTreeMap::from([("lead.phone", "+1".to_owned()), ("now", "t".to_owned())]);
        let rendered = render(&template, &values);
        assert_eq!(
            rendered,
            serde_json::json!({"a": "x +1 y", "{{b}}": 1, "c": ["t"]})
        );
        let mut names = BTreeSet::new();
        placeholders(&template, &mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["lead.phone", "now"]);
    }
}
