use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::api::{AddMember, Member};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::require_manage;
use crate::audit;
use crate::authz::TeamAccess;
use crate::error::{conflict, not_found, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Add an existing account to the team with a role.
#[utoipa::path(post, path = "/api/v1/teams/{team}/members", tag = "members",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    request_body = AddMember,
    responses(
        (status = 201, body = Member),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Your role cannot grant this role, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team, or no account with that e-mail", body = gantry_common::ErrorBody),
        (status = 409, description = "Already a member", body = gantry_common::ErrorBody),
    ))]
pub async fn add(
    State(state): State<AppState>,
    access: TeamAccess,
    ApiJson(body): ApiJson<AddMember>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    require_manage(&access, body.role)?;
    let mut tx = state.db.begin().await?;
    let user_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(body.email.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            not_found(&format!(
                "an account with e-mail {} (they must sign up first)",
                body.email
            ))
        })?;
    let joined_at: OffsetDateTime = sqlx::query_scalar(
        "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING created_at",
    )
    .bind(access.team.id)
    .bind(user_id)
    .bind(body.role.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        conflict(format!(
            "{} is already a member; change their role instead",
            body.email
        ))
    })?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "member.add",
            target: format!("member:{}", body.email),
            details: json!({"role": body.role}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Member {
            user_id,
            email: body.email,
            role: body.role,
            joined_at,
        }),
    ))
}
