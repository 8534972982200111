//! The embedded cluster through its API: deploys, scaling and instances (for team members),
//! nodes and join tokens (for the platform admin), and the agent websocket spoken by a fake
//! agent over a real socket, because there the wire is what is under test.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gantry_common::agent::{AgentMessage, ObservedInstance, ServerMessage, PROTOCOL_VERSION};
use gantry_common::cluster::{InstanceState, NodeResources};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{error_code, TestApp, TestUser, TokenClient};

/// How long anything the reconciler or the agent socket does in the background may take.
const WAIT: Duration = Duration::from_secs(10);

// ---- deploy and scale ----

#[tokio::test]
async fn a_member_deploys_an_image_and_it_is_recorded_and_audited() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);

    let res = alice
        .post(
            &format!("{web}/deploys"),
            json!({"image": "gantry-hello:latest"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let workload: Value = res.json().await.unwrap();
    assert_eq!(
        workload,
        json!({"image": "gantry-hello:latest", "replicas": 1})
    );

    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(got["image"], "gantry-hello:latest");

    let audit: Value = alice
        .get(&format!("/api/v1/teams/{}/audit", alice.team))
        .await
        .json()
        .await
        .unwrap();
    let deploy = &audit["events"][0];
    assert_eq!(deploy["action"], "app.deploy");
    assert_eq!(deploy["target"], "app:web");
    assert_eq!(deploy["details"]["image"], "gantry-hello:latest");
}

#[tokio::test]
async fn an_invalid_image_is_refused_and_the_deployed_one_stays() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);
    deploy(&alice, &web, "gantry-hello:1").await;

    for image in ["Hello", "a b", "$(id)", ""] {
        let res = alice
            .post(&format!("{web}/deploys"), json!({"image": image}))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{image:?}");
        let message = error_message(res).await;
        assert!(message.contains("image"), "{image:?}: {message}");
    }
    let res = alice
        .post(
            &format!("{web}/deploys"),
            json!({"image": "gantry-hello:2", "tag": "2"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(res).await.contains("unknown field `tag`"));

    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(got["image"], "gantry-hello:1");
}

#[tokio::test]
async fn viewers_cannot_deploy_or_scale_and_other_teams_apps_are_invisible() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let mallory = app.signup("mallory@example.com").await;
    alice.create_app(&alice.team, "web").await;
    alice.add_member(&alice.team, &bob, "viewer").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);

    let res = bob
        .post(
            &format!("{web}/deploys"),
            json!({"image": "gantry-hello:latest"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "forbidden");
    let res = bob
        .post(&format!("{web}/scale"), json!({"replicas": 3}))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(bob.get(&format!("{web}/instances")).await.status(), 200);

    let res = mallory
        .post(
            &format!("{web}/deploys"),
            json!({"image": "gantry-hello:latest"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    let res = mallory
        .post(&format!("{web}/scale"), json!({"replicas": 3}))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = mallory.get(&format!("{web}/instances")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(got["image"], Value::Null);
    assert_eq!(got["replicas"], 1);
}

#[tokio::test]
async fn scaling_takes_0_to_100_replicas_and_before_a_deploy_only_records_them() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);

    for replicas in [0, 100] {
        let res = alice
            .post(&format!("{web}/scale"), json!({"replicas": replicas}))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{replicas}");
        let workload: Value = res.json().await.unwrap();
        assert_eq!(workload, json!({"image": null, "replicas": replicas}));
    }
    let res = alice
        .post(&format!("{web}/scale"), json!({"replicas": 101}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = error_message(res).await;
    assert!(message.contains("between 0 and 100"), "{message}");

    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(got["replicas"], 100);
    assert_eq!(got["image"], Value::Null);
    // Nothing to run yet. A deploy of another app proves a reconcile pass (which plans every
    // app at once) ran after the scale, without sleeping for an arbitrary time.
    alice.create_app(&alice.team, "other").await;
    let other = format!("/api/v1/teams/{}/apps/other", alice.team);
    deploy(&alice, &other, "gantry-hello:latest").await;
    instances_until(&alice, &other, "the other app's instance", |list| {
        list.len() == 1
    })
    .await;
    let none: Value = alice
        .get(&format!("{web}/instances"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn without_nodes_instances_wait_pending_and_follow_the_replica_count() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let res = alice
        .post(
            &format!("/api/v1/teams/{}/apps", alice.team),
            json!({"name": "web", "replicas": 2}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);
    deploy(&alice, &web, "gantry-hello:latest").await;

    let pending = instances_until(&alice, &web, "2 pending instances", |list| {
        list.len() == 2 && list.iter().all(|i| i["state"] == "pending")
    })
    .await;
    for instance in &pending {
        assert_eq!(instance["image"], "gantry-hello:latest");
        assert_eq!(instance["node"], Value::Null);
        let reason = instance["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("no node"), "{instance}");
    }

    scale(&alice, &web, 1).await;
    instances_until(&alice, &web, "exactly 1 instance", |list| list.len() == 1).await;
    scale(&alice, &web, 0).await;
    instances_until(&alice, &web, "no instance", |list| list.is_empty()).await;
}

// ---- nodes and join tokens ----

#[tokio::test]
async fn the_platform_admin_lists_nodes_and_creates_join_tokens() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;

    let res = admin.get("/api/v1/nodes").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));

    let res = admin.post("/api/v1/nodes/join-tokens", json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let forever: Value = res.json().await.unwrap();
    assert!(forever["token"].as_str().unwrap().starts_with("gjt_"));
    assert_eq!(forever["expires_at"], Value::Null);

    let res = admin
        .post("/api/v1/nodes/join-tokens", json!({"ttl_seconds": 3600}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let hour: Value = res.json().await.unwrap();
    assert!(hour["expires_at"].is_string(), "{hour}");
    assert_ne!(hour["token"], forever["token"]);

    let res = admin
        .post("/api/v1/nodes/join-tokens", json!({"ttl_seconds": 10}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = error_message(res).await;
    assert!(message.contains("ttl_seconds"), "{message}");
}

#[tokio::test]
async fn only_the_admins_session_manages_nodes() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let bob = app.signup("bob@example.com").await;

    let res = bob.get("/api/v1/nodes").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "forbidden");
    let res = bob.post("/api/v1/nodes/join-tokens", json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = bob.post("/api/v1/nodes/node-a/cordon", json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A team's API token acts for that team only, even when an admin created it.
    let token = TokenClient::new(&app, &admin.token(&admin.team, "member").await);
    let res = token.send(Method::GET, "/api/v1/nodes", None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = token
        .send(Method::POST, "/api/v1/nodes/join-tokens", Some(json!({})))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("join_tokens").await, 0);
}

#[tokio::test]
async fn maintenance_of_an_unknown_node_is_a_404() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    for action in ["cordon", "uncordon", "drain"] {
        let res = admin
            .post(&format!("/api/v1/nodes/nowhere/{action}"), json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
        assert_eq!(error_code(res).await, "not_found");
    }
}

// ---- the agent websocket ----

#[tokio::test]
async fn an_agent_without_a_valid_join_token_is_refused_at_the_upgrade() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    join_token(&admin).await;

    assert_eq!(FakeAgent::connect(&app, None).await.err(), Some(401));
    let wrong = "gjt_".to_owned() + &"x".repeat(40);
    assert_eq!(
        FakeAgent::connect(&app, Some(&wrong)).await.err(),
        Some(401)
    );
    let api_token = admin.token(&admin.team, "member").await;
    assert_eq!(
        FakeAgent::connect(&app, Some(&api_token)).await.err(),
        Some(401)
    );
}

#[tokio::test]
async fn an_agent_of_another_protocol_is_told_which_versions_differ() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;

    agent.send(&hello_speaking(0, "node-a")).await;
    let reason = agent.refusal().await;
    assert!(
        reason.contains(&format!("protocol {PROTOCOL_VERSION}")) && reason.contains("speaks 0"),
        "{reason}"
    );
    assert_eq!(app.count("nodes").await, 0);
}

#[tokio::test]
async fn an_agent_with_a_bad_node_name_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;

    agent.send(&hello("Node A")).await;
    let reason = agent.refusal().await;
    assert!(reason.contains("node name"), "{reason}");
    assert_eq!(app.count("nodes").await, 0);
}

#[tokio::test]
async fn a_node_joins_and_is_cordoned_drained_and_uncordoned_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;

    agent.send(&hello("node-a")).await;
    assert!(matches!(agent.next().await, ServerMessage::Welcome { .. }));
    match agent.next().await {
        ServerMessage::Desired { instances, .. } => assert_eq!(instances, []),
        other => panic!("expected the (empty) desired set, got {other:?}"),
    }

    let nodes: Value = admin.get("/api/v1/nodes").await.json().await.unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert_eq!(node["name"], "node-a");
    assert_eq!(node["status"], "ready");
    assert_eq!(node["address"], "127.0.0.1");
    assert_eq!(node["labels"], json!({"zone": "a"}));
    assert_eq!(
        node["capacity"],
        json!({"cpu_millis": 4000, "memory_mib": 8192})
    );
    assert_eq!(node["instances"], 0);

    for (action, status) in [
        ("cordon", "cordoned"),
        ("drain", "draining"),
        ("uncordon", "ready"),
    ] {
        let res = admin
            .post(&format!("/api/v1/nodes/node-a/{action}"), json!({}))
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{action}");
        let node: Value = res.json().await.unwrap();
        assert_eq!(node["status"], status, "after {action}");
        let listed: Value = admin.get("/api/v1/nodes").await.json().await.unwrap();
        assert_eq!(listed[0]["status"], status, "listed after {action}");
    }
}

#[tokio::test]
async fn a_deploy_is_placed_on_the_connected_node_and_its_report_is_shown() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;
    agent.send(&hello("node-a")).await;
    assert!(matches!(agent.next().await, ServerMessage::Welcome { .. }));

    let res = admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "web", "replicas": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let web = format!("/api/v1/teams/{}/apps/web", admin.team);
    deploy(&admin, &web, "gantry-hello:latest").await;

    let (generation, desired) = agent.desired_with_instances().await;
    assert_eq!(desired.len(), 1, "{desired:?}");
    let wanted = &desired[0];
    assert_eq!(wanted.image, "gantry-hello:latest");
    assert_eq!(wanted.app, "web");
    assert_eq!(wanted.team, admin.team);
    assert_eq!(wanted.port, 8080);

    let listed = instances_until(&admin, &web, "the placed instance", |list| {
        list.len() == 1 && list[0]["node"] == "node-a"
    })
    .await;
    assert_eq!(listed[0]["id"], wanted.id.to_string().as_str());
    assert_eq!(listed[0]["state"], "creating");
    assert_eq!(listed[0]["endpoint"], Value::Null);

    agent
        .send(&AgentMessage::Observed {
            generation,
            instances: vec![ObservedInstance {
                id: wanted.id,
                state: InstanceState::Ready,
                reason: None,
                host_port: Some(40123),
                restarts: 0,
                last_exit_code: None,
                started_at: Some(time::OffsetDateTime::now_utc()),
            }],
        })
        .await;
    let ready = instances_until(&admin, &web, "the instance ready", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    })
    .await;
    assert_eq!(ready[0]["endpoint"], "127.0.0.1:40123");
    assert_eq!(ready[0]["node"], "node-a");

    let nodes: Value = admin.get("/api/v1/nodes").await.json().await.unwrap();
    assert_eq!(nodes[0]["instances"], 1);
    assert_eq!(
        nodes[0]["allocated"],
        json!({"cpu_millis": 500, "memory_mib": 256})
    );
}

// ---- helpers ----

async fn error_message(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("error bodies are JSON");
    body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned()
}

async fn deploy(user: &TestUser, app_path: &str, image: &str) {
    let res = user
        .post(&format!("{app_path}/deploys"), json!({"image": image}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "deploy {image}");
}

async fn scale(user: &TestUser, app_path: &str, replicas: u32) {
    let res = user
        .post(&format!("{app_path}/scale"), json!({"replicas": replicas}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "scale to {replicas}");
}

/// Polls the app's instances until `done` holds, for [`WAIT`] at most.
async fn instances_until(
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn join_token(admin: &TestUser) -> String {
    let res = admin.post("/api/v1/nodes/join-tokens", json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// The hello of a node at 127.0.0.1 in zone `a` with 4 cores and 8 GiB.
fn hello(name: &str) -> AgentMessage {
    hello_speaking(PROTOCOL_VERSION, name)
}

fn hello_speaking(protocol: u32, name: &str) -> AgentMessage {
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
struct FakeAgent {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl FakeAgent {
    /// Opens the websocket with `token` as bearer; `Err` holds the HTTP status of a refused upgrade.
    async fn connect(app: &TestApp, token: Option<&str>) -> Result<FakeAgent, u16> {
        let url = app.base.replacen("http://", "ws://", 1) + "/api/v1/agent/connect";
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(FakeAgent { ws }),
            Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
        }
    }

    /// Connects with a fresh join token of `admin`.
    async fn join(app: &TestApp, admin: &TestUser) -> FakeAgent {
        let token = join_token(admin).await;
        match FakeAgent::connect(app, Some(&token)).await {
            Ok(agent) => agent,
            Err(status) => panic!("a valid join token was refused with HTTP {status}"),
        }
    }

    async fn send(&mut self, message: &AgentMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The server's next message, skipping pings; fails the test after [`WAIT`].
    async fn next(&mut self) -> ServerMessage {
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

    async fn refusal(&mut self) -> String {
        match self.next().await {
            ServerMessage::Refused { reason } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Reads until a desired set with instances arrives (the welcome and empty sets before it
    /// are skipped), for [`WAIT`] at most; returns its generation and instances.
    async fn desired_with_instances(
        &mut self,
    ) -> (u64, Vec<gantry_common::agent::DesiredInstance>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no desired set with instances in {WAIT:?}"));
            match message {
                ServerMessage::Desired {
                    generation,
                    instances,
                } if !instances.is_empty() => return (generation, instances),
                ServerMessage::Refused { reason } => panic!("refused: {reason}"),
                _ => continue,
            }
        }
    }
}
