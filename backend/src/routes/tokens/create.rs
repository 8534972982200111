use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::api::{ApiToken, CreateToken, CreatedToken};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit;
use crate::auth::{tokens, Caller};
use crate::authz;
use crate::error::{forbidden, not_found, ApiResult};
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

/// Create an API token for one of your teams. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    security(("session" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, body = CreatedToken),
        answers::Authenticated, answers::JsonBody,
        (status = 403, description = "A role above your own, called with a token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    // A leaked token must not be able to mint tokens that outlive its own revocation.
    caller.require_session("create tokens")?;
    let access = authz::resolve(&state, caller, body.team.as_str())
        .await?
        .ok_or_else(|| not_found(&format!("team {:?}", body.team.as_str())))?;
    if body.role.rank() > access.role.rank() {
        return Err(forbidden(format!(
            "a token cannot have more than your own role in {} ({})",
            body.team, access.role
        )));
    }
    let new = tokens::generate();
    let mut tx = state.db.begin().await?;
    let (id, created_at): (Uuid, OffsetDateTime) = sqlx::query_as(
        "INSERT INTO api_tokens (team_id, created_by, name, role, secret_hash, prefix)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at",
    )
    .bind(access.team.id)
    .bind(access.caller.user.id)
    .bind(body.name.as_str())
    .bind(body.role.as_str())
    .bind(&new.hash)
    .bind(&new.visible_prefix)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "token.create",
            target: format!("token:{id}"),
            details: json!({"name": body.name, "role": body.role, "prefix": new.visible_prefix}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: ApiToken {
                id,
                name: body.name.into(),
                team: body.team,
                role: body.role,
                prefix: new.visible_prefix,
                created_at,
                last_used_at: None,
            },
            secret: new.secret,
        }),
    ))
}
