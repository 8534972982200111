//! The embedded cluster: Gantry's own orchestrator as a [`Cluster`], on the server side. The
//! agents' websocket ([`agent_socket`]), the connections it holds ([`hub`]), and the
//! [`reconciler`] that turns release sets into placed instances, takes instances out of the
//! route before stopping them, and pushes each node its desired set.
//!
//! Decisions are the orchestrator's pure functions (`reconcile::plan_app`, `scheduler::place`);
//! this module does the I/O around them, with Postgres as the only memory that matters: after a
//! `kill -9` the next pass picks up where the last committed one ended.
//!
//! What `Cluster::apply` asks for is kept in `release_sets` (one row per release, its spec
//! frozen, its environment sealed); instances belong to a set.

pub mod agent_socket;
pub mod hub;
pub mod reconciler;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gantry_common::agent::Env;
use gantry_common::cluster::{Instance, InstanceState};
use gantry_orchestrator::cluster::{
    AppEndpoints, Cluster, ClusterError, Endpoints, ReleaseSet, SetEndpoints, SetSettings,
    SetStatus, TrafficGate,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::registry::pull_secret::PullSecrets;

/// The embedded cluster's row, created by the first migration.
pub const EMBEDDED_CLUSTER: Uuid = Uuid::from_u128(1);

/// What the agent of a removed node is told.
pub const REMOVED: &str = "this node was removed from the cluster by an admin, and its credential no longer works. Its containers were stopped (or are left to you if it was down: docker ps --filter label=gantry.managed). To join again, delete node.json in the agent's --state-dir and start it with a new join token";

/// Deletes a node with its instance rows (their sets make the reconciler replace them
/// elsewhere). The credential goes with the row.
pub async fn delete_node(tx: &mut sqlx::PgConnection, node: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM instances WHERE node_id = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub struct EmbeddedCluster {
    pub db: PgPool,
    /// Seals and opens the sets' environments.
    sealer: Sealer,
    pub hub: hub::Hub,
    /// Wakes the reconciler early (an apply, an agent's report, a node change).
    wake: Notify,
    /// Heartbeats older than this mark a node down.
    pub node_timeout: Duration,
    /// No node is marked down during the first `node_timeout` after start: agents need that
    /// long to reconnect to a restarted server.
    pub started_at: Instant,
    /// The router: whether an instance taken out still gets requests.
    gate: Arc<dyn TrafficGate>,
    /// Counts changes of what `sets`, `instances` and `endpoints` show.
    changes: watch::Sender<u64>,
    /// The change count whose endpoints the router routes now (see [`Cluster::routed`]).
    routed: AtomicU64,
    /// Instances being taken out of the route, with the change count after which the router
    /// no longer routes them. In memory: after a restart the router's table is built afresh.
    draining: Mutex<HashMap<Uuid, u64>>,
    /// Signs the credentials agents pull the built-in registry's images with.
    pull_secrets: PullSecrets,
    /// Where events of instances and nodes reach the apps' live log viewers.
    pub log_hub: Arc<crate::logs::LogHub>,
    /// Reconcile passes since start (for `/metrics`).
    pub passes: AtomicU64,
}

impl EmbeddedCluster {
    pub fn new(
        db: PgPool,
        sealer: Sealer,
        pull_secrets: PullSecrets,
        node_timeout: Duration,
        gate: Arc<dyn TrafficGate>,
        log_hub: Arc<crate::logs::LogHub>,
    ) -> Self {
        Self {
            log_hub,
            passes: AtomicU64::new(0),
            db,
            sealer,
            pull_secrets,
            hub: hub::Hub::default(),
            wake: Notify::new(),
            node_timeout,
            started_at: Instant::now(),
            gate,
            changes: watch::channel(0).0,
            routed: AtomicU64::new(0),
            draining: Mutex::new(HashMap::new()),
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

    /// Tells the watchers of [`Cluster::changes`] (the rollout controller, the route sync) that
    /// something they read changed. Returns the new change count.
    pub fn changed(&self) -> u64 {
        let mut next = 0;
        self.changes.send_modify(|n| {
            *n += 1;
            next = *n;
        });
        next
    }

    /// Records instances just taken out of the route: the router must route the endpoints of
    /// change `seq` (or later) before they may stop.
    fn started_draining(&self, instances: &[Uuid], seq: u64) {
        let mut draining = lock(&self.draining);
        for id in instances {
            draining.insert(*id, seq);
        }
    }

    /// Whether an instance being taken out may be stopped now: the router's table no longer
    /// holds it (built from endpoints read after it was taken out) and nothing is in flight.
    fn drained(&self, instance: Uuid) -> bool {
        let since = lock(&self.draining).get(&instance).copied();
        let Some(since) = since else {
            // Taken out before this server started: wait for a table built from now on.
            let seq = self.changed();
            lock(&self.draining).insert(instance, seq);
            return false;
        };
        self.routed.load(Ordering::Acquire) >= since
            && !self.gate.routes_to(instance)
            && self.gate.in_flight(instance) == 0
    }

    fn forget_drain(&self, instance: Uuid) {
        lock(&self.draining).remove(&instance);
    }

    fn env_key(release_id: Uuid) -> String {
        format!("release-set:{release_id}")
    }

    /// Opens a set's sealed environment.
    pub(crate) fn open_env(&self, app_id: Uuid, release_id: Uuid, sealed: &[u8]) -> Env {
        match self
            .sealer
            .open(app_id, &Self::env_key(release_id), sealed)
            .ok()
            .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(&json).ok())
        {
            Some(env) => Env(env),
            None => {
                // Only a changed GANTRY_SECRET_KEY gets here; the instance runs without its
                // config rather than not at all, and the operator is told.
                tracing::error!(release.id = %release_id, "the environment of release set {release_id} cannot be opened (was GANTRY_SECRET_KEY changed?)");
                Env::default()
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable(e: sqlx::Error) -> ClusterError {
    ClusterError::Unavailable(format!("database: {e}"))
}

#[derive(sqlx::FromRow)]
struct SetRow {
    app_id: Uuid,
    release_id: Uuid,
    version: i32,
    replicas: i32,
    removed: bool,
    stop_grace_seconds: i32,
    ready_timeout_seconds: i32,
    image_digest: Option<String>,
    ready: i64,
    failing: Option<String>,
    waiting: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    state: String,
    reason: Option<String>,
    release: Option<i32>,
    image: String,
    node: Option<String>,
    address: Option<String>,
    host_port: Option<i32>,
    restarts: i32,
    last_exit_code: Option<i64>,
    started_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    app_id: Uuid,
    release_id: Uuid,
    version: i32,
    id: Uuid,
    address: String,
    host_port: i32,
}

#[async_trait]
impl Cluster for EmbeddedCluster {
    async fn apply(&self, set: &ReleaseSet, replicas: u32) -> Result<(), ClusterError> {
        let env = serde_json::to_string(&set.spec.env.0)
            .map_err(|e| ClusterError::Unavailable(format!("environment: {e}")))?;
        let sealed = self
            .sealer
            .seal(set.app_id, &Self::env_key(set.release_id), &env);
        let SetSettings {
            stop_grace_seconds,
            ready_timeout_seconds,
        } = set.settings;
        sqlx::query(
            "INSERT INTO release_sets (release_id, cluster_id, team_id, app_id, version, replicas,
                 image, image_digest, port, cpu_millis, memory_mib, health_check_path, env_sealed,
                 stop_grace_seconds, ready_timeout_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (release_id) DO UPDATE SET
                 replicas = EXCLUDED.replicas, removed = false,
                 stop_grace_seconds = EXCLUDED.stop_grace_seconds,
                 ready_timeout_seconds = EXCLUDED.ready_timeout_seconds,
                 image_digest = COALESCE(release_sets.image_digest, EXCLUDED.image_digest),
                 updated_at = now()",
        )
        .bind(set.release_id)
        .bind(EMBEDDED_CLUSTER)
        .bind(set.team_id)
        .bind(set.app_id)
        .bind(set.version as i32)
        .bind(replicas as i32)
        .bind(&set.spec.image)
        .bind(set.spec.image_digest.as_deref())
        .bind(set.spec.port.map(i32::from))
        .bind(set.spec.cpu_millis as i32)
        .bind(set.spec.memory_mib as i32)
        .bind(&set.spec.health_check_path)
        .bind(sealed)
        .bind(stop_grace_seconds as i32)
        .bind(ready_timeout_seconds as i32)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        self.changed();
        self.kick();
        Ok(())
    }

    async fn remove(&self, app_id: Uuid, release_id: Uuid) -> Result<(), ClusterError> {
        sqlx::query(
            "UPDATE release_sets SET removed = true, replicas = 0, updated_at = now()
             WHERE release_id = $1 AND app_id = $2 AND NOT removed",
        )
        .bind(release_id)
        .bind(app_id)
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        self.changed();
        self.kick();
        Ok(())
    }

    async fn sets(&self) -> Result<Vec<SetStatus>, ClusterError> {
        // `ready` counts what the router may route: wanted, reported ready, on a live node.
        let rows: Vec<SetRow> = sqlx::query_as(
            "SELECT s.app_id, s.release_id, s.version, s.replicas, s.removed,
                    s.stop_grace_seconds, s.ready_timeout_seconds, s.image_digest,
                    count(i.id) FILTER (WHERE i.desired = 'run' AND i.state = 'ready'
                                        AND NOT coalesce(n.down, true)) AS ready,
                    (array_agg(i.state || ': ' || coalesce(i.reason, 'no reason given')
                               ORDER BY i.created_at)
                        FILTER (WHERE i.desired = 'run'
                                AND i.state IN ('crash_loop', 'image_pull_error')))[1] AS failing,
                    (array_agg(coalesce(i.reason, i.state)
                               ORDER BY i.reason IS NULL, i.created_at)
                        FILTER (WHERE i.desired = 'run' AND i.state <> 'ready'))[1] AS waiting
             FROM release_sets s
             LEFT JOIN instances i ON i.release_id = s.release_id
             LEFT JOIN nodes n ON n.id = i.node_id
             WHERE s.cluster_id = $1
             GROUP BY s.release_id",
        )
        .bind(EMBEDDED_CLUSTER)
        .fetch_all(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| SetStatus {
                app_id: r.app_id,
                release_id: r.release_id,
                version: r.version.max(0) as u32,
                replicas: r.replicas.max(0) as u32,
                settings: SetSettings {
                    stop_grace_seconds: r.stop_grace_seconds.max(0) as u32,
                    ready_timeout_seconds: r.ready_timeout_seconds.max(0) as u32,
                },
                removed: r.removed,
                ready: r.ready.max(0) as u32,
                failing: r.failing,
                waiting: r.waiting,
                image_digest: r.image_digest,
            })
            .collect())
    }

    async fn instances(&self, app_id: Uuid) -> Result<Vec<Instance>, ClusterError> {
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "SELECT i.id, i.state, i.reason, s.version AS release, i.image, n.name AS node,
                    n.address, i.host_port, i.restarts, i.last_exit_code, i.started_at,
                    i.created_at
             FROM instances i
             LEFT JOIN nodes n ON n.id = i.node_id
             LEFT JOIN release_sets s ON s.release_id = i.release_id
             WHERE i.app_id = $1
             ORDER BY i.created_at, i.id",
        )
        .bind(app_id)
        .fetch_all(&self.db)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|r| Instance {
                id: r.id,
                state: InstanceState::parse(&r.state).unwrap_or(InstanceState::Pending),
                reason: r.reason,
                release: r.release.map(|v| v.max(0) as u32),
                image: r.image,
                endpoint: match (&r.address, r.host_port) {
                    (Some(address), Some(port)) => Some(format!("{address}:{port}")),
                    _ => None,
                },
                node: r.node,
                restarts: r.restarts.max(0) as u32,
                last_exit_code: r.last_exit_code,
                started_at: r.started_at,
                created_at: r.created_at,
            })
            .collect())
    }

    async fn endpoints(&self) -> Result<Endpoints, ClusterError> {
        // Read the change count first: these endpoints are at least that fresh.
        let version = *self.changes.borrow();
        let rows: Vec<EndpointRow> = sqlx::query_as(
            "SELECT s.app_id, s.release_id, s.version, i.id, n.address, i.host_port
             FROM instances i
             JOIN release_sets s ON s.release_id = i.release_id
             JOIN nodes n ON n.id = i.node_id
             WHERE s.cluster_id = $1 AND s.port IS NOT NULL AND i.desired = 'run'
               AND i.state = 'ready' AND i.host_port IS NOT NULL AND NOT n.down
             ORDER BY s.app_id, s.version, i.created_at, i.id",
        )
        .bind(EMBEDDED_CLUSTER)
        .fetch_all(&self.db)
        .await
        .map_err(unavailable)?;
        let mut apps: Vec<AppEndpoints> = Vec::new();
        for r in rows {
            let Ok(ip) = r.address.parse::<IpAddr>() else {
                continue;
            };
            let addr = SocketAddr::new(ip, r.host_port as u16);
            if apps.last().is_none_or(|a| a.app_id != r.app_id) {
                apps.push(AppEndpoints {
                    app_id: r.app_id,
                    sets: Vec::new(),
                });
            }
            let app = apps.last_mut().expect("pushed above");
            if app.sets.last().is_none_or(|s| s.release_id != r.release_id) {
                app.sets.push(SetEndpoints {
                    release_id: r.release_id,
                    version: r.version.max(0) as u32,
                    endpoints: Vec::new(),
                });
            }
            let set = app.sets.last_mut().expect("pushed above");
            set.endpoints.push((r.id, addr));
        }
        Ok(Endpoints { version, apps })
    }

    fn routed(&self, version: u64) {
        let before = self.routed.fetch_max(version, Ordering::AcqRel);
        if version > before && !lock(&self.draining).is_empty() {
            // Instances waiting to leave may go now.
            self.kick();
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
