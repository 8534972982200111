//! The agent protocol: JSON text frames over the websocket at `/api/v1/agent/connect`.
//!
//! It is level-triggered, as Kubernetes' kubelet is: on connect and on every change the server
//! sends the agent the *whole* desired set of instances for its node, numbered by a generation;
//! the agent makes its Docker engine match that set and reports the *whole* observed set back.
//! A lost message is healed by the next one, never by replaying a diff.
//!
//! Versioning: the agent's first frame is [`AgentMessage::Hello`] with [`PROTOCOL_VERSION`].
//! A server that does not speak that version answers [`ServerMessage::Refused`] with a message
//! for the operator and closes; unknown message types are refused the same way.
//!
//! Credentials travel in the upgrade request's headers, never in frames: an agent presents its
//! node credential ([`NODE_CREDENTIAL_PREFIX`]) as `Authorization: Bearer …`, and the first time
//! also a join token in [`JOIN_TOKEN_HEADER`]. Desired sets carry the apps' config vars (their
//! environment), so the link is as secret as the config: `wss://` whenever it leaves the machine.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cluster::{InstanceState, NodeResources};
use crate::logs::LogStream;

/// Bumped on any change an older peer would misread. 2: node credentials, environments,
/// releases, stop orders and image digests. 3: pull secrets for the built-in registry's images
/// (an older agent would run such an image from its engine's cache without pulling it). 4: log
/// shipping (logs, log cursors and their acknowledgements) and container usage. 5: builds
/// (orders, cancellation, their logs and outcomes).
pub const PROTOCOL_VERSION: u32 = 5;

/// The most lines an agent puts in one [`AgentMessage::Logs`] batch: the server stores a batch
/// in one transaction, so bigger batches mean fewer commits (each an fsync) while a flood drains.
pub const MAX_LOG_BATCH_LINES: usize = 2000;
/// The most bytes of line text in one batch (so its JSON, even with every byte escaped, stays
/// within the server's message cap).
pub const MAX_LOG_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// The longest line shipped, in bytes; longer lines are cut (at a character boundary).
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// A line cut to [`MAX_LOG_LINE_BYTES`] at a character boundary: the agent cuts what it
/// ships, the server what it stores (an agent is not trusted to).
pub fn cut_line(mut line: String) -> String {
    if line.len() > MAX_LOG_LINE_BYTES {
        let mut end = MAX_LOG_LINE_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// The user name that goes with a [`PullSecret`] (the secret itself says which node and instance).
pub const PULL_USER: &str = "gantry-node";

/// A pull secret starts with this.
pub const PULL_SECRET_PREFIX: &str = "gnp_";

/// A join token (`POST /api/v1/nodes/join-tokens`) starts with this.
pub const JOIN_TOKEN_PREFIX: &str = "gjt_";
/// A node's own credential starts with this: made by the agent, registered with a join token at
/// its first connection, then the only thing that lets an agent speak for that node.
pub const NODE_CREDENTIAL_PREFIX: &str = "gnc_";
/// The upgrade request header that carries a join token at a node's first connection.
pub const JOIN_TOKEN_HEADER: &str = "x-gantry-join-token";

/// How often an agent samples its containers' usage and reports it.
pub const USAGE_SECONDS: u64 = 5;

/// How often an agent heartbeats; the server's node timeout is several of these.
pub const HEARTBEAT_SECONDS: u64 = 2;

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The first frame: who this node is and what it offers.
    Hello {
        protocol: u32,
        name: String,
        /// The address instance ports are published on (and probed at).
        address: String,
        labels: BTreeMap<String, String>,
        capacity: NodeResources,
        agent_version: String,
    },
    Heartbeat,
    /// Every instance the agent knows of on its node, after applying `generation`.
    Observed {
        generation: u64,
        instances: Vec<ObservedInstance>,
    },
    /// Lines the node's containers wrote, oldest first, each numbered per instance. The server
    /// stores them, skips those it already has, and answers [`ServerMessage::LogsAck`]. Until
    /// then the agent keeps them and sends them again after a reconnect.
    Logs {
        lines: Vec<ShippedLine>,
        /// Lines the agent had to drop since its last batch (its buffer was full while the
        /// server was unreachable), per instance.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        dropped: BTreeMap<Uuid, u64>,
    },
    /// What each running instance used over the last [`USAGE_SECONDS`] (or so).
    Usage {
        instances: Vec<InstanceUsage>,
    },
    /// Lines of a build's output, in order.
    BuildLog {
        build: Uuid,
        lines: Vec<String>,
    },
    /// A build ended: the image is pushed, or why not. Sent once per order (also for a
    /// cancelled one).
    BuildDone {
        build: Uuid,
        outcome: BuildOutcome,
    },
}

/// How a build ended on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum BuildOutcome {
    /// Built and pushed: the digest of the pushed manifest (`sha256:…`).
    Pushed {
        digest: String,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

/// Everything an agent needs to build one image and push it to the server's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOrder {
    pub build: Uuid,
    /// Where the agent downloads the build context (a tar of the pushed commit), relative to the
    /// server's URL; it authenticates with its node credential.
    pub context_path: String,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    /// Passed to the engine as build args (never logged: `Debug` shows the names).
    pub build_args: Env,
    /// The image to tag and push: `<registry host>/<team>/<app>:<tag>`.
    pub image: String,
    /// What the agent pushes with (user [`BUILD_USER`]), valid for this build on this node only.
    pub push_secret: PullSecret,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    /// The whole build, push included, is cancelled after this long.
    pub timeout_seconds: u32,
}

/// The user name that goes with a build's push secret.
pub const BUILD_USER: &str = "gantry-build";
/// A build's push secret starts with this.
pub const BUILD_SECRET_PREFIX: &str = "gnb_";
/// The Docker network every build's steps run in: its own bridge, no published ports, nothing
/// of the control plane on it.
pub const BUILD_NETWORK: &str = "gantry-builds";

/// One instance's use of its node over a sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceUsage {
    pub instance: Uuid,
    /// CPU, in thousandths of a core, averaged over the interval.
    pub cpu_millis: u32,
    /// Memory in use at the end of the interval, in bytes.
    pub memory_bytes: u64,
    /// Network received and sent, in bytes per second.
    pub rx_bytes_per_second: u64,
    pub tx_bytes_per_second: u64,
}

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Registration accepted.
    Welcome { node_id: Uuid },
    /// Registration refused (old protocol, a name that belongs to another node's credential, a
    /// node removed by an admin, an unknown message); the agent should not retry until an
    /// operator acts, so the message says what to do.
    Refused { reason: String },
    /// The complete set of instances this node must run.
    Desired {
        generation: u64,
        instances: Vec<DesiredInstance>,
    },
    /// Sent after `Welcome`: the last line the server holds of each instance on this node. The
    /// agent reads its containers' logs from there, so a restarted agent neither loses nor
    /// repeats lines.
    LogCursors {
        instances: BTreeMap<Uuid, LogCursor>,
    },
    /// The lines of a `Logs` batch are stored: per instance, the last line the server holds.
    LogsAck {
        instances: BTreeMap<Uuid, LogCursor>,
    },
    /// Build an image and push it; answered by [`AgentMessage::BuildLog`]s and one
    /// [`AgentMessage::BuildDone`].
    Build { order: BuildOrder },
    /// Stop a build this node runs (it answers `BuildDone` with `Cancelled`).
    CancelBuild { build: Uuid },
}

/// The last line of an instance a side holds: its number and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
}

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedLine {
    pub instance: Uuid,
    /// Numbered from 1 per instance, without gaps but for lines dropped.
    pub seq: u64,
    /// The engine's timestamp of the line.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// `stdout` or `stderr`.
    pub stream: LogStream,
    pub line: String,
}

/// Everything an agent needs to run one instance of a release, or to stop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredInstance {
    pub id: Uuid,
    pub team: String,
    pub app: String,
    /// The release's version (`GANTRY_RELEASE=v<n>` in the environment).
    pub release: u32,
    pub image: String,
    /// When known, the image id (`sha256:…`) the release runs: an image that now resolves to
    /// another id is refused rather than run.
    pub image_digest: Option<String>,
    /// The port the app listens on inside the container; `None` for a worker (not published,
    /// not probed: ready once running).
    pub port: Option<u16>,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub health_check_path: String,
    /// The container's environment: config vars plus `PORT`, `GANTRY_APP`, `GANTRY_RELEASE`.
    pub env: Env,
    /// An instance not ready this long after it started is replaced (a startup deadline).
    pub ready_timeout_seconds: u32,
    /// Between SIGTERM and SIGKILL when it is stopped.
    pub stop_grace_seconds: u32,
    /// For an image of the server's built-in registry: the credential to pull it with. The
    /// agent always pulls such an image (by digest) before it creates a container, so an image
    /// another team's instance left in the engine never runs without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<PullSecret>,
    /// The server wants it gone: SIGTERM, at most `stop_grace_seconds`, SIGKILL, remove. Sent
    /// only once the router no longer sends it requests. The agent stops reporting it once its
    /// container is gone.
    pub stop: bool,
}

/// Environment variables of a container. Values are secrets (config vars): `Debug` shows the
/// names only, so a stray `{:?}` cannot leak them into a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Env(pub BTreeMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A registry credential for one instance on one node: it pulls only that instance's image
/// repository, only while the instance is placed on the node, and for at most two hours (the
/// server sends a fresh one with the desired set every hour). `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PullSecret(pub String);

impl fmt::Debug for PullSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PullSecret(…)")
    }
}

/// What the agent sees of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    pub id: Uuid,
    pub state: InstanceState,
    /// The engine's message for an image or start error, or the last exit's summary.
    pub reason: Option<String>,
    /// The port it is published on at the node's address.
    pub host_port: Option<u16>,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// The id (`sha256:…`) of the image its container runs.
    pub image_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let hello = AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name: "n1".into(),
            address: "127.0.0.1".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            capacity: NodeResources {
                cpu_millis: 2000,
                memory_mib: 1024,
            },
            agent_version: "0.1.0".into(),
        };
        let json = serde_json::to_value(&hello).unwrap();
        assert_eq!(json["type"], "hello");
        assert_eq!(json["protocol"], PROTOCOL_VERSION);
        let back: AgentMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, hello);

        let desired: ServerMessage =
            serde_json::from_str(r#"{"type":"desired","generation":3,"instances":[]}"#).unwrap();
        assert_eq!(
            desired,
            ServerMessage::Desired {
                generation: 3,
                instances: vec![]
            }
        );
    }

    #[test]
    fn an_unknown_message_type_is_an_error_not_a_default() {
        assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"teleport"}"#).is_err());
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"hello"}"#).is_err());
    }

    #[test]
    fn an_environment_never_shows_its_values_in_debug() {
        let env = Env(BTreeMap::from([(
            "DATABASE_URL".to_owned(),
            "postgres://u:hunter2@db/x".to_owned(),
        )]));
        let shown = format!("{env:?}");
        assert!(shown.contains("DATABASE_URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
