//! Zoho's wire format in and out: records ↔ [`Contact`], per-record results inside `data[]`,
//! error codes → [`ProviderError`], token answers, Bookings dates and envelopes.
//!
//! Everything here is pure, so every quirk has a unit test: 204 has no body, a 200/201/202
//! may hold `status: error` items, the token endpoint says `error` with HTTP 200, Bookings
//! spells `reponse`, and a malformed answer is [`ProviderError::malformed`], never a panic.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use super::settings::TenantZoho;
use crate::crm::{Contact, ContactDraft, ContactId, ProviderError};
use crate::secret::Secret;
use crate::tenancy::oauth::TokenSet;

/// Record fields the adapter maps itself; the rest are custom fields.
const MAPPED: &[&str] = &[
    "id",
    "First_Name",
    "Last_Name",
    "Full_Name",
    "Email",
    "Phone",
    "Mobile",
    "Tag",
    "Do_Not_Call",
    "Owner",
    "Created_By",
    "Created_Time",
    "Modified_By",
    "Modified_Time",
    "Last_Activity_Time",
];

/// Zoho's error `code` (`{"code": "INVALID_TOKEN", …}`), or `unknown`; only codes made of
/// capitals and underscores are quoted (nothing from the request can come back this way).
pub(crate) fn error_code(body: &Value) -> &str {
    body.get("code")
        .and_then(Value::as_str)
        .filter(|code| {
            (1..=64).contains(&code.len())
                && code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .unwrap_or("unknown")
}

/// Classifies a non-2xx answer (or an error item of `data[]`, with `status` 200).
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    what: &str,
) -> ProviderError {
    // Per-record failures of a refused write sit in `data[0]`, not at the top.
    let body = match body.pointer("/data/0") {
        Some(item) if error_code(body) == "unknown" => item,
        _ => body,
    };
    let code = error_code(body);
    if code == "unknown" {
        return ProviderError::from_status(status, headers, what, format!("status {status}"));
    }
    let retry_after = crate::providers::error::retry_after(headers);
    from_code(code, &body["details"], what, retry_after)
        .unwrap_or_else(|| ProviderError::from_status(status, headers, what, code.to_owned()))
}

/// Maps a Zoho error code; `None` for codes whose meaning is the HTTP status's.
fn from_code(
    code: &str,
    details: &Value,
    what: &str,
    retry_after: Option<std::time::Duration>,
) -> Option<ProviderError> {
    let field = details
        .get("api_name")
        .and_then(Value::as_str)
        .filter(|name| super::settings::is_api_name(name));
    let reason = match field {
        Some(field) => format!("{code} `{field}`"),
        None => code.to_owned(),
    };
    Some(match code {
        "INVALID_TOKEN" | "AUTHENTICATION_FAILURE" | "OAUTH_SCOPE_MISMATCH" | "NO_PERMISSION" => {
            ProviderError::Unauthorized { reason }
        }
        "TOO_MANY_REQUESTS" | "LIMIT_EXCEEDED" => ProviderError::RateLimited { retry_after },
        "INTERNAL_ERROR" => ProviderError::Unavailable { reason },
        // NOTE: Zoho says "no such record" as INVALID_DATA naming the `id` it did not find
        // (message "the id given seems to be invalid"), not with a 404.
        "INVALID_DATA" if field.is_none() && details.get("id").is_some() => {
            ProviderError::NotFound {
                what: what.to_owned(),
            }
        }
        "NOT_FOUND" | "NO_RECORDS_FOUND" => ProviderError::NotFound {
            what: what.to_owned(),
        },
        "INVALID_DATA"
        | "MANDATORY_NOT_FOUND"
        | "DUPLICATE_DATA"
        | "REQUIRED_PARAM_MISSING"
        | "INVALID_MODULE"
        | "INVALID_URL_PATTERN"
        | "INVALID_QUERY"
        | "PATTERN_NOT_MATCHED"
        | "EXPECTED_FIELD_MISSING"
        | "DEPENDENT_FIELD_MISSING"
        | "RECORD_LOCKED"
        | "RECORD_IN_BLUEPRINT"
        | "NOT_ALLOWED"
        | "NOT_SUPPORTED" => ProviderError::Invalid { reason },
        _ => return None,
    })
}

/// The first item of a write's `data[]`: its `details` when `status` is `success`, its error
/// classified otherwise, even inside a 200/201/202.
pub(crate) fn write_result<'a>(
    body: Option<&'a Value>,
    what: &str,
) -> Result<&'a Map<String, Value>, ProviderError> {
    let item = body
        .and_then(|body| body.get("data"))
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .ok_or_else(|| ProviderError::malformed("a write answer without `data[0]`"))?;
    match item.get("status").and_then(Value::as_str) {
        Some("success") => item
            .get("details")
            .and_then(Value::as_object)
            .ok_or_else(|| ProviderError::malformed("a success without `details`")),
        Some("error") => Err(from_code(error_code(item), &item["details"], what, None)
            .unwrap_or_else(|| ProviderError::Invalid {
                reason: error_code(item).to_owned(),
            })),
        _ => Err(ProviderError::malformed("a `data[0]` without a status")),
    }
}

/// The `id` of a write's `details`.
pub(crate) fn written_id(details: &Map<String, Value>) -> Result<String, ProviderError> {
    details
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::malformed("a written record without an id"))
}

/// The records of a read or search answer; none for 204.
pub(crate) fn records(body: Option<&Value>) -> Result<Vec<&Map<String, Value>>, ProviderError> {
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::malformed("records without `data`"))?;
    data.iter()
        .map(|record| {
            record
                .as_object()
                .ok_or_else(|| ProviderError::malformed("a record that is not an object"))
        })
        .collect()
}

/// Reads a record as a contact.
pub(crate) fn contact(
    record: &Map<String, Value>,
    settings: &TenantZoho,
) -> Result<Contact, ProviderError> {
    let id = record
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::malformed("a record without an id"))?;
    let id = ContactId::try_from(id.to_owned())
        .map_err(|_| ProviderError::malformed("a record id we cannot use"))?;
    let text = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .filter(|text| !text.trim().is_empty())
            .map(str::to_owned)
    };
    let phone = ["Phone", "Mobile"]
        .into_iter()
        .filter_map(&text)
        .find_map(|raw| crate::phone::parse(&raw, None).ok());
    let tags = match record.get("Tag") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(|tag| tag.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let timezone = settings
        .timezone_field
        .as_deref()
        .and_then(text)
        .filter(|zone| zone.parse::<Tz>().is_ok());
    let mut custom_fields = BTreeMap::new();
    for (name, value) in record {
        let ours = MAPPED.contains(&name.as_str())
            || name.starts_with('$')
            || *name == settings.status_field
            || Some(name.as_str()) == settings.timezone_field.as_deref();
        if !ours {
            custom_fields.insert(name.clone(), value.clone());
        }
    }
    Ok(Contact {
        id: Some(id),
        first_name: text("First_Name"),
        last_name: text("Last_Name"),
        email: text("Email"),
        phone,
        timezone,
        status: text(&settings.status_field),
        tags,
        custom_fields,
        do_not_call: record.get("Do_Not_Call") == Some(&Value::Bool(true)),
    })
}

/// The record a draft writes. `Last_Name` is mandatory in Zoho: without one, the first name,
/// else the phone, else the e-mail, else `Unknown` stands in.
pub(crate) fn draft_record(draft: &ContactDraft, settings: &TenantZoho) -> Map<String, Value> {
    let mut record = Map::new();
    for (name, value) in &draft.custom_fields {
        record.insert(name.clone(), value.clone());
    }
    let last_name = draft
        .last_name
        .clone()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| draft.phone.as_ref().map(ToString::to_string))
        .or_else(|| draft.email.clone())
        .unwrap_or_else(|| "Unknown".to_owned());
    record.insert("Last_Name".to_owned(), json!(last_name));
    if let Some(first) = &draft.first_name {
        record.insert("First_Name".to_owned(), json!(first));
    }
    if let Some(email) = &draft.email {
        record.insert("Email".to_owned(), json!(email));
    }
    if let Some(phone) = &draft.phone {
        record.insert("Phone".to_owned(), json!(phone.as_str()));
    }
    if let (Some(field), Some(zone)) = (&settings.timezone_field, &draft.timezone) {
        record.insert(field.clone(), json!(zone));
    }
    record
}

/// The fields an upsert matches on, in order: those the draft has.
pub(crate) fn duplicate_check_fields(draft: &ContactDraft) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if draft.phone.is_some() {
        fields.push("Phone");
    }
    if draft.email.is_some() {
        fields.push("Email");
    }
    fields
}

/// Escapes a value for a search `criteria` (`(`, `)`, `,` and `\` take a backslash).
pub(crate) fn criteria_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '(' | ')' | ',' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Reads a token endpoint answer. Zoho reports a refused grant as HTTP 200 with an `error`
/// key (`invalid_code`, `invalid_client`), so the key is checked, not the status.
pub(crate) fn token_answer(body: &Value, now: DateTime<Utc>) -> Result<TokenSet, String> {
    if let Some(error) = body.get("error") {
        let code = error
            .as_str()
            .filter(|code| {
                code.len() <= 64 && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
            .unwrap_or("unknown");
        return Err(format!(
            "zoho refused the refresh ({code}): reconnect the client"
        ));
    }
    let Some(Value::String(access_token)) = body.get("access_token") else {
        return Err("zoho answered the refresh without an access token".to_owned());
    };
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_i64)
        .filter(|seconds| (1..=86_400 * 30).contains(seconds))
        .unwrap_or(3_600);
    let mut extra = Map::new();
    if let Some(domain) = body.get("api_domain").filter(|domain| domain.is_string()) {
        extra.insert("api_domain".to_owned(), domain.clone());
    }
    Ok(TokenSet {
        access_token: Secret::new(access_token.clone()),
        refresh_token: body
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(|token| Secret::new(token.to_owned())),
        expires_at: now + chrono::Duration::seconds(expires_in),
        extra: Secret::new(extra),
    })
}

/// Builds a `multipart/form-data` body of text fields: (content type, body).
pub(crate) fn multipart(fields: &[(String, String)]) -> (String, Vec<u8>) {
    let boundary = format!("caller-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n",
                name.replace('"', "")
            )
            .as_bytes(),
        );
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Zoho Bookings' date, `dd-MMM-yyyy` (`10-Mar-2025`).
pub(crate) fn bookings_date(date: NaiveDate) -> String {
    date.format("%d-%b-%Y").to_string()
}

/// Zoho Bookings' date and time, `dd-MMM-yyyy HH:mm:ss` (24 h).
pub(crate) fn bookings_time(local: NaiveDateTime) -> String {
    local.format("%d-%b-%Y %H:%M:%S").to_string()
}

/// Reads `dd-MMM-yyyy HH:mm:ss` (also without seconds).
pub(crate) fn parse_bookings_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M"))
        .ok()
}

/// Reads an `availableslots` entry: `09:00 AM` (12 h) or `09:00`/`13:30` (24 h). The format
/// is UNCONFIRMED upstream, so both are accepted.
pub(crate) fn parse_slot_time(text: &str) -> Option<NaiveTime> {
    let text = text.trim();
    NaiveTime::parse_from_str(text, "%I:%M %p")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .ok()
}

/// A local time in `zone` as an instant; `None` inside a DST gap, the earlier instant in an
/// overlap.
pub(crate) fn instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .map(|time| time.with_timezone(&Utc))
}

/// What a Bookings answer says: `Ok(returnvalue)` or `Err(message)` for a failure.
pub(crate) fn bookings_answer(
    body: Option<&Value>,
) -> Result<Result<&Value, String>, ProviderError> {
    let response = body
        .and_then(|body| body.get("response"))
        .ok_or_else(|| ProviderError::malformed("a bookings answer without `response`"))?;
    let message = |value: &Value| {
        ["message", "errormessage", "errorMessage"]
            .iter()
            .find_map(|key| value.get(*key).and_then(Value::as_str))
            .unwrap_or("failure")
            .chars()
            .take(200)
            .collect::<String>()
    };
    if response.get("status").and_then(Value::as_str) != Some("success") {
        return Ok(Err(message(response)));
    }
    let returned = response
        .get("returnvalue")
        .ok_or_else(|| ProviderError::malformed("a bookings answer without `returnvalue`"))?;
    if returned.get("status").and_then(Value::as_str) == Some("failure") {
        return Ok(Err(message(returned)));
    }
    Ok(Ok(returned))
}

/// The start times `availableslots` offers: `returnvalue.data` when the `reponse` flag
/// (Zoho's spelling; `response` accepted too) is not false and `data` is a list.
pub(crate) fn offered_times(returned: &Value) -> Vec<NaiveTime> {
    let flag = returned
        .get("reponse")
        .or_else(|| returned.get("response"))
        .and_then(Value::as_bool);
    if flag == Some(false) {
        return Vec::new();
    }
    let mut times: Vec<NaiveTime> = returned
        .get("data")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(parse_slot_time)
                .collect()
        })
        .unwrap_or_default();
    times.sort_unstable();
    times.dedup();
    times
}

/// Maps a Bookings failure message to our vocabulary (Bookings' error texts are UNCONFIRMED:
/// this reads their gist).
pub(crate) fn bookings_failure(message: &str) -> crate::booking::BookingError {
    use crate::booking::BookingError;
    let lower = message.to_lowercase();
    if lower.contains("not found")
        || lower.contains("invalid booking")
        || lower.contains("does not exist")
    {
        BookingError::NotFound
    } else if lower.contains("slot") || lower.contains("available") || lower.contains("booked") {
        BookingError::Unavailable(message.to_owned())
    } else {
        BookingError::Invalid(message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::BookingError;

    fn settings() -> TenantZoho {
        TenantZoho::from_providers(Some(&json!({"timezone_field": "Time_Zone"}))).unwrap()
    }

    #[test]
    fn a_zoho_record_reads_as_a_contact_with_custom_fields_under_their_api_names() {
        let record: Value = serde_json::from_str(crate::providers::sim::ZOHO_LEAD_EXAMPLE).unwrap();
        let mut record = record.as_object().unwrap().clone();
        record.insert("AI_Outcome".to_owned(), json!("Booked"));
        record.insert("$approval_state".to_owned(), json!("approved"));
        let contact = contact(&record, &settings()).unwrap();
        assert_eq!(contact.id.unwrap().as_str(), "4876876000001234567");
        assert_eq!(contact.phone.unwrap().as_str(), "+15125550142");
        assert_eq!(contact.status.as_deref(), Some("Not Contacted"));
        assert_eq!(contact.timezone.as_deref(), Some("America/Chicago"));
        assert_eq!(contact.tags, ["ai-call-requested"]);
        assert_eq!(
            contact.custom_fields.keys().collect::<Vec<_>>(),
            ["AI_Outcome"]
        );
        assert!(!contact.do_not_call);
    }

    #[test]
    fn a_record_without_an_id_is_malformed_not_a_panic() {
        for record in [json!({}), json!({"id": 42}), json!({"id": "a/b"})] {
            let error = contact(record.as_object().unwrap(), &settings()).unwrap_err();
            assert!(
                matches!(error, ProviderError::Unavailable { .. }),
                "{error}"
            );
        }
        assert!(records(Some(&json!({"info": {}}))).is_err());
        assert!(records(Some(&json!({"data": [1]}))).is_err());
        assert!(
            records(None).unwrap().is_empty(),
            "204: no body, no records"
        );
    }

    #[test]
    fn last_name_is_always_sent_because_zoho_requires_it() {
        let phone = crate::ids::PhoneNumber::parse("+15125550142").unwrap();
        let draft = ContactDraft {
            phone: Some(phone),
            ..ContactDraft::default()
        };
        assert_eq!(
            draft_record(&draft, &settings())["Last_Name"],
            "+15125550142"
        );
        assert_eq!(duplicate_check_fields(&draft), ["Phone"]);
        let nobody = draft_record(&ContactDraft::default(), &settings());
        assert_eq!(nobody["Last_Name"], "Unknown");
    }

    #[test]
    fn per_record_errors_inside_a_success_status_are_classified() {
        let item = |code: &str, details: Value| json!({"data": [{"code": code, "details": details, "message": "x", "status": "error"}]});
        let cases = [
            (
                item("MANDATORY_NOT_FOUND", json!({"api_name": "Last_Name"})),
                "invalid",
            ),
            (
                item(
                    "INVALID_DATA",
                    json!({"api_name": "Email", "json_path": "$.data[0].Email"}),
                ),
                "invalid",
            ),
            (item("INVALID_DATA", json!({"id": "123"})), "not found"),
            (item("INVALID_TOKEN", json!({})), "unauthorized"),
            (item("TOO_MANY_REQUESTS", json!({})), "rate limited"),
            (item("INTERNAL_ERROR", json!({})), "unavailable"),
        ];
        for (body, expected) in cases {
            let error = write_result(Some(&body), "contact").unwrap_err();
            let kind = match error {
                ProviderError::Invalid { .. } => "invalid",
                ProviderError::NotFound { .. } => "not found",
                ProviderError::Unauthorized { .. } => "unauthorized",
                ProviderError::RateLimited { .. } => "rate limited",
                ProviderError::Unavailable { .. } => "unavailable",
                ProviderError::Timeout => "timeout",
            };
            assert_eq!(kind, expected, "{body}");
        }
        let ok = json!({"data": [{"code": "SUCCESS", "status": "success", "message": "record added",
            "details": {"id": "77"}}]});
        assert_eq!(
            written_id(write_result(Some(&ok), "contact").unwrap()).unwrap(),
            "77"
        );
        assert!(write_result(Some(&json!({"data": []})), "contact").is_err());
        assert!(write_result(None, "contact").is_err());
    }

    #[test]
    fn http_errors_use_the_zoho_code_before_the_status() {
        let headers = HeaderMap::new();
        let invalid_token = json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"});
        assert!(matches!(
            classify(
                StatusCode::UNAUTHORIZED,
                &headers,
                &invalid_token,
                "contact"
            ),
            ProviderError::Unauthorized { .. }
        ));
        let mandatory = json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"}, "status": "error"});
        let error = classify(StatusCode::BAD_REQUEST, &headers, &mandatory, "contact");
        assert_eq!(
            error,
            ProviderError::Invalid {
                reason: "MANDATORY_NOT_FOUND `Last_Name`".to_owned()
            }
        );
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                &Value::Null,
                "contact"
            ),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_GATEWAY,
                &headers,
                &json!("<html>"),
                "contact"
            ),
            ProviderError::Unavailable { .. }
        ));
        // A code that could quote the request is not echoed.
        let odd = json!({"code": "1000.secret-token"});
        assert!(
            !classify(StatusCode::BAD_REQUEST, &headers, &odd, "x")
                .to_string()
                .contains("secret")
        );
    }

    #[test]
    fn the_token_endpoint_refuses_with_an_error_key_inside_a_200() {
        let now = Utc::now();
        let refused = token_answer(&json!({"error": "invalid_code"}), now).unwrap_err();
        assert!(refused.contains("invalid_code"));
        let odd = token_answer(&json!({"error": "1000.leaked"}), now).unwrap_err();
        assert!(!odd.contains("leaked"));
        let tokens = token_answer(
            &json!({"access_token": "1000.a", "api_domain": "https://www.zohoapis.eu",
                    "token_type": "Bearer", "expires_in": 3600}),
            now,
        )
        .unwrap();
        assert_eq!(tokens.access_token.expose(), "1000.a");
        assert!(
            tokens.refresh_token.is_none(),
            "zoho does not rotate refresh tokens"
        );
        assert_eq!(tokens.expires_at, now + chrono::Duration::hours(1));
        assert_eq!(
            tokens.extra.expose()["api_domain"],
            "https://www.zohoapis.eu"
        );
        assert!(token_answer(&json!({"expires_in": 3600}), now).is_err());
    }

    #[test]
    fn search_criteria_values_are_escaped() {
        assert_eq!(criteria_value("a(b),c\\"), "a\\(b\\)\\,c\\\\");
    }

    #[test]
    fn bookings_dates_and_times_use_zoho_formats() {
        let local = NaiveDate::from_ymd_opt(2025, 3, 10)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        assert_eq!(bookings_date(local.date()), "10-Mar-2025");
        assert_eq!(bookings_time(local), "10-Mar-2025 09:00:00");
        assert_eq!(parse_bookings_time("10-Mar-2025 09:00:00"), Some(local));
        assert_eq!(
            parse_slot_time("09:30 AM"),
            NaiveTime::from_hms_opt(9, 30, 0)
        );
        assert_eq!(
            parse_slot_time("01:30 PM"),
            NaiveTime::from_hms_opt(13, 30, 0)
        );
        assert_eq!(parse_slot_time("13:30"), NaiveTime::from_hms_opt(13, 30, 0));
        assert_eq!(parse_slot_time("soon"), None);
        // 2025-03-09 02:30 does not exist in Chicago (DST gap).
        let gap = NaiveDate::from_ymd_opt(2025, 3, 9)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(instant(chrono_tz::America::Chicago, gap), None);
    }

    #[test]
    fn bookings_answers_read_the_reponse_typo_and_failures() {
        let offered = json!({"response": {"returnvalue": {"reponse": true,
            "data": ["09:30 AM", "09:00 AM", "09:00 AM"], "time_zone": "America/Chicago"},
            "status": "success"}});
        let returned = bookings_answer(Some(&offered)).unwrap().unwrap();
        assert_eq!(
            offered_times(returned),
            [
                NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(9, 30, 0).unwrap()
            ]
        );
        let none = json!({"reponse": false, "data": "Slots Not Available"});
        assert!(offered_times(&none).is_empty());
        let failed = json!({"response": {"returnvalue": {"status": "failure",
            "message": "Slot not available"}, "status": "success"}});
        let message = bookings_answer(Some(&failed)).unwrap().unwrap_err();
        assert!(matches!(
            bookings_failure(&message),
            BookingError::Unavailable(_)
        ));
        assert!(matches!(
            bookings_failure("Invalid booking id"),
            BookingError::NotFound
        ));
        assert!(bookings_answer(Some(&json!({"data": []}))).is_err());
        assert!(bookings_answer(None).is_err());
    }

    #[test]
    fn multipart_bodies_carry_each_field() {
        let (content_type, body) = multipart(&[("a".to_owned(), "1".to_owned())]);
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"a\"\r\n\r\n1\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
