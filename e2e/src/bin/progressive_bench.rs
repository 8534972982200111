//! Progressive delivery's figures (issue 11), for `bench/progressive.sh`. Not a test: it prints
//! figures.
//!
//! One `gantry server` (API, controllers, router), one `gantry agent` on the local Docker engine,
//! the hello image, loopback only. An open-loop load generator sends `GET /` through the router
//! (`Host: <app>.<team>.localhost`) and records every request: when it was due, when its answer
//! came, the status, and the release and container that answered (hello's body names both:
//! `Hello, 世界 from <container> (release v3)`; its `FAIL_PERCENT` 500s say so in their body).
//!
//! 1. **Bad canary.** 3 replicas of v1 (100 millicores, 64 MiB each); the strategy is a canary
//!    at 10 % waiting for promote, with analysis (5xx ≤ 5 % over 10 s, at least 20 requests);
//!    at 200 requests/s, a config change makes the next release answer half of its requests
//!    with 500 (`FAIL_PERCENT=50`). From the load's records: t0 = the first answer from the bad
//!    release, t1 = the last one (after it, everything comes from the stable release), and the
//!    failed requests (non-2xx or transport errors) of the whole run; from the API
//!    (`…/rollouts/current`): when the rollout turned `aborted` and why. Target: t1 − t0 ≤ 5 s
//!    and fewer than 100 failed requests. Between runs the app goes back to a good release with
//!    a rolling update (`FAIL_PERCENT` removed). Flagger's figures for the same canary are
//!    computed from its documented defaults and the measured rates (nothing of Kubernetes runs
//!    here).
//! 2. **Autoscaler scale-out.** 1 replica, a policy of 1–5 replicas at 100 requests/s per
//!    instance; 50 requests/s for ~15 s, then a step to 500 requests/s. From the API
//!    (`…/autoscaling`): the first decision to more than 1 replica; from the load's records: the
//!    first answer from a container that was not serving before the step. Target: decision →
//!    first new instance serving ≤ 3 s; the step → decision is printed too. Between runs the
//!    policy is removed, the app scaled back to 1 and the wait is until one instance is left.
//!
//! Usage: `progressive_bench [RUNS]` (default 5) with `GANTRY_BIN` pointing at the binary and
//! the `gantry-hello:latest` image built (`scripts/build-hello-image`). Everything it starts is
//! stopped, and its team's containers and network removed, when it ends (also on an error or
//! Ctrl-C).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use gantry_e2e::cluster::{docker, start_agent, start_server, Admin, DockerCleanup, IMAGE};
use gantry_e2e::load::release_of;
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use reqwest::Method;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The canary scenario's load.
const CANARY_RATE: u32 = 200;
/// The canary's weight and analysis, as the issue gives them.
const CANARY_WEIGHT: f64 = 10.0;
/// The autoscaler scenario's load before and after the step.
const LOW_RATE: u32 = 50;
const HIGH_RATE: u32 = 500;
/// How long the low rate runs with the policy on before the step: this, plus a part of the
/// autoscaler's period that differs from run to run (see [`scale_out`]).
const LOW_SECONDS: f64 = 15.0;
/// The autoscaler decides every 5 s (`backend/src/autoscaler.rs`, `PERIOD`), and setting a
/// policy starts a pass at once.
const AUTOSCALER_PERIOD_S: f64 = 5.0;
/// A request slower than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Flagger's documented defaults (docs.flagger.app): `interval: schedule interval (default
/// 60s)`; `threshold: max number of failed metric checks before rollback` (5 in the Istio
/// tutorial's canary, which also steps by 10 %); a failing canary is rolled back after
/// `interval * threshold` (usage/deployment-strategies).
const FLAGGER_INTERVAL_S: f64 = 60.0;
const FLAGGER_THRESHOLD: f64 = 5.0;

// ---- the load generator ----

/// One request through the router.
#[derive(Debug, Clone)]
struct Answer {
    /// When it was due and when its answer (or error) came, in seconds from the load's start.
    sent: f64,
    done: f64,
    /// The HTTP status; 0 for a transport error or a timeout.
    status: u16,
    /// The release a 2xx's body names.
    release: Option<u32>,
    /// The container (its hostname) a 2xx's body names.
    host: Option<String>,
    /// A 500 of hello's `FAIL_PERCENT` (only the bad release has it set).
    on_purpose: bool,
    error: Option<String>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Answered by release `bad`: its 200s, and the 500s only it gives.
    fn answered_by(&self, bad: u32) -> bool {
        self.release == Some(bad) || self.on_purpose
    }
}

/// Open loop: a request is due every `1 / rate` s whatever the answers take (a late one is sent
/// at once, never skipped), so a stall shows as failures or latency, not as fewer requests.
struct Load {
    rate: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    ticker: JoinHandle<()>,
    collector: JoinHandle<()>,
    answers: Arc<Mutex<Vec<Answer>>>,
    started: tokio::time::Instant,
    /// `started` as Unix time, to put the server's timestamps on the load's timeline.
    epoch: f64,
}

impl Load {
    fn start(router: SocketAddr, host: &str, rate: u32) -> anyhow::Result<Load> {
        let client = reqwest::Client::builder()
            .resolve(host, router)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(256)
            .build()?;
        let url = format!("http://{host}:{}/", router.port());
        let (stop, mut stopped) = watch::channel(false);
        let rate = Arc::new(AtomicU32::new(rate.max(1)));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
        let started = tokio::time::Instant::now();
        let epoch = unix_now();
        let collected = answers.clone();
        let collector = tokio::spawn(async move {
            while let Some(answer) = rx.recv().await {
                collected.lock().unwrap().push(answer);
            }
        });
        let ticker_rate = rate.clone();
        let ticker = tokio::spawn(async move {
            let mut due = started;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stopped.changed() => break,
                }
                let sent = (due - started).as_secs_f64();
                let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
                tokio::spawn(async move {
                    let answer = request(&client, &url, started, sent).await;
                    let _ = tx.send(answer);
                });
                let rate = ticker_rate.load(Ordering::Relaxed).max(1);
                due += Duration::from_secs_f64(1.0 / f64::from(rate));
            }
        });
        Ok(Load {
            rate,
            stop,
            ticker,
            collector,
            answers,
            started,
            epoch,
        })
    }

    /// Seconds since the start.
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Changes the rate from the next request on; returns when (on the load's timeline).
    fn set_rate(&self, rate: u32) -> f64 {
        self.rate.store(rate.max(1), Ordering::Relaxed);
        self.now()
    }

    /// A Unix time on the load's timeline.
    fn at(&self, unix: f64) -> f64 {
        unix - self.epoch
    }

    /// The answers so far (in the order they came).
    fn snapshot(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Stops sending, waits for the answers in flight (each ends within the request timeout)
    /// and returns them all, by due time.
    async fn stop(self) -> anyhow::Result<Vec<Answer>> {
        let _ = self.stop.send(true);
        self.ticker.await.context("the load's ticker failed")?;
        self.collector
            .await
            .context("the load's collector failed")?;
        let mut answers = std::mem::take(&mut *self.answers.lock().unwrap());
        answers.sort_by(|a, b| a.sent.total_cmp(&b.sent));
        Ok(answers)
    }
}

async fn request(
    client: &reqwest::Client,
    url: &str,
    started: tokio::time::Instant,
    sent: f64,
) -> Answer {
    let mut answer = Answer {
        sent,
        done: 0.0,
        status: 0,
        release: None,
        host: None,
        on_purpose: false,
        error: None,
    };
    match client.get(url).send().await {
        Err(e) => answer.error = Some(format!("{e:#}")),
        Ok(res) => {
            answer.status = res.status().as_u16();
            match res.text().await {
                Err(e) => {
                    answer.status = 0;
                    answer.error = Some(format!("body: {e:#}"));
                }
                Ok(body) if answer.ok() => {
                    answer.release = release_of(&body);
                    answer.host = container_of(&body);
                }
                Ok(body) => {
                    answer.on_purpose = body.contains("FAIL_PERCENT");
                    answer.error = Some(format!("{}: {}", answer.status, body.trim()));
                }
            }
        }
    }
    answer.done = started.elapsed().as_secs_f64();
    answer
}

/// `Hello, 世界 from 3f2a9c1d4e5b (release v3)` → `3f2a9c1d4e5b`.
fn container_of(body: &str) -> Option<String> {
    let (_, after) = body.rsplit_once(" from ")?;
    after.split_whitespace().next().map(str::to_owned)
}

// ---- time ----

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch of an RFC 3339 time: `2026-12-02T13:13:46.123456Z`, or with an
/// offset (`+01:00`). The API and `docker inspect` give them so.
fn unix_time(text: &str) -> Option<f64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-');
    let year: i64 = ymd.next()?.parse().ok()?;
    let month: i64 = ymd.next()?.parse().ok()?;
    let day: i64 = ymd.next()?.parse().ok()?;
    let (clock, offset) = match rest.strip_suffix(['Z', 'z']) {
        Some(clock) => (clock, 0),
        None => {
            let at = rest.rfind(['+', '-'])?;
            let (clock, offset) = rest.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset[1..].split_once(':')?;
            let seconds = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
            (clock, sign * seconds)
        }
    };
    let mut hms = clock.splitn(3, ':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    let whole = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 - offset;
    Some(whole as f64 + s)
}

// ---- figures ----

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs
}

/// `min / median / max` of the runs (the median of an even count is the mean of the middle two).
fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let xs = sorted(xs);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (xs[0], median, xs[n - 1])
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let xs = sorted(xs);
    let rank = ((p / 100.0) * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

fn print_spread(what: &str, unit: &str, xs: &[f64], decimals: usize, target: &str) {
    let (lo, mid, hi) = spread(xs);
    println!(
        "  {what:<52} {lo:>9.decimals$} {mid:>9.decimals$} {hi:>9.decimals$} {unit:<4} {target}"
    );
}

fn tick(ok: bool) -> &'static str {
    if ok {
        "✔"
    } else {
        "✘"
    }
}

// ---- the cluster ----

/// `/api/v1/teams/<team>/apps/<app>`
fn app_path(admin: &Admin, app: &str) -> String {
    format!("/api/v1/teams/{}/apps/{app}", admin.team)
}

/// Creates an app of the hello image (100 millicores, 64 MiB), deploys it and waits until
/// `replicas` instances of v1 are ready.
async fn create_app(admin: &Admin, app: &str, replicas: u32) -> anyhow::Result<()> {
    admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": app, "port": 8888, "replicas": replicas, "cpu_millis": 100,
                   "memory_mib": 64, "health_check_path": "/healthz", "stop_grace_seconds": 5}),
        )
        .await?;
    admin
        .post(
            &format!("{}/deploys", app_path(admin, app)),
            json!({"image": IMAGE}),
        )
        .await?;
    admin
        .wait_release(app, 1, "active", Duration::from_secs(120))
        .await?;
    wait_ready(admin, app, replicas as usize, 1).await
}

/// Waits until the app's instances are exactly `n`, all ready and of release `version`.
async fn wait_ready(admin: &Admin, app: &str, n: usize, version: u32) -> anyhow::Result<()> {
    admin
        .wait_instances(app, &format!("{n} ready of v{version}"), |list| {
            list.len() == n
                && list
                    .iter()
                    .all(|i| i["state"] == "ready" && i["release"] == version)
        })
        .await
        .map(drop)
}

/// Waits until `GET …/routes` gives the whole traffic to release `version`.
async fn wait_routed_to(admin: &Admin, app: &str, version: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let routes = admin
            .get(&format!("{}/routes", app_path(admin, app)))
            .await?;
        let sets: Vec<(u64, u64)> = routes["sets"]
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
        if sets == [(u64::from(version), 100)] {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the routes never gave v{version} everything: {routes:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- 1. a bad canary ----

struct CanaryRun {
    release: u32,
    /// On the load's timeline (s): the config change, the canary's weight set (history),
    /// the first answer from it, the abort (`finished_at`), the poll that saw it, the last
    /// answer from it.
    change: f64,
    weighted: Option<f64>,
    t0: f64,
    aborted: Option<f64>,
    seen_aborted: f64,
    t1: f64,
    /// All the run's requests, and those that failed (non-2xx or transport errors).
    total: usize,
    failed: usize,
    /// Failures not from the canary (should be none).
    other_failures: usize,
    /// The canary's answers (200s and 500s), its 500s, and every answer that came in [t0, t1].
    canary: usize,
    canary_500: usize,
    in_window: usize,
    /// Requests per second the load sent, measured.
    rate: f64,
    reason: String,
}

impl CanaryRun {
    fn exposure(&self) -> f64 {
        self.t1 - self.t0
    }
    fn canary_share(&self) -> f64 {
        self.canary as f64 / self.in_window.max(1) as f64
    }
    fn error_share(&self) -> f64 {
        self.canary_500 as f64 / self.canary.max(1) as f64
    }
    /// Flagger with the same rates: rolled back after `interval × threshold`.
    fn flagger_seconds(&self) -> f64 {
        FLAGGER_INTERVAL_S * FLAGGER_THRESHOLD
    }
    fn flagger_failed(&self) -> f64 {
        self.rate * self.canary_share() * self.error_share() * self.flagger_seconds()
    }
}

/// One bad canary on top of the app's stable release `stable`; the bad release is the next.
async fn bad_canary(
    admin: &Admin,
    app: &str,
    router: SocketAddr,
    host: &str,
    stable: u32,
) -> anyhow::Result<CanaryRun> {
    let path = app_path(admin, app);
    let bad = stable + 1;
    admin
        .send(
            Method::PUT,
            &format!("{path}/strategy"),
            Some(json!({"kind": "canary",
                        "steps": [{"set_weight": CANARY_WEIGHT as u32}, {"pause_seconds": null}],
                        "analysis": {"max_error_percent": 5, "window_seconds": 10,
                                     "min_requests": 20}})),
        )
        .await?;
    let load = Load::start(router, host, CANARY_RATE)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let change = load.now();
    admin
        .patch(
            &format!("{path}/config"),
            json!({"vars": {"FAIL_PERCENT": "50"}}),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (rollout, seen_aborted) = loop {
        if let Ok(r) = admin.get(&format!("{path}/rollouts/current")).await {
            if r["release"] == bad && r["status"] == "aborted" {
                break (r, load.now());
            }
            ensure!(
                !(r["release"] == bad && r["status"] == "active"),
                "the bad canary v{bad} was promoted: {r:#}"
            );
        }
        if Instant::now() > deadline {
            let _ = load.stop().await;
            bail!("v{bad} was not aborted within 90 s of the config change");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_routed_to(admin, app, stable).await?;
    // Two more seconds of answers, all from the stable release.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let epoch = load.epoch;
    let answers = load.stop().await?;
    let at = |unix: f64| unix - epoch;
    let end = answers.last().map_or(0.0, |a| a.sent);

    let from_bad: Vec<&Answer> = answers.iter().filter(|a| a.answered_by(bad)).collect();
    ensure!(
        !from_bad.is_empty(),
        "no answer came from v{bad} (is the hello image older than FAIL_PERCENT? rebuild it)"
    );
    let t0 = from_bad
        .iter()
        .map(|a| a.done)
        .fold(f64::INFINITY, f64::min);
    let t1 = from_bad
        .iter()
        .map(|a| a.done)
        .fold(f64::NEG_INFINITY, f64::max);
    let failed = answers.iter().filter(|a| !a.ok()).count();
    let other_failures = answers.iter().filter(|a| !a.ok() && !a.on_purpose).count();
    if other_failures > 0 {
        let first = answers.iter().find(|a| !a.ok() && !a.on_purpose);
        eprintln!("  {other_failures} failures not from the canary, e.g. {first:?}");
    }
    let history = rollout["history"].as_array().cloned().unwrap_or_default();
    let weighted = history
        .iter()
        .find(|h| h["weight"].as_u64() > Some(0))
        .and_then(|h| unix_time(h["at"].as_str()?))
        .map(at);
    let aborted = rollout["finished_at"].as_str().and_then(unix_time).map(at);
    Ok(CanaryRun {
        release: bad,
        change,
        weighted,
        t0,
        aborted,
        seen_aborted,
        t1,
        total: answers.len(),
        failed,
        other_failures,
        canary: from_bad.len(),
        canary_500: from_bad.iter().filter(|a| a.on_purpose).count(),
        in_window: answers
            .iter()
            .filter(|a| a.done >= t0 && a.done <= t1)
            .count(),
        rate: answers.len() as f64 / end.max(1.0),
        reason: rollout["reason"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Back to a good release: a rolling update without `FAIL_PERCENT`; returns its version.
async fn good_again(admin: &Admin, app: &str, version: u32) -> anyhow::Result<u32> {
    let path = app_path(admin, app);
    admin
        .send(
            Method::PUT,
            &format!("{path}/strategy"),
            Some(json!({"kind": "rolling"})),
        )
        .await?;
    admin
        .patch(
            &format!("{path}/config"),
            json!({"vars": {"FAIL_PERCENT": null}}),
        )
        .await?;
    admin
        .wait_release(app, version, "active", Duration::from_secs(120))
        .await?;
    wait_ready(admin, app, 3, version).await?;
    wait_routed_to(admin, app, version).await?;
    Ok(version)
}

fn print_canary_run(n: usize, r: &CanaryRun) {
    let opt = |t: Option<f64>| t.map_or("?".to_owned(), |t| format!("{t:.2}"));
    println!(
        "run {n}: v{}: t1 − t0 = {:.2} s, {} failed of {} requests ({} of them not from the \
         canary); canary {} answers ({} × 500) = {:.1} % of the answers in [t0, t1], {:.1} % \
         errors; load {:.0}/s",
        r.release,
        r.exposure(),
        r.failed,
        r.total,
        r.other_failures,
        r.canary,
        r.canary_500,
        r.canary_share() * 100.0,
        r.error_share() * 100.0,
        r.rate
    );
    println!(
        "       timeline (s): config change {:.2}, weight {:.0} % set {}, t0 first canary answer \
         {:.2}, aborted (finished_at) {}, seen by the poll {:.2}, t1 last canary answer {:.2}",
        r.change,
        CANARY_WEIGHT,
        opt(r.weighted),
        r.t0,
        opt(r.aborted),
        r.seen_aborted,
        r.t1
    );
    println!("       reason: {}", r.reason);
}

async fn canary_bench(
    admin: &Admin,
    router: SocketAddr,
    runs: usize,
) -> anyhow::Result<Vec<CanaryRun>> {
    let app = "canary";
    let host = format!("{app}.{}.localhost", admin.team);
    create_app(admin, app, 3).await?;
    let mut stable = 1;
    let mut results = Vec::new();
    for n in 1..=runs {
        let run = bad_canary(admin, app, router, &host, stable).await?;
        print_canary_run(n, &run);
        stable = good_again(admin, app, run.release + 1).await?;
        results.push(run);
    }
    admin.scale(app, 0).await?;
    Ok(results)
}

fn print_canary_summary(runs: &[CanaryRun]) {
    let col = |f: &dyn Fn(&CanaryRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let exposure = col(&|r| r.exposure());
    let failed = col(&|r| r.failed as f64);
    let to_abort = col(&|r| r.aborted.map_or(f64::NAN, |a| a - r.t0));
    let after_abort = col(&|r| r.aborted.map_or(f64::NAN, |a| r.t1 - a));
    let change_to_t0 = col(&|r| r.t0 - r.change);
    let weight_to_t0 = col(&|r| r.weighted.map_or(f64::NAN, |w| r.t0 - w));
    let share = col(&|r| r.canary_share() * 100.0);
    let errors = col(&|r| r.error_share() * 100.0);
    let rate = col(&|r| r.rate);
    let flagger_failed = col(&|r| r.flagger_failed());
    let (_, exposure_mid, exposure_max) = spread(&exposure);
    let (_, failed_mid, failed_max) = spread(&failed);
    println!();
    println!(
        "BAD CANARY, {} runs (3 replicas, canary at {CANARY_WEIGHT:.0} %, analysis 5 % over 10 s, \
         min 20 requests; {CANARY_RATE} requests/s; FAIL_PERCENT=50)",
        runs.len()
    );
    println!("  {:<52} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    print_spread(
        "t1 − t0: canary's first answer → its last",
        "s",
        &exposure,
        2,
        &format!("target ≤ 5 s {}", tick(exposure_max <= 5.0)),
    );
    print_spread(
        "failed user requests (non-2xx or transport errors)",
        "",
        &failed,
        0,
        &format!("target < 100 {}", tick(failed_max < 100.0)),
    );
    print_spread("  t0 → aborted (finished_at)", "s", &to_abort, 2, "");
    print_spread(
        "  aborted (its pass's clock) → t1",
        "s",
        &after_abort,
        2,
        "",
    );
    print_spread(
        "config change → t0 (canary start)",
        "s",
        &change_to_t0,
        2,
        "",
    );
    print_spread("weight set (history) → t0", "s", &weight_to_t0, 2, "");
    print_spread(
        "canary's share of the answers in [t0, t1]",
        "%",
        &share,
        1,
        "",
    );
    print_spread("canary's 500s of its answers", "%", &errors, 1, "");
    print_spread("load sent", "/s", &rate, 0, "");
    println!(
        "  all runs within target: {} (median t1 − t0 {exposure_mid:.2} s, median {failed_mid:.0} \
         failed)",
        tick(exposure_max <= 5.0 && failed_max < 100.0)
    );
    println!();
    println!(
        "FLAGGER, COMPUTED — NOT RUN (no Kubernetes here): its documented defaults, \
         docs.flagger.app: \"interval: schedule interval (default 60s)\", \"threshold: max \
         number of failed metric checks before rollback\" ({FLAGGER_THRESHOLD:.0} in its Istio \
         tutorial's canary, stepWeight 10); a failing canary is rolled back after interval × \
         threshold (usage/deployment-strategies)."
    );
    let seconds = FLAGGER_INTERVAL_S * FLAGGER_THRESHOLD;
    let (_, share_mid, _) = spread(&share);
    let (_, errors_mid, _) = spread(&errors);
    let (_, rate_mid, _) = spread(&rate);
    let (fl_lo, fl_mid, fl_hi) = spread(&flagger_failed);
    println!(
        "  bad canary at {CANARY_WEIGHT:.0} % exposed for ≈ {FLAGGER_INTERVAL_S:.0} s × \
         {FLAGGER_THRESHOLD:.0} = {seconds:.0} s (gantry: median {exposure_mid:.2} s, \
         {:.0}× less)",
        seconds / exposure_mid
    );
    println!(
        "  failed requests ≈ rate × canary share × error share × time = {rate_mid:.0}/s × \
         {share_mid:.1} % × {errors_mid:.1} % × {seconds:.0} s ≈ {fl_mid:.0} (per run \
         {fl_lo:.0}–{fl_hi:.0}; gantry: median {failed_mid:.0})"
    );
    println!(
        "  (with threshold 1, a rollback after the first failed check: one interval, ≈ \
         {FLAGGER_INTERVAL_S:.0} s and ≈ {:.0} failed requests)",
        fl_mid / FLAGGER_THRESHOLD
    );
}

// ---- 2. the autoscaler's scale-out ----

struct ScaleRun {
    /// On the load's timeline (s).
    step: f64,
    decision: f64,
    /// The first answer from a container that was not serving before the step.
    first_new: f64,
    /// The first answer from each new container, in order.
    new_hosts: Vec<(String, f64)>,
    /// When Docker started each new container (the agent's pass starts them one by one).
    new_started: Vec<f64>,
    /// `from → to: reason` of the first decision up.
    decision_text: String,
    /// The first new instance: its row (`created_at`), Docker's created and started times.
    row_created: Option<f64>,
    container_created: Option<f64>,
    container_started: Option<f64>,
    total: usize,
    failed: usize,
    /// p99 latency (ms) of the requests due between the step and the first new answer.
    p99_before_new: f64,
}

/// One scale-out of an app at 1 replica with no policy: run `n` of `runs`.
///
/// Setting the policy starts an autoscaler pass, and the next ones follow every 5 s, so a step
/// a fixed time after it would always land at the same point of the period. The runs spread it
/// evenly instead: the step comes 15 s + (n − ½) / runs × 5 s after the policy, as a user's
/// burst would come at any point of the period.
async fn scale_out(
    admin: &Admin,
    app: &str,
    router: SocketAddr,
    host: &str,
    n: usize,
    runs: usize,
) -> anyhow::Result<ScaleRun> {
    let path = app_path(admin, app);
    let load = Load::start(router, host, LOW_RATE)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let policy_at = unix_now();
    admin
        .send(
            Method::PUT,
            &format!("{path}/autoscaling"),
            Some(json!({"min": 1, "max": 5, "target_rps_per_instance": 100,
                        "scale_down_stabilization_seconds": 300})),
        )
        .await?;
    let phase = AUTOSCALER_PERIOD_S * (n as f64 - 0.5) / runs as f64;
    tokio::time::sleep(Duration::from_secs_f64(LOW_SECONDS + phase)).await;
    let before: BTreeSet<String> = load
        .snapshot()
        .iter()
        .filter_map(|a| a.host.clone())
        .collect();
    ensure!(
        before.len() == 1,
        "one container serves before the step, not {before:?}"
    );
    let early = admin.get(&format!("{path}/autoscaling")).await?;
    ensure!(
        early["replicas"] == 1,
        "the app scaled before the step: {early:#}"
    );
    let step = load.set_rate(HIGH_RATE);

    // The autoscaler's first decision up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (decision, decision_text) = loop {
        let status = admin.get(&format!("{path}/autoscaling")).await?;
        let first_up = status["decisions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| {
                let at = unix_time(d["at"].as_str()?)?;
                let (from, to) = (d["from"].as_u64()?, d["to"].as_u64()?);
                (at >= policy_at - 1.0 && to > 1 && to > from).then(|| {
                    (
                        at,
                        format!(
                            "{from} → {to}: {}",
                            d["reason"].as_str().unwrap_or_default()
                        ),
                    )
                })
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((at, text)) = first_up {
            break (load.at(at), text);
        }
        if Instant::now() > deadline {
            let _ = load.stop().await;
            bail!("no decision to scale out within 60 s of the step: {status:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The first answer from a new container.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_new_host = loop {
        let first = load
            .snapshot()
            .into_iter()
            .filter(|a| a.host.as_ref().is_some_and(|h| !before.contains(h)))
            .min_by(|a, b| a.done.total_cmp(&b.done));
        if let Some(first) = first {
            break first.host.unwrap_or_default();
        }
        if Instant::now() > deadline {
            let _ = load.stop().await;
            bail!("no new container answered within 60 s of the decision");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let instances = admin.instances(app).await?;
    // A few seconds more: the other new instances come up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let epoch = load.epoch;
    let answers = load.stop().await?;
    let at = |unix: f64| unix - epoch;

    let mut new_hosts: Vec<(String, f64)> = Vec::new();
    let mut by_done: Vec<&Answer> = answers.iter().collect();
    by_done.sort_by(|a, b| a.done.total_cmp(&b.done));
    for a in by_done {
        if let Some(h) = &a.host {
            if !before.contains(h) && !new_hosts.iter().any(|(seen, _)| seen == h) {
                new_hosts.push((h.clone(), a.done));
            }
        }
    }
    let first_new = new_hosts.first().map_or(f64::NAN, |(_, t)| *t);
    let mut args = vec!["inspect", "-f", "{{.State.StartedAt}}"];
    args.extend(new_hosts.iter().map(|(h, _)| h.as_str()));
    let mut new_started: Vec<f64> = docker(&args)
        .unwrap_or_default()
        .lines()
        .filter_map(unix_time)
        .map(at)
        .collect();
    new_started.sort_by(f64::total_cmp);
    let latencies: Vec<f64> = answers
        .iter()
        .filter(|a| a.sent >= step && a.sent < first_new)
        .map(|a| (a.done - a.sent) * 1e3)
        .collect();
    // The first new instance's own times: Docker's and its row's.
    let inspect = docker(&[
        "inspect",
        "-f",
        "{{.Created}}|{{.State.StartedAt}}|{{index .Config.Labels \"gantry.instance\"}}",
        &first_new_host,
    ])
    .unwrap_or_default();
    let mut parts = inspect.trim().split('|');
    let container_created = parts.next().and_then(unix_time).map(at);
    let container_started = parts.next().and_then(unix_time).map(at);
    let instance = parts.next().unwrap_or_default().to_owned();
    let row_created = instances
        .iter()
        .find(|i| i["id"].as_str() == Some(instance.as_str()))
        .and_then(|i| unix_time(i["created_at"].as_str()?))
        .map(at);
    Ok(ScaleRun {
        step,
        decision,
        first_new,
        new_hosts,
        new_started,
        decision_text,
        row_created,
        container_created,
        container_started,
        total: answers.len(),
        failed: answers.iter().filter(|a| !a.ok()).count(),
        p99_before_new: percentile(&latencies, 99.0),
    })
}

/// Autoscaling off, back to one instance, and the router serving only it.
async fn scale_back(
    admin: &Admin,
    app: &str,
    router: SocketAddr,
    host: &str,
) -> anyhow::Result<()> {
    let path = app_path(admin, app);
    admin.delete(&format!("{path}/autoscaling")).await?;
    admin.scale(app, 1).await?;
    wait_ready(admin, app, 1, 1).await?;
    let client = reqwest::Client::builder()
        .resolve(host, router)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let url = format!("http://{host}:{}/", router.port());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut hosts = BTreeSet::new();
        for _ in 0..20 {
            let body = client.get(&url).send().await?.text().await?;
            hosts.insert(container_of(&body).unwrap_or_default());
        }
        if hosts.len() == 1 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "more than one container still answers: {hosts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The autoscaler forgets the app's request count once its policy is gone (next pass).
    tokio::time::sleep(Duration::from_secs(6)).await;
    Ok(())
}

fn print_scale_run(n: usize, r: &ScaleRun) {
    let rel = |t: Option<f64>| t.map_or("?".to_owned(), |t| format!("{:+.2}", t - r.decision));
    println!(
        "run {n}: step → decision {:.2} s, decision → first new instance serving {:.2} s; \
         decision {}",
        r.decision - r.step,
        r.first_new - r.decision,
        r.decision_text
    );
    let list = |ts: &mut dyn Iterator<Item = f64>| {
        ts.map(|t| format!("{:+.2}", t - r.decision))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "       after the decision (s): the first new instance's row {}, its container created \
         {}, started {}, its first answer {:+.2}; new containers started at {}, first answered \
         at {}",
        rel(r.row_created),
        rel(r.container_created),
        rel(r.container_started),
        r.first_new - r.decision,
        list(&mut r.new_started.iter().copied()),
        list(&mut r.new_hosts.iter().map(|(_, t)| *t)),
    );
    println!(
        "       {} failed of {} requests; p99 {:.0} ms between the step and the first new answer",
        r.failed, r.total, r.p99_before_new
    );
}

async fn scale_bench(
    admin: &Admin,
    router: SocketAddr,
    runs: usize,
) -> anyhow::Result<Vec<ScaleRun>> {
    let app = "scale";
    let host = format!("{app}.{}.localhost", admin.team);
    create_app(admin, app, 1).await?;
    let mut results = Vec::new();
    for n in 1..=runs {
        let run = scale_out(admin, app, router, &host, n, runs).await?;
        print_scale_run(n, &run);
        results.push(run);
        scale_back(admin, app, router, &host).await?;
    }
    Ok(results)
}

fn print_scale_summary(runs: &[ScaleRun]) {
    let col = |f: &dyn Fn(&ScaleRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let serving = col(&|r| r.first_new - r.decision);
    let decided = col(&|r| r.decision - r.step);
    let row = col(&|r| r.row_created.map_or(f64::NAN, |t| t - r.decision));
    // The new containers the agent started before the first of them answered.
    let before_first = |r: &ScaleRun| -> Vec<f64> {
        r.new_started
            .iter()
            .copied()
            .filter(|t| *t <= r.first_new)
            .collect()
    };
    let started = col(&|r| r.new_started.first().map_or(f64::NAN, |t| t - r.decision));
    let to_answer = col(&|r| r.new_started.first().map_or(f64::NAN, |t| r.first_new - t));
    let batch = col(&|r| before_first(r).len() as f64);
    let last_started = col(&|r| before_first(r).into_iter().fold(f64::NAN, f64::max) - r.decision);
    let failed = col(&|r| r.failed as f64);
    let p99 = col(&|r| r.p99_before_new);
    let (_, _, serving_max) = spread(&serving);
    println!();
    println!(
        "AUTOSCALER SCALE-OUT, {} runs (1 replica, policy 1–5 at 100 requests/s per instance; \
         {LOW_RATE}/s for {LOW_SECONDS:.0} s + a part of the autoscaler's {AUTOSCALER_PERIOD_S:.0} s \
         period spread over the runs, then {HIGH_RATE}/s)",
        runs.len()
    );
    println!("  {:<52} {:>9} {:>9} {:>9}", "", "min", "median", "max");
    print_spread(
        "decision → first new instance serving",
        "s",
        &serving,
        2,
        &format!("target ≤ 3 s {}", tick(serving_max <= 3.0)),
    );
    print_spread("load step → decision", "s", &decided, 2, "");
    print_spread("  decision → instance row created", "s", &row, 2, "");
    print_spread(
        "  decision → first new container started",
        "s",
        &started,
        2,
        "",
    );
    print_spread(
        "  first container started → first new answer",
        "s",
        &to_answer,
        2,
        "",
    );
    print_spread("  containers started before that answer", "", &batch, 0, "");
    print_spread(
        "  decision → the last of them started",
        "s",
        &last_started,
        2,
        "",
    );
    print_spread("failed requests in the run", "", &failed, 0, "");
    print_spread("p99 latency, step → first new answer", "ms", &p99, 0, "");
}

async fn run(runs: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let db_url = start_postgres(dir).await?;
    let (port, router_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&db_url, port, router_port).await?;
    let admin = Admin::sign_up(&base).await?;
    // Dropped before the server: the agent first (below), then the team's containers.
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let token = token["token"].as_str().context("join token")?;
    let node = format!("pbench-{}", std::process::id());
    let agent = start_agent(&base, token, &node, "a", dir)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !admin.nodes().await?.iter().any(|n| n["status"] == "ready") {
        ensure!(Instant::now() < deadline, "the agent never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let router: SocketAddr = ([127, 0, 0, 1], router_port).into();

    println!("== 1. bad canary ({runs} runs)");
    let canary = canary_bench(&admin, router, runs).await?;
    print_canary_summary(&canary);

    println!();
    println!("== 2. autoscaler scale-out ({runs} runs)");
    let scale = scale_bench(&admin, router, runs).await?;
    print_scale_summary(&scale);

    drop(agent);
    let _ = server.process.terminate(Duration::from_secs(10)).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(5), |n| n.parse())?;
    ensure!((1..=20).contains(&runs), "runs between 1 and 20");
    ensure!(
        unix_time("2026-12-02T13:13:46.5Z") == Some(1_796_217_226.5)
            && unix_time("2026-12-02T14:13:46.5+01:00") == Some(1_796_217_226.5),
        "RFC 3339 parsing"
    );
    docker(&["image", "inspect", IMAGE]).context("run scripts/build-hello-image first")?;
    // Postgres and its directory outlive everything else `run` starts, also on an error or
    // Ctrl-C (then `run`'s future is dropped: the agent, the containers, the server go first).
    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    tokio::select! {
        result = run(runs, dir.path()) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}
