//! The per-provider healthcheck run when a tenant connects credentials.
//!
//! Each vendor gets its cheapest *authenticated* request; the HTTP status alone decides the
//! [`HealthStatus`]. Default base URLs are the vendors' real ones and `settings.base_url`
//! overrides them, which is how [`super::sim`] or a vendor sandbox is injected.
//!
//! - `twilio`: `GET /2010-04-01/Accounts/{account_sid}.json`, HTTP Basic `sid:auth_token`
//!   (Twilio `FetchAccount`, in the full `twilio_api_v2010.json`, not in the local Calls subset).
//! - `elevenlabs`: `GET /v1/convai/conversations?page_size=1`, header `xi-api-key`
//!   (`elevenlabs.convai.openapi.json`).
//! - `gohighlevel`: `GET /locations/{location_id}`, Bearer token, `Version: 2021-07-28`
//!   (`ghl.locations.subset.json`, operation `get-location`).
//! - `zoho`: `GET {api_domain}/crm/v8/Leads?fields=id&per_page=1`, `Zoho-oauthtoken`
//!   (`zoho-crm.records.json`).
//! - `custom`: `GET {healthcheck_url}`, Bearer `custom.api_key` when present.
//!
//! A 2xx is `Ok`; 401/403 `Unauthorized`; 404 and other 4xx `Misconfigured`; 408, 429, 5xx,
//! connection failures and timeouts `Unreachable`.
//!
//! Invariants: a report's `detail` is built only from fixed texts, setting and credential
//! *names* and the HTTP status code. It never holds a credential value, a response body or a
//! URL (a tenant may put a token in a URL's query). Credential values are never logged.

use std::collections::BTreeMap;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::Value;
use tokio::time::Instant;

use crate::secret::Secret;

/// Real ElevenLabs API host (EL-OAI; residency hosts are set through `base_url`).
const ELEVENLABS_BASE: &str = "https://api.elevenlabs.io";
/// Real HighLevel API v2 host (`servers` of every `ghl.*.json`).
const GOHIGHLEVEL_BASE: &str = "https://services.leadconnectorhq.com";
/// The `Version` header value of the HighLevel Locations API family.
const GOHIGHLEVEL_VERSION: &str = "2021-07-28";
/// Real Twilio REST host.
const TWILIO_BASE: &str = "https://api.twilio.com";

/// Provider names that exist but have no remote credential check.
const WITHOUT_REMOTE_CHECK: &[&str] = &[
    "fonoster", "local", "caldav", "static", "crm", "google", "outlook", "calendly", "acuity",
    "openai",
];

/// What to check: a provider, the tenant's settings for it and its decrypted credentials.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    /// The provider's name, e.g. `"twilio"`.
    pub provider: &'a str,
    /// The tenant's non-secret provider settings, e.g. `{"base_url": "…", "account_sid": "AC…"}`.
    pub settings: &'a Value,
    /// Credential kind (e.g. `"twilio.auth_token"`) to plaintext.
    pub credentials: &'a BTreeMap<String, Secret<String>>,
}

/// The outcome of one healthcheck, safe to show to the tenant and to log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct HealthReport {
    /// The provider that was checked.
    pub provider: String,
    /// The classification of the outcome.
    pub status: HealthStatus,
    /// A fixed, human-readable explanation; never a credential value or a response body.
    pub detail: String,
    /// Time from sending the request to receiving the response head; 0 when nothing was sent.
    pub latency_ms: u64,
}

/// The classification of a healthcheck outcome.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The vendor accepted the credentials.
    Ok,
    /// The vendor rejected the credentials (HTTP 401 or 403).
    Unauthorized,
    /// The vendor could not be reached, timed out, throttled or failed (5xx).
    Unreachable,
    /// A credential or setting is missing or malformed, or the vendor rejected the request.
    Misconfigured,
    /// The provider has no remote check.
    Unsupported,
}

/// Why no request was sent.
enum Refusal {
    Misconfigured(String),
    Unsupported(String),
}

/// Runs the healthcheck of `input.provider` and classifies the outcome; never fails.
#[tracing::instrument(name = "provider_healthcheck", skip_all, fields(provider = input.provider))]
pub async fn check(client: &reqwest::Client, input: HealthInput<'_>) -> HealthReport {
    let report = |status, detail: String, latency_ms| HealthReport {
        provider: input.provider.to_owned(),
        status,
        detail,
        latency_ms,
    };
    let request = match prepare(client, input) {
        Ok(request) => request,
        Err(refusal) => {
            let (status, detail) = match refusal {
                Refusal::Misconfigured(detail) => (HealthStatus::Misconfigured, detail),
                Refusal::Unsupported(detail) => (HealthStatus::Unsupported, detail),
            };
            tracing::info!(status = ?status, detail = %detail, "provider healthcheck not sent");
            return report(status, detail, 0);
        }
    };
    let started = Instant::now();
    let outcome = request.send().await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, detail) = match outcome {
        Ok(response) => classify(response.status()),
        Err(err) => classify_error(&err),
    };
    tracing::info!(status = ?status, latency_ms, "provider healthcheck finished");
    report(status, detail, latency_ms)
}

/// Builds the provider's request, or says why none can be sent.
fn prepare(client: &reqwest::Client, input: HealthInput<'_>) -> Result<RequestBuilder, Refusal> {
    match input.provider {
        "twilio" => twilio(client, input),
        "elevenlabs" => elevenlabs(client, input),
        "gohighlevel" => gohighlevel(client, input),
        "zoho" => zoho(client, input),
        "custom" => custom(client, input),
        known if WITHOUT_REMOTE_CHECK.contains(&known) => Err(Refusal::Unsupported(format!(
            "no remote healthcheck for `{known}`"
        ))),
        _ => Err(Refusal::Unsupported(
            "unknown provider: no remote healthcheck".to_owned(),
        )),
    }
}

/// `GET /2010-04-01/Accounts/{sid}.json` with HTTP Basic `sid:auth_token`: the Account
/// resource is the smallest authenticated read and needs no other resource to exist.
fn twilio(client: &reqwest::Client, input: HealthInput<'_>) -> Result<RequestBuilder, Refusal> {
    let sid = match setting(input.settings, "account_sid") {
        Some(sid) => sid,
        None => credential(input.credentials, "twilio.account_sid").map_err(|_| {
            misconfigured("missing setting `account_sid` (or credential `twilio.account_sid`)")
        })?,
    };
    if !is_twilio_account_sid(sid) {
        return Err(misconfigured(
            "`account_sid` is not `AC` followed by 32 hex digits",
        ));
    }
    let token = credential(input.credentials, "twilio.auth_token")?;
    let base = base_url(input.settings, TWILIO_BASE);
    let url = endpoint(
        base,
        "base_url",
        &["2010-04-01", "Accounts", &format!("{sid}.json")],
    )?;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{sid}:{token}"),
    );
    let authorization = sensitive("twilio.auth_token", &format!("Basic {basic}"))?;
    Ok(client
        .get(url)
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json"))
}

/// `GET /v1/convai/conversations?page_size=1` with `xi-api-key`.
///
/// NOTE: `/v1/user` and `GET /v1/convai/agents` are not in `elevenlabs.convai.openapi.json`;
/// the conversations list is, it is small with `page_size=1`, and it needs the Agents read
/// permission the platform uses anyway (post-call conversation fetch).
fn elevenlabs(client: &reqwest::Client, input: HealthInput<'_>) -> Result<RequestBuilder, Refusal> {
    let key = sensitive(
        "elevenlabs.api_key",
        credential(input.credentials, "elevenlabs.api_key")?,
    )?;
    let base = base_url(input.settings, ELEVENLABS_BASE);
    let mut url = endpoint(base, "base_url", &["v1", "convai", "conversations"])?;
    url.set_query(Some("page_size=1"));
    Ok(client
        .get(url)
        .header(HeaderName::from_static("xi-api-key"), key)
        .header(ACCEPT, "application/json"))
}

/// `GET /locations/{location_id}` with a Bearer token and `Version: 2021-07-28`.
///
/// The token is the Private Integration Token if there is one, else the `access_token` of the
/// stored OAuth token response; the location is `settings.location_id`, else the OAuth
/// response's `locationId`.
fn gohighlevel(
    client: &reqwest::Client,
    input: HealthInput<'_>,
) -> Result<RequestBuilder, Refusal> {
    let (kind, token, oauth_location) =
        match credential(input.credentials, "gohighlevel.private_token") {
            Ok(token) => ("gohighlevel.private_token", token.to_owned(), None),
            Err(_) if input.credentials.contains_key("gohighlevel.oauth") => {
                let oauth = json_credential(input.credentials, "gohighlevel.oauth")?;
                let token = json_field(&oauth, "gohighlevel.oauth", "access_token")?.to_owned();
                let location = oauth
                    .get("locationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                ("gohighlevel.oauth", token, location)
            }
            Err(_) => {
                return Err(misconfigured(
                    "missing credential `gohighlevel.private_token` (or `gohighlevel.oauth`)",
                ));
            }
        };
    let location = match setting(input.settings, "location_id") {
        Some(location) => location.to_owned(),
        None => oauth_location
            .filter(|l| !l.is_empty())
            .ok_or_else(|| misconfigured("missing setting `location_id`"))?,
    };
    if !location
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(misconfigured(
            "`location_id` is not a HighLevel location id",
        ));
    }
    let base = base_url(input.settings, GOHIGHLEVEL_BASE);
    let url = endpoint(base, "base_url", &["locations", &location])?;
    let authorization = sensitive(kind, &format!("Bearer {token}"))?;
    Ok(client
        .get(url)
        .header(AUTHORIZATION, authorization)
        .header("Version", GOHIGHLEVEL_VERSION)
        .header(ACCEPT, "application/json"))
}

/// `GET {api_domain}/crm/v8/Leads?fields=id&per_page=1` with `Zoho-oauthtoken`.
///
/// Returns true for `https://www.zohoapis.<data center>` (and `https://zohoapis…`) only.
pub(crate) fn is_zoho_api_domain(domain: &str) -> bool {
    let Some(host) = domain.strip_prefix("https://") else {
        return false;
    };
    let host = host.trim_end_matches('/');
    let host = host.strip_prefix("www.").unwrap_or(host);
    [
        "com", "eu", "in", "com.au", "jp", "ca", "sa", "com.cn", "uk",
    ]
    .iter()
    .any(|tld| host == format!("zohoapis.{tld}"))
}

/// NOTE: not `GET /crm/v8/org`: that endpoint is in none of the Zoho spec files here and needs
/// the `ZohoCRM.org.READ` scope, which the consent in `protocols/crm-calendar.md` B.2 does not
/// request, so a healthy tenant would fail it. Reading Leads needs only `ZohoCRM.modules.ALL`.
/// Zoho answers 204 with no body when there are no leads, which still proves the token.
fn zoho(client: &reqwest::Client, input: HealthInput<'_>) -> Result<RequestBuilder, Refusal> {
    let oauth = json_credential(input.credentials, "zoho.oauth")?;
    let token = json_field(&oauth, "zoho.oauth", "access_token")?;
    let api_domain = setting(input.settings, "api_domain")
        .or_else(|| setting(input.settings, "base_url"))
        .or_else(|| {
            // The token response's domain is tenant-supplied data: follow it only to Zoho's
            // own API hosts, never to an arbitrary host (operators override with settings).
            oauth
                .get("api_domain")
                .and_then(Value::as_str)
                .filter(|d| is_zoho_api_domain(d))
        })
        .ok_or_else(|| {
            misconfigured("missing setting `api_domain` (or `api_domain` in `zoho.oauth`)")
        })?;
    let url = endpoint(api_domain, "api_domain", &["crm", "v8", "Leads"]).map(|mut url| {
        url.set_query(Some("fields=id&per_page=1"));
        url
    })?;
    let authorization = sensitive("zoho.oauth", &format!("Zoho-oauthtoken {token}"))?;
    Ok(client
        .get(url)
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json"))
}

/// `GET {healthcheck_url}`, with `Authorization: Bearer <custom.api_key>` when that credential
/// exists.
fn custom(client: &reqwest::Client, input: HealthInput<'_>) -> Result<RequestBuilder, Refusal> {
    let raw = setting(input.settings, "healthcheck_url")
        .ok_or_else(|| misconfigured("missing setting `healthcheck_url`"))?;
    let url = parse_http_url(raw, "healthcheck_url")?;
    let mut request = client.get(url);
    if let Ok(key) = credential(input.credentials, "custom.api_key") {
        request = request.header(
            AUTHORIZATION,
            sensitive("custom.api_key", &format!("Bearer {key}"))?,
        );
    }
    Ok(request)
}

/// Maps a response status to a report; the body is never read.
fn classify(status: StatusCode) -> (HealthStatus, String) {
    let code = status.as_u16();
    match code {
        200..=299 => (
            HealthStatus::Ok,
            format!("credentials accepted (http {code})"),
        ),
        401 | 403 => (
            HealthStatus::Unauthorized,
            format!("credentials rejected (http {code})"),
        ),
        404 => (
            HealthStatus::Misconfigured,
            format!("not found (http {code}): check the ids and urls in the settings"),
        ),
        408 | 429 => (
            HealthStatus::Unreachable,
            format!("vendor throttled or timed out (http {code})"),
        ),
        400..=499 => (
            HealthStatus::Misconfigured,
            format!("request rejected (http {code})"),
        ),
        500..=599 => (
            HealthStatus::Unreachable,
            format!("vendor error (http {code})"),
        ),
        _ => (
            HealthStatus::Unreachable,
            format!("unexpected response (http {code})"),
        ),
    }
}

/// Maps a transport error to a report; the error text (which may hold the URL) is only logged,
/// without its URL.
fn classify_error(err: &reqwest::Error) -> (HealthStatus, String) {
    let (status, detail) = if err.is_builder() {
        (HealthStatus::Misconfigured, "request could not be built")
    } else if err.is_timeout() {
        (HealthStatus::Unreachable, "request timed out")
    } else if err.is_connect() {
        (HealthStatus::Unreachable, "connection failed")
    } else if err.is_redirect() {
        (HealthStatus::Unreachable, "too many redirects")
    } else {
        (HealthStatus::Unreachable, "request failed")
    };
    tracing::debug!(error = %DisplayWithoutUrl(err), "provider healthcheck request failed");
    (status, detail.to_owned())
}

/// Displays a reqwest error and its causes without the request URL.
struct DisplayWithoutUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for DisplayWithoutUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut source = std::error::Error::source(self.0);
        f.write_str(if self.0.is_timeout() {
            "timeout"
        } else {
            "request error"
        })?;
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

fn misconfigured(detail: &str) -> Refusal {
    Refusal::Misconfigured(detail.to_owned())
}

/// Returns a non-empty string setting.
fn setting<'a>(settings: &'a Value, key: &str) -> Option<&'a str> {
    settings
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// Returns a non-empty credential, or a refusal naming its kind.
fn credential<'a>(
    credentials: &'a BTreeMap<String, Secret<String>>,
    kind: &str,
) -> Result<&'a str, Refusal> {
    credentials
        .get(kind)
        .map(|secret| secret.expose().as_str())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| Refusal::Misconfigured(format!("missing credential `{kind}`")))
}

/// Parses a credential that holds a JSON object (a stored OAuth token response).
fn json_credential(
    credentials: &BTreeMap<String, Secret<String>>,
    kind: &str,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    // The parse error is dropped on purpose: serde_json messages can quote the input.
    match serde_json::from_str::<Value>(credential(credentials, kind)?) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Refusal::Misconfigured(format!(
            "credential `{kind}` is not a json object"
        ))),
    }
}

fn json_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    kind: &str,
    field: &str,
) -> Result<&'a str, Refusal> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Refusal::Misconfigured(format!("credential `{kind}` has no `{field}`")))
}

/// Returns a header value marked sensitive (reqwest redacts it in `Debug`).
fn sensitive(kind: &str, value: &str) -> Result<HeaderValue, Refusal> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        Refusal::Misconfigured(format!(
            "credential `{kind}` is not a valid http header value"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

fn base_url<'a>(settings: &'a Value, default: &'a str) -> &'a str {
    setting(settings, "base_url").unwrap_or(default)
}

/// Parses an absolute http(s) URL without embedded credentials.
fn parse_http_url(raw: &str, name: &str) -> Result<Url, Refusal> {
    let invalid = || Refusal::Misconfigured(format!("setting `{name}` is not an http(s) url"));
    let url = Url::parse(raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Misconfigured(format!(
            "setting `{name}` must not embed credentials"
        )));
    }
    Ok(url)
}

/// Appends percent-encoded path segments to a base URL, keeping any path prefix it has.
fn endpoint(base: &str, name: &str, segments: &[&str]) -> Result<Url, Refusal> {
    let mut url = parse_http_url(base, name)?;
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| Refusal::Misconfigured(format!("setting `{name}` is not an http(s) url")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn is_twilio_account_sid(sid: &str) -> bool {
    sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRET: &str = "sk-UNIQUE-SECRET-123";

    fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new((*v).to_owned())))
            .collect()
    }

    fn refusal(provider: &str, settings: &Value, credentials: &[(&str, &str)]) -> String {
        let credentials = creds(credentials);
        let input = HealthInput {
            provider,
            settings,
            credentials: &credentials,
        };
        match prepare(&crate::providers::http::client(), input) {
            Ok(_) => panic!("expected a refusal"),
            Err(Refusal::Misconfigured(detail)) => format!("misconfigured: {detail}"),
            Err(Refusal::Unsupported(detail)) => format!("unsupported: {detail}"),
        }
    }

    #[test]
    fn statuses_map_to_health_classes() {
        let cases = [
            (200, HealthStatus::Ok),
            (204, HealthStatus::Ok),
            (401, HealthStatus::Unauthorized),
            (403, HealthStatus::Unauthorized),
            (404, HealthStatus::Misconfigured),
            (400, HealthStatus::Misconfigured),
            (422, HealthStatus::Misconfigured),
            (429, HealthStatus::Unreachable),
            (500, HealthStatus::Unreachable),
            (503, HealthStatus::Unreachable),
            (302, HealthStatus::Unreachable),
        ];
        for (code, expected) in cases {
            let (status, detail) = classify(StatusCode::from_u16(code).unwrap());
            assert_eq!(status, expected, "http {code}");
            assert!(detail.contains(&code.to_string()), "{detail}");
        }
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_segments() {
        let Ok(url) = endpoint(
            "http://127.0.0.1:9/prefix/",
            "base_url",
            &["locations", "a/../b"],
        ) else {
            panic!("valid base");
        };
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/locations/a%2F..%2Fb"
        );
        let Ok(url) = endpoint(
            "https://api.twilio.com",
            "base_url",
            &["2010-04-01", "x.json"],
        ) else {
            panic!("valid base");
        };
        assert_eq!(url.as_str(), "https://api.twilio.com/2010-04-01/x.json");
    }

    #[test]
    fn base_urls_with_credentials_or_other_schemes_are_refused() {
        for base in [
            "https://user:pw@example.com",
            "ftp://example.com",
            "not a url",
        ] {
            let detail = refusal(
                "elevenlabs",
                &json!({ "base_url": base }),
                &[("elevenlabs.api_key", "k")],
            );
            assert!(
                detail.starts_with("misconfigured: setting `base_url`"),
                "{detail}"
            );
        }
    }

    #[test]
    fn missing_credentials_are_named_by_kind() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        let none = json!({});
        let cases = [
            (
                "twilio",
                json!({ "account_sid": sid }),
                "`twilio.auth_token`",
            ),
            ("twilio", none.clone(), "`account_sid`"),
            ("elevenlabs", none.clone(), "`elevenlabs.api_key`"),
            (
                "gohighlevel",
                json!({ "location_id": "loc" }),
                "`gohighlevel.private_token`",
            ),
            ("zoho", none.clone(), "`zoho.oauth`"),
            ("custom", none, "`healthcheck_url`"),
        ];
        for (provider, settings, named) in cases {
            let detail = refusal(provider, &settings, &[]);
            assert!(detail.starts_with("misconfigured: missing"), "{detail}");
            assert!(detail.contains(named), "{provider}: {detail}");
        }
    }

    #[test]
    fn twilio_account_sids_are_validated() {
        assert!(is_twilio_account_sid("AC0123456789abcdef0123456789ABCDEF"));
        assert!(!is_twilio_account_sid("AC0123"));
        assert!(!is_twilio_account_sid("SK0123456789abcdef0123456789abcdef"));
        let detail = refusal(
            "twilio",
            &json!({ "account_sid": "AC../../x" }),
            &[("twilio.auth_token", "t")],
        );
        assert!(detail.contains("`account_sid` is not"), "{detail}");
    }

    #[test]
    fn malformed_oauth_credentials_never_echo_their_value() {
        let cases = [
            (
                "zoho",
                "zoho.oauth",
                format!("{{\"access_token\": {SECRET}}}"),
            ),
            ("zoho", "zoho.oauth", format!("\"{SECRET}\"")),
            (
                "gohighlevel",
                "gohighlevel.oauth",
                format!("{{\"refresh_token\": \"{SECRET}\"}}"),
            ),
            ("elevenlabs", "elevenlabs.api_key", format!("{SECRET}\n")),
        ];
        for (provider, kind, value) in cases {
            let detail = refusal(
                provider,
                &json!({ "location_id": "loc" }),
                &[(kind, &value)],
            );
            assert!(detail.starts_with("misconfigured"), "{detail}");
            assert!(detail.contains(kind), "{detail}");
            assert!(!detail.contains(SECRET), "{detail}");
        }
    }

    #[test]
    fn zoho_ignores_a_non_zoho_api_domain_in_the_token_response() {
        let oauth = r#"{"access_token":"t","api_domain":"http://169.254.169.254"}"#;
        let credentials = creds(&[("zoho.oauth", oauth)]);
        let client = crate::providers::http::client();
        let settings = json!({});
        let input = HealthInput {
            provider: "zoho",
            settings: &settings,
            credentials: &credentials,
        };
        assert!(
            prepare(&client, input).is_err(),
            "a tenant-supplied host is never contacted"
        );
        assert!(is_zoho_api_domain("https://www.zohoapis.com.au"));
        assert!(!is_zoho_api_domain("https://www.zohoapis.com.evil.example"));
        assert!(!is_zoho_api_domain("http://www.zohoapis.com"));
    }

    #[test]
    fn zoho_takes_the_api_domain_from_settings_before_the_token_response() {
        let oauth = r#"{"access_token":"t","api_domain":"https://www.zohoapis.eu"}"#;
        let credentials = creds(&[("zoho.oauth", oauth)]);
        let client = crate::providers::http::client();
        for (settings, expected) in [
            (
                json!({}),
                "https://www.zohoapis.eu/crm/v8/Leads?fields=id&per_page=1",
            ),
            (
                json!({ "api_domain": "http://127.0.0.1:9" }),
                "http://127.0.0.1:9/crm/v8/Leads?fields=id&per_page=1",
            ),
        ] {
            let input = HealthInput {
                provider: "zoho",
                settings: &settings,
                credentials: &credentials,
            };
            let Ok(request) = prepare(&client, input) else {
                panic!("zoho request");
            };
            let request = request.build().unwrap();
            assert_eq!(request.url().as_str(), expected);
            assert!(!format!("{request:?}").contains("Zoho-oauthtoken t"));
        }
    }

    #[test]
    fn providers_without_a_remote_check_are_unsupported() {
        for provider in ["fonoster", "caldav", "google", "made-up"] {
            let detail = refusal(provider, &json!({}), &[]);
            assert!(detail.starts_with("unsupported: "), "{detail}");
            assert!(detail.contains("no remote healthcheck"), "{detail}");
        }
    }

    #[test]
    fn report_serializes_status_in_snake_case() {
        let report = HealthReport {
            provider: "twilio".to_owned(),
            status: HealthStatus::Unauthorized,
            detail: "credentials rejected (http 401)".to_owned(),
            latency_ms: 3,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "unauthorized");
    }
}
