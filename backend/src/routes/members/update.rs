use axum::extract::State;
use axum::Json;
use gantry_common::api::{Member, UpdateMember};
use gantry_common::{Email, Role};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ensure_another_owner, lock_member, require_manage};
use crate::audit;
use crate::authz::TeamAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct MemberPath {
    pub user_id: Uuid,
}

/// Change a member's role.
#[utoipa::path(patch, path = "/api/v1/teams/{team}/members/{user_id}", tag = "members",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("user_id" = Uuid, Path)),
    request_body = UpdateMember,
    responses(
        (status = 200, body = Member),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Your role cannot make this change, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team or member", body = gantry_common::ErrorBody),
        (status = 409, description = "It would leave the team without an owner", body = gantry_common::ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    access: TeamAccess,
    ApiPath(path): ApiPath<MemberPath>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let mut tx = state.db.begin().await?;
    let (current, email) = lock_member(&mut tx, access.team.id, path.user_id).await?;
    require_manage(&access, current)?;
    require_manage(&access, body.role)?;
    if current == Role::Owner && body.role != Role::Owner {
        ensure_another_owner(&mut tx, access.team.id, path.user_id).await?;
    }
    let joined_at: OffsetDateTime = sqlx::query_scalar(
        "UPDATE memberships SET role = $3 WHERE team_id = $1 AND user_id = $2 RETURNING created_at",
    )
    .bind(access.team.id)
    .bind(path.user_id)
    .bind(body.role.as_str())
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "member.update",
            target: format!("member:{email}"),
            details: json!({"from": current, "to": body.role}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(Member {
        user_id: path.user_id,
        email: Email::parse(&email).map_err(ApiError::internal)?,
        role: body.role,
        joined_at,
    }))
}
