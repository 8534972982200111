//! Builds from `git push`: the pushed commit's Dockerfile, built on a worker node's engine
//! through its agent, pushed to the built-in registry and released with the app's strategy.
//!
//! - [`store`]: the builds' rows.
//! - [`run`]: one build's task: its turn in the app's queue, a node, the agent's output, the
//!   release.
//! - [`pick`]: which node builds (pure).
//! - [`mask`]: build args' values kept out of the log (pure).
//! - [`context`]: the agents' download of a build's context.
//!
//! The build of a push is a task of this server, and its row in Postgres says where it is. A
//! server restart cuts the pushes off, so the rows of builds it left queued or running are
//! failed at the next start ([`store::fail_interrupted`]); nothing waits on them.

pub mod context;
pub mod mask;
pub mod pick;
pub mod run;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_common::agent::BuildOutcome;
use gantry_common::builds::BuildStatus;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::BuildLimits;

/// The sealing key of an app's build args (one JSON object).
pub const BUILD_ARGS_KEY: &str = "build-args";

/// What an agent reported of a build.
#[derive(Debug)]
pub enum FromAgent {
    Lines(Vec<String>),
    Done(BuildOutcome),
    /// The building node's agent disconnected.
    Lost,
}

/// What a build's watchers (the push waiting on it) are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Output, masked.
    Lines(Vec<String>),
    /// The end: what it ended as, why, and the release it made.
    Finished {
        status: BuildStatus,
        message: Option<String>,
        release: Option<u32>,
        image: Option<String>,
    },
}

/// The builds of this server that have not ended.
pub struct Builds {
    pub limits: BuildLimits,
    /// Where contexts wait for their build (`<id>.tar`).
    contexts: PathBuf,
    /// Per app, its queue: a fair lock, taken by its builds in the order they asked.
    queues: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    active: Mutex<HashMap<Uuid, Active>>,
}

struct Active {
    /// The node building it, once it runs.
    node: Option<Uuid>,
    cancel: CancellationToken,
    from_agent: mpsc::UnboundedSender<FromAgent>,
}

/// The receiving ends a build's task holds.
pub struct Handles {
    pub cancel: CancellationToken,
    pub from_agent: mpsc::UnboundedReceiver<FromAgent>,
    pub progress: broadcast::Sender<Progress>,
}

impl Builds {
    pub fn new(limits: BuildLimits, contexts: PathBuf) -> Self {
        Self {
            limits,
            contexts,
            queues: Mutex::default(),
            active: Mutex::default(),
        }
    }

    /// Where build `id`'s context is kept until it ends.
    pub fn context_path(&self, id: Uuid) -> PathBuf {
        self.contexts.join(format!("{id}.tar"))
    }

    pub fn contexts_dir(&self) -> &Path {
        &self.contexts
    }

    /// Registers a new build; its task gets the handles, its watchers subscribe to `progress`.
    fn register(&self, id: Uuid) -> Handles {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        lock(&self.active).insert(
            id,
            Active {
                node: None,
                cancel: cancel.clone(),
                from_agent: tx,
            },
        );
        Handles {
            cancel,
            from_agent: rx,
            progress: broadcast::channel(1024).0,
        }
    }

    fn forget(&self, id: Uuid) {
        lock(&self.active).remove(&id);
    }

    /// The app's queue.
    fn queue(&self, app_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut queues = lock(&self.queues);
        // Queues of apps with nothing queued are dropped as new ones come.
        queues.retain(|_, q| Arc::strong_count(q) > 1);
        queues.entry(app_id).or_default().clone()
    }

    fn assign(&self, id: Uuid, node: Uuid) {
        if let Some(active) = lock(&self.active).get_mut(&id) {
            active.node = Some(node);
        }
    }

    /// How many builds each node runs now.
    fn building(&self) -> HashMap<Uuid, usize> {
        let mut counts = HashMap::new();
        for node in lock(&self.active).values().filter_map(|a| a.node) {
            *counts.entry(node).or_default() += 1;
        }
        counts
    }

    /// An agent's report of a build: taken only from the node the build runs on.
    pub fn from_agent(&self, node: Uuid, build: Uuid, report: FromAgent) {
        let active = lock(&self.active);
        match active.get(&build) {
            Some(a) if a.node == Some(node) => {
                let _ = a.from_agent.send(report);
            }
            _ => {
                tracing::debug!(build.id = %build, "ignored a report of a build that is not running on node {node}")
            }
        }
    }

    /// A node's agent disconnected: its builds fail.
    pub fn node_lost(&self, node: Uuid) {
        for a in lock(&self.active).values() {
            if a.node == Some(node) {
                let _ = a.from_agent.send(FromAgent::Lost);
            }
        }
    }

    /// Asks a build to stop; false when it is not active in this server.
    pub fn cancel(&self, build: Uuid) -> bool {
        match lock(&self.active).get(&build) {
            Some(a) => {
                a.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
