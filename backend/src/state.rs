//! The state every handler shares.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::cluster::Cluster;
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
    /// Seals and opens config var values.
    pub sealer: Sealer,
    /// `scheme://host[:port]` people use to reach us; cookie-authenticated writes must come from
    /// this origin (or the request's own host).
    pub public_url: String,
    /// Sessions end this long after login, however active (the idle limit is the store's).
    pub session_max_age: Duration,
    /// The embedded cluster: connected agents and the reconciler's wake-up.
    pub cluster: Cluster,
}
