use axum::http::StatusCode;

use crate::auth::{session, Caller};
use crate::error::ApiResult;
use crate::routes::answers;

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("session" = [])),
    responses(
        (status = 204, description = "Signed out"),
        answers::Authenticated,
        (status = 403, description = "Missing CSRF token, a cross-site request, or called with an API token", body = gantry_common::ErrorBody),
    ))]
pub async fn logout(caller: Caller) -> ApiResult<StatusCode> {
    let s = caller.require_session("log out (revoke the token instead)")?;
    session::end(s).await?;
    Ok(StatusCode::NO_CONTENT)
}
