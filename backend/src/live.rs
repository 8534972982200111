//! The rules every browser-facing websocket follows (the log, metric and node streams, and the
//! rollout streams to come):
//!
//! - **Who**: the session cookie or a bearer token, checked at the handshake like any request
//!   (another team's app is a 404). With a cookie, the `Origin` must be this server's own
//!   ([`check_origin`]): a page of another site cannot open a stream with the visitor's cookie.
//!   No `Origin` (a command-line client that sends the cookie) is allowed.
//! - **Still who**: every [`REAUTHORIZE_EVERY`] the stream checks again that the membership,
//!   the session or token and the app are still there ([`still_allowed`]); if not it closes
//!   with code 1008 (policy violation), so a removed member is cut off within seconds.
//! - **How many**: at most `GANTRY_STREAMS_PER_USER` at once per user ([`LiveGate`]; 429).
//! - **How much**: a bounded queue per stream, frames sent with a deadline
//!   ([`SEND_TIMEOUT`]; a client that does not read is closed), and small client messages
//!   ([`MAX_CLIENT_MESSAGE_BYTES`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::SinkExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::origin::is_cross_site;
use crate::auth::{Caller, Via};
use crate::error::{bad_request, forbidden, ApiError, ApiResult};
use crate::state::{App, AppState};

pub const REAUTHORIZE_EVERY: Duration = Duration::from_secs(2);
/// A frame the client has not taken in this long closes the stream.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients send nothing but pings and closes; anything bigger is refused by the socket.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4 * 1024;
/// Close code for a stream whose access was withdrawn (RFC 6455: policy violation).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a client too slow to take its frames (RFC 6455: try again later).
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// Counts open streams per user, and remembers recent access checks.
pub struct LiveGate {
    per_user: Mutex<HashMap<Uuid, u32>>,
    cap: u32,
    /// Access checks of the last moments, shared by the streams of one viewer (a thousand
    /// browser tabs of one user make one query per [`REAUTHORIZE_EVERY`], not a thousand).
    checked: Mutex<HashMap<Viewer, (Instant, bool)>>,
}

/// One open stream; dropping it frees the slot.
pub struct Permit {
    state: AppState,
    user: Uuid,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.state.live.lock();
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl LiveGate {
    pub fn new(cap: u32) -> Self {
        LiveGate {
            per_user: Mutex::new(HashMap::new()),
            cap,
            checked: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, u32>> {
        self.per_user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams open now, all users together.
    pub fn open(&self) -> u32 {
        self.lock().values().sum()
    }
}

/// A slot for one more stream of `user`, or 429.
pub fn admit(state: &AppState, user: Uuid) -> ApiResult<Permit> {
    let mut counts = state.live.lock();
    let n = counts.entry(user).or_default();
    if *n >= state.live.cap {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "you have {} live streams open, the most allowed (GANTRY_STREAMS_PER_USER); close one first",
                state.live.cap
            ),
        ));
    }
    *n += 1;
    Ok(Permit {
        state: state.clone(),
        user,
    })
}

/// A cookie-authenticated stream must be opened by this server's own pages.
pub fn check_origin(caller: &Caller, headers: &HeaderMap, public_url: &str) -> ApiResult<()> {
    if matches!(caller.via, Via::Session(_)) && is_cross_site(headers, public_url) {
        return Err(forbidden(
            "cross-origin stream refused: open it from this server's own pages, or with an API token",
        ));
    }
    Ok(())
}

/// The upgrade, or a 400 that says this is a websocket.
pub fn upgrade(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<WebSocketUpgrade> {
    upgrade
        .map(|ws| {
            ws.max_message_size(MAX_CLIENT_MESSAGE_BYTES)
                .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
                // tungstenite zero-fills its read buffer before each read and keeps it: the
                // default 128 KiB per socket is wasted on clients that send pings only.
                .read_buffer_size(2 * MAX_CLIENT_MESSAGE_BYTES)
        })
        .map_err(|e| {
            bad_request(format!(
                "this is a websocket endpoint: connect with `Upgrade: websocket` ({})",
                e.body_text()
            ))
        })
}

/// What a stream shows, which decides who may go on watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sees {
    /// One app's logs or metrics: for its team's members (every role).
    App { team_id: Uuid, app_id: Uuid },
    /// The cluster's nodes: for platform admins.
    Nodes,
}

/// Whom a stream serves, to check again while it is open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Viewer {
    pub user_id: Uuid,
    pub sees: Sees,
    pub token_id: Option<Uuid>,
    /// The session's id as the session store keeps it.
    pub session_id: Option<String>,
}

impl Viewer {
    pub fn new(caller: &Caller, sees: Sees) -> Self {
        Viewer {
            user_id: caller.user.id,
            sees,
            token_id: caller.token().map(|t| t.id),
            session_id: match &caller.via {
                Via::Session(s) => s.id().map(|id| id.to_string()),
                Via::Token(_) | Via::Password => None,
            },
        }
    }
    /// A member watching one of the team's apps.
    pub fn of_app(caller: &Caller, team_id: Uuid, app_id: Uuid) -> Self {
        Viewer::new(caller, Sees::App { team_id, app_id })
    }
}

/// Whether the viewer may still see what the stream shows: still a member of the app's team
/// (every role may read logs) and the app still there, or still a platform admin; and the
/// token not revoked or the session not ended. An answer is reused for half of
/// [`REAUTHORIZE_EVERY`] by the viewer's other streams.
pub async fn still_allowed(state: &App, viewer: &Viewer) -> sqlx::Result<bool> {
    let fresh = REAUTHORIZE_EVERY / 2;
    {
        let mut checked = state.live.checked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, allowed)) = checked.get(viewer) {
            if at.elapsed() < fresh {
                return Ok(*allowed);
            }
        }
        checked.retain(|_, (at, _)| at.elapsed() < fresh);
    }
    let allowed = query_allowed(&state.db, viewer).await?;
    state
        .live
        .checked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(viewer.clone(), (Instant::now(), allowed));
    Ok(allowed)
}

async fn query_allowed(db: &PgPool, viewer: &Viewer) -> sqlx::Result<bool> {
    // `$2` and `$3` NULL: the nodes, for a platform admin.
    let (team_id, app_id) = match viewer.sees {
        Sees::App { team_id, app_id } => (Some(team_id), Some(app_id)),
        Sees::Nodes => (None, None),
    };
    sqlx::query_scalar(
        "SELECT CASE WHEN $3::uuid IS NULL
                THEN EXISTS (SELECT 1 FROM users WHERE id = $1 AND is_platform_admin)
                ELSE EXISTS (SELECT 1 FROM memberships m JOIN apps a ON a.team_id = m.team_id
                             WHERE m.user_id = $1 AND m.team_id = $2 AND a.id = $3)
                END
            AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM api_tokens
                                             WHERE id = $4 AND revoked_at IS NULL))
            AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM tower_sessions.session
                                             WHERE id = $5 AND expiry_date > now()))",
    )
    .bind(viewer.user_id)
    .bind(team_id)
    .bind(app_id)
    .bind(viewer.token_id)
    .bind(viewer.session_id.as_deref())
    .fetch_one(db)
    .await
}

/// A close frame with a code and a reason for the client.
pub fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// The sending half of a stream's socket.
pub type Sink = SplitSink<WebSocket, Message>;
/// What the client sends on a stream.
pub type Incoming = SplitStream<WebSocket>;

/// Closes the stream with `code` and `reason`, giving the close a moment to go out.
pub async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(code, reason))).await;
}

/// Sends a frame within [`SEND_TIMEOUT`], or closes a client too slow to take it (1013)
/// saying what it missed (`what`: "lines", "points"); false when the stream is over.
pub async fn deliver(sink: &mut Sink, frame: Message, what: &str) -> bool {
    if tokio::time::timeout(SEND_TIMEOUT, sink.send(frame))
        .await
        .is_ok_and(|sent| sent.is_ok())
    {
        return true;
    }
    let reason = format!("too slow: the stream could not deliver its {what}");
    close_with(sink, CLOSE_TRY_AGAIN, &reason).await;
    false
}

/// At each tick of a stream's re-authorization timer: false, once the stream is closed with
/// 1008, when the viewer may no longer see what it shows.
pub async fn recheck(state: &App, viewer: &Viewer, sink: &mut Sink) -> sqlx::Result<bool> {
    if still_allowed(state, viewer).await? {
        return Ok(true);
    }
    let what = match viewer.sees {
        Sees::App { .. } => "this app",
        Sees::Nodes => "the nodes",
    };
    close_with(
        sink,
        CLOSE_POLICY,
        &format!("your access to {what} was withdrawn"),
    )
    .await;
    Ok(false)
}

/// Whether what the client sent ends the stream: it closed or broke it. Anything else (pings
/// are answered by the socket itself) is ignored.
pub fn client_left(message: &Option<Result<Message, axum::Error>>) -> bool {
    matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_))))
}
