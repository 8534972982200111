use axum::extract::State;
use axum::Json;
use gantry_common::cluster::{Instance, InstanceState};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    state: String,
    reason: Option<String>,
    image: String,
    node: Option<String>,
    address: Option<String>,
    host_port: Option<i32>,
    restarts: i32,
    last_exit_code: Option<i64>,
    started_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

/// The app's instances with their state, like `kubectl get pods`: those running or on their
/// way, and those being stopped or lost with their node.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/instances", tag = "workloads",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    responses(
        (status = 200, body = Vec<Instance>),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<Vec<Instance>>> {
    let rows: Vec<InstanceRow> = sqlx::query_as(
        "SELECT i.id, i.state, i.reason, i.image, n.name AS node, n.address, i.host_port,
                i.restarts, i.last_exit_code, i.started_at, i.created_at
         FROM instances i LEFT JOIN nodes n ON n.id = i.node_id
         WHERE i.team_id = $1 AND i.app_id = $2
         ORDER BY i.created_at, i.id",
    )
    .bind(access.team.id)
    .bind(app.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| Instance {
                id: r.id,
                state: InstanceState::parse(&r.state).unwrap_or(InstanceState::Pending),
                reason: r.reason,
                image: r.image,
                endpoint: match (&r.address, r.host_port) {
                    (Some(address), Some(port)) => Some(format!("{address}:{port}")),
                    _ => None,
                },
                node: r.node,
                restarts: r.restarts.max(0) as u32,
                last_exit_code: r.last_exit_code,
                started_at: r.started_at,
                created_at: r.created_at,
            })
            .collect(),
    ))
}
