//! `/api/v1/nodes/stream`: the platform admin's live view of the nodes, over a real websocket,
//! with a fake agent reporting what its instances use.

use std::time::Duration;

use futures_util::StreamExt;
use gantry_common::agent::{AgentMessage, InstanceUsage, ServerMessage};
use gantry_common::cluster::{InstanceState, Node, NodeFrame, NodeResources};
use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::fake_agent::{deploy, hello, FakeAgent, WAIT};
use crate::support::{TestApp, PASSWORD};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A fresh session of `email`: its cookie (`gantry_session=…`) and CSRF token.
async fn session(app: &TestApp, email: &str) -> (String, String) {
    let res = app
        .anonymous()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "login of {email}");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// Opens the node stream with these headers; the refused upgrade's status, or the socket.
async fn open(app: &TestApp, headers: &[(&'static str, &str)]) -> Result<Socket, u16> {
    let url = app.base.replacen("http://", "ws://", 1) + "/api/v1/nodes/stream";
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    }
}

/// The nodes of the stream's next frame, or what ended the stream instead.
async fn next_nodes(ws: &mut Socket, within: Duration) -> Result<Vec<Node>, String> {
    let deadline = Instant::now() + within;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, ws.next()).await else {
            return Err(format!("no frame in {within:?}"));
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let NodeFrame::Nodes { nodes } = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("unreadable frame {text}: {e}"));
                return Ok(nodes);
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return Err(format!("closed {} {}", u16::from(frame.code), frame.reason))
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("ended: {other:?}")),
        }
    }
}

#[tokio::test]
async fn the_admin_sees_a_nodes_usage_as_soon_as_its_agent_reports_it() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;
    agent.send(&hello("node-a")).await;
    assert!(matches!(agent.next().await, ServerMessage::Welcome { .. }));
    admin.create_app(&admin.team, "web").await;
    deploy(
        &admin,
        &format!("/api/v1/teams/{}/apps/web", admin.team),
        "gantry-hello:1",
    )
    .await;
    let (generation, desired) = agent.desired_with_instances().await;
    agent
        .report(generation, &desired, InstanceState::Ready)
        .await;

    let (cookie, _) = session(&app, "admin@example.com").await;
    let mut ws = open(&app, &[("cookie", &cookie)])
        .await
        .expect("the admin's stream");
    // At once: the node, as GET /api/v1/nodes lists it, with nothing reported yet.
    let nodes = next_nodes(&mut ws, WAIT).await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!((nodes[0].name.as_str(), nodes[0].used), ("node-a", None));

    // A report shows within a second or so; without one, the next frame is 5 s away.
    let reported = Instant::now();
    agent
        .send(&AgentMessage::Usage {
            instances: vec![InstanceUsage {
                instance: desired[0].id,
                cpu_millis: 250,
                memory_bytes: 64 * 1024 * 1024,
                rx_bytes_per_second: 0,
                tx_bytes_per_second: 0,
            }],
        })
        .await;
    let used = loop {
        let nodes = next_nodes(&mut ws, WAIT).await.unwrap();
        if let Some(used) = nodes[0].used {
            break used;
        }
    };
    assert_eq!(
        used,
        NodeResources {
            cpu_millis: 250,
            memory_mib: 64
        }
    );
    assert!(
        reported.elapsed() < Duration::from_secs(4),
        "the report took {:?} to show: it waited for the periodic frame",
        reported.elapsed()
    );
}

#[tokio::test]
async fn only_a_platform_admins_own_session_may_watch_the_nodes_and_logging_out_ends_it() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    app.signup("bob@example.com").await;
    let (admin_cookie, admin_csrf) = session(&app, "admin@example.com").await;
    let (bob_cookie, _) = session(&app, "bob@example.com").await;
    let token = admin.token(&admin.team, "owner").await;
    let bearer = format!("Bearer {token}");
    let foreign = "https://evil.example";

    for (who, headers, status) in [
        ("nobody", vec![], 401),
        (
            "a user who is not a platform admin",
            vec![("cookie", bob_cookie.as_str())],
            403,
        ),
        (
            "the admin's API token",
            vec![("authorization", bearer.as_str())],
            403,
        ),
        (
            "the admin's cookie from another site's page",
            vec![("cookie", admin_cookie.as_str()), ("origin", foreign)],
            403,
        ),
    ] {
        assert_eq!(open(&app, &headers).await.err(), Some(status), "{who}");
    }

    // From the server's own page it opens; logging out closes it within seconds (1008).
    let own = app.base.clone();
    let mut ws = open(&app, &[("cookie", &admin_cookie), ("origin", &own)])
        .await
        .expect("the admin's stream from the server's own page");
    next_nodes(&mut ws, WAIT).await.unwrap();
    let res = app
        .anonymous()
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &admin_cookie)
        .header("x-csrf-token", &admin_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let ended = loop {
        match next_nodes(&mut ws, WAIT).await {
            Ok(_) => continue,
            Err(ended) => break ended,
        }
    };
    assert!(ended.starts_with("closed 1008"), "{ended}");
}
