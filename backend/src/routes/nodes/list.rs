use axum::extract::State;
use axum::Json;
use gantry_common::cluster::Node;

use super::{NodeRow, NODE_QUERY};
use crate::authz::PlatformAdmin;
use crate::cluster::EMBEDDED_CLUSTER;
use crate::error::ApiResult;
use crate::routes::answers;
use crate::state::{App, AppState};

/// The worker nodes, with status, capacity, what is allocated on them, their instance count and
/// warnings (e.g. a loopback address the router could not reach).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    security(("session" = [])),
    responses(
        (status = 200, body = Vec<Node>),
        answers::Authenticated,
        (status = 403, description = "Not a platform admin, or called with a team's API token", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<Node>>> {
    Ok(Json(all(&state).await?))
}

/// Every node, with what its instances use now.
pub async fn all(state: &App) -> sqlx::Result<Vec<Node>> {
    let rows: Vec<NodeRow> = sqlx::query_as(NODE_QUERY)
        .bind(EMBEDDED_CLUSTER)
        .bind(None::<uuid::Uuid>)
        .fetch_all(&state.db)
        .await?;
    let remote = state.agents_may_be_remote();
    let mut used = state.metrics.usage.by_node();
    Ok(rows
        .iter()
        .map(|r| r.to_api(remote, used.remove(&r.id)))
        .collect())
}
