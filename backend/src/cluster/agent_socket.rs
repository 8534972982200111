//! `GET /api/v1/agent/connect`: the server's side of the agent websocket.
//!
//! An agent authenticates at the upgrade with its node credential (`Authorization: Bearer
//! gnc_…`). A credential the server does not know yet must come with a valid join token
//! (`x-gantry-join-token`): the node is then registered under the name its hello gives — unless
//! another credential holds that name — and from then on only that credential speaks for it. The
//! first frame must be a `hello` in this server's protocol version. Then heartbeats keep the node
//! alive, observed sets update its instances, and the reconciler pushes desired sets through the
//! [`Hub`].
//!
//! [`Hub`]: super::hub::Hub

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use gantry_common::agent::{
    AgentMessage, ObservedInstance, ServerMessage, HEARTBEAT_SECONDS, JOIN_TOKEN_HEADER,
    JOIN_TOKEN_PREFIX, NODE_CREDENTIAL_PREFIX, PROTOCOL_VERSION,
};
use gantry_common::cluster::NodeResources;
use gantry_common::NodeName;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use super::{hub, EMBEDDED_CLUSTER};
use crate::audit;
use crate::auth::tokens;
use crate::error::{unauthorized, ApiResult};
use crate::logs;
use crate::state::AppState;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection waits for the node's old one to finish storing its logs.
const WRITER_PATIENCE: Duration = Duration::from_secs(30);
const MAX_LABELS: usize = 32;
/// A batch of logs at its worst: every byte of its text escaped as `\u00XX` (6×), and the
/// lines' other fields.
const MAX_AGENT_MESSAGE_BYTES: usize =
    6 * gantry_common::agent::MAX_LOG_BATCH_BYTES + gantry_common::agent::MAX_LOG_BATCH_LINES * 256;

/// How a connection was let in.
#[derive(Debug, Clone)]
enum Admission {
    /// A registered node's credential.
    Known { node_id: Uuid, name: String },
    /// A new credential with a valid join token: the node registers at its hello.
    Joining {
        credential_hash: Vec<u8>,
        join_token_id: Uuid,
    },
}

pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if tokens::looks_valid_with_prefix(credential, JOIN_TOKEN_PREFIX) {
        return Err(unauthorized(format!(
            "this agent presents a join token as its credential: it speaks an older agent protocol than this server ({PROTOCOL_VERSION}); run a `gantry agent` of the server's version ({})",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if !tokens::looks_valid_with_prefix(credential, NODE_CREDENTIAL_PREFIX) {
        return Err(unauthorized(
            "agents connect with their node credential (made by `gantry agent` in its --state-dir) and, the first time, a join token",
        ));
    }
    let credential_hash = tokens::hash(credential);
    let known: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM nodes WHERE credential_hash = $1")
            .bind(&credential_hash)
            .fetch_optional(&state.db)
            .await?;
    let admission = match known {
        Some((node_id, name)) => Admission::Known { node_id, name },
        None => {
            let join_token = headers
                .get(JOIN_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|t| tokens::looks_valid_with_prefix(t, JOIN_TOKEN_PREFIX));
            let Some(join_token) = join_token else {
                return Err(unauthorized(
                    "this node credential is unknown: a node joins once with a join token (`gantry agent --token gjt_…`). A node removed by an admin must join again: delete node.json in its --state-dir and start it with a new join token",
                ));
            };
            let join_token_id: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM join_tokens WHERE secret_hash = $1 AND revoked_at IS NULL
                   AND expires_at > now()",
            )
            .bind(tokens::hash(join_token))
            .fetch_optional(&state.db)
            .await?;
            let Some(join_token_id) = join_token_id else {
                return Err(unauthorized(
                    "this join token is unknown, revoked or expired: create a new one with POST /api/v1/nodes/join-tokens",
                ));
            };
            Admission::Joining {
                credential_hash,
                join_token_id,
            }
        }
    };
    // A log batch is the largest message: its lines at their longest, with room to spare.
    let ws = ws.max_message_size(MAX_AGENT_MESSAGE_BYTES);
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(e) = serve(state, socket, admission).await {
            tracing::warn!("agent connection ended: {e:#}");
        }
    }))
}

/// A checked `hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub name: NodeName,
    pub address: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub capacity: NodeResources,
    pub agent_version: String,
}

/// Checks an agent's first message; the error is sent back to the agent as its refusal.
pub fn check_hello(message: AgentMessage) -> Result<Hello, String> {
    let AgentMessage::Hello {
        protocol,
        name,
        address,
        labels,
        capacity,
        agent_version,
    } = message
    else {
        return Err("the first message must be a hello".into());
    };
    if protocol != PROTOCOL_VERSION {
        return Err(format!(
            "this server speaks agent protocol {PROTOCOL_VERSION}, the agent speaks {protocol}: \
             run a `gantry agent` of the server's version ({})",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let name = NodeName::parse(&name).map_err(|e| e.to_string())?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("node address {address:?} is not an IP address"))?;
    if labels.len() > MAX_LABELS {
        return Err(format!("a node has at most {MAX_LABELS} labels"));
    }
    for (k, v) in &labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-".contains(c));
        let value_ok = v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !key_ok || !value_ok {
            return Err(format!(
                "label {k}={v} is not valid: keys are lowercase letters, digits, '.', '_', '/', '-'; \
                 values letters, digits, '.', '_', '-'; both at most 63 characters"
            ));
        }
    }
    if agent_version.len() > 64 {
        return Err("agent version is too long".into());
    }
    Ok(Hello {
        name,
        address,
        labels,
        capacity,
        agent_version,
    })
}

async fn serve(state: AppState, socket: WebSocket, admission: Admission) -> anyhow::Result<()> {
    let (mut sink, mut stream) = socket.split();
    let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<AgentMessage>(text.as_str())
            .map_err(|e| {
                format!(
                    "this server (agent protocol {PROTOCOL_VERSION}) cannot read the agent's hello: {e}"
                )
            })
            .and_then(check_hello),
        _ => Err("no hello received".to_owned()),
    };
    let admitted = match hello {
        Ok(hello) => register(&state, &hello, &admission)
            .await?
            .map(|node_id| (hello, node_id)),
        Err(reason) => Err(reason),
    };
    let (hello, node_id) = match admitted {
        Ok(admitted) => admitted,
        Err(reason) => {
            tracing::warn!("refused an agent: {reason}");
            let refusal = serde_json::to_string(&ServerMessage::Refused { reason })?;
            let _ = sink.send(Message::Text(refusal.into())).await;
            let _ = sink.close().await;
            return Ok(());
        }
    };
    let span = tracing::info_span!("agent", node.id = %node_id, node.name = %hello.name);
    async move {
        tracing::info!(
            "node {} ({node_id}) connected from agent {}",
            hello.name,
            hello.agent_version
        );
        // Connected from the welcome on (an admin acting on the node right after it sees it
        // connected); the desired sets queue until the relay below sends them.
        let (tx, mut rx) = mpsc::channel(hub::QUEUE);
        let session = state.embedded.hub.attach(node_id, tx);
        state.embedded.kick();
        let result = async {
            let welcome = serde_json::to_string(&ServerMessage::Welcome { node_id })?;
            sink.send(Message::Text(welcome.into())).await?;
            // Its older connection (replaced above) finishes storing first.
            let writer = state
                .logs
                .writers
                .acquire(node_id, WRITER_PATIENCE)
                .await;
            if writer.is_none() {
                tracing::warn!("the node's previous connection was still storing logs after {WRITER_PATIENCE:?}; going on");
            }
            // Where each of its instances' logs stand here, so the agent reads on from there.
            let cursors = logs::store::cursors_of_node(&state.db, node_id).await?;
            let cursors = serde_json::to_string(&ServerMessage::LogCursors { instances: cursors })?;
            sink.send(Message::Text(cursors.into())).await?;
            let result = relay(&state, node_id, &mut sink, &mut stream, &mut rx).await;
            drop(writer);
            result
        }
        .await;
        state.embedded.hub.detach(node_id, session);
        if !state.embedded.hub.is_connected(node_id) {
            state.builds.node_lost(node_id);
        }
        tracing::info!("node {} ({node_id}) disconnected", hello.name);
        result
    }
    // An entered span guard must not be held across awaits; the future carries the span instead.
    .instrument(span)
    .await
}

/// Records the node of a checked hello: a registered node's latest address, labels and capacity,
/// or a new node under the credential it joined with. `Err` is the refusal to send.
async fn register(
    state: &AppState,
    hello: &Hello,
    admission: &Admission,
) -> anyhow::Result<Result<Uuid, String>> {
    match admission {
        Admission::Known { node_id, name } => {
            if hello.name.as_str() != name {
                return Ok(Err(format!(
                    "this agent's credential belongs to node {name}, not {}: start it with --name {name}, or give the other node its own --state-dir",
                    hello.name
                )));
            }
            sqlx::query(
                "UPDATE nodes SET address = $2, labels = $3, cpu_millis = $4, memory_mib = $5,
                     agent_version = $6, down = false, last_seen_at = now()
                 WHERE id = $1",
            )
            .bind(node_id)
            .bind(hello.address.to_string())
            .bind(sqlx::types::Json(&hello.labels))
            .bind(hello.capacity.cpu_millis as i64)
            .bind(hello.capacity.memory_mib as i64)
            .bind(&hello.agent_version)
            .execute(&state.db)
            .await?;
            Ok(Ok(*node_id))
        }
        Admission::Joining {
            credential_hash,
            join_token_id,
        } => {
            // A name belongs to the credential that registered it; a node from before
            // credentials (none yet) is claimed by the first agent that joins under its name.
            let mut tx = state.db.begin().await?;
            let node_id: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO nodes (cluster_id, name, address, labels, cpu_millis, memory_mib,
                                    agent_version, credential_hash, join_token_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (cluster_id, name) DO UPDATE SET
                     address = EXCLUDED.address, labels = EXCLUDED.labels,
                     cpu_millis = EXCLUDED.cpu_millis, memory_mib = EXCLUDED.memory_mib,
                     agent_version = EXCLUDED.agent_version, down = false, last_seen_at = now(),
                     credential_hash = EXCLUDED.credential_hash,
                     join_token_id = EXCLUDED.join_token_id
                 WHERE nodes.credential_hash IS NULL
                 RETURNING id",
            )
            .bind(EMBEDDED_CLUSTER)
            .bind(hello.name.as_str())
            .bind(hello.address.to_string())
            .bind(sqlx::types::Json(&hello.labels))
            .bind(hello.capacity.cpu_millis as i64)
            .bind(hello.capacity.memory_mib as i64)
            .bind(&hello.agent_version)
            .bind(credential_hash)
            .bind(join_token_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(node_id) = node_id else {
                return Ok(Err(format!(
                    "node name {} is taken by another node (it registered with its own credential): pick another --name, or remove that node first (DELETE /api/v1/nodes/{})",
                    hello.name, hello.name
                )));
            };
            audit::record_platform(
                &mut tx,
                audit::PlatformEvent {
                    action: "node.join",
                    target: format!("node:{}", hello.name),
                    details: json!({
                        "node_id": node_id,
                        "join_token": join_token_id,
                        "address": hello.address.to_string(),
                    }),
                    actor: audit::Actor {
                        user_id: None,
                        token_id: None,
                        label: format!("agent of node {}", hello.name),
                    },
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(node.id = %node_id, "node {} ({node_id}) registered with join token {join_token_id}", hello.name);
            Ok(Ok(node_id))
        }
    }
}

async fn relay(
    state: &AppState,
    node_id: Uuid,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    rx: &mut mpsc::Receiver<ServerMessage>,
) -> anyhow::Result<()> {
    let mut ping = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECONDS));
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<AgentMessage>(text.as_str()) {
                    Ok(AgentMessage::Heartbeat) => heartbeat(state, node_id).await?,
                    Ok(AgentMessage::Observed { generation, instances }) => {
                        heartbeat(state, node_id).await?;
                        record_observed(state, node_id, generation, &instances).await?;
                        state.embedded.kick();
                    }
                    Ok(AgentMessage::Logs { lines, dropped }) => {
                        // One batch at a time, in order: the cursors (what the agent forgets
                        // once acknowledged) only ever cover committed lines.
                        let held = logs::store::store_batch(state, node_id, lines, dropped).await?;
                        let ack = serde_json::to_string(&ServerMessage::LogsAck { instances: held })?;
                        sink.send(Message::Text(ack.into())).await?;
                    }
                    Ok(AgentMessage::Usage { instances }) => {
                        state.metrics.usage.record(&state.db, node_id, instances).await?;
                    }
                    Ok(AgentMessage::BuildLog { build, lines }) => {
                        state.builds.from_agent(node_id, build, crate::builds::FromAgent::Lines(lines));
                    }
                    Ok(AgentMessage::BuildDone { build, outcome }) => {
                        state.builds.from_agent(node_id, build, crate::builds::FromAgent::Done(outcome));
                    }
                    Ok(AgentMessage::Hello { .. }) => tracing::warn!("ignored a second hello"),
                    Err(e) => {
                        let reason = format!("unreadable message for agent protocol {PROTOCOL_VERSION}: {e}");
                        let refusal = serde_json::to_string(&ServerMessage::Refused { reason })?;
                        sink.send(Message::Text(refusal.into())).await?;
                        return Ok(());
                    }
                }
            }
            out = rx.recv() => {
                // A closed queue means a newer connection of this node replaced this one.
                let Some(message) = out else { return Ok(()) };
                sink.send(Message::Text(serde_json::to_string(&message)?.into())).await?;
            }
            _ = ping.tick() => sink.send(Message::Ping(Vec::new().into())).await?,
        }
    }
}

async fn heartbeat(state: &AppState, node_id: Uuid) -> anyhow::Result<()> {
    let was_down: Option<bool> = sqlx::query_scalar(
        "UPDATE nodes n SET last_seen_at = now(), down = false
         FROM (SELECT id, down FROM nodes WHERE id = $1 FOR UPDATE) old
         WHERE n.id = old.id RETURNING old.down",
    )
    .bind(node_id)
    .fetch_optional(&state.db)
    .await?;
    if was_down == Some(true) {
        tracing::info!(node.id = %node_id, "node {node_id} is back");
        state.embedded.kick();
    }
    Ok(())
}

/// Records what the agent reports. Rows the server already decided to stop are deleted once
/// the agent, having applied a desired set that no longer holds them, stops reporting them.
async fn record_observed(
    state: &AppState,
    node_id: Uuid,
    generation: u64,
    instances: &[ObservedInstance],
) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let mut events = Vec::new();
    for i in instances {
        // Once taken out, an instance shows as draining or stopping whatever its container
        // does; the first image id reported for a set pins the image of all its instances.
        let change: Option<Change> = sqlx::query_as(
            "WITH old AS (
                 SELECT id, state, restarts FROM instances
                 WHERE id = $1 AND node_id = $2 FOR UPDATE),
             updated AS (
                 UPDATE instances i SET
                     state = CASE desired WHEN 'stop' THEN 'stopping'
                                          WHEN 'drain' THEN 'draining' ELSE $3 END,
                     reason = $4, host_port = $5, restarts = $6, last_exit_code = $7,
                     started_at = $8, updated_at = now()
                 FROM old WHERE i.id = old.id
                 RETURNING i.release_id, i.desired, i.team_id, i.app_id, i.state, i.restarts,
                           old.state AS old_state, old.restarts AS old_restarts),
             digest AS (
                 UPDATE release_sets s SET image_digest = $9
                 FROM updated u
                 WHERE s.release_id = u.release_id AND u.desired = 'run'
                   AND s.image_digest IS NULL AND $9::text IS NOT NULL)
             SELECT u.team_id, u.app_id, u.state, u.restarts, u.old_state, u.old_restarts,
                    (SELECT s.version FROM release_sets s WHERE s.release_id = u.release_id)
                        AS release
             FROM updated u",
        )
        .bind(i.id)
        .bind(node_id)
        .bind(i.state.as_str())
        .bind(i.reason.as_deref())
        .bind(i.host_port.map(i32::from))
        .bind(i.restarts as i32)
        .bind(i.last_exit_code)
        .bind(i.started_at)
        .bind(i.image_id.as_deref())
        .fetch_optional(&mut *tx)
        .await?;
        events.extend(change.and_then(|c| c.event(i)));
    }
    let reported: Vec<Uuid> = instances.iter().map(|i| i.id).collect();
    sqlx::query(
        "DELETE FROM instances
         WHERE node_id = $1 AND desired = 'stop' AND id <> ALL($2)
           AND (SELECT generation FROM nodes WHERE id = $1) <= $3",
    )
    .bind(node_id)
    .bind(&reported)
    .bind(generation as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.embedded.changed();
    logs::events::record(&state.db, &state.logs.hub, events).await;
    Ok(())
}

/// An instance's row before and after an observation.
#[derive(sqlx::FromRow)]
struct Change {
    team_id: Uuid,
    app_id: Uuid,
    state: String,
    restarts: i32,
    old_state: String,
    old_restarts: i32,
    release: Option<i32>,
}

impl Change {
    /// The event it makes in the app's log, if it changed anything worth one.
    fn event(self, observed: &ObservedInstance) -> Option<logs::events::Event> {
        let id = observed.id;
        let text = if self.restarts > self.old_restarts {
            let exit = observed.last_exit_code.map_or(String::new(), |code| {
                format!(" after exiting with code {code}")
            });
            format!("instance {id} restarted{exit} ({} restarts)", self.restarts)
        } else if self.state != self.old_state {
            let why = observed
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"));
            format!(
                "instance {id} is {} (was {}){why}",
                self.state, self.old_state
            )
        } else {
            return None;
        };
        Some(logs::events::Event {
            team_id: self.team_id,
            app_id: self.app_id,
            release: self.release,
            instance: Some(id),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, name: &str, address: &str, labels: &[(&str, &str)]) -> AgentMessage {
        AgentMessage::Hello {
            protocol,
            name: name.into(),
            address: address.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            capacity: NodeResources {
                cpu_millis: 2000,
                memory_mib: 4096,
            },
            agent_version: "0.1.0".into(),
        }
    }

    #[test]
    fn a_good_hello_passes() {
        let h = check_hello(hello(
            PROTOCOL_VERSION,
            "node-1",
            "127.0.0.1",
            &[("zone", "a")],
        ))
        .unwrap();
        assert_eq!(h.name.as_str(), "node-1");
        assert_eq!(h.labels["zone"], "a");
    }

    #[test]
    fn an_old_agent_gets_a_clear_refusal() {
        let err = check_hello(hello(1, "node-1", "127.0.0.1", &[])).unwrap_err();
        assert!(
            err.contains(&format!("protocol {PROTOCOL_VERSION}"))
                && err.contains("the agent speaks 1"),
            "{err}"
        );
    }

    #[test]
    fn bad_names_addresses_and_labels_are_refused() {
        assert!(check_hello(hello(PROTOCOL_VERSION, "Node 1", "127.0.0.1", &[])).is_err());
        assert!(check_hello(hello(PROTOCOL_VERSION, "n1", "localhost; rm -rf /", &[])).is_err());
        assert!(check_hello(hello(
            PROTOCOL_VERSION,
            "n1",
            "127.0.0.1",
            &[("zone", "a b")]
        ))
        .is_err());
        assert!(check_hello(hello(PROTOCOL_VERSION, "n1", "127.0.0.1", &[("", "a")])).is_err());
        assert!(check_hello(AgentMessage::Heartbeat).is_err());
    }
}
