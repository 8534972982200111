//! Black-box test helpers: run the built `gantry` binary as a separate process and talk to it
//! over HTTP, as a user or an operator would.
//!
//! The binary is `$GANTRY_BIN` (set by `scripts/test`), else `target/debug/gantry`.
//! [`browser`] adds headless Chromium for the dashboard's journeys; [`cluster`] adds agents,
//! a platform admin's session and the docker CLI for the orchestrator's; [`load`] an open-loop
//! load generator through the router, for the zero-downtime journeys; [`git`] the git CLI
//! against an app's remote, for the "git push deploys" journeys.

pub mod browser;
pub mod cluster;
pub mod git;
pub mod load;
pub mod stage;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub fn gantry_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GANTRY_BIN") {
        return bin.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/gantry")
}

/// A `gantry` command with a clean environment: nothing from the developer's shell leaks in.
pub fn gantry() -> Command {
    let mut cmd = Command::new(gantry_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GANTRY_LOG", "info")
        // Tests run servers side by side: each router on a port of its own unless a test
        // names one.
        .env("GANTRY_ROUTER_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A running `gantry` process with its output collected line by line.
pub struct Running {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub output: Vec<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("failed to start gantry")?;
        let (tx, lines) = mpsc::unbounded_channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for reader in [
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            child,
            lines,
            output: Vec::new(),
        })
    }

    /// Waits until a line containing `needle` is printed.
    pub async fn wait_for_line(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.output.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Ok(None) => bail!(
                    "gantry exited before printing {needle:?}; output:\n{}",
                    self.output.join("\n")
                ),
                Err(_) => bail!(
                    "gantry did not print {needle:?} within {timeout:?}; output:\n{}",
                    self.output.join("\n")
                ),
            }
        }
    }

    /// How many lines printed so far contain `needle` (reading what is waiting, without
    /// blocking).
    pub fn count_lines(&mut self, needle: &str) -> usize {
        while let Ok(line) = self.lines.try_recv() {
            self.output.push(line);
        }
        self.output.iter().filter(|l| l.contains(needle)).count()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<i32> {
        let pid = self.child.id().context("process already reaped")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM)?;
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .context("gantry did not exit after SIGTERM")??;
        Ok(status.code().unwrap_or(-1))
    }

    /// Waits for the process to exit on its own and returns its code and all its output.
    pub async fn exit(mut self, timeout: Duration) -> anyhow::Result<(i32, String)> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .context("gantry did not exit")??;
        // Give the readers a moment to drain the pipes.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(200), self.lines.recv()).await
        {
            self.output.push(line);
        }
        Ok((status.code().unwrap_or(-1), self.output.join("\n")))
    }
}

/// Polls `url` until it answers `status` or the timeout passes.
pub async fn wait_for_status(url: &str, status: u16, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(res) = client.get(url).send().await {
            if res.status().as_u16() == status {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer {status} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A temporary directory the `postgres` system user can enter (tests run as root).
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gantry-e2e-")
        .tempdir_in("/tmp")
        .expect("create temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod temp dir");
    dir
}

/// Starts (creating it) the private Postgres of `dir`, like `gantry up` does; returns its URL.
/// Pair it with [`StopPostgresOnDrop`].
pub async fn start_postgres(dir: &Path) -> anyhow::Result<String> {
    let out = gantry()
        .args(["db", "start", "--ephemeral", "--data-dir"])
        .arg(dir)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "gantry db start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Stops the embedded Postgres of `dir` (if running) so no server outlives a failed test.
pub struct StopPostgresOnDrop(pub PathBuf);

impl Drop for StopPostgresOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(gantry_bin())
            .args(["db", "stop", "--data-dir"])
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
