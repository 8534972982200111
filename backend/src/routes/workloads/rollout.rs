use axum::extract::State;
use axum::Json;
use gantry_common::releases::Rollout;

use crate::authz::AppAccess;
use crate::error::{not_found, ApiResult};
use crate::rollouts::{self, AppInfo, APP_INFO_QUERY};
use crate::routes::answers;
use crate::state::AppState;

/// The app's newest rollout: the one under way (new instances asked for and ready, old ones
/// left, when it fails without progress), or the last one with how it ended.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/rollout", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app, or no release yet", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<Rollout>> {
    let info: AppInfo = sqlx::query_as(&format!(
        "{APP_INFO_QUERY} WHERE a.id = $1 AND a.team_id = $2"
    ))
    .bind(app.id)
    .bind(access.team.id)
    .fetch_one(&state.db)
    .await?;
    rollouts::progress(&state, &info)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&format!("a release of app {}", app.name)))
}
