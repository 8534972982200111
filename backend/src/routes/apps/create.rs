use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{AppendHeaders, IntoResponse};
use axum::Json;
use gantry_common::api::{app_limits, App, CreateApp};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::{AppRow, TeamAccess, APP_COLUMNS};
use crate::error::{conflict, invalid, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Define an app. Unset settings take their defaults (port 8080, 1 replica, 500 millicores,
/// 256 MiB, health check `/`, stop grace 30 s, progress deadline 300 s); `"port": null` makes a
/// worker, which is not routed. It runs nothing until its first deploy.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps", tag = "apps",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    request_body = CreateApp,
    responses(
        (status = 201, body = App),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot create apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
        (status = 409, description = "An app with this name exists, or the team's quota allows no more apps", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid name or setting, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    access: TeamAccess,
    ApiJson(body): ApiJson<CreateApp>,
) -> ApiResult<impl IntoResponse> {
    access.require(Permission::WriteApps)?;
    body.settings.validate().map_err(invalid)?;
    let s = &body.settings;
    let mut tx = state.db.begin().await?;
    // The team's row is locked so that two creations at once cannot both take the last place.
    let (limits, _) = crate::quotas::limits(&state, access.team.id).await?;
    sqlx::query("SELECT 1 FROM teams WHERE id = $1 FOR UPDATE")
        .bind(access.team.id)
        .execute(&mut *tx)
        .await?;
    let apps: i64 = sqlx::query_scalar("SELECT count(*) FROM apps WHERE team_id = $1")
        .bind(access.team.id)
        .fetch_one(&mut *tx)
        .await?;
    if apps >= i64::from(limits.apps) {
        return Err(conflict(crate::quotas::exceeded(
            &access.team.slug,
            &format!("{} of {} apps", apps + 1, limits.apps),
        )));
    }
    let row = sqlx::query_as::<_, AppRow>(&format!(
        "INSERT INTO apps (team_id, name, port, replicas, cpu_millis, memory_mib, health_check_path,
                           stop_grace_seconds, progress_deadline_seconds, deploy_on_push)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (team_id, name) DO NOTHING
         RETURNING {APP_COLUMNS}"
    ))
    .bind(access.team.id)
    .bind(body.name.as_str())
    .bind(
        s.port
            .unwrap_or(Some(app_limits::DEFAULT_PORT))
            .map(i32::from),
    )
    .bind(s.replicas.unwrap_or(app_limits::DEFAULT_REPLICAS) as i32)
    .bind(s.cpu_millis.unwrap_or(app_limits::DEFAULT_CPU_MILLIS) as i32)
    .bind(s.memory_mib.unwrap_or(app_limits::DEFAULT_MEMORY_MIB) as i32)
    .bind(
        s.health_check_path
            .as_deref()
            .unwrap_or(app_limits::DEFAULT_HEALTH_CHECK_PATH),
    )
    .bind(
        s.stop_grace_seconds
            .unwrap_or(app_limits::DEFAULT_STOP_GRACE_SECONDS) as i32,
    )
    .bind(
        s.progress_deadline_seconds
            .unwrap_or(app_limits::DEFAULT_PROGRESS_DEADLINE_SECONDS) as i32,
    )
    .bind(
        s.deploy_on_push
            .clone()
            .unwrap_or(Some(app_limits::DEFAULT_DEPLOY_ON_PUSH.to_owned())),
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        conflict(format!(
            "an app named {:?} already exists in team {}",
            body.name.as_str(),
            access.team.slug
        ))
    })?;
    let app = row.to_api(access.slug(), &state);
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.create",
            target: format!("app:{}", app.name),
            details: json!({
                "port": app.port, "replicas": app.replicas, "cpu_millis": app.cpu_millis,
                "memory_mib": app.memory_mib, "health_check_path": app.health_check_path,
                "stop_grace_seconds": app.stop_grace_seconds,
                "progress_deadline_seconds": app.progress_deadline_seconds,
            }),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    // A new host for the router (answering 503 until the app has a ready instance).
    state.routes.notify_one();
    let location = format!("/api/v1/teams/{}/apps/{}", app.team, app.name);
    Ok((
        StatusCode::CREATED,
        AppendHeaders([(header::LOCATION, location)]),
        Json(app),
    ))
}
