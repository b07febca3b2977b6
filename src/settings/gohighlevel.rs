//! The platform's HighLevel marketplace app and how fast we call HighLevel.

use serde::Deserialize;

use crate::secret::Secret;

/// The platform's HighLevel OAuth app (installs by authorization code, token refreshes) and
/// the pacing of requests per location (`crm::gohighlevel`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoHighLevelSettings {
    /// The app's client id (`gohighlevel.oauth` tenants need it to refresh).
    pub client_id: Option<String>,
    /// The app's client secret.
    pub client_secret: Option<Secret<String>>,
    /// The redirect URI registered with the app, sent with an authorization code exchange.
    pub redirect_uri: Option<String>,
    /// Requests per location per [`Self::interval_ms`] (HighLevel's burst limit: 100).
    pub requests_per_interval: u32,
    /// The rate limit's interval in milliseconds (HighLevel: 10 000).
    pub interval_ms: u64,
    /// Tries of one request answered 429 before giving up with `RateLimited` (at least 1).
    pub max_attempts: u32,
    /// An access token expiring sooner than this many seconds is refreshed before use.
    pub refresh_skew_secs: u64,
}

impl Default for GoHighLevelSettings {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            redirect_uri: None,
            requests_per_interval: 100,
            interval_ms: 10_000,
            max_attempts: 3,
            refresh_skew_secs: 300,
        }
    }
}
