use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::api::{CreateTeam, TeamWithRole};
use gantry_common::Role;
use serde_json::json;

use crate::audit;
use crate::auth::Caller;
use crate::authz::TeamRow;
use crate::error::{conflict, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Create a team; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/teams", tag = "teams",
    security(("session" = [])),
    request_body = CreateTeam,
    responses(
        (status = 201, body = TeamWithRole),
        answers::Authenticated, answers::JsonBody,
        (status = 403, description = "Called with an API token (teams are made by people, signed in), or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 409, description = "The name is taken", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid name, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTeam>,
) -> ApiResult<(StatusCode, Json<TeamWithRole>)> {
    caller.require_session("create teams")?;
    let name = body
        .name
        .map_or_else(|| body.slug.to_string(), String::from);
    let mut tx = state.db.begin().await?;
    let team = sqlx::query_as::<_, TeamRow>(
        "INSERT INTO teams (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING
         RETURNING id, slug, name, created_at",
    )
    .bind(body.slug.as_str())
    .bind(&name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| conflict(format!("the team name {:?} is taken", body.slug.as_str())))?;
    sqlx::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(team.id)
        .bind(caller.user.id)
        .bind(Role::Owner.as_str())
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: team.id,
            action: "team.create",
            target: format!("team:{}", team.slug),
            details: json!({"name": name}),
            actor: (&caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(TeamWithRole {
            team: team.to_api(),
            role: Role::Owner,
        }),
    ))
}
