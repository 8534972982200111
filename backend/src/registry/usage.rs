//! What a team's images take on disk, and its quota (`GANTRY_REGISTRY_TEAM_QUOTA_MIB`).
//!
//! A blob counts once per team however many of its repositories have it (blobs are stored once
//! per digest). Uploads are checked as their bytes arrive against what the team has stored.

use axum::http::StatusCode;
use uuid::Uuid;

use super::error::{RegistryError, RegistryResult};
use crate::state::AppState;

/// Bytes of the blobs the team's repositories have.
pub async fn used_bytes(db: &sqlx::PgPool, team_id: Uuid) -> sqlx::Result<u64> {
    let used: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(b.size), 0)::bigint FROM registry_blobs b
         WHERE b.digest IN (SELECT rb.digest FROM registry_repository_blobs rb
                            JOIN registry_repositories r ON r.id = rb.repository_id
                            WHERE r.team_id = $1)",
    )
    .bind(team_id)
    .fetch_one(db)
    .await?;
    Ok(used.max(0) as u64)
}

/// How many more bytes the team may store; `None` without a quota.
pub async fn left(state: &AppState, team_id: Uuid) -> RegistryResult<Option<u64>> {
    let Some(quota) = state.registry.team_quota_bytes else {
        return Ok(None);
    };
    let used = used_bytes(&state.db, team_id).await?;
    Ok(Some(quota.saturating_sub(used)))
}

pub fn quota_exceeded(state: &AppState) -> RegistryError {
    RegistryError::new(
        StatusCode::FORBIDDEN,
        "DENIED",
        format!(
            "this push would take the team's registry storage over its quota of {} MiB: delete \
             images it no longer needs (garbage collection frees their blobs) or ask an operator \
             to raise GANTRY_REGISTRY_TEAM_QUOTA_MIB",
            state.registry.team_quota_bytes.unwrap_or(0) / (1024 * 1024)
        ),
    )
}
