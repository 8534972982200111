use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gantry_common::cluster::{Node, NodeStatus};
use serde_json::json;

use crate::audit;
use crate::authz::PlatformAdmin;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

/// Remove a node from the cluster. A connected node is drained first — replacements start
/// elsewhere, then each of its instances leaves the route, finishes its requests and stops — and
/// is deleted once empty (`202`, status `removing`). A node that is down or not connected is
/// deleted at once and its instances replaced elsewhere (`204`). Either way its credential stops
/// working: to come back, its agent joins again with a new join token.
#[utoipa::path(delete, path = "/api/v1/nodes/{node}", tag = "nodes",
    security(("session" = [])),
    params(("node" = String, Path, description = "Node id or name", min_length = 1, max_length = 63)),
    responses(
        (status = 202, description = "Draining; deleted once empty", body = Node),
        (status = 204, description = "Deleted"),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such node", body = gantry_common::ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(node): ApiPath<String>,
) -> ApiResult<Response> {
    let mut tx = state.db.begin().await?;
    let id = super::find(&mut tx, &node).await?;
    let before = super::fetch(&mut tx, &state, id).await?;
    let connected = state.embedded.hub.is_connected(id) && before.status != NodeStatus::Down;
    let response = if connected {
        sqlx::query("UPDATE nodes SET removing = true, cordoned = true WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let node = super::fetch(&mut tx, &state, id).await?;
        (StatusCode::ACCEPTED, Json(node)).into_response()
    } else {
        crate::cluster::delete_node(&mut tx, id).await?;
        StatusCode::NO_CONTENT.into_response()
    };
    audit::record_platform(
        &mut tx,
        audit::PlatformEvent {
            action: "node.remove",
            target: format!("node:{}", before.name),
            details: json!({
                "node_id": id,
                "drained_first": connected,
                "instances": before.instances,
            }),
            actor: (&admin.0).into(),
        },
    )
    .await?;
    tx.commit().await?;
    if !connected {
        state.embedded.hub.close(id, crate::cluster::REMOVED);
    }
    tracing::info!(node.id = %id, user.id = %admin.0.user.id, "node {} removed by {} ({})", before.name, admin.0.user.email, if connected { "draining first" } else { "at once" });
    state.embedded.kick();
    Ok(response)
}
