//! Body and path extractors whose rejections use the API's error shape and say what is wrong.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{bad_request, ApiError};

/// `axum::Json` with readable rejections: wrong content type → 415, body too large → 413,
/// malformed JSON → 400, JSON of the wrong shape (bad name, unknown field, wrong type) → 422.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        _ => "bad_request",
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send a JSON body with `Content-Type: application/json`".to_owned()
        }
        // serde's message names the field and the problem; drop axum's generic prefix.
        JsonRejection::JsonDataError(e) => without_prefix(&e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            format!("malformed JSON: {}", without_prefix(&e.body_text()))
        }
        other => other.body_text(),
    };
    ApiError::new(status, code, message)
}

fn without_prefix(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
        .unwrap_or(text);
    text.to_owned()
}

/// `axum::extract::Path` whose rejection is a 400 (or 404 for a bad name in the path).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(bad_request(format!("bad path: {}", e.body_text())))
            }
            Err(other) => Err(ApiError::internal(format!("path extraction: {other}"))),
        }
    }
}
