use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use gantry_common::agent::USAGE_SECONDS;
use gantry_common::cluster::NodeFrame;
use tokio::time::Instant;

use super::list::all;
use crate::authz::PlatformAdmin;
use crate::error::ApiResult;
use crate::live::{self, Permit, Sees, Viewer};
use crate::routes::answers;
use crate::state::AppState;

/// Updates go out at most this often: nodes report one after another, a moment apart.
const MIN_GAP: Duration = Duration::from_secs(1);
/// And at least this often: a node's status changes (down, cordoned, drained) without a report.
const MAX_GAP: Duration = Duration::from_secs(USAGE_SECONDS);

/// The nodes, live, over a websocket: `{"type":"nodes","nodes":[…]}` (items as in
/// `GET /api/v1/nodes`) at once, then again whenever an agent reports what its instances use
/// (every few seconds; at most once a second) and at least every 5 seconds. The rules of the
/// log stream apply (Origin, re-authorization, per-user cap).
#[utoipa::path(get, path = "/api/v1/nodes/stream", tag = "nodes",
    security(("session" = [])),
    responses(
        answers::Stream,
        answers::Authenticated,
        (status = 400, description = "Not a websocket handshake", body = gantry_common::ErrorBody),
        (status = 403, description = "Not a platform admin, called with a team's API token, or a handshake from another site's page", body = gantry_common::ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    PlatformAdmin(caller): PlatformAdmin,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    live::check_origin(&caller, &headers, &state.public_url)?;
    let ws = live::upgrade(upgrade)?;
    let permit = live::admit(&state, caller.user.id)?;
    let viewer = Viewer::new(&caller, Sees::Nodes);
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, socket, viewer, permit).await {
            tracing::debug!("node stream ended: {e}");
        }
    }))
}

async fn serve(
    state: AppState,
    socket: WebSocket,
    viewer: Viewer,
    _permit: Permit,
) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    let mut reports = state.metrics.usage.reports();
    let mut reauthorize = tokio::time::interval(live::REAUTHORIZE_EVERY);
    reauthorize.tick().await;
    let mut sent = Instant::now();
    // The first frame at once.
    let mut due = sent;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => {
                let frame = NodeFrame::Nodes { nodes: all(&state).await? };
                let text = serde_json::to_string(&frame).expect("a frame always encodes");
                if !live::deliver(&mut sink, Message::Text(text.into()), "updates").await {
                    return Ok(());
                }
                sent = Instant::now();
                due = sent + MAX_GAP;
            }
            reported = reports.changed() => {
                if reported.is_err() {
                    return Ok(());
                }
                due = due.min(sent + MIN_GAP);
            }
            _ = reauthorize.tick() => if !live::recheck(&state, &viewer, &mut sink).await? {
                return Ok(());
            },
            message = incoming.next() => if live::client_left(&message) {
                return Ok(());
            },
        }
    }
}
