use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::api::{Credentials, SessionInfo};
use gantry_common::Role;
use rand::Rng;
use serde_json::json;
use tower_sessions::Session;
use uuid::Uuid;

use crate::audit::{self, Actor};
use crate::auth::{password, session, UserRow};
use crate::error::{conflict, ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Create an account and sign in.
///
/// The first account of an instance becomes its platform admin. Every account gets a personal
/// team (named after its e-mail's local part) where it is owner.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth",
    security(()),
    request_body = Credentials,
    responses(
        (status = 201, description = "Signed up and signed in; the session cookie is set", body = SessionInfo),
        answers::JsonBody,
        (status = 403, description = "A cross-site request (a foreign `Origin`, or `Sec-Fetch-Site: cross-site`)", body = gantry_common::ErrorBody),
        (status = 409, description = "An account with this e-mail exists", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid e-mail or password, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    session: Session,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<SessionInfo>)> {
    let hash = password::hash(body.password)
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await?;
    // Serialises sign-ups so exactly one account can be the first.
    sqlx::query("SELECT pg_advisory_xact_lock(4242001)")
        .execute(&mut *tx)
        .await?;
    let first: bool = sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM users)")
        .fetch_one(&mut *tx)
        .await?;
    let user = sqlx::query_as::<_, UserRow>(
        "INSERT INTO users (email, password_hash, is_platform_admin) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO NOTHING
         RETURNING id, email, is_platform_admin, created_at",
    )
    .bind(body.email.as_str())
    .bind(&hash)
    .bind(first)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| conflict("an account with this e-mail already exists; log in instead"))?;

    create_personal_team(&mut tx, &user, body.email.local_part()).await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, platform_admin = first, "account {} created", user.id);

    let csrf_token = session::start(&session, user.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionInfo {
            user: user.to_api(),
            csrf_token,
        }),
    ))
}

async fn create_personal_team(
    tx: &mut sqlx::PgConnection,
    user: &UserRow,
    local_part: &str,
) -> ApiResult<()> {
    let base = personal_slug(local_part);
    for attempt in 0..8 {
        let slug = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{:04x}", rand::thread_rng().gen::<u16>())
        };
        let id: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO teams (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING RETURNING id",
        )
        .bind(&slug)
        .bind(format!("{} (personal)", user.email))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else { continue };
        sqlx::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(user.id)
            .bind(Role::Owner.as_str())
            .execute(&mut *tx)
            .await?;
        let actor = Actor {
            user_id: Some(user.id),
            token_id: None,
            label: user.email.clone(),
        };
        audit::record(
            tx,
            audit::Event {
                team_id: id,
                action: "team.create",
                target: format!("team:{slug}"),
                details: json!({"personal": true}),
                actor,
            },
        )
        .await?;
        return Ok(());
    }
    Err(ApiError::internal(
        "could not find a free personal team name",
    ))
}

/// A DNS label from an e-mail's local part: `Jane.Doe+x` → `jane-doe-x`.
fn personal_slug(local_part: &str) -> String {
    let mut slug = String::new();
    for c in local_part.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(40);
    let slug = slug.trim_end_matches('-').to_owned();
    match slug.chars().next() {
        None => "team".to_owned(),
        Some(c) if c.is_ascii_digit() => format!("u-{slug}"),
        Some(_) => slug,
    }
}

#[cfg(test)]
mod tests {
    use super::personal_slug;
    use gantry_common::TeamSlug;

    #[test]
    fn personal_slugs_are_valid_team_names() {
        for (local, want) in [
            ("alice", "alice"),
            ("Jane.Doe+x", "jane-doe-x"),
            ("42", "u-42"),
            ("...", "team"),
            ("ünï", "n"),
            ("a__b--", "a-b"),
        ] {
            let got = personal_slug(local);
            assert_eq!(got, want, "{local}");
            TeamSlug::parse(&got).unwrap();
        }
        TeamSlug::parse(&personal_slug(&"x".repeat(100))).unwrap();
    }
}
