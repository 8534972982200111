//! The reconciler: level-triggered, idempotent, run on every kick and every [`REQUEUE`].
//!
//! One pass, in one transaction under an advisory lock (so two servers never plan at once):
//! 1. nodes silent for longer than the node timeout are marked down and their instances lost;
//! 2. each deployed app is planned (`reconcile::plan_app`): instances to add and to stop;
//! 3. new and still-pending instances are placed by the scheduler (`scheduler::place`);
//! 4. the decisions are written; after commit each connected node whose desired set changed is
//!    sent the whole set with a new generation.
//!
//! A crash between any two steps is harmless: nothing outside the transaction happened yet, and
//! pushing desired sets is itself level-based.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use gantry_common::agent::DesiredInstance;
use gantry_common::cluster::{InstanceState, NodeStatus};
use gantry_orchestrator::reconcile::{plan_app, InstanceView};
use gantry_orchestrator::scheduler::{self, Decision, Resources};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::EMBEDDED_CLUSTER;
use crate::state::AppState;

/// The periodic requeue: what makes the loop converge after a missed kick.
pub const REQUEUE: Duration = Duration::from_secs(2);
const ADVISORY_LOCK: i64 = 4_242_002;

pub async fn run_forever(state: AppState) {
    loop {
        if let Err(e) = pass(&state).await {
            tracing::warn!("reconcile pass failed (retrying in {REQUEUE:?}): {e:#}");
        }
        state.cluster.woken_or(REQUEUE).await;
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
}

#[derive(sqlx::FromRow)]
struct AppSpecRow {
    id: Uuid,
    team_id: Uuid,
    image: String,
    port: i32,
    replicas: i32,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    app_id: Uuid,
    node_id: Option<Uuid>,
    state: String,
    reason: Option<String>,
    image: String,
    port: i32,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
}

impl InstanceRow {
    fn runs_spec_of(&self, app: &AppSpecRow) -> bool {
        self.image == app.image
            && self.port == app.port
            && self.cpu_millis == app.cpu_millis
            && self.memory_mib == app.memory_mib
            && self.health_check_path == app.health_check_path
    }
}

/// One reconcile pass.
///
/// # Guarantees
/// Idempotent: a second pass with no change in between writes nothing and sends nothing.
pub async fn pass(state: &AppState) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *tx)
        .await?;
    if state.cluster.started_at.elapsed() >= state.cluster.node_timeout {
        mark_down(&mut tx, state.cluster.node_timeout).await?;
    }
    plan_and_place(&mut tx).await?;
    tx.commit()
        .await
        .context("failed to commit the reconcile pass")?;
    push_desired(state).await
}

async fn mark_down(tx: &mut Transaction<'_, Postgres>, timeout: Duration) -> anyhow::Result<()> {
    let down: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE nodes SET down = true
         WHERE cluster_id = $1 AND NOT down AND last_seen_at < now() - make_interval(secs => $2)
         RETURNING id, name",
    )
    .bind(EMBEDDED_CLUSTER)
    .bind(timeout.as_secs_f64())
    .fetch_all(&mut **tx)
    .await?;
    for (id, name) in down {
        let lost = sqlx::query(
            "UPDATE instances SET desired = 'stop', state = 'lost', reason = $2, updated_at = now()
             WHERE node_id = $1 AND desired = 'run'",
        )
        .bind(id)
        .bind(format!(
            "node {name} is down (no heartbeat for {}s)",
            timeout.as_secs()
        ))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        tracing::warn!(node.id = %id, "node {name} ({id}) is down; {lost} instances lost and being replaced");
    }
    Ok(())
}

async fn plan_and_place(tx: &mut PgConnection) -> anyhow::Result<()> {
    let nodes: Vec<NodeRow> = sqlx::query_as(
        "SELECT id, labels, cpu_millis, memory_mib, down, cordoned, draining
         FROM nodes WHERE cluster_id = $1 ORDER BY name",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;
    let apps: Vec<AppSpecRow> = sqlx::query_as(
        "SELECT id, team_id, image, port, replicas, cpu_millis, memory_mib, health_check_path
         FROM apps WHERE cluster_id = $1 AND image IS NOT NULL ORDER BY created_at",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;
    let instances: Vec<InstanceRow> = sqlx::query_as(
        "SELECT i.id, i.app_id, i.node_id, i.state, i.reason, i.image, i.port, i.cpu_millis,
                i.memory_mib, i.health_check_path
         FROM instances i JOIN apps a ON a.id = i.app_id
         WHERE a.cluster_id = $1 AND i.desired = 'run' ORDER BY i.created_at, i.id",
    )
    .bind(EMBEDDED_CLUSTER)
    .fetch_all(&mut *tx)
    .await?;

    let status: HashMap<Uuid, NodeStatus> = nodes
        .iter()
        .map(|n| (n.id, NodeStatus::from_flags(n.down, n.cordoned, n.draining)))
        .collect();
    let mut by_app: HashMap<Uuid, Vec<&InstanceRow>> = HashMap::new();
    for i in &instances {
        by_app.entry(i.app_id).or_default().push(i);
    }

    let mut stops = Vec::new();
    let mut new_for: Vec<&AppSpecRow> = Vec::new();
    for app in &apps {
        let mine = by_app.remove(&app.id).unwrap_or_default();
        let views: Vec<InstanceView> = mine
            .iter()
            .enumerate()
            .map(|(rank, i)| InstanceView {
                id: i.id,
                state: InstanceState::parse(&i.state).unwrap_or(InstanceState::Pending),
                node: i
                    .node_id
                    .map(|n| status.get(&n).copied().unwrap_or(NodeStatus::Down)),
                current: i.runs_spec_of(app),
                age_rank: rank as u64,
            })
            .collect();
        let plan = plan_app(app.replicas.max(0) as u32, &views);
        stops.extend(plan.stop);
        new_for.extend(std::iter::repeat_n(app, plan.create as usize));
    }
    // Instances of apps that were undeployed (no image any more) or moved away: stop them all.
    stops.extend(by_app.values().flatten().map(|i| i.id));

    let stopping: std::collections::HashSet<Uuid> = stops.iter().copied().collect();
    let staying: Vec<&InstanceRow> = instances
        .iter()
        .filter(|i| !stopping.contains(&i.id))
        .collect();
    let pending: Vec<&InstanceRow> = staying
        .iter()
        .copied()
        .filter(|i| i.node_id.is_none())
        .collect();

    let decisions = schedule(&nodes, &staying, &pending, &new_for);
    let (for_pending, for_new) = decisions.split_at(pending.len());

    for id in &stops {
        sqlx::query(
            "WITH gone AS (DELETE FROM instances WHERE id = $1 AND node_id IS NULL RETURNING id)
             UPDATE instances SET desired = 'stop', state = 'stopping', updated_at = now()
             WHERE id = $1 AND node_id IS NOT NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
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
                }
            }
        }
    }
    for (app, decision) in new_for.iter().zip(for_new) {
        let (node, state, reason) = match decision {
            Decision::Placed(node) => (Some(Uuid::parse_str(node)?), InstanceState::Creating, None),
            Decision::Pending(why) => (None, InstanceState::Pending, Some(why.to_string())),
        };
        sqlx::query(
            "INSERT INTO instances (team_id, app_id, node_id, image, port, cpu_millis, memory_mib,
                                    health_check_path, desired, state, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'run', $9, $10)",
        )
        .bind(app.team_id)
        .bind(app.id)
        .bind(node)
        .bind(&app.image)
        .bind(app.port)
        .bind(app.cpu_millis)
        .bind(app.memory_mib)
        .bind(&app.health_check_path)
        .bind(state.as_str())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Runs the scheduler for the pending instances, then the new ones (in that order in the
/// result), counting every staying instance against its node.
fn schedule(
    nodes: &[NodeRow],
    staying: &[&InstanceRow],
    pending: &[&InstanceRow],
    new_for: &[&AppSpecRow],
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
        existing.push(scheduler::Existing {
            app: i.app_id.to_string(),
            node: node.to_string(),
        });
    }
    let nodes: Vec<scheduler::Node> = nodes
        .iter()
        .map(|n| scheduler::Node {
            id: n.id.to_string(),
            status: match NodeStatus::from_flags(n.down, n.cordoned, n.draining) {
                NodeStatus::Ready => scheduler::NodeStatus::Ready,
                NodeStatus::Down => scheduler::NodeStatus::Down,
                NodeStatus::Cordoned => scheduler::NodeStatus::Cordoned,
                NodeStatus::Draining => scheduler::NodeStatus::Draining,
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
                .map(|a| request(a.id, a.cpu_millis, a.memory_mib)),
        )
        .collect();
    scheduler::place(&nodes, &existing, &requests)
}

#[derive(sqlx::FromRow)]
struct DesiredRow {
    node_id: Uuid,
    id: Uuid,
    team: String,
    app: String,
    image: String,
    port: i32,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
}

/// Sends each connected node its desired set if it changed since the last send.
async fn push_desired(state: &AppState) -> anyhow::Result<()> {
    let connected = state.cluster.hub.connected();
    if connected.is_empty() {
        return Ok(());
    }
    let rows: Vec<DesiredRow> = sqlx::query_as(
        "SELECT i.node_id, i.id, t.slug AS team, a.name AS app, i.image, i.port, i.cpu_millis,
                i.memory_mib, i.health_check_path
         FROM instances i JOIN apps a ON a.id = i.app_id JOIN teams t ON t.id = i.team_id
         WHERE i.desired = 'run' AND i.node_id = ANY($1) ORDER BY i.id",
    )
    .bind(&connected)
    .fetch_all(&state.db)
    .await?;
    let mut by_node: HashMap<Uuid, Vec<DesiredInstance>> = HashMap::new();
    for r in rows {
        by_node.entry(r.node_id).or_default().push(DesiredInstance {
            id: r.id,
            team: r.team,
            app: r.app,
            image: r.image,
            port: r.port as u16,
            cpu_millis: r.cpu_millis as u32,
            memory_mib: r.memory_mib as u32,
            health_check_path: r.health_check_path,
        });
    }
    for node in connected {
        let desired = by_node.remove(&node).unwrap_or_default();
        if !state.cluster.hub.differs(node, &desired) {
            continue;
        }
        let generation: i64 = sqlx::query_scalar(
            "UPDATE nodes SET generation = generation + 1 WHERE id = $1 RETURNING generation",
        )
        .bind(node)
        .fetch_one(&state.db)
        .await?;
        tracing::debug!(node.id = %node, generation, "sending node {node} {} instances", desired.len());
        state
            .cluster
            .hub
            .send_desired(node, generation as u64, desired);
    }
    Ok(())
}
