use axum::extract::State;
use axum::Json;
use gantry_common::releases::Strategy;
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::{invalid, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Set how the app's next releases (deploys, config changes, rollbacks) roll out.
///
/// - `rolling` (the default) starts new instances (at most `max_surge` beyond the replica
///   count), waits until they are ready and routed, then takes old ones out of the route, lets
///   their requests finish and stops them, never leaving fewer than `replicas - max_unavailable`
///   ready. A rolling update under way follows the new values.
/// - `canary` walks `steps`: `{"set_weight": 10}` sends that percent of the traffic to the new
///   release (its set scaled in proportion, at least one instance, the stable release kept at
///   full size), `{"pause_seconds": 30}` waits (`null`: until promote). `analysis` thresholds
///   (5xx share, p99) are judged continuously over a sliding window once `min_requests` have
///   arrived; a breach aborts the rollout and returns all traffic to the stable release.
///   `sticky` keeps each client on one release by cookie.
/// - `blue_green` brings the new release up at full size, served only at
///   `preview.<app>.<team>.<apps-domain>`; promote flips all traffic, and the old release stays
///   up `scale_down_delay_seconds` so that abort flips back at once. `auto_promote_seconds`
///   promotes by itself after that long ready.
///
/// A canary or blue-green rollout under way keeps the strategy it started with. An app's first
/// release has nothing to compare with: it rolls out at once.
#[utoipa::path(put, path = "/api/v1/teams/{team}/apps/{app}/strategy", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = Strategy,
    responses(
        (status = 200, body = Strategy),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Unknown kind, or values out of range", body = gantry_common::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<Strategy>,
) -> ApiResult<Json<Strategy>> {
    access.require(Permission::WriteApps)?;
    body.validate().map_err(invalid)?;
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE apps SET strategy = $3, updated_at = now() WHERE team_id = $1 AND id = $2")
        .bind(access.team.id)
        .bind(app.id)
        .bind(sqlx::types::Json(&body))
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.strategy",
            target: format!("app:{}", app.name),
            details: json!({"strategy": body, "previous": app.strategy.0}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    state.rollouts.notify_one();
    Ok(Json(body))
}
