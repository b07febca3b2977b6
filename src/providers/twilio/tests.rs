//! Tests of the Twilio adapter: request forms, error classification, and the adapter against the simulator and the official spec.

use super::*;
use crate::ids::PhoneNumber;
use crate::providers::sim_twilio::{self, SimFault, TwilioSimState};
use crate::providers::twilio_spec::{check_against, resolve, spec};

fn request(to: &str) -> PlaceCall {
    PlaceCall {
        to: PhoneNumber::parse(to).expect("a test number"),
        from: PhoneNumber::parse("+18668675310").expect("a test number"),
        instructions: CallInstructions::Url(
            "https://platform.example.com/twiml/outbound?attempt=a1".to_owned(),
        ),
        status_callback: "https://platform.example.com/twilio/status?attempt=a1".to_owned(),
        machine_detection_callback: Some("https://platform.example.com/twilio/amd".to_owned()),
        record: true,
        timeout_secs: 30,
    }
}

async fn adapter_and_sim(token: &str) -> (Twilio, TwilioSimState) {
    let state = TwilioSimState::default();
    let (addr, _task) = sim_twilio::spawn(state.clone()).await;
    let twilio = Twilio::new(state.account_sid(), Secret::new(token.to_owned()))
        .expect("the simulator's account sid is valid")
        .with_base_url(&format!("http://{addr}"));
    (twilio, state)
}

async fn connected() -> (Twilio, TwilioSimState) {
    let token = crate::providers::sim::SimAccounts::default().twilio_auth_token;
    adapter_and_sim(&token).await
}

fn params_named<'a>(form: &'a [(&'static str, String)], name: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn create_form_carries_every_requested_option() {
    let form = create_call_form(&request("+14155551212"));
    assert_eq!(params_named(&form, "To"), ["+14155551212"]);
    assert_eq!(params_named(&form, "From"), ["+18668675310"]);
    assert_eq!(
        params_named(&form, "Url"),
        ["https://platform.example.com/twiml/outbound?attempt=a1"]
    );
    assert!(params_named(&form, "Twiml").is_empty());
    assert_eq!(
        params_named(&form, "StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(params_named(&form, "StatusCallbackMethod"), ["POST"]);
    assert_eq!(params_named(&form, "MachineDetection"), ["Enable"]);
    assert_eq!(params_named(&form, "AsyncAmd"), ["true"]);
    assert_eq!(
        params_named(&form, "AsyncAmdStatusCallback"),
        ["https://platform.example.com/twilio/amd"]
    );
    assert_eq!(params_named(&form, "Record"), ["true"]);
    assert_eq!(params_named(&form, "Timeout"), ["30"]);
}

#[test]
fn create_form_omits_disabled_options_and_sends_inline_twiml() {
    let mut plain = request("+14155551212");
    plain.machine_detection_callback = None;
    plain.record = false;
    plain.instructions = CallInstructions::Twiml("<Response><Hangup/></Response>".to_owned());
    let form = create_call_form(&plain);
    for absent in [
        "MachineDetection",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "Record",
        "Url",
    ] {
        assert!(params_named(&form, absent).is_empty(), "{absent} was sent");
    }
    assert_eq!(
        params_named(&form, "Twiml"),
        ["<Response><Hangup/></Response>"]
    );
}

#[test]
fn update_forms_hang_up_or_redirect() {
    assert_eq!(update_call_form(None), [("Status", "completed".to_owned())]);
    let url = CallInstructions::Url("https://platform.example.com/transfer".to_owned());
    assert_eq!(
        update_call_form(Some(&url)),
        [("Url", "https://platform.example.com/transfer".to_owned())]
    );
}

fn body(code: u32, status: u16, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
    .expect("json")
}

#[test]
fn invalid_numbers_and_geo_permissions_are_permanent() {
    for code in [21211, 21215] {
        let error = classify(StatusCode::BAD_REQUEST, None, &body(code, 400, "refused"));
        assert_eq!(
            error,
            TelephonyError::Permanent {
                code: Some(code),
                reason: "refused".to_owned()
            }
        );
    }
}

#[test]
fn throttling_and_server_errors_are_transient_with_retry_after() {
    let wait = Some(Duration::from_secs(3));
    let throttled = classify(
        StatusCode::TOO_MANY_REQUESTS,
        wait,
        &body(20429, 429, "Too Many Requests"),
    );
    assert_eq!(
        throttled,
        TelephonyError::Transient {
            reason: "Too Many Requests".to_owned(),
            retry_after: wait
        }
    );
    let unavailable = classify(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
    assert_eq!(
        unavailable,
        TelephonyError::Transient {
            reason: "status 502".to_owned(),
            retry_after: None
        }
    );
    assert!(classify(StatusCode::REQUEST_TIMEOUT, None, b"").is_retryable());
}

#[test]
fn bad_credentials_are_unauthorized_and_missing_calls_not_found() {
    let refused = classify(
        StatusCode::UNAUTHORIZED,
        None,
        &body(20003, 401, "Authenticate"),
    );
    assert_eq!(refused, TelephonyError::Unauthorized { code: Some(20003) });
    assert_eq!(
        classify(StatusCode::FORBIDDEN, None, b""),
        TelephonyError::Unauthorized { code: None }
    );
    let missing = classify(StatusCode::NOT_FOUND, None, &body(20404, 404, "not found"));
    assert_eq!(missing, TelephonyError::NotFound);
}

#[test]
fn retry_after_is_read_in_seconds() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(RETRY_AFTER, "7".parse().expect("header value"));
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
}

#[test]
fn sids_are_a_prefix_and_32_hex_digits() {
    assert!(is_sid("CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "CA"));
    assert!(!is_sid("CAaaaa", "CA"));
    assert!(!is_sid("../Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "CA"));
    assert!(matches!(
        Twilio::new("not-a-sid", Secret::new("t".to_owned())),
        Err(TelephonyError::Unauthorized { code: None })
    ));
}

// -----------------------------------------------------------------------------------------
// Conformance against the simulator on a loopback port.

#[tokio::test]
async fn a_placed_call_can_be_fetched_and_hung_up() {
    let (twilio, sim) = connected().await;
    let placed = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect("the call is placed");
    assert!(is_sid(&placed.provider_call_id, "CA"));
    assert_eq!(placed.status, ProviderStatus::Queued);
    let recorded = sim.call(&placed.provider_call_id).expect("recorded");
    assert_eq!(
        recorded.param("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(recorded.param("AsyncAmd"), ["true"]);
    assert_eq!(sim.calls_to("+14155551212"), 1);

    let fetched = twilio
        .fetch_call(&placed.provider_call_id)
        .await
        .expect("the call is fetched");
    assert_eq!(fetched.provider_call_id, placed.provider_call_id);
    assert_eq!(fetched.status, ProviderStatus::Queued);

    twilio
        .redirect(
            &placed.provider_call_id,
            &CallInstructions::Twiml("<Response><Say>bye</Say></Response>".to_owned()),
        )
        .await
        .expect("a live call is redirected");
    twilio
        .hang_up(&placed.provider_call_id)
        .await
        .expect("the call is hung up");
    let ended = twilio
        .fetch_call(&placed.provider_call_id)
        .await
        .expect("the call is fetched");
    assert_eq!(ended.status, ProviderStatus::Completed);
    assert_eq!(sim.active_calls(), 0);
    assert_eq!(sim.max_concurrency(), 1);
}

#[tokio::test]
async fn an_invalid_number_is_a_permanent_21211() {
    let (twilio, sim) = connected().await;
    // `PhoneNumber` accepts it (E.164, 7 digits); Twilio refuses a North American number that short.
    let error = twilio
        .place_call(&request("+1555123"))
        .await
        .expect_err("refused");
    assert!(matches!(
        error,
        TelephonyError::Permanent {
            code: Some(21211),
            ..
        }
    ));
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn a_number_without_geo_permission_is_a_permanent_21215() {
    let (twilio, _sim) = connected().await;
    let error = twilio
        .place_call(&request("+88213000001"))
        .await
        .expect_err("refused");
    assert!(matches!(
        error,
        TelephonyError::Permanent {
            code: Some(21215),
            ..
        }
    ));
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_20003_and_never_echoed() {
    let (twilio, sim) = adapter_and_sim("wrong-token-value").await;
    let error = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect_err("refused");
    assert_eq!(error, TelephonyError::Unauthorized { code: Some(20003) });
    assert!(!format!("{error} {error:?}").contains("wrong-token-value"));
    assert!(!format!("{twilio:?}").contains("wrong-token-value"));
    assert!(sim.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_call_is_not_found() {
    let (twilio, _sim) = connected().await;
    let unknown = "CA0123456789abcdef0123456789abcdef";
    assert_eq!(
        twilio.fetch_call(unknown).await,
        Err(TelephonyError::NotFound)
    );
    assert_eq!(twilio.hang_up(unknown).await, Err(TelephonyError::NotFound));
    assert_eq!(
        twilio.fetch_call("../x").await,
        Err(TelephonyError::NotFound)
    );
}

#[tokio::test]
async fn throttling_is_transient_with_the_providers_retry_after() {
    let (twilio, sim) = connected().await;
    sim.push_fault(SimFault {
        status: 429,
        code: 20429,
        retry_after_secs: Some(2),
    });
    let error = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect_err("throttled");
    assert!(matches!(
        error,
        TelephonyError::Transient { retry_after: Some(wait), .. } if wait == Duration::from_secs(2)
    ));
    twilio
        .place_call(&request("+14155551212"))
        .await
        .expect("the retry succeeds");
    assert_eq!(sim.calls_to("+14155551212"), 1);
}

#[tokio::test]
async fn concurrency_counts_calls_not_yet_ended() {
    let (twilio, sim) = connected().await;
    let first = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect("placed");
    let second = twilio
        .place_call(&request("+14155551213"))
        .await
        .expect("placed");
    twilio
        .hang_up(&first.provider_call_id)
        .await
        .expect("hung up");
    twilio
        .hang_up(&first.provider_call_id)
        .await
        .expect("hanging up twice is harmless");
    let third = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect("placed");
    assert_eq!(sim.max_concurrency(), 2);
    assert_eq!(sim.active_calls(), 2);
    assert_eq!(sim.calls_to("+14155551212"), 2);
    assert_ne!(second.provider_call_id, third.provider_call_id);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // A port that was just free: nothing listens on it once the listener is dropped.
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    let token = Secret::new("t".to_owned());
    let twilio = Twilio::new("AC00000000000000000000000000000001", token)
        .expect("valid sid")
        .with_base_url(&format!("http://{addr}"));
    let error = twilio
        .place_call(&request("+14155551212"))
        .await
        .expect_err("nothing listens on the port");
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn a_create_without_an_answer_is_unconfirmed_but_a_fetch_is_transient() {
    use tokio::io::AsyncReadExt;
    // Reads each request, then hangs up without answering.
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let _server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0_u8; 4096];
            let _read = socket.read(&mut buffer).await;
        }
    });
    let token = Secret::new("t".to_owned());
    let twilio = Twilio::new("AC00000000000000000000000000000001", token)
        .expect("valid sid")
        .with_base_url(&format!("http://{addr}"));
    let created = twilio.place_call(&request("+14155551212")).await;
    assert!(
        matches!(created, Err(TelephonyError::Unconfirmed { .. })),
        "{created:?}"
    );
    let fetched = twilio
        .fetch_call("CA0123456789abcdef0123456789abcdef")
        .await;
    assert!(
        matches!(fetched, Err(TelephonyError::Transient { .. })),
        "{fetched:?}"
    );
}

// -----------------------------------------------------------------------------------------
// The simulator's Call resource against the official OpenAPI description.

#[tokio::test]
async fn the_simulators_created_call_matches_the_official_schema() {
    let spec = spec();
    let operation = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["post"];
    assert_eq!(operation["operationId"], "CreateCall");
    let schema = resolve(
        &spec,
        &operation["responses"]["201"]["content"]["application/json"]["schema"],
    );
    assert!(schema["properties"].is_object(), "declared properties");

    let state = TwilioSimState::default();
    let (addr, _task) = sim_twilio::spawn(state.clone()).await;
    let token = crate::providers::sim::SimAccounts::default().twilio_auth_token;
    let response = crate::providers::http::client()
        .post(format!(
            "http://{addr}/2010-04-01/Accounts/{}/Calls.json",
            state.account_sid()
        ))
        .basic_auth(state.account_sid(), Some(token))
        .form(&create_call_form(&request("+14155551212")))
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.expect("a json body");
    check_against(&spec, "call", schema, &created);
    let sid = created["sid"].as_str().expect("a sid");
    assert!(is_sid(sid, "CA"), "{sid}");
    assert_eq!(created["status"], "queued");
    let date_created = created["date_created"].as_str().expect("a date");
    assert!(
        chrono::DateTime::parse_from_rfc2822(date_created).is_ok(),
        "{date_created}"
    );
    assert_eq!(
        created["uri"],
        format!(
            "/2010-04-01/Accounts/{}/Calls/{sid}.json",
            state.account_sid()
        )
    );
}
