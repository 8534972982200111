//! `/api/v1/nodes`: the embedded cluster's worker nodes and the tokens that let them join, for
//! platform admins, also live (`/api/v1/nodes/stream`). Every change is in the platform audit
//! log (`GET /api/v1/audit`).

pub mod join_tokens;
pub mod list;
pub mod maintenance;
pub mod remove;
pub mod stream;

use std::collections::BTreeMap;

use gantry_common::cluster::{Node, NodeResources, NodeStatus};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cluster::EMBEDDED_CLUSTER;
use crate::error::{not_found, ApiResult};
use crate::state::App;

#[derive(sqlx::FromRow)]
pub struct NodeRow {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    pub labels: sqlx::types::Json<BTreeMap<String, String>>,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub agent_version: String,
    pub down: bool,
    pub cordoned: bool,
    pub draining: bool,
    pub removing: bool,
    pub last_seen_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub allocated_cpu: i64,
    pub allocated_memory: i64,
    pub instances: i64,
}

/// Nodes with what their running instances hold. `$1` is the cluster; `$2` an optional node id.
pub const NODE_QUERY: &str = "
    SELECT n.id, n.name, n.address, n.labels, n.cpu_millis, n.memory_mib, n.agent_version,
           n.down, n.cordoned, n.draining, n.removing, n.last_seen_at, n.created_at,
           COALESCE(SUM(i.cpu_millis), 0)::bigint AS allocated_cpu,
           COALESCE(SUM(i.memory_mib), 0)::bigint AS allocated_memory,
           COUNT(i.id) AS instances
    FROM nodes n LEFT JOIN instances i ON i.node_id = n.id AND i.desired = 'run'
    WHERE n.cluster_id = $1 AND ($2::uuid IS NULL OR n.id = $2)
    GROUP BY n.id ORDER BY n.name";

impl NodeRow {
    /// `agents_may_be_remote`: the server listens beyond loopback, so nodes on other machines
    /// can join.
    /// `used`: what the node's instances use now (from [`UsageBook::by_node`]).
    ///
    /// [`UsageBook::by_node`]: crate::metrics::usage::UsageBook::by_node
    pub fn to_api(&self, agents_may_be_remote: bool, used: Option<NodeResources>) -> Node {
        let warnings = warnings(&self.address, agents_may_be_remote);
        Node {
            id: self.id,
            name: self.name.clone(),
            address: self.address.clone(),
            labels: self.labels.0.clone(),
            status: NodeStatus::from_flags(self.down, self.cordoned, self.draining, self.removing),
            capacity: NodeResources {
                cpu_millis: self.cpu_millis.max(0) as u64,
                memory_mib: self.memory_mib.max(0) as u64,
            },
            allocated: NodeResources {
                cpu_millis: self.allocated_cpu.max(0) as u64,
                memory_mib: self.allocated_memory.max(0) as u64,
            },
            used,
            instances: self.instances.max(0) as u32,
            agent_version: self.agent_version.clone(),
            warnings,
            last_seen_at: self.last_seen_at,
            created_at: self.created_at,
        }
    }
}

/// What an operator should fix about a node: a loopback address is fine while the server (and
/// so every agent) is on one machine, but a node elsewhere registering one cannot be reached by
/// the router.
fn warnings(address: &str, agents_may_be_remote: bool) -> Vec<String> {
    let loopback = address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if loopback && agents_may_be_remote {
        vec![format!(
            "registered the loopback address {address}, but this server is reachable from other machines: if the node runs elsewhere, the router cannot reach its instances; start its agent with --address <an address the server can reach>"
        )]
    } else {
        Vec::new()
    }
}

/// A node by id or by name (people type names; scripts keep ids).
pub async fn find(db: &mut PgConnection, id_or_name: &str) -> ApiResult<Uuid> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM nodes WHERE cluster_id = $1 AND (id::text = $2 OR name = $2)",
    )
    .bind(EMBEDDED_CLUSTER)
    .bind(id_or_name)
    .fetch_optional(db)
    .await?;
    id.ok_or_else(|| not_found(&format!("node {id_or_name:?}")))
}

pub async fn fetch(db: &mut PgConnection, state: &App, id: Uuid) -> ApiResult<Node> {
    let row: NodeRow = sqlx::query_as(NODE_QUERY)
        .bind(EMBEDDED_CLUSTER)
        .bind(Some(id))
        .fetch_one(db)
        .await?;
    let used = state.metrics.usage.by_node().remove(&id);
    Ok(row.to_api(state.agents_may_be_remote(), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_node_is_flagged_only_when_agents_may_be_elsewhere() {
        assert_eq!(warnings("127.0.0.1", false), Vec::<String>::new());
        assert_eq!(warnings("10.0.0.7", true), Vec::<String>::new());
        for loopback in ["127.0.0.1", "::1"] {
            let flagged = warnings(loopback, true);
            assert_eq!(flagged.len(), 1, "{loopback}");
            assert!(flagged[0].contains("--address"), "{flagged:?}");
        }
    }
}
