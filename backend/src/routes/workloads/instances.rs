use axum::extract::State;
use axum::Json;
use gantry_common::cluster::Instance;

use crate::authz::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The app's instances with their state and release, like `kubectl get pods`: those running or
/// on their way, and those being taken out, stopped or lost with their node.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/instances", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = Vec<Instance>),
        answers::Authenticated, answers::PathParams,
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
