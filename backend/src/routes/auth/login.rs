use axum::extract::State;
use axum::Json;
use gantry_common::api::{Credentials, SessionInfo};
use tower_sessions::Session;

use crate::auth::{password, session, throttle, UserRow};
use crate::error::{too_many_requests, unauthorized, ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

#[derive(sqlx::FromRow)]
struct Account {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

/// Sign in with e-mail and password.
///
/// Starts a new session (a new session id, a new CSRF token). After 10 failed attempts for an
/// account within 15 minutes, further attempts get 429 with `Retry-After` for a growing delay.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    security(()),
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionInfo),
        answers::JsonBody,
        (status = 401, description = "Wrong e-mail or password", body = gantry_common::ErrorBody),
        (status = 403, description = "A cross-site request (a foreign `Origin`, or `Sec-Fetch-Site: cross-site`)", body = gantry_common::ErrorBody),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = gantry_common::ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<SessionInfo>> {
    let email = body.email.as_str();
    let account = sqlx::query_as::<_, Account>(
        "SELECT id, email, is_platform_admin, created_at, password_hash FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(&state.db)
    .await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let outcome = throttle::attempt(&state.db, email, || password::verify(body.password, stored))
        .await
        .map_err(ApiError::internal)?;
    match (outcome, account) {
        (Err(retry_after), _) => Err(too_many_requests(
            format!("too many failed logins for this account; try again in {retry_after} s"),
            retry_after,
        )),
        (Ok(true), Some(account)) => {
            let csrf_token = session::start(&session, account.user.id).await?;
            tracing::info!(user.id = %account.user.id, "login of {}", account.user.id);
            Ok(Json(SessionInfo {
                user: account.user.to_api(),
                csrf_token,
            }))
        }
        _ => Err(unauthorized("wrong e-mail or password")),
    }
}
