//! `/api/v1/teams/{team}/members`: who is in a team, with which role.
//!
//! Admins manage members below owner; only owners grant or take away the owner role; a team
//! always keeps at least one owner. Anyone may leave a team (remove themselves).

pub mod add;
pub mod list;
pub mod remove;
pub mod update;

use gantry_common::{Permission, Role};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::authz::TeamAccess;
use crate::error::{conflict, not_found, ApiError, ApiResult};

/// Locks the team's memberships for this transaction (so "last owner" checks cannot race) and
/// returns `user_id`'s current role and e-mail.
async fn lock_member(
    tx: &mut PgConnection,
    team_id: Uuid,
    user_id: Uuid,
) -> ApiResult<(Role, String)> {
    sqlx::query("SELECT 1 FROM teams WHERE id = $1 FOR UPDATE")
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query_as::<_, (String, String)>(
        "SELECT m.role, u.email FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.team_id = $1 AND m.user_id = $2",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found("member"))?;
    let role = row
        .0
        .parse()
        .map_err(|e| ApiError::internal(format!("memberships.role: {e}")))?;
    Ok((role, row.1))
}

/// Refuses to leave the team without an owner when `user_id` (currently an owner) stops being one.
async fn ensure_another_owner(
    tx: &mut PgConnection,
    team_id: Uuid,
    user_id: Uuid,
) -> ApiResult<()> {
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE team_id = $1 AND role = 'owner' AND user_id <> $2",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    if others == 0 {
        return Err(conflict(
            "a team needs at least one owner: make someone else owner first",
        ));
    }
    Ok(())
}

/// May the caller grant or remove `role`? Owners are managed only by owners.
fn require_manage(access: &TeamAccess, role: Role) -> ApiResult<()> {
    access.require(Permission::ManageMembers)?;
    if role == Role::Owner {
        access.require(Permission::ManageOwners)?;
    }
    Ok(())
}
