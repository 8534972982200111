use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use gantry_common::logs::{LogFrame, LogItem};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use super::RawFilter;
use crate::authz::AppAccess;
use crate::error::{bad_request, ApiResult};
use crate::live::{self, Permit, Viewer};
use crate::logs::history::{self, Filter};
use crate::logs::hub::{lines_frame, Frame, LiveLine, BATCH_WINDOW, MAX_FRAME_LINES};
use crate::logs::search;
use crate::routes::answers;
use crate::state::AppState;

const DEFAULT_TAIL: u32 = 100;
const MAX_TAIL: u32 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// How many recent lines to send first, 0–1000 (default 100).
    #[param(minimum = 0, maximum = 1000)]
    tail: Option<u32>,
    /// Only this instance's lines (its id).
    #[param(max_length = 36, format = Uuid)]
    instance: Option<String>,
    /// Only lines of this release version.
    #[param(minimum = 1, maximum = 2147483647)]
    release: Option<u32>,
    /// Only the log of this build (its number): `stream=build` lines.
    #[param(minimum = 1, maximum = 2147483647)]
    build: Option<u32>,
    /// Only `stdout`, `stderr`, `event` or `build` lines.
    #[param(max_length = 6)]
    stream: Option<String>,
    /// Lines that contain this text, whatever its case; when it begins with a letter or digit,
    /// the match begins a word (`err` finds `ERROR:`, `rror` does not).
    #[param(max_length = 256)]
    q: Option<String>,
}

/// The app's log, live, over a websocket (like `kubectl logs -f`): the last `tail` lines that
/// match, then `{"type":"live"}`, then new lines as they are stored, in `{"type":"lines",
/// "items":[…]}` frames (items as in the history). A client that falls behind is sent
/// `{"type":"dropped","count":N}` for the lines it missed; one that stops reading is closed
/// (1013). Access is checked again every few seconds: a removed member's stream is closed
/// with code 1008. With a session cookie the `Origin` must be this server's.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/logs/stream", tag = "logs",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name"), StreamQuery),
    responses(
        answers::Stream,
        answers::Authenticated,
        (status = 400, description = "Not a websocket handshake, a bad filter, or a malformed path", body = gantry_common::ErrorBody),
        (status = 403, description = "A session-authenticated handshake from another site's page", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppAccess { access, app }: AppAccess,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    live::check_origin(&access.caller, &headers, &state.public_url)?;
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let tail = query.tail.unwrap_or(DEFAULT_TAIL);
    if tail > MAX_TAIL {
        return Err(bad_request(format!(
            "tail must be between 0 and {MAX_TAIL}"
        )));
    }
    let filter = RawFilter {
        instance: query.instance.as_deref(),
        release: query.release,
        build: query.build,
        stream: query.stream.as_deref(),
        q: query.q.as_deref(),
    }
    .check()?;
    let ws = live::upgrade(upgrade)?;
    let permit = live::admit(&state, access.caller.user.id)?;
    let app_id = app.id;
    let viewer = Viewer::of_app(&access.caller, access.team.id, app_id);
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, socket, app_id, viewer, filter, tail, permit).await {
            tracing::debug!("log stream ended: {e}");
        }
    }))
}

/// Whether a live line passes the stream's filter. Pure.
fn matches(filter: &Filter, item: &LogItem) -> bool {
    filter.instance.is_none_or(|i| item.instance == Some(i))
        && filter.release.is_none_or(|r| item.release == Some(r))
        && filter.build.is_none_or(|b| item.build == Some(b))
        && filter.stream.is_none_or(|s| item.stream == s)
        && filter
            .q
            .as_deref()
            .is_none_or(|q| search::matches(&item.line, q))
}

fn text(frame: &LogFrame) -> Message {
    Message::Text(
        serde_json::to_string(frame)
            .expect("a frame always encodes")
            .into(),
    )
}

async fn serve(
    state: AppState,
    socket: WebSocket,
    app_id: Uuid,
    viewer: Viewer,
    filter: Filter,
    tail: u32,
    _permit: Permit,
) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    // Subscribed before the replay is read: a line stored in between is in one or the other
    // (or both, and then shown once).
    let mut rx = state.logs.hub.subscribe(app_id);
    let frames = state.logs.hub.subscribe_frames(app_id);
    let (replay, _) = if tail > 0 {
        history::page(&state.db, app_id, &filter, tail).await?
    } else {
        (Vec::new(), None)
    };
    let replayed: HashSet<i64> = replay.iter().map(|(id, _)| *id).collect();
    let items: Vec<LogItem> = replay.into_iter().map(|(_, item)| item).collect();
    for chunk in items.chunks(MAX_FRAME_LINES) {
        let frame = text(&LogFrame::Lines {
            items: chunk.to_vec(),
        });
        tokio::time::timeout(live::SEND_TIMEOUT, sink.send(frame)).await??;
    }
    tokio::time::timeout(live::SEND_TIMEOUT, sink.send(text(&LogFrame::Live))).await??;
    if filter == Filter::default() {
        drop(rx);
        return follow_frames(&state, frames, sink, incoming, &viewer, &replayed).await;
    }
    drop(frames);

    let mut pending: Vec<Arc<LiveLine>> = Vec::new();
    let mut missed: u64 = 0;
    let mut flush_at: Option<Instant> = None;
    let mut reauthorize = tokio::time::interval(live::REAUTHORIZE_EVERY);
    reauthorize.tick().await;
    loop {
        tokio::select! {
            received = rx.recv(), if pending.len() < MAX_FRAME_LINES => {
                match received {
                    Ok(line) => {
                        if replayed.contains(&line.id) || !matches(&filter, &line.item) {
                            continue;
                        }
                        pending.push(line);
                    }
                    Err(RecvError::Lagged(n)) => missed += n,
                    Err(RecvError::Closed) => return Ok(()),
                }
                flush_at.get_or_insert_with(|| Instant::now() + BATCH_WINDOW);
            }
            () = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                flush_at = None;
                let mut frames = Vec::new();
                if missed > 0 {
                    frames.push(text(&LogFrame::Dropped { count: missed }));
                    missed = 0;
                }
                if !pending.is_empty() {
                    frames.push(Message::Text(lines_frame(&pending).into()));
                    pending.clear();
                }
                for frame in frames {
                    if !live::deliver(&mut sink, frame, "lines").await {
                        return Ok(());
                    }
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

/// A viewer without a filter: the app's shared frames, sent as they are (but for lines the
/// replay had, at the seam).
async fn follow_frames(
    state: &AppState,
    mut frames: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    mut sink: live::Sink,
    mut incoming: live::Incoming,
    viewer: &Viewer,
    replayed: &HashSet<i64>,
) -> anyhow::Result<()> {
    // The number of the next line this viewer should get.
    let mut expected: Option<u64> = None;
    let mut reauthorize = tokio::time::interval(live::REAUTHORIZE_EVERY);
    reauthorize.tick().await;
    loop {
        tokio::select! {
            received = frames.recv() => {
                let frame = match received {
                    Ok(frame) => frame,
                    // The next frame's number says how many lines were missed.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return Ok(()),
                };
                let missed = expected.map_or(0, |e| frame.first.saturating_sub(e));
                expected = Some(frame.first + frame.lines.len() as u64);
                if missed > 0 && !live::deliver(&mut sink, text(&LogFrame::Dropped { count: missed }), "lines").await {
                    return Ok(());
                }
                let message = if frame.lines.iter().any(|l| replayed.contains(&l.id)) {
                    let fresh: Vec<Arc<LiveLine>> = frame
                        .lines
                        .iter()
                        .filter(|l| !replayed.contains(&l.id))
                        .cloned()
                        .collect();
                    if fresh.is_empty() {
                        continue;
                    }
                    Message::Text(lines_frame(&fresh).into())
                } else {
                    Message::Text(frame.json.clone())
                };
                if !live::deliver(&mut sink, message, "lines").await {
                    return Ok(());
                }
            }
            _ = reauthorize.tick() => if !live::recheck(state, viewer, &mut sink).await? {
                return Ok(());
            },
            message = incoming.next() => if live::client_left(&message) {
                return Ok(());
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_common::logs::LogStream;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn item(instance: u128, release: u32, stream: LogStream, line: &str) -> LogItem {
        LogItem {
            ts: OffsetDateTime::UNIX_EPOCH,
            instance: Some(Uuid::from_u128(instance)),
            release: Some(release),
            build: None,
            stream,
            line: line.into(),
        }
    }

    #[test]
    fn live_lines_are_filtered_like_the_history() {
        let filter = Filter {
            instance: Some(Uuid::from_u128(1)),
            release: Some(2),
            stream: Some(LogStream::Stderr),
            q: Some("Boom".into()),
            ..Filter::default()
        };
        assert!(matches(
            &filter,
            &item(1, 2, LogStream::Stderr, "a BOOM here")
        ));
        assert!(!matches(&filter, &item(9, 2, LogStream::Stderr, "boom")));
        assert!(!matches(&filter, &item(1, 3, LogStream::Stderr, "boom")));
        assert!(!matches(&filter, &item(1, 2, LogStream::Stdout, "boom")));
        assert!(!matches(&filter, &item(1, 2, LogStream::Stderr, "quiet")));
        assert!(
            !matches(&filter, &item(1, 2, LogStream::Stderr, "kaboom")),
            "q begins a word, as in the history"
        );
        assert!(matches(
            &Filter::default(),
            &item(5, 5, LogStream::Event, "x")
        ));
    }

    #[test]
    fn a_lines_frame_is_the_frame_type_encoded() {
        let lines = vec![
            Arc::new(LiveLine::new(1, item(1, 1, LogStream::Stdout, "one"))),
            Arc::new(LiveLine::new(
                2,
                item(1, 1, LogStream::Stdout, "two \"quoted\""),
            )),
        ];
        let frame: LogFrame = serde_json::from_str(&lines_frame(&lines)).unwrap();
        let LogFrame::Lines { items } = frame else {
            panic!("not a lines frame");
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].line, "two \"quoted\"");
    }
}
