use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::{Scale, Workload};
use gantry_common::quotas::Reserve;
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::{AppAccess, AppRow, APP_COLUMNS};
use crate::error::{conflict, invalid, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Set how many instances the app runs (0 stops them all). Scaling is not a release: it
/// resizes the release that serves (or the one rolling out). Instances removed leave the route
/// before they stop. Before the first deploy this only records the number. More instances than
/// the team's quota has room for are refused.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/scale", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = Scale,
    responses(
        (status = 202, description = "Recorded; instances follow", body = Workload),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot scale; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 409, description = "The team's quota (instances, CPU or memory) has no room for that many", body = gantry_common::ErrorBody),
        (status = 422, description = "Replicas out of range, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn scale(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<Scale>,
) -> ApiResult<(StatusCode, Json<Workload>)> {
    access.require(Permission::WriteApps)?;
    body.validate().map_err(invalid)?;
    let more = body.replicas.saturating_sub(app.replicas.max(0) as u32);
    if more > 0 {
        let (limits, _) = crate::quotas::limits(&state, access.team.id).await?;
        let usage = crate::quotas::usage(&state, access.team.id).await?;
        let add = Reserve {
            instances: more,
            cpu_millis: app.cpu_millis.max(0) as u32,
            memory_mib: app.memory_mib.max(0) as u32,
        };
        if let Err(why) = usage.fits(&limits, add) {
            return Err(conflict(crate::quotas::exceeded(&access.team.slug, &why)));
        }
    }
    let mut tx = state.db.begin().await?;
    let row = sqlx::query_as::<_, AppRow>(&format!(
        "UPDATE apps SET replicas = $3, updated_at = now() WHERE team_id = $1 AND id = $2
         RETURNING {APP_COLUMNS}"
    ))
    .bind(access.team.id)
    .bind(app.id)
    .bind(body.replicas as i32)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.scale",
            target: format!("app:{}", app.name),
            details: json!({"replicas": body.replicas, "previous": app.replicas}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(app.id = %app.id, team.slug = %access.team.slug, "app {} scaled to {}", app.name, body.replicas);
    state.rollouts.notify_one();
    let event = crate::logs::events::Event {
        team_id: access.team.id,
        app_id: app.id,
        release: row.release,
        instance: None,
        text: format!(
            "scaled from {} to {} instances by {}",
            app.replicas,
            body.replicas,
            access.caller.label()
        ),
    };
    crate::logs::events::record(&state.db, &state.logs.hub, vec![event]).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(Workload {
            release: row.release.map(|v| v.max(0) as u32),
            image: row.image,
            replicas: body.replicas,
        }),
    ))
}
