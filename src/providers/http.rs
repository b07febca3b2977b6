//! The one place that builds an outbound HTTP client.
//!
//! `reqwest::Client::new` is banned crate-wide (clippy.toml) because it has no timeouts; every
//! provider adapter takes a client from [`client`] instead. Invariant: a request to a vendor
//! that hangs fails after at most [`CONNECT_TIMEOUT`] to connect and [`TOTAL_TIMEOUT`] in all.

use std::time::Duration;

/// How long a TCP (and TLS) connection may take to establish.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a whole request may take, from connecting to reading the last body byte.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` every outbound request carries.
pub const USER_AGENT: &str = concat!("caller/", env!("CARGO_PKG_VERSION"));

/// Returns a client with the crate's timeouts and user agent, which follows no redirects.
///
/// NOTE: provider requests carry credentials in custom headers (`xi-api-key`) that reqwest
/// does not strip on a cross-host redirect, so a 3xx is answered as it is, never followed.
///
/// Build one per process and clone it (clones share the connection pool).
///
/// # Panics
///
/// Panics if the TLS backend cannot initialise, which is a broken build, not a runtime
/// condition.
pub fn client() -> reqwest::Client {
    // NOTE: the crate's single `reqwest::Client::builder()` use site; all clients come from here.
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the http client builder has a static configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_the_crate_and_its_version() {
        assert_eq!(USER_AGENT, format!("caller/{}", env!("CARGO_PKG_VERSION")));
    }

    #[tokio::test]
    async fn client_builds_with_the_static_configuration() {
        let _client = client();
    }
}

/// A vendor's whole answer: status, headers and body.
#[derive(Debug)]
pub struct Exchange {
    /// The status.
    pub status: reqwest::StatusCode,
    /// The headers (`Retry-After`, rate-limit counters, `ETag`, …).
    pub headers: reqwest::header::HeaderMap,
    /// The body, read to the end.
    pub body: bytes::Bytes,
}

/// Sends `request` and reads the whole answer; a failure to connect, send or read is
/// classified once, as [`ProviderError::from_transport`] says.
///
/// # Errors
///
/// The transport's failure, classified.
pub async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<Exchange, crate::providers::error::ProviderError> {
    use crate::providers::error::ProviderError;
    let response = request
        .send()
        .await
        .map_err(|error| ProviderError::from_transport(&error))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|error| ProviderError::from_transport(&error))?;
    Ok(Exchange {
        status,
        headers,
        body,
    })
}
