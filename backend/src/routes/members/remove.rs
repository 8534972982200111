use axum::extract::State;
use axum::http::StatusCode;
use gantry_common::Role;
use serde_json::json;

use super::update::MemberPath;
use super::{ensure_another_owner, lock_member, require_manage};
use crate::audit;
use crate::authz::TeamAccess;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

/// Remove a member (or leave the team, when it is yourself).
///
/// Their access ends at once: sessions lose the team on the next request, and their API tokens
/// for this team are revoked.
#[utoipa::path(delete, path = "/api/v1/teams/{team}/members/{user_id}", tag = "members",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed"),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Your role cannot remove this member, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team or member", body = gantry_common::ErrorBody),
        (status = 409, description = "It would leave the team without an owner", body = gantry_common::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    access: TeamAccess,
    ApiPath(path): ApiPath<MemberPath>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let (current, email) = lock_member(&mut tx, access.team.id, path.user_id).await?;
    // Leaving is a person's own act: a token naming its creator goes through the role check, so
    // a leaked read-only token cannot take its owner out of the team.
    let leaving = path.user_id == access.caller.user.id && access.caller.token().is_none();
    if !leaving {
        require_manage(&access, current)?;
    }
    if current == Role::Owner {
        ensure_another_owner(&mut tx, access.team.id, path.user_id).await?;
    }
    sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2")
        .bind(access.team.id)
        .bind(path.user_id)
        .execute(&mut *tx)
        .await?;
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE team_id = $1 AND created_by = $2 AND revoked_at IS NULL",
    )
    .bind(access.team.id)
    .bind(path.user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "member.remove",
            target: format!("member:{email}"),
            details: json!({"role": current, "tokens_revoked": revoked, "left": leaving}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
