//! The latest usage of every running instance, as its agent reported it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gantry_common::agent::{InstanceUsage, USAGE_SECONDS};
use gantry_common::cluster::NodeResources;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

/// A report older than this is stale: the instance stopped or its node went quiet.
const STALE: Duration = Duration::from_secs(3 * USAGE_SECONDS);

/// Where an instance belongs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Owner {
    pub instance_id: Uuid,
    pub app_id: Uuid,
    pub team: String,
    pub app: String,
    pub release: Option<i32>,
}

/// One instance's latest report.
#[derive(Debug, Clone)]
pub struct Reported {
    pub node_id: Uuid,
    pub owner: Owner,
    pub usage: InstanceUsage,
    pub at: Instant,
}

pub struct UsageBook {
    by_instance: Mutex<HashMap<Uuid, Reported>>,
    /// Marked at every report: the live node view sends its update then.
    reported: watch::Sender<()>,
}

impl Default for UsageBook {
    fn default() -> Self {
        UsageBook {
            by_instance: Mutex::default(),
            reported: watch::channel(()).0,
        }
    }
}

impl UsageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Reported>> {
        self.by_instance.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a node's report: its instances' usage replaces what the node reported before
    /// (an instance it no longer reports is not running). Instances the server does not place
    /// on that node are ignored.
    pub async fn record(
        &self,
        db: &PgPool,
        node_id: Uuid,
        report: Vec<InstanceUsage>,
    ) -> sqlx::Result<()> {
        let ids: Vec<Uuid> = report.iter().map(|u| u.instance).collect();
        let owners: Vec<Owner> = sqlx::query_as(
            "SELECT i.id AS instance_id, i.app_id, t.slug AS team, a.name AS app,
                    (SELECT s.version FROM release_sets s WHERE s.release_id = i.release_id)
                        AS release
             FROM instances i JOIN apps a ON a.id = i.app_id JOIN teams t ON t.id = i.team_id
             WHERE i.id = ANY($1) AND i.node_id = $2",
        )
        .bind(&ids)
        .bind(node_id)
        .fetch_all(db)
        .await?;
        let owners: HashMap<Uuid, Owner> = owners.into_iter().map(|o| (o.instance_id, o)).collect();
        let now = Instant::now();
        let mut book = self.lock();
        book.retain(|_, r| r.node_id != node_id);
        for usage in report {
            if let Some(owner) = owners.get(&usage.instance) {
                book.insert(
                    usage.instance,
                    Reported {
                        node_id,
                        owner: owner.clone(),
                        usage,
                        at: now,
                    },
                );
            }
        }
        drop(book);
        self.reported.send_replace(());
        Ok(())
    }

    /// Changes at each report a node makes (every [`USAGE_SECONDS`]).
    pub fn reports(&self) -> watch::Receiver<()> {
        self.reported.subscribe()
    }

    /// What each node's instances use now, added up.
    pub fn by_node(&self) -> HashMap<Uuid, NodeResources> {
        let mut nodes: HashMap<Uuid, NodeResources> = HashMap::new();
        let mut bytes: HashMap<Uuid, u64> = HashMap::new();
        for r in self.current() {
            let n = nodes.entry(r.node_id).or_default();
            n.cpu_millis += u64::from(r.usage.cpu_millis);
            *bytes.entry(r.node_id).or_default() += r.usage.memory_bytes;
        }
        for (node, b) in bytes {
            if let Some(n) = nodes.get_mut(&node) {
                n.memory_mib = b / (1024 * 1024);
            }
        }
        nodes
    }

    /// Every fresh report.
    pub fn current(&self) -> Vec<Reported> {
        let mut book = self.lock();
        book.retain(|_, r| r.at.elapsed() < STALE);
        book.values().cloned().collect()
    }
}
