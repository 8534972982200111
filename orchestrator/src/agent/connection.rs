//! The agent's side of the websocket: connect, say hello, then relay desired and observed sets
//! and heartbeat until the connection drops; reconnect with backoff, forever.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use gantry_common::agent::{AgentMessage, ServerMessage, HEARTBEAT_SECONDS, PROTOCOL_VERSION};
use gantry_common::cluster::NodeResources;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::{AgentConfig, Desired, Observed};
use crate::runtime::Capacity;

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

pub async fn connect_forever(
    config: &AgentConfig,
    capacity: Capacity,
    desired: watch::Sender<Desired>,
    mut observed: watch::Receiver<Observed>,
) -> anyhow::Result<()> {
    let url = connect_url(&config.server)?;
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        match session(config, &url, capacity, &desired, &mut observed).await {
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

async fn session(
    config: &AgentConfig,
    url: &str,
    capacity: Capacity,
    desired: &watch::Sender<Desired>,
    observed: &mut watch::Receiver<Observed>,
) -> Ended {
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Refused(format!("invalid server URL {url}: {e}")),
    };
    let auth = match HeaderValue::from_str(&format!("Bearer {}", config.token)) {
        Ok(v) => v,
        Err(_) => return Ended::Refused("the join token contains invalid characters".into()),
    };
    request.headers_mut().insert("authorization", auth);
    let (ws, _) = match tokio_tungstenite::connect_async(request).await {
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
                        tracing::info!(node.id = %node_id, "registered as node {} ({node_id})", config.name);
                    }
                    Ok(ServerMessage::Refused { reason }) => return Ended::Refused(reason),
                    Ok(ServerMessage::Desired { generation, instances }) => {
                        tracing::debug!(generation, "desired set {generation}: {} instances", instances.len());
                        desired.send_replace(Some((generation, instances)));
                    }
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
                    if let Err(e) = send(&mut tx, &AgentMessage::Observed { generation, instances }).await {
                        return Ended::Dropped(e);
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > SERVER_SILENCE {
                    return Ended::Dropped(anyhow::anyhow!("no word from the server for {SERVER_SILENCE:?}"));
                }
                if let Err(e) = send(&mut tx, &AgentMessage::Heartbeat).await {
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
}
