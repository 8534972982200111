//! The `Cluster` seam: what the control plane asks of wherever apps run.
//!
//! The backend's controllers decide *what* should run — which releases, how many instances of
//! each, in which order (rollouts, later the autoscaler) — once, for every kind of cluster. A
//! `Cluster` makes it so and reports back. Gantry's embedded orchestrator (nodes, agents,
//! Docker) implements it in the backend's `cluster` module; a Kubernetes implementation maps a
//! release set to a Deployment and a Service, [`Cluster::apply`] to creating or scaling it, and
//! [`Cluster::endpoints`] to the Service's ready endpoints.
//!
//! Everything here is level-based: `apply` and `remove` state a wish and return once it is
//! recorded; the cluster converges in the background and [`Cluster::changes`] says when there
//! is something new to read.

use std::net::SocketAddr;

use async_trait::async_trait;
use gantry_common::agent::Env;
use gantry_common::cluster::Instance;
use tokio::sync::watch;
use uuid::Uuid;

/// One release of an app as a cluster runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSet {
    pub team_id: Uuid,
    pub team: String,
    pub app_id: Uuid,
    pub app: String,
    pub release_id: Uuid,
    pub version: u32,
    /// Frozen with the release: a set never changes what it runs.
    pub spec: RunSpec,
    /// Follow the app's settings: a later `apply` may change them.
    pub settings: SetSettings,
}

/// What every instance of a release runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub image: String,
    /// The image id (`sha256:…`) the release runs, once known.
    pub image_digest: Option<String>,
    /// `None` for a worker: no port published, no HTTP probe, not routed.
    pub port: Option<u16>,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub health_check_path: String,
    /// Config vars plus `PORT`, `GANTRY_APP` and `GANTRY_RELEASE`. Secret.
    pub env: Env,
}

/// How a set's instances are started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSettings {
    /// Between SIGTERM and SIGKILL; also how long an instance taken out of the route waits for
    /// its requests in flight at most.
    pub stop_grace_seconds: u32,
    /// An instance not ready this long after it started is replaced.
    pub ready_timeout_seconds: u32,
}

/// A release set as the cluster sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetStatus {
    pub app_id: Uuid,
    pub release_id: Uuid,
    pub version: u32,
    /// Instances asked for by the last `apply` (0 once removed).
    pub replicas: u32,
    pub settings: SetSettings,
    /// `remove` was called: its instances are leaving.
    pub removed: bool,
    /// Instances that serve: ready, and routed (not being taken out).
    pub ready: u32,
    /// An instance that crash-loops or whose image cannot be pulled: `"crash_loop: …"`.
    pub failing: Option<String>,
    /// Why an instance is not ready yet (no node fits it, its health check fails…).
    pub waiting: Option<String>,
    /// The image id its instances reported.
    pub image_digest: Option<String>,
}

/// Every app's routable endpoints, as of one version of the cluster's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Give it back to [`Cluster::routed`] once the router routes exactly these.
    pub version: u64,
    pub apps: Vec<AppEndpoints>,
}

/// An app's ready endpoints, by release set, for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEndpoints {
    pub app_id: Uuid,
    pub sets: Vec<SetEndpoints>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetEndpoints {
    pub release_id: Uuid,
    pub version: u32,
    /// Ready instances and where they answer.
    pub endpoints: Vec<(Uuid, SocketAddr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The cluster (its store, its API server) could not be asked; try again.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
}

/// Where apps run. See the module docs.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Runs `replicas` instances of `set`, creating it at the first call, and updates its
    /// settings.
    ///
    /// # Guarantees
    /// Idempotent. Scaling down takes instances out of the route before stopping them.
    async fn apply(&self, set: &ReleaseSet, replicas: u32) -> Result<(), ClusterError>;

    /// Takes a release set away: its instances leave the route, finish their requests in flight
    /// and stop; then the set is forgotten.
    ///
    /// # Guarantees
    /// Idempotent; a set the cluster never saw is fine.
    async fn remove(&self, app_id: Uuid, release_id: Uuid) -> Result<(), ClusterError>;

    /// Every release set of every app on this cluster, with what serves.
    async fn sets(&self) -> Result<Vec<SetStatus>, ClusterError>;

    /// The instances of one app (all its sets), like `kubectl get pods`.
    async fn instances(&self, app_id: Uuid) -> Result<Vec<Instance>, ClusterError>;

    /// Every app's routable endpoints, by release set.
    async fn endpoints(&self) -> Result<Endpoints, ClusterError>;

    /// The router now routes the endpoints of `version` (and no older ones). A cluster that
    /// stops instances itself waits for this before stopping one it took out of the route;
    /// one whose own service routing does that (Kubernetes) ignores it.
    fn routed(&self, version: u64);

    /// Changes (its value counts them) whenever what `sets`, `instances` or `endpoints`
    /// return may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// What a cluster that stops instances itself needs to know from the router: whether an
/// instance can still get new requests, and how many it is serving. The router implements it.
pub trait TrafficGate: Send + Sync + 'static {
    fn routes_to(&self, instance: Uuid) -> bool;
    fn in_flight(&self, instance: Uuid) -> u32;
}

impl TrafficGate for crate::router::Router {
    fn routes_to(&self, instance: Uuid) -> bool {
        crate::router::Router::routes_to(self, instance)
    }

    fn in_flight(&self, instance: Uuid) -> u32 {
        crate::router::Router::in_flight(self, instance)
    }
}
