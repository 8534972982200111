use axum::extract::State;
use axum::Json;
use gantry_common::api::Member;
use gantry_common::Email;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::authz::TeamAccess;
use crate::error::{ApiError, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The team's members and their roles.
#[utoipa::path(get, path = "/api/v1/teams/{team}/members", tag = "members",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = Vec<Member>),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: TeamAccess,
) -> ApiResult<Json<Vec<Member>>> {
    let rows = sqlx::query_as::<_, (Uuid, String, String, OffsetDateTime)>(
        "SELECT u.id, u.email, m.role, m.created_at
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.team_id = $1 ORDER BY u.email",
    )
    .bind(access.team.id)
    .fetch_all(&state.db)
    .await?;
    let members = rows
        .into_iter()
        .map(|(user_id, email, role, joined_at)| {
            Ok(Member {
                user_id,
                email: Email::parse(&email).map_err(ApiError::internal)?,
                role: role.parse().map_err(ApiError::internal)?,
                joined_at,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(members))
}
