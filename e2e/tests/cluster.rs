//! The embedded cluster end to end: a `gantry server` and three `gantry agent` processes (distinct
//! names and zones) on the real Docker engine, running the `gantry-hello` image
//! (`scripts/build-hello-image`). Spread, scale, a killed node, a restarted node, a drain, a
//! server killed mid-scale, and an image that cannot be pulled.
//!
//! Everything the test creates carries its run's unique team and node names, and a guard removes
//! those containers and the team network even when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_e2e::cluster::{
    self, containers, docker, kill9, start_agent, start_server, Admin, DockerCleanup, IMAGE,
};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::{json, Value};

fn state(i: &Value) -> &str {
    i["state"].as_str().unwrap_or_default()
}

fn node(i: &Value) -> &str {
    i["node"].as_str().unwrap_or_default()
}

fn ready(list: &[Value]) -> Vec<&Value> {
    list.iter().filter(|i| state(i) == "ready").collect()
}

/// Exactly `n` instances, all ready (nothing left stopping, pending or lost).
fn exactly_ready(n: usize) -> impl Fn(&[Value]) -> bool {
    move |list| list.len() == n && ready(list).len() == n
}

#[tokio::test]
async fn three_nodes_spread_scale_fail_drain_and_survive_a_server_crash() -> anyhow::Result<()> {
    docker(&["image", "inspect", IMAGE]).context(
        "the demo image is missing: run scripts/build-hello-image (scripts/test does) with Docker running",
    )?;
    let run = format!(
        "{:x}",
        std::process::id() ^ (Instant::now().elapsed().as_nanos() as u32)
    );
    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let port = free_port();
    let router_port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&db_url, port, router_port).await?;

    let admin = Admin::sign_up(&base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let token = token["token"].as_str().context("join token")?.to_owned();

    let names: Vec<String> = (1..=3).map(|n| format!("e2e-{run}-n{n}")).collect();
    let mut agents = Vec::new();
    for (n, name) in names.iter().enumerate() {
        agents.push(start_agent(
            &base,
            &token,
            name,
            &format!("z{n}"),
            dir.path(),
        )?);
    }
    admin.wait_nodes_ready(3).await?;

    // Deploy 3 replicas: one per node, each answering on its published port.
    admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "hello", "port": 8888, "replicas": 3, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(
            &format!("/api/v1/teams/{}/apps/hello/deploys", admin.team),
            json!({"image": IMAGE}),
        )
        .await?;
    let list = admin
        .wait_instances("hello", "3 ready replicas", exactly_ready(3))
        .await?;
    let spread: BTreeSet<&str> = list.iter().map(node).collect();
    assert_eq!(
        spread.len(),
        3,
        "replicas should spread over the 3 nodes: {list:#?}"
    );
    for i in &list {
        let endpoint = i["endpoint"].as_str().context("endpoint")?;
        assert!(
            endpoint.starts_with("127.0.0.1:"),
            "published on loopback: {endpoint}"
        );
        let body = reqwest::get(format!("http://{endpoint}/"))
            .await?
            .text()
            .await?;
        assert!(body.contains("Hello, 世界"), "{endpoint} answered {body:?}");
    }

    // Scale to 5, then to 1: the containers follow.
    admin.scale("hello", 5).await?;
    admin
        .wait_instances("hello", "5 ready replicas", exactly_ready(5))
        .await?;
    admin.scale("hello", 1).await?;
    admin
        .wait_instances("hello", "1 ready replica", exactly_ready(1))
        .await?;
    wait_for_containers(&admin.team, 1).await?;
    admin.scale("hello", 3).await?;
    admin
        .wait_instances("hello", "3 ready replicas again", exactly_ready(3))
        .await?;

    // kill -9 the first node's agent and its containers: replaced on the others within 60 s.
    let victim = &names[0];
    kill9(&agents[0])?;
    let victims = containers(&format!("gantry.node={victim}"))?;
    if !victims.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(victims.iter().map(String::as_str));
        docker(&args)?;
    }
    let list = admin
        .wait_instances("hello", "replacements on the surviving nodes", |list| {
            let serving: Vec<_> = ready(list)
                .into_iter()
                .filter(|i| node(i) != victim)
                .collect();
            serving.len() == 3
        })
        .await?;
    assert!(
        list.iter().any(|i| node(i) == victim && state(i) == "lost"),
        "the dead node's instance shows as lost: {list:#?}"
    );
    let nodes = admin.nodes().await?;
    let dead = nodes
        .iter()
        .find(|n| n["name"] == victim.as_str())
        .context("victim node")?;
    assert_eq!(dead["status"], "down");

    // The node comes back: the lost instance is cleaned up, nothing is duplicated.
    agents[0] = start_agent(&base, &token, victim, "z0", dir.path())?;
    admin
        .wait_instances(
            "hello",
            "lost instances gone after the node returned",
            exactly_ready(3),
        )
        .await?;
    wait_for_containers(&admin.team, 3).await?;

    // Drain the second node: its instances move, none is left on it.
    let drained = &names[1];
    admin
        .post(&format!("/api/v1/nodes/{drained}/drain"), json!({}))
        .await?;
    let list = admin
        .wait_instances("hello", "drained node emptied", |list| {
            exactly_ready(3)(list) && list.iter().all(|i| node(i) != drained)
        })
        .await?;
    assert!(list.iter().all(|i| node(i) != drained));
    wait_for_containers_on(drained, 0).await?;

    // kill -9 the server in the middle of a scale; after a restart exactly 5 run, and the
    // containers that were right all along were not restarted.
    let before = containers(&format!("gantry.team={}", admin.team))?;
    admin.scale("hello", 5).await?;
    kill9(&server.process)?;
    let _ = server.process.child.wait().await;
    server = start_server(&db_url, port, router_port).await?;
    admin
        .wait_instances(
            "hello",
            "5 replicas after the server restart",
            exactly_ready(5),
        )
        .await?;
    wait_for_containers(&admin.team, 5).await?;
    let after = containers(&format!("gantry.team={}", admin.team))?;
    for id in &before {
        assert!(
            after.contains(id),
            "container {id} was replaced across the server restart"
        );
    }

    // An image nobody can pull fails its release at once, with the engine's message; nothing
    // is left running.
    admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "broken", "port": 8888, "replicas": 1, "cpu_millis": 100,
                   "memory_mib": 32}),
        )
        .await?;
    // A registry on a closed loopback port: the pull fails without leaving the machine.
    admin
        .post(
            &format!("/api/v1/teams/{}/apps/broken/deploys", admin.team),
            json!({"image": "127.0.0.1:1/nope/missing:1"}),
        )
        .await?;
    let release = admin
        .wait_release("broken", 1, "failed", Duration::from_secs(60))
        .await?;
    let reason = release["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("image_pull_error") && reason.contains("127.0.0.1:1"),
        "the engine's message is shown: {release:#}"
    );
    admin
        .wait_instances("broken", "nothing left of the failed release", |list| {
            list.is_empty()
        })
        .await?;

    let nodes: BTreeMap<String, Value> = admin
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n["name"].as_str().unwrap_or_default().to_owned(), n))
        .collect();
    assert_eq!(nodes[drained]["status"], "draining");
    assert_eq!(nodes[drained]["instances"], 0);

    for agent in &agents {
        let _ = kill9(agent);
    }
    let _ = server.process.terminate(Duration::from_secs(10)).await;
    Ok(())
}

async fn wait_for_containers(team: &str, n: usize) -> anyhow::Result<()> {
    cluster::wait_for_containers(&format!("gantry.team={team}"), Some("hello"), n)
        .await
        .map(drop)
}

async fn wait_for_containers_on(node: &str, n: usize) -> anyhow::Result<()> {
    cluster::wait_for_containers(&format!("gantry.node={node}"), Some("hello"), n)
        .await
        .map(drop)
}
