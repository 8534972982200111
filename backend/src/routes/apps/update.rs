use axum::extract::State;
use axum::Json;
use gantry_common::api::{App, AppSettings};
use gantry_common::Permission;

use crate::audit;
use crate::authz::{AppAccess, AppRow, APP_COLUMNS};
use crate::error::{invalid, ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Change an app's settings; fields left out keep their value. The name cannot change.
#[utoipa::path(patch, path = "/api/v1/teams/{team}/apps/{app}", tag = "apps",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    request_body = AppSettings,
    responses(
        (status = 200, body = App),
        (status = 403, description = "Viewers cannot change apps", body = gantry_common::ErrorBody),
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
    let mut tx = state.db.begin().await?;
    let row = sqlx::query_as::<_, AppRow>(&format!(
        "UPDATE apps SET
            port = COALESCE($3, port),
            replicas = COALESCE($4, replicas),
            cpu_millis = COALESCE($5, cpu_millis),
            memory_mib = COALESCE($6, memory_mib),
            health_check_path = COALESCE($7, health_check_path),
            updated_at = now()
         WHERE team_id = $1 AND id = $2
         RETURNING {APP_COLUMNS}"
    ))
    .bind(access.team.id)
    .bind(app.id)
    .bind(body.port.map(i32::from))
    .bind(body.replicas.map(|v| v as i32))
    .bind(body.cpu_millis.map(|v| v as i32))
    .bind(body.memory_mib.map(|v| v as i32))
    .bind(body.health_check_path.as_deref())
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.update",
            target: format!("app:{}", app.name),
            details: serde_json::to_value(&body).map_err(ApiError::internal)?,
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(row.to_api(access.slug())))
}
