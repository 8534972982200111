use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::releases::{Release, Rollback};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::releases::rollback::rollback as roll_back;
use crate::routes::answers;
use crate::state::AppState;

/// Roll back: a new release made from an old one (its image, config vars and settings), rolled
/// out like a deploy; the app's config and settings become that release's again. Without a
/// `version`, the last release that served before the current one. Send `{}` for the default.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/rollback", tag = "releases",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = Rollback,
    responses(
        (status = 201, description = "The new release; its rollout follows", body = Release),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot roll back; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or release", body = gantry_common::ErrorBody),
        (status = 409, description = "No earlier release served to go back to", body = gantry_common::ErrorBody),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<Rollback>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    access.require(Permission::WriteApps)?;
    let actor = audit::Actor::from(&access.caller);
    let mut tx = state.db.begin().await?;
    let release = roll_back(
        &mut tx,
        &state.sealer,
        app.id,
        access.team.id,
        &actor,
        body.version,
    )
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.rollback",
            target: format!("app:{}", app.name),
            // Names only: the config was restored, its values stay secret.
            details: json!({
                "to": release.rollback_of,
                "release": release.version(),
                "config_keys": release.config_keys,
            }),
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    state.rollouts.notify_one();
    // The restored release may have another port (or none).
    state.routes.notify_one();
    Ok((StatusCode::CREATED, Json(release.to_api())))
}
