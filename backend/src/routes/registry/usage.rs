use axum::extract::State;
use axum::Json;
use gantry_common::registry::{RepositoryUsage, TeamRegistryUsage};
use gantry_common::Permission;

use crate::authz::TeamAccess;
use crate::error::ApiResult;
use crate::registry::usage::used_bytes;
use crate::routes::answers;
use crate::state::AppState;

/// What the team's images take in the built-in registry: bytes used (each blob once), the
/// quota, and each repository's tags and size.
#[utoipa::path(get, path = "/api/v1/teams/{team}/registry", tag = "registry",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name")),
    responses(
        (status = 200, body = TeamRegistryUsage),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such team, or not yours", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: TeamAccess,
) -> ApiResult<Json<TeamRegistryUsage>> {
    access.require(Permission::Read)?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT r.name,
                (SELECT count(*) FROM registry_tags t WHERE t.repository_id = r.id),
                (SELECT coalesce(sum(b.size), 0)::bigint FROM registry_repository_blobs rb
                 JOIN registry_blobs b USING (digest) WHERE rb.repository_id = r.id)
         FROM registry_repositories r WHERE r.team_id = $1 ORDER BY r.name",
    )
    .bind(access.team.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(TeamRegistryUsage {
        used_bytes: used_bytes(&state.db, access.team.id).await?,
        quota_bytes: state.registry.team_quota_bytes(),
        repositories: rows
            .into_iter()
            .map(|(name, tags, size)| RepositoryUsage {
                name: format!("{}/{name}", access.team.slug),
                tags: tags.max(0) as u64,
                size_bytes: size.max(0) as u64,
            })
            .collect(),
    }))
}
