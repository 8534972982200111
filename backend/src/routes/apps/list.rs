use axum::extract::State;
use axum::Json;
use gantry_common::api::App;

use crate::authz::{AppRow, TeamAccess, APP_COLUMNS};
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// The team's apps, by name.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps", tag = "apps",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = Vec<App>),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, access: TeamAccess) -> ApiResult<Json<Vec<App>>> {
    let rows = sqlx::query_as::<_, AppRow>(&format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE team_id = $1 ORDER BY name"
    ))
    .bind(access.team.id)
    .fetch_all(&state.db)
    .await?;
    let team = access.slug();
    Ok(Json(
        rows.iter()
            .map(|r| r.to_api(team.clone(), &state))
            .collect(),
    ))
}
