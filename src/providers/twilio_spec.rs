//! Test-only: checking REST answers against the vendored official Twilio Calls spec
//! (`schemas/vendor/twilio_api_v2010.calls.json`), shared by the adapter's and the
//! simulator's tests.

use serde_json::Value;

/// The vendored spec; `TWILIO_CALLS_SPEC` overrides its location.
const SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/schemas/vendor/twilio_api_v2010.calls.json"
);

/// Reads the spec.
pub(crate) fn spec() -> Value {
    let path = std::env::var("TWILIO_CALLS_SPEC").unwrap_or_else(|_| SPEC_PATH.to_owned());
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"));
    serde_json::from_str(&text).expect("the spec is json")
}

/// Follows local `$ref`s.
pub(crate) fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
        return schema;
    };
    let pointer = reference.strip_prefix('#').expect("a local $ref");
    resolve(spec, spec.pointer(pointer).expect("the $ref resolves"))
}

/// Checks `value` against `schema`'s type, nullability, enum and length, and an object's
/// properties against the declared ones (every property declared, every required present).
pub(crate) fn check_against(spec: &Value, name: &str, schema: &Value, value: &Value) {
    let schema = resolve(spec, schema);
    if value.is_null() {
        assert_eq!(
            schema["nullable"], true,
            "`{name}` is null but not nullable"
        );
        return;
    }
    let json_type = match value {
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) | Value::Null => "number",
    };
    let declared = schema["type"].as_str().expect("a declared type");
    assert!(
        declared == json_type || (declared == "number" && json_type == "integer"),
        "`{name}` is {json_type}, the spec says {declared}"
    );
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        assert!(
            allowed.contains(value),
            "`{name}` = {value} is not in the enum"
        );
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64() {
            assert!(length >= min, "`{name}` is shorter than {min}");
        }
        if let Some(max) = schema["maxLength"].as_u64() {
            assert!(length <= max, "`{name}` is longer than {max}");
        }
    }
    if let (Some(object), Some(properties)) = (
        value.as_object(),
        schema.get("properties").and_then(Value::as_object),
    ) {
        for (field, field_value) in object {
            let declared = properties
                .get(field)
                .unwrap_or_else(|| panic!("`{name}.{field}` is not declared by the spec"));
            check_against(spec, &format!("{name}.{field}"), declared, field_value);
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let field = required.as_str().expect("a property name");
            assert!(
                object.contains_key(field),
                "required `{name}.{field}` is missing"
            );
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check_against(spec, &format!("{name}[{index}]"), item_schema, item);
        }
    }
}
