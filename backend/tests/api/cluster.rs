//! The embedded cluster through its API: deploys, scaling and instances (for team members),
//! nodes and join tokens (for the platform admin), and the agent websocket spoken by a fake
//! agent over a real socket, because there the wire is what is under test.

use gantry_common::agent::{AgentMessage, ObservedInstance, ServerMessage, PROTOCOL_VERSION};
use gantry_common::cluster::InstanceState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::fake_agent::{
    credential, deploy, error_message, hello, hello_speaking, instances_until, join_token, scale,
    FakeAgent, WAIT,
};
use crate::support::{error_code, TestApp, TokenClient};

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
    let release: Value = res.json().await.unwrap();
    assert_eq!(release["version"], 1);
    assert_eq!(release["status"], "pending");
    assert_eq!(release["image"], "gantry-hello:latest");
    assert_eq!(release["cause"], "Deploy gantry-hello:latest");
    assert_eq!(release["created_by"], "alice@example.com");

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
    assert_eq!(deploy["details"]["release"], 1);
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
    // 100 instances of the default size are beyond the default team quota…
    let res = alice
        .post(&format!("{web}/scale"), json!({"replicas": 100}))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(error_message(res).await.contains("of 50 instances"));
    // …and within a bigger one (alice, the first account, is the platform admin).
    let res = alice
        .put(
            &format!("/api/v1/platform/teams/{}/quota", alice.team),
            json!({"apps": 10, "instances": 100, "cpu_millis": 50000, "memory_mib": 25600}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    for replicas in [0, 100] {
        let res = alice
            .post(&format!("{web}/scale"), json!({"replicas": replicas}))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{replicas}");
        let workload: Value = res.json().await.unwrap();
        assert_eq!(
            workload,
            json!({"release": null, "image": null, "replicas": replicas})
        );
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
    let day: Value = res.json().await.unwrap();
    assert!(day["token"].as_str().unwrap().starts_with("gjt_"));
    let expires = time::OffsetDateTime::parse(
        day["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::hours(23) && ttl <= time::Duration::hours(24),
        "a day by default: {ttl}"
    );

    let res = admin
        .post("/api/v1/nodes/join-tokens", json!({"ttl_seconds": 3600}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let hour: Value = res.json().await.unwrap();
    assert!(hour["expires_at"].is_string(), "{hour}");
    assert_ne!(hour["token"], day["token"]);

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
async fn an_agent_without_a_known_credential_or_a_valid_join_token_is_refused_at_the_upgrade() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let token = join_token(&admin).await;
    let refused = |r: Result<FakeAgent, (u16, String)>| r.err().map(|(status, _)| status);

    // Nothing, an API token, or an old agent presenting a join token as its credential.
    assert_eq!(
        refused(FakeAgent::connect(&app, None, None).await),
        Some(401)
    );
    let api_token = admin.token(&admin.team, "member").await;
    assert_eq!(
        refused(FakeAgent::connect(&app, Some(&api_token), Some(&token)).await),
        Some(401)
    );
    let (status, body) = FakeAgent::connect(&app, Some(&token), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("older agent protocol"), "{body}");

    // A new credential needs a valid join token.
    let (status, body) = FakeAgent::connect(&app, Some(&credential()), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("join token"), "{body}");
    let wrong = "gjt_".to_owned() + &"x".repeat(43);
    assert_eq!(
        refused(FakeAgent::connect(&app, Some(&credential()), Some(&wrong)).await),
        Some(401)
    );
    assert_eq!(app.count("nodes").await, 0);
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
    // A name the API's own routes beside the nodes' take.
    let mut agent = FakeAgent::join(&app, &admin).await;
    agent.send(&hello("stream")).await;
    let reason = agent.refusal().await;
    assert!(reason.contains("reserved"), "{reason}");
    assert_eq!(app.count("nodes").await, 0);
}

#[tokio::test]
async fn a_node_joins_and_is_cordoned_drained_and_uncordoned_by_name() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::join(&app, &admin).await;

    agent.send(&hello("node-a")).await;
    assert!(matches!(agent.next().await, ServerMessage::Welcome { .. }));
    // Where the server's logs of the node's instances end: none yet.
    match agent.next().await {
        ServerMessage::LogCursors { instances } => assert!(instances.is_empty()),
        other => panic!("expected the log cursors, got {other:?}"),
    }
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
    assert_eq!(wanted.port, Some(8080));
    assert_eq!(wanted.release, 1);
    assert_eq!(wanted.env.0["PORT"], "8080");
    assert_eq!(wanted.env.0["GANTRY_RELEASE"], "v1");
    assert!(!wanted.stop);

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
                image_id: Some("sha256:0123".into()),
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

// ---- node credentials, join tokens, removal and the platform audit log ----

#[tokio::test]
async fn a_node_registers_its_credential_once_and_then_needs_no_join_token() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let agent = FakeAgent::joined(&app, &admin, "node-a").await;
    let credential = agent.credential.clone();
    drop(agent);

    // The join token is revoked; the node still connects with its own credential.
    let tokens: Value = admin
        .get("/api/v1/nodes/join-tokens")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens[0]["nodes_joined"], 1);
    assert_eq!(tokens[0]["status"], "active");
    let id = tokens[0]["id"].as_str().unwrap();
    let res = admin
        .delete(&format!("/api/v1/nodes/join-tokens/{id}"))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let mut again = FakeAgent::connect(&app, Some(&credential), None)
        .await
        .expect("a registered credential connects alone");
    again.send(&hello("node-a")).await;
    assert!(matches!(again.next().await, ServerMessage::Welcome { .. }));
    let nodes: Value = admin.get("/api/v1/nodes").await.json().await.unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(
        nodes[0]["warnings"],
        json!([]),
        "the server is on loopback too"
    );

    // The credential speaks for its own node only.
    drop(again);
    let mut other_name = FakeAgent::connect(&app, Some(&credential), None)
        .await
        .unwrap();
    other_name.send(&hello("node-b")).await;
    let reason = other_name.refusal().await;
    assert!(reason.contains("belongs to node node-a"), "{reason}");
}

#[tokio::test]
async fn another_agent_cannot_take_a_registered_nodes_name() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let _owner = FakeAgent::joined(&app, &admin, "node-a").await;

    let mut intruder = FakeAgent::join(&app, &admin).await;
    intruder.send(&hello("node-a")).await;
    let reason = intruder.refusal().await;
    assert!(
        reason.contains("node name node-a is taken") && reason.contains("DELETE /api/v1/nodes"),
        "{reason}"
    );
    let nodes: Value = admin.get("/api/v1/nodes").await.json().await.unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn revoked_and_expired_join_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let revoked = join_token(&admin).await;
    let tokens: Value = admin
        .get("/api/v1/nodes/join-tokens")
        .await
        .json()
        .await
        .unwrap();
    let id = tokens[0]["id"].as_str().unwrap();
    let res = admin
        .delete(&format!("/api/v1/nodes/join-tokens/{id}"))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, body) = FakeAgent::connect(&app, Some(&credential()), Some(&revoked))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("revoked or expired"), "{body}");

    let expired = join_token(&admin).await;
    sqlx::query(
        "UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE revoked_at IS NULL",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (status, _) = FakeAgent::connect(&app, Some(&credential()), Some(&expired))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let tokens: Value = admin
        .get("/api/v1/nodes/join-tokens")
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["expired", "revoked"]);
    assert!(!tokens.to_string().contains("gjt_"), "no secret is listed");
    assert_eq!(app.count("nodes").await, 0);

    let res = admin
        .delete(&format!(
            "/api/v1/nodes/join-tokens/{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = admin.delete("/api/v1/nodes/join-tokens/not-an-id").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_removed_nodes_agent_is_told_and_its_credential_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::joined(&app, &admin, "node-a").await;
    let credential = agent.credential.clone();

    // Connected: drained, then deleted once empty (it is empty already).
    let res = admin.delete("/api/v1/nodes/node-a").await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let node: Value = res.json().await.unwrap();
    assert_eq!(node["status"], "removing");
    let reason = loop {
        match agent.next().await {
            ServerMessage::Refused { reason } => break reason,
            _ => continue,
        }
    };
    assert!(reason.contains("removed"), "{reason}");
    let (status, body) = FakeAgent::connect(&app, Some(&credential), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("unknown"), "{body}");
    assert_eq!(app.count("nodes").await, 0);

    // Not connected: deleted at once.
    let agent_b = FakeAgent::joined(&app, &admin, "node-b").await;
    drop(agent_b);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut draining = false;
    loop {
        let res = admin.delete("/api/v1/nodes/node-b").await;
        if res.status() == StatusCode::NO_CONTENT {
            break;
        }
        // A node being removed and empty is deleted by the reconciler too.
        if draining && res.status() == StatusCode::NOT_FOUND {
            break;
        }
        // Until the server notices the socket closed, the node counts as connected.
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        draining = true;
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let res = admin.delete("/api/v1/nodes/node-b").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("nodes").await, 0);

    // Every step is in the platform audit log, which only a platform admin reads.
    let audit: Value = admin.get("/api/v1/audit").await.json().await.unwrap();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "join_token.create",
        "node.join",
        "node.remove",
        "node.removed",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(!audit.to_string().contains("gjt_") && !audit.to_string().contains("gnc_"));
    let bob = app.signup("bob@example.com").await;
    let res = bob.get("/api/v1/audit").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// Regression: the `lost` rows of a removed node used to stay forever.
#[tokio::test]
async fn removing_a_down_node_cleans_up_its_lost_instances_and_they_are_replaced() {
    let app = TestApp::spawn_with(|c| c.node_timeout = std::time::Duration::from_secs(4)).await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::joined(&app, &admin, "node-a").await;
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
    agent
        .report(generation, &desired, InstanceState::Ready)
        .await;
    instances_until(&admin, &web, "the instance ready", |list| {
        list.len() == 1 && list[0]["state"] == "ready"
    })
    .await;

    // The agent goes silent: the node is marked down, its instance lost, a replacement waits.
    drop(agent);
    let wait = std::time::Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + wait;
    let listed = loop {
        let list: Vec<Value> = admin
            .get(&format!("{web}/instances"))
            .await
            .json()
            .await
            .unwrap();
        if list.iter().any(|i| i["state"] == "lost") && list.iter().any(|i| i["state"] == "pending")
        {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(listed.len(), 2, "{listed:#?}");

    let res = admin.delete("/api/v1/nodes/node-a").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let list = instances_until(&admin, &web, "only the replacement left", |list| {
        list.len() == 1
    })
    .await;
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(app.count("nodes").await, 0);
}
