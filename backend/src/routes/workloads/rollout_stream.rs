use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use gantry_common::releases::RolloutFrame;
use std::time::Duration;

use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::live::{self, Permit, Viewer};
use crate::rollouts::{self, AppInfo, APP_INFO_QUERY};
use crate::routes::answers;
use crate::state::AppState;

/// How often the rollout is looked at for a change: the controller's own pace.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// The app's current rollout, live, over a websocket: `{"type":"rollout","rollout":{…}}` (as
/// `GET …/rollouts/current`) when the stream opens and whenever it changes (step, weight,
/// analysis figures, what it waits for…), or `{"type":"none"}` before the first release. The
/// rules of the log stream apply (Origin, re-authorization, per-user cap).
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/rollouts/current/stream", tag = "workloads",
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
    let info: AppInfo = sqlx::query_as(&format!(
        "{APP_INFO_QUERY} WHERE a.id = $1 AND a.team_id = $2"
    ))
    .bind(app.id)
    .bind(access.team.id)
    .fetch_one(&state.db)
    .await?;
    let viewer = Viewer::of_app(&access.caller, access.team.id, app.id);
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, socket, info, viewer, permit).await {
            tracing::debug!("rollout stream ended: {e}");
        }
    }))
}

async fn serve(
    state: AppState,
    socket: WebSocket,
    app: AppInfo,
    viewer: Viewer,
    _permit: Permit,
) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    let mut look = tokio::time::interval(LOOK_EVERY);
    let mut reauthorize = tokio::time::interval(live::REAUTHORIZE_EVERY);
    reauthorize.tick().await;
    let mut sent: Option<String> = None;
    loop {
        tokio::select! {
            _ = look.tick() => {
                let frame = match rollouts::progress(&state, &app).await {
                    Ok(Some(rollout)) => RolloutFrame::Rollout { rollout: Box::new(rollout) },
                    Ok(None) => RolloutFrame::None,
                    Err(e) => anyhow::bail!("failed to read the rollout: {}", e.message),
                };
                let text = serde_json::to_string(&frame)?;
                if sent.as_deref() == Some(text.as_str()) {
                    continue;
                }
                if !live::deliver(&mut sink, Message::Text(text.clone().into()), "rollout").await {
                    return Ok(());
                }
                sent = Some(text);
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
