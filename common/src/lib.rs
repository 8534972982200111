//! Wire types shared by every Gantry crate and the browser.
//!
//! Nothing here depends on a server library, so the dashboard can compile it to wasm.
//!
//! # Layout
//! - [`names`]: validated names (`TeamSlug`, `AppName`, `Email`, `ConfigKey`, …). After parsing,
//!   the rest of the code cannot hold an invalid one.
//! - [`roles`]: team roles and the one permission table every crate consults.
//! - [`api`]: REST request and response bodies, shared by the server, the CLI and the dashboard.
//! - [`cluster`]: REST bodies of the embedded cluster: nodes, join tokens, deploys, scaling,
//!   instances and their states, and the checked `ImageRef`.
//! - [`agent`]: the versioned agent protocol (server ↔ node agent) over a websocket.
//! - [`logs`]: log lines and platform events, their history pages and live frames.
//! - [`metrics`]: apps' metric points, their series and live frames.
//! - [`quotas`]: team quotas: limits, usage and what fits.
//! - [`releases`]: releases, their statuses, rollout strategies and progress.
//! - [`builds`]: builds from `git push`, their settings and checked names (branch, Dockerfile path).
//! - [`autoscaling`]: an app's autoscaling policy and the autoscaler's decisions.
//! - [`routes`]: the router's view of an app (release sets, weights, endpoints, counters).
//! - [`error`]: the single error body every API error uses.

pub mod agent;
pub mod api;
pub mod autoscaling;
pub mod builds;
pub mod cluster;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod quotas;
pub mod registry;
pub mod releases;
pub mod roles;
pub mod routes;

pub use error::{ErrorBody, ErrorDetail};
pub use names::{AppName, ConfigKey, Email, Label, NameError, NodeName, Password, TeamSlug};
pub use roles::{Permission, Role};
