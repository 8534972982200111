//! The [`Caller`] extractor: resolves a bearer token or a session cookie to a user.
//!
//! A mutating request made with a session cookie must carry the session's CSRF token in
//! `x-csrf-token` (the origin check is [`super::origin`]); bearer tokens need none, since a
//! browser never attaches them on its own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use gantry_common::api::User;
use gantry_common::{Email, Role};
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

use super::{session, tokens};
use crate::error::{forbidden, unauthorized, ApiError, ApiResult};
use crate::state::AppState;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub is_platform_admin: bool,
    pub created_at: OffsetDateTime,
}

impl UserRow {
    pub fn to_api(&self) -> User {
        User {
            id: self.id,
            // Stored e-mails were parsed on the way in; a failure here means a corrupt row.
            email: Email::parse(&self.email).expect("stored e-mail is valid"),
            is_platform_admin: self.is_platform_admin,
            created_at: self.created_at,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRow,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    Session(Session),
    Token(TokenGrant),
    /// E-mail and password sent with each request (HTTP Basic, the registry's `docker login`):
    /// the user's full role in every team, like a session, but no session to act on.
    Password,
}

/// What an API token grants: one team, with at most `role` (further capped by the creator's
/// current role when used).
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub id: Uuid,
    pub name: String,
    pub team_id: Uuid,
    pub role: Role,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn label(&self) -> String {
        match &self.via {
            Via::Session(_) | Via::Password => self.user.email.clone(),
            Via::Token(t) => format!("{} (token {:?})", self.user.email, t.name),
        }
    }

    pub fn token(&self) -> Option<&TokenGrant> {
        match &self.via {
            Via::Token(t) => Some(t),
            Via::Session(_) | Via::Password => None,
        }
    }

    /// Account-level actions (creating teams and tokens) need a person, not a team-bound token.
    pub fn require_session(&self, what: &str) -> ApiResult<&Session> {
        match &self.via {
            Via::Session(s) => Ok(s),
            Via::Token(_) | Via::Password => Err(forbidden(format!(
                "API tokens act for one team and cannot {what}; sign in with a session"
            ))),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            return from_bearer(auth.to_str().unwrap_or_default(), state).await;
        }
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| ApiError::internal("session layer missing"))?;
        let Some(logged_in) = session::current(&session).await? else {
            return Err(unauthorized(
                "sign in first, or send `Authorization: Bearer <API token>`",
            ));
        };
        let age = OffsetDateTime::now_utc() - logged_in.login_at;
        if age > state.session_max_age {
            session::end(&session).await?;
            return Err(unauthorized("your session has expired; sign in again"));
        }
        if !is_safe(&parts.method) {
            let sent = parts
                .headers
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if !session::csrf_matches(&session, sent).await? {
                return Err(forbidden(format!(
                    "missing or wrong {} header: send the token from login or GET /api/v1/auth/csrf",
                    session::CSRF_HEADER
                )));
            }
        }
        let user = sqlx::query_as::<_, UserRow>(
            "SELECT id, email, is_platform_admin, created_at FROM users WHERE id = $1",
        )
        .bind(logged_in.user_id)
        .fetch_optional(&state.db)
        .await?;
        let Some(user) = user else {
            session::end(&session).await?;
            return Err(unauthorized("this account no longer exists"));
        };
        Ok(Caller {
            user,
            via: Via::Session(session),
        })
    }
}

pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(sqlx::FromRow)]
struct TokenLookup {
    token_id: Uuid,
    token_name: String,
    team_id: Uuid,
    role: String,
    last_used_at: Option<OffsetDateTime>,
    #[sqlx(flatten)]
    user: UserRow,
}

async fn from_bearer(value: &str, state: &AppState) -> ApiResult<Caller> {
    let Some(secret) = value.strip_prefix("Bearer ") else {
        return Err(unauthorized(
            "the Authorization header must be `Bearer <API token>`",
        ));
    };
    from_token(secret.trim(), state).await
}

/// The caller an API token secret stands for (also the registry's Basic password).
pub async fn from_token(secret: &str, state: &AppState) -> ApiResult<Caller> {
    if !tokens::looks_valid(secret) {
        return Err(unauthorized("invalid or revoked API token"));
    }
    let found = sqlx::query_as::<_, TokenLookup>(
        "SELECT t.id AS token_id, t.name AS token_name, t.team_id, t.role, t.last_used_at,
                u.id, u.email, u.is_platform_admin, u.created_at
         FROM api_tokens t JOIN users u ON u.id = t.created_by
         WHERE t.secret_hash = $1 AND t.revoked_at IS NULL",
    )
    .bind(tokens::hash(secret))
    .fetch_optional(&state.db)
    .await?;
    let Some(found) = found else {
        return Err(unauthorized("invalid or revoked API token"));
    };
    touch_last_used(state, found.token_id, found.last_used_at);
    let role = found
        .role
        .parse::<Role>()
        .map_err(|e| ApiError::internal(format!("api_tokens.role: {e}")))?;
    Ok(Caller {
        user: found.user,
        via: Via::Token(TokenGrant {
            id: found.token_id,
            name: found.token_name,
            team_id: found.team_id,
            role,
        }),
    })
}

/// Records use at most once a minute per token, off the request's path.
fn touch_last_used(state: &AppState, token_id: Uuid, last: Option<OffsetDateTime>) {
    let stale = last.is_none_or(|t| OffsetDateTime::now_utc() - t > time::Duration::minutes(1));
    if !stale {
        return;
    }
    let db = state.db.clone();
    tokio::spawn(async move {
        let res = sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
            .bind(token_id)
            .execute(&db)
            .await;
        if let Err(e) = res {
            tracing::warn!(token.id = %token_id, error = %e, "failed to record token use");
        }
    });
}
