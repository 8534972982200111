use axum::http::StatusCode;

use crate::auth::{session, Caller};
use crate::error::ApiResult;

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = gantry_common::ErrorBody),
        (status = 403, description = "Missing CSRF token, or called with an API token", body = gantry_common::ErrorBody),
    ))]
pub async fn logout(caller: Caller) -> ApiResult<StatusCode> {
    let s = caller.require_session("log out (revoke the token instead)")?;
    session::end(s).await?;
    Ok(StatusCode::NO_CONTENT)
}
