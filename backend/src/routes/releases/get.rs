use axum::extract::State;
use axum::Json;
use gantry_common::releases::Release;
use serde::Deserialize;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::releases;
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct VersionParam {
    version: u32,
}

/// One release.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/releases/{version}", tag = "releases",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("version" = u32, Path, description = "Release version (3 for v3)", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 200, body = Release),
        answers::Authenticated,
        (status = 400, description = "The version is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or release", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
    ApiPath(VersionParam { version }): ApiPath<VersionParam>,
) -> ApiResult<Json<Release>> {
    let mut db = state.db.acquire().await?;
    Ok(Json(
        releases::get(&mut db, app.id, version).await?.to_api(),
    ))
}
