//! "git push deploys" against the same steps done by hand (issue 12), for `bench/git_push.sh`.
//! Not a test: it prints figures.
//!
//! One `gantry server` and one `gantry agent` on the local Docker engine (which also builds),
//! loopback only, two apps of the hello image's context (`target/hello-image/`: its Dockerfile
//! and the static `hello`):
//!
//! - **git**: the app's remote; a run commits a one-line change (`ENV GREETING=git-<i>` in the
//!   Dockerfile, untimed) and times `git push` → the router (`Host: <app>.<team>.localhost`)
//!   answers the new greeting;
//! - **by hand**: the same context in a directory; a run writes the same change (untimed) and
//!   times `docker build` → `docker push` to the built-in registry (logged in with an API token,
//!   in a `DOCKER_CONFIG` of its own) → `POST …/deploys {image}` → the router answers the new
//!   greeting.
//!
//! A warm-up of each first (so base layers and the `hello` layer are cached on both sides),
//! then `RUNS` alternating pairs (git first in even runs, by hand first in odd ones). The router
//! is polled every 100 ms on both sides. Printed: each run, min/median/max of each side, and the
//! ratio of the medians against the target ≤ 1.1×; for git also the time `git push` itself took
//! and the build's own duration from `GET …/builds`.
//!
//! Usage: `git_push_bench [RUNS]` (default 5) with `GANTRY_BIN` pointing at the binary, the
//! `gantry-hello:latest` image and `target/hello-image/hello` built
//! (`scripts/build-hello-image`). Everything it starts is stopped, and its team's containers,
//! network and the images it tagged removed, when it ends (also on an error or Ctrl-C).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use gantry_e2e::cluster::docker_as;
use gantry_e2e::git::{hello_binary, hello_dockerfile, remote_url, RemoveBuiltImages, Repo};
use gantry_e2e::stage::Stage;
use serde_json::json;

/// How long one deploy may take before the benchmark gives up.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
/// The router is asked this often whether the new greeting is served.
const POLL: Duration = Duration::from_millis(100);

/// Removes the images this benchmark tagged in the engine, whatever happens.
struct RemoveImages(Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "--force", image])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Waits until the app answers 200 with `needle` through the router.
async fn wait_serves(stage: &Stage, app: &str, needle: &str) -> anyhow::Result<()> {
    let host = stage.host(app);
    let client = reqwest::Client::builder()
        .resolve(&host, stage.router)
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{host}:{}/", stage.router_port);
    let deadline = Instant::now() + DEPLOY_TIMEOUT;
    loop {
        if let Ok(res) = client.get(&url).send().await {
            if res.status() == 200 && res.text().await.is_ok_and(|b| b.contains(needle)) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{app} did not serve {needle:?} within {DEPLOY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The docker CLI with the benchmark's own config, off the async threads.
async fn docker(config: &Path, args: Vec<String>) -> anyhow::Result<String> {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_as(&config, &args, None)
    })
    .await?
}

/// What one git run measured.
struct GitRun {
    /// `git push` → the new greeting served.
    total: f64,
    /// `git push` alone (build, push, release; it returns once released).
    push: f64,
    /// The build's own duration, from the API.
    build: f64,
}

async fn git_run(
    stage: &Stage,
    repo: &Repo,
    remote: &str,
    greeting: &str,
) -> anyhow::Result<GitRun> {
    repo.set_dockerfile(&format!("ENV GREETING={greeting}"))?;
    repo.commit(greeting)?;
    let started = Instant::now();
    let out = repo.push(remote, "main").await?;
    let push = started.elapsed().as_secs_f64();
    ensure!(out.success(), "git push failed: {out}");
    wait_serves(stage, "viagit", greeting).await?;
    let total = started.elapsed().as_secs_f64();
    let builds = stage
        .admin
        .get(&format!("{}/builds", stage.app_path("viagit")))
        .await?;
    let build = builds[0]["duration_seconds"].as_f64().unwrap_or(f64::NAN);
    Ok(GitRun { total, push, build })
}

/// `docker build` + `docker push` + the deploy call → served; returns the seconds.
async fn by_hand_run(
    stage: &Stage,
    config: &Path,
    context: &Path,
    repository: &str,
    greeting: &str,
    images: &mut RemoveImages,
) -> anyhow::Result<f64> {
    std::fs::write(
        context.join("Dockerfile"),
        hello_dockerfile(&format!("ENV GREETING={greeting}")),
    )?;
    let image = format!("{repository}:{greeting}");
    images.0.push(image.clone());
    let context = context.to_str().context("utf-8 temp path")?.to_owned();
    let started = Instant::now();
    docker(
        config,
        vec![
            "build".into(),
            "-q".into(),
            "-t".into(),
            image.clone(),
            context,
        ],
    )
    .await?;
    docker(config, vec!["push".into(), image.clone()]).await?;
    stage
        .admin
        .post(
            &format!("{}/deploys", stage.app_path("byhand")),
            json!({"image": image}),
        )
        .await?;
    wait_serves(stage, "byhand", greeting).await?;
    Ok(started.elapsed().as_secs_f64())
}

fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    (xs[0], median, xs[n - 1])
}

fn print_spread(what: &str, xs: &[f64]) -> f64 {
    let (lo, mid, hi) = spread(xs);
    println!("  {what:<48} {lo:>7.2} {mid:>7.2} {hi:>7.2} s");
    mid
}

async fn run(runs: usize) -> anyhow::Result<()> {
    // Drops after the stage: untags what the builds left in the engine.
    let mut built = RemoveBuiltImages::default();
    let stage = Stage::start("gpb", 1).await?;
    built.prefix = Some(format!("127.0.0.1:{}/{}/", stage.port, stage.admin.team));
    let admin = &stage.admin;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "bench", "team": admin.team, "role": "member"}),
        )
        .await?;
    let secret = token["secret"].as_str().context("token secret")?.to_owned();
    for app in ["viagit", "byhand"] {
        admin
            .post(
                &stage.apps_path(),
                json!({"name": app, "port": 8888, "cpu_millis": 100, "memory_mib": 32,
                       "health_check_path": "/healthz", "stop_grace_seconds": 1}),
            )
            .await?;
    }

    // git: the remote and the hello context.
    let remote = remote_url(&stage.base, &admin.email, &secret, &admin.team, "viagit");
    let repo = Repo::with_hello("")?;

    // By hand: the same context, and a docker login of its own.
    let config = tempfile::tempdir()?;
    let context = tempfile::tempdir()?;
    std::fs::copy(hello_binary()?, context.path().join("hello"))?;
    let host = format!("127.0.0.1:{}", stage.port);
    let repository = format!("{host}/{}/byhand", admin.team);
    let mut images = RemoveImages(Vec::new());
    docker_as(
        config.path(),
        &["login", &host, "-u", &admin.email, "--password-stdin"],
        Some(&secret),
    )?;

    eprintln!("warm-up…");
    let warm = git_run(&stage, &repo, &remote, "git-warm").await?;
    let hand_warm = by_hand_run(
        &stage,
        config.path(),
        context.path(),
        &repository,
        "hand-warm",
        &mut images,
    )
    .await?;
    eprintln!(
        "warm-up: git {:.2} s (first build, push {:.2} s), by hand {hand_warm:.2} s",
        warm.total, warm.push
    );

    let (mut git, mut hand) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        let git_greeting = format!("git-{i}");
        let hand_greeting = format!("hand-{i}");
        let (g, h) = if i % 2 == 0 {
            let g = git_run(&stage, &repo, &remote, &git_greeting).await?;
            let h = by_hand_run(
                &stage,
                config.path(),
                context.path(),
                &repository,
                &hand_greeting,
                &mut images,
            )
            .await?;
            (g, h)
        } else {
            let h = by_hand_run(
                &stage,
                config.path(),
                context.path(),
                &repository,
                &hand_greeting,
                &mut images,
            )
            .await?;
            let g = git_run(&stage, &repo, &remote, &git_greeting).await?;
            (g, h)
        };
        println!(
            "run {i}: git push → serving {:.2} s (push {:.2} s, build {:.2} s); \
             by hand → serving {h:.2} s; ratio {:.2}",
            g.total,
            g.push,
            g.build,
            g.total / h
        );
        git.push(g);
        hand.push(h);
    }

    println!();
    println!("{runs} runs: a one-line Dockerfile change → the router serves it");
    println!("  {:<48} {:>7} {:>7} {:>7}", "", "min", "median", "max");
    let totals: Vec<f64> = git.iter().map(|g| g.total).collect();
    let git_median = print_spread("git push → serving (ours)", &totals);
    print_spread(
        "  of which `git push` returned",
        &git.iter().map(|g| g.push).collect::<Vec<_>>(),
    );
    print_spread(
        "  of which the build (API duration)",
        &git.iter().map(|g| g.build).collect::<Vec<_>>(),
    );
    let hand_median = print_spread("docker build + push + deploy → serving (peer)", &hand);
    let ratio = git_median / hand_median;
    let verdict = if ratio <= 1.1 { "✔" } else { "✘" };
    println!("  ratio of the medians (git / by hand): {ratio:.2}× (target ≤ 1.1×) {verdict}");
    stage.shutdown().await;
    drop(images);
    drop(built);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(5), |n| n.parse())?;
    ensure!((1..=20).contains(&runs), "runs between 1 and 20");
    hello_binary()?;
    // On Ctrl-C `run`'s future is dropped: the stage cleans up as it drops.
    tokio::select! {
        result = run(runs) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}
