//! The container engine as the agent needs it, behind one small trait.
//!
//! [`docker`] drives the real Docker Engine API (bollard); [`fake`] is an in-memory recording
//! double for the agent's unit tests. The agent never imports bollard.
//!
//! Every container Gantry creates carries the [`labels`] below, so an agent lists and touches
//! only its own node's containers and can rebuild its view after a restart.

pub mod docker;
pub mod fake;

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::stream::BoxStream;
use gantry_common::agent::{Env, PullSecret};
use gantry_common::logs::LogStream;
use std::time::Duration;

use time::OffsetDateTime;

/// Labels on every container and network Gantry creates.
pub mod labels {
    /// Present (`true`) on everything Gantry manages.
    pub const MANAGED: &str = "gantry.managed";
    pub const TEAM: &str = "gantry.team";
    pub const APP: &str = "gantry.app";
    pub const INSTANCE: &str = "gantry.instance";
    pub const NODE: &str = "gantry.node";
    /// The release version the container runs (`3`).
    pub const RELEASE: &str = "gantry.release";
}

/// What to build: [`ContainerRuntime::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    /// The image to tag: `<registry>/<team>/<app>:<tag>`.
    pub tag: String,
    /// Secret (they may be): `Debug` shows the names only.
    pub build_args: Env,
    /// Each step's container gets at most this much CPU and memory.
    pub cpu_millis: u32,
    pub memory_mib: u32,
    /// The network the steps' containers join (by name). No labels are added: the classic
    /// builder makes each label a step of its own, a container and a layer.
    pub network: String,
}

/// A build context: a tar stream.
pub type BuildContext = BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// How to run one tenant container. The runtime adds the hardening itself (no privileges, all
/// capabilities dropped but `NET_BIND_SERVICE` for ports below 1024, `no-new-privileges`, no
/// mounts), so a caller cannot forget it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique per instance: `gantry-<instance id>`.
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// The environment. Secret (config vars): its `Debug` shows the names only.
    pub env: Env,
    /// The port the app listens on inside the container; `None` publishes nothing (a worker).
    pub port: Option<u16>,
    /// The node address the port is published on, at an ephemeral host port.
    pub host_ip: String,
    /// The id of the team's own network (from [`ContainerRuntime::ensure_network`]).
    pub network: String,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub pids_limit: i64,
    /// How much of its output the engine keeps on the node's disk.
    pub log_limit: LogLimit,
}

/// The engine keeps a container's output in at most `files` files of `file_bytes` each, the
/// oldest dropped first, so no app can fill a node's disk by printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimit {
    pub file_bytes: u64,
    pub files: u32,
}

impl Default for LogLimit {
    /// 2 × 10 MiB: far more than the agent needs to catch up after a restart.
    fn default() -> Self {
        LogLimit {
            file_bytes: 10 * 1024 * 1024,
            files: 2,
        }
    }
}

/// What a container has used, as the engine counts it: totals since it started, and memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU time, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use now (without the page cache the kernel can drop), in bytes.
    pub memory_bytes: u64,
    /// Bytes received and sent over its networks.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One line of a container's output, as the engine kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: LogStream,
    /// The engine's timestamp of the line.
    pub ts: OffsetDateTime,
    /// Without its line ending; invalid UTF-8 replaced.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created (or being restarted by us) but not running.
    Created,
    Running,
    /// Exited with this code (or was killed: 137 for SIGKILL, as Docker reports it).
    Exited {
        code: i64,
    },
    /// Paused, dead, removing: states Gantry does not create itself.
    Other,
}

/// One container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
    /// The host port the container's app port is published on, while it runs.
    pub host_port: Option<u16>,
    pub started_at: Option<OffsetDateTime>,
    /// The id (`sha256:…`) of the image it was created from.
    pub image_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not on the node and could not be pulled; the engine's message.
    #[error("{0}")]
    ImagePull(String),
    /// Anything else the engine refused or failed at; the engine's message.
    #[error("{0}")]
    Engine(String),
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// The container engine of one node.
///
/// # Guarantees
/// Every method is safe to retry: ensuring an existing image or network does nothing, removing
/// a container that is already gone succeeds.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The node's CPU and memory, as the engine sees them.
    fn capacity(&self) -> impl Future<Output = RuntimeResult<Capacity>> + Send;

    /// Makes sure `image` is on the node, pulling it if it is not; returns its id (`sha256:…`).
    /// With a pull secret (an image of the server's registry) it always pulls, with that
    /// credential, so a copy in the engine's cache never stands in for the right to pull it.
    fn ensure_image(
        &self,
        image: &str,
        pull_secret: Option<&PullSecret>,
    ) -> impl Future<Output = RuntimeResult<String>> + Send;

    /// Makes sure the bridge network `name` exists, with these labels; returns its id.
    fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = RuntimeResult<String>> + Send;

    /// Creates and starts a container; returns its id.
    fn run(&self, spec: &ContainerSpec) -> impl Future<Output = RuntimeResult<String>> + Send;

    /// Starts an existing, stopped container again (a restart after a crash).
    fn start(&self, id: &str) -> impl Future<Output = RuntimeResult<()>> + Send;

    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes a container. May take `grace`:
    /// callers run it beside their other work.
    fn remove(&self, id: &str, grace: Duration) -> impl Future<Output = RuntimeResult<()>> + Send;

    /// Removes an image by id (or a tag: then only the tag, unless it is the image's last) unless
    /// a container (any, ours or not) uses it; true when it
    /// is gone (removed now or before), false when it is in use.
    fn remove_image(&self, id: &str) -> impl Future<Output = RuntimeResult<bool>> + Send;

    /// One container as the engine shows it now; `None` when it is gone.
    fn inspect(
        &self,
        id: &str,
    ) -> impl Future<Output = RuntimeResult<Option<ContainerInfo>>> + Send;

    /// A container's stdout and stderr from `since` (Unix seconds): what the engine kept, then
    /// new lines as they are written, until the container stops (or is gone).
    fn follow_output(&self, id: &str, since: i64) -> BoxStream<'static, RuntimeResult<OutputLine>>;

    /// What a running container has used so far; `None` when it is gone or not running.
    fn usage(&self, id: &str) -> impl Future<Output = RuntimeResult<Option<Usage>>> + Send;

    /// All containers, running or not, that carry the label `key=value`.
    fn list(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = RuntimeResult<Vec<ContainerInfo>>> + Send;

    /// The tags (`<repo>:<tag>`) the engine holds of repository `repo`.
    fn tags_of(&self, repo: &str) -> impl Future<Output = RuntimeResult<Vec<String>>> + Send;

    /// Builds `spec.tag` from a tar context: the output lines as the engine writes them; an
    /// error item is the build's failure (and the last item). Dropping the stream cancels the
    /// build (the engine stops it when its client goes).
    fn build(
        &self,
        spec: BuildSpec,
        context: BuildContext,
    ) -> BoxStream<'static, RuntimeResult<String>>;

    /// Pushes `image` to its registry with `user` and `secret`: the lines worth showing
    /// (a layer pushed, the digest), an error item on failure. Dropping the stream cancels it.
    fn push(
        &self,
        image: &str,
        user: &str,
        secret: &PullSecret,
    ) -> BoxStream<'static, RuntimeResult<String>>;
}
