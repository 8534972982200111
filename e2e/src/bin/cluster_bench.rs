//! Replica start and agent memory, for `bench/cluster.sh`. Not a test: it prints figures.
//!
//! - **Replica start**: `scale 0 → 1` through the API until the instance is reported `ready`
//!   and answers 200, against `docker run -d` of the same image until its first 200, in
//!   alternation (ABAB…, each removed again before the next) so both see the same machine
//!   state; medians of each.
//! - **Agent idle RSS**: the agent process's resident memory with 10 ready instances, after
//!   10 s without changes.
//!
//! Usage: `cluster_bench [ROUNDS]` (default 10) with `GANTRY_BIN` pointing at the binary, and
//! the `gantry-hello:latest` image built (`scripts/build-hello-image`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gantry_e2e::cluster::{docker, start_agent, start_server, Admin, DockerCleanup, IMAGE};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::json;

const BENCH_LABEL: &str = "gantry.bench=docker-run";

/// Polls `http://endpoint/` until it answers 200.
async fn first_200(http: &reqwest::Client, endpoint: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(res) = http.get(format!("http://{endpoint}/")).send().await {
            if res.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{endpoint} never answered 200")
}

/// `scale 0 → 1` until the instance is ready and answers; returns the time it took, then
/// scales back to 0 and waits until the instance is gone, so every round starts alike.
async fn gantry_start(admin: &Admin, http: &reqwest::Client) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    admin.scale("bench", 1).await?;
    let deadline = t0 + Duration::from_secs(60);
    loop {
        let list = admin.instances("bench").await?;
        if let [i] = list.as_slice() {
            if i["state"] == "ready" {
                let endpoint = i["endpoint"].as_str().context("endpoint")?;
                first_200(http, endpoint).await?;
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the new instance was not ready within 60 s: {list:#?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t0.elapsed();
    admin.scale("bench", 0).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !admin.instances("bench").await?.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the instance was not removed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(took)
}

/// `docker run -d` of the same image until its first 200.
async fn docker_run_start(http: &reqwest::Client) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let id = docker(&[
        "run",
        "-d",
        "--label",
        BENCH_LABEL,
        "-p",
        "127.0.0.1::8888",
        "--memory",
        "32m",
        IMAGE,
    ])?;
    let port = docker(&["port", id.trim(), "8888/tcp"])?;
    let endpoint = port
        .lines()
        .next()
        .context("published port")?
        .trim()
        .to_owned();
    first_200(http, &endpoint).await?;
    Ok(t0.elapsed())
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: u32 = std::env::args().nth(1).map_or(Ok(10), |n| n.parse())?;
    anyhow::ensure!((1..=50).contains(&rounds), "rounds between 1 and 50");
    docker(&["image", "inspect", IMAGE]).context("run scripts/build-hello-image first")?;

    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = start_server(&db_url, port, free_port()).await?;
    let admin = Admin::sign_up(&base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let _docker_runs = RemoveDockerRunContainers;
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let token = token["token"].as_str().context("join token")?;
    let agent = start_agent(
        &base,
        token,
        &format!("bench-{}", std::process::id()),
        "a",
        dir.path(),
    )?;
    let agent_pid = agent.child.id().context("agent pid")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.nodes().await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the agent never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            // The default size of an app (half a core, 256 MiB). Tiny CPU quotas slow any
            // container's start: runc's own set-up runs inside the quota.
            json!({"name": "bench", "port": 8888, "replicas": 0, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(
            &format!("/api/v1/teams/{}/apps/bench/deploys", admin.team),
            json!({"image": IMAGE}),
        )
        .await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let g = gantry_start(&admin, &http).await?;
        let d = docker_run_start(&http).await?;
        println!(
            "round {round:2}: gantry scale +1 {:6.0} ms   docker run -d {:6.0} ms",
            g.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
        ours.push(g);
        theirs.push(d);
    }
    let (g, d) = (median(ours), median(theirs));
    println!(
        "replica start, median of {rounds}: gantry {:.0} ms, docker run {:.0} ms, ratio {:.2} (target ≤ 1.3)",
        g.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        g.as_secs_f64() / d.as_secs_f64()
    );

    // Agent memory with 10 instances, idle (small ones, so 10 fit on this machine).
    admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "idle", "port": 8888, "replicas": 10, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(
            &format!("/api/v1/teams/{}/apps/idle/deploys", admin.team),
            json!({"image": IMAGE}),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = admin.instances("idle").await?;
        if list.len() == 10 && list.iter().all(|i| i["state"] == "ready") {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "10 instances never became ready: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
