//! What an app runs: `POST …/deploys` (an image), `POST …/scale` (a replica count) and
//! `GET …/instances`. The reconciler does the rest; these only record the wish and wake it.

pub mod deploy;
pub mod instances;
pub mod scale;

use gantry_common::cluster::{ImageRef, Workload};
use serde_json::json;

use crate::audit;
use crate::authz::{AppAccess, AppRow, APP_COLUMNS};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a deploy or a scale changes.
enum Change<'a> {
    Image(&'a ImageRef),
    Replicas(u32),
}

/// Records the change with its audit event in one transaction, then wakes the reconciler.
async fn apply(state: &AppState, target: &AppAccess, change: Change<'_>) -> ApiResult<Workload> {
    let AppAccess { access, app } = target;
    let (set, action, details) = match &change {
        Change::Image(image) => (
            "image = $3",
            "app.deploy",
            json!({"image": image, "previous": app.image}),
        ),
        Change::Replicas(n) => (
            "replicas = $3",
            "app.scale",
            json!({"replicas": n, "previous": app.replicas}),
        ),
    };
    let query = format!(
        "UPDATE apps SET {set}, updated_at = now() WHERE team_id = $1 AND id = $2
         RETURNING {APP_COLUMNS}"
    );
    let query = sqlx::query_as::<_, AppRow>(&query)
        .bind(access.team.id)
        .bind(app.id);
    let query = match change {
        Change::Image(image) => query.bind(image.as_str().to_owned()),
        Change::Replicas(n) => query.bind(i32::try_from(n).map_err(ApiError::internal)?),
    };
    let mut tx = state.db.begin().await?;
    let row = query.fetch_one(&mut *tx).await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: access.team.id,
            action,
            target: format!("app:{}", app.name),
            details,
            actor: (&access.caller).into(),
        },
    )
    .await?;
    tx.commit().await?;
    let workload = workload(&row);
    tracing::info!(app.id = %app.id, team.slug = %access.team.slug,
        "{action} of app {}: {:?} × {}", app.name, workload.image, workload.replicas);
    state.cluster.kick();
    Ok(workload)
}

fn workload(app: &AppRow) -> Workload {
    Workload {
        // Stored images were parsed on the way in.
        image: app.image.as_deref().and_then(|i| ImageRef::parse(i).ok()),
        replicas: app.replicas.max(0) as u32,
    }
}
