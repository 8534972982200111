//! Live logs' figures (issue 10), for `bench/logs.sh`. Not a test: it prints figures.
//!
//! One `gantry server` (release build) on a private Postgres, one `gantry agent` on the local
//! Docker engine, the demo image printing numbered lines (`LOG_LINES`, `LOG_INTERVAL_MS`,
//! `LOG_LINE_BYTES`). Three parts, in this order (the footprint first, on a fresh server):
//!
//! 1. **Footprint.** 20 quiet apps of one instance each: the server's RSS with no stream open,
//!    then with one idle live stream per app. Then 10 of them log (100 lines/s of 200 bytes
//!    each) and the other 10 are deleted: the agent's RSS with 10 instances logging.
//! 2. **Fan-out.** One app logging 100 lines/s of 200 bytes (`LOG_INTERVAL_MS=10`), `VIEWERS`
//!    websocket viewers of it (one user's API token; the server's `GANTRY_STREAMS_PER_USER` is
//!    raised): delivery latency = the time the viewer read the frame − the line's `ts` (Docker's
//!    stamp of the moment it read the line from the container; same machine, same clock),
//!    over every line every viewer got in a window of `FANOUT_SECONDS`.
//! 3. **Throughput.** One app writing `LINES` lines of 200 bytes as fast as it can:
//!    - *live*: the agent follows it while `docker logs -f` of the same container runs beside
//!      it (started as soon as the container exists); for each, the time from the writer's
//!      first line (Docker's stamp) until the reader had every line, and the reader's own rate
//!      (first to last line it got). Gantry's progress is the newest stored line (the history,
//!      polled every 100 ms): a line counts once it is in Postgres.
//!    - *backlog*: the agent is stopped (SIGTERM; containers keep running), the container is
//!      restarted (`docker restart`) and writes its `LINES` lines again into the engine's log
//!      file while nobody ships them; the agent is started again and reads on from the
//!      server's cursors: how fast it drains the backlog into Postgres is the pipeline's own
//!      rate (agent read + ship + server store), with no writer to wait for. The peer:
//!      `docker logs --since <restart>` reading the same lines from the same file, alone.
//!
//!    Lines count once they are rows in Postgres: the `RESULT` lines divide the rows stored by
//!    the time taken (the newest stored line's number alone overstates it when lines are
//!    lost). An audit then lists, per phase, the numbered lines missing or repeated, and the
//!    agent's "dropped" events; batches are counted as the distinct inserting transactions
//!    (`xmin`) of the rows. CPU of each party (server, agent, Postgres, dockerd, the app's
//!    container, this client) is read from /proc and the container's cgroup.
//!
//! The agent's container log cap is raised (`--container-log-kib`) so no line of the flood is
//! rotated away before a reader gets it. Postgres runs with fsync on, as `gantry up` runs it
//! (`LOGS_BENCH_EPHEMERAL=1`: fsync off, as the e2e tests run it).
//!
//! Usage: `logs_bench [VIEWERS] [FANOUT_SECONDS] [LINES]` (defaults 1000, 20, 150000) with
//! `GANTRY_BIN` pointing at a release binary and `gantry-hello:latest` built.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use gantry_e2e::cluster::{docker, Admin, DockerCleanup, IMAGE};
use gantry_e2e::{
    data_dir, free_port, gantry, start_postgres, wait_for_status, Running, StopPostgresOnDrop,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Bytes of each line the apps print (`LOG_LINE_BYTES`).
const LINE_BYTES: u32 = 200;
/// The engine's log file cap for the bench's agent: 2 files of this many KiB.
const CONTAINER_LOG_KIB: u32 = 256 * 1024;
const QUIET_APPS: usize = 20;
const LOGGING_APPS: usize = 10;

// ---------------------------------------------------------------------------------------------
// Small helpers: clocks, /proc, timestamps.

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix nanoseconds of an RFC 3339 time as the API writes it (`2026-12-01T22:30:00.123456789Z`,
/// or with a `+hh:mm` offset).
fn rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let mut i = 19;
    let mut frac: i128 = 0;
    if b[i] == b'.' {
        i += 1;
        let mut digits = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if digits < 9 {
                frac = frac * 10 + i128::from(b[i] - b'0');
                digits += 1;
            }
            i += 1;
        }
        for _ in digits..9 {
            frac *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(i128::from(secs - offset) * 1_000_000_000 + frac)
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line.split_whitespace().nth(1).context("a value")?.parse()?)
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

fn hwm_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// Resets a process's peak RSS (VmHWM) to its current RSS.
fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// utime + stime of a process (or `self`), in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the ")": state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds of a Postgres cluster: its postmaster and every process it forked.
fn postgres_cpu(pgdata: &std::path::Path) -> f64 {
    let Some(pm) = std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
    else {
        return 0.0;
    };
    let mut total = cpu_seconds(&pm.to_string());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pm) {
            total += cpu_seconds(pid);
        }
    }
    total
}

/// CPU seconds of the Docker daemon (read from /proc, nothing else).
fn dockerd_cpu() -> f64 {
    std::process::Command::new("pidof")
        .arg("dockerd")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next().map(cpu_seconds))
        .unwrap_or(0.0)
}

/// CPU seconds of a container's processes (its cgroup v1 cpuacct), if found.
fn container_cpu(full_id: &str) -> f64 {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage"
    ))
    .ok()
    .and_then(|s| s.trim().parse::<f64>().ok())
    .map_or(0.0, |ns| ns / 1e9)
}

/// Where the CPU went between two snapshots: each process group's share of one core.
#[derive(Clone, Copy)]
struct Cpu {
    at: Instant,
    server: f64,
    agent: f64,
    postgres: f64,
    dockerd: f64,
    container: f64,
    client: f64,
}

struct Meter<'a> {
    server: u32,
    agent: u32,
    pgdata: &'a std::path::Path,
    container: Option<String>,
}

impl Meter<'_> {
    fn snap(&self) -> Cpu {
        Cpu {
            at: Instant::now(),
            server: cpu_seconds(&self.server.to_string()),
            agent: cpu_seconds(&self.agent.to_string()),
            postgres: postgres_cpu(self.pgdata),
            dockerd: dockerd_cpu(),
            container: self.container.as_deref().map_or(0.0, container_cpu),
            client: cpu_seconds("self"),
        }
    }

    fn since(&self, from: Cpu) -> String {
        let to = self.snap();
        let secs = (to.at - from.at).as_secs_f64();
        let share = |a: f64, b: f64| (b - a) / secs * 100.0;
        let mut text = format!(
            "CPU over {secs:.1} s, % of one core (2 cores = 200 %): server {:.0}, agent {:.0}, postgres {:.0}, dockerd {:.0}, bench client {:.0}",
            share(from.server, to.server),
            share(from.agent, to.agent),
            share(from.postgres, to.postgres),
            share(from.dockerd, to.dockerd),
            share(from.client, to.client),
        );
        if self.container.is_some() {
            text += &format!(
                ", the app's container {:.0}",
                share(from.container, to.container)
            );
        }
        text
    }
}

/// The transactions that inserted an app's stdout lines (one per batch the server stored),
/// before and from a time (unix ns): the distinct `xmin` of its rows; then the rows.
fn batches(db_url: &str, app: &str, split: i128) -> Option<[u64; 4]> {
    let split = format!(
        "to_timestamp({}.{:09})",
        split / 1_000_000_000,
        split % 1_000_000_000
    );
    let sql = format!(
        "SELECT count(DISTINCT l.xmin::text) FILTER (WHERE l.ts < {split}),
                count(DISTINCT l.xmin::text) FILTER (WHERE l.ts >= {split}),
                count(*) FILTER (WHERE l.ts < {split}),
                count(*) FILTER (WHERE l.ts >= {split})
         FROM log_lines l JOIN apps a ON a.id = l.app_id
         WHERE a.name = '{app}' AND l.stream = 'stdout'"
    );
    let out = std::process::Command::new("psql")
        .args([db_url, "-Atc", &sql])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let n: Vec<u64> = text
        .trim()
        .split('|')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    n.try_into().ok()
}

/// Which numbered lines of an app are stored, before (`live`) or from (`backlog`) a time:
/// duplicates, missing ones and how they cluster; and the agent's "dropped" events.
fn line_audit(db_url: &str, app: &str, split: i128, from: bool, lines: u64) -> String {
    let split = format!(
        "to_timestamp({}.{:09})",
        split / 1_000_000_000,
        split % 1_000_000_000
    );
    let op = if from { ">=" } else { "<" };
    let sql = format!(
        "SELECT split_part(l.line, ' ', 2) FROM log_lines l JOIN apps a ON a.id = l.app_id
         WHERE a.name = '{app}' AND l.stream = 'stdout' AND l.ts {op} {split}
           AND l.line LIKE 'line %' ORDER BY l.id"
    );
    let Ok(out) = std::process::Command::new("psql")
        .args([db_url, "-Atc", &sql])
        .output()
    else {
        return "psql failed".into();
    };
    let numbers: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut seen = vec![false; lines as usize + 1];
    let mut dupes = 0u64;
    let mut out_of_order = 0u64;
    for w in numbers.windows(2) {
        if w[1] < w[0] {
            out_of_order += 1;
        }
    }
    let mut repeated: Vec<u64> = Vec::new();
    for &n in &numbers {
        if let Some(s) = seen.get_mut(n as usize) {
            if *s {
                dupes += 1;
                repeated.push(n);
            }
            *s = true;
        }
    }
    // Each copy of the first repeated lines: row id, stamp, length, inserting transaction.
    let copies: Vec<String> = repeated
        .iter()
        .take(3)
        .map(|n| {
            let sql = format!(
                "SELECT string_agg(l.id || '@' || l.ts || ' len ' || length(l.line) || ' tx ' || l.xmin, ' & ' ORDER BY l.id)
                 FROM log_lines l JOIN apps a ON a.id = l.app_id
                 WHERE a.name = '{app}' AND l.stream = 'stdout' AND l.line LIKE 'line {n} %'"
            );
            let out = std::process::Command::new("psql")
                .args([db_url, "-Atc", &sql])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            format!("line {n}: {out}")
        })
        .collect();
    let mut gaps: Vec<(u64, u64)> = Vec::new(); // (first missing, length)
    let mut n = 1;
    while n <= lines {
        if !seen[n as usize] {
            let start = n;
            while n <= lines && !seen[n as usize] {
                n += 1;
            }
            gaps.push((start, n - start));
        } else {
            n += 1;
        }
    }
    let missing: u64 = gaps.iter().map(|g| g.1).sum();
    let largest = gaps.iter().map(|g| g.1).max().unwrap_or(0);
    let first: Vec<String> = gaps
        .iter()
        .take(6)
        .map(|(s, l)| format!("{s}+{l}"))
        .collect();
    let events = std::process::Command::new("psql")
        .args([
            db_url,
            "-Atc",
            &format!(
                "SELECT count(*), coalesce(string_agg(substr(l.line, 1, 60), ' / '), '') FROM log_lines l JOIN apps a ON a.id = l.app_id
                 WHERE a.name = '{app}' AND l.stream = 'event' AND l.line LIKE '%dropped%'"
            ),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{} rows, {dupes} duplicates{}, {out_of_order} out of order, {missing} of {lines} missing in {} gaps (largest {largest}; first: {}); agent-drop events: {events}",
        numbers.len(),
        if copies.is_empty() { String::new() } else { format!(" ({})", copies.join("; ")) },
        gaps.len(),
        first.join(", ")
    )
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// `line 123 ....` → 123.
fn line_number(line: &str) -> Option<u64> {
    line.strip_prefix("line ")?.split(' ').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Processes.

struct Procs {
    _server: Running,
    agent: Option<Running>,
    agent_args: Vec<String>,
}

fn agent_command(args: &[String], join_token: Option<&str>) -> tokio::process::Command {
    let mut cmd = gantry();
    cmd.arg("agent").args(args).env("GANTRY_LOG", "warn");
    if let Some(token) = join_token {
        cmd.env("GANTRY_JOIN_TOKEN", token);
    }
    if let Some(host) = std::env::var_os("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    cmd
}

fn pid_of(process: &Running) -> anyhow::Result<u32> {
    process.child.id().context("process already reaped")
}

// ---------------------------------------------------------------------------------------------
// API.

struct Api {
    admin: Admin,
    apps: String,
}

impl Api {
    async fn create_app(&self, name: &str, cpu_millis: u32, vars: Value) -> anyhow::Result<()> {
        self.admin
            .post(
                &self.apps,
                json!({"name": name, "port": 8888, "replicas": 1, "cpu_millis": cpu_millis,
                       "memory_mib": 32, "health_check_path": "/healthz",
                       "stop_grace_seconds": 1}),
            )
            .await?;
        if vars.as_object().is_some_and(|o| !o.is_empty()) {
            self.set_vars(name, vars).await?;
        }
        Ok(())
    }

    async fn set_vars(&self, name: &str, vars: Value) -> anyhow::Result<()> {
        self.admin
            .patch(
                &format!("{}/{name}/config", self.apps),
                json!({ "vars": vars }),
            )
            .await
            .map(drop)
    }

    async fn deploy(&self, name: &str) -> anyhow::Result<()> {
        self.admin
            .post(
                &format!("{}/{name}/deploys", self.apps),
                json!({"image": IMAGE}),
            )
            .await
            .map(drop)
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.admin
            .delete(&format!("{}/{name}", self.apps))
            .await
            .map(drop)
    }

    /// Waits until the app runs exactly one ready instance of release `version`.
    async fn wait_ready(&self, name: &str, version: u32) -> anyhow::Result<()> {
        self.admin
            .wait_instances(name, "one ready instance", |list| {
                list.len() == 1 && list[0]["state"] == "ready" && list[0]["release"] == version
            })
            .await
            .map(drop)
    }

    /// The app's newest stored stdout line: (its number, its Docker stamp in unix ns).
    async fn newest_line(&self, name: &str) -> anyhow::Result<Option<(u64, i128)>> {
        let page = self
            .admin
            .get(&format!("{}/{name}/logs?stream=stdout&limit=1", self.apps))
            .await?;
        Ok(page["items"]
            .as_array()
            .and_then(|items| items.last())
            .and_then(|item| {
                let n = line_number(item["line"].as_str()?)?;
                Some((n, rfc3339_nanos(item["ts"].as_str()?)?))
            }))
    }

    /// The stamp of the stored line `line <n> ` (searched), the newest such if several.
    async fn stamp_of_line(&self, name: &str, n: u64) -> anyhow::Result<Option<i128>> {
        let page = self
            .admin
            .get(&format!(
                "{}/{name}/logs?stream=stdout&q=line%20{n}%20&limit=5000",
                self.apps
            ))
            .await?;
        Ok(page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["line"].as_str().and_then(line_number) == Some(n))
            .filter_map(|i| rfc3339_nanos(i["ts"].as_str()?))
            .max())
    }
}

/// The container of an app (running or not).
fn container_of(team: &str, app: &str) -> anyhow::Result<Option<String>> {
    Ok(docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=gantry.team={team}"),
        "--filter",
        &format!("label=gantry.app={app}"),
    ])?
    .lines()
    .next()
    .map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// Websocket viewers.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_stream(url: &str, bearer: &str) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_str(bearer)?);
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read: a
    // small one keeps the client's CPU for the server (frames here are ~1 KB; a bigger one
    // grows it).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
        .await
        .with_context(|| format!("opening {url}"))?;
    Ok(ws)
}

/// What one viewer saw while the window was open.
#[derive(Default)]
struct ViewerStats {
    /// Delivery latencies, µs.
    latencies: Vec<u32>,
    lines: u64,
    dropped: u64,
    /// The stream ended before the window closed.
    ended_early: bool,
}

/// Reads one viewer's frames: once the stream is live it counts; while `recording` it keeps
/// every line's latency; returns at `stop`.
async fn view(
    mut ws: Ws,
    live: Arc<AtomicUsize>,
    recording: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ViewerStats {
    let mut stats = ViewerStats::default();
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = stop.changed() => break,
        };
        let received = now_nanos();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                stats.ended_early = true;
                return stats;
            }
            Some(Ok(_)) => continue,
        };
        let text = text.as_str();
        if text.starts_with(r#"{"type":"live"#) {
            live.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !recording.load(Ordering::Relaxed) {
            continue;
        }
        if text.starts_with(r#"{"type":"dropped""#) {
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            stats.dropped += v["count"].as_u64().unwrap_or(0);
            continue;
        }
        // A lines frame: every item's "ts", without parsing the rest.
        let mut rest = text;
        while let Some(at) = rest.find(r#""ts":""#) {
            rest = &rest[at + 6..];
            let Some(end) = rest.find('"') else { break };
            if let Some(ts) = rfc3339_nanos(&rest[..end]) {
                let us = ((received - ts) / 1000).clamp(0, i128::from(u32::MAX));
                stats.latencies.push(us as u32);
                stats.lines += 1;
            }
            rest = &rest[end..];
        }
    }
    let _ = ws.close(None).await;
    stats
}

// ---------------------------------------------------------------------------------------------
// docker logs as the peer.

/// A `docker logs` process whose output is counted line by line as it arrives.
struct DockerLogs {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<DockerLogsSeen>>,
}

impl Drop for DockerLogs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default, Clone)]
struct DockerLogsSeen {
    /// Unix ns of the spawn, the first byte, the moment `want` lines were read, the end of
    /// the output.
    spawned: i128,
    first: Option<i128>,
    done: Option<i128>,
    eof: Option<i128>,
    lines: u64,
    /// What the CLI said on stderr, when its output ended.
    stderr: String,
}

impl DockerLogs {
    fn spawn(args: &[&str], want: u64) -> anyhow::Result<Self> {
        let spawned = now_nanos();
        let mut child = std::process::Command::new("docker")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("docker logs")?;
        let mut err = child.stderr.take().context("docker logs stderr")?;
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let mut out = child.stdout.take().context("docker logs stdout")?;
        let reader = std::thread::spawn(move || {
            let mut seen = DockerLogsSeen {
                spawned,
                ..DockerLogsSeen::default()
            };
            let errors = errors;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        seen.eof = Some(now_nanos());
                        seen.stderr = errors.join().unwrap_or_default();
                        break;
                    }
                    Ok(n) => n,
                };
                seen.first.get_or_insert_with(now_nanos);
                seen.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                if seen.lines >= want && seen.done.is_none() {
                    seen.done = Some(now_nanos());
                    break;
                }
            }
            seen
        });
        Ok(DockerLogs {
            child,
            reader: Some(reader),
        })
    }

    /// Waits for the reader (it stops at `want` lines or at the end of the output), then ends
    /// the docker CLI if it still runs (`-f` never ends by itself).
    fn finish(mut self, timeout: Duration) -> anyhow::Result<DockerLogsSeen> {
        let reader = self.reader.take().context("finished once")?;
        let deadline = Instant::now() + timeout;
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Ends the CLI (and with it a reader still waiting for output).
        let _ = self.child.kill();
        let _ = self.child.wait();
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("the docker logs reader panicked"))
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        std::env::args()
            .nth(i)
            .map_or(Ok(default), |s| s.parse().context("a number"))
    };
    let viewers = arg(1, 1000)? as usize;
    let fanout_secs = arg(2, 20)?;
    let lines = arg(3, 150_000)?;
    ensure!((1..=5000).contains(&viewers), "viewers between 1 and 5000");
    ensure!(
        (5..=120).contains(&fanout_secs),
        "fan-out seconds between 5 and 120"
    );
    ensure!(
        (1000..=2_000_000).contains(&lines),
        "lines between 1000 and 2,000,000"
    );
    docker(&["image", "inspect", IMAGE]).context("run scripts/build-hello-image first")?;
    println!(
        "logs bench: {} (load average {})",
        std::process::id(),
        loadavg()
    );

    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    // Postgres as `gantry up` runs it (fsync on), unless LOGS_BENCH_EPHEMERAL=1 (fsync off, as
    // the e2e tests run it).
    let db_url = if std::env::var_os("LOGS_BENCH_EPHEMERAL").is_some_and(|v| v == "1") {
        println!("postgres: fsync off (--ephemeral)");
        start_postgres(dir.path()).await?
    } else {
        println!("postgres: fsync on, as `gantry up` runs it");
        let out = gantry()
            .args(["db", "start", "--data-dir"])
            .arg(dir.path())
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "gantry db start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    let (port, router_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let ws_base = format!("ws://127.0.0.1:{port}");
    let mut server_cmd = gantry();
    server_cmd
        .arg("server")
        .env("DATABASE_URL", &db_url)
        .env("GANTRY_SECRET_KEY", "3".repeat(64))
        .env("GANTRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GANTRY_ROUTER_LISTEN", format!("127.0.0.1:{router_port}"))
        .env("GANTRY_REGISTRY_DIR", dir.path().join("registry"))
        .env("GANTRY_STREAMS_PER_USER", (viewers + 100).to_string())
        // The agent is stopped for a while in part 3: its node must not be declared lost.
        .env("GANTRY_NODE_TIMEOUT", "120")
        .env("GANTRY_LOG", "warn");
    let server = Running::spawn(server_cmd)?;
    wait_for_status(&format!("{base}/readyz"), 200, Duration::from_secs(60)).await?;
    let server_pid = pid_of(&server)?;
    let pgdata = dir.path().join("postgres");

    let admin = Admin::sign_up(&base).await?;
    let team = admin.team.clone();
    let _cleanup = DockerCleanup { team: team.clone() };
    let join = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let join = join["token"].as_str().context("join token")?.to_owned();
    let node = format!("logs-bench-{}", std::process::id());
    let agent_args: Vec<String> = vec![
        "--server".into(),
        base.clone(),
        "--name".into(),
        node.clone(),
        "--state-dir".into(),
        dir.path().join(&node).display().to_string(),
        "--container-log-kib".into(),
        CONTAINER_LOG_KIB.to_string(),
    ];
    let agent = Running::spawn(agent_command(&agent_args, Some(&join)))?;
    let mut procs = Procs {
        _server: server,
        agent: Some(agent),
        agent_args,
    };
    admin.wait_nodes_ready(1).await?;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "bench", "team": team, "role": "owner"}),
        )
        .await?;
    let bearer = format!("Bearer {}", token["secret"].as_str().context("secret")?);
    let api = Api {
        apps: format!("/api/v1/teams/{team}/apps"),
        admin,
    };
    let logging_vars = json!({"LOG_LINES": "100000000", "LOG_INTERVAL_MS": "10",
                              "LOG_LINE_BYTES": LINE_BYTES.to_string()});

    // ---- 1. Footprint --------------------------------------------------------------------
    println!("\n== footprint ==");
    let quiet: Vec<String> = (1..=QUIET_APPS).map(|i| format!("quiet-{i:02}")).collect();
    for name in &quiet {
        api.create_app(name, 50, json!({})).await?;
        api.deploy(name).await?;
    }
    for name in &quiet {
        api.wait_ready(name, 1).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_pid = pid_of(procs.agent.as_ref().context("agent")?)?;
    let server_no_streams = rss_mib(server_pid);
    let agent_quiet = rss_mib(agent_pid);
    let mut idle_streams = Vec::new();
    for name in &quiet {
        let url = format!("{ws_base}{}/{name}/logs/stream?tail=100", api.apps);
        let mut ws = open_stream(&url, &bearer).await?;
        // Read the replay (the deploy's events) up to the live marker; then the stream idles.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str().starts_with(r#"{"type":"live"#) => {
                    break
                }
                Ok(Some(Ok(_))) => {}
                other => bail!("stream of {name} did not go live: {other:?}"),
            }
        }
        idle_streams.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server_idle_streams = rss_mib(server_pid);
    let server_hwm = hwm_mib(server_pid);
    println!(
        "server RSS with {QUIET_APPS} apps running: {server_no_streams:.1} MiB without streams, {server_idle_streams:.1} MiB with {QUIET_APPS} idle streams open (peak so far {server_hwm:.1} MiB); target ≤ 80 MB"
    );
    println!("agent RSS with {QUIET_APPS} quiet instances: {agent_quiet:.1} MiB");
    for ws in &mut idle_streams {
        let _ = ws.close(None).await;
    }
    drop(idle_streams);
    for name in &quiet[LOGGING_APPS..] {
        api.delete(name).await?;
    }
    for name in &quiet[..LOGGING_APPS] {
        api.set_vars(name, logging_vars.clone()).await?;
    }
    for name in &quiet[..LOGGING_APPS] {
        api.wait_ready(name, 2).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while container_count(&team)? != LOGGING_APPS {
        ensure!(Instant::now() < deadline, "old containers were not removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    reset_hwm(agent_pid);
    let (cpu0, t0) = (cpu_seconds(&agent_pid.to_string()), Instant::now());
    tokio::time::sleep(Duration::from_secs(15)).await;
    let agent_cpu = (cpu_seconds(&agent_pid.to_string()) - cpu0) / t0.elapsed().as_secs_f64();
    let agent_logging = rss_mib(agent_pid);
    let agent_logging_hwm = hwm_mib(agent_pid);
    let stored = api.newest_line(&quiet[0]).await?.map_or(0, |(n, _)| n);
    println!(
        "agent RSS with {LOGGING_APPS} instances logging 100 lines/s of {LINE_BYTES} B each: {agent_logging:.1} MiB (peak over 15 s {agent_logging_hwm:.1} MiB, CPU {:.1} % of a core; {} has line {stored} stored); target ≤ 20 MB",
        agent_cpu * 100.0,
        quiet[0]
    );
    println!("server RSS meanwhile: {:.1} MiB", rss_mib(server_pid));
    for name in &quiet[..LOGGING_APPS] {
        api.delete(name).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while container_count(&team)? != 0 {
        ensure!(Instant::now() < deadline, "containers were not removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // ---- 2. Fan-out ----------------------------------------------------------------------
    println!("\n== fan-out ==");
    api.create_app("fan", 200, logging_vars.clone()).await?;
    api.deploy("fan").await?;
    api.wait_ready("fan", 1).await?;
    // Unfiltered, as the dashboard opens an app's log: the viewers share the app's frames.
    // LOGS_BENCH_FILTER=stdout measures viewers with a filter instead (each its own frames).
    let filter = match std::env::var("LOGS_BENCH_FILTER") {
        Ok(stream) if !stream.is_empty() => format!("&stream={stream}"),
        _ => String::new(),
    };
    println!(
        "viewers: {}",
        if filter.is_empty() {
            "unfiltered (shared frames)"
        } else {
            "filtered by stream (own frames)"
        }
    );
    let url = format!("{ws_base}{}/fan/logs/stream?tail=0{filter}", api.apps);
    let live = Arc::new(AtomicUsize::new(0));
    let recording = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fan_rss_before = rss_mib(server_pid);
    let opened = Instant::now();
    let sockets: Vec<anyhow::Result<Ws>> = futures_util::stream::iter(0..viewers)
        .map(|_| open_stream(&url, &bearer))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut tasks = Vec::with_capacity(viewers);
    for ws in sockets {
        tasks.push(tokio::spawn(view(
            ws?,
            live.clone(),
            recording.clone(),
            stop_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.load(Ordering::Relaxed) < viewers {
        ensure!(
            Instant::now() < deadline,
            "only {} of {viewers} streams went live",
            live.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{viewers} viewers open and live in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first_line = api.newest_line("fan").await?.map_or(0, |(n, _)| n);
    let mut meter = Meter {
        server: server_pid,
        agent: agent_pid,
        pgdata: &pgdata,
        container: None,
    };
    let fan_cpu = meter.snap();
    reset_hwm(server_pid);
    let window = Instant::now();
    recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(fanout_secs)).await;
    recording.store(false, Ordering::Relaxed);
    let secs = window.elapsed().as_secs_f64();
    let fan_cpu = meter.since(fan_cpu);
    let last_line = api.newest_line("fan").await?.map_or(0, |(n, _)| n);
    let fan_load = loadavg();
    let fan_server_hwm = hwm_mib(server_pid);
    let _ = stop_tx.send(true);
    let mut all = Vec::new();
    let (mut per_viewer_min, mut per_viewer_max) = (u64::MAX, 0u64);
    let (mut dropped, mut ended) = (0u64, 0usize);
    for task in tasks {
        let stats = task.await?;
        per_viewer_min = per_viewer_min.min(stats.lines);
        per_viewer_max = per_viewer_max.max(stats.lines);
        dropped += stats.dropped;
        ended += usize::from(stats.ended_early);
        all.extend(stats.latencies);
    }
    all.sort_unstable();
    let produced = last_line.saturating_sub(first_line);
    println!(
        "app wrote {produced} lines in the {secs:.1} s window ({:.0}/s); each viewer got {per_viewer_min}–{per_viewer_max}; {} deliveries in all, {dropped} lines reported dropped, {ended} streams ended early",
        produced as f64 / secs,
        all.len()
    );
    println!(
        "delivery latency (frame read − line ts) over {} deliveries: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms; target p99 < 100 ms",
        all.len(),
        pct(&all, 0.50),
        pct(&all, 0.90),
        pct(&all, 0.99),
        pct(&all, 0.999),
        pct(&all, 1.0),
    );
    println!(
        "fan-out window: {fan_cpu} (the client: the {viewers} viewers); load average {fan_load}"
    );
    println!(
        "server RSS {fan_rss_before:.1} MiB before the viewers, peak {fan_server_hwm:.1} MiB in the window"
    );
    drop(all);
    api.delete("fan").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while container_count(&team)? != 0 {
        ensure!(Instant::now() < deadline, "containers were not removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The server notices the viewers' closes: let the streams' slots go.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---- 3. Throughput -------------------------------------------------------------------
    println!("\n== throughput: {lines} lines of {LINE_BYTES} B, as fast as the app writes ==");
    // A whole core for the writer (it writes from one thread).
    api.create_app(
        "flood",
        1000,
        json!({"LOG_LINES": lines.to_string(), "LOG_LINE_BYTES": LINE_BYTES.to_string()}),
    )
    .await?;
    reset_hwm(agent_pid);
    reset_hwm(server_pid);
    let flood_cpu = meter.snap();
    let deployed = now_nanos();
    api.deploy("flood").await?;
    // docker logs -f of the same container, as soon as it exists.
    let container = loop {
        if let Some(id) = container_of(&team, "flood")? {
            break id;
        }
        ensure!(
            now_nanos() - deployed < 60_000_000_000,
            "the flood's container never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The listening line, then the numbered ones.
    let peer = DockerLogs::spawn(&["logs", "-f", &container], lines + 1)?;
    meter.container = docker(&["inspect", "-f", "{{.Id}}", &container])
        .ok()
        .map(|s| s.trim().to_owned());
    let mut samples: Vec<(i128, u64)> = Vec::new();
    let started = Instant::now();
    let gantry_done = loop {
        if let Some((n, _)) = api.newest_line("flood").await? {
            let t = now_nanos();
            samples.push((t, n));
            if n >= lines {
                break t;
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the flood was not stored within 5 minutes (last {:?})",
            samples.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let flood_cpu = meter.since(flood_cpu);
    let peer = peer.finish(Duration::from_secs(120))?;
    let first_ts = api
        .stamp_of_line("flood", 1)
        .await?
        .context("line 1 stored")?;
    let last_ts = api
        .stamp_of_line("flood", lines)
        .await?
        .context("the last line stored")?;
    let ms = |ns: i128| ns as f64 / 1e6;
    let rate = |n: u64, ns: i128| n as f64 / (ns as f64 / 1e9);
    let writer_rate = rate(lines - 1, last_ts - first_ts);
    println!(
        "writer: line 1 → line {lines} in {:.0} ms of Docker's stamps: {writer_rate:.0} lines/s",
        ms(last_ts - first_ts)
    );
    let peer_done = peer.done.with_context(|| {
        format!(
            "docker logs -f never read every line: {} lines; {}",
            peer.lines, peer.stderr
        )
    })?;
    let gantry_e2e = rate(lines, gantry_done - first_ts);
    let peer_e2e = rate(lines, peer_done - first_ts);
    let peer_own = rate(
        peer.lines,
        peer_done - peer.first.context("docker logs printed nothing")?,
    );
    // Gantry's own rate: from the first sample with lines stored to the end.
    let sustained = sustained_rate(&samples, lines);
    println!(
        "live, from the writer's first line until the reader had line {lines}: gantry (line {lines} stored in Postgres) {:.0} ms = {gantry_e2e:.0} lines/s; docker logs -f {:.0} ms = {peer_e2e:.0} lines/s (its own rate from its first byte {peer_own:.0} lines/s; started {:.0} ms after the deploy call); ratio gantry / docker logs -f {:.2}; target ≥ 0.9",
        ms(gantry_done - first_ts),
        ms(peer_done - first_ts),
        ms(peer.spawned - deployed),
        gantry_e2e / peer_e2e
    );
    println!(
        "live: by the newest line stored, gantry's progress was {sustained} (polled every 100 ms; counts lines the agent dropped); peak RSS: agent {:.1} MiB, server {:.1} MiB",
        hwm_mib(agent_pid),
        hwm_mib(server_pid)
    );
    println!("live: deploy → every line stored: {flood_cpu}");

    // Backlog: the agent away while the container writes its lines again.
    let agent = procs.agent.as_mut().context("agent")?;
    agent.terminate(Duration::from_secs(20)).await?;
    print_output("agent", agent);
    procs.agent = None;
    let restart_at = now_nanos();
    docker(&["restart", "-t", "0", &container])?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // `<stamp> line N ....`: the last line of the second run, stamped after the restart.
        let tail = docker(&["logs", "-t", "--tail", "1", &container])?;
        let last = tail
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        let (stamp, text) = last.split_once(' ').unwrap_or_default();
        if line_number(text) == Some(lines) && rfc3339_nanos(stamp).is_some_and(|t| t > restart_at)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the restarted writer never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let written = now_nanos();
    // A second run's line `lines` is stored when the newest stored line is it, stamped after
    // the restart.
    let agent = Running::spawn(agent_command(&procs.agent_args, None))?;
    let agent_pid = pid_of(&agent)?;
    procs.agent = Some(agent);
    let agent_started = now_nanos();
    meter.agent = agent_pid;
    let drain_cpu = meter.snap();
    reset_hwm(server_pid);
    let mut drain: Vec<(i128, u64)> = Vec::new();
    let started = Instant::now();
    let drained = loop {
        if let Some((n, ts)) = api.newest_line("flood").await? {
            if ts > restart_at {
                let t = now_nanos();
                drain.push((t, n));
                if n >= lines {
                    break t;
                }
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the backlog was not stored within 5 minutes (last {:?})",
            drain.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drain_cpu = meter.since(drain_cpu);
    println!(
        "backlog: {lines} lines written in {:.1} s with the agent stopped; agent started again: line {lines} stored {:.0} ms after its start; progress by the newest line stored {}",
        ms(written - restart_at) / 1e3,
        ms(drained - agent_started),
        sustained_rate(&drain, lines)
    );
    println!(
        "backlog: peak RSS: agent {:.1} MiB, server {:.1} MiB",
        hwm_mib(agent_pid),
        hwm_mib(server_pid)
    );
    println!("backlog: agent start → every line stored: {drain_cpu}");
    // `<seconds>.<nanoseconds>`, as the docker CLI takes a precise --since.
    let since = format!(
        "{}.{:09}",
        restart_at / 1_000_000_000,
        restart_at % 1_000_000_000
    );
    let peer = DockerLogs::spawn(&["logs", "--since", &since, &container], u64::MAX)?;
    let peer = peer.finish(Duration::from_secs(120))?;
    let end = peer.eof.context("docker logs --since did not end")?;
    println!(
        "backlog peer: docker logs --since <restart> read {} lines in {:.0} ms = {:.0} lines/s (alone)",
        peer.lines,
        ms(end - peer.spawned),
        rate(peer.lines, end - peer.spawned)
    );

    if let Some([live, backlog, live_rows, backlog_rows]) = batches(&db_url, "flood", restart_at) {
        println!(
            "stored rows: live {live_rows}, backlog {backlog_rows} (of {} each); insert transactions (batches): live {live} ({:.0} lines each on average), backlog {backlog} ({:.0} each)",
            lines + 1,
            live_rows as f64 / live.max(1) as f64,
            backlog_rows as f64 / backlog.max(1) as f64
        );
        // The rates that count: rows actually in Postgres.
        let live_store = rate(live_rows, gantry_done - first_ts);
        let live_own = samples
            .first()
            .map_or(f64::NAN, |&(t, _)| rate(live_rows, gantry_done - t));
        println!(
            "RESULT live: gantry stored {live_rows} of {} lines from the writer's first line to its last stored = {live_store:.0} lines/s ({live_own:.0}/s from the first line stored); docker logs -f read all {} = {peer_e2e:.0} lines/s; ratio {:.2} (target ≥ 0.9); {} lines lost",
            lines + 1,
            lines + 1,
            live_store / peer_e2e,
            (lines + 1).saturating_sub(live_rows)
        );
        let drain_store = drain
            .first()
            .map_or(f64::NAN, |&(t, _)| rate(backlog_rows, drained - t));
        println!(
            "RESULT backlog: gantry stored {backlog_rows} of {} lines = {drain_store:.0} lines/s from the first line stored to the last (target ≥ 20,000/s); {:.0} lines/s from the agent's start; docker logs alone {:.0} lines/s; ratio {:.2}; {} lines lost",
            lines + 1,
            rate(backlog_rows, drained - agent_started),
            rate(peer.lines, end - peer.spawned),
            drain_store / rate(peer.lines, end - peer.spawned),
            (lines + 1).saturating_sub(backlog_rows)
        );
    }
    println!(
        "audit, live: {}",
        line_audit(&db_url, "flood", restart_at, false, lines)
    );
    println!(
        "audit, backlog: {}",
        line_audit(&db_url, "flood", restart_at, true, lines)
    );
    // What the agent and the server had to say (warnings and errors only): a session that
    // ended under the flood shows here.
    print_output("server", &mut procs._server);
    if let Some(agent) = procs.agent.as_mut() {
        print_output("agent (restarted)", agent);
    }
    api.delete("flood").await?;
    drop(procs);
    Ok(())
}

/// A process's warnings and errors so far (it runs with GANTRY_LOG=warn): the count, the last few.
fn print_output(who: &str, process: &mut Running) {
    let n = process.count_lines("");
    println!(
        "{who} printed {n} warning/error lines{}",
        if n > 0 { "; the last ones:" } else { "" }
    );
    for line in process.output.iter().rev().take(6).rev() {
        println!("  {who}: {}", line.chars().take(240).collect::<String>());
    }
}

fn container_count(team: &str) -> anyhow::Result<usize> {
    Ok(docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=gantry.team={team}"),
    ])?
    .lines()
    .count())
}

/// From (time, newest line stored) samples: the rate over the middle of the run (10 % to 90 %
/// of the lines), as text.
fn sustained_rate(samples: &[(i128, u64)], lines: u64) -> String {
    let at = |frac: f64| {
        let want = (lines as f64 * frac) as u64;
        samples.iter().find(|(_, n)| *n >= want).copied()
    };
    match (at(0.1), at(0.9), samples.first(), samples.last()) {
        (Some((t10, n10)), Some((t90, n90)), Some(&(tf, nf)), Some(&(tl, nl))) if t90 > t10 => {
            format!(
                "{:.0} lines/s sustained (10–90 % of the lines), {:.0} lines/s from the first sample to the last",
                (n90 - n10) as f64 / ((t90 - t10) as f64 / 1e9),
                (nl - nf) as f64 / ((tl - tf).max(1) as f64 / 1e9)
            )
        }
        _ => "too few samples for a rate".to_owned(),
    }
}
