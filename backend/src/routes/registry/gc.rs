use axum::extract::State;
use axum::Json;
use gantry_common::registry::GcReport;
use serde_json::json;

use crate::audit;
use crate::authz::PlatformAdmin;
use crate::error::{ApiError, ApiResult};
use crate::registry::gc;
use crate::routes::answers;
use crate::state::AppState;

/// Collect the registry's garbage now (it also runs daily): upload sessions untouched for a day
/// expire, repositories stop serving blobs none of their manifests names, and blob files no
/// repository has are deleted. Nothing stored or linked in the last hour is collected, so a
/// push in progress is safe.
#[utoipa::path(post, path = "/api/v1/registry/gc", tag = "registry",
    security(("session" = [])),
    responses(
        (status = 200, description = "What was collected", body = GcReport),
        answers::Authenticated,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
    ))]
pub async fn collect(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
) -> ApiResult<Json<GcReport>> {
    let report = gc::collect(&state)
        .await
        .map_err(|e| ApiError::internal(e.message))?;
    let mut conn = state.db.acquire().await?;
    audit::record_platform(
        &mut conn,
        audit::PlatformEvent {
            action: "registry.gc",
            target: "registry".to_owned(),
            details: json!(report),
            actor: (&caller).into(),
        },
    )
    .await?;
    Ok(Json(report))
}
