use axum::Json;
use gantry_common::api::TeamWithRole;

use crate::authz::TeamAccess;
use crate::error::ApiResult;
use crate::routes::answers;

/// One team, with the caller's role in it.
#[utoipa::path(get, path = "/api/v1/teams/{team}", tag = "teams",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = TeamWithRole),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn get(access: TeamAccess) -> ApiResult<Json<TeamWithRole>> {
    Ok(Json(TeamWithRole {
        team: access.team.to_api(),
        role: access.role,
    }))
}
