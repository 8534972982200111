use axum::extract::{Query, State};
use axum::Json;
use gantry_common::api::AuditPage;

use super::{page, AuditQuery, Row};
use crate::authz::PlatformAdmin;
use crate::error::{bad_request, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The platform's audit log, newest first: nodes joining, cordoned, drained and removed, join
/// tokens created and revoked. For platform admins.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    security(("session" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        answers::Authenticated,
        (status = 400, description = "Bad page parameters", body = gantry_common::ErrorBody),
        (status = 403, description = "Not a platform admin, or called with a team's API token", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit()?;
    let rows = sqlx::query_as::<_, Row>(
        "SELECT id, created_at, actor, actor_user_id, NULL::uuid AS actor_token_id, action,
                target, details
         FROM platform_audit_events
         WHERE ($1::bigint IS NULL OR id < $1)
         ORDER BY id DESC LIMIT $2",
    )
    .bind(query.before)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page(rows, limit)))
}
