use axum::extract::{Query, State};
use axum::Json;
use gantry_common::releases::Release;
use serde::Deserialize;

use crate::authz::AppAccess;
use crate::error::{bad_request, ApiResult};
use crate::releases;
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReleasesQuery {
    /// Only releases older than this version (for the next page).
    #[param(minimum = 1, maximum = 2147483647)]
    before: Option<u32>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The app's releases, newest first: version, status (and why it failed), image and digest,
/// settings, config var names, what made it, who and when.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/releases", tag = "releases",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name"), ReleasesQuery),
    responses(
        (status = 200, body = Vec<Release>),
        answers::Authenticated,
        (status = 400, description = "Bad page parameters, or a malformed path", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
    query: Result<Query<ReleasesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Release>>> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 100"));
    }
    let mut db = state.db.acquire().await?;
    let rows = releases::list(&mut db, app.id, query.before, limit).await?;
    Ok(Json(rows.iter().map(|r| r.to_api()).collect()))
}
