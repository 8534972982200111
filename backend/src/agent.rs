//! `gantry agent`: a worker node's agent, and the local agent `gantry up` runs in-process.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use gantry_common::NodeName;
use gantry_orchestrator::agent::{self, AgentConfig};
use gantry_orchestrator::runtime::docker::DockerRuntime;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::auth::tokens;
use crate::cluster::agent_socket::JOIN_TOKEN_PREFIX;
use crate::cluster::EMBEDDED_CLUSTER;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The Gantry server's URL, e.g. http://10.0.0.1:8080.
    #[arg(long, env = "GANTRY_SERVER")]
    pub server: String,

    /// A join token from `POST /api/v1/nodes/join-tokens` (gjt_…).
    #[arg(long, env = "GANTRY_JOIN_TOKEN", hide_env_values = true)]
    pub token: SecretString,

    /// The node's name, unique in the cluster (default: the host name).
    #[arg(long, env = "GANTRY_NODE_NAME")]
    pub name: Option<String>,

    /// Labels for placement, e.g. `zone=a,disk=ssd`. Replicas spread over `zone` values.
    #[arg(long, env = "GANTRY_NODE_LABELS", default_value = "")]
    pub labels: String,

    /// The address instance ports are published on (and probed at). Keep 127.0.0.1 unless
    /// the router or other machines must reach the instances directly.
    #[arg(long, env = "GANTRY_NODE_ADDRESS", default_value = "127.0.0.1")]
    pub address: IpAddr,
}

/// `zone=a,disk=ssd` → {zone: a, disk: ssd}.
pub fn parse_labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("label {pair:?} must look like key=value");
        };
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}

fn default_name() -> anyhow::Result<String> {
    let host = nix::unistd::gethostname().context("failed to read the host name")?;
    let host = host.to_string_lossy().to_lowercase();
    let first = host.split('.').next().unwrap_or_default().to_owned();
    match NodeName::parse(&first) {
        Ok(name) => Ok(name.to_string()),
        Err(e) => bail!("the host name cannot be a node name ({e}); pass --name"),
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let name = match args.name {
        Some(name) => NodeName::parse(&name)?.to_string(),
        None => default_name()?,
    };
    let runtime = DockerRuntime::connect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = AgentConfig {
        server: args.server,
        token: args.token.expose_secret().to_owned(),
        name: name.clone(),
        address: args.address.to_string(),
        labels: parse_labels(&args.labels)?,
    };
    tracing::info!(node.name = %name, "agent for node {name} starting; server {}", config.server);
    tokio::select! {
        result = agent::run(config, Arc::new(runtime)) => result,
        () = crate::startup::shutdown_signal() => {
            tracing::info!("agent stopping; the node's containers keep running");
            Ok(())
        }
    }
}

/// `gantry up`'s own node: a fresh join token for this start, and an agent on the local Docker
/// engine in this process. Without a reachable Docker engine, Gantry runs without a node (and
/// says so): apps can be defined, and instances stay pending until a node joins.
pub async fn spawn_local(db: &PgPool, server: String) -> anyhow::Result<()> {
    let runtime = match DockerRuntime::connect().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("no local node: {e}");
            println!("  Node:     none — the local Docker engine is not reachable ({e})");
            return Ok(());
        }
    };
    let new = tokens::generate_with_prefix(JOIN_TOKEN_PREFIX);
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM join_tokens WHERE created_by IS NULL")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO join_tokens (cluster_id, secret_hash) VALUES ($1, $2)")
        .bind(EMBEDDED_CLUSTER)
        .bind(&new.hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let name = default_name().unwrap_or_else(|_| "local".to_owned());
    println!("  Node:     {name} (this machine's Docker engine)");
    let config = AgentConfig {
        server,
        token: new.secret,
        name,
        address: "127.0.0.1".into(),
        labels: BTreeMap::new(),
    };
    tokio::spawn(async move {
        if let Err(e) = agent::run(config, Arc::new(runtime)).await {
            tracing::error!("the local agent stopped: {e:#}");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_a_comma_list() {
        let labels = parse_labels("zone=a, disk=ssd").unwrap();
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["disk"], "ssd");
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("zone").is_err());
    }
}
