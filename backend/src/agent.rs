//! `gantry agent`: a worker node's agent, and the local agent `gantry up` runs in-process.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use gantry_common::agent::JOIN_TOKEN_PREFIX;
use gantry_common::NodeName;
use gantry_orchestrator::agent::connection::plain_and_remote;
use gantry_orchestrator::agent::identity;
use gantry_orchestrator::agent::{self, AgentConfig};
use gantry_orchestrator::runtime::docker::DockerRuntime;
use gantry_orchestrator::runtime::LogLimit;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::auth::tokens;
use crate::cluster::EMBEDDED_CLUSTER;

/// How long the join token `gantry up` makes for its own node lives: that node registers with
/// it at once.
const LOCAL_JOIN_TOKEN_TTL_MINUTES: i64 = 10;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The Gantry server's URL, e.g. https://gantry.example.com. Plain http:// is for loopback
    /// (or with --insecure): the link carries apps' config vars.
    #[arg(long, env = "GANTRY_SERVER")]
    pub server: String,

    /// A join token from `POST /api/v1/nodes/join-tokens` (gjt_…). Needed at the node's first
    /// start only: the agent then registers a credential of its own, kept in --state-dir.
    #[arg(long, env = "GANTRY_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,

    /// Where the node's identity (its name and credential) is kept (default
    /// /var/lib/gantry-agent as root, else ~/.local/state/gantry-agent).
    #[arg(long, env = "GANTRY_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Allow a plain http:// server that is not on this machine (the credential and the apps'
    /// config vars then cross the network unencrypted).
    #[arg(long)]
    pub insecure: bool,

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

    /// The most log lines (in MiB) kept for the server while it is unreachable; beyond it the
    /// oldest are dropped and counted.
    #[arg(long, env = "GANTRY_AGENT_LOG_BUFFER_MIB", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub log_buffer_mib: u32,

    /// How much output the engine keeps of each container on this node's disk, in KiB (in two
    /// files of this size each; the oldest lines go first).
    #[arg(long, env = "GANTRY_CONTAINER_LOG_KIB", default_value_t = 10 * 1024,
          value_parser = clap::value_parser!(u32).range(16..=1024 * 1024))]
    pub container_log_kib: u32,
}

/// Two files of `kib` each, as `--container-log-kib` says.
fn container_logs(kib: u32) -> LogLimit {
    LogLimit {
        file_bytes: u64::from(kib) * 1024,
        files: 2,
    }
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

fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/gantry-agent");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/gantry-agent")
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let name = match args.name {
        Some(name) => NodeName::parse(&name)?.to_string(),
        None => default_name()?,
    };
    if plain_and_remote(&args.server) && !args.insecure {
        bail!(
            "{} is plain http on another machine: the node's credential and the apps' config vars would cross the network unencrypted. Put TLS in front of the server and use https://, or pass --insecure on a network you trust",
            args.server
        );
    }
    let token = args.token.map(|t| t.expose_secret().to_owned());
    if let Some(token) = &token {
        if !tokens::looks_valid_with_prefix(token, JOIN_TOKEN_PREFIX) {
            bail!("--token must be a join token (gjt_…) from POST /api/v1/nodes/join-tokens");
        }
    }
    let runtime = DockerRuntime::connect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = AgentConfig {
        server: args.server,
        join_token: token,
        name: name.clone(),
        state_dir: args.state_dir.unwrap_or_else(default_state_dir),
        address: args.address.to_string(),
        labels: parse_labels(&args.labels)?,
        log_buffer_bytes: args.log_buffer_mib as usize * 1024 * 1024,
        container_logs: container_logs(args.container_log_kib),
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

/// `gantry up`'s own node: an agent on the local Docker engine in this process, whose identity
/// is kept in `<data dir>/agent`, so it is the same node at every start. It registers (once) with
/// a short-lived join token made here. Without a reachable Docker engine, Gantry runs without a
/// node (and says so): apps can be defined, and instances stay pending until a node joins.
pub async fn spawn_local(db: &PgPool, server: String, data_dir: &Path) -> anyhow::Result<()> {
    let runtime = match DockerRuntime::connect().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("no local node: {e}");
            println!("  Node:     none — the local Docker engine is not reachable ({e})");
            return Ok(());
        }
    };
    let state_dir = data_dir.join("agent");
    let name = default_name().unwrap_or_else(|_| "local".to_owned());
    let registered = identity::load_or_create(&state_dir, &name, false).is_ok();
    let join_token = if registered {
        None
    } else {
        let new = tokens::generate_with_prefix(JOIN_TOKEN_PREFIX);
        sqlx::query(
            "INSERT INTO join_tokens (cluster_id, secret_hash, expires_at)
             VALUES ($1, $2, now() + make_interval(mins => $3))",
        )
        .bind(EMBEDDED_CLUSTER)
        .bind(&new.hash)
        .bind(LOCAL_JOIN_TOKEN_TTL_MINUTES as i32)
        .execute(db)
        .await?;
        Some(new.secret)
    };
    println!("  Node:     {name} (this machine's Docker engine)");
    let config = AgentConfig {
        server,
        join_token,
        name,
        state_dir,
        address: "127.0.0.1".into(),
        labels: BTreeMap::new(),
        log_buffer_bytes: 8 * 1024 * 1024,
        container_logs: LogLimit::default(),
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
