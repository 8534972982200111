use axum::extract::State;
use axum::Json;
use gantry_common::quotas::Quota;

use crate::authz::TeamAccess;
use crate::error::ApiResult;
use crate::quotas;
use crate::routes::answers;
use crate::state::AppState;

/// The team's quota: its limits (its own, or the platform's defaults) and what its apps reserve
/// now — apps, and the instances asked for with their CPU and memory, surge, canary and
/// blue-green instances included.
#[utoipa::path(get, path = "/api/v1/teams/{team}/quota", tag = "teams",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = Quota),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, access: TeamAccess) -> ApiResult<Json<Quota>> {
    let (limits, custom) = quotas::limits(&state, access.team.id).await?;
    let usage = quotas::usage(&state, access.team.id).await?;
    Ok(Json(Quota {
        limits,
        custom,
        usage,
    }))
}
