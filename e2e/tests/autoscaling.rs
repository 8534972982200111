//! The autoscaler end to end: a `gantry server`, two `gantry agent` processes on the real Docker
//! engine and the hello image, reserved a tenth of a core (`cpu_millis` 100) so that a few
//! requests to `/burn` saturate it.
//!
//! With a policy of 1–3 replicas at 50 % CPU and a 15 s scale-down window, CPU load through the
//! router scales the app out: the decision (1 → more, with its CPU reading) is recorded and in
//! the app's events, the new instances become ready and answer through the router, and the app
//! never exceeds its `max`. Once the load stops, the app shrinks back to 1 after the window, with
//! that decision recorded too. The timings are printed: load start → decision → new instance
//! ready → all 3 ready; load stop → back to 1.
//!
//! The agents sample usage every 5 s (a rate needs two samples) and the autoscaler decides every
//! 5 s, so each step takes a few of those periods; every wait polls with a deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gantry_e2e::cluster::{Admin, CONVERGE, IMAGE};
use gantry_e2e::stage::Stage;
use reqwest::Method;
use serde_json::{json, Value};

/// The policy's bounds and window.
const MAX: u64 = 3;
const TARGET_CPU_PERCENT: u64 = 50;
const STABILIZATION_SECONDS: u64 = 15;
/// Concurrent `/burn` loops: more than `MAX`, so that every instance stays saturated.
const LOOPS: usize = 6;
/// Each request keeps a core busy this long (the container's CPU quota stretches nothing: the
/// app burns for wall-clock time).
const BURN_MS: u32 = 200;
/// From the load's start to a scale-out decision, and to all `MAX` instances ready.
const SCALE_OUT_WITHIN: Duration = Duration::from_secs(40);
const ALL_READY_WITHIN: Duration = Duration::from_secs(60);
/// From the load's end to the app back at 1.
const SCALE_IN_WITHIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// `/burn` loops through the router until stopped, counting answers and failures.
struct Burn {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Burn {
    fn start(router: SocketAddr, host: &str, loops: usize) -> anyhow::Result<Burn> {
        let client = reqwest::Client::builder()
            .resolve(host, router)
            .timeout(Duration::from_secs(10))
            .build()?;
        let url = format!("http://{host}:{}/burn?ms={BURN_MS}", router.port());
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..loops)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let failure = match client.get(&url).send().await {
                            Err(e) => Some(format!("{e:#}")),
                            Ok(res) => {
                                let status = res.status();
                                match res.text().await {
                                    Ok(body) if status.is_success() && body.trim() == "burned" => {
                                        None
                                    }
                                    Ok(body) => Some(format!("{status}: {}", body.trim())),
                                    Err(e) => Some(format!("{status}, body: {e:#}")),
                                }
                            }
                        };
                        match failure {
                            None => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(f) => {
                                failures.lock().unwrap().push(f);
                                // No hot loop on a refusal.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Burn {
            stop,
            ok,
            failures,
            workers,
        })
    }

    /// Stops the loops (each finishes its request); returns the answers and the failures.
    async fn stop(self) -> anyhow::Result<(usize, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await?;
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        Ok((self.ok.load(Ordering::Relaxed), failures))
    }
}

/// What the test saw of the app while polling: the most replicas and instances at any time.
#[derive(Default)]
struct Seen {
    replicas: u64,
    instances: usize,
    ready: usize,
}

fn ready(list: &[Value]) -> usize {
    list.iter().filter(|i| i["state"] == "ready").count()
}

/// `GET …/autoscaling` and the instances, once; every look checks the policy's `max`.
async fn look(admin: &Admin, hello: &str, seen: &mut Seen) -> anyhow::Result<(Value, Vec<Value>)> {
    let status = admin.get(&format!("{hello}/autoscaling")).await?;
    let list = admin.instances("hello").await?;
    let replicas = status["replicas"].as_u64().context("replicas")?;
    seen.replicas = seen.replicas.max(replicas);
    seen.instances = seen.instances.max(list.len());
    seen.ready = seen.ready.max(ready(&list));
    ensure!(
        replicas <= MAX && list.len() <= MAX as usize,
        "the policy's max is {MAX}: {replicas} replicas, instances {list:#?}"
    );
    Ok((status, list))
}

/// Polls until `done` holds for the autoscaling status and the instances.
async fn until(
    admin: &Admin,
    hello: &str,
    seen: &mut Seen,
    what: &str,
    deadline: Instant,
    done: impl Fn(&Value, &[Value]) -> bool,
) -> anyhow::Result<(Value, Vec<Value>)> {
    loop {
        let (status, list) = look(admin, hello, seen).await?;
        if done(&status, &list) {
            return Ok((status, list));
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: not reached in time; autoscaling: {status:#}; instances: {:#?}",
                list.iter()
                    .map(|i| format!("{} {} on {}", i["id"], i["state"], i["node"]))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn decisions(status: &Value) -> Vec<Value> {
    status["decisions"].as_array().cloned().unwrap_or_default()
}

fn print_decisions(what: &str, status: &Value) {
    eprintln!("{what}: decisions, oldest first:");
    for d in decisions(status).iter().rev() {
        eprintln!(
            "  {} {} → {} (cpu {} %, rps/instance {}): {}",
            d["at"].as_str().unwrap_or_default(),
            d["from"],
            d["to"],
            d["cpu_percent"],
            d["rps_per_instance"],
            d["reason"].as_str().unwrap_or_default()
        );
    }
}

/// The containers (hostnames) that answer `GET /` through the router, until `n` distinct ones
/// have or the deadline passes.
async fn answering(router: SocketAddr, host: &str, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let client = reqwest::Client::builder()
        .resolve(host, router)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{host}:{}/", router.port());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        let res = client.get(&url).send().await?;
        let status = res.status();
        let body = res.text().await?;
        ensure!(
            status.is_success(),
            "GET / through the router: {status} {body}"
        );
        // `Hello, 世界 from <hostname> (release v1)`
        let hostname = body
            .split(" from ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no hostname in {body:?}"))?;
        seen.insert(hostname.to_owned());
        ensure!(
            Instant::now() < deadline,
            "only {seen:?} answered through the router, not {n} instances"
        );
    }
    Ok(seen)
}

#[tokio::test]
async fn cpu_load_scales_the_app_out_within_max_and_back_in_after_the_window() -> anyhow::Result<()>
{
    let began = Instant::now();
    let stage = Stage::start("as", 2).await?;
    let (admin, router) = (&stage.admin, stage.router);
    let (hello, host) = (stage.app_path("hello"), stage.host("hello"));
    admin
        .post(
            &stage.apps_path(),
            json!({"name": "hello", "port": 8888, "replicas": 1, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz", "stop_grace_seconds": 5}),
        )
        .await?;
    admin
        .post(&format!("{hello}/deploys"), json!({"image": IMAGE}))
        .await?;
    admin.wait_release("hello", 1, "active", CONVERGE).await?;
    admin
        .wait_instances("hello", "1 ready", |list| {
            list.len() == 1 && ready(list) == 1
        })
        .await?;
    eprintln!(
        "v1 active with 1 ready instance after {:?}",
        began.elapsed()
    );

    let policy = json!({"min": 1, "max": MAX, "target_cpu_percent": TARGET_CPU_PERCENT,
                        "scale_down_stabilization_seconds": STABILIZATION_SECONDS});
    let status = admin
        .send(Method::PUT, &format!("{hello}/autoscaling"), Some(policy))
        .await?;
    ensure!(
        status["policy"]["min"] == 1
            && status["policy"]["max"] == MAX
            && status["policy"]["target_cpu_percent"] == TARGET_CPU_PERCENT
            && status["policy"]["scale_down_stabilization_seconds"] == STABILIZATION_SECONDS
            && status["replicas"] == 1,
        "the policy as set: {status:#}"
    );
    let before: Vec<Value> = decisions(&status);

    // Load: the one instance is saturated (100 % of its tenth of a core, twice the target), and
    // so is each new one while there are more loops than instances.
    let mut seen = Seen::default();
    let load_start = Instant::now();
    let burn = Burn::start(router, &host, LOOPS)?;
    let scale_out = async {
        let (status, _) = until(
            admin,
            &hello,
            &mut seen,
            "a scale-out",
            load_start + SCALE_OUT_WITHIN,
            |s, _| s["replicas"].as_u64() > Some(1),
        )
        .await?;
        let decided = load_start.elapsed();
        let (_, list) = until(
            admin,
            &hello,
            &mut seen,
            "a second instance ready",
            load_start + ALL_READY_WITHIN,
            |_, list| ready(list) >= 2,
        )
        .await?;
        let first_ready = load_start.elapsed();
        eprintln!(
            "scale-out: replicas {} after {decided:?}; instance 2 ready after {first_ready:?} \
             ({:?})",
            status["replicas"],
            list.iter().map(|i| &i["node"]).collect::<Vec<_>>()
        );
        let (status, list) = until(
            admin,
            &hello,
            &mut seen,
            "all 3 instances ready",
            load_start + ALL_READY_WITHIN,
            |s, list| s["replicas"] == MAX && list.len() == MAX as usize && ready(list) == 3,
        )
        .await?;
        let all_ready = load_start.elapsed();
        let hostnames = answering(router, &host, MAX as usize).await?;
        eprintln!(
            "scale-out: {MAX} ready after {all_ready:?}, on nodes {:?}; through the router, \
             {hostnames:?} answered",
            list.iter().map(|i| &i["node"]).collect::<Vec<_>>()
        );
        anyhow::Ok((status, decided, first_ready, all_ready))
    }
    .await;
    let (answered, failures) = burn.stop().await?;
    let load_stop = Instant::now();
    eprintln!(
        "load: {LOOPS} loops of /burn?ms={BURN_MS} for {:?}: {answered} answers, {} failures{}",
        load_start.elapsed(),
        failures.len(),
        failures
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    );
    let (status, decided, first_ready, all_ready) = scale_out?;
    print_decisions("after the scale-out", &status);
    ensure!(
        failures.is_empty(),
        "requests failed while the app scaled out: {failures:?}"
    );
    let new: Vec<Value> = decisions(&status)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    let out = new
        .iter()
        .rev()
        .find(|d| d["from"] == 1 && d["to"].as_u64() > Some(1))
        .with_context(|| format!("no decision 1 → more: {status:#}"))?;
    let cpu = out["cpu_percent"].as_f64().unwrap_or_default();
    let reason = out["reason"].as_str().unwrap_or_default();
    ensure!(
        cpu > TARGET_CPU_PERCENT as f64 * 1.1
            && reason.contains(&format!("(target {TARGET_CPU_PERCENT} %)"))
            && reason.starts_with("cpu ")
            && reason.contains(&format!("scale 1 → {}", out["to"])),
        "the scale-out decision gives its CPU reading and rule: {out:#}"
    );
    ensure!(
        new.iter().all(|d| d["to"].as_u64() <= Some(MAX)),
        "a decision above max: {status:#}"
    );

    // No load: back to 1, but only after the stabilisation window.
    let (status, _) = until(
        admin,
        &hello,
        &mut seen,
        "back to 1 replica",
        load_stop + SCALE_IN_WITHIN,
        |s, _| s["replicas"] == 1,
    )
    .await?;
    let scaled_in = load_stop.elapsed();
    until(
        admin,
        &hello,
        &mut seen,
        "1 instance left",
        load_stop + SCALE_IN_WITHIN,
        |_, list| list.len() == 1 && ready(list) == 1,
    )
    .await?;
    let one_left = load_stop.elapsed();
    print_decisions("after the scale-in", &status);
    let newest = decisions(&status);
    let down = newest
        .iter()
        .find(|d| d["to"] == 1 && d["from"].as_u64() > Some(1))
        .with_context(|| format!("no decision back to 1: {status:#}"))?;
    let reason = down["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("cpu ") && reason.contains(&format!("scale {} → 1", down["from"])),
        "the scale-in decision gives its CPU reading and rule: {down:#}"
    );
    ensure!(
        down["cpu_percent"].as_f64() < Some(TARGET_CPU_PERCENT as f64 * 0.9),
        "the app scaled in on a low CPU reading: {down:#}"
    );
    let held = newest.iter().any(|d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("{STABILIZATION_SECONDS} s stabilisation window")))
    });
    ensure!(
        held,
        "a scale-down was held back by the window before it happened: {status:#}"
    );
    ensure!(
        scaled_in >= Duration::from_secs(STABILIZATION_SECONDS) - Duration::from_secs(5),
        "scaled in {scaled_in:?} after the load stopped, before the {STABILIZATION_SECONDS} s \
         window could pass (the last high reading is at most a period before the stop)"
    );

    // The decisions are in the app's events too.
    let events = admin
        .get(&format!("{hello}/logs?stream=event&q=autoscaler"))
        .await?;
    let lines: Vec<&str> = events["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["line"].as_str())
        .collect();
    eprintln!("the autoscaler in the app's events:");
    for line in &lines {
        eprintln!("  {line}");
    }
    for (what, rule) in [
        ("scale-out", format!("scale 1 → {}", out["to"])),
        ("scale-in", format!("scale {} → 1", down["from"])),
    ] {
        ensure!(
            lines
                .iter()
                .any(|l| l.starts_with("autoscaler: ") && l.contains(&rule)),
            "the {what} ({rule}) is in the app's events: {events:#}"
        );
    }
    ensure!(
        seen.replicas == MAX && seen.ready == MAX as usize && seen.instances <= MAX as usize,
        "at most and at last {MAX}: replicas {}, ready {}, instances {}",
        seen.replicas,
        seen.ready,
        seen.instances
    );

    eprintln!(
        "TIMINGS: load start → scale-out decision seen {decided:?} → instance 2 ready \
         {first_ready:?} → {MAX} ready {all_ready:?}; load stop → back to 1 replica {scaled_in:?} \
         → 1 instance left {one_left:?} (window {STABILIZATION_SECONDS} s); peak: {} replicas, \
         {} instances; scale-out reading {cpu:.1} % of the {TARGET_CPU_PERCENT} % target",
        seen.replicas, seen.instances
    );
    eprintln!("the whole journey took {:?}", began.elapsed());
    stage.shutdown().await;
    Ok(())
}
