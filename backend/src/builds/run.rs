//! One build's task: wait for its turn in the app's queue, pick a node, order the build from
//! its agent, store and relay the output, and release the image it pushed.
//!
//! Whatever happens — a failure, a cancellation, a lost node, the time limit — the task ends
//! the build's row, tells its watchers, gives up the app's queue and removes the context, so
//! no build can leave the queue stuck.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gantry_common::agent::{BuildOrder, BuildOutcome, Env, ServerMessage};
use gantry_common::builds::{short_commit, BuildStatus};
use gantry_common::cluster::ImageRef;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::pick::{pick, Candidate};
use super::store::{self, BuildRow, NewBuild};
use super::{mask, FromAgent, Handles, Progress};
use crate::audit::Actor;
use crate::authz::TeamRow;
use crate::error::ApiResult;
use crate::logs::events;
use crate::registry::images::registry_host;
use crate::releases::deploy::{deploy, Via};
use crate::state::AppState;

/// How often a build waiting for a node looks again.
const NODE_POLL: Duration = Duration::from_millis(250);
/// How long a cancelled build's agent has to confirm before the build is ended anyway.
const CANCEL_PATIENCE: Duration = Duration::from_secs(15);
/// Beyond the build's own time limit (which the agent enforces), how long the server waits.
const TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// A build to make of a push.
pub struct Start {
    pub team: TeamRow,
    pub app_id: Uuid,
    pub app_name: String,
    pub actor: Actor,
    pub commit: String,
    /// Where the push found the branch (zeros for a new branch).
    pub old: String,
    pub branch: String,
    pub dockerfile: String,
    /// Secret: they reach the engine, never a log.
    pub build_args: BTreeMap<String, String>,
    /// The received context (a tar), moved to the build's own place once it has a row.
    pub upload: PathBuf,
}

/// Makes the build's row (queued) and starts its task; its watchers' receiver comes back.
pub async fn start(
    state: &AppState,
    start: Start,
) -> ApiResult<(BuildRow, broadcast::Receiver<Progress>)> {
    let mut tx = state.db.begin().await?;
    let row = store::insert(
        &mut tx,
        NewBuild {
            team_id: start.team.id,
            app_id: start.app_id,
            commit: &start.commit,
            branch: &start.branch,
            dockerfile: &start.dockerfile,
            actor: &start.actor,
        },
    )
    .await?;
    tx.commit().await?;
    let handles = state.builds.register(row.id);
    let watcher = handles.progress.subscribe();
    tokio::spawn(run(state.clone(), row.clone(), start, handles));
    Ok((row, watcher))
}

/// How a build ended.
struct Ended {
    status: BuildStatus,
    message: Option<String>,
    release: Option<u32>,
}

impl Ended {
    fn failed(message: impl Into<String>) -> Self {
        Ended {
            status: BuildStatus::Failed,
            message: Some(message.into()),
            release: None,
        }
    }

    fn cancelled(message: &str) -> Self {
        Ended {
            status: BuildStatus::Cancelled,
            message: Some(message.to_owned()),
            release: None,
        }
    }
}

async fn run(state: AppState, row: BuildRow, start: Start, handles: Handles) {
    let progress = handles.progress.clone();
    let context = state.builds.context_path(row.id);
    let out = Output {
        state: &state,
        row: &row,
        secrets: mask::secrets(start.build_args.values()),
        progress: &progress,
    };
    let ended = match tokio::fs::rename(&start.upload, &context).await {
        Ok(()) => drive(&out, &start, handles).await,
        Err(e) => Ended::failed(format!("the build context could not be kept: {e}")),
    };
    let image = image_of(&state, &start);
    let summary = match ended.status {
        BuildStatus::Succeeded => format!(
            "=== build {} succeeded: released v{} ({image})",
            row.number,
            ended.release.unwrap_or_default()
        ),
        BuildStatus::Cancelled => format!("=== build {} cancelled", row.number),
        _ => format!(
            "=== build {} failed: {}",
            row.number,
            ended.message.as_deref().unwrap_or("unknown error")
        ),
    };
    out.lines(vec![summary]).await;
    let release = ended.release.map(|r| r as i32);
    if let Err(e) = store::finish(
        &state.db,
        row.id,
        ended.status,
        ended.message.as_deref(),
        release,
    )
    .await
    {
        tracing::error!(build.id = %row.id, "failed to record the end of a build: {e}");
    }
    let _ = progress.send(Progress::Finished {
        status: ended.status,
        message: ended.message,
        release: ended.release,
        image: (ended.status == BuildStatus::Succeeded).then_some(image),
    });
    state.builds.forget(row.id);
    let _ = tokio::fs::remove_file(&context).await;
    tracing::info!(build.id = %row.id, app.id = %row.app_id, "build {} ended: {}", row.number, ended.status.as_str());
}

/// `<registry>/<team>/<app>:<short commit>`.
fn image_of(state: &AppState, start: &Start) -> String {
    format!(
        "{}/{}/{}:{}",
        registry_host(state),
        start.team.slug,
        start.app_name,
        short_commit(&start.commit)
    )
}

/// Where a build's output goes: masked, into the app's log and to the push.
struct Output<'a> {
    state: &'a AppState,
    row: &'a BuildRow,
    secrets: Vec<String>,
    progress: &'a broadcast::Sender<Progress>,
}

impl Output<'_> {
    async fn lines(&self, lines: Vec<String>) {
        let lines: Vec<String> = lines.iter().map(|l| mask::mask(l, &self.secrets)).collect();
        if let Err(e) = events::record_build_lines(
            &self.state.db,
            &self.state.logs.hub,
            self.row.team_id,
            self.row.app_id,
            self.row.number,
            lines.clone(),
        )
        .await
        {
            tracing::warn!(build.id = %self.row.id, "failed to store build output: {e}");
        }
        let _ = self.progress.send(Progress::Lines(lines));
    }
}

async fn drive(out: &Output<'_>, start: &Start, handles: Handles) -> Ended {
    let Handles {
        cancel,
        mut from_agent,
        ..
    } = handles;
    let (state, row) = (out.state, out.row);
    out.lines(vec![format!(
        "=== build {} of {} ({}), queued",
        row.number,
        short_commit(&row.commit_id),
        row.branch
    )])
    .await;
    let queue = state.builds.queue(row.app_id);
    // Held to the end of the build: the app's next build waits for it.
    let _turn = tokio::select! {
        turn = queue.lock_owned() => turn,
        () = cancel.cancelled() => return Ended::cancelled("cancelled while queued"),
    };
    // Pushes of one branch queue up; one that waited behind another whose push moved the
    // branch would be refused by git after its build: it stops now instead.
    let git_ref = format!("refs/heads/{}", start.branch);
    match state.git.tip(row.app_id, &git_ref).await {
        Ok(tip) if same_tip(tip.as_deref(), &start.old) => {}
        Ok(_) => {
            return Ended::failed(format!(
                "{} moved while this build waited (another push was built first): pull, then push again",
                start.branch
            ))
        }
        Err(e) => return Ended::failed(format!("the repository could not be read: {e:#}")),
    }
    let node = match wait_for_node(out, &cancel).await {
        Ok(node) => node,
        Err(ended) => return ended,
    };
    let image = image_of(state, start);
    match store::start(&state.db, row.id, node.id, &image).await {
        Ok(true) => {}
        Ok(false) => return Ended::cancelled("cancelled while queued"),
        Err(e) => return Ended::failed(format!("the build could not start: {e}")),
    }
    state.builds.assign(row.id, node.id);
    let limits = state.builds.limits;
    let timeout = Duration::from_secs(u64::from(limits.timeout_seconds));
    let order = BuildOrder {
        build: row.id,
        context_path: super::context::path(row.id),
        dockerfile: start.dockerfile.clone(),
        build_args: Env(start.build_args.clone()),
        image: image.clone(),
        push_secret: state.registry.build_secrets.issue(
            row.id,
            node.id,
            time::OffsetDateTime::now_utc() + timeout + TIMEOUT_SLACK * 2,
        ),
        cpu_millis: limits.cpu_millis,
        memory_mib: limits.memory_mib,
        timeout_seconds: limits.timeout_seconds,
    };
    out.lines(vec![format!(
        "=== building {} on node {} (CPU {} m, memory {} MiB, at most {} s)",
        start.dockerfile, node.name, limits.cpu_millis, limits.memory_mib, limits.timeout_seconds
    )])
    .await;
    if !state
        .embedded
        .hub
        .send(node.id, ServerMessage::Build { order })
    {
        return Ended::failed(format!("node {} could not be reached", node.name));
    }
    let deadline = tokio::time::Instant::now() + timeout + TIMEOUT_SLACK;
    tracing::info!(build.id = %row.id, app.id = %row.app_id, "build {} ordered from node {}", row.number, node.name);
    let outcome = loop {
        tokio::select! {
            report = from_agent.recv() => match report {
                Some(FromAgent::Lines(lines)) => out.lines(lines).await,
                Some(FromAgent::Done(outcome)) => break outcome,
                Some(FromAgent::Lost) | None => {
                    return Ended::failed(format!("node {} disconnected during the build", node.name));
                }
            },
            () = cancel.cancelled() => {
                state.embedded.hub.send(node.id, ServerMessage::CancelBuild { build: row.id });
                confirm_cancel(out, &mut from_agent).await;
                return Ended::cancelled("cancelled");
            }
            () = tokio::time::sleep_until(deadline) => {
                state.embedded.hub.send(node.id, ServerMessage::CancelBuild { build: row.id });
                return Ended::failed(format!("the build took longer than its limit of {} s", timeout.as_secs()));
            }
        }
    };
    // The kind only: an engine's message may quote a build arg.
    let kind = match &outcome {
        BuildOutcome::Pushed { .. } => "pushed",
        BuildOutcome::Failed { .. } => "failed",
        BuildOutcome::Cancelled => "cancelled",
    };
    tracing::info!(build.id = %row.id, "build {} ended on node {}: {kind}", row.number, node.name);
    match outcome {
        BuildOutcome::Pushed { .. } => release(state, start, row, &image).await,
        BuildOutcome::Failed { reason } => Ended::failed(mask::mask(&reason, &out.secrets)),
        BuildOutcome::Cancelled => Ended::cancelled("cancelled on the node"),
    }
}

/// A node to build on. None may be connected just now (agents reconnect within seconds of a
/// server restart), so the build waits for one as long as a node may stay silent before it is
/// marked down.
async fn wait_for_node(out: &Output<'_>, cancel: &CancellationToken) -> Result<Candidate, Ended> {
    let state = out.state;
    let patience = state.embedded.node_timeout;
    let deadline = tokio::time::Instant::now() + patience;
    let mut told = false;
    loop {
        match choose_node(state).await {
            Ok(Some(node)) => return Ok(node),
            Ok(None) if tokio::time::Instant::now() >= deadline => {
                return Err(Ended::failed(format!(
                    "no node could build within {} s: builds run on a connected node that is not cordoned or draining (start a `gantry agent`)",
                    patience.as_secs()
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(Ended::failed(format!("the nodes could not be read: {e}"))),
        }
        if !told {
            out.lines(vec![format!(
                "=== waiting for a node to build on (at most {} s)",
                patience.as_secs()
            )])
            .await;
            told = true;
        }
        tokio::select! {
            () = tokio::time::sleep(NODE_POLL) => {}
            () = cancel.cancelled() => return Err(Ended::cancelled("cancelled while waiting for a node")),
        }
    }
}

/// Waits (a little) for the agent to confirm a cancellation, keeping the output it sends.
async fn confirm_cancel(
    out: &Output<'_>,
    from_agent: &mut tokio::sync::mpsc::UnboundedReceiver<FromAgent>,
) {
    let patience = tokio::time::sleep(CANCEL_PATIENCE);
    tokio::pin!(patience);
    loop {
        tokio::select! {
            report = from_agent.recv() => match report {
                Some(FromAgent::Lines(lines)) => out.lines(lines).await,
                _ => return,
            },
            () = &mut patience => return,
        }
    }
}

/// The pushed image becomes the app's next release, rolled out with its strategy.
async fn release(state: &AppState, start: &Start, row: &BuildRow, image: &str) -> Ended {
    let image = match ImageRef::parse(image) {
        Ok(image) => image,
        Err(e) => return Ended::failed(format!("the built image's name is not valid: {e}")),
    };
    let actor = Actor {
        user_id: start.actor.user_id,
        token_id: start.actor.token_id,
        label: start.actor.label.clone(),
    };
    let via = Via::Build {
        number: row.number as u32,
        commit: &row.commit_id,
    };
    match deploy(
        state,
        &start.team,
        start.app_id,
        &start.app_name,
        actor,
        &image,
        via,
    )
    .await
    {
        Ok(release) => Ended {
            status: BuildStatus::Succeeded,
            message: None,
            release: Some(release.version()),
        },
        Err(e) => Ended::failed(format!(
            "the image was built and pushed but could not be released: {}",
            e.message
        )),
    }
}

/// Whether a branch is still where a push found it (`old` all zeros: it did not exist).
fn same_tip(now: Option<&str>, old: &str) -> bool {
    match now {
        Some(tip) => tip == old,
        None => old.bytes().all(|b| b == b'0'),
    }
}

/// The node to build on, among the embedded cluster's connected nodes.
async fn choose_node(state: &AppState) -> sqlx::Result<Option<Candidate>> {
    #[derive(sqlx::FromRow)]
    struct Node {
        id: Uuid,
        name: String,
        labels: sqlx::types::Json<BTreeMap<String, String>>,
        usable: bool,
    }
    let nodes: Vec<Node> = sqlx::query_as(
        "SELECT id, name, labels, NOT (down OR cordoned OR draining OR removing) AS usable
         FROM nodes",
    )
    .fetch_all(&state.db)
    .await?;
    let building = state.builds.building();
    let candidates: Vec<Candidate> = nodes
        .into_iter()
        .map(|n| Candidate {
            available: n.usable && state.embedded.hub.is_connected(n.id),
            building: building.get(&n.id).copied().unwrap_or(0),
            id: n.id,
            name: n.name,
            labels: n.labels.0,
        })
        .collect();
    Ok(pick(&candidates).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_moved_since_the_push_is_not_built() {
        let (a, b, zero) = ("a".repeat(40), "b".repeat(40), "0".repeat(40));
        assert!(same_tip(Some(&a), &a));
        assert!(!same_tip(Some(&b), &a));
        assert!(same_tip(None, &zero));
        assert!(!same_tip(Some(&a), &zero));
        assert!(!same_tip(None, &a));
    }
}
