use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::quotas::{Quota, QuotaLimits};
use gantry_common::TeamSlug;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::audit;
use crate::authz::PlatformAdmin;
use crate::error::{invalid, not_found, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::quotas;
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct SlugParam {
    slug: String,
}

/// The team, or 404 (a platform admin sees every team).
async fn team(state: &AppState, slug: &str) -> ApiResult<Uuid> {
    let missing = || not_found(&format!("team {slug:?}"));
    let slug = TeamSlug::parse(slug).map_err(|_| missing())?;
    sqlx::query_scalar("SELECT id FROM teams WHERE slug = $1")
        .bind(slug.as_str())
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(missing)
}

async fn record(
    state: &AppState,
    admin: &PlatformAdmin,
    team: Uuid,
    slug: &str,
    limits: Option<&QuotaLimits>,
) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE teams SET quota_apps = $2, quota_instances = $3, quota_cpu_millis = $4,
             quota_memory_mib = $5
         WHERE id = $1",
    )
    .bind(team)
    .bind(limits.map(|l| l.apps as i32))
    .bind(limits.map(|l| l.instances as i32))
    .bind(limits.map(|l| l.cpu_millis as i32))
    .bind(limits.map(|l| l.memory_mib as i32))
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: team,
            action: "team.quota",
            target: format!("team:{slug}"),
            details: json!({ "quota": limits }),
            actor: (&admin.0).into(),
        },
    )
    .await?;
    tx.commit().await?;
    // A rollout waiting for room may go on; the autoscaler's bounds changed.
    state.rollouts.notify_one();
    state.autoscaler.notify_one();
    Ok(())
}

async fn quota(state: &AppState, team: Uuid) -> ApiResult<Quota> {
    let (limits, custom) = quotas::limits(state, team).await?;
    Ok(Quota {
        limits,
        custom,
        usage: quotas::usage(state, team).await?,
    })
}

/// Set a team's quota (platform admins only). Lower than its usage is allowed: nothing is
/// stopped, but nothing more fits until the usage is below the limits again.
#[utoipa::path(put, path = "/api/v1/platform/teams/{slug}/quota", tag = "teams",
    params(("slug" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    request_body = QuotaLimits,
    responses(
        (status = 200, body = Quota),
        answers::Authenticated, answers::JsonBody,
        (status = 400, description = "A malformed path", body = gantry_common::ErrorBody),
        (status = 403, description = "Not a platform admin (or an API token: this takes a session); or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team", body = gantry_common::ErrorBody),
        (status = 422, description = "A limit out of range, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(SlugParam { slug }): ApiPath<SlugParam>,
    ApiJson(body): ApiJson<QuotaLimits>,
) -> ApiResult<Json<Quota>> {
    body.validate().map_err(invalid)?;
    let team = team(&state, &slug).await?;
    record(&state, &admin, team, &slug, Some(&body)).await?;
    Ok(Json(quota(&state, team).await?))
}

/// Give a team the platform's default quota again (platform admins only).
#[utoipa::path(delete, path = "/api/v1/platform/teams/{slug}/quota", tag = "teams",
    params(("slug" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 204, description = "The team has the platform's defaults"),
        answers::Authenticated,
        (status = 400, description = "A malformed path", body = gantry_common::ErrorBody),
        (status = 403, description = "Not a platform admin (or an API token: this takes a session); or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team", body = gantry_common::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(SlugParam { slug }): ApiPath<SlugParam>,
) -> ApiResult<StatusCode> {
    let team = team(&state, &slug).await?;
    record(&state, &admin, team, &slug, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
