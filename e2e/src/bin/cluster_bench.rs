//! The cluster's figures, for `bench/cluster.sh`. Not a test: it prints figures.
//!
//! - **Replica start through the router**: `scale 0 → 1` through the API until the router
//!   answers the app's host with 200 (from the new instance: before it there is none), against
//!   `docker run -d` of the same image until its first 200 on its published port, in
//!   alternation (ABAB…, each removed again before the next) so both see the same machine
//!   state; medians of each. `docker run` is measured twice: plain, and with the isolation every
//!   Gantry instance gets (its init, capabilities dropped, no-new-privileges, CPU, memory and
//!   pids limits, a network of its own), which is the same engine work Gantry asks for.
//! - **Deploy under load**: an app of 3 replicas, 200 requests/s through the router; from the
//!   deploy call to the moment after which every answer comes from the new release, with the
//!   count of failed requests. Rolling with `max_surge` 1 takes three waves.
//! - **Agent idle RSS**: the agent process's resident memory with 10 ready instances, after
//!   10 s without changes.
//!
//! Usage: `cluster_bench [ROUNDS]` (default 10) with `GANTRY_BIN` pointing at the binary, and
//! the `gantry-hello:latest` image built (`scripts/build-hello-image`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gantry_e2e::cluster::{docker, start_agent, start_server, Admin, DockerCleanup, IMAGE};
use gantry_e2e::load::Load;
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::json;

const BENCH_LABEL: &str = "gantry.bench=docker-run";

/// Polls `url` with `client` until it answers 200.
async fn first_200(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = client.get(url).send().await {
            if res.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{url} never answered 200")
}

/// `scale 0 → 1` until the router answers the app with 200; returns the time it took, then
/// scales back to 0 and waits until the instance is gone and the router answers 503 again, so
/// every round starts alike.
async fn gantry_start(
    admin: &Admin,
    router: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    admin.scale("bench", 1).await?;
    first_200(router, url).await?;
    let took = t0.elapsed();
    admin.scale("bench", 0).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let gone = admin.instances("bench").await?.is_empty();
        let status = router.get(url).send().await?.status();
        if gone && status == 503 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the instance was not removed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(took)
}

/// `docker run -d` of the same image (with `flags`) until its first 200.
async fn docker_run_start(http: &reqwest::Client, flags: &[&str]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut args = vec!["run", "-d", "--label", BENCH_LABEL, "-p", "127.0.0.1::8888"];
    args.extend_from_slice(flags);
    args.push(IMAGE);
    let id = docker(&args)?;
    let port = docker(&["port", id.trim(), "8888/tcp"])?;
    let endpoint = port
        .lines()
        .next()
        .context("published port")?
        .trim()
        .to_owned();
    first_200(http, &format!("http://{endpoint}/")).await?;
    let took = t0.elapsed();
    docker(&["rm", "-f", id.trim()])?;
    Ok(took)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS in /proc/PID/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

struct RemoveDockerRunContainers;

impl Drop for RemoveDockerRunContainers {
    fn drop(&mut self) {
        let ids =
            docker(&["ps", "-aq", "--filter", &format!("label={BENCH_LABEL}")]).unwrap_or_default();
        for id in ids.lines() {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

/// Waits until the app's instances are `n`, all ready and of release `version`.
async fn wait_ready(admin: &Admin, app: &str, n: usize, version: u32) -> anyhow::Result<()> {
    admin
        .wait_instances(app, "instances ready", |list| {
            list.len() == n
                && list
                    .iter()
                    .all(|i| i["state"] == "ready" && i["release"] == version)
        })
        .await
        .map(drop)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: u32 = std::env::args().nth(1).map_or(Ok(10), |n| n.parse())?;
    anyhow::ensure!((1..=50).contains(&rounds), "rounds between 1 and 50");
    docker(&["image", "inspect", IMAGE]).context("run scripts/build-hello-image first")?;

    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let (port, router_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let server = start_server(&db_url, port, router_port).await?;
    let admin = Admin::sign_up(&base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let _docker_runs = RemoveDockerRunContainers;
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let token = token["token"].as_str().context("join token")?;
    let node = format!("bench-{}", std::process::id());
    let agent = start_agent(&base, token, &node, "a", dir.path())?;
    let agent_pid = agent.child.id().context("agent pid")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.nodes().await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the agent never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let apps = format!("/api/v1/teams/{}/apps", admin.team);
    admin
        .post(
            &apps,
            // The default size of an app (half a core, 256 MiB). Tiny CPU quotas slow any
            // container's start: runc's own set-up runs inside the quota.
            json!({"name": "bench", "port": 8888, "replicas": 0, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(&format!("{apps}/bench/deploys"), json!({"image": IMAGE}))
        .await?;
    admin
        .wait_release("bench", 1, "active", Duration::from_secs(60))
        .await?;

    let router_addr: SocketAddr = ([127, 0, 0, 1], router_port).into();
    let host = format!("bench.{}.localhost", admin.team);
    let router = reqwest::Client::builder()
        .resolve(&host, router_addr)
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://{host}:{router_port}/");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    // The same isolation as a Gantry instance: docker-init, no capabilities, limits, a network
    // of its own (the team's network on the node).
    let network = format!("gantry-team-{}-on-{node}", admin.team);
    let hardened = [
        "--init",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "512",
        "--network",
        network.as_str(),
    ];
    let (mut ours, mut plain, mut same) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let g = gantry_start(&admin, &router, &url).await?;
        let p = docker_run_start(&http, &["--memory", "256m"]).await?;
        let s = docker_run_start(&http, &hardened).await?;
        println!(
            "round {round:2}: gantry scale +1 via router {:6.0} ms   docker run -d {:6.0} ms   docker run -d (Gantry's isolation) {:6.0} ms",
            ms(g),
            ms(p),
            ms(s)
        );
        ours.push(g);
        plain.push(p);
        same.push(s);
    }
    let (g, p, s) = (median(ours), median(plain), median(same));
    println!(
        "replica start, median of {rounds}: gantry {:.0} ms; docker run {:.0} ms (ratio {:.2}); docker run with Gantry's isolation {:.0} ms (ratio {:.2}); target ≤ 1.0",
        ms(g),
        ms(p),
        g.as_secs_f64() / p.as_secs_f64(),
        ms(s),
        g.as_secs_f64() / s.as_secs_f64(),
    );

    // Deploy under load: 3 replicas, 200 requests/s through the router, the same image
    // deployed again (a new release) each round.
    admin.scale("bench", 3).await?;
    wait_ready(&admin, "bench", 3, 1).await?;
    let mut settle = Vec::new();
    for round in 1..=rounds.min(5) {
        let version = round + 1;
        let load = Load::start(router_addr, &host, 200)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let deploy_at = load.started.elapsed();
        admin
            .post(&format!("{apps}/bench/deploys"), json!({"image": IMAGE}))
            .await?;
        admin
            .wait_release("bench", version, "active", Duration::from_secs(60))
            .await?;
        wait_ready(&admin, "bench", 3, version).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let report = load.stop().await?;
        let settled = report
            .settled_on(version)
            .context("the answers never settled on the new release")?;
        let took = settled.saturating_sub(deploy_at);
        println!(
            "deploy round {round}: 100% of answers from v{version} {:.2} s after the deploy call; {}",
            took.as_secs_f64(),
            report.summary()
        );
        anyhow::ensure!(
            report.failures().is_empty(),
            "failed requests during a deploy"
        );
        settle.push(took);
    }
    let d = median(settle);
    println!(
        "deploy under 200 req/s, 3 replicas, max_surge 1: median {:.2} s to 100% new answers, 0 failed (target ≤ 3 s + 3 waves × one instance start ≈ {:.2} s)",
        d.as_secs_f64(),
        3.0 + 3.0 * g.as_secs_f64()
    );
    admin.scale("bench", 0).await?;

    // Agent memory with 10 instances, idle (small ones, so 10 fit on this machine).
    admin
        .post(
            &apps,
            json!({"name": "idle", "port": 8888, "replicas": 10, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(&format!("{apps}/idle/deploys"), json!({"image": IMAGE}))
        .await?;
    wait_ready(&admin, "idle", 10, 1).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = rss_kib(agent_pid)?;
    println!(
        "agent idle RSS with 10 instances: {:.1} MiB (target ≤ 20 MB)",
        rss as f64 / 1024.0
    );
    drop(agent);
    drop(server);
    Ok(())
}
