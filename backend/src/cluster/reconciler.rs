//! The reconciler: level-triggered, idempotent, run on every kick and every [`REQUEUE`].
//!
//! One pass, in one transaction under an advisory lock (so two servers never plan at once):
//! 1. nodes silent for longer than the node timeout are marked down and their instances lost;
//! 2. each release set is planned (`reconcile::plan_app`): instances to add and to take out;
//! 3. an instance taken out that the router may be sending requests to leaves the route first
//!    (`drain`); it is told to stop (SIGTERM, its stop grace, SIGKILL) once the router routes a
//!    table without it and its requests in flight have finished — or once its stop grace has
//!    passed, whatever is still in flight;
//! 4. new and still-pending instances are placed by the scheduler (`scheduler::place`);
//! 5. removed sets whose instances are all gone are forgotten;
//! 6. after commit each connected node whose desired set changed is sent the whole set with a
//!    new generation.
//!
//! A crash between any two steps is harmless: nothing outside the transaction happened yet, and
//! pushing desired sets is itself level-based.

use crate::logs::events::Event;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gantry_common::agent::{DesiredInstance, Env};
use gantry_common::cluster::{InstanceState, NodeStatus};
use gantry_orchestrator::reconcile::{plan_app, InstanceView};
use gantry_orchestrator::scheduler::{self, Decision, Resources};
use sqlx::{PgConnection, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{EmbeddedCluster, EMBEDDED_CLUSTER};

/// The periodic requeue: what makes the loop converge after a missed kick.
pub const REQUEUE: Duration = Duration::from_secs(2);
/// Held for a whole pass, so two servers never plan at once (tests take it to hold the
/// reconciler still).
pub const ADVISORY_LOCK: i64 = 4_242_002;

pub async fn run_forever(cluster: Arc<EmbeddedCluster>) {
    loop {
        if let Err(e) = pass(&cluster).await {
            tracing::warn!("reconcile pass failed (retrying in {REQUEUE:?}): {e:#}");
        }
        cluster.woken_or(REQUEUE).await;
    }
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: Uuid,
    labels: sqlx::types::Json<BTreeMap<String, String>>,
    cpu_millis: i64,
    memory_mib: i64,
    down: bool,
    cordoned: bool,
    draining: bool,
    removing: bool,
}

impl NodeRow {
    fn status(&self) -> NodeStatus {
        NodeStatus::from_flags(self.down, self.cordoned, self.draining, self.removing)
    }
}

#[derive(sqlx::FromRow)]
struct SetRow {
    release_id: Uuid,
    app_id: Uuid,
    team_id: Uuid,
    replicas: i32,
    removed: bool,
    image: String,
    port: Option<i32>,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    app_id: Uuid,
    release_id: Option<Uuid>,
    node_id: Option<Uuid>,
    desired: String,
    state: String,
    reason: Option<String>,
    cpu_millis: i32,
    memory_mib: i32,
    drain_started_at: Option<OffsetDateTime>,
    stop_grace_seconds: Option<i32>,
}

/// One reconcile pass.
///
/// # Guarantees
/// Idempotent: a second pass with no change in between writes nothing and sends nothing.
pub async fn pass(cluster: &EmbeddedCluster) -> anyhow::Result<()> {
    cluster
        .passes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tx = cluster.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut changed = false;
    let mut events = Vec::new();
    if cluster.started_at.elapsed() >= cluster.node_timeout {
        let (down, lost) = mark_down(&mut tx, cluster.node_timeout).await?;
        changed |= down;
        events = lost;
    }
    let (wrote, drained) = plan_and_place(&mut tx, cluster).await?;
    changed |= wrote;
    let forgotten = sqlx::query(
        "DELETE FROM release_sets s
         WHERE s.cluster_id = $1 AND s.removed
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.release_id = s.release_id)",
    )
    .bind(EMBEDDED_CLUSTER)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    changed |= forgotten > 0;
    let removed = finish_removals(&mut tx).await?;
    tx.commit()
        .await
        .context("failed to commit the reconcile pass")?;
    crate::logs::events::record(&cluster.db, &cluster.log_hub, events).await;
    for node in removed {
        cluster.hub.close(node, super::REMOVED);
    }
    if changed {
        let seq = cluster.changed();
        cluster.started_draining(&drained, seq);
    }
    push_desired(cluster).await
}

/// Deletes the nodes being removed that have no instance left (drained and stopped); returns
/// them, for their agents to be told.
async fn finish_removals(tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<Vec<Uuid>> {
    let removed: Vec<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM nodes n
         WHERE n.cluster_id = $1 AND n.removing
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.node_id = n.id)
         RETURNING id, name",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut **tx)
    .await?;
    for (id, name) in &removed {
        crate::audit::record_platform(
            tx,
            crate::audit::PlatformEvent {
                action: "node.removed",
                target: format!("node:{name}"),
                details: serde_json::json!({"node_id": id}),
                actor: crate::audit::Actor {
                    user_id: None,
                    token_id: None,
                    label: "gantry".into(),
                },
            },
        )
        .await?;
        tracing::info!(node.id = %id, "node {name} ({id}) is empty and removed");
    }
    Ok(removed.into_iter().map(|(id, _)| id).collect())
}

/// Returns whether a node was marked down, and the events of the instances lost with it.
async fn mark_down(
    tx: &mut Transaction<'_, Postgres>,
    timeout: Duration,
) -> anyhow::Result<(bool, Vec<Event>)> {
    let down: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE nodes SET down = true
         WHERE cluster_id = $1 AND NOT down AND last_seen_at < now() - make_interval(secs => $2)
         RETURNING id, name",
    )
    .bind(EMBEDDED_CLUSTER)
    .bind(timeout.as_secs_f64())
    .fetch_all(&mut **tx)
    .await?;
    let mut events = Vec::new();
    for (id, name) in &down {
        let reason = format!(
            "node {name} is down (no heartbeat for {}s)",
            timeout.as_secs()
        );
        let lost: Vec<(Uuid, Uuid, Uuid, Option<i32>)> = sqlx::query_as(
            "UPDATE instances i SET desired = 'stop', state = 'lost', reason = $2,
                 updated_at = now()
             WHERE node_id = $1 AND desired IN ('run', 'drain')
             RETURNING i.id, i.team_id, i.app_id,
                 (SELECT s.version FROM release_sets s WHERE s.release_id = i.release_id)",
        )
        .bind(id)
        .bind(&reason)
        .fetch_all(&mut **tx)
        .await?;
        tracing::warn!(node.id = %id, "node {name} ({id}) is down; {} instances lost and being replaced", lost.len());
        events.extend(
            lost.into_iter()
                .map(|(instance, team_id, app_id, release)| Event {
                    team_id,
                    app_id,
                    release,
                    instance: Some(instance),
                    text: format!(
                        "instance {instance} lost: {reason}; a replacement is placed elsewhere"
                    ),
                }),
        );
    }
    Ok((!down.is_empty(), events))
}

/// Plans every set, takes instances out, advances drains and places instances. Returns whether
/// it wrote anything, and the instances it took out of the route.
async fn plan_and_place(
    tx: &mut PgConnection,
    cluster: &EmbeddedCluster,
) -> anyhow::Result<(bool, Vec<Uuid>)> {
    let nodes: Vec<NodeRow> = sqlx::query_as(
        "SELECT id, labels, cpu_millis, memory_mib, down, cordoned, draining, removing
         FROM nodes WHERE cluster_id = $1 ORDER BY name",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;
    let sets: Vec<SetRow> = sqlx::query_as(
        "SELECT release_id, app_id, team_id, replicas, removed, image, port, cpu_millis,
                memory_mib, health_check_path
         FROM release_sets WHERE cluster_id = $1 ORDER BY created_at, release_id",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;
    let instances: Vec<InstanceRow> = sqlx::query_as(
        "SELECT i.id, i.app_id, i.release_id, i.node_id, i.desired, i.state, i.reason,
                i.cpu_millis, i.memory_mib, i.drain_started_at, s.stop_grace_seconds
         FROM instances i
         JOIN apps a ON a.id = i.app_id
         LEFT JOIN release_sets s ON s.release_id = i.release_id
         WHERE a.cluster_id = $1 AND i.desired IN ('run', 'drain')
         ORDER BY i.created_at, i.id",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;
    let mut wrote = false;

    let status: HashMap<Uuid, NodeStatus> = nodes.iter().map(|n| (n.id, n.status())).collect();
    let (running, draining): (Vec<&InstanceRow>, Vec<&InstanceRow>) =
        instances.iter().partition(|i| i.desired == "run");
    let mut by_set: HashMap<Uuid, Vec<&InstanceRow>> = HashMap::new();
    let mut orphans = Vec::new();
    for i in &running {
        match i.release_id {
            Some(set) => by_set.entry(set).or_default().push(i),
            None => orphans.push(i.id),
        }
    }

    let mut take_out = Vec::new();
    let mut new_for: Vec<&SetRow> = Vec::new();
    for set in &sets {
        let mine = by_set.remove(&set.release_id).unwrap_or_default();
        let views: Vec<InstanceView> = mine
            .iter()
            .enumerate()
            .map(|(rank, i)| InstanceView {
                id: i.id,
                state: InstanceState::parse(&i.state).unwrap_or(InstanceState::Pending),
                node: i
                    .node_id
                    .map(|n| status.get(&n).copied().unwrap_or(NodeStatus::Down)),
                // A set's spec is frozen: its instances are always current.
                current: true,
                age_rank: rank as u64,
            })
            .collect();
        let replicas = if set.removed { 0 } else { set.replicas.max(0) };
        let plan = plan_app(replicas as u32, &views);
        take_out.extend(plan.stop);
        new_for.extend(std::iter::repeat_n(set, plan.create as usize));
    }
    // Instances whose set is gone (or from before releases): take them all out.
    take_out.extend(by_set.values().flatten().map(|i| i.id));
    take_out.extend(orphans);

    let leaving: HashSet<Uuid> = take_out.iter().copied().collect();
    let mut drained = Vec::new();
    for id in &take_out {
        let Some(i) = running.iter().find(|i| i.id == *id) else {
            continue;
        };
        wrote = true;
        if i.node_id.is_none() {
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else if i.state == InstanceState::Ready.as_str() {
            // The router may be sending it requests: out of the route first.
            sqlx::query(
                "UPDATE instances SET desired = 'drain', state = 'draining',
                     drain_started_at = now(), updated_at = now()
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            drained.push(*id);
        } else {
            // Never ready, so never routed: stop it at once.
            stop(tx, *id).await?;
        }
    }

    let now = OffsetDateTime::now_utc();
    for i in &draining {
        let grace = Duration::from_secs(i.stop_grace_seconds.unwrap_or(0).max(0) as u64);
        let overdue = i.drain_started_at.is_none_or(|since| now - since >= grace);
        if cluster.drained(i.id) || overdue {
            if overdue {
                tracing::warn!(instance.id = %i.id, "instance {} still had requests in flight after its stop grace ({grace:?}); stopping it anyway", i.id);
            }
            stop(tx, i.id).await?;
            cluster.forget_drain(i.id);
            wrote = true;
        }
    }

    let staying: Vec<&InstanceRow> = instances
        .iter()
        .filter(|i| !leaving.contains(&i.id))
        .collect();
    let pending: Vec<&InstanceRow> = staying
        .iter()
        .copied()
        .filter(|i| i.desired == "run" && i.node_id.is_none())
        .collect();

    let decisions = schedule(&nodes, &staying, &pending, &new_for);
    let (for_pending, for_new) = decisions.split_at(pending.len());
    for (i, decision) in pending.iter().zip(for_pending) {
        match decision {
            Decision::Placed(node) => {
                sqlx::query(
                    "UPDATE instances SET node_id = $2, state = 'creating', reason = NULL,
                         updated_at = now() WHERE id = $1",
                )
                .bind(i.id)
                .bind(Uuid::parse_str(node)?)
                .execute(&mut *tx)
                .await?;
                wrote = true;
            }
            Decision::Pending(why) => {
                let why = why.to_string();
                if i.reason.as_deref() != Some(why.as_str()) {
                    sqlx::query(
                        "UPDATE instances SET reason = $2, updated_at = now() WHERE id = $1",
                    )
                    .bind(i.id)
                    .bind(why)
                    .execute(&mut *tx)
                    .await?;
                    wrote = true;
                }
            }
        }
    }
    for (set, decision) in new_for.iter().zip(for_new) {
        let (node, state, reason) = match decision {
            Decision::Placed(node) => (Some(Uuid::parse_str(node)?), InstanceState::Creating, None),
            Decision::Pending(why) => (None, InstanceState::Pending, Some(why.to_string())),
        };
        // Only while the app, its release set and the node are still there: one deleted since
        // this pass read the sets (an app deleted, a rollout's old set removed, a node taken
        // out) failed the whole pass on a foreign key — retried, but logged as a failure. A
        // set that is gone needs no instance; an instance whose node went is placed next pass.
        sqlx::query(
            "INSERT INTO instances (team_id, app_id, release_id, node_id, image, port, cpu_millis,
                                    memory_mib, health_check_path, desired, state, reason)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'run', $10, $11
             WHERE EXISTS (SELECT 1 FROM apps WHERE id = $2)
               AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM release_sets WHERE release_id = $3))
               AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM nodes WHERE id = $4))",
        )
        .bind(set.team_id)
        .bind(set.app_id)
        .bind(set.release_id)
        .bind(node)
        .bind(&set.image)
        .bind(set.port)
        .bind(set.cpu_millis)
        .bind(set.memory_mib)
        .bind(&set.health_check_path)
        .bind(state.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        wrote = true;
    }
    Ok((wrote, drained))
}

/// Tells the instance's agent to stop it (SIGTERM, grace, SIGKILL).
async fn stop(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE instances SET desired = 'stop', state = 'stopping', updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(tx)
    .await
    .map(drop)
}

/// Runs the scheduler for the pending instances, then the new ones (in that order in the
/// result), counting every staying instance against its node.
fn schedule(
    nodes: &[NodeRow],
    staying: &[&InstanceRow],
    pending: &[&InstanceRow],
    new_for: &[&SetRow],
) -> Vec<Decision> {
    if pending.is_empty() && new_for.is_empty() {
        return Vec::new();
    }
    let mut allocated: HashMap<Uuid, Resources> = HashMap::new();
    let mut existing = Vec::new();
    for i in staying {
        let Some(node) = i.node_id else { continue };
        let a = allocated.entry(node).or_default();
        a.cpu_millis += i.cpu_millis.max(0) as u64;
        a.memory_mib += i.memory_mib.max(0) as u64;
        if i.desired == "run" {
            existing.push(scheduler::Existing {
                app: i.app_id.to_string(),
                node: node.to_string(),
            });
        }
    }
    let nodes: Vec<scheduler::Node> = nodes
        .iter()
        .map(|n| scheduler::Node {
            id: n.id.to_string(),
            status: match n.status() {
                NodeStatus::Ready => scheduler::NodeStatus::Ready,
                NodeStatus::Down => scheduler::NodeStatus::Down,
                NodeStatus::Cordoned => scheduler::NodeStatus::Cordoned,
                NodeStatus::Draining | NodeStatus::Removing => scheduler::NodeStatus::Draining,
            },
            capacity: Resources {
                cpu_millis: n.cpu_millis.max(0) as u64,
                memory_mib: n.memory_mib.max(0) as u64,
            },
            allocated: allocated.get(&n.id).copied().unwrap_or_default(),
            labels: n.labels.0.clone(),
        })
        .collect();
    let request = |app: Uuid, cpu: i32, memory: i32| scheduler::Request {
        app: app.to_string(),
        resources: Resources {
            cpu_millis: cpu.max(0) as u64,
            memory_mib: memory.max(0) as u64,
        },
        required_labels: BTreeMap::new(),
    };
    let requests: Vec<scheduler::Request> = pending
        .iter()
        .map(|i| request(i.app_id, i.cpu_millis, i.memory_mib))
        .chain(
            new_for
                .iter()
                .map(|s| request(s.app_id, s.cpu_millis, s.memory_mib)),
        )
        .collect();
    scheduler::place(&nodes, &existing, &requests)
}

#[derive(sqlx::FromRow)]
struct DesiredRow {
    node_id: Uuid,
    id: Uuid,
    app_id: Uuid,
    release_id: Option<Uuid>,
    team: String,
    app: String,
    version: Option<i32>,
    image: String,
    image_digest: Option<String>,
    port: Option<i32>,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
    env_sealed: Option<Vec<u8>>,
    ready_timeout_seconds: Option<i32>,
    stop_grace_seconds: Option<i32>,
    desired: String,
    image_source: Option<String>,
}

/// Sends each connected node its desired set if it changed since the last send.
async fn push_desired(cluster: &EmbeddedCluster) -> anyhow::Result<()> {
    let connected = cluster.hub.connected();
    if connected.is_empty() {
        return Ok(());
    }
    let rows: Vec<DesiredRow> = sqlx::query_as(
        "SELECT i.node_id, i.id, i.app_id, i.release_id, t.slug AS team, a.name AS app,
                s.version, i.image, s.image_digest, i.port, i.cpu_millis, i.memory_mib,
                i.health_check_path, s.env_sealed, s.ready_timeout_seconds,
                s.stop_grace_seconds, i.desired, r.image_source
         FROM instances i
         JOIN apps a ON a.id = i.app_id
         JOIN teams t ON t.id = i.team_id
         LEFT JOIN release_sets s ON s.release_id = i.release_id
         LEFT JOIN releases r ON r.id = i.release_id
         WHERE i.node_id = ANY($1)
         ORDER BY i.id",
    )
    .bind(&connected)
    .fetch_all(&cluster.db)
    .await?;
    // One environment per set, opened once per push.
    let mut envs: HashMap<Uuid, Env> = HashMap::new();
    let mut by_node: HashMap<Uuid, Vec<DesiredInstance>> = HashMap::new();
    let now = time::OffsetDateTime::now_utc();
    for r in rows {
        let pull_secret = (r.image_source.as_deref() == Some("registry") && r.desired == "run")
            .then(|| cluster.pull_secrets.issue(r.id, r.node_id, now));
        let env = match (r.release_id, &r.env_sealed) {
            (Some(set), Some(sealed)) => envs
                .entry(set)
                .or_insert_with(|| cluster.open_env(r.app_id, set, sealed))
                .clone(),
            _ => Env::default(),
        };
        by_node.entry(r.node_id).or_default().push(DesiredInstance {
            id: r.id,
            team: r.team,
            app: r.app,
            release: r.version.unwrap_or(0).max(0) as u32,
            image: r.image,
            image_digest: r.image_digest,
            port: r.port.and_then(|p| u16::try_from(p).ok()),
            cpu_millis: r.cpu_millis.max(0) as u32,
            memory_mib: r.memory_mib.max(0) as u32,
            health_check_path: r.health_check_path,
            env,
            ready_timeout_seconds: r.ready_timeout_seconds.unwrap_or(300).max(1) as u32,
            stop_grace_seconds: r.stop_grace_seconds.unwrap_or(10).max(0) as u32,
            pull_secret,
            stop: r.desired == "stop",
        });
    }
    for node in connected {
        let desired = by_node.remove(&node).unwrap_or_default();
        if !cluster.hub.differs(node, &desired) {
            continue;
        }
        let generation: i64 = sqlx::query_scalar(
            "UPDATE nodes SET generation = generation + 1 WHERE id = $1 RETURNING generation",
        )
        .bind(node)
        .fetch_one(&cluster.db)
        .await?;
        tracing::debug!(node.id = %node, generation, "sending node {node} {} instances", desired.len());
        cluster.hub.send_desired(node, generation as u64, desired);
    }
    Ok(())
}
