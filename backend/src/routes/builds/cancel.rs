use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::builds::{Build, BuildStatus};
use gantry_common::Permission;
use serde_json::json;

use super::NumberParam;
use crate::audit;
use crate::authz::AppAccess;
use crate::builds::store;
use crate::error::{conflict, not_found, ApiResult};
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

/// Cancel a queued or running build: it stops on its node, its push is refused, and the app's
/// next build goes on. A build that ended cannot be cancelled (409).
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/builds/{number}/cancel", tag = "builds",
    params(
        ("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"),
        ("app" = inline(gantry_common::AppName), Path, description = "App name"),
        ("number" = u32, Path, description = "Build number", minimum = 1, maximum = 2147483647),
    ),
    responses(
        (status = 202, description = "Cancelling: the build ends as cancelled within seconds", body = Build),
        answers::Authenticated,
        (status = 400, description = "The number is not a number (or another path parameter is malformed)", body = gantry_common::ErrorBody),
        (status = 403, description = "Viewers cannot cancel builds; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app or build", body = gantry_common::ErrorBody),
        (status = 409, description = "The build has ended already", body = gantry_common::ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiPath(NumberParam { number }): ApiPath<NumberParam>,
) -> ApiResult<(StatusCode, Json<Build>)> {
    access.require(Permission::WriteApps)?;
    let build = store::by_number(&state.db, app.id, number)
        .await?
        .ok_or_else(|| not_found("build"))?;
    if !build.status().is_active() {
        return Err(conflict(format!(
            "build {number} has ended already ({})",
            build.status().as_str()
        )));
    }
    if !state.builds.cancel(build.id) {
        // Active in the database but not in this server: a server that stopped left it.
        store::finish(
            &state.db,
            build.id,
            BuildStatus::Cancelled,
            Some("cancelled"),
            None,
        )
        .await?;
    }
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "build.cancel",
            target: format!("app:{}", app.name),
            details: json!({"build": number, "commit": build.commit_id}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(build.to_api())))
}
