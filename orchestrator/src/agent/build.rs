//! Builds the server orders on this node's engine: download the context (the pushed commit,
//! as a tar) from the server, build it in the builds' own network with the order's limits, push
//! the image to the server's registry, and report the output and the outcome.
//!
//! Each build is a task of its own; the connection only starts and cancels them. A build whose
//! server connection is lost is cancelled: the server has failed it already.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt, TryStreamExt};
use gantry_common::agent::{
    AgentMessage, BuildOrder, BuildOutcome, BUILD_NETWORK, BUILD_USER, MAX_LOG_BATCH_LINES,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::runtime::{labels, BuildContext, BuildSpec, ContainerRuntime, RuntimeResult};

/// How the agent reaches the server for a build's context.
#[derive(Clone)]
pub struct ServerLink {
    /// The server's base URL.
    pub base: String,
    /// The node credential (`gnc_…`): secret.
    pub credential: String,
    pub http: reqwest::Client,
}

/// The builds running on this node.
pub struct Builds<R> {
    runtime: Arc<R>,
    link: ServerLink,
    running: Arc<Mutex<HashMap<Uuid, tokio::task::AbortHandle>>>,
    /// Messages for the server (log lines, outcomes), sent by the connection.
    out: mpsc::Sender<AgentMessage>,
}

impl<R: ContainerRuntime> Builds<R> {
    /// The builds and the receiving end of their messages for the server.
    pub fn new(runtime: Arc<R>, link: ServerLink) -> (Self, mpsc::Receiver<AgentMessage>) {
        let (out, rx) = mpsc::channel(256);
        let builds = Builds {
            runtime,
            link,
            running: Arc::default(),
            out,
        };
        (builds, rx)
    }

    /// Starts a build (an order already running is ignored: the server sent it again).
    pub fn start(&self, order: BuildOrder) {
        let id = order.build;
        let mut running = self.running.lock().expect("builds poisoned");
        if running.contains_key(&id) {
            return;
        }
        let (runtime, link, out) = (self.runtime.clone(), self.link.clone(), self.out.clone());
        let registry = self.running.clone();
        let timeout = Duration::from_secs(u64::from(order.timeout_seconds));
        let task = tokio::spawn(async move {
            let building = tokio::time::timeout(timeout, build(&*runtime, &link, &order, &out));
            // A bug must not leave the server waiting for an outcome until the time limit.
            let outcome = match std::panic::AssertUnwindSafe(building).catch_unwind().await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => BuildOutcome::Failed {
                    reason: format!(
                        "the build took longer than its limit of {} s",
                        timeout.as_secs()
                    ),
                },
                Err(_) => BuildOutcome::Failed {
                    reason: "the agent's build task crashed (see the agent's log)".into(),
                },
            };
            // Done (and no longer cancellable) before the outcome goes out.
            registry.lock().expect("builds poisoned").remove(&id);
            let _ = out
                .send(AgentMessage::BuildDone { build: id, outcome })
                .await;
        });
        running.insert(id, task.abort_handle());
    }

    /// Stops a build and reports it cancelled; nothing when it is not running (it has ended and
    /// its outcome is on its way).
    pub fn cancel(&self, id: Uuid) {
        let Some(task) = self.running.lock().expect("builds poisoned").remove(&id) else {
            return;
        };
        // Aborting drops the engine's request, which stops the build there.
        task.abort();
        let out = self.out.clone();
        tokio::spawn(async move {
            let outcome = BuildOutcome::Cancelled;
            let _ = out
                .send(AgentMessage::BuildDone { build: id, outcome })
                .await;
        });
    }

    /// Stops every build (the server connection is lost: it has failed them).
    pub fn cancel_all(&self) {
        let ids: Vec<Uuid> = self
            .running
            .lock()
            .expect("builds poisoned")
            .keys()
            .copied()
            .collect();
        for id in ids {
            self.cancel(id);
        }
    }
}

/// One build, start to push. Its output goes to the server as it comes.
async fn build<R: ContainerRuntime>(
    runtime: &R,
    link: &ServerLink,
    order: &BuildOrder,
    out: &mpsc::Sender<AgentMessage>,
) -> BuildOutcome {
    let failed = |reason: String| BuildOutcome::Failed { reason };
    let network_labels = BTreeMap::from([(labels::MANAGED.to_owned(), "true".to_owned())]);
    if let Err(e) = runtime.ensure_network(BUILD_NETWORK, &network_labels).await {
        return failed(format!("the builds' network could not be made: {e}"));
    }
    let context = match fetch_context(link, &order.context_path).await {
        Ok(context) => {
            tracing::info!(build.id = %order.build, "build context arriving; building");
            context
        }
        Err(e) => return failed(format!("the build context could not be fetched: {e}")),
    };
    let spec = BuildSpec {
        dockerfile: order.dockerfile.clone(),
        tag: order.image.clone(),
        build_args: order.build_args.clone(),
        cpu_millis: order.cpu_millis,
        memory_mib: order.memory_mib,
        network: BUILD_NETWORK.to_owned(),
    };
    if let Err(reason) = relay(order.build, runtime.build(spec, context), out).await {
        return failed(reason);
    }
    tracing::info!(build.id = %order.build, "built {}; pushing it", order.image);
    let pushing = format!("Pushing {}", order.image);
    send_lines(order.build, vec![pushing], out).await;
    let mut digest = None;
    let mut lines = runtime.push(&order.image, BUILD_USER, &order.push_secret);
    let mut seen = Vec::new();
    while let Some(item) = lines.next().await {
        match item {
            Ok(line) => {
                digest = digest.or_else(|| digest_in(&line));
                seen.push(line);
                if seen.len() >= MAX_LOG_BATCH_LINES {
                    send_lines(order.build, std::mem::take(&mut seen), out).await;
                }
            }
            Err(e) => {
                send_lines(order.build, seen, out).await;
                return failed(format!("the image could not be pushed: {e}"));
            }
        }
    }
    send_lines(order.build, seen, out).await;
    tracing::info!(build.id = %order.build, "pushed {} ({digest:?})", order.image);
    forget_older_builds(runtime, &order.image).await;
    match digest {
        Some(digest) => BuildOutcome::Pushed { digest },
        None => failed("the registry did not say which digest it stored".into()),
    }
}

/// Untags the app's earlier builds on this node, so a node that builds keeps one image per app
/// (the newest: its layers are the next build's cache) rather than one per push. An image a
/// container runs stays (the engine keeps it for the container).
async fn forget_older_builds<R: ContainerRuntime>(runtime: &R, image: &str) {
    let Some((repo, _)) = image.rsplit_once(':') else {
        return;
    };
    let tags = match runtime.tags_of(repo).await {
        Ok(tags) => tags,
        Err(e) => {
            tracing::warn!("could not list the earlier builds of {repo}: {e}");
            return;
        }
    };
    for tag in tags.iter().filter(|t| t.as_str() != image) {
        if let Err(e) = runtime.remove_image(tag).await {
            tracing::warn!("could not untag the earlier build {tag}: {e}");
        }
    }
}

/// Forwards a build's output in batches (what is ready at once goes together); the build's
/// error when it failed.
async fn relay(
    build: Uuid,
    output: futures_util::stream::BoxStream<'static, RuntimeResult<String>>,
    out: &mpsc::Sender<AgentMessage>,
) -> Result<(), String> {
    // Fused: the batch below may find the stream ended, and the loop asks it once more.
    let mut output = output.fuse();
    while let Some(first) = output.next().await {
        let mut batch = Vec::new();
        let mut item = Some(first);
        while let Some(next) = item.take() {
            match next {
                Ok(line) => batch.push(line),
                Err(e) => {
                    send_lines(build, batch, out).await;
                    return Err(e.to_string());
                }
            }
            if batch.len() < MAX_LOG_BATCH_LINES {
                // What is ready now joins the batch; an ended stream ends the loop above.
                item = output.next().now_or_never().flatten();
            }
        }
        send_lines(build, batch, out).await;
    }
    Ok(())
}

async fn send_lines(build: Uuid, lines: Vec<String>, out: &mpsc::Sender<AgentMessage>) {
    if !lines.is_empty() {
        let _ = out.send(AgentMessage::BuildLog { build, lines }).await;
    }
}

/// The context's bytes as they arrive from the server.
async fn fetch_context(link: &ServerLink, path: &str) -> anyhow::Result<BuildContext> {
    let url = format!("{}{path}", link.base.trim_end_matches('/'));
    let response = link
        .http
        .get(&url)
        .bearer_auth(&link.credential)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("HTTP {status} {body}");
    }
    Ok(Box::pin(
        response.bytes_stream().map_err(std::io::Error::other),
    ))
}

/// `latest: digest: sha256:… size: 527` → `sha256:…`.
fn digest_in(line: &str) -> Option<String> {
    let rest = line.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's output is an `unfold` stream, which must not be polled once it has ended.
    #[tokio::test]
    async fn output_is_relayed_in_batches_until_its_stream_ends() {
        let lines = futures_util::stream::unfold(0, |n| async move {
            (n < 3).then(|| (Ok(format!("line {n}")), n + 1))
        });
        let (tx, mut rx) = mpsc::channel(8);
        let build = Uuid::from_u128(7);
        relay(build, Box::pin(lines), &tx).await.unwrap();
        let message = rx.try_recv().unwrap();
        assert_eq!(
            message,
            AgentMessage::BuildLog {
                build,
                lines: vec!["line 0".into(), "line 1".into(), "line 2".into()]
            }
        );
        assert!(rx.try_recv().is_err(), "one batch");

        let failing = futures_util::stream::iter([
            Ok("step".to_owned()),
            Err(crate::runtime::RuntimeError::Engine("boom".into())),
        ]);
        assert_eq!(
            relay(build, Box::pin(failing), &tx).await,
            Err("boom".into())
        );
        assert!(
            matches!(rx.try_recv(), Ok(AgentMessage::BuildLog { lines, .. }) if lines == ["step"])
        );
    }

    #[test]
    fn the_digest_is_read_from_the_push_summary() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in(&format!("abc123: digest: sha256:{hex} size: 527")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in("abc: Pushed"), None);
        assert_eq!(digest_in("digest: sha256:short size: 1"), None);
    }
}
