//! What a login session holds, and the CSRF token that guards its writes.
//!
//! The session (tower-sessions, Postgres store) keeps the user id, the login time (for the
//! absolute expiry; the idle expiry is the store's) and a random CSRF token that mutating requests
//! must echo in `x-csrf-token`.

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use crate::error::ApiResult;

const USER_ID: &str = "user_id";
const LOGIN_AT: &str = "login_at";
const CSRF: &str = "csrf";

pub const CSRF_HEADER: &str = "x-csrf-token";

/// Logs `user_id` in: a new session id (so a planted id is worthless), a new CSRF token.
pub async fn start(session: &Session, user_id: Uuid) -> ApiResult<String> {
    session.cycle_id().await?;
    session.clear().await;
    let csrf = random_token();
    session.insert(USER_ID, user_id).await?;
    session
        .insert(LOGIN_AT, OffsetDateTime::now_utc().unix_timestamp())
        .await?;
    session.insert(CSRF, &csrf).await?;
    Ok(csrf)
}

pub struct LoggedIn {
    pub user_id: Uuid,
    pub login_at: OffsetDateTime,
}

/// The logged-in user, if any.
pub async fn current(session: &Session) -> ApiResult<Option<LoggedIn>> {
    let user_id = session.get::<Uuid>(USER_ID).await?;
    let login_at = session.get::<i64>(LOGIN_AT).await?;
    Ok(match (user_id, login_at) {
        (Some(user_id), Some(at)) => Some(LoggedIn {
            user_id,
            login_at: OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }),
        _ => None,
    })
}

/// The CSRF token of a logged-in session.
pub async fn csrf_token(session: &Session) -> ApiResult<Option<String>> {
    Ok(session.get::<String>(CSRF).await?)
}

/// Does `sent` match the session's CSRF token (in constant time)?
pub async fn csrf_matches(session: &Session, sent: Option<&str>) -> ApiResult<bool> {
    let Some(sent) = sent else { return Ok(false) };
    let Some(expected) = session.get::<String>(CSRF).await? else {
        return Ok(false);
    };
    Ok(expected.as_bytes().ct_eq(sent.as_bytes()).into())
}

pub async fn end(session: &Session) -> ApiResult<()> {
    session.flush().await?;
    Ok(())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
