//! Reading bulk lead uploads: a JSON array of call requests, or CSV with a header row.
//!
//! A malformed document is one 400 naming where (line and column, or CSV record and line); a
//! well-formed document whose items are bad gives each bad item its own reason, so one bad
//! lead never sinks the other 9,999.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::normalize::CallRequest;

/// One item: a call request, or why it is not one.
pub type Item = Result<CallRequest, String>;

/// Columns of a CSV upload that are call request fields; every other column is a custom field.
const CSV_FIELDS: &[&str] = &[
    "phone",
    "first_name",
    "last_name",
    "email",
    "timezone",
    "external_id",
    "campaign_id",
];

/// Reads a JSON array of call request objects.
pub fn json_items(body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let document: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::BadRequest(format!(
            "malformed json at line {} column {}",
            error.line(),
            error.column()
        ))
    })?;
    let Value::Array(items) = document else {
        return Err(ApiError::BadRequest(
            "the body must be a json array of leads".to_owned(),
        ));
    };
    Ok(items
        .into_iter()
        .map(|item| {
            let bytes = serde_json::to_vec(&item).map_err(|error| error.to_string())?;
            CallRequest::parse(&bytes).map_err(|error| error.to_string())
        })
        .collect())
}

/// Reads CSV with a header row naming the fields (a `phone` column is required).
pub fn csv_items(body: &[u8]) -> Result<Vec<Item>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader.headers().map_err(|error| csv_error(&error))?.clone();
    if !headers.iter().any(|name| name == "phone") {
        return Err(ApiError::BadRequest(
            "csv header row has no `phone` column".to_owned(),
        ));
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| csv_error(&error))?;
        let mut object = Map::new();
        let mut custom = Map::new();
        for (name, value) in headers.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            if CSV_FIELDS.contains(&name) {
                object.insert(name.to_owned(), Value::String(value.to_owned()));
            } else {
                custom.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
        if !custom.is_empty() {
            object.insert("custom_fields".to_owned(), Value::Object(custom));
        }
        let bytes = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
        items.push(CallRequest::parse(&bytes).map_err(|error| error.to_string()));
    }
    Ok(items)
}

fn csv_error(error: &csv::Error) -> ApiError {
    let place = error.position().map_or_else(String::new, |position| {
        format!(
            " at record {} (line {})",
            position.record(),
            position.line()
        )
    });
    let problem = match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid utf-8".to_owned(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields where the header has {expected_len}"),
        _ => "is malformed".to_owned(),
    };
    ApiError::BadRequest(format!("csv{place} {problem}"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_body_makes_the_readers_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            json_items(&body).ok();
            csv_items(&body).ok();
        }

        #[test]
        fn csv_like_text_never_panics(body in "[a-z_,\"\n +0-9]{0,256}") {
            csv_items(body.as_bytes()).ok();
        }
    }

    #[test]
    fn csv_rows_become_call_requests_with_custom_columns() {
        let body = b"phone,first_name,budget\n+12015550123,Jane,5000\n,Joe,\n";
        let items = csv_items(body).unwrap();
        assert_eq!(items.len(), 2);
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.phone, "+12015550123");
        assert_eq!(first.first_name.as_deref(), Some("Jane"));
        assert_eq!(first.custom_fields["budget"], Value::from("5000"));
        assert!(items[1].as_ref().unwrap_err().contains("phone"));
    }

    #[test]
    fn malformed_csv_and_json_name_where() {
        let csv = csv_items(b"phone,first_name\n+12015550123,Jane,extra\n").unwrap_err();
        assert!(csv.to_string().contains("bad request"), "{csv}");
        let ApiError::BadRequest(detail) = csv else {
            panic!()
        };
        assert!(
            detail.contains("line 2") && detail.contains("3 fields"),
            "{detail}"
        );
        let ApiError::BadRequest(detail) = json_items(b"[{\"phone\": \"+1\"},\n  {").unwrap_err()
        else {
            panic!()
        };
        assert!(detail.contains("line 2"), "{detail}");
        assert!(csv_items(b"name\nJane\n").is_err());
    }
}
