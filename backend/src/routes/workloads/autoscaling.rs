//! `GET`, `PUT` and `DELETE …/autoscaling`: the app's autoscaler policy and its decisions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::autoscaling::{Autoscaling, AutoscalingStatus};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::{invalid, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// The app's autoscaler: its policy (`null` when off), the replica count now, and the newest
/// decisions with their inputs.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/autoscaling", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = AutoscalingStatus),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
) -> ApiResult<Json<AutoscalingStatus>> {
    Ok(Json(crate::autoscaler::status(&state, app.id).await?))
}

/// Turn the autoscaler on (or change its policy). Like a Kubernetes HPA: every 5 s,
/// `desired = ceil(current × observed / target)` for CPU (the agents' usage of the instances'
/// reserved CPU) and for requests per second per instance (the router's count), the larger of
/// the two, within a 10 % tolerance; up at once, down only when asked for during the whole
/// `scale_down_stabilization_seconds`; clamped to `min`..`max`. It holds while a rollout is
/// under way, and never scales on missing metrics. Each change is an event with its inputs.
#[utoipa::path(put, path = "/api/v1/teams/{team}/apps/{app}/autoscaling", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = Autoscaling,
    responses(
        (status = 200, body = AutoscalingStatus),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Bounds or targets out of range, no target, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<Autoscaling>,
) -> ApiResult<Json<AutoscalingStatus>> {
    access.require(Permission::WriteApps)?;
    body.validate().map_err(invalid)?;
    set(&state, &access, &app, Some(&body)).await?;
    Ok(Json(crate::autoscaler::status(&state, app.id).await?))
}

/// Turn the autoscaler off: the app keeps the replica count it has.
#[utoipa::path(delete, path = "/api/v1/teams/{team}/apps/{app}/autoscaling", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 204, description = "Off (or was already)"),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<StatusCode> {
    access.require(Permission::WriteApps)?;
    set(&state, &access, &app, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set(
    state: &AppState,
    access: &crate::authz::TeamAccess,
    app: &crate::authz::AppRow,
    policy: Option<&Autoscaling>,
) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE apps SET autoscaling = $3, updated_at = now() WHERE team_id = $1 AND id = $2",
    )
    .bind(access.team.id)
    .bind(app.id)
    .bind(policy.map(sqlx::types::Json))
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.autoscaling",
            target: format!("app:{}", app.name),
            details: json!({ "autoscaling": policy }),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    state.autoscaler.notify_one();
    Ok(())
}
