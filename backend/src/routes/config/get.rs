use axum::extract::State;
use axum::Json;
use gantry_common::api::ConfigVars;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::AppState;

/// An app's config vars; viewers get names with `value: null`.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/config", tag = "config",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        (status = 200, body = ConfigVars),
        answers::Authenticated, answers::PathParams,
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, access: AppAccess) -> ApiResult<Json<ConfigVars>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(super::load(&mut conn, &state, &access).await?))
}
