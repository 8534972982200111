//! Metrics end to end: a `gantry server`, a `gantry agent` on the real Docker engine, the hello
//! app under load through the router.
//!
//! `GET /metrics` parses with a Prometheus text parser and carries the control plane's series
//! and the app's (requests, the latency histogram, its instance's CPU and memory); anonymous
//! and wrongly authenticated scrapes get 401, the scrape token and a platform admin's session
//! are let in. The app's metrics API and live stream show points with its requests and usage.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use gantry_e2e::cluster::{
    docker, start_agent, start_server_with, Admin, DockerCleanup, CONVERGE, IMAGE,
};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const SCRAPE_TOKEN: &str = "scrape-me-0123456789";

/// One sample of a scrape, owned.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples named `name` that carry the label `key=value`.
fn samples<'a>(scrape: &'a [Sample], name: &str, key: &str, value: &str) -> Vec<&'a Sample> {
    scrape
        .iter()
        .filter(|s| s.name == name && s.labels.get(key).map(String::as_str) == Some(value))
        .collect()
}

/// Scrapes with the token and parses the whole exposition (an OpenMetrics parser that
/// refuses anything it cannot read).
async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<Sample>> {
    let res = http.get(url).bearer_auth(SCRAPE_TOKEN).send().await?;
    ensure!(res.status() == 200, "scrape: {}", res.status());
    let text = res.text().await?;
    let (rest, families) = nom_openmetrics::parser::openmetrics(&text)
        .map_err(|e| anyhow::anyhow!("the exposition does not parse: {e:?}"))?;
    ensure!(rest.is_empty(), "unparsed: {rest:?}");
    Ok(families
        .iter()
        .flat_map(|f| &f.samples)
        .map(|s| Sample {
            name: s.name().to_owned(),
            labels: s
                .labels()
                .iter()
                .map(|l| (l.name.to_owned(), l.value.clone()))
                .collect(),
            value: s.number(),
        })
        .collect())
}

#[tokio::test]
async fn metrics_are_exposed_stored_and_streamed() -> anyhow::Result<()> {
    docker(&["image", "inspect", IMAGE]).context("run scripts/build-hello-image first")?;
    let run = format!("{:x}", std::process::id());
    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let (port, router_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let _server = start_server_with(
        &db_url,
        port,
        router_port,
        &[("GANTRY_METRICS_TOKEN", SCRAPE_TOKEN)],
    )
    .await?;
    let admin = Admin::sign_up(&base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let join = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let join = join["token"].as_str().context("join token")?.to_owned();
    let _agent = start_agent(&base, &join, &format!("mt-{run}-n1"), "a", dir.path())?;
    admin.wait_nodes_ready(1).await?;
    let apps = format!("/api/v1/teams/{}/apps", admin.team);
    admin
        .post(
            &apps,
            json!({"name": "hello", "port": 8888, "replicas": 1, "cpu_millis": 200,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(&format!("{apps}/hello/deploys"), json!({"image": IMAGE}))
        .await?;
    admin.wait_release("hello", 1, "active", CONVERGE).await?;

    // Requests through the router, some of them 404s (the app's own answer, not an error).
    let host = format!("hello.{}.localhost", admin.team);
    let router: SocketAddr = ([127, 0, 0, 1], router_port).into();
    let client = reqwest::Client::builder().resolve(&host, router).build()?;
    for i in 0..200 {
        let path = if i % 10 == 0 { "/nope" } else { "/" };
        client
            .get(format!("http://{host}:{router_port}{path}"))
            .send()
            .await?;
    }

    // Who may scrape.
    let http = reqwest::Client::new();
    let url = format!("{base}/metrics");
    ensure!(http.get(&url).send().await?.status() == 401, "anonymous");
    let wrong = http.get(&url).bearer_auth("not-the-token").send().await?;
    ensure!(wrong.status() == 401, "a wrong token");
    ensure!(
        admin.http.get(&url).send().await?.status() == 200,
        "a platform admin"
    );

    // The app's series and the control plane's; the instance's usage once its agent reported
    // two samples.
    let deadline = Instant::now() + Duration::from_secs(40);
    let parsed = loop {
        let parsed = scrape(&http, &url).await?;
        if !samples(&parsed, "gantry_instance_memory_bytes", "app", "hello").is_empty() {
            break parsed;
        }
        if Instant::now() > deadline {
            bail!("no usage of the hello instance in /metrics within 40 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let requests = samples(&parsed, "gantry_app_requests_total", "app", "hello");
    ensure!(
        requests.len() == 1 && requests[0].value >= 200.0,
        "the app's requests: {requests:?}"
    );
    ensure!(requests[0].labels.get("release").map(String::as_str) == Some("1"));
    let buckets = samples(
        &parsed,
        "gantry_app_request_duration_seconds_bucket",
        "app",
        "hello",
    );
    ensure!(buckets.len() >= 10, "the latency histogram: {buckets:?}");
    let count = samples(
        &parsed,
        "gantry_app_request_duration_seconds_count",
        "app",
        "hello",
    );
    ensure!(
        count.len() == 1 && count[0].value == requests[0].value,
        "{count:?}"
    );
    let memory = samples(&parsed, "gantry_instance_memory_bytes", "app", "hello");
    ensure!(memory[0].value > 0.0, "memory: {memory:?}");
    let cpu = samples(&parsed, "gantry_instance_cpu_millicores", "app", "hello");
    ensure!(cpu.len() == 1, "cpu: {cpu:?}");
    let agents: Vec<_> = parsed
        .iter()
        .filter(|s| s.name == "gantry_agents_connected")
        .collect();
    ensure!(agents.len() == 1 && agents[0].value == 1.0, "{agents:?}");
    let api = samples(
        &parsed,
        "gantry_http_requests_total",
        "route",
        "/api/v1/teams/{team}/apps",
    );
    ensure!(
        !api.is_empty(),
        "the control plane's own requests are counted"
    );
    ensure!(
        parsed
            .iter()
            .any(|s| s.name == "gantry_reconciler_passes_total"),
        "reconcile passes"
    );

    // The stored points: the requests and the instance's usage, per release.
    let deadline = Instant::now() + Duration::from_secs(40);
    let point = loop {
        let series = admin.get(&format!("{apps}/hello/metrics")).await?;
        ensure!(series["step_seconds"] == 5, "{series}");
        let points = series["points"].as_array().cloned().unwrap_or_default();
        let busy = points.iter().find(|p| {
            p["requests_per_second"].as_f64().unwrap_or(0.0) > 0.0
                && p["memory_bytes"].as_u64().unwrap_or(0) > 0
        });
        if let Some(p) = busy {
            break p.clone();
        }
        if Instant::now() > deadline {
            bail!("no point with requests and usage within 40 s: {points:?}");
        }
        // More requests, so that a step with both exists.
        for _ in 0..20 {
            client
                .get(format!("http://{host}:{router_port}/"))
                .send()
                .await?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    ensure!(point["release"] == 1 && point["instances"] == 1, "{point}");
    ensure!(point["p99_ms"].as_f64().is_some(), "{point}");
    ensure!(
        point["error_percent"] == 0.0,
        "404s are not errors: {point}"
    );

    // The live stream: the replay, then a new point within a few steps.
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "metrics", "team": admin.team, "role": "viewer"}),
        )
        .await?;
    let bearer = format!("Bearer {}", token["secret"].as_str().context("secret")?);
    let mut request =
        format!("ws://127.0.0.1:{port}{apps}/hello/metrics/stream").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(&bearer)?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let mut live = false;
    let mut fresh = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fresh == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .context("a live point within 30 s")?
            .context("the stream stays open")??;
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str())?;
        match v["type"].as_str() {
            Some("live") => live = true,
            Some("points") if live => fresh += v["points"].as_array().map_or(0, Vec::len),
            Some("points") => {}
            other => bail!("unexpected frame {other:?}: {v}"),
        }
    }
    Ok(())
}
