//! The simulator's own checks: its spec checker is not vacuous, its recorder redacts.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use super::{Recorded, body_value, multipart_fields, spec};

fn post(path: &str, body: Value, status: u16, response: Value) -> Recorded {
    Recorded {
        method: "POST".to_owned(),
        path: path.to_owned(),
        query: None,
        headers: Vec::new(),
        body: Some(body),
        status,
        response: Some(response),
    }
}

fn added() -> Value {
    json!({"data": [{"code": "SUCCESS", "status": "success", "message": "record added",
        "details": {"Modified_Time": "2025-03-04T09:40:00-06:00", "Created_Time": "2025-03-04T09:40:00-06:00",
            "id": "1", "Modified_By": {"name": "a", "id": "2"}, "Created_By": {"name": "a", "id": "2"}}}]})
}

#[test]
fn the_spec_check_accepts_a_v8_note_and_refuses_the_old_shape() {
    let v8 = post(
        "/crm/v8/Notes",
        json!({"data": [{"Note_Title": "t", "Note_Content": "c",
            "Parent_Id": {"module": {"api_name": "Leads"}, "id": "1"}}]}),
        201,
        added(),
    );
    let report = spec::check(&[v8]);
    assert_eq!(report.checked, 1);
    assert!(report.violations.is_empty(), "{:?}", report.violations);

    let old = post(
        "/crm/v8/Notes",
        json!({"data": [{"Note_Content": "c", "Parent_Id": "1", "se_module": "Leads"}]}),
        201,
        added(),
    );
    assert!(!spec::check(&[old]).violations.is_empty());
}

#[test]
fn the_spec_check_refuses_long_tags_undeclared_parameters_and_odd_answers() {
    let long = post(
        "/crm/v8/Leads/1/actions/add_tags",
        json!({"tags": [{"name": "x".repeat(26)}], "over_write": false}),
        200,
        json!({"data": []}),
    );
    assert!(!spec::check(&[long]).violations.is_empty());
    let search = Recorded {
        method: "GET".to_owned(),
        path: "/crm/v8/Leads/search".to_owned(),
        query: Some("phone=%2B15125550142&colour=red".to_owned()),
        headers: Vec::new(),
        body: None,
        status: 200,
        response: Some(json!({"data": [{"Last_Name": "no id"}]})),
    };
    let violations = spec::check(&[search]).violations.join("\n");
    assert!(
        violations.contains("`colour` is not declared"),
        "{violations}"
    );
    assert!(violations.contains("id"), "{violations}");
}

#[test]
fn recorded_forms_redact_secrets_and_read_multipart() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let form = Bytes::from_static(b"grant_type=refresh_token&refresh_token=1000.r&client_secret=s");
    let body = body_value(&headers, &form).unwrap();
    assert_eq!(body["grant_type"], "refresh_token");
    assert_eq!(body["refresh_token"], "[redacted]");
    assert_eq!(body["client_secret"], "[redacted]");

    let multipart = "--b\r\nContent-Disposition: form-data; name=\"from_time\"\r\n\r\n10-Mar-2025 09:00:00\r\n--b\r\nContent-Disposition: form-data; name=\"customer_details\"\r\n\r\n{\"name\":\"Jane\"}\r\n--b--\r\n";
    let fields = multipart_fields("multipart/form-data; boundary=b", multipart.as_bytes()).unwrap();
    assert_eq!(
        fields,
        [
            ("from_time".to_owned(), "10-Mar-2025 09:00:00".to_owned()),
            (
                "customer_details".to_owned(),
                "{\"name\":\"Jane\"}".to_owned()
            )
        ]
    );
}
