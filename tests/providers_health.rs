//! Provider healthchecks against the in-process vendor simulator: good credentials, a wrong
//! token, a missing credential and an unreachable vendor, for every provider with a remote
//! check; plus the simulator's error bodies and the rule that no report carries a secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use caller::providers::health::{HealthInput, HealthReport, HealthStatus, check};
use caller::providers::http::client;
use caller::providers::sim::{self, SimAccounts};
use caller::secret::Secret;
use serde_json::{Value, json};

const SECRET: &str = "sk-UNIQUE-SECRET-123";

struct Sim {
    base: String,
    accounts: SimAccounts,
    _task: tokio::task::JoinHandle<()>,
}

async fn simulator() -> Sim {
    let accounts = SimAccounts::default();
    let (addr, task) = sim::spawn(accounts.clone()).await;
    Sim {
        base: format!("http://{addr}"),
        accounts,
        _task: task,
    }
}

/// Returns the base URL of a loopback port that nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    let addr: SocketAddr = listener.local_addr().expect("probe port address");
    drop(listener);
    format!("http://{addr}")
}

fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Secret::new((*v).to_owned())))
        .collect()
}

async fn run(provider: &str, settings: Value, credentials: &[(&str, &str)]) -> HealthReport {
    let credentials = creds(credentials);
    let input = HealthInput {
        provider,
        settings: &settings,
        credentials: &credentials,
    };
    check(&client(), input).await
}

fn assert_status(report: &HealthReport, expected: HealthStatus) {
    assert_eq!(report.status, expected, "{report:?}");
}

fn assert_misconfigured_naming(report: &HealthReport, name: &str) {
    assert_status(report, HealthStatus::Misconfigured);
    assert!(report.detail.contains(&format!("`{name}`")), "{report:?}");
}

// --- Twilio ----------------------------------------------------------------------------------

fn twilio_settings(base: &str, sim: &Sim) -> Value {
    json!({ "base_url": base, "account_sid": sim.accounts.twilio_account_sid })
}

#[tokio::test]
async fn twilio_with_good_credentials_is_ok() {
    let sim = simulator().await;
    let token = sim.accounts.twilio_auth_token.clone();
    let report = run(
        "twilio",
        twilio_settings(&sim.base, &sim),
        &[("twilio.auth_token", &token)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
    assert_eq!(report.provider, "twilio");
}

#[tokio::test]
async fn twilio_takes_the_account_sid_from_a_credential_when_settings_lack_it() {
    let sim = simulator().await;
    let sid = sim.accounts.twilio_account_sid.clone();
    let token = sim.accounts.twilio_auth_token.clone();
    let credentials = [
        ("twilio.account_sid", sid.as_str()),
        ("twilio.auth_token", &token),
    ];
    let report = run("twilio", json!({ "base_url": sim.base }), &credentials).await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn twilio_with_a_wrong_token_is_unauthorized() {
    let sim = simulator().await;
    let report = run(
        "twilio",
        twilio_settings(&sim.base, &sim),
        &[("twilio.auth_token", "wrong")],
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn twilio_without_a_token_is_misconfigured_naming_the_credential() {
    let sim = simulator().await;
    let report = run("twilio", twilio_settings(&sim.base, &sim), &[]).await;
    assert_misconfigured_naming(&report, "twilio.auth_token");
}

#[tokio::test]
async fn twilio_on_a_closed_port_is_unreachable() {
    let sim = simulator().await;
    let token = sim.accounts.twilio_auth_token.clone();
    let report = run(
        "twilio",
        twilio_settings(&closed_port(), &sim),
        &[("twilio.auth_token", &token)],
    )
    .await;
    assert_status(&report, HealthStatus::Unreachable);
}

// --- ElevenLabs ------------------------------------------------------------------------------

#[tokio::test]
async fn elevenlabs_with_a_good_key_is_ok() {
    let sim = simulator().await;
    let key = sim.accounts.elevenlabs_api_key.clone();
    let report = run(
        "elevenlabs",
        json!({ "base_url": sim.base }),
        &[("elevenlabs.api_key", &key)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn elevenlabs_with_a_wrong_key_is_unauthorized() {
    let sim = simulator().await;
    let report = run(
        "elevenlabs",
        json!({ "base_url": sim.base }),
        &[("elevenlabs.api_key", "wrong")],
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn elevenlabs_without_a_key_is_misconfigured_naming_the_credential() {
    let sim = simulator().await;
    let report = run("elevenlabs", json!({ "base_url": sim.base }), &[]).await;
    assert_misconfigured_naming(&report, "elevenlabs.api_key");
}

#[tokio::test]
async fn elevenlabs_on_a_closed_port_is_unreachable() {
    let report = run(
        "elevenlabs",
        json!({ "base_url": closed_port() }),
        &[("elevenlabs.api_key", "k")],
    )
    .await;
    assert_status(&report, HealthStatus::Unreachable);
}

// --- HighLevel -------------------------------------------------------------------------------

fn gohighlevel_settings(base: &str, sim: &Sim) -> Value {
    json!({ "base_url": base, "location_id": sim.accounts.gohighlevel_location_id })
}

#[tokio::test]
async fn gohighlevel_with_a_good_private_token_is_ok() {
    let sim = simulator().await;
    let token = sim.accounts.gohighlevel_token.clone();
    let credentials = [("gohighlevel.private_token", token.as_str())];
    let report = run(
        "gohighlevel",
        gohighlevel_settings(&sim.base, &sim),
        &credentials,
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn gohighlevel_with_a_good_oauth_token_and_its_location_is_ok() {
    let sim = simulator().await;
    let oauth = json!({
        "access_token": sim.accounts.gohighlevel_token,
        "refresh_token": "r",
        "userType": "Location",
        "locationId": sim.accounts.gohighlevel_location_id,
    })
    .to_string();
    let report = run(
        "gohighlevel",
        json!({ "base_url": sim.base }),
        &[("gohighlevel.oauth", &oauth)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn gohighlevel_with_a_wrong_token_is_unauthorized() {
    let sim = simulator().await;
    let credentials = [("gohighlevel.private_token", "pit-wrong")];
    let report = run(
        "gohighlevel",
        gohighlevel_settings(&sim.base, &sim),
        &credentials,
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn gohighlevel_with_a_token_for_another_location_is_unauthorized() {
    let sim = simulator().await;
    let token = sim.accounts.gohighlevel_token.clone();
    let settings = json!({ "base_url": sim.base, "location_id": "someOtherLocation000" });
    let report = run(
        "gohighlevel",
        settings,
        &[("gohighlevel.private_token", &token)],
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn gohighlevel_without_a_token_is_misconfigured_naming_the_credential() {
    let sim = simulator().await;
    let report = run("gohighlevel", gohighlevel_settings(&sim.base, &sim), &[]).await;
    assert_misconfigured_naming(&report, "gohighlevel.private_token");
}

#[tokio::test]
async fn gohighlevel_on_a_closed_port_is_unreachable() {
    let sim = simulator().await;
    let credentials = [("gohighlevel.private_token", "pit-x")];
    let report = run(
        "gohighlevel",
        gohighlevel_settings(&closed_port(), &sim),
        &credentials,
    )
    .await;
    assert_status(&report, HealthStatus::Unreachable);
}

// --- Zoho CRM --------------------------------------------------------------------------------

fn zoho_oauth(token: &str, api_domain: &str) -> String {
    json!({
        "access_token": token,
        "api_domain": api_domain,
        "token_type": "Bearer",
        "expires_in": 3600,
    })
    .to_string()
}

#[tokio::test]
async fn zoho_with_a_good_token_is_ok() {
    let sim = simulator().await;
    // The simulator is not a Zoho host: an operator points `api_domain` at it in settings.
    let oauth = zoho_oauth(&sim.accounts.zoho_access_token, "https://www.zohoapis.com");
    let report = run(
        "zoho",
        json!({ "api_domain": sim.base }),
        &[("zoho.oauth", &oauth)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn zoho_settings_override_the_api_domain_of_the_token_response() {
    let sim = simulator().await;
    let oauth = zoho_oauth(&sim.accounts.zoho_access_token, &closed_port());
    let report = run(
        "zoho",
        json!({ "api_domain": sim.base }),
        &[("zoho.oauth", &oauth)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn zoho_with_a_wrong_token_is_unauthorized() {
    let sim = simulator().await;
    let oauth = zoho_oauth("1000.wrong", "https://www.zohoapis.com");
    let report = run(
        "zoho",
        json!({ "api_domain": sim.base }),
        &[("zoho.oauth", &oauth)],
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn zoho_without_a_token_is_misconfigured_naming_the_credential() {
    let sim = simulator().await;
    let report = run("zoho", json!({ "api_domain": sim.base }), &[]).await;
    assert_misconfigured_naming(&report, "zoho.oauth");
}

#[tokio::test]
async fn zoho_on_a_closed_port_is_unreachable() {
    let oauth = zoho_oauth("1000.x", "https://www.zohoapis.com");
    let report = run(
        "zoho",
        json!({ "api_domain": closed_port() }),
        &[("zoho.oauth", &oauth)],
    )
    .await;
    assert_status(&report, HealthStatus::Unreachable);
}

// --- custom ----------------------------------------------------------------------------------

fn custom_settings(base: &str) -> Value {
    json!({ "healthcheck_url": format!("{base}/custom/health") })
}

#[tokio::test]
async fn custom_with_a_good_key_is_ok() {
    let sim = simulator().await;
    let key = sim
        .accounts
        .custom_api_key
        .clone()
        .expect("the default sim requires a key");
    let report = run(
        "custom",
        custom_settings(&sim.base),
        &[("custom.api_key", &key)],
    )
    .await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn custom_with_a_wrong_key_is_unauthorized() {
    let sim = simulator().await;
    let report = run(
        "custom",
        custom_settings(&sim.base),
        &[("custom.api_key", "wrong")],
    )
    .await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn custom_without_a_key_is_unauthorized_by_a_server_that_requires_one() {
    let sim = simulator().await;
    let report = run("custom", custom_settings(&sim.base), &[]).await;
    assert_status(&report, HealthStatus::Unauthorized);
}

#[tokio::test]
async fn custom_without_a_key_is_ok_when_the_server_requires_none() {
    let accounts = SimAccounts {
        custom_api_key: None,
        ..SimAccounts::default()
    };
    let (addr, _task) = sim::spawn(accounts).await;
    let report = run("custom", custom_settings(&format!("http://{addr}")), &[]).await;
    assert_status(&report, HealthStatus::Ok);
}

#[tokio::test]
async fn custom_without_a_healthcheck_url_is_misconfigured_naming_the_setting() {
    let report = run("custom", json!({}), &[("custom.api_key", "k")]).await;
    assert_misconfigured_naming(&report, "healthcheck_url");
}

#[tokio::test]
async fn custom_on_a_closed_port_is_unreachable() {
    let report = run(
        "custom",
        custom_settings(&closed_port()),
        &[("custom.api_key", "k")],
    )
    .await;
    assert_status(&report, HealthStatus::Unreachable);
}

#[tokio::test]
async fn a_vendor_answering_5xx_is_unreachable() {
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _task = tokio::spawn(async move { axum::serve(listener, app).await });
    let settings = json!({ "healthcheck_url": format!("http://{addr}/health") });
    let report = run("custom", settings, &[]).await;
    assert_status(&report, HealthStatus::Unreachable);
    assert!(report.detail.contains("503"), "{report:?}");
}

// --- other providers -------------------------------------------------------------------------

#[tokio::test]
async fn providers_without_a_remote_check_are_unsupported() {
    for provider in [
        "fonoster", "local", "caldav", "static", "crm", "google", "outlook", "calendly", "acuity",
        "openai",
    ] {
        let report = run(provider, json!({}), &[]).await;
        assert_status(&report, HealthStatus::Unsupported);
        assert!(
            report.detail.contains("no remote healthcheck"),
            "{report:?}"
        );
        assert_eq!(report.latency_ms, 0);
    }
}

/// A provider, its settings and its credentials.
type Case<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>);

// --- secrets ---------------------------------------------------------------------------------

#[tokio::test]
async fn reports_never_contain_a_credential_value() {
    let sim = simulator().await;
    let closed = closed_port();
    let location = sim.accounts.gohighlevel_location_id.clone();
    let sid = sim.accounts.twilio_account_sid.clone();
    let zoho_to_sim = zoho_oauth(SECRET, &sim.base);
    let zoho_to_closed = zoho_oauth(SECRET, &closed);
    let malformed = format!("{{\"access_token\": {SECRET}");
    let cases: Vec<Case<'_>> = vec![
        (
            "twilio",
            json!({ "base_url": sim.base, "account_sid": sid }),
            vec![("twilio.auth_token", SECRET)],
        ),
        (
            "twilio",
            json!({ "base_url": closed, "account_sid": sid }),
            vec![("twilio.auth_token", SECRET)],
        ),
        (
            "twilio",
            json!({ "base_url": sim.base }),
            vec![
                ("twilio.account_sid", SECRET),
                ("twilio.auth_token", SECRET),
            ],
        ),
        (
            "elevenlabs",
            json!({ "base_url": sim.base }),
            vec![("elevenlabs.api_key", SECRET)],
        ),
        (
            "elevenlabs",
            json!({ "base_url": closed }),
            vec![("elevenlabs.api_key", SECRET)],
        ),
        (
            "gohighlevel",
            json!({ "base_url": sim.base, "location_id": location }),
            vec![("gohighlevel.private_token", SECRET)],
        ),
        (
            "gohighlevel",
            json!({ "base_url": sim.base }),
            vec![("gohighlevel.oauth", &malformed)],
        ),
        (
            "zoho",
            json!({ "api_domain": sim.base }),
            vec![("zoho.oauth", &zoho_to_sim)],
        ),
        (
            "zoho",
            json!({ "api_domain": closed }),
            vec![("zoho.oauth", &zoho_to_closed)],
        ),
        ("zoho", json!({}), vec![("zoho.oauth", &malformed)]),
        (
            "custom",
            custom_settings(&sim.base),
            vec![("custom.api_key", SECRET)],
        ),
        (
            "custom",
            custom_settings(&closed),
            vec![("custom.api_key", SECRET)],
        ),
    ];
    for (provider, settings, credentials) in cases {
        let report = run(provider, settings, &credentials).await;
        let debug = format!("{report:?}");
        let json = serde_json::to_string(&report).expect("a report serializes");
        assert!(!debug.contains(SECRET), "{provider}: {debug}");
        assert!(!json.contains(SECRET), "{provider}: {json}");
        assert_ne!(report.status, HealthStatus::Ok, "{provider}: {debug}");
    }
}

// --- simulator wire format -------------------------------------------------------------------

async fn raw_get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the simulator answers");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.expect("the simulator answers json"),
    )
}

#[tokio::test]
async fn simulator_refuses_bad_credentials_in_each_vendors_error_shape() {
    let sim = simulator().await;
    let base = &sim.base;
    let sid = &sim.accounts.twilio_account_sid;

    let (status, body) = raw_get(&format!("{base}/2010-04-01/Accounts/{sid}.json"), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        })
    );

    let (status, body) = raw_get(
        &format!("{base}/v1/convai/conversations"),
        &[("xi-api-key", "x")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["detail"]["status"], "invalid_api_key");

    let location = &sim.accounts.gohighlevel_location_id;
    let headers = [("Authorization", "Bearer x"), ("Version", "2021-07-28")];
    let (status, body) = raw_get(&format!("{base}/locations/{location}"), &headers).await;
    assert_eq!(status, 401);
    assert_eq!(body["statusCode"], 401);

    let headers = [("Authorization", "Zoho-oauthtoken x")];
    let (status, body) = raw_get(&format!("{base}/crm/v8/Leads?fields=id"), &headers).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({
            "code": "INVALID_TOKEN",
            "details": {},
            "message": "invalid oauth token",
            "status": "error",
        })
    );
}

#[tokio::test]
async fn simulator_answers_good_credentials_in_each_vendors_success_shape() {
    let sim = simulator().await;
    let base = &sim.base;
    let accounts = &sim.accounts;

    let response = client()
        .get(format!(
            "{base}/2010-04-01/Accounts/{}.json",
            accounts.twilio_account_sid
        ))
        .basic_auth(
            &accounts.twilio_account_sid,
            Some(&accounts.twilio_auth_token),
        )
        .send()
        .await
        .expect("twilio answers");
    let account: Value = response.json().await.expect("json");
    assert_eq!(account["sid"], json!(accounts.twilio_account_sid));
    assert_eq!(account["status"], "active");
    assert!(
        account.get("auth_token").is_none(),
        "the simulator never echoes a secret"
    );

    let headers = [("xi-api-key", accounts.elevenlabs_api_key.as_str())];
    let (status, page) = raw_get(
        &format!("{base}/v1/convai/conversations?page_size=1"),
        &headers,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page["conversations"].is_array() && page["has_more"].is_boolean(),
        "{page}"
    );
    let (status, _) = raw_get(
        &format!("{base}/v1/convai/conversations?page_size=101"),
        &headers,
    )
    .await;
    assert_eq!(status, 422);

    let bearer = format!("Bearer {}", accounts.gohighlevel_token);
    let location = &accounts.gohighlevel_location_id;
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Version", "2021-07-28"),
    ];
    let (status, body) = raw_get(&format!("{base}/locations/{location}"), &headers).await;
    assert_eq!(status, 200);
    assert_eq!(body["location"]["id"], json!(location));
    let (status, _) = raw_get(&format!("{base}/locations/{location}"), &headers[..1]).await;
    assert_eq!(status, 400, "a missing `Version` header is refused");

    let token = format!("Zoho-oauthtoken {}", accounts.zoho_access_token);
    let headers = [("Authorization", token.as_str())];
    let (status, body) = raw_get(
        &format!("{base}/crm/v8/Leads?fields=id&per_page=1"),
        &headers,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["data"].is_array() && body["info"]["more_records"].is_boolean(),
        "{body}"
    );
    let (status, body) = raw_get(&format!("{base}/crm/v8/Leads"), &headers).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "REQUIRED_PARAM_MISSING");
}
