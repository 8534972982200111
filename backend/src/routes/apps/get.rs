use axum::extract::State;
use axum::Json;
use gantry_common::api::App;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// One app: its settings, strategy, the release that serves it and its URL.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}", tag = "apps",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = App),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { access, app }: AppAccess,
) -> ApiResult<Json<App>> {
    Ok(Json(app.to_api(access.slug(), &state)))
}
