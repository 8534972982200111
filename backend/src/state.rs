//! The state every handler shares.

use std::sync::Arc;
use std::time::Duration;

use gantry_orchestrator::cluster::Cluster;
use gantry_orchestrator::router::Router;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::cluster::EmbeddedCluster;
use crate::crypto::Sealer;

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    /// The control plane's database: all durable state.
    pub db: PgPool,
    /// Seals and opens config var values and releases' config.
    pub sealer: Sealer,
    /// `scheme://host[:port]` people use to reach us; cookie-authenticated writes must come from
    /// this origin (or the request's own host).
    pub public_url: String,
    /// Sessions end this long after login, however active (the idle limit is the store's).
    pub session_max_age: Duration,
    /// The embedded cluster: its agents and nodes.
    pub embedded: Arc<EmbeddedCluster>,
    /// Where apps run. Every app targets the embedded cluster until Kubernetes clusters can be
    /// registered; the controllers and routes speak only this trait.
    pub cluster: Arc<dyn Cluster>,
    /// The apps' HTTP router (its own listener).
    pub router: Arc<Router>,
    /// Apps are served at `<app>.<team>.<apps_domain>`.
    pub apps_domain: String,
    /// The port the router listens on, for the apps' URLs.
    pub router_port: u16,
    /// Where the API (and the agents' websocket) listens.
    pub listen: std::net::SocketAddr,
    /// The built-in OCI registry (`/v2/`).
    pub registry: crate::registry::Registry,
    /// Wakes the rollout controller (a release was made, an app scaled).
    pub rollouts: Notify,
    /// The rollout controller's memory: canary analysis windows, what rollouts wait for.
    pub rollout_book: crate::rollouts::book::Book,
    /// The quota of teams without their own.
    pub team_quota: gantry_common::quotas::QuotaLimits,
    /// Wakes the autoscaler (a policy was set).
    pub autoscaler: Notify,
    /// Wakes the route sync (an app was created or deleted, or its port changed).
    pub routes: Notify,
    /// Apps' logs and events: retention and the live fan-out.
    pub logs: crate::logs::Logs,
    /// Open live streams per user.
    pub live: crate::live::LiveGate,
    /// Usage reports, live metric points, the control plane's counters.
    pub metrics: crate::metrics::Metrics,
    /// Apps' git remotes and the pushes in progress.
    pub git: crate::git::Git,
    /// Builds from `git push` that have not ended.
    pub builds: crate::builds::Builds,
}

impl App {
    /// The server listens beyond loopback: agents on other machines can join.
    pub fn agents_may_be_remote(&self) -> bool {
        !self.listen.ip().is_loopback()
    }

    /// Where the router serves an app.
    pub fn app_url(&self, team: &str, app: &str) -> String {
        let host = format!("{app}.{team}.{}", self.apps_domain);
        match self.router_port {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        }
    }
}
