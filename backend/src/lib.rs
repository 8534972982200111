//! The Gantry control plane: REST API, accounts, teams, tokens, apps; and the `gantry` binary.
//!
//! # Layout
//! - [`startup`]: `Application::build` (pool, migrations, session layer, router) and shutdown.
//! - [`config`]: typed configuration from flags and `GANTRY_*` environment.
//! - [`routes`]: one file per resource action, registered (with OpenAPI) in `routes/mod.rs`.
//! - [`auth`]: passwords, login throttle, sessions and CSRF, API tokens, the `Caller` extractor.
//! - [`authz`]: `TeamAccess`/`AppAccess`, the one gate of every team-scoped route.
//! - [`releases`]: making releases (deploys, config and settings changes, rollbacks) and reading
//!   them.
//! - [`rollouts`]: the rollout controller, above the `Cluster` seam: which release sets get how
//!   many instances, and which release becomes active, fails or is superseded; canary analysis;
//!   promote, abort, pause and resume.
//! - [`autoscaler`]: HPA-style replica counts from CPU and requests per second.
//! - [`routing`]: keeps the apps' router's table equal to the cluster's ready endpoints, with
//!   the traffic split of canary and blue-green rollouts.
//! - [`cluster`]: the embedded cluster, the default `Cluster`: the agent websocket, the hub of
//!   connected agents, and the reconciler (placement, node failure, drains, taking instances out
//!   of the route before they stop) over Postgres.
//! - [`quotas`]: team quotas: limits, usage, and the message of a refusal.
//! - [`registry`]: the built-in OCI registry at `/v2/` (`docker push`/`pull`, team-scoped).
//! - [`git`]: apps' git remotes at `/git/<team>/<app>.git` (smart HTTP through git's own
//!   `http-backend`) and the pre-receive hook that builds a push before it is accepted.
//! - [`builds`]: builds of pushes: the per-app queue, the agent that builds, the release.
//! - [`audit`]: recording who did what in a team.
//! - [`crypto`]: sealing config var values at rest.
//! - [`dashboard`]: server-side rendering of the Leptos dashboard and its embedded assets.
//! - [`error`], [`extract`]: the API's error type and extractors with readable rejections.
//! - [`embedded_pg`]: the private Postgres of `gantry up`, `gantry db` and the tests.
//! - [`cli`]: the `gantry` verbs (`server`, `up`, `agent`, `db`); [`agent`]: the agent verb and
//!   `gantry up`'s in-process local node.

pub mod agent;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod autoscaler;
pub mod builds;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod dashboard;
pub mod embedded_pg;
pub mod error;
pub mod extract;
pub mod git;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod quotas;
pub mod registry;
pub mod releases;
pub mod rollouts;
pub mod routes;
pub mod routing;
pub mod startup;
pub mod state;
pub mod telemetry;
