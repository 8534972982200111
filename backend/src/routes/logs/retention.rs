use axum::extract::State;
use axum::Json;
use gantry_common::logs::{LogRetention, SetLogRetention};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::TeamAccess;
use crate::error::{invalid, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

fn retention(days: Option<i32>, platform_days: u32) -> LogRetention {
    let days = days.and_then(|d| u32::try_from(d).ok());
    LogRetention {
        days,
        platform_days,
        effective_days: days.map_or(platform_days, |d| d.min(platform_days)),
    }
}

/// How long the team's logs and events are kept.
#[utoipa::path(get, path = "/api/v1/teams/{team}/logs/retention", tag = "logs",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = LogRetention),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: TeamAccess,
) -> ApiResult<Json<LogRetention>> {
    let days: Option<i32> =
        sqlx::query_scalar("SELECT log_retention_days FROM teams WHERE id = $1")
            .bind(access.team.id)
            .fetch_one(&state.db)
            .await?;
    Ok(Json(retention(days, state.logs.retention_days)))
}

/// Keep the team's logs and events for fewer days than the platform does (`null`: as long as
/// the platform). Older lines go within the hour.
#[utoipa::path(put, path = "/api/v1/teams/{team}/logs/retention", tag = "logs",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    request_body = SetLogRetention,
    responses(
        (status = 200, body = LogRetention),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Only admins and owners change team settings; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
        (status = 422, description = "Days out of range (1 to the platform's retention)", body = gantry_common::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    access: TeamAccess,
    ApiJson(body): ApiJson<SetLogRetention>,
) -> ApiResult<Json<LogRetention>> {
    access.require(Permission::ManageTeam)?;
    let platform = state.logs.retention_days;
    if let Some(days) = body.days {
        if days == 0 || days > platform {
            return Err(invalid(format!(
                "days must be between 1 and the platform's retention ({platform}), or null for the platform's"
            )));
        }
    }
    let days = body.days.map(|d| d as i32);
    let mut tx = state.db.begin().await?;
    let previous: Option<i32> = sqlx::query_scalar(
        "UPDATE teams t SET log_retention_days = $2 FROM teams old
         WHERE t.id = $1 AND old.id = t.id RETURNING old.log_retention_days",
    )
    .bind(access.team.id)
    .bind(days)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "team.log_retention",
            target: format!("team:{}", access.team.slug),
            details: json!({"days": body.days, "previous": previous}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(retention(days, platform)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lesser_of_the_team_and_the_platform_applies() {
        assert_eq!(retention(None, 7).effective_days, 7);
        assert_eq!(retention(Some(2), 7).effective_days, 2);
        // A platform that lowered its retention since the team chose.
        assert_eq!(retention(Some(30), 7).effective_days, 7);
    }
}
