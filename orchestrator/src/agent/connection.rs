//! The agent's side of the websocket: connect, say hello, then relay desired and observed sets
//! and heartbeat until the connection drops; reconnect with backoff, forever.
//!
//! The agent authenticates with its node credential ([`super::identity`]), plus a join token
//! until the server has accepted the credential once. `https://` servers are reached over
//! `wss://`, verified against the machine's trusted CAs (`SSL_CERT_FILE` is honoured).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use gantry_common::agent::{
    AgentMessage, InstanceUsage, ServerMessage, HEARTBEAT_SECONDS, JOIN_TOKEN_HEADER,
    PROTOCOL_VERSION,
};
use gantry_common::cluster::NodeResources;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

use super::build::Builds;
use super::identity::{self, Identity};
use super::logs::LogShipper;
use super::{AgentConfig, Desired, Observed};
use crate::runtime::{Capacity, ContainerRuntime};

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// Without any frame from the server for this long, the connection is presumed dead (the server
/// pings every heartbeat interval).
const SERVER_SILENCE: Duration = Duration::from_secs(HEARTBEAT_SECONDS * 4);

/// How a session ended.
enum Ended {
    /// The connection failed or closed; try again.
    Dropped(anyhow::Error),
    /// The server refused this agent; an operator has to act.
    Refused(String),
}

/// The URL of the agent endpoint for a server base URL (`http` → `ws`, `https` → `wss`).
pub fn connect_url(server: &str) -> anyhow::Result<String> {
    let base = server.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        bail!("--server must be an http:// or https:// URL, got {server:?}");
    };
    Ok(format!("{rest}/api/v1/agent/connect"))
}

/// Whether a plain (unencrypted) server URL stays on this machine. The link carries apps'
/// config vars and the node's credential, so plain HTTP elsewhere needs an explicit
/// `--insecure`.
pub fn plain_and_remote(server: &str) -> bool {
    let Some(rest) = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("ws://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// TLS for `wss://`: rustls with the machine's trusted CAs, and an explicit crypto provider
/// (several are linked into this binary, so none is picked by default).
fn tls_connector() -> anyhow::Result<Connector> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!("no trusted CA certificates were found on this machine, so the server's TLS certificate cannot be checked (install ca-certificates, or point SSL_CERT_FILE at a PEM bundle)");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS set-up")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// What a session passes between the server and the agent's other tasks.
pub struct Channels<R> {
    /// Desired sets from the server, to the converger.
    pub desired: watch::Sender<Desired>,
    /// Observations from the converger, to the server.
    pub observed: watch::Receiver<Observed>,
    /// Log lines from the followers, to the server.
    pub logs: LogShipper,
    /// The containers' usage from the sampler, to the server.
    pub usage: watch::Receiver<Vec<InstanceUsage>>,
    /// The node's builds: orders from the server start and cancel them.
    pub builds: Builds<R>,
    /// The builds' output and outcomes, to the server.
    pub build_out: tokio::sync::mpsc::Receiver<AgentMessage>,
}

pub async fn connect_forever<R: ContainerRuntime>(
    config: &AgentConfig,
    mut identity: Identity,
    capacity: Capacity,
    mut channels: Channels<R>,
) -> anyhow::Result<()> {
    let url = connect_url(&config.server)?;
    let connector = if url.starts_with("wss://") {
        Some(tls_connector()?)
    } else {
        None
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let link = Link {
            url: &url,
            connector: connector.clone(),
        };
        match session(config, &mut identity, link, capacity, &mut channels).await {
            Ended::Refused(reason) => bail!("the server refused this agent: {reason}"),
            Ended::Dropped(e) => {
                if started.elapsed() >= HEALTHY_SESSION {
                    backoff = MIN_BACKOFF;
                }
                tracing::warn!(
                    "lost the server at {url} ({e:#}); containers keep running; reconnecting in {backoff:?}"
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Where and how to connect.
struct Link<'a> {
    url: &'a str,
    /// TLS for `wss://`.
    connector: Option<Connector>,
}

async fn session<R: ContainerRuntime>(
    config: &AgentConfig,
    identity: &mut Identity,
    link: Link<'_>,
    capacity: Capacity,
    channels: &mut Channels<R>,
) -> Ended {
    let Channels {
        desired,
        observed,
        logs,
        usage,
        builds,
        build_out,
    } = channels;
    let url = link.url;
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Refused(format!("invalid server URL {url}: {e}")),
    };
    let credential = HeaderValue::from_str(&format!("Bearer {}", identity.credential));
    let join_token = match (&config.join_token, identity.registered) {
        (Some(token), false) => Some(HeaderValue::from_str(token)),
        _ => None,
    };
    match (credential, join_token.transpose()) {
        (Ok(credential), Ok(join_token)) => {
            request.headers_mut().insert("authorization", credential);
            if let Some(token) = join_token {
                request.headers_mut().insert(JOIN_TOKEN_HEADER, token);
            }
        }
        _ => return Ended::Refused("the join token contains invalid characters".into()),
    }
    let connected =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, link.connector).await;
    let (ws, _) = match connected {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let body = res
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let reason = format!("HTTP {} {}", res.status(), body);
            // 401/403 will not fix themselves; anything else (a 502 from a proxy, a 503 while
            // the server starts) might.
            return if res.status() == 401 || res.status() == 403 {
                Ended::Refused(reason)
            } else {
                Ended::Dropped(anyhow::anyhow!(reason))
            };
        }
        Err(e) => return Ended::Dropped(anyhow::Error::new(e).context("failed to connect")),
    };
    let (mut tx, mut rx) = ws.split();

    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        name: config.name.clone(),
        address: config.address.clone(),
        labels: config.labels.clone(),
        capacity: NodeResources {
            cpu_millis: capacity.cpu_millis,
            memory_mib: capacity.memory_mib,
        },
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    if let Err(e) = send(&mut tx, &hello).await {
        return Ended::Dropped(e);
    }
    // The server gets our current observation at once: after a reconnect it learns the state
    // of every instance without waiting for a change.
    observed.mark_changed();
    // Lines sent on a lost connection may not have been stored: they go again.
    logs.connected();
    let ended = relay(
        config,
        identity,
        (&mut tx, &mut rx),
        Relayed {
            desired,
            observed,
            logs,
            usage,
            builds,
            build_out,
        },
    )
    .await;
    logs.disconnected();
    // The server fails the builds of a node it lost; their results would go nowhere.
    builds.cancel_all();
    ended
}

/// The session's ends of the agent's channels.
struct Relayed<'a, R> {
    desired: &'a watch::Sender<Desired>,
    observed: &'a mut watch::Receiver<Observed>,
    logs: &'a LogShipper,
    usage: &'a mut watch::Receiver<Vec<InstanceUsage>>,
    builds: &'a Builds<R>,
    build_out: &'a mut tokio::sync::mpsc::Receiver<AgentMessage>,
}

/// Relays messages both ways until the connection ends.
async fn relay<Tx, Rx, R: ContainerRuntime>(
    config: &AgentConfig,
    identity: &mut Identity,
    (tx, rx): (&mut Tx, &mut Rx),
    channels: Relayed<'_, R>,
) -> Ended
where
    Tx: SinkExt<Message> + Unpin,
    Tx::Error: std::error::Error + Send + Sync + 'static,
    Rx: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let Relayed {
        desired,
        observed,
        logs,
        usage,
        builds,
        build_out,
    } = channels;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECONDS));
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = rx.next() => {
                last_heard = Instant::now();
                let text = match frame {
                    None => return Ended::Dropped(anyhow::anyhow!("the server closed the connection")),
                    Some(Err(e)) => return Ended::Dropped(e.into()),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return Ended::Dropped(anyhow::anyhow!("the server closed the connection: {why}"));
                    }
                    Some(Ok(_)) => continue, // pings are answered by tungstenite
                };
                match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Welcome { node_id }) => {
                        tracing::info!(node.id = %node_id, "connected as node {} ({node_id})", config.name);
                        if !identity.registered {
                            // The credential is accepted: the join token is not needed again.
                            if let Err(e) = identity::mark_registered(&config.state_dir, identity) {
                                tracing::warn!("failed to record the node's registration: {e:#}");
                            }
                            identity.registered = true;
                        }
                    }
                    Ok(ServerMessage::Refused { reason }) => return Ended::Refused(reason),
                    Ok(ServerMessage::Desired { generation, instances }) => {
                        tracing::debug!(generation, "desired set {generation}: {} instances", instances.len());
                        desired.send_replace(Some((generation, instances)));
                    }
                    Ok(ServerMessage::LogCursors { instances }) => logs.set_cursors(instances),
                    Ok(ServerMessage::LogsAck { instances }) => logs.ack(&instances),
                    Ok(ServerMessage::Build { order }) => {
                        tracing::info!(build.id = %order.build, "building {}", order.image);
                        builds.start(order);
                    }
                    Ok(ServerMessage::CancelBuild { build }) => builds.cancel(build),
                    Err(e) => {
                        return Ended::Refused(format!(
                            "the server sent a message this agent (protocol {PROTOCOL_VERSION}) does not understand: {e}; upgrade the agent"
                        ));
                    }
                }
            }
            changed = observed.changed() => {
                if changed.is_err() {
                    return Ended::Dropped(anyhow::anyhow!("the converger stopped"));
                }
                let report = observed.borrow_and_update().clone();
                if let Some((generation, instances)) = report {
                    if let Err(e) = send(tx, &AgentMessage::Observed { generation, instances }).await {
                        return Ended::Dropped(e);
                    }
                }
            }
            changed = usage.changed() => {
                if changed.is_err() {
                    return Ended::Dropped(anyhow::anyhow!("the usage sampler stopped"));
                }
                let instances = usage.borrow_and_update().clone();
                if let Err(e) = send(tx, &AgentMessage::Usage { instances }).await {
                    return Ended::Dropped(e);
                }
            }
            Some(message) = build_out.recv() => {
                if let Err(e) = send(tx, &message).await {
                    return Ended::Dropped(e);
                }
            }
            () = logs.wake.notified() => {
                while let Some(batch) = logs.next_batch() {
                    let message = AgentMessage::Logs { lines: batch.lines, dropped: batch.dropped };
                    if let Err(e) = send(tx, &message).await {
                        return Ended::Dropped(e);
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > SERVER_SILENCE {
                    return Ended::Dropped(anyhow::anyhow!("no word from the server for {SERVER_SILENCE:?}"));
                }
                if let Err(e) = send(tx, &AgentMessage::Heartbeat).await {
                    return Ended::Dropped(e);
                }
            }
        }
    }
}

async fn send<S>(tx: &mut S, message: &AgentMessage) -> anyhow::Result<()>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let text = serde_json::to_string(message).context("failed to encode a message")?;
    tx.send(Message::Text(text.into()))
        .await
        .context("failed to send to the server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_map_to_the_agent_endpoint() {
        assert_eq!(
            connect_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/api/v1/agent/connect"
        );
        assert_eq!(
            connect_url("https://gantry.example.com").unwrap(),
            "wss://gantry.example.com/api/v1/agent/connect"
        );
        assert!(connect_url("gantry.example.com").is_err());
    }

    #[test]
    fn plain_http_is_fine_on_loopback_only() {
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "http://127.0.0.2",
        ] {
            assert!(!plain_and_remote(local), "{local}");
        }
        for remote in [
            "http://10.0.0.5:8080",
            "http://gantry.lan",
            "ws://[fd00::1]:80",
        ] {
            assert!(plain_and_remote(remote), "{remote}");
        }
        assert!(!plain_and_remote("https://gantry.example.com"));
    }
}
