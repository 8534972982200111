//! Cordon, uncordon and drain: what `kubectl cordon|uncordon|drain` do to a node.

use axum::extract::State;
use axum::Json;
use gantry_common::cluster::Node;
use serde_json::json;

use crate::audit;
use crate::authz::PlatformAdmin;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::routes::answers;
use crate::state::AppState;

/// Which maintenance flags an action sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Cordon,
    Uncordon,
    Drain,
}

impl Action {
    /// `(cordoned, draining)` after the action. Draining implies cordoned, so an uncordon
    /// after a drain makes the node schedulable again.
    fn flags(self) -> (bool, bool) {
        match self {
            Action::Cordon => (true, false),
            Action::Uncordon => (false, false),
            Action::Drain => (true, true),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Cordon => "node.cordon",
            Action::Uncordon => "node.uncordon",
            Action::Drain => "node.drain",
        }
    }
}

async fn apply(
    state: &AppState,
    admin: &PlatformAdmin,
    node: &str,
    action: Action,
) -> ApiResult<Json<Node>> {
    let mut tx = state.db.begin().await?;
    let id = super::find(&mut tx, node).await?;
    let (cordoned, draining) = action.flags();
    sqlx::query("UPDATE nodes SET cordoned = $2, draining = $3 WHERE id = $1")
        .bind(id)
        .bind(cordoned)
        .bind(draining)
        .execute(&mut *tx)
        .await?;
    let node = super::fetch(&mut tx, state, id).await?;
    audit::record_platform(
        &mut tx,
        audit::PlatformEvent {
            action: action.name(),
            target: format!("node:{}", node.name),
            details: json!({"node_id": id}),
            actor: (&admin.0).into(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(node.id = %id, user.id = %admin.0.user.id, "{} of node {} by {}", action.name(), node.name, admin.0.user.email);
    state.embedded.kick();
    Ok(Json(node))
}

/// Take no new instances on this node; the ones there keep running.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/cordon", tag = "nodes",
    security(("session" = [])),
    params(("node" = String, Path, description = "Node id or name", min_length = 1, max_length = 63)),
    responses(
        (status = 200, body = Node),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such node", body = gantry_common::ErrorBody),
    ))]
pub async fn cordon(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(node): ApiPath<String>,
) -> ApiResult<Json<Node>> {
    apply(&state, &admin, &node, Action::Cordon).await
}

/// Make the node schedulable again (also ends a drain).
#[utoipa::path(post, path = "/api/v1/nodes/{node}/uncordon", tag = "nodes",
    security(("session" = [])),
    params(("node" = String, Path, description = "Node id or name", min_length = 1, max_length = 63)),
    responses(
        (status = 200, body = Node),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such node", body = gantry_common::ErrorBody),
    ))]
pub async fn uncordon(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(node): ApiPath<String>,
) -> ApiResult<Json<Node>> {
    apply(&state, &admin, &node, Action::Uncordon).await
}

/// Move every instance off the node: replacements are started elsewhere first, and each old
/// instance leaves the route, finishes its requests and stops once its app has enough ready
/// replicas without it.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/drain", tag = "nodes",
    security(("session" = [])),
    params(("node" = String, Path, description = "Node id or name", min_length = 1, max_length = 63)),
    responses(
        (status = 200, body = Node),
        answers::Authenticated, answers::PathParams,
        (status = 403, description = "Not a platform admin, called with a team's API token, or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such node", body = gantry_common::ErrorBody),
    ))]
pub async fn drain(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(node): ApiPath<String>,
) -> ApiResult<Json<Node>> {
    apply(&state, &admin, &node, Action::Drain).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_implies_cordon_and_uncordon_ends_both() {
        assert_eq!(Action::Drain.flags(), (true, true));
        assert_eq!(Action::Cordon.flags(), (true, false));
        assert_eq!(Action::Uncordon.flags(), (false, false));
    }
}
