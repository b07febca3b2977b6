//! Reading bulk lead uploads: a JSON array of call requests, or CSV with a header row.
//!
//! The body is parsed **as it arrives** ([`read_items`]): a blocking task reads the request
//! stream through a synchronous bridge, one JSON element or CSV record at a time, so an upload
//! is never held whole in memory, only its parsed leads. Reading stops at the first byte over
//! `bulk_max_body_bytes` or the first item over `bulk_max_leads` (413).
//!
//! A malformed document is one 400 naming where (line and column, or CSV record and line),
//! before anything is published; a well-formed document whose items are bad gives each bad
//! item its own reason, so one bad lead never sinks the other 9,999.

use std::io::{self, Read};

use axum::body::Body;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::error::ApiError;
use crate::normalize::CallRequest;

/// One item: a call request, or why it is not one.
pub type Item = Result<CallRequest, String>;

/// The formats of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: an array of call request objects.
    Json,
    /// `text/csv`: a header row naming the fields, then one lead per record.
    Csv,
}

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

/// Why reading stopped early; carried inside an `io::Error` through the parsers.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("the upload is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the upload has more than {0} leads")]
    TooMany(usize),
}

/// Reads an upload from `body` as it arrives, on a blocking thread.
pub async fn read_items(
    format: Format,
    body: Body,
    max_bytes: usize,
    max_items: usize,
) -> Result<Vec<Item>, ApiError> {
    let mut seen = 0usize;
    let stream = body
        .into_data_stream()
        .map_err(io::Error::other)
        .map(move |chunk| {
            let chunk = chunk?;
            seen = seen.saturating_add(chunk.len());
            if seen > max_bytes {
                return Err(io::Error::other(Stop::TooLarge(max_bytes)));
            }
            Ok(chunk)
        });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    tokio::task::spawn_blocking(move || match format {
        Format::Json => json_items(reader, max_items),
        Format::Csv => csv_items(reader, max_items),
    })
    .await
    .map_err(|_| ApiError::Internal)?
}

/// Maps an I/O failure under a parser: our own stop (413), else a broken request (400).
fn stopped(error: &io::Error) -> ApiError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Stop>())
    {
        Some(stop) => {
            tracing::info!(%stop, "bulk upload refused");
            ApiError::PayloadTooLarge
        }
        None => ApiError::BadRequest("the request body could not be read".to_owned()),
    }
}

/// Reads a JSON array of call request objects, one element at a time.
pub fn json_items(reader: impl Read, max_items: usize) -> Result<Vec<Item>, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let items = deserializer
        .deserialize_seq(Elements { max_items })
        .and_then(|items| deserializer.end().map(|()| items));
    items.map_err(|error| {
        if error.is_io() {
            return stopped(&io::Error::from(error));
        }
        if error.to_string().starts_with("invalid type") {
            return ApiError::BadRequest("the body must be a json array of leads".to_owned());
        }
        if let Some(stop) = error.to_string().strip_prefix("stop: ") {
            tracing::info!(%stop, "bulk upload refused");
            return ApiError::PayloadTooLarge;
        }
        ApiError::BadRequest(format!(
            "malformed json at line {} column {}",
            error.line(),
            error.column()
        ))
    })
}

/// Visits the top-level array, parsing each element as it is read.
struct Elements {
    max_items: usize,
}

impl<'de> Visitor<'de> for Elements {
    type Value = Vec<Item>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a json array of leads")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut items = Vec::new();
        while let Some(element) = seq.next_element::<Value>()? {
            if items.len() == self.max_items {
                return Err(de::Error::custom(format!(
                    "stop: {}",
                    Stop::TooMany(self.max_items)
                )));
            }
            let bytes = serde_json::to_vec(&element).map_err(de::Error::custom)?;
            items.push(CallRequest::parse(&bytes).map_err(|error| error.to_string()));
        }
        Ok(items)
    }
}

/// Reads CSV with a header row naming the fields (a `phone` column is required), one record
/// at a time.
pub fn csv_items(reader: impl Read, max_items: usize) -> Result<Vec<Item>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = reader.headers().map_err(|error| csv_error(&error))?.clone();
    if !headers.iter().any(|name| name == "phone") {
        return Err(ApiError::BadRequest(
            "csv header row has no `phone` column".to_owned(),
        ));
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| csv_error(&error))?;
        if items.len() == max_items {
            tracing::info!(stop = %Stop::TooMany(max_items), "bulk upload refused");
            return Err(ApiError::PayloadTooLarge);
        }
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
    if let csv::ErrorKind::Io(io_error) = error.kind() {
        return stopped(io_error);
    }
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
            json_items(&body[..], 100).ok();
            csv_items(&body[..], 100).ok();
        }

        #[test]
        fn csv_like_text_never_panics(body in "[a-z_,\"\n +0-9]{0,256}") {
            csv_items(body.as_bytes(), 100).ok();
        }
    }

    #[test]
    fn more_items_than_the_limit_stop_the_reading_with_413() {
        let json = br#"[{"phone": "+12015550123"}, {"phone": "+12015550124"}]"#;
        assert!(matches!(
            json_items(&json[..], 1),
            Err(ApiError::PayloadTooLarge)
        ));
        assert_eq!(json_items(&json[..], 2).unwrap().len(), 2);
        let csv = b"phone\n+12015550123\n+12015550124\n";
        assert!(matches!(
            csv_items(&csv[..], 1),
            Err(ApiError::PayloadTooLarge)
        ));
        assert_eq!(csv_items(&csv[..], 2).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_body_over_the_byte_limit_is_413_while_streaming() {
        let body = format!("[{}]", vec![r#"{"phone": "+12015550123"}"#; 100].join(","));
        let small = read_items(Format::Json, Body::from(body.clone()), 64, 1_000).await;
        assert!(matches!(small, Err(ApiError::PayloadTooLarge)));
        let items = read_items(Format::Json, Body::from(body), 1 << 20, 1_000)
            .await
            .unwrap();
        assert_eq!(items.len(), 100);
        let not_an_array = read_items(Format::Json, Body::from("{}"), 64, 10).await;
        assert!(matches!(not_an_array, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn csv_rows_become_call_requests_with_custom_columns() {
        let body = b"phone,first_name,budget\n+12015550123,Jane,5000\n,Joe,\n";
        let items = csv_items(&body[..], 100).unwrap();
        assert_eq!(items.len(), 2);
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.phone, "+12015550123");
        assert_eq!(first.first_name.as_deref(), Some("Jane"));
        assert_eq!(first.custom_fields["budget"], Value::from("5000"));
        assert!(items[1].as_ref().unwrap_err().contains("phone"));
    }

    #[test]
    fn malformed_csv_and_json_name_where() {
        let csv = csv_items(&b"phone,first_name\n+12015550123,Jane,extra\n"[..], 100).unwrap_err();
        assert!(csv.to_string().contains("bad request"), "{csv}");
        let ApiError::BadRequest(detail) = csv else {
            panic!()
        };
        assert!(
            detail.contains("line 2") && detail.contains("3 fields"),
            "{detail}"
        );
        let ApiError::BadRequest(detail) =
            json_items(&b"[{\"phone\": \"+1\"},\n  {"[..], 100).unwrap_err()
        else {
            panic!()
        };
        assert!(detail.contains("line 2"), "{detail}");
        assert!(csv_items(&b"name\nJane\n"[..], 100).is_err());
    }
}
