use axum::extract::State;
use axum::Json;
use gantry_common::api::ApiToken;

use super::TokenRow;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// Your active API tokens (a token sees those of its own team). Secrets are never listed.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses(
        (status = 200, body = Vec<ApiToken>),
        answers::Authenticated,
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiToken>>> {
    let rows = sqlx::query_as::<_, TokenRow>(
        "SELECT k.id, k.name, t.slug AS team_slug, k.role, k.prefix, k.created_at, k.last_used_at
         FROM api_tokens k JOIN teams t ON t.id = k.team_id
         WHERE k.created_by = $1 AND k.revoked_at IS NULL AND ($2::uuid IS NULL OR k.team_id = $2)
         ORDER BY k.created_at DESC",
    )
    .bind(caller.user.id)
    .bind(caller.token().map(|t| t.team_id))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(TokenRow::into_api)
            .collect::<ApiResult<_>>()?,
    ))
}
