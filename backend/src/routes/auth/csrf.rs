use axum::Json;
use gantry_common::api::CsrfToken;

use crate::auth::{session, Caller};
use crate::error::{unauthorized, ApiResult};
use crate::routes::answers;

/// The CSRF token of the current session, to send as `x-csrf-token` on writes.
#[utoipa::path(get, path = "/api/v1/auth/csrf", tag = "auth",
    security(("session" = [])),
    responses(
        (status = 200, body = CsrfToken),
        answers::Authenticated,
        (status = 403, description = "Called with an API token (tokens need no CSRF token)", body = gantry_common::ErrorBody),
    ))]
pub async fn csrf(caller: Caller) -> ApiResult<Json<CsrfToken>> {
    let s = caller.require_session("use CSRF tokens (they need none)")?;
    let csrf_token = session::csrf_token(s)
        .await?
        .ok_or_else(|| unauthorized("sign in first"))?;
    Ok(Json(CsrfToken { csrf_token }))
}
