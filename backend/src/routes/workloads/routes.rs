use axum::extract::State;
use axum::Json;
use gantry_common::routes::AppRoutes;

use crate::authz::AppAccess;
use crate::error::{conflict, ApiResult};
use crate::routes::answers;
use crate::state::AppState;

/// The app's route, like `kubectl get endpoints`: its host and URL, the release sets the router
/// sends it traffic to with their weights and ready endpoints (and requests in flight), and the
/// router's counters (requests, status classes, latency) per app and per release.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/routes", tag = "workloads",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = AppRoutes),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 409, description = "The app is a worker (no port): it is not routed", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<AppRoutes>> {
    if app.port.is_none() {
        return Err(conflict(format!(
            "app {} has no port (a worker): it is not routed",
            app.name
        )));
    }
    let routes = state.router.app_routes(app.id).unwrap_or_else(|| {
        // Created a moment ago: the router's next sync adds it (answering 503 until an instance
        // is ready).
        AppRoutes {
            host: format!("{}.{}.{}", app.name, access.team.slug, state.apps_domain),
            url: state.app_url(&access.team.slug, &app.name),
            preview_url: None,
            sets: Vec::new(),
            stats: Default::default(),
        }
    });
    Ok(Json(routes))
}
