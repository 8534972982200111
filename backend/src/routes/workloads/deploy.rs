use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::CreateDeploy;
use gantry_common::releases::Release;
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::releases::create::{create as create_release, Change};
use crate::routes::answers;
use crate::state::AppState;

/// Deploy an image: it becomes the app's next release, with the app's current config and
/// settings, and rolls out with the app's strategy (rolling by default: new instances first,
/// old ones taken out of the route and stopped once new ones are ready). Any image the nodes'
/// Docker engines have or can pull.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/deploys", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = CreateDeploy,
    responses(
        (status = 202, description = "Release made; its rollout follows", body = Release),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot deploy; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Not a valid image reference, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    access.require(Permission::WriteApps)?;
    let actor = audit::Actor::from(&access.caller);
    let mut tx = state.db.begin().await?;
    let release = create_release(
        &mut tx,
        &state.sealer,
        app.id,
        access.team.id,
        &actor,
        Change::Deploy { image: &body.image },
    )
    .await?
    .ok_or_else(|| ApiError::internal("a deploy always makes a release"))?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.deploy",
            target: format!("app:{}", app.name),
            details: json!({"image": body.image, "release": release.version()}),
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    state.rollouts.notify_one();
    Ok((StatusCode::ACCEPTED, Json(release.to_api())))
}
