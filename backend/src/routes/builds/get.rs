use axum::extract::State;
use axum::Json;
use gantry_common::builds::{BuildDetail, BuildLine};

use super::NumberParam;
use crate::authz::AppAccess;
use crate::builds::store;
use crate::error::{not_found, ApiResult};
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

/// One build and its log (the last 10,000 lines; build args' values are masked). While it
/// runs, its new lines arrive on the app's log stream with `?build={number}`.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/builds/{number}", tag = "builds",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("number" = u32, Path, description = "Build number (1 for the app's first)", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 200, body = BuildDetail),
        answers::Authenticated,
        (status = 400, description = "The number is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or build", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
    ApiPath(NumberParam { number }): ApiPath<NumberParam>,
) -> ApiResult<Json<BuildDetail>> {
    let build = store::by_number(&state.db, app.id, number)
        .await?
        .ok_or_else(|| not_found("build"))?;
    let (lines, truncated) = store::log(&state.db, app.id, number, BuildDetail::MAX_LINES).await?;
    Ok(Json(BuildDetail {
        build: build.to_api(),
        log: lines
            .into_iter()
            .map(|(ts, line)| BuildLine { ts, line })
            .collect(),
        truncated,
    }))
}
