//! `GET …/rollouts/current` and the actions on a rollout under way: promote, abort, pause,
//! resume. A rollout is named by the release it rolls out (rollout 7 rolls out v7).

use axum::extract::{Query, State};
use axum::Json;
use gantry_common::releases::Rollout;
use gantry_common::Permission;
use serde::Deserialize;

use crate::audit::Actor;
use crate::authz::{AppAccess, TeamAccess};
use crate::error::{bad_request, not_found, ApiResult};
use crate::extract::ApiPath;
use crate::rollouts::control::{self, Action};
use crate::rollouts::{self, AppInfo, APP_INFO_QUERY};
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct RolloutParam {
    id: u32,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PromoteQuery {
    /// Skip every remaining canary step: the new release scales to full size and takes over.
    full: Option<bool>,
}

/// The app's newest rollout: the one under way (its step, traffic weight, what it waits for,
/// the canary analysis beside the stable release's figures, the blue-green preview URL, every
/// transition with its reason), or the last one with how it ended.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/rollouts/current", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app, or no release yet", body = gantry_common::ErrorBody),
    ))]
pub async fn current(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<Rollout>> {
    let info = app_info(&state, &access, app.id).await?;
    rollouts::progress(&state, &info)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&format!("a release of app {}", app.name)))
}

async fn app_info(state: &AppState, access: &TeamAccess, app: uuid::Uuid) -> ApiResult<AppInfo> {
    Ok(sqlx::query_as(&format!(
        "{APP_INFO_QUERY} WHERE a.id = $1 AND a.team_id = $2"
    ))
    .bind(app)
    .bind(access.team.id)
    .fetch_one(&state.db)
    .await?)
}

/// Acts on rollout `id` and answers with the app's rollout as it is now.
async fn act(
    state: &AppState,
    AppAccess { access, app }: AppAccess,
    id: u32,
    action: Action,
) -> ApiResult<Json<Rollout>> {
    access.require(Permission::WriteApps)?;
    let info = app_info(state, &access, app.id).await?;
    control::act(state, &info, id, action, Actor::from(&access.caller)).await?;
    rollouts::progress(state, &info)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(&format!("rollout {id}")))
}

/// Promote: a canary leaves its current pause (an indefinite one included) and goes on with
/// its next step; with `full=true` it skips every remaining step. A blue-green rollout flips all
/// traffic to the new release (once it is ready), keeping the old one up for the scale-down
/// delay. The controller takes the promotion at its next pass (within a second).
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/rollouts/{id}/promote", tag = "workloads",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("id" = u32, Path, description = "The rollout: the version of the release it rolls out", minimum = 1, maximum = 2147483647),
        PromoteQuery,
    ),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated,
        (status = 400, description = "The id is not a number, or a bad query parameter", body = gantry_common::ErrorBody),
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or rollout", body = gantry_common::ErrorBody),
        (status = 409, description = "The rollout is not under way, is a rolling update, is not at a pause (promote with `full=true`), or is already promoted", body = gantry_common::ErrorBody),
    ))]
pub async fn promote(
    State(state): State<AppState>,
    access: AppAccess,
    ApiPath(RolloutParam { id }): ApiPath<RolloutParam>,
    query: Result<Query<PromoteQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Rollout>> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let full = query.full.unwrap_or(false);
    act(&state, access, id, Action::Promote { full }).await
}

/// Abort: all traffic goes back to the stable release at once (also right after a blue-green
/// promotion, while the old release is kept), and the new release's instances are stopped. The
/// release is marked `aborted`. Works for a rolling update too: the release that served is
/// brought back to full size.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/rollouts/{id}/abort", tag = "workloads",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("id" = u32, Path, description = "The rollout: the version of the release it rolls out", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated,
        (status = 400, description = "The id is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or rollout", body = gantry_common::ErrorBody),
        (status = 409, description = "The rollout is not under way", body = gantry_common::ErrorBody),
    ))]
pub async fn abort(
    State(state): State<AppState>,
    access: AppAccess,
    ApiPath(RolloutParam { id }): ApiPath<RolloutParam>,
) -> ApiResult<Json<Rollout>> {
    act(&state, access, id, Action::Abort).await
}

/// Pause: no step advances (timed pauses do not end, blue-green does not promote itself or
/// remove the old release) until resumed. Canary analysis keeps running and still aborts on a
/// breach.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/rollouts/{id}/pause", tag = "workloads",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("id" = u32, Path, description = "The rollout: the version of the release it rolls out", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated,
        (status = 400, description = "The id is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or rollout", body = gantry_common::ErrorBody),
        (status = 409, description = "The rollout is not under way, or is a rolling update", body = gantry_common::ErrorBody),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    access: AppAccess,
    ApiPath(RolloutParam { id }): ApiPath<RolloutParam>,
) -> ApiResult<Json<Rollout>> {
    act(&state, access, id, Action::Pause).await
}

/// Resume a paused rollout. A timed pause that ran out meanwhile ends at once.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/rollouts/{id}/resume", tag = "workloads",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("id" = u32, Path, description = "The rollout: the version of the release it rolls out", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 200, body = Rollout),
        answers::Authenticated,
        (status = 400, description = "The id is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or rollout", body = gantry_common::ErrorBody),
        (status = 409, description = "The rollout is not under way, or is a rolling update", body = gantry_common::ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    access: AppAccess,
    ApiPath(RolloutParam { id }): ApiPath<RolloutParam>,
) -> ApiResult<Json<Rollout>> {
    act(&state, access, id, Action::Resume).await
}
