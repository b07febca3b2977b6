//! JSON Schemas of every bus event, generated from the Rust types into `schemas/events/`.
//!
//! `caller schemas export` writes them; a test regenerates them in memory and fails when the
//! committed files drift, and decodes every golden fixture under `schemas/fixtures/`.

use std::path::Path;

use crate::events::{self, EventSpec};

/// Returns the pretty JSON schema text of one event type.
pub fn render(spec: &EventSpec) -> String {
    let mut schema = serde_json::to_value((spec.schema)()).expect("schemas serialize");
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            format!(
                "https://caller.dev/schemas/events/{}.json",
                spec.file_stem()
            )
            .into(),
        );
        object.insert("x-event-type".to_owned(), spec.event_type.into());
        object.insert("x-event-version".to_owned(), spec.version.into());
        object.insert("x-subject".to_owned(), (spec.subject_pattern)().into());
    }
    let mut text = serde_json::to_string_pretty(&schema).expect("schemas serialize");
    text.push('\n');
    text
}

/// Writes every schema into `dir/events/`; returns the paths written.
pub fn export(dir: &Path) -> anyhow::Result<Vec<String>> {
    let events_dir = dir.join("events");
    std::fs::create_dir_all(&events_dir)?;
    let mut written = Vec::new();
    for spec in events::catalogue() {
        let path = events_dir.join(format!("{}.json", spec.file_stem()));
        std::fs::write(&path, render(&spec))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// Returns the schemas whose committed file differs from the code (missing counts).
pub fn drift(dir: &Path) -> Vec<String> {
    events::catalogue()
        .iter()
        .filter_map(|spec| {
            let path = dir
                .join("events")
                .join(format!("{}.json", spec.file_stem()));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            (committed != render(spec)).then(|| path.display().to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn schemas_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    #[test]
    fn committed_schemas_match_the_code() {
        let drifted = drift(&schemas_dir());
        assert!(
            drifted.is_empty(),
            "schemas drifted, run `caller schemas export`: {drifted:?}"
        );
    }

    #[test]
    fn every_event_has_a_fixture_and_every_fixture_still_decodes() {
        for spec in events::catalogue() {
            let dir = schemas_dir().join("fixtures").join(spec.event_type);
            let current = dir.join(format!("v{}.json", spec.version));
            assert!(
                current.exists(),
                "missing golden fixture {}",
                current.display()
            );
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".expected.json") {
                    continue;
                }
                let fixture: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let decoded = (spec.round_trip_fixture)(&fixture)
                    .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
                let expected_path = path.with_file_name(name.replace(".json", ".expected.json"));
                let expected = if expected_path.exists() {
                    serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap()
                } else {
                    fixture
                };
                assert_eq!(decoded, expected, "{} decodes differently", path.display());
            }
        }
    }
}
