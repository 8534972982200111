//! The node agent (`gantry agent`): registers its node with the server over a websocket, makes
//! the local container engine match the desired set the server sends, and reports back.
//!
//! Two tasks share two `watch` channels:
//! - the **connection** ([`connection`]) connects with backoff, says hello, heartbeats, forwards
//!   each desired set to the converger and each changed observation to the server;
//! - the **converger** ([`converge`]) runs a pass on every new desired set and every second.
//!
//! They are independent on purpose: when the server is unreachable the converger keeps the
//! containers running (and restarting crashed ones) with the last desired set it had.

pub mod build;
pub mod connection;
pub mod converge;
pub mod identity;
pub mod images;
pub mod logs;
pub mod plan;
pub mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gantry_common::agent::{DesiredInstance, ObservedInstance};
use tokio::sync::watch;

use crate::runtime::{ContainerInfo, ContainerRuntime, LogLimit};

/// How often the converger runs a pass without being asked (for crash restarts and probes).
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How often instances that are starting up are probed between passes.
const SETTLING_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct AgentConfig {
    /// The server's base URL, e.g. `https://gantry.example.com`.
    pub server: String,
    /// A join token from `POST /api/v1/nodes/join-tokens`: needed only until the node is
    /// registered (its first connection).
    pub join_token: Option<String>,
    pub name: String,
    /// Where the node's identity (name and credential) is kept.
    pub state_dir: PathBuf,
    /// The address instance ports are published on and probed at.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// The most bytes of log lines kept for the server while it is unreachable.
    pub log_buffer_bytes: usize,
    /// How much output the engine keeps of each container on the node's disk.
    pub container_logs: LogLimit,
}

/// The latest desired set, tagged with its generation.
pub type Desired = Option<(u64, Vec<DesiredInstance>)>;
/// The latest observation, tagged with the generation it applied.
pub type Observed = Option<(u64, Vec<ObservedInstance>)>;

impl std::fmt::Debug for AgentConfig {
    // The join token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("join_token", &self.join_token.as_ref().map(|_| "***"))
            .field("name", &self.name)
            .field("state_dir", &self.state_dir)
            .field("address", &self.address)
            .field("labels", &self.labels)
            .field("log_buffer_bytes", &self.log_buffer_bytes)
            .field("container_logs", &self.container_logs)
            .finish()
    }
}

/// Runs the agent until the returned future is dropped, or until the server refuses it (an
/// operator has to act: a name taken by another node, a removed node, an old protocol).
pub async fn run<R: ContainerRuntime>(config: AgentConfig, runtime: Arc<R>) -> anyhow::Result<()> {
    let identity =
        identity::load_or_create(&config.state_dir, &config.name, config.join_token.is_some())?;
    let capacity = runtime
        .capacity()
        .await
        .map_err(|e| anyhow::anyhow!("failed to read the node's capacity: {e}"))?;
    let (desired_tx, desired_rx) = watch::channel::<Desired>(None);
    let (observed_tx, observed_rx) = watch::channel::<Observed>(None);
    let (on_node_tx, on_node_rx) = watch::channel::<Vec<ContainerInfo>>(Vec::new());
    let shipper = logs::LogShipper::new(config.log_buffer_bytes);
    let converger =
        converge::Converger::new(runtime.clone(), config.name.clone(), config.address.clone())
            .limit_logs(config.container_logs)
            .collect_images(config.state_dir.join("images.json"));
    let converging = tokio::spawn(converge_forever(
        converger,
        desired_rx,
        observed_tx,
        on_node_tx,
    ));
    let (usage_tx, usage_rx) = watch::channel(Vec::new());
    let sampling = tokio::spawn(usage::sample_forever(
        runtime.clone(),
        on_node_rx.clone(),
        usage_tx,
    ));
    let following = tokio::spawn(logs::follow_containers(
        runtime.clone(),
        shipper.clone(),
        on_node_rx,
    ));
    let link = build::ServerLink {
        base: config.server.clone(),
        credential: identity.credential.clone(),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    };
    let (builds, build_out) = build::Builds::new(runtime, link);
    let channels = connection::Channels {
        desired: desired_tx,
        observed: observed_rx,
        logs: shipper,
        usage: usage_rx,
        builds,
        build_out,
    };
    let result = connection::connect_forever(&config, identity, capacity, channels).await;
    converging.abort();
    following.abort();
    sampling.abort();
    result
}

async fn converge_forever<R: ContainerRuntime>(
    mut converger: converge::Converger<R>,
    mut desired: watch::Receiver<Desired>,
    observed: watch::Sender<Observed>,
    on_node: watch::Sender<Vec<ContainerInfo>>,
) {
    let publish = |converger: &converge::Converger<R>, instances: Vec<ObservedInstance>| {
        if let Some(generation) = converger.generation() {
            observed.send_if_modified(|last| {
                let next = Some((generation, instances));
                let changed = *last != next;
                *last = next;
                changed
            });
        }
    };
    loop {
        if let Some((generation, instances)) = desired.borrow_and_update().clone() {
            if converger.generation() != Some(generation) {
                converger.set_desired(generation, instances);
            }
        }
        match converger.pass().await {
            Ok(instances) => publish(&converger, instances),
            Err(e) => tracing::warn!("convergence pass failed (retrying): {e}"),
        }
        on_node.send_if_modified(|last| {
            let changed = last.as_slice() != converger.on_node();
            if changed {
                last.clone_from(&converger.on_node().to_vec());
            }
            changed
        });
        // Until the next pass: a new desired set, or the interval; meanwhile instances that
        // are starting up are probed often.
        let next_pass = tokio::time::Instant::now() + PASS_INTERVAL;
        loop {
            let wait = if converger.settling() {
                tokio::time::sleep(SETTLING_INTERVAL)
            } else {
                tokio::time::sleep_until(next_pass)
            };
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                () = wait => {}
            }
            if tokio::time::Instant::now() >= next_pass {
                break;
            }
            let instances = converger.probe_starting().await;
            publish(&converger, instances);
        }
    }
}
