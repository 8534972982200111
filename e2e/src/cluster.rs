//! Helpers for tests and benchmarks of the embedded cluster: a `gantry server` whose node
//! timeout is short, `gantry agent` processes, a platform admin's API session, and the docker
//! CLI to look at (and clean up) what the agents created.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::{gantry, wait_for_status, Running};

/// The demo app's image, built by `scripts/build-hello-image`.
pub const IMAGE: &str = "gantry-hello:latest";
/// Short, so a dead node is noticed quickly (the default is 20 s).
pub const NODE_TIMEOUT: &str = "6";
/// How long the cluster may take to reach a state a test waits for.
pub const CONVERGE: Duration = Duration::from_secs(60);

pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .context("failed to run the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The docker CLI with a config directory of its own (its logins), `stdin` written to it;
/// stdout and stderr together.
pub fn docker_as(config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to run the docker CLI")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("docker stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("docker {args:?} failed: {text}");
    }
    Ok(text)
}

/// Container ids with this label (`key=value`), running or not. A Docker error is an error,
/// never an empty list: a wait for "no containers left" must not pass because Docker could not
/// be asked.
pub fn containers(label: &str) -> anyhow::Result<Vec<String>> {
    Ok(
        docker(&["ps", "-aq", "--filter", &format!("label={label}")])?
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// The value of label `key` on container `id`.
pub fn container_label(id: &str, key: &str) -> anyhow::Result<String> {
    Ok(docker(&[
        "inspect",
        "-f",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        id,
    ])?
    .trim()
    .to_owned())
}

/// Waits until exactly `n` containers carry `label` and, when given, `app` as their
/// `gantry.app`. Fails at once on a Docker error.
pub async fn wait_for_containers(
    label: &str,
    app: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut matching = Vec::new();
        for id in containers(label)? {
            match app {
                Some(app) if container_label(&id, "gantry.app")? != app => {}
                _ => matching.push(id),
            }
        }
        if matching.len() == n {
            return Ok(matching);
        }
        if Instant::now() > deadline {
            bail!(
                "{label} ({app:?}): {} containers instead of {n}",
                matching.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Removes every container and network of the test's team, whatever happened.
pub struct DockerCleanup {
    pub team: String,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        // Cleanup does its best; a failing test reports its own error.
        let ids = containers(&format!("gantry.team={}", self.team)).unwrap_or_default();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let networks = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=gantry.team={}", self.team),
        ]);
        for network in networks.unwrap_or_default().lines() {
            let _ = docker(&["network", "rm", network]);
        }
    }
}

pub struct Server {
    pub process: Running,
    /// Where the apps' router listens.
    pub router_port: u16,
    /// The registry's blobs (removed with the server).
    pub registry_dir: tempfile::TempDir,
    /// The apps' bare git repositories and build contexts (`GANTRY_GIT_DIR`): kept by
    /// [`Server::restart`], as a real server's data directory is.
    pub git_dir: std::sync::Arc<tempfile::TempDir>,
    /// How it was started, for [`Server::restart`].
    db_url: String,
    port: u16,
    env: Vec<(String, String)>,
}

impl Server {
    /// `kill -9`, then the same server again: same database, ports, environment and git
    /// directory (a fresh registry directory, as a new [`start_server`] has).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        kill9(&self.process)?;
        let _ = self.process.child.wait().await;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let git_dir = std::sync::Arc::clone(&self.git_dir);
        *self = start_server_in(&self.db_url, self.port, self.router_port, &env, git_dir).await?;
        Ok(())
    }
}

/// A `gantry server` with its API on `port` and its router on `router_port`; the same ports
/// after a restart make the same server for the agents and the clients.
pub async fn start_server(db_url: &str, port: u16, router_port: u16) -> anyhow::Result<Server> {
    start_server_with(db_url, port, router_port, &[]).await
}

/// [`start_server`] with more of the server's environment (`GANTRY_METRICS_TOKEN`, …).
pub async fn start_server_with(
    db_url: &str,
    port: u16,
    router_port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let git_dir = tempfile::Builder::new()
        .prefix("gantry-e2e-git-dir-")
        .tempdir()?;
    start_server_in(db_url, port, router_port, env, std::sync::Arc::new(git_dir)).await
}

async fn start_server_in(
    db_url: &str,
    port: u16,
    router_port: u16,
    env: &[(&str, &str)],
    git_dir: std::sync::Arc<tempfile::TempDir>,
) -> anyhow::Result<Server> {
    let mut cmd = gantry();
    cmd.envs(env.iter().copied());
    cmd.arg("server")
        .env("DATABASE_URL", db_url)
        .env("GANTRY_SECRET_KEY", "1".repeat(64))
        .env("GANTRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GANTRY_ROUTER_LISTEN", format!("127.0.0.1:{router_port}"))
        .env("GANTRY_NODE_TIMEOUT", NODE_TIMEOUT);
    let registry_dir = tempfile::Builder::new()
        .prefix("gantry-e2e-registry-")
        .tempdir()?;
    cmd.env("GANTRY_REGISTRY_DIR", registry_dir.path());
    cmd.env("GANTRY_GIT_DIR", git_dir.path());
    let mut process = Running::spawn(cmd)?;
    process
        .wait_for_line("listening on", Duration::from_secs(60))
        .await?;
    wait_for_status(
        &format!("http://127.0.0.1:{port}/readyz"),
        200,
        Duration::from_secs(10),
    )
    .await?;
    Ok(Server {
        process,
        router_port,
        registry_dir,
        git_dir,
        db_url: db_url.to_owned(),
        port,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
}

/// A `gantry agent` for node `name`, keeping its identity in `<state_root>/<name>`: started
/// again with the same root, it is the same node.
pub fn start_agent(
    base: &str,
    token: &str,
    name: &str,
    zone: &str,
    state_root: &std::path::Path,
) -> anyhow::Result<Running> {
    let mut cmd = gantry();
    cmd.arg("agent")
        .args(["--server", base, "--name", name, "--labels"])
        .arg(format!("zone={zone}"))
        .arg("--state-dir")
        .arg(state_root.join(name))
        .env("GANTRY_JOIN_TOKEN", token)
        .env("GANTRY_LOG", "info");
    if let Some(host) = std::env::var_os("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    Running::spawn(cmd)
}

pub fn kill9(process: &Running) -> anyhow::Result<()> {
    let pid = process.child.id().context("process already gone")?;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    Ok(())
}

/// A platform admin's session (the first account of the instance).
pub struct Admin {
    pub http: reqwest::Client,
    pub base: String,
    pub csrf: String,
    pub team: String,
    pub email: String,
}

/// The password of every account the e2e tests create.
pub const PASSWORD: &str = "correct horse battery";

impl Admin {
    pub async fn sign_up(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().cookie_store(true).build()?;
        // One team per sign-up, also among the tests of one binary that run at once: the
        // team names containers and networks, and a test's cleanup removes its team's.
        static SIGN_UPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SIGN_UPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let email = format!("ops-{}-{n}@example.com", std::process::id());
        let res = http
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("sign-up failed: {status} {body}");
        }
        let csrf = body["csrf_token"]
            .as_str()
            .context("csrf token")?
            .to_owned();
        let teams: Value = http
            .get(format!("{base}/api/v1/teams"))
            .send()
            .await?
            .json()
            .await?;
        let team = teams[0]["team"]["slug"]
            .as_str()
            .or_else(|| teams[0]["slug"].as_str())
            .with_context(|| format!("team slug in {teams}"))?
            .to_owned();
        Ok(Self {
            http,
            base: base.to_owned(),
            csrf,
            team,
            email,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// DELETE; the body is `null` for a 204.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// A write with the session's CSRF token; an error unless it succeeds.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{method} {path}: {text}"))?
        };
        if !status.is_success() {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }

    pub async fn instances(&self, app: &str) -> anyhow::Result<Vec<Value>> {
        let v = self
            .get(&format!("/api/v1/teams/{}/apps/{app}/instances", self.team))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn nodes(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .get("/api/v1/nodes")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub async fn scale(&self, app: &str, replicas: u32) -> anyhow::Result<()> {
        self.post(
            &format!("/api/v1/teams/{}/apps/{app}/scale", self.team),
            json!({"replicas": replicas}),
        )
        .await
        .map(drop)
    }

    /// Waits until `n` nodes are ready.
    pub async fn wait_nodes_ready(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let nodes = self.nodes().await?;
            if nodes
                .iter()
                .filter(|node| node["status"] == "ready")
                .count()
                == n
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{n} nodes never became ready: {nodes:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until release `version` of the app has `status`; returns it.
    pub async fn wait_release(
        &self,
        app: &str,
        version: u32,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let path = format!("/api/v1/teams/{}/apps/{app}/releases/{version}", self.team);
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.get(&path).await;
            if let Ok(release) = &last {
                if release["status"] == status {
                    return Ok(release.clone());
                }
            }
            if Instant::now() > deadline {
                bail!("v{version} of {app} did not become {status} within {timeout:?}: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `check` holds for the app's instances; the error shows the last listing.
    pub async fn wait_instances(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            // The server may be restarting: a failed listing is just another try.
            if let Ok(list) = self.instances(app).await {
                if check(&list) {
                    return Ok(list);
                }
                if Instant::now() > deadline {
                    bail!("{what}: not reached within {CONVERGE:?}; instances: {list:#?}");
                }
            } else if Instant::now() > deadline {
                bail!("{what}: the server did not answer within {CONVERGE:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
