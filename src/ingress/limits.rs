//! Request limits of ingress: body size (413), per-tenant rate (429), and the time floor of
//! authentication failures.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use tokio::time::Instant;

use crate::api::error::ApiError;

/// Reads a request body of at most `limit` bytes; more is 413, a broken stream 400.
///
/// A `Content-Length` over the limit is refused before reading anything.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    refuse_declared_over(headers, limit)?;
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("the request body could not be read".to_owned())
        }
    })
}

/// Refuses (413) a request whose `Content-Length` is over `limit`, before reading anything.
pub fn refuse_declared_over(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

/// Delays an authentication failure until `floor` after the request arrived.
///
/// A known tenant with a bad signature and an unknown tenant then take the same time, so
/// response times tell an attacker nothing about which tenants exist (with the directory's
/// negative cache and the dummy verification of unknown tenants, the work done is the same
/// too; the floor hides what remains, such as a cache miss).
pub async fn auth_failure(
    arrived: Instant,
    floor: std::time::Duration,
    error: ApiError,
) -> ApiError {
    tokio::time::sleep_until(arrived + floor).await;
    error
}
