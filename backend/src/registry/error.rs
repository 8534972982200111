//! The registry's one error type: the distribution spec's codes and body
//! (`{"errors": [{"code", "message", "detail"}]}`), which docker and skopeo print to their users.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::API_VERSION_HEADER;

/// The challenge docker and skopeo answer with Basic credentials (from `docker login`).
pub const CHALLENGE: &str = "Basic realm=\"Gantry Registry\"";

#[derive(Debug)]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type RegistryResult<T> = Result<T, RegistryError>;

impl RegistryError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "registry: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal error",
        )
    }
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e)
    }
}

pub fn unauthorized(message: &str) -> RegistryError {
    RegistryError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

pub fn denied(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::FORBIDDEN, "DENIED", message)
}

/// Also the answer for another team's repository: it is indistinguishable from a missing one.
pub fn name_unknown(name: &impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("repository {name} is not known to this registry"),
    )
}

pub fn name_invalid(name: &str) -> RegistryError {
    RegistryError::new(
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
        format!(
            "{name:?} is not a valid repository name: use <team>/<name> in lower case \
             (letters, digits, and . _ - between them)"
        ),
    )
}

pub fn blob_unknown(digest: &impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob {digest} is not in this repository"),
    )
}

pub fn upload_unknown() -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
        "no such upload session (it may have completed, been cancelled or expired)",
    )
}

pub fn upload_invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
}

pub fn digest_invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
}

pub fn manifest_unknown(reference: &impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("manifest {reference} is not in this repository"),
    )
}

pub fn manifest_invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
}

pub fn unsupported(message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
}

pub fn range_invalid(message: impl Into<String>) -> RegistryError {
    RegistryError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        message,
    )
}

pub fn too_large(limit: u64) -> RegistryError {
    RegistryError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "SIZE_INVALID",
        format!(
            "a blob may be at most {limit} bytes on this registry (GANTRY_REGISTRY_MAX_BLOB_MIB)"
        ),
    )
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message}]});
        let mut res = (self.status, axum::Json(body)).into_response();
        let headers = res.headers_mut();
        headers.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        res
    }
}
