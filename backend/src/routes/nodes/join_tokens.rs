use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::{CreateJoinToken, CreatedJoinToken, JOIN_TOKEN_MAX_TTL_SECONDS};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::tokens;
use crate::authz::PlatformAdmin;
use crate::cluster::agent_socket::JOIN_TOKEN_PREFIX;
use crate::cluster::EMBEDDED_CLUSTER;
use crate::error::{invalid, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Create a join token for `gantry agent --token`. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/nodes/join-tokens", tag = "nodes",
    request_body = CreateJoinToken,
    responses(
        (status = 201, body = CreatedJoinToken),
        (status = 403, description = "Not a platform admin, or called with a team's API token", body = gantry_common::ErrorBody),
        (status = 422, description = "ttl_seconds out of range", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    ApiJson(body): ApiJson<CreateJoinToken>,
) -> ApiResult<(StatusCode, Json<CreatedJoinToken>)> {
    let expires_at = match body.ttl_seconds {
        None => None,
        Some(ttl) if (60..=JOIN_TOKEN_MAX_TTL_SECONDS).contains(&ttl) => {
            Some(OffsetDateTime::now_utc() + time::Duration::seconds(ttl.into()))
        }
        Some(_) => {
            return Err(invalid(format!(
                "ttl_seconds must be between 60 and {JOIN_TOKEN_MAX_TTL_SECONDS}, or absent for a token that lasts until revoked"
            )))
        }
    };
    let new = tokens::generate_with_prefix(JOIN_TOKEN_PREFIX);
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO join_tokens (cluster_id, created_by, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(EMBEDDED_CLUSTER)
    .bind(caller.user.id)
    .bind(&new.hash)
    .bind(expires_at)
    .fetch_one(&state.db)
    .await?;
    tracing::info!(user.id = %caller.user.id, "join token {id} created by {}", caller.user.email);
    Ok((
        StatusCode::CREATED,
        Json(CreatedJoinToken {
            id,
            token: new.secret,
            expires_at,
        }),
    ))
}
