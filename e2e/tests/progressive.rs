//! Progressive delivery end to end: a `gantry server`, two `gantry agent` processes on the real
//! Docker engine, three replicas of the hello image, and the router under an open-loop load of
//! 200 requests/s while canary and blue-green rollouts move the traffic:
//!
//! 1. v1 deployed (rolling) and active;
//! 2. a canary of v2 at 10 % waiting for promote: of 10,000 requests through the router, 10 % ± 1
//!    point reach v2, none fails, and `GET …/routes` shows 90/10;
//! 3. a `kill -9` of the server during that indefinite pause: after a restart the rollout is at
//!    the same step and weight and the routes are 90/10 again; promote, and v2 takes over under
//!    load with no failed request;
//! 4. a good canary (10 → 50 → 100 %, with analysis) completes under load with no failed request,
//!    its history showing the weights in order;
//! 5. a bad canary (`FAIL_PERCENT=50`) is aborted by its analysis: the reason, the abort in the
//!    app's events, every answer from the stable release afterwards, and the user requests that
//!    failed meanwhile counted (printed);
//! 6. blue-green: the new release answers only at the preview host, promote flips the main host
//!    to it, an abort within the scale-down delay flips it back at once, with no failed request;
//! 7. a sticky canary at 50 %: a client that keeps its cookies stays on one release.
//!
//! One server serves the whole journey (each step builds on the last). Everything it creates
//! carries the run's team and node names, and a guard removes those containers and networks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use gantry_e2e::cluster::{Admin, CONVERGE, IMAGE};
use gantry_e2e::load::{release_of, Load, Report};
use gantry_e2e::stage::Stage;
use gantry_e2e::Running;
use reqwest::Method;
use serde_json::{json, Value};

/// The load through the router while rollouts happen.
const RATE: u32 = 200;
/// The requests of the split-accuracy check.
const SPLIT_REQUESTS: usize = 10_000;

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

/// Runs `step` while the load generator sends requests, and keeps the load on `tail` longer
/// so the last answers show the end state.
async fn under_load<F>(
    router: SocketAddr,
    host: &str,
    tail: Duration,
    step: F,
) -> anyhow::Result<Report>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let load = Load::start(router, host, RATE)?;
    // Some answers before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = step.await;
    tokio::time::sleep(tail).await;
    let report = load.stop().await?;
    result?;
    Ok(report)
}

/// The releases that answered, run-length encoded: `v1×120 v2×3 v1×40`.
fn runs(releases: &[u32]) -> String {
    let mut out: Vec<(u32, usize)> = Vec::new();
    for &r in releases {
        match out.last_mut() {
            Some((last, n)) if *last == r => *n += 1,
            _ => out.push((r, 1)),
        }
    }
    let text: Vec<String> = out.iter().map(|(r, n)| format!("v{r}×{n}")).collect();
    if text.len() > 40 {
        format!(
            "{} … {}",
            text[..20].join(" "),
            text[text.len() - 20..].join(" ")
        )
    } else {
        text.join(" ")
    }
}

/// No failed request, the answers started with `from`, ended with `to`, and came from nothing
/// else than `allowed`.
fn assert_no_failure(what: &str, report: &Report, from: u32, to: u32, allowed: &[u32]) {
    let releases = report.releases();
    eprintln!("{what}: {}; answers: {}", report.summary(), runs(&releases));
    assert!(
        report.total() >= RATE as usize,
        "{what}: too few requests: {}",
        report.summary()
    );
    assert!(report.failures().is_empty(), "{what}: {}", report.summary());
    assert_eq!(releases.first(), Some(&from), "{what}: the first answers");
    let unexpected: Vec<&u32> = releases.iter().filter(|r| !allowed.contains(r)).collect();
    assert!(unexpected.is_empty(), "{what}: answers from {unexpected:?}");
    let tail = &releases[releases.len().saturating_sub(20)..];
    assert!(
        tail.iter().all(|r| *r == to),
        "{what}: the last answers came from {tail:?}, not all v{to}"
    );
}

/// A client for `host` through the router (keeping cookies if asked).
fn client(router: SocketAddr, host: &str, cookies: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .resolve(host, router)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .cookie_store(cookies)
        .build()?)
}

fn url(router: SocketAddr, host: &str) -> String {
    format!("http://{host}:{}/", router.port())
}

/// What a batch of requests got.
#[derive(Debug, Default)]
struct Answers {
    /// Per release, how many answers.
    by_release: BTreeMap<u32, usize>,
    /// In the order they came back.
    order: Vec<u32>,
    failures: Vec<String>,
}

impl Answers {
    fn only(&self, version: u32) -> bool {
        self.failures.is_empty() && self.by_release.keys().all(|r| *r == version)
    }

    fn summary(&self) -> String {
        let mut text: Vec<String> = self
            .by_release
            .iter()
            .map(|(r, n)| format!("v{r}: {n}"))
            .collect();
        text.push(format!("failed: {}", self.failures.len()));
        if let Some(f) = self.failures.first() {
            text.push(format!("first failure: {f}"));
        }
        text.join(", ")
    }
}

/// Sends `n` `GET /` to `url`, `concurrency` at a time (each worker reusing its connection), and
/// counts the answers per release.
async fn answers(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Answers> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let result = match client.get(&url).send().await {
                    Err(e) => Err(format!("{e:#}")),
                    Ok(res) => {
                        let status = res.status();
                        match res.text().await {
                            Err(e) => Err(format!("body: {e:#}")),
                            Ok(body) if !status.is_success() => {
                                Err(format!("{status}: {}", body.trim()))
                            }
                            Ok(body) => {
                                release_of(&body).ok_or_else(|| format!("no release in {body:?}"))
                            }
                        }
                    }
                };
                got.push(result);
            }
            got
        }));
    }
    let mut out = Answers::default();
    for worker in workers {
        for result in worker.await? {
            match result {
                Ok(r) => {
                    *out.by_release.entry(r).or_default() += 1;
                    out.order.push(r);
                }
                Err(e) => out.failures.push(e),
            }
        }
    }
    Ok(out)
}

/// Polls until 20 requests in a row are all answered by `version`; returns how long it took.
async fn wait_only(
    client: &reqwest::Client,
    url: &str,
    version: u32,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let got = answers(client, url, 20, 1).await?;
        if got.only(version) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!(
                "{url} did not answer only v{version} within {timeout:?}; last 20: {}",
                got.summary()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the app's rollout (`GET …/rollouts/current`) satisfies `check`; a failed call
/// (the server restarting) is another try.
async fn wait_rollout(
    admin: &Admin,
    hello: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = admin.get(&format!("{hello}/rollouts/current")).await;
        if let Ok(rollout) = &last {
            if check(rollout) {
                return Ok(rollout.clone());
            }
        }
        if Instant::now() > deadline {
            let last = match last {
                Ok(v) => format!("{v:#}"),
                Err(e) => format!("{e:#}"),
            };
            bail!("{what}: not reached within {timeout:?}; rollout: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The route's sets that get traffic: `(release, weight)`, by release.
fn weights(routes: &Value) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = routes["sets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["release"].as_u64().unwrap_or_default(),
                s["weight"].as_u64().unwrap_or_default(),
            )
        })
        .filter(|(_, w)| *w > 0)
        .collect();
    out.sort_unstable();
    out
}

/// Waits until `GET …/routes` gives exactly these weights to the sets that get traffic, each of
/// them with at least one endpoint.
async fn wait_weights(
    admin: &Admin,
    hello: &str,
    want: &[(u64, u64)],
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = admin.get(&format!("{hello}/routes")).await;
        if let Ok(routes) = &last {
            let routed = routes["sets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|s| s["weight"].as_u64() > Some(0))
                .all(|s| s["endpoints"].as_array().is_some_and(|e| !e.is_empty()));
            if weights(routes) == want && routed {
                return Ok(routes.clone());
            }
        }
        if Instant::now() > deadline {
            let last = match last {
                Ok(v) => format!("{v:#}"),
                Err(e) => format!("{e:#}"),
            };
            bail!("routes never had the weights {want:?} within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn history(rollout: &Value) -> Vec<(u64, u64, String)> {
    rollout["history"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|h| {
            (
                h["step"].as_u64().unwrap_or_default(),
                h["weight"].as_u64().unwrap_or_default(),
                h["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The server's warnings and errors so far (its log is at `info`), for the record.
fn print_warnings(what: &str, server: &mut Running) {
    server.count_lines("");
    let lines: Vec<&String> = server
        .output
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    eprintln!(
        "{what}: {} warning/error lines from the server",
        lines.len()
    );
    for line in lines {
        eprintln!("  {line}");
    }
}

fn print_history(what: &str, rollout: &Value) {
    eprintln!("{what}: history of rollout {}:", rollout["release"]);
    for (step, weight, text) in history(rollout) {
        eprintln!("  step {step}, weight {weight}: {text}");
    }
}

#[tokio::test]
async fn canary_split_restart_analysis_abort_blue_green_and_sticky() -> anyhow::Result<()> {
    let began = Instant::now();
    let mut stage = Stage::start("pd", 2).await?;
    let (admin, router) = (&stage.admin, stage.router);
    let (apps, hello, host) = (
        stage.apps_path(),
        stage.app_path("hello"),
        stage.host("hello"),
    );
    let preview_host = format!("preview.{host}");
    let main = client(router, &host, false)?;
    let main_url = url(router, &host);
    let (admin_ref, hello_ref) = (admin, hello.as_str());
    let strategy = move |body: Value| async move {
        admin_ref
            .send(Method::PUT, &format!("{hello_ref}/strategy"), Some(body))
            .await
    };
    let config = move |vars: Value| async move {
        admin_ref
            .patch(&format!("{hello_ref}/config"), json!({ "vars": vars }))
            .await
    };
    let act = move |version: u32, action: &'static str| async move {
        admin_ref
            .post(
                &format!("{hello_ref}/rollouts/{version}/{action}"),
                json!({}),
            )
            .await
    };

    // 1. v1, rolling, active with 3 ready instances.
    admin
        .post(
            &apps,
            json!({"name": "hello", "port": 8888, "replicas": 3, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz", "stop_grace_seconds": 5}),
        )
        .await?;
    admin
        .post(&format!("{hello}/deploys"), json!({"image": IMAGE}))
        .await?;
    admin.wait_release("hello", 1, "active", CONVERGE).await?;
    admin
        .wait_instances("hello", "3 ready of v1", exactly_ready_of(3, 1))
        .await?;
    wait_only(&main, &main_url, 1, CONVERGE).await?;
    eprintln!("1. v1 active after {:?}", began.elapsed());

    // 2. Split accuracy: a canary of v2 at 10 %, waiting for promote.
    strategy(json!({"kind": "canary",
                    "steps": [{"set_weight": 10}, {"pause_seconds": null}]}))
    .await?;
    config(json!({"GREETING": "Canary"})).await?;
    let rollout = wait_rollout(admin, &hello, "v2 at step 1, weight 10", CONVERGE, |r| {
        r["release"] == 2 && r["status"] == "rolling_out" && r["step"] == 1 && r["weight"] == 10
    })
    .await?;
    ensure!(
        rollout["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("promote")),
        "v2 waits for promote: {rollout:#}"
    );
    let routes = wait_weights(admin, &hello, &[(1, 90), (2, 10)], CONVERGE).await?;
    eprintln!("2. routes at weight 10: {:?}", weights(&routes));
    let start = Instant::now();
    let split = answers(&main, &main_url, SPLIT_REQUESTS, 32).await?;
    let took = start.elapsed();
    let v2 = split.by_release.get(&2).copied().unwrap_or_default();
    eprintln!(
        "2. split of {SPLIT_REQUESTS} requests in {took:?}: {} (v2 share {:.2} %)",
        split.summary(),
        v2 as f64 * 100.0 / SPLIT_REQUESTS as f64
    );
    ensure!(split.failures.is_empty(), "split: {}", split.summary());
    ensure!(
        split.by_release.keys().all(|r| [1, 2].contains(r)),
        "split: answers from other releases: {}",
        split.summary()
    );
    ensure!(
        (900..=1100).contains(&v2),
        "split: v2 got {v2} of {SPLIT_REQUESTS}, not 10 % ± 1 point: {}",
        split.summary()
    );
    ensure!(
        took < Duration::from_secs(60),
        "split: {SPLIT_REQUESTS} requests took {took:?}"
    );

    // 3. kill -9 of the server during the indefinite pause: the rollout and the routes are the
    // same after a restart.
    print_warnings("before the kill -9", &mut stage.server.process);
    let restarted = Instant::now();
    stage.server.restart().await?;
    let rollout = wait_rollout(
        admin,
        &hello,
        "v2 still at step 1, weight 10 after the restart",
        CONVERGE,
        |r| {
            r["release"] == 2 && r["status"] == "rolling_out" && r["step"] == 1 && r["weight"] == 10
        },
    )
    .await?;
    let routes = wait_weights(admin, &hello, &[(1, 90), (2, 10)], CONVERGE).await?;
    eprintln!(
        "3. after kill -9 and restart ({:?}): step {}, weight {}, routes {:?}",
        restarted.elapsed(),
        rollout["step"],
        rollout["weight"],
        weights(&routes)
    );
    let again = answers(&main, &main_url, 1_000, 16).await?;
    eprintln!("3. 1,000 requests after the restart: {}", again.summary());
    let v2 = again.by_release.get(&2).copied().unwrap_or_default();
    ensure!(
        again.failures.is_empty() && (80..=120).contains(&v2),
        "after the restart, 10 % of the traffic goes to v2: {}",
        again.summary()
    );
    let report = under_load(router, &host, Duration::from_millis(500), async {
        act(2, "promote").await?;
        admin.wait_release("hello", 2, "active", CONVERGE).await?;
        admin
            .wait_instances("hello", "3 ready of v2", exactly_ready_of(3, 2))
            .await?;
        wait_weights(admin, &hello, &[(2, 100)], CONVERGE)
            .await
            .map(drop)
    })
    .await?;
    assert_no_failure("3. promote v2", &report, 1, 2, &[1, 2]);

    // 4. A good canary, 10 → 50 → 100 % with analysis, completes under load.
    let analysis = json!({"max_error_percent": 5, "window_seconds": 10, "min_requests": 20});
    strategy(json!({"kind": "canary",
                    "steps": [{"set_weight": 10}, {"pause_seconds": 2},
                              {"set_weight": 50}, {"pause_seconds": 2}],
                    "analysis": analysis}))
    .await?;
    let started = Instant::now();
    let report = under_load(router, &host, Duration::from_millis(500), async {
        config(json!({"GREETING": "Good"})).await?;
        admin.wait_release("hello", 3, "active", CONVERGE).await?;
        admin
            .wait_instances("hello", "3 ready of v3", exactly_ready_of(3, 3))
            .await?;
        wait_weights(admin, &hello, &[(3, 100)], CONVERGE)
            .await
            .map(drop)
    })
    .await?;
    eprintln!("4. good canary done in {:?}", started.elapsed());
    assert_no_failure("4. good canary v3", &report, 2, 3, &[2, 3]);
    let rollout = admin.get(&format!("{hello}/rollouts/current")).await?;
    print_history("4. good canary", &rollout);
    ensure!(
        rollout["release"] == 3 && rollout["status"] == "active",
        "{rollout:#}"
    );
    let steps = history(&rollout);
    let at10 = steps
        .iter()
        .position(|(_, w, t)| *w == 10 && t.contains("weight 10 %"));
    let at50 = steps
        .iter()
        .position(|(_, w, t)| *w == 50 && t.contains("weight 50 %"));
    let active = steps.iter().position(|(_, _, t)| t.contains("is active"));
    ensure!(
        matches!((at10, at50, active), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "4. the history shows weight 10, then 50, then active: {at10:?} {at50:?} {active:?}"
    );

    // 5. A bad canary (half its answers 500) is aborted by its analysis.
    let started = Instant::now();
    let load = Load::start(router, &host, RATE)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let step = async {
        config(json!({"FAIL_PERCENT": "50"})).await?;
        wait_rollout(admin, &hello, "v4 aborted", CONVERGE, |r| {
            r["release"] == 4 && r["status"] == "aborted"
        })
        .await
    };
    let aborted = step.await;
    let aborted_after = started.elapsed();
    // A second and a half more: the last 200 answers are all after the abort.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = load.stop().await?;
    let aborted = aborted?;
    print_history("5. bad canary", &aborted);
    let failed = report.failures().len();
    let releases = report.releases();
    let v4_answers = releases.iter().filter(|r| **r == 4).count();
    eprintln!(
        "5. bad canary v4: aborted {aborted_after:?} after the config change; \
         FAILED USER REQUESTS: {failed} of {} ({v4_answers} good answers from v4); reason: {}; \
         analysis: {}; answers: {}",
        report.total(),
        aborted["reason"],
        aborted["analysis"],
        runs(&releases)
    );
    let reason = aborted["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("canary 5xx") && reason.contains("> 5 %"),
        "5. the reason says why: {aborted:#}"
    );
    let tail = &report.outcomes[report.outcomes.len().saturating_sub(200)..];
    let not_v3: Vec<_> = tail
        .iter()
        .filter(|o| !matches!(o.result, Ok(Some(3))))
        .collect();
    ensure!(
        not_v3.is_empty(),
        "5. after the abort every answer comes from v3: {} of the last 200 do not, e.g. {:?}",
        not_v3.len(),
        not_v3.first()
    );
    ensure!(
        failed < 200,
        "5. too many failed user requests during the bad canary: {}",
        report.summary()
    );
    ensure!(
        report.outcomes.iter().all(|o| match &o.result {
            Ok(r) => matches!(r, Some(3 | 4)),
            Err(e) => e.starts_with("500"),
        }),
        "5. only v3, v4 and v4's 500s: {}",
        report.summary()
    );
    let routes = wait_weights(admin, &hello, &[(3, 100)], Duration::from_secs(5)).await?;
    eprintln!("5. routes after the abort: {:?}", weights(&routes));
    ensure!(
        history(&aborted)
            .iter()
            .any(|(_, _, t)| t.contains("aborted") && t.contains("canary 5xx")),
        "5. the rollout's history has the abort"
    );
    let events = admin
        .get(&format!("{hello}/logs?stream=event&release=4"))
        .await?;
    let abort_event = events["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["line"].as_str())
        .find(|l| l.contains("aborted") && l.contains("canary 5xx"))
        .map(str::to_owned);
    eprintln!("5. the abort in the app's events: {abort_event:?}");
    ensure!(
        abort_event.is_some(),
        "5. the app's events show the abort: {events:#}"
    );
    admin
        .wait_instances("hello", "only v3 left", exactly_ready_of(3, 3))
        .await?;
    // Back to a good config: v5, a rolling update (FAIL_PERCENT removed).
    strategy(json!({"kind": "rolling"})).await?;
    config(json!({"FAIL_PERCENT": null})).await?;
    admin.wait_release("hello", 5, "active", CONVERGE).await?;
    admin
        .wait_instances("hello", "3 ready of v5", exactly_ready_of(3, 5))
        .await?;
    wait_only(&main, &main_url, 5, CONVERGE).await?;

    // 6. Blue-green: v6 at the preview host only; promote flips, abort flips back at once.
    strategy(json!({"kind": "blue_green", "auto_promote_seconds": null,
                    "scale_down_delay_seconds": 300}))
    .await?;
    config(json!({"GREETING": "green"})).await?;
    let rollout = wait_rollout(
        admin,
        &hello,
        "v6 ready at the preview host",
        CONVERGE,
        |r| r["release"] == 6 && r["status"] == "rolling_out" && r["step"] == 1,
    )
    .await?;
    ensure!(
        rollout["preview_url"]
            .as_str()
            .is_some_and(|u| u.contains(&preview_host)),
        "6. the preview URL: {rollout:#}"
    );
    let preview = client(router, &preview_host, false)?;
    let preview_url = url(router, &preview_host);
    wait_only(&preview, &preview_url, 6, Duration::from_secs(10)).await?;
    let at_preview = answers(&preview, &preview_url, 20, 1).await?;
    let at_main = answers(&main, &main_url, 20, 1).await?;
    eprintln!(
        "6. before promote: preview host {}; main host {}",
        at_preview.summary(),
        at_main.summary()
    );
    ensure!(at_preview.only(6), "6. preview: {}", at_preview.summary());
    ensure!(at_main.only(5), "6. main: {}", at_main.summary());
    let mut flips = (Duration::ZERO, Duration::ZERO);
    let report = under_load(router, &host, Duration::from_millis(1000), async {
        let promoted = Instant::now();
        act(6, "promote").await?;
        wait_rollout(admin, &hello, "v6 promoted", CONVERGE, |r| {
            r["release"] == 6 && r["step"] == 2 && r["weight"] == 100
        })
        .await?;
        wait_only(&main, &main_url, 6, Duration::from_secs(10)).await?;
        flips.0 = promoted.elapsed();
        // A moment on v6 for the load to see, well within the scale-down delay.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let aborting = Instant::now();
        act(6, "abort").await?;
        wait_only(&main, &main_url, 5, Duration::from_secs(3)).await?;
        flips.1 = aborting.elapsed();
        Ok(())
    })
    .await?;
    eprintln!(
        "6. promote → main host all v6 after {:?}; abort → all v5 after {:?}",
        flips.0, flips.1
    );
    assert_no_failure("6. blue-green promote + abort", &report, 5, 5, &[5, 6]);
    ensure!(
        report.releases().contains(&6),
        "6. the load saw v6 between promote and abort"
    );
    let rollout = admin.get(&format!("{hello}/rollouts/current")).await?;
    print_history("6. blue-green", &rollout);
    ensure!(
        rollout["release"] == 6 && rollout["status"] == "aborted",
        "6. {rollout:#}"
    );
    wait_weights(admin, &hello, &[(5, 100)], Duration::from_secs(5)).await?;
    admin
        .wait_instances("hello", "only v5 left", exactly_ready_of(3, 5))
        .await?;

    // 7. A sticky canary at 50 %: a client keeping its cookie stays on one release.
    strategy(json!({"kind": "canary", "sticky": true,
                    "steps": [{"set_weight": 50}, {"pause_seconds": null}]}))
    .await?;
    config(json!({"GREETING": "Sticky"})).await?;
    wait_rollout(admin, &hello, "v7 at weight 50", CONVERGE, |r| {
        r["release"] == 7 && r["status"] == "rolling_out" && r["step"] == 1 && r["weight"] == 50
    })
    .await?;
    wait_weights(admin, &hello, &[(5, 50), (7, 50)], CONVERGE).await?;
    let plain = answers(&main, &main_url, 50, 1).await?;
    eprintln!("7. a client without cookies: {}", plain.summary());
    ensure!(
        plain.failures.is_empty() && plain.by_release.len() == 2,
        "7. without a cookie both releases answer: {}",
        plain.summary()
    );
    let mut seen = BTreeMap::new();
    for n in 0..6 {
        let sticky = client(router, &host, true)?;
        let got = answers(&sticky, &main_url, 50, 1).await?;
        ensure!(
            got.failures.is_empty() && got.by_release.len() == 1,
            "7. client {n} keeping cookies got: {}",
            got.summary()
        );
        *seen.entry(got.order[0]).or_insert(0) += 1;
    }
    eprintln!("7. six cookie-keeping clients, 50 requests each, stayed on: {seen:?}");
    act(7, "abort").await?;
    wait_rollout(admin, &hello, "v7 aborted", Duration::from_secs(5), |r| {
        r["release"] == 7 && r["status"] == "aborted"
    })
    .await?;
    wait_only(&main, &main_url, 5, Duration::from_secs(3)).await?;

    print_warnings("after the restart", &mut stage.server.process);
    eprintln!("the whole journey took {:?}", began.elapsed());
    stage.shutdown().await;
    Ok(())
}
