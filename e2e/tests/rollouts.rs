//! Releases, the router and rolling deploys end to end: a `gantry server`, two `gantry agent`
//! processes on the real Docker engine, the hello image, and an open-loop load generator sending
//! 200 requests/s through the router while the app changes underneath:
//!
//! the router answers the app's host (404 for an unknown one, 503 for an app with nothing
//! ready); a config change rolls out v2 under load with no failed request and the answers switch
//! from v1 to v2; then a scale 3 → 1, and a node drain, again with no failed request; a release
//! that never becomes ready fails at its progress deadline while the previous one keeps serving;
//! a rollback; a `kill -9` of the server in the middle of a rollout, after which it completes
//! with exactly the instances wanted. Then the nodes' credentials: a second agent cannot take a
//! node's name, a revoked join token is refused, and a removed node's agent is told and cannot
//! come back with its old credential.
//!
//! One server serves the whole journey (each step builds on the last). Everything it creates
//! carries the run's team and node names, and a guard removes those containers and networks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gantry_e2e::cluster::{container_label, start_agent, wait_for_containers, CONVERGE, IMAGE};
use gantry_e2e::load::{Load, Report};
use gantry_e2e::stage::Stage;
use gantry_e2e::Running;
use serde_json::{json, Value};

/// The rate the issue asks for.
const RATE: u32 = 200;

fn state(i: &Value) -> &str {
    i["state"].as_str().unwrap_or_default()
}

/// Exactly `n` instances, all ready, all of release `version`.
fn exactly_ready_of(n: usize, version: u32) -> impl Fn(&[Value]) -> bool {
    move |list| {
        list.len() == n
            && list
                .iter()
                .all(|i| state(i) == "ready" && i["release"] == version)
    }
}

/// No failed request, and (when given) the answers went from `from` to `to` and ended on `to`.
fn assert_zero_downtime(what: &str, report: &Report, from: Option<u32>, to: u32) {
    let releases = report.releases();
    let switched = releases.iter().position(|r| *r == to);
    eprintln!(
        "{what}: {}; first answer from v{to} at request {switched:?}",
        report.summary()
    );
    assert!(
        report.total() >= RATE as usize,
        "{what}: too few requests: {}",
        report.summary()
    );
    assert!(report.failures().is_empty(), "{what}: {}", report.summary());
    if let Some(from) = from {
        assert_eq!(releases.first(), Some(&from), "{what}: the first answers");
        let unexpected: Vec<&u32> = releases
            .iter()
            .filter(|r| **r != from && **r != to)
            .collect();
        assert!(unexpected.is_empty(), "{what}: answers from {unexpected:?}");
    }
    let tail = &releases[releases.len().saturating_sub(20)..];
    assert!(
        tail.iter().all(|r| *r == to),
        "{what}: the last answers came from {tail:?}, not all v{to}"
    );
}

/// Runs `step` while the load generator sends requests, then keeps the load on a little longer
/// so the last answers show the end state.
async fn under_load<F>(router: SocketAddr, host: &str, step: F) -> anyhow::Result<Report>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let load = Load::start(router, host, RATE)?;
    // Some answers before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = step.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await?;
    result?;
    Ok(report)
}

/// Polls the router until it answers `host` with `status`; returns the body.
async fn router_answers(
    router: SocketAddr,
    host: &str,
    status: u16,
) -> anyhow::Result<(reqwest::header::HeaderMap, String)> {
    let client = reqwest::Client::builder().resolve(host, router).build()?;
    let url = format!("http://{host}:{}/", router.port());
    let deadline = Instant::now() + CONVERGE;
    loop {
        let res = client.get(&url).send().await?;
        if res.status().as_u16() == status {
            let headers = res.headers().clone();
            return Ok((headers, res.text().await?));
        }
        if Instant::now() > deadline {
            bail!("{host} answered {} instead of {status}", res.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an agent process to exit by itself; returns its output.
async fn agent_exits(agent: Running) -> anyhow::Result<String> {
    let (code, output) = agent.exit(CONVERGE).await?;
    ensure!(code != 0, "the agent exited with 0:\n{output}");
    Ok(output)
}

#[tokio::test]
async fn zero_downtime_rollouts_failures_rollback_a_crash_mid_rollout_and_node_credentials(
) -> anyhow::Result<()> {
    let mut stage = Stage::start("ro", 2).await?;
    let (admin, router, dir) = (&stage.admin, stage.router, stage.dir.path());
    let (base, token, names) = (&stage.base, &stage.token, &stage.names);

    let (apps, hello, host) = (
        stage.apps_path(),
        stage.app_path("hello"),
        stage.host("hello"),
    );
    admin
        .post(
            &apps,
            json!({"name": "hello", "port": 8888, "replicas": 3, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz", "stop_grace_seconds": 5}),
        )
        .await?;

    // The router: an app with nothing ready is a 503 with Retry-After, an unknown host a 404.
    let (headers, body) = router_answers(router, &host, 503).await?;
    assert_eq!(headers["retry-after"], "5");
    assert!(body.contains("hello"), "{body}");
    let (_, body) = router_answers(router, &format!("nope.{}.localhost", admin.team), 404).await?;
    assert!(body.contains("No app here"), "{body}");

    admin
        .post(&format!("{hello}/deploys"), json!({"image": IMAGE}))
        .await?;
    admin.wait_release("hello", 1, "active", CONVERGE).await?;
    let (_, body) = router_answers(router, &host, 200).await?;
    assert!(
        body.starts_with("Hello, 世界 from ") && body.trim_end().ends_with("(release v1)"),
        "{body}"
    );

    // A config change is release v2: under load, not one request fails, and the answers switch
    // from v1 (the default greeting) to v2 (the new one).
    let report = under_load(router, &host, async {
        admin
            .patch(
                &format!("{hello}/config"),
                json!({"vars": {"GREETING": "Hej"}}),
            )
            .await?;
        admin.wait_release("hello", 2, "active", CONVERGE).await?;
        admin
            .wait_instances("hello", "3 ready of v2", exactly_ready_of(3, 2))
            .await
            .map(drop)
    })
    .await?;
    assert_zero_downtime("deploy v1 -> v2", &report, Some(1), 2);
    let (_, body) = router_answers(router, &host, 200).await?;
    assert!(body.starts_with("Hej from "), "{body}");

    // Scale 3 -> 1: the instances go out of the route before they stop.
    let report = under_load(router, &host, async {
        admin.scale("hello", 1).await?;
        admin
            .wait_instances("hello", "1 ready of v2", exactly_ready_of(1, 2))
            .await?;
        wait_for_containers(&format!("gantry.team={}", admin.team), Some("hello"), 1)
            .await
            .map(drop)
    })
    .await?;
    assert_zero_downtime("scale 3 -> 1", &report, Some(2), 2);

    // Drain the node of the last instance: its replacement first, then it leaves.
    let list = admin.instances("hello").await?;
    let drained = list[0]["node"].as_str().context("node")?.to_owned();
    let report = under_load(router, &host, async {
        admin
            .post(&format!("/api/v1/nodes/{drained}/drain"), json!({}))
            .await?;
        admin
            .wait_instances("hello", "moved off the drained node", |list| {
                exactly_ready_of(1, 2)(list) && list[0]["node"] != drained.as_str()
            })
            .await?;
        wait_for_containers(&format!("gantry.node={drained}"), Some("hello"), 0)
            .await
            .map(drop)
    })
    .await?;
    assert_zero_downtime("drain", &report, Some(2), 2);
    admin
        .post(&format!("/api/v1/nodes/{drained}/uncordon"), json!({}))
        .await?;
    admin.scale("hello", 3).await?;
    admin
        .wait_instances("hello", "3 ready of v2 again", exactly_ready_of(3, 2))
        .await?;

    // A release that never becomes ready (its health check is answered 404) fails at its
    // progress deadline, with the reason; v2 serves throughout.
    admin
        .patch(&hello, json!({"progress_deadline_seconds": 8}))
        .await?;
    let report = under_load(router, &host, async {
        admin
            .patch(&hello, json!({"health_check_path": "/nope"}))
            .await?;
        let failed = admin
            .wait_release("hello", 3, "failed", Duration::from_secs(60))
            .await?;
        let reason = failed["reason"].as_str().unwrap_or_default();
        ensure!(
            reason.contains("progress deadline") && reason.contains("404"),
            "the reason says why: {failed:#}"
        );
        admin
            .wait_instances("hello", "only v2 left", exactly_ready_of(3, 2))
            .await
            .map(drop)
    })
    .await?;
    assert_zero_downtime("a release that never becomes ready", &report, Some(2), 2);

    // Roll back to v1: release v4, with v1's config (no GREETING) and health check.
    let report = under_load(router, &host, async {
        let v4 = admin
            .post(&format!("{hello}/rollback"), json!({"version": 1}))
            .await?;
        ensure!(v4["version"] == 4 && v4["rollback_of"] == 1, "{v4:#}");
        admin.wait_release("hello", 4, "active", CONVERGE).await?;
        admin
            .wait_instances("hello", "3 ready of v4", exactly_ready_of(3, 4))
            .await
            .map(drop)
    })
    .await?;
    assert_zero_downtime("rollback to v1", &report, Some(2), 4);
    let (_, body) = router_answers(router, &host, 200).await?;
    assert!(
        body.starts_with("Hello, 世界 from ") && body.trim_end().ends_with("(release v4)"),
        "{body}"
    );

    // kill -9 of the server in the middle of a rollout; after a restart the rollout completes
    // with exactly the instances wanted, none orphaned or duplicated.
    admin
        .post(&format!("{hello}/deploys"), json!({"image": IMAGE}))
        .await?;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let rollout = admin.get(&format!("{hello}/rollouts/current")).await?;
        if rollout["release"] == 5 && rollout["ready"].as_u64() >= Some(1) {
            ensure!(
                rollout["status"] == "rolling_out",
                "mid-rollout: {rollout:#}"
            );
            break;
        }
        ensure!(Instant::now() < deadline, "v5 never got going: {rollout:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stage.server.restart().await?;
    admin.wait_release("hello", 5, "active", CONVERGE).await?;
    admin
        .wait_instances("hello", "exactly 3 of v5", exactly_ready_of(3, 5))
        .await?;
    let containers =
        wait_for_containers(&format!("gantry.team={}", admin.team), Some("hello"), 3).await?;
    for id in &containers {
        assert_eq!(
            container_label(id, "gantry.release")?,
            "5",
            "container {id}"
        );
    }

    // A second agent cannot take a node's name, even with a valid join token.
    let second = dir.join("second");
    let intruder = start_agent(base, token, &names[0], "z9", &second)?;
    let output = agent_exits(intruder).await?;
    assert!(output.contains("is taken by another node"), "{output}");

    // A revoked join token is refused.
    let revoked = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    admin
        .delete(&format!(
            "/api/v1/nodes/join-tokens/{}",
            revoked["id"].as_str().context("token id")?
        ))
        .await?;
    let refused = start_agent(
        base,
        revoked["token"].as_str().context("token")?,
        &format!("ro-{}-n3", stage.run),
        "z3",
        dir,
    )?;
    let output = agent_exits(refused).await?;
    assert!(output.contains("revoked or expired"), "{output}");

    // Removing a node: its instances are replaced on the other first; then its agent is told,
    // and its credential no longer works.
    let removed = &names[1];
    admin.delete(&format!("/api/v1/nodes/{removed}")).await?;
    let deadline = Instant::now() + CONVERGE;
    while admin
        .nodes()
        .await?
        .iter()
        .any(|n| n["name"] == removed.as_str())
    {
        ensure!(
            Instant::now() < deadline,
            "node {removed} was never removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin
        .wait_instances("hello", "3 ready on the remaining node", |list| {
            exactly_ready_of(3, 5)(list) && list.iter().all(|i| i["node"] == names[0].as_str())
        })
        .await?;
    let output = agent_exits(stage.agents.remove(1)).await?;
    assert!(output.contains("removed from the cluster"), "{output}");
    let back = start_agent(base, token, removed, "z1", dir)?;
    let output = agent_exits(back).await?;
    assert!(output.contains("unknown"), "{output}");

    stage.shutdown().await;
    Ok(())
}
