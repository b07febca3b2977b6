use super::*;

fn hmac_auth() -> SimAuth {
    SimAuth::Hmac {
        secret: "s3cret".to_owned(),
        timestamp_header: "x-caller-timestamp".to_owned(),
        signature_header: "x-caller-signature".to_owned(),
    }
}

fn signed(timestamp: i64, body: &[u8], secret: &[u8]) -> HeaderMap {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("x-caller-timestamp", timestamp.to_string().parse().unwrap());
    headers.insert("x-caller-signature", signature.parse().unwrap());
    headers
}

#[test]
fn hmac_requests_need_a_fresh_timestamp_and_the_right_secret() {
    let auth = hmac_auth();
    let now = Utc::now().timestamp();
    let body = br#"{"tags":["a"]}"#;
    assert!(auth.accepts(&signed(now, body, b"s3cret"), body));
    assert!(!auth.accepts(&signed(now, body, b"wrong"), body));
    assert!(!auth.accepts(&signed(now - 3_600, body, b"s3cret"), body));
    assert!(!auth.accepts(&signed(now, body, b"s3cret"), b"{}"));
    assert!(!auth.accepts(&HeaderMap::new(), body));
}

#[test]
fn requests_outside_the_document_are_reported() {
    let request =
        |method: &str, path: &str, query: &[(&str, &str)], body: Option<Value>| SimRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            body,
            status: 200,
        };
    let good = [
        request("GET", "/v1/contacts", &[("phone", "+15125550100")], None),
        request(
            "POST",
            "/v1/contacts/upsert",
            &[],
            Some(json!({"firstName": "Ada", "phone": "+15125550100"})),
        ),
        request(
            "POST",
            "/v1/contacts/c_1/tags/remove",
            &[],
            Some(json!({"tags": ["x"]})),
        ),
    ];
    assert_eq!(spec_violations(&good), Vec::<String>::new());
    let bad = [
        request("GET", "/v1/contacts", &[("phone", "5125550100")], None),
        request("GET", "/v1/contacts", &[("name", "Ada")], None),
        request(
            "POST",
            "/v1/contacts/upsert",
            &[],
            Some(json!({"first_name": "Ada"})),
        ),
        request("DELETE", "/v1/contacts/c_1", &[], None),
        request("POST", "/v1/contacts/c_1/notes", &[], None),
    ];
    assert_eq!(
        spec_violations(&bad).len(),
        bad.len(),
        "{:?}",
        spec_violations(&bad)
    );
}
