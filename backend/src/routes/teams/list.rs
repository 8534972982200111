use axum::extract::State;
use axum::Json;
use gantry_common::api::TeamWithRole;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::routes::auth::me::teams_of;
use crate::state::AppState;

/// The teams the caller belongs to, with its role in each.
#[utoipa::path(get, path = "/api/v1/teams", tag = "teams",
    responses(
        (status = 200, body = Vec<TeamWithRole>),
        answers::Authenticated,
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TeamWithRole>>> {
    Ok(Json(teams_of(&state, &caller).await?))
}
