//! A node agent driven by hand over the real websocket, and the helpers the cluster and release
//! tests share: deploy, scale, and wait for instances or releases.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gantry_backend::auth::tokens;
use gantry_common::agent::{
    AgentMessage, DesiredInstance, LogCursor, ObservedInstance, ServerMessage, ShippedLine,
    JOIN_TOKEN_HEADER, NODE_CREDENTIAL_PREFIX, PROTOCOL_VERSION,
};
use gantry_common::cluster::{InstanceState, NodeResources};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::support::{TestApp, TestUser};

/// How long anything the controllers or the agent socket do in the background may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn error_message(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("error bodies are JSON");
    body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned()
}

/// Deploys `image`; returns the release made.
pub async fn deploy(user: &TestUser, app_path: &str, image: &str) -> Value {
    let res = user
        .post(&format!("{app_path}/deploys"), json!({"image": image}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "deploy {image}");
    res.json().await.unwrap()
}

pub async fn scale(user: &TestUser, app_path: &str, replicas: u32) {
    let res = user
        .post(&format!("{app_path}/scale"), json!({"replicas": replicas}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "scale to {replicas}");
}

/// Polls the app's instances until `done` holds, for [`WAIT`] at most.
pub async fn instances_until(
    user: &TestUser,
    app_path: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let res = user.get(&format!("{app_path}/instances")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let list: Vec<Value> = res.json().await.unwrap();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}; instances are {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls release `version` until its status is `status`, for `wait` at most.
pub async fn release_until(
    user: &TestUser,
    app_path: &str,
    version: u32,
    status: &str,
    wait: Duration,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let res = user.get(&format!("{app_path}/releases/{version}")).await;
        assert_eq!(res.status(), StatusCode::OK, "release v{version}");
        let release: Value = res.json().await.unwrap();
        if release["status"] == status {
            return release;
        }
        assert!(
            Instant::now() < deadline,
            "waited {wait:?} for v{version} to be {status}: {release:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn join_token(admin: &TestUser) -> String {
    let res = admin.post("/api/v1/nodes/join-tokens", json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A fresh node credential, as `gantry agent` makes one.
pub fn credential() -> String {
    tokens::generate_with_prefix(NODE_CREDENTIAL_PREFIX).secret
}

/// The hello of a node at 127.0.0.1 in zone `a` with 4 cores and 8 GiB.
pub fn hello(name: &str) -> AgentMessage {
    hello_speaking(PROTOCOL_VERSION, name)
}

pub fn hello_speaking(protocol: u32, name: &str) -> AgentMessage {
    AgentMessage::Hello {
        protocol,
        name: name.to_owned(),
        address: "127.0.0.1".to_owned(),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        capacity: NodeResources {
            cpu_millis: 4000,
            memory_mib: 8192,
        },
        agent_version: "test".to_owned(),
    }
}

/// The agent's end of `/api/v1/agent/connect`, driven by hand: it sends only what a test says
/// and answers nothing but the pings (which tungstenite answers by itself).
pub struct FakeAgent {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Its credential, to connect again as the same node.
    pub credential: String,
}

impl FakeAgent {
    /// Opens the websocket with `bearer` in `Authorization` and `join_token` in the join header;
    /// `Err` holds the HTTP status and body of a refused upgrade.
    pub async fn connect(
        app: &TestApp,
        bearer: Option<&str>,
        join_token: Option<&str>,
    ) -> Result<FakeAgent, (u16, String)> {
        let url = app.base.replacen("http://", "ws://", 1) + "/api/v1/agent/connect";
        let mut request = url.into_client_request().unwrap();
        if let Some(bearer) = bearer {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {bearer}")).unwrap(),
            );
        }
        if let Some(token) = join_token {
            request
                .headers_mut()
                .insert(JOIN_TOKEN_HEADER, HeaderValue::from_str(token).unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(FakeAgent {
                ws,
                credential: bearer.unwrap_or_default().to_owned(),
            }),
            Err(tungstenite::Error::Http(res)) => {
                let body = res
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((res.status().as_u16(), body))
            }
            Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
        }
    }

    /// A new node's first connection: a fresh credential with a fresh join token of `admin`.
    pub async fn join(app: &TestApp, admin: &TestUser) -> FakeAgent {
        let token = join_token(admin).await;
        match FakeAgent::connect(app, Some(&credential()), Some(&token)).await {
            Ok(agent) => agent,
            Err(status) => panic!("a valid join token was refused: {status:?}"),
        }
    }

    /// Joins as node `name` and reads the welcome.
    pub async fn joined(app: &TestApp, admin: &TestUser, name: &str) -> FakeAgent {
        let mut agent = FakeAgent::join(app, admin).await;
        agent.send(&hello(name)).await;
        assert!(
            matches!(agent.next().await, ServerMessage::Welcome { .. }),
            "welcome"
        );
        agent
    }

    pub async fn send(&mut self, message: &AgentMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The server's next message, skipping pings; fails the test after [`WAIT`].
    pub async fn next(&mut self) -> ServerMessage {
        let deadline = Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no message from the server in {WAIT:?}"));
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("unreadable server message {text}: {e}"))
                }
                Some(Ok(Message::Close(frame))) => {
                    panic!("the server closed the socket: {frame:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the socket failed: {e}"),
                None => panic!("the socket ended"),
            }
        }
    }

    pub async fn refusal(&mut self) -> String {
        match self.next().await {
            ServerMessage::Refused { reason } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Reads until a desired set for which `done` holds arrives, for [`WAIT`] at most; returns
    /// its generation and instances.
    pub async fn desired_until(
        &mut self,
        what: &str,
        done: impl Fn(&[DesiredInstance]) -> bool,
    ) -> (u64, Vec<DesiredInstance>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no desired set with {what} in {WAIT:?}"));
            match message {
                ServerMessage::Desired {
                    generation,
                    instances,
                } if done(&instances) => return (generation, instances),
                ServerMessage::Refused { reason } => panic!("refused: {reason}"),
                _ => continue,
            }
        }
    }

    /// Reads until a message `pick` takes, skipping the others (desired sets, cursors, acks),
    /// for [`WAIT`] at most; a refusal fails the test.
    pub async fn next_picked<T>(
        &mut self,
        what: &str,
        pick: impl Fn(ServerMessage) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no {what} in {WAIT:?}"));
            if let ServerMessage::Refused { reason } = &message {
                panic!("refused while waiting for {what}: {reason}");
            }
            if let Some(picked) = pick(message) {
                return picked;
            }
        }
    }

    /// The next acknowledgement of a logs batch (other messages are skipped).
    pub async fn logs_ack(&mut self) -> BTreeMap<Uuid, LogCursor> {
        self.next_picked("logs_ack", |m| match m {
            ServerMessage::LogsAck { instances } => Some(instances),
            _ => None,
        })
        .await
    }

    /// Ships `lines` in one batch (nothing dropped) and returns the server's acknowledgement.
    pub async fn ship(&mut self, lines: Vec<ShippedLine>) -> BTreeMap<Uuid, LogCursor> {
        self.send(&AgentMessage::Logs {
            lines,
            dropped: BTreeMap::new(),
        })
        .await;
        self.logs_ack().await
    }

    /// Reads until a desired set with instances arrives.
    pub async fn desired_with_instances(&mut self) -> (u64, Vec<DesiredInstance>) {
        self.desired_until("instances", |list| !list.is_empty())
            .await
    }

    /// Reports every instance of `desired` in `state`, as an agent does after applying the set.
    pub async fn report(
        &mut self,
        generation: u64,
        desired: &[DesiredInstance],
        state: InstanceState,
    ) {
        self.report_with(generation, desired, |_| Some(state)).await;
    }

    /// Reports the instances of `desired` in the state `state_of` gives (`None`: gone, as
    /// those told to stop are once their container is removed).
    pub async fn report_with(
        &mut self,
        generation: u64,
        desired: &[DesiredInstance],
        state_of: impl Fn(&DesiredInstance) -> Option<InstanceState>,
    ) {
        let instances = desired
            .iter()
            .enumerate()
            .filter_map(|(n, d)| {
                let state = state_of(d)?;
                Some(ObservedInstance {
                    id: d.id,
                    state,
                    reason: (state == InstanceState::CrashLoop)
                        .then(|| "exited with code 1; restarting in 1 s".to_owned()),
                    host_port: (state == InstanceState::Ready).then_some(40000 + n as u16),
                    restarts: 0,
                    last_exit_code: None,
                    started_at: Some(time::OffsetDateTime::now_utc()),
                    image_id: Some("sha256:0123".into()),
                })
            })
            .collect();
        self.send(&AgentMessage::Observed {
            generation,
            instances,
        })
        .await;
    }
}
