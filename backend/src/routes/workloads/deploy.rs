use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::CreateDeploy;
use gantry_common::releases::Release;
use gantry_common::Permission;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::releases::deploy::{deploy, Via};
use crate::routes::answers;
use crate::state::AppState;

/// Deploy an image: it becomes the app's next release, with the app's current config and
/// settings, and rolls out with the app's strategy (rolling by default: new instances first,
/// old ones taken out of the route and stopped once new ones are ready). Any image the nodes'
/// Docker engines have or can pull; an image of this server's registry must be the team's own
/// (`<host>/<team>/<name>`), and its tag is pinned to the digest it names now.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/deploys", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = CreateDeploy,
    responses(
        (status = 202, description = "Release made; its rollout follows", body = Release),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot deploy; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Not a valid image reference (or a local image id), an image of this server's registry that is not the team's or not pushed, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    access.require(Permission::WriteApps)?;
    let release = deploy(
        &state,
        &access.team,
        app.id,
        &app.name,
        audit::Actor::from(&access.caller),
        &body.image,
        Via::Api,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(release.to_api())))
}
