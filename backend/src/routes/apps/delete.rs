use axum::extract::State;
use axum::http::StatusCode;
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// Delete an app, its config vars and releases; its instances stop.
#[utoipa::path(delete, path = "/api/v1/teams/{team}/apps/{app}", tag = "apps",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 204, description = "Deleted"),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Only admins and owners delete apps; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<StatusCode> {
    access.require(Permission::DeleteApps)?;
    let sets: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM releases WHERE app_id = $1")
        .bind(app.id)
        .fetch_all(&state.db)
        .await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM apps WHERE team_id = $1 AND id = $2")
        .bind(access.team.id)
        .bind(app.id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.delete",
            target: format!("app:{}", app.name),
            details: json!({"id": app.id}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    // The rows went with the app; the cluster lets go of its sets (its instances stop) and the
    // router forgets the host.
    for release in sets {
        if let Err(e) = state.cluster.remove(app.id, release).await {
            tracing::warn!(app.id = %app.id, "the cluster did not take the deleted app's release set {release}: {e}");
        }
    }
    state.routes.notify_one();
    // Its git repository goes too; a build under way fails at its release (the app is gone).
    state.git.remove_repo(app.id).await;
    Ok(StatusCode::NO_CONTENT)
}
