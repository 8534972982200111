use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::{Scale, Workload};
use gantry_common::Permission;

use crate::authz::AppAccess;
use crate::error::{invalid, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Set how many instances the app runs (0 stops them all). Before the first deploy this only
/// records the number.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/scale", tag = "workloads",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    request_body = Scale,
    responses(
        (status = 202, description = "Recorded; instances follow", body = Workload),
        (status = 403, description = "Viewers cannot scale", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Replicas out of range", body = gantry_common::ErrorBody),
    ))]
pub async fn scale(
    State(state): State<AppState>,
    target: AppAccess,
    ApiJson(body): ApiJson<Scale>,
) -> ApiResult<(StatusCode, Json<Workload>)> {
    target.access.require(Permission::WriteApps)?;
    body.validate().map_err(invalid)?;
    let workload = super::apply(&state, &target, super::Change::Replicas(body.replicas)).await?;
    Ok((StatusCode::ACCEPTED, Json(workload)))
}
