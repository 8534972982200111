use axum::extract::State;
use axum::Json;
use gantry_common::builds::Build;

use crate::authz::AppAccess;
use crate::builds::store;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// The most builds listed.
const LIMIT: i64 = 50;

/// The app's builds, newest first (the last 50): each `git push` to the deploy branch is one,
/// with its status, commit and duration.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/builds", tag = "builds",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = [Build]),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
) -> ApiResult<Json<Vec<Build>>> {
    let rows = store::list(&state.db, app.id, LIMIT).await?;
    Ok(Json(rows.iter().map(store::BuildRow::to_api).collect()))
}
