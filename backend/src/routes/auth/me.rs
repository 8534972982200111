use axum::extract::State;
use axum::Json;
use gantry_common::api::{Me, TeamWithRole};
use gantry_common::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Caller;
use crate::authz::TeamRow;
use crate::error::{ApiError, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The caller and the teams it can act in.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses(
        (status = 200, body = Me),
        answers::Authenticated,
    ))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let teams = teams_of(&state, &caller).await?;
    Ok(Json(Me {
        user: caller.user.to_api(),
        teams,
    }))
}

/// The caller's teams with its effective role in each; a token sees only its own team.
pub async fn teams_of(state: &AppState, caller: &Caller) -> ApiResult<Vec<TeamWithRole>> {
    let rows = sqlx::query_as::<_, (Uuid, String, String, OffsetDateTime, String)>(
        "SELECT t.id, t.slug, t.name, t.created_at, m.role
         FROM teams t JOIN memberships m ON m.team_id = t.id
         WHERE m.user_id = $1 AND ($2::uuid IS NULL OR t.id = $2)
         ORDER BY t.slug",
    )
    .bind(caller.user.id)
    .bind(caller.token().map(|t| t.team_id))
    .fetch_all(&state.db)
    .await?;
    rows.into_iter()
        .map(|(id, slug, name, created_at, role)| {
            let member_role = role
                .parse::<Role>()
                .map_err(|e| ApiError::internal(format!("memberships.role: {e}")))?;
            let role = caller
                .token()
                .map_or(member_role, |t| t.role.min(member_role));
            let team = TeamRow {
                id,
                slug,
                name,
                created_at,
            }
            .to_api();
            Ok(TeamWithRole { team, role })
        })
        .collect()
}
