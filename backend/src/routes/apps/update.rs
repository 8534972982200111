use axum::extract::State;
use axum::Json;
use gantry_common::api::{App, AppSettings};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::{AppAccess, AppRow, APP_COLUMNS};
use crate::error::{invalid, ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::releases::create::{create, Change};
use crate::routes::answers;
use crate::state::AppState;

/// Change an app's settings; fields left out keep their value. The name cannot change. A new
/// port, CPU, memory or health check makes a new release (rolled out like a deploy) once the
/// app has one; `replicas` scales the release that serves; the stop grace and the progress
/// deadline apply to what runs now.
#[utoipa::path(patch, path = "/api/v1/teams/{team}/apps/{app}", tag = "apps",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = AppSettings,
    responses(
        (status = 200, body = App),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid setting or unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<AppSettings>,
) -> ApiResult<Json<App>> {
    access.require(Permission::WriteApps)?;
    body.validate().map_err(invalid)?;
    let changed = release_settings_changed(&app, &body);
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE apps SET
            port = CASE WHEN $3 THEN $4 ELSE port END,
            replicas = COALESCE($5, replicas),
            cpu_millis = COALESCE($6, cpu_millis),
            memory_mib = COALESCE($7, memory_mib),
            health_check_path = COALESCE($8, health_check_path),
            stop_grace_seconds = COALESCE($9, stop_grace_seconds),
            progress_deadline_seconds = COALESCE($10, progress_deadline_seconds),
            deploy_on_push = CASE WHEN $11 THEN $12 ELSE deploy_on_push END,
            updated_at = now()
         WHERE team_id = $1 AND id = $2",
    )
    .bind(access.team.id)
    .bind(app.id)
    .bind(body.port.is_some())
    .bind(body.port.flatten().map(i32::from))
    .bind(body.replicas.map(|v| v as i32))
    .bind(body.cpu_millis.map(|v| v as i32))
    .bind(body.memory_mib.map(|v| v as i32))
    .bind(body.health_check_path.as_deref())
    .bind(body.stop_grace_seconds.map(|v| v as i32))
    .bind(body.progress_deadline_seconds.map(|v| v as i32))
    .bind(body.deploy_on_push.is_some())
    .bind(body.deploy_on_push.clone().flatten())
    .execute(&mut *tx)
    .await?;
    let actor = audit::Actor::from(&access.caller);
    let release = if changed.is_empty() {
        None
    } else {
        create(
            &mut tx,
            &state.sealer,
            app.id,
            access.team.id,
            &actor,
            Change::Settings {
                changed: changed.clone(),
            },
        )
        .await?
    };
    let mut details = serde_json::to_value(&body).map_err(ApiError::internal)?;
    if let Some(r) = &release {
        details["release"] = json!(r.version());
    }
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.update",
            target: format!("app:{}", app.name),
            details,
            actor,
        },
    )
    .await?;
    let row = sqlx::query_as::<_, AppRow>(&format!(
        "SELECT {APP_COLUMNS} FROM apps WHERE team_id = $1 AND id = $2"
    ))
    .bind(access.team.id)
    .bind(app.id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    // Replicas, stop grace and deadline apply at once; a new release rolls out.
    state.rollouts.notify_one();
    if changed.contains(&"port") {
        state.routes.notify_one();
    }
    Ok(Json(row.to_api(access.slug(), &state)))
}

/// The settings a release freezes that this change gives a new value.
fn release_settings_changed(app: &AppRow, body: &AppSettings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if body.port.is_some_and(|p| p.map(i32::from) != app.port) {
        changed.push("port");
    }
    if body.cpu_millis.is_some_and(|c| c as i32 != app.cpu_millis) {
        changed.push("cpu_millis");
    }
    if body.memory_mib.is_some_and(|m| m as i32 != app.memory_mib) {
        changed.push("memory_mib");
    }
    if body
        .health_check_path
        .as_deref()
        .is_some_and(|h| h != app.health_check_path)
    {
        changed.push("health_check_path");
    }
    changed
}
