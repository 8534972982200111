use axum::extract::{Query, State};
use axum::Json;
use gantry_common::api::AuditPage;
use gantry_common::Permission;

use super::{page, AuditQuery, Row};
use crate::authz::TeamAccess;
use crate::error::{bad_request, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The team's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/teams/{team}/audit", tag = "audit",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        answers::Authenticated,
        (status = 400, description = "Bad page parameters, or a malformed path", body = gantry_common::ErrorBody),
        (status = 403, description = "Only admins and owners read the audit log", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: TeamAccess,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    access.require(Permission::ReadAudit)?;
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit()?;
    let rows = sqlx::query_as::<_, Row>(
        "SELECT id, created_at, actor, actor_user_id, actor_token_id, action, target, details
         FROM audit_events
         WHERE team_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(access.team.id)
    .bind(query.before)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page(rows, limit)))
}
