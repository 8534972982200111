use axum::extract::State;
use axum::Json;
use gantry_common::builds::{BuildSettings, SetBuildSettings};
use gantry_common::Permission;
use serde_json::json;
use uuid::Uuid;

use crate::audit;
use crate::authz::AppAccess;
use crate::builds::BUILD_ARGS_KEY;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::routes::answers;
use crate::state::AppState;

#[derive(sqlx::FromRow)]
struct Settings {
    deploy_branch: String,
    dockerfile: String,
    build_arg_names: Vec<String>,
}

async fn read(state: &AppState, app_id: Uuid) -> sqlx::Result<Settings> {
    sqlx::query_as("SELECT deploy_branch, dockerfile, build_arg_names FROM apps WHERE id = $1")
        .bind(app_id)
        .fetch_one(&state.db)
        .await
}

fn answer(state: &AppState, team: &str, app: &str, settings: Settings) -> BuildSettings {
    BuildSettings {
        remote_url: format!("{}/git/{team}/{app}.git", state.public_url),
        deploy_branch: settings.deploy_branch,
        dockerfile: settings.dockerfile,
        build_arg_names: settings.build_arg_names,
    }
}

/// How the app's pushes are built, and its git remote: `git remote add gantry <remote_url>`,
/// then `git push gantry <deploy_branch>` with your e-mail and an API token (or password).
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/build-settings", tag = "builds",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = BuildSettings),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<BuildSettings>> {
    let settings = read(&state, app.id).await?;
    Ok(Json(answer(&state, &access.team.slug, &app.name, settings)))
}

/// Change how the app's pushes are built: the deploy branch (pushes to other branches are
/// stored, not built), the Dockerfile's path, and build args (`docker build --build-arg`;
/// they replace all earlier ones, and their values are never shown again). The engine's
/// classic builder keeps build args in the image's history: secrets belong in config vars,
/// which reach the app at run time. Applies to the next push.
#[utoipa::path(put, path = "/api/v1/teams/{team}/apps/{app}/build-settings", tag = "builds",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = SetBuildSettings,
    responses(
        (status = 200, body = BuildSettings),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "A branch name git would refuse, a Dockerfile path outside the repository, build args with invalid names or too long values, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn put(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<SetBuildSettings>,
) -> ApiResult<Json<BuildSettings>> {
    access.require(Permission::WriteApps)?;
    let mut tx = state.db.begin().await?;
    let mut changed = Vec::new();
    if let Some(branch) = &body.deploy_branch {
        sqlx::query("UPDATE apps SET deploy_branch = $2, updated_at = now() WHERE id = $1")
            .bind(app.id)
            .bind(branch.as_str())
            .execute(&mut *tx)
            .await?;
        changed.push("deploy_branch");
    }
    if let Some(dockerfile) = &body.dockerfile {
        sqlx::query("UPDATE apps SET dockerfile = $2, updated_at = now() WHERE id = $1")
            .bind(app.id)
            .bind(dockerfile.as_str())
            .execute(&mut *tx)
            .await?;
        changed.push("dockerfile");
    }
    if let Some(args) = &body.build_args {
        let json =
            serde_json::to_string(args.as_map()).map_err(crate::error::ApiError::internal)?;
        let sealed =
            (!args.as_map().is_empty()).then(|| state.sealer.seal(app.id, BUILD_ARGS_KEY, &json));
        sqlx::query(
            "UPDATE apps SET build_args_sealed = $2, build_arg_names = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(app.id)
        .bind(sealed)
        .bind(args.names())
        .execute(&mut *tx)
        .await?;
        changed.push("build_args");
    }
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.build_settings",
            target: format!("app:{}", app.name),
            // Names only: build args' values may be secrets.
            details: json!({
                "changed": changed,
                "deploy_branch": body.deploy_branch.as_ref().map(|b| b.as_str()),
                "dockerfile": body.dockerfile.as_ref().map(|d| d.as_str()),
                "build_arg_names": body.build_args.as_ref().map(|a| a.names()),
            }),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    let settings = read(&state, app.id).await?;
    Ok(Json(answer(&state, &access.team.slug, &app.name, settings)))
}
