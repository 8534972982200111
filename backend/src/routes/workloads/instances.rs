use axum::extract::State;
use axum::Json;
use gantry_common::cluster::Instance;

use crate::authz::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The app's instances with their state and release, like `kubectl get pods`: those running or
/// on their way, and those being taken out, stopped or lost with their node.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/instances", tag = "workloads",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    responses(
        (status = 200, body = Vec<Instance>),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
) -> ApiResult<Json<Vec<Instance>>> {
    let instances = state
        .cluster
        .instances(app.id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(instances))
}
