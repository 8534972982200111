use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use gantry_common::metrics::MetricFrame;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::live::{self, Permit, Viewer};
use crate::metrics::{points::STEP_SECONDS, sampler};
use crate::routes::answers;
use crate::state::AppState;

/// The points replayed when a stream opens: the last ten minutes.
const REPLAY: time::Duration = time::Duration::minutes(10);

fn text(frame: &MetricFrame) -> Message {
    Message::Text(
        serde_json::to_string(frame)
            .expect("a frame always encodes")
            .into(),
    )
}

/// The app's metrics, live, over a websocket: the last ten minutes of 5-second points, then
/// `{"type":"live"}`, then each new point as it is made (`{"type":"points","points":[…]}`,
/// items as in the history). The rules of the log stream apply (Origin, re-authorization,
/// per-user cap, missed points counted as `{"type":"dropped"}`).
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/metrics/stream", tag = "metrics",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    responses(
        answers::Stream,
        answers::Authenticated,
        (status = 400, description = "Not a websocket handshake, or a malformed path", body = gantry_common::ErrorBody),
        (status = 403, description = "A session-authenticated handshake from another site's page", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppAccess { access, app }: AppAccess,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    live::check_origin(&access.caller, &headers, &state.public_url)?;
    let ws = live::upgrade(upgrade)?;
    let permit = live::admit(&state, access.caller.user.id)?;
    let app_id = app.id;
    let viewer = Viewer::of_app(&access.caller, access.team.id, app_id);
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, socket, app_id, viewer, permit).await {
            tracing::debug!("metrics stream ended: {e}");
        }
    }))
}

async fn serve(
    state: AppState,
    socket: WebSocket,
    app_id: Uuid,
    viewer: Viewer,
    _permit: Permit,
) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    let mut rx = state.metrics.hub.subscribe(app_id);
    let now = OffsetDateTime::now_utc();
    let replay =
        sampler::series(&state.db, app_id, now - REPLAY, now, STEP_SECONDS, 10_000).await?;
    let last_replayed = replay.points.last().map(|p| p.ts);
    for frame in [
        text(&MetricFrame::Points {
            points: replay.points,
        }),
        text(&MetricFrame::Live),
    ] {
        tokio::time::timeout(live::SEND_TIMEOUT, sink.send(frame)).await??;
    }
    let mut reauthorize = tokio::time::interval(live::REAUTHORIZE_EVERY);
    reauthorize.tick().await;
    loop {
        tokio::select! {
            received = rx.recv() => {
                let frame = match received {
                    // A point the replay already had.
                    Ok(point) if last_replayed.is_some_and(|t| point.ts <= t) => continue,
                    Ok(point) => MetricFrame::Points { points: vec![(*point).clone()] },
                    Err(RecvError::Lagged(n)) => MetricFrame::Dropped { count: n },
                    Err(RecvError::Closed) => return Ok(()),
                };
                if !live::deliver(&mut sink, text(&frame), "points").await {
                    return Ok(());
                }
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
