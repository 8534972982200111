use axum::extract::State;
use axum::Json;
use gantry_common::registry::{AppImages, ImageTag};
use gantry_common::Permission;
use time::OffsetDateTime;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::registry::images::registry_host;
use crate::routes::answers;
use crate::state::AppState;

/// The app's repository in the built-in registry (`<team>/<app>`): where to push, and its
/// tags with digest, size and push time, newest first. Empty until the first push.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/images", tag = "registry",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = AppImages),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<AppImages>> {
    access.require(Permission::Read)?;
    let rows: Vec<(String, String, i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT t.tag, t.digest, m.total_size, t.updated_at
         FROM registry_repositories r
         JOIN registry_tags t ON t.repository_id = r.id
         JOIN registry_manifests m ON m.repository_id = r.id AND m.digest = t.digest
         WHERE r.team_id = $1 AND r.name = $2
         ORDER BY t.updated_at DESC, t.tag",
    )
    .bind(access.team.id)
    .bind(&app.name)
    .fetch_all(&state.db)
    .await?;
    let registry = registry_host(&state).to_owned();
    Ok(Json(AppImages {
        repository: format!("{registry}/{}/{}", access.team.slug, app.name),
        registry,
        deploy_on_push: app.deploy_on_push.clone(),
        tags: rows
            .into_iter()
            .map(|(tag, digest, size, pushed_at)| ImageTag {
                tag,
                digest,
                size_bytes: size.max(0) as u64,
                pushed_at,
            })
            .collect(),
    }))
}
