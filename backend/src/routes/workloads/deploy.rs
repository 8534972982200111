use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gantry_common::cluster::{CreateDeploy, Workload};
use gantry_common::Permission;
use serde_json::json;

use crate::audit;
use crate::authz::{AppAccess, AppRow, APP_COLUMNS};
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Deploy an image: the app's instances are replaced by ones running it (new ones first, old
/// ones stopped once the new ones are ready). Any image the nodes' Docker engines have or can pull.
#[utoipa::path(post, path = "/api/v1/teams/{team}/apps/{app}/deploys", tag = "workloads",
    params(("team" = String, Path, description = "Team name"), ("app" = String, Path, description = "App name")),
    request_body = CreateDeploy,
    responses(
        (status = 202, description = "Recorded; instances follow", body = Workload),
        (status = 403, description = "Viewers cannot deploy", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Not a valid image reference", body = gantry_common::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
    ApiJson(body): ApiJson<CreateDeploy>,
) -> ApiResult<(StatusCode, Json<Workload>)> {
    access.require(Permission::WriteApps)?;
    let mut tx = state.db.begin().await?;
    let row = sqlx::query_as::<_, AppRow>(&format!(
        "UPDATE apps SET image = $3, updated_at = now() WHERE team_id = $1 AND id = $2
         RETURNING {APP_COLUMNS}"
    ))
    .bind(access.team.id)
    .bind(app.id)
    .bind(body.image.as_str())
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action: "app.deploy",
            target: format!("app:{}", app.name),
            details: json!({"image": body.image, "previous": app.image}),
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(app.id = %app.id, team.slug = %access.team.slug, "app {} deploys {}", app.name, body.image);
    state.cluster.kick();
    Ok((StatusCode::ACCEPTED, Json(super::workload(&row))))
}
