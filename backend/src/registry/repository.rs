//! Finding a repository of a team, and creating it at its first push.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::error::{name_unknown, RegistryResult};
use super::path::RepoName;

/// The repository's id; `NAME_UNKNOWN` when the team has none of that name.
pub async fn find(db: impl PgExecutor<'_>, team_id: Uuid, repo: &RepoName) -> RegistryResult<Uuid> {
    sqlx::query_scalar("SELECT id FROM registry_repositories WHERE team_id = $1 AND name = $2")
        .bind(team_id)
        .bind(&repo.name)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| name_unknown(repo))
}

/// The repository's id, creating it when this is its first push.
pub async fn ensure(
    db: impl PgExecutor<'_>,
    team_id: Uuid,
    repo: &RepoName,
) -> RegistryResult<Uuid> {
    // The no-op update makes RETURNING give the id of an existing row too.
    Ok(sqlx::query_scalar(
        "INSERT INTO registry_repositories (team_id, name) VALUES ($1, $2)
         ON CONFLICT (team_id, name) DO UPDATE SET name = EXCLUDED.name
         RETURNING id",
    )
    .bind(team_id)
    .bind(&repo.name)
    .fetch_one(db)
    .await?)
}
