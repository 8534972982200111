//! `/api/v1/nodes/join-tokens`: what lets a new node join. A node uses one once, at its first
//! connection, to register its own credential; revoking or expiring a token afterwards does not
//! affect the nodes that joined with it (remove a node to cut it off).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::agent::JOIN_TOKEN_PREFIX;
use gantry_common::cluster::{
    CreateJoinToken, CreatedJoinToken, JoinToken, JOIN_TOKEN_DEFAULT_TTL_SECONDS,
    JOIN_TOKEN_MAX_TTL_SECONDS, JOIN_TOKEN_MIN_TTL_SECONDS,
};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit;
use crate::auth::tokens;
use crate::authz::PlatformAdmin;
use crate::cluster::EMBEDDED_CLUSTER;
use crate::error::{invalid, not_found, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::answers;
use crate::state::AppState;

/// Create a join token for `gantry agent --token` (valid a day unless `ttl_seconds` says
/// otherwise). The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/nodes/join-tokens", tag = "nodes",
    security(("session" = [])),
    request_body = CreateJoinToken,
    responses(
        (status = 201, body = CreatedJoinToken),
        answers::Authenticated, answers::JsonBody,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 422, description = "ttl_seconds out of range, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    ApiJson(body): ApiJson<CreateJoinToken>,
) -> ApiResult<(StatusCode, Json<CreatedJoinToken>)> {
    let ttl = body.ttl_seconds.unwrap_or(JOIN_TOKEN_DEFAULT_TTL_SECONDS);
    if !(JOIN_TOKEN_MIN_TTL_SECONDS..=JOIN_TOKEN_MAX_TTL_SECONDS).contains(&ttl) {
        return Err(invalid(format!(
            "ttl_seconds must be between {JOIN_TOKEN_MIN_TTL_SECONDS} and {JOIN_TOKEN_MAX_TTL_SECONDS} (default {JOIN_TOKEN_DEFAULT_TTL_SECONDS}, a day)"
        )));
    }
    let expires_at = OffsetDateTime::now_utc() + time::Duration::seconds(ttl.into());
    let new = tokens::generate_with_prefix(JOIN_TOKEN_PREFIX);
    let mut tx = state.db.begin().await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO join_tokens (cluster_id, created_by, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(EMBEDDED_CLUSTER)
    .bind(caller.user.id)
    .bind(&new.hash)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    audit::record_platform(
        &mut tx,
        audit::PlatformEvent {
            action: "join_token.create",
            target: format!("join_token:{id}"),
            details: json!({"ttl_seconds": ttl}),
            actor: (&caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
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

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    created_by: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    nodes_joined: i64,
}

/// The join tokens, newest first, with their status and how many nodes joined with each (never
/// their secrets).
#[utoipa::path(get, path = "/api/v1/nodes/join-tokens", tag = "nodes",
    security(("session" = [])),
    responses(
        (status = 200, body = Vec<JoinToken>),
        answers::Authenticated,
        (status = 403, description = "Not a platform admin, or called with a team's API token", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<JoinToken>>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT j.id, u.email AS created_by, j.created_at, j.expires_at, j.revoked_at,
                (SELECT count(*) FROM nodes n WHERE n.join_token_id = j.id) AS nodes_joined
         FROM join_tokens j LEFT JOIN users u ON u.id = j.created_by
         WHERE j.cluster_id = $1
         ORDER BY j.created_at DESC, j.id",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&state.db)
    .await?;
    let now = OffsetDateTime::now_utc();
    Ok(Json(
        rows.into_iter()
            .map(|r| JoinToken {
                status: if r.revoked_at.is_some() {
                    "revoked"
                } else if r.expires_at <= now {
                    "expired"
                } else {
                    "active"
                }
                .into(),
                id: r.id,
                created_by: r.created_by,
                created_at: r.created_at,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                nodes_joined: r.nodes_joined.max(0) as u32,
            })
            .collect(),
    ))
}

/// Revoke a join token: no new node can join with it. Nodes that joined with it keep working.
#[utoipa::path(delete, path = "/api/v1/nodes/join-tokens/{id}", tag = "nodes",
    security(("session" = [])),
    params(("id" = Uuid, Path, description = "The join token's id")),
    responses(
        (status = 204, description = "Revoked"),
        answers::Authenticated,
        (status = 400, description = "Not a token id", body = gantry_common::ErrorBody),
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such join token", body = gantry_common::ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "UPDATE join_tokens SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND cluster_id = $2 RETURNING id",
    )
    .bind(id)
    .bind(EMBEDDED_CLUSTER)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(not_found("join token"));
    }
    audit::record_platform(
        &mut tx,
        audit::PlatformEvent {
            action: "join_token.revoke",
            target: format!("join_token:{id}"),
            details: json!({}),
            actor: (&caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
