use axum::extract::{Query, State};
use axum::Json;
use gantry_common::api::{AuditEvent, AuditPage};
use gantry_common::Permission;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::authz::TeamAccess;
use crate::error::{bad_request, ApiResult};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Return events older than this id (from `next_before`).
    before: Option<i64>,
    /// Page size, 1–200 (default 50).
    limit: Option<u32>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    created_at: OffsetDateTime,
    actor: String,
    actor_user_id: Option<Uuid>,
    actor_token_id: Option<Uuid>,
    action: String,
    target: String,
    details: serde_json::Value,
}

/// The team's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/teams/{team}/audit", tag = "audit",
    params(("team" = String, Path, description = "Team name"), AuditQuery),
    responses(
        (status = 200, body = AuditPage),
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
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 200"));
    }
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
    let more = rows.len() > limit as usize;
    let events: Vec<AuditEvent> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AuditEvent {
            id: r.id,
            at: r.created_at,
            actor: r.actor,
            actor_user_id: r.actor_user_id,
            actor_token_id: r.actor_token_id,
            action: r.action,
            target: r.target,
            details: r.details,
        })
        .collect();
    let next_before = more.then(|| events.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage {
        events,
        next_before,
    }))
}
