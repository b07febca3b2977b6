//! Request extractors whose rejections are problems, not axum's plain-text defaults.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::tenancy::FieldError;

/// A JSON body; a bad body is 400 (syntax), 413 (size), 415 (type) or 422 naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(classify(&rejection)),
        }
    }
}

/// An optional JSON body: none when the body is empty (with or without a `Content-Type`, as
/// HTTP clients send a bodiless POST either way), else as [`ApiJson`].
impl<S: Send + Sync, T: DeserializeOwned> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let limited = Request::from_parts(parts.clone(), body);
        // Reading as bytes keeps the body limit (`DefaultBodyLimit`) in force.
        let bytes = axum::body::Bytes::from_request(limited, state)
            .await
            .map_err(|error| classify(&JsonRejection::BytesRejection(error)))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        <Self as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

fn classify(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => {
            // "Failed to deserialize the JSON body into the target type: <path>: <message>"
            let text = error.body_text();
            let detail = text
                .split_once("target type: ")
                .map_or(text.as_str(), |(_, rest)| rest);
            let (field, message) = match detail.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => {
                    (field.to_owned(), message.to_owned())
                }
                _ => (String::new(), detail.to_owned()),
            };
            // Only the first line: serde adds the line and column, never the value.
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned();
            ApiError::Invalid(vec![FieldError::new(field, message)])
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::BadRequest("body is not valid json".to_owned())
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::BytesRejection(error) => {
            if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("body could not be read".to_owned())
            }
        }
        _ => ApiError::BadRequest("body could not be read".to_owned()),
    }
}
