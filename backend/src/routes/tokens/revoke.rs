use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::audit;
use crate::auth::Caller;
use crate::error::{forbidden, not_found, ApiResult};
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct TokenPath {
    id: Uuid,
}

/// Revoke one of your API tokens; it stops working at once. With a token, only that token itself.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "A token revoking another token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such token of yours", body = gantry_common::ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<TokenPath>,
) -> ApiResult<StatusCode> {
    // A token may revoke itself (e.g. at the end of a CI job) but not its siblings: a leaked
    // read-only token must not be able to cut off its owner's deploy token.
    if caller.token().is_some_and(|t| t.id != path.id) {
        return Err(forbidden(
            "an API token can revoke only itself; sign in to revoke other tokens",
        ));
    }
    let mut tx = state.db.begin().await?;
    let revoked = sqlx::query_as::<_, (Uuid, String)>(
        "UPDATE api_tokens SET revoked_at = now()
         WHERE id = $1 AND created_by = $2 AND revoked_at IS NULL
           AND ($3::uuid IS NULL OR team_id = $3)
         RETURNING team_id, name",
    )
    .bind(path.id)
    .bind(caller.user.id)
    .bind(caller.token().map(|t| t.team_id))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((team_id, name)) = revoked else {
        return Err(not_found("token"));
    };
    audit::record(
        &mut tx,
        audit::Event {
            team_id,
            action: "token.revoke",
            target: format!("token:{}", path.id),
            details: json!({"name": name}),
            actor: (&caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
