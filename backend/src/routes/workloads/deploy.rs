use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::{CreateDeploy, Workload};
use gantry_common::Permission;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Deploy an image: the app's instances are replaced by ones running it (new ones first, old
/// ones stopped once the new ones are ready). Any image the nodes' Docker engines have or can pull.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/deploys", tag = "workloads",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    request_body = CreateDeploy,
    responses(
        (status = 202, description = "Recorded; instances follow", body = Workload),
        (status = 403, description = "Viewers cannot deploy", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Not a valid image reference", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    target: AppAccess,
    ApiJson(body): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<Workload>)> {
    target.access.require(Permission::WriteApps)?;
    let workload = super::apply(&state, &target, super::Change::Image(&body.image)).await?;
    Ok((StatusCode::ACCEPTED, Json(workload)))
}
