//! Gantry's own container orchestrator: where app replicas run and the node agent that runs
//! them. The server-side loop that drives it (Postgres, the agent hub) lives in the backend's
//! `cluster` module; everything it decides with is a pure function here.
//!
//! # Layout
//! - [`cluster`]: the `Cluster` trait, the seam between the control plane's controllers and
//!   wherever apps run (this orchestrator, or Kubernetes), and the router's `TrafficGate`.
//! - [`rollout`]: pure rollout plan: how many instances each release set gets next, and which
//!   release becomes active, fails or is superseded; the canary and blue-green state machines,
//!   canary analysis, and each set's share of the traffic.
//! - [`autoscale`]: pure autoscaler decision: the replicas an app's CPU use and request rate
//!   ask for (HPA's rule), with scale-down stabilisation and the min, max and quota clamps.
//! - [`scheduler`]: pure placement of instances on nodes (filter, then score), with the reason
//!   an instance cannot be placed.
//! - [`reconcile`]: pure per-app plan: how many instances to create and which to stop, for
//!   scaling, lost nodes, drains and new images (replacements first).
//! - [`agent`]: the node agent (`gantry agent`): websocket session with the server, and the
//!   converger that makes the container engine match the desired set.
//! - [`runtime`]: the `ContainerRuntime` trait, its Docker implementation (bollard) and an
//!   in-memory fake for tests.
//! - [`router`]: the HTTP reverse proxy serving `<app>.<team>.<apps-domain>` from a live route
//!   table the control plane swaps in: weighted release sets, keep-alive pools, counters.

pub mod agent;
pub mod autoscale;
pub mod cluster;
pub mod reconcile;
pub mod rollout;
pub mod router;
pub mod runtime;
pub mod scheduler;
