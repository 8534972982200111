//! The embedded cluster's control loop, on the server: the agents' websocket
//! ([`agent_socket`]), the connections it holds ([`hub`]), and the [`reconciler`] that turns
//! apps' desired replicas into placed instances and pushes each node its desired set.
//!
//! Decisions are the orchestrator's pure functions (`reconcile::plan_app`,
//! `scheduler::place`); this module does the I/O around them, with Postgres as the only memory
//! that matters: after a `kill -9` the next pass picks up where the last committed one ended.

pub mod agent_socket;
pub mod hub;
pub mod reconciler;

use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

/// The embedded cluster's row, created by the first migration.
pub const EMBEDDED_CLUSTER: Uuid = Uuid::from_u128(1);

pub struct Cluster {
    pub hub: hub::Hub,
    /// Wakes the reconciler early (a deploy, a scale, an agent's report).
    wake: Notify,
    /// Heartbeats older than this mark a node down.
    pub node_timeout: Duration,
    /// No node is marked down during the first `node_timeout` after start: agents need that
    /// long to reconnect to a restarted server.
    pub started_at: Instant,
}

impl Cluster {
    pub fn new(node_timeout: Duration) -> Self {
        Self {
            hub: hub::Hub::default(),
            wake: Notify::new(),
            node_timeout,
            started_at: Instant::now(),
        }
    }

    /// Asks the reconciler for a pass soon. Cheap; many kicks make one pass.
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// Waits for a kick, or `timeout` at most.
    pub async fn woken_or(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
    }
}
