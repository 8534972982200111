//! The server's side of a push's hook: while `git receive-pack` runs for a push, the push has a
//! session here (who pushes to which app, with a secret only that push's hook knows). The hook
//! posts the deploy branch's commit as a tar to `POST /git/-/hooks/{push}`; the answer is the
//! build's output as JSON lines ([`HookFrame`]), ending with whether the push may go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use gantry_common::builds::{is_commit_id, BuildStatus};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::hook::HookFrame;
use crate::audit::Actor;
use crate::authz::TeamRow;
use crate::builds::run::{self, Start};
use crate::builds::Progress;
use crate::state::AppState;

/// Everything a push's build needs, fixed when the push starts.
pub struct PushSession {
    /// SHA-256 of the hook's secret.
    secret_hash: [u8; 32],
    pub team: TeamRow,
    pub app_id: Uuid,
    pub app_name: String,
    pub actor: Actor,
    pub branch: String,
    pub dockerfile: String,
    /// Secret.
    pub build_args: BTreeMap<String, String>,
}

/// The pushes in progress.
#[derive(Default, Clone)]
pub struct Pushes(Arc<Mutex<HashMap<Uuid, Arc<PushSession>>>>);

/// Ends a push's session when dropped (the push's answer is sent, or its request gone).
pub struct Registered {
    pushes: Pushes,
    id: Uuid,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.pushes.lock().remove(&self.id);
    }
}

impl Pushes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<PushSession>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session; returns its id, the hook's secret and the guard that closes it.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        team: TeamRow,
        app_id: Uuid,
        app_name: String,
        actor: Actor,
        branch: String,
        dockerfile: String,
        build_args: BTreeMap<String, String>,
    ) -> (Uuid, String, Registered) {
        let id = Uuid::new_v4();
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let session = PushSession {
            secret_hash: Sha256::digest(secret.as_bytes()).into(),
            team,
            app_id,
            app_name,
            actor,
            branch,
            dockerfile,
            build_args,
        };
        self.lock().insert(id, Arc::new(session));
        let guard = Registered {
            pushes: self.clone(),
            id,
        };
        (id, secret, guard)
    }

    /// The session of a push whose hook presents `secret`.
    fn check(&self, id: Uuid, secret: &str) -> Option<Arc<PushSession>> {
        let session = self.lock().get(&id).cloned()?;
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        // Comparing digests: no timing tells how much of the secret was right.
        (presented == session.secret_hash).then_some(session)
    }
}

#[derive(Deserialize)]
pub struct HookQuery {
    commit: String,
    /// Where the push found the branch (zeros: a new branch).
    old: String,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// `POST /git/-/hooks/{push}?commit=<id>&old=<id>`: builds the commit (the body is its tar) and streams
/// the build's output back.
pub async fn build(
    State(state): State<AppState>,
    Path(push): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let session = match (Uuid::parse_str(&push), secret) {
        (Ok(id), Some(secret)) => state.git.pushes.check(id, secret),
        _ => None,
    };
    let Some(session) = session else {
        return refuse(StatusCode::NOT_FOUND, "no such push");
    };
    if !is_commit_id(&query.commit) || !is_commit_id(&query.old) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "commit and old must be full commit ids",
        );
    }
    let upload = state
        .git
        .contexts_dir()
        .join(format!("upload-{}.tar", Uuid::new_v4()));
    if let Err(message) = receive(body, &upload, state.git.max_push_bytes).await {
        let _ = tokio::fs::remove_file(&upload).await;
        return refuse(StatusCode::BAD_REQUEST, &message);
    }
    let start = Start {
        team: session.team.clone(),
        app_id: session.app_id,
        app_name: session.app_name.clone(),
        actor: Actor {
            user_id: session.actor.user_id,
            token_id: session.actor.token_id,
            label: session.actor.label.clone(),
        },
        commit: query.commit,
        old: query.old,
        branch: session.branch.clone(),
        dockerfile: session.dockerfile.clone(),
        build_args: session.build_args.clone(),
        upload: upload.clone(),
    };
    let (_row, progress) = match run::start(&state, start).await {
        Ok(started) => started,
        Err(e) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return refuse(e.status, &e.message);
        }
    };
    // JSON lines until the end frame (included), or until the build's task is gone.
    let frames = futures_util::stream::unfold(Some(progress), |progress| async move {
        let mut progress = progress?;
        let frame = match progress.recv().await {
            Ok(Progress::Lines(lines)) => HookFrame::Lines(lines),
            Ok(Progress::Finished { status, .. }) => HookFrame::End {
                ok: status == BuildStatus::Succeeded,
            },
            Err(RecvError::Lagged(n)) => HookFrame::Lines(vec![format!(
                "({n} batches of output skipped: see the build's log)"
            )]),
            Err(RecvError::Closed) => return None,
        };
        let ended = matches!(frame, HookFrame::End { .. });
        let mut line = serde_json::to_vec(&frame).expect("a frame of strings and flags encodes");
        line.push(b'\n');
        let item = Ok::<_, std::io::Error>(bytes::Bytes::from(line));
        Some((item, (!ended).then_some(progress)))
    });
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// Stores the hook's upload at `path`, at most `max` bytes.
async fn receive(body: Body, path: &std::path::Path, max: u64) -> Result<(), String> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("the build context could not be stored: {e}"))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the upload failed: {e}"))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(format!(
                "the commit's files take more than {} MiB",
                max / (1024 * 1024)
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("the build context could not be stored: {e}"))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("the build context could not be stored: {e}"))?;
    Ok(())
}
