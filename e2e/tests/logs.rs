//! Live logs end to end: a `gantry server`, a `gantry agent` on the real Docker engine, and the
//! hello image printing numbered lines (`LOG_LINES`).
//!
//! Every line arrives once and in order, over the websocket and in the history, across a
//! `kill -9` and restart of the server in the middle of the output; search finds a line; the
//! deploy's events are in the stream. Then the rules of the stream: another team's user gets
//! 404s (REST and handshake), a foreign `Origin` is refused, a removed member's open stream is
//! closed (1008) within seconds, a user's streams are capped, and clients that never read do not
//! grow the server's memory (its RSS measured while an app floods the log).
//!
//! One server serves the whole journey; a guard removes the team's containers and networks.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use gantry_e2e::cluster::{
    docker, kill9, start_agent, start_server, Admin, DockerCleanup, CONVERGE, IMAGE, PASSWORD,
};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Lines the chatty app prints, one every [`INTERVAL_MS`]: long enough to crash the server
/// in the middle.
const LINES: u32 = 400;
const INTERVAL_MS: u32 = 25;

/// A signed-in user as a browser holds it: the raw session cookie, for websockets.
struct User {
    http: reqwest::Client,
    cookie: String,
    id: String,
}

async fn sign_up(base: &str, email: &str) -> anyhow::Result<User> {
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    ensure!(res.status().is_success(), "sign-up: {}", res.status());
    let cookie = res
        .headers()
        .get("set-cookie")
        .context("a session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let body: Value = res.json().await?;
    Ok(User {
        http,
        cookie,
        id: body["user"]["id"].as_str().context("user id")?.to_owned(),
    })
}

impl User {
    async fn get_status(&self, url: &str) -> anyhow::Result<u16> {
        let res = self
            .http
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await?;
        Ok(res.status().as_u16())
    }
}

/// Opens a stream with these headers; the handshake's HTTP status when it is refused.
async fn open(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Result<Ws, u16>> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(WsError::Http(res)) => Ok(Err(res.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

async fn open_ok(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Ws> {
    match open(url, headers).await? {
        Ok(ws) => Ok(ws),
        Err(status) => bail!("the handshake of {url} was refused: {status}"),
    }
}

/// Opens a stream once the user has a free slot: the server frees a closed stream's slot
/// when it notices the close, a moment after the client's.
async fn open_when_free(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Ws> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(url, headers).await? {
            Ok(ws) => return Ok(ws),
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) => bail!("the handshake of {url} was refused: {status}"),
        }
    }
}

/// What a stream delivered.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    events: Vec<String>,
    live: bool,
    /// How the stream ended, if it did: the close code.
    closed: Option<u16>,
    dropped: u64,
}

/// Reads frames until `done` holds or the stream ends; false when `within` passed first.
async fn read_until(
    ws: &mut Ws,
    seen: &mut Seen,
    within: Duration,
    done: impl Fn(&Seen) -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return Ok(false),
            Ok(None) => {
                seen.closed.get_or_insert(1006);
                return Ok(done(seen));
            }
            Ok(Some(Err(_))) => {
                seen.closed.get_or_insert(1006);
                return Ok(done(seen));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(text.as_str())?;
                match v["type"].as_str() {
                    Some("lines") => {
                        for item in v["items"].as_array().context("items")? {
                            let line = item["line"].as_str().unwrap_or_default().to_owned();
                            if item["stream"] == "event" {
                                seen.events.push(line);
                            } else {
                                seen.lines.push(line);
                            }
                        }
                    }
                    Some("live") => seen.live = true,
                    Some("dropped") => seen.dropped += v["count"].as_u64().unwrap_or_default(),
                    other => bail!("unexpected frame {other:?}: {v}"),
                }
            }
            Message::Close(frame) => {
                seen.closed = Some(frame.map_or(1005, |f| u16::from(f.code)));
                return Ok(done(seen));
            }
            _ => {}
        }
    }
    Ok(true)
}

/// The numbers of `line N` lines, in the order they came.
fn numbers(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("line "))
        .filter_map(|n| n.split(' ').next()?.parse().ok())
        .collect()
}

fn has_line(n: u32) -> impl Fn(&Seen) -> bool {
    move |seen| numbers(&seen.lines).contains(&n)
}

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

#[tokio::test]
async fn logs_survive_a_server_crash_and_streams_follow_the_rules() -> anyhow::Result<()> {
    docker(&["image", "inspect", IMAGE]).context(
        "the demo image is missing: run scripts/build-hello-image (scripts/test does) with Docker running",
    )?;
    let run = format!("{:x}", std::process::id());
    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let (port, router_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let ws_base = format!("ws://127.0.0.1:{port}");
    let mut server = start_server(&db_url, port, router_port).await?;

    let admin = Admin::sign_up(&base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let join = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let join = join["token"].as_str().context("join token")?.to_owned();
    let _agent = start_agent(&base, &join, &format!("lg-{run}-n1"), "a", dir.path())?;
    admin.wait_nodes_ready(1).await?;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "logs", "team": admin.team, "role": "owner"}),
        )
        .await?;
    let bearer = format!(
        "Bearer {}",
        token["secret"].as_str().context("token secret")?
    );
    let auth = [("authorization", bearer.as_str())];

    let team = admin.team.clone();
    let apps = format!("/api/v1/teams/{team}/apps");
    let app = |name: &str| {
        json!({"name": name, "port": 8888, "replicas": 1, "cpu_millis": 200, "memory_mib": 32,
               "health_check_path": "/healthz", "stop_grace_seconds": 2})
    };
    admin.post(&apps, app("chatty")).await?;
    admin
        .patch(
            &format!("{apps}/chatty/config"),
            json!({"vars": {"LOG_LINES": LINES.to_string(), "LOG_INTERVAL_MS": INTERVAL_MS.to_string()}}),
        )
        .await?;
    let stream_url = format!("{ws_base}{apps}/chatty/logs/stream");

    // A viewer from before the deploy: its events, then the first lines, live.
    let mut first = open_ok(&format!("{stream_url}?tail=0"), &auth).await?;
    let mut seen1 = Seen::default();
    admin
        .post(&format!("{apps}/chatty/deploys"), json!({"image": IMAGE}))
        .await?;
    ensure!(
        read_until(&mut first, &mut seen1, CONVERGE, has_line(100)).await?,
        "line 100 did not arrive over the stream; events {:?}, lines {:?}",
        seen1.events,
        seen1.lines.last()
    );
    ensure!(seen1.live, "the live marker comes first");
    ensure!(
        seen1
            .events
            .iter()
            .any(|e| e.contains("release v1 created")),
        "the deploy's event is in the stream: {:?}",
        seen1.events
    );

    // The server dies mid-stream and comes back on the same database.
    kill9(&server.process)?;
    let _ = server.process.child.wait().await;
    read_until(&mut first, &mut seen1, Duration::from_secs(5), |s| {
        s.closed.is_some()
    })
    .await?;
    server = start_server(&db_url, port, router_port).await?;
    let mut second = open_ok(&format!("{stream_url}?tail=1000"), &auth).await?;
    let mut seen2 = Seen::default();
    ensure!(
        read_until(&mut second, &mut seen2, CONVERGE, has_line(LINES)).await?,
        "the last line did not arrive after the restart; last seen {:?}",
        seen2.lines.last()
    );
    let (n1, n2) = (numbers(&seen1.lines), numbers(&seen2.lines));
    for (name, n) in [("before the crash", &n1), ("after it", &n2)] {
        ensure!(
            n.windows(2).all(|w| w[0] < w[1]),
            "lines {name} are in order, each once: {n:?}"
        );
    }
    let mut all: Vec<u32> = n1.clone();
    all.extend(n2.iter().filter(|n| **n > *n1.last().unwrap_or(&0)));
    ensure!(
        all == (1..=LINES).collect::<Vec<_>>(),
        "every line arrived over the websockets, once, in order: {all:?}"
    );
    eprintln!(
        "stream: {} lines before the crash, {} after (replay included)",
        n1.len(),
        n2.len()
    );

    // The history has every line once, in order, and the events.
    let page = admin
        .get(&format!("{apps}/chatty/logs?stream=stdout&limit=5000"))
        .await?;
    let stored: Vec<String> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|i| i["line"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        numbers(&stored) == (1..=LINES).collect::<Vec<_>>(),
        "the history holds every line once, in order: {:?}",
        numbers(&stored)
    );
    let found = admin
        .get(&format!("{apps}/chatty/logs?q=LINE%20123"))
        .await?;
    let found: Vec<&str> = found["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|i| i["line"].as_str())
        .collect();
    ensure!(found == ["line 123"], "search finds the line: {found:?}");
    let events = admin
        .get(&format!("{apps}/chatty/logs?stream=event"))
        .await?;
    ensure!(
        events["items"]
            .as_array()
            .context("items")?
            .iter()
            .any(|e| e["line"].as_str().unwrap_or_default().contains("is ready")),
        "instance state changes are events: {events}"
    );

    // Another team's user: the app does not exist for them, over REST and websocket.
    let stranger = sign_up(&base, &format!("stranger-{run}@example.com")).await?;
    let history_url = format!("{base}{apps}/chatty/logs");
    ensure!(stranger.get_status(&history_url).await? == 404);
    let refused = open(&stream_url, &[("cookie", stranger.cookie.as_str())]).await?;
    ensure!(
        matches!(refused, Err(404)),
        "a stranger's handshake is a 404: {:?}",
        refused.err()
    );

    // A member (viewer): a foreign Origin is refused before the upgrade; the server's own
    // Origin, or none, is let in; removed from the team, the open stream is closed.
    let member = sign_up(&base, &format!("member-{run}@example.com")).await?;
    admin
        .post(
            &format!("/api/v1/teams/{team}/members"),
            json!({"email": format!("member-{run}@example.com"), "role": "viewer"}),
        )
        .await?;
    let cookie = ("cookie", member.cookie.as_str());
    let foreign = open(&stream_url, &[cookie, ("origin", "http://evil.example")]).await?;
    ensure!(
        matches!(foreign, Err(403)),
        "foreign Origin: {:?}",
        foreign.err()
    );
    drop(open_ok(&stream_url, &[cookie]).await?);
    let mut watched = open_ok(
        &format!("{stream_url}?tail=1"),
        &[cookie, ("origin", base.as_str())],
    )
    .await?;
    let mut seen = Seen::default();
    read_until(&mut watched, &mut seen, CONVERGE, |s| s.live).await?;
    admin
        .delete(&format!("/api/v1/teams/{team}/members/{}", member.id))
        .await?;
    let removed_at = Instant::now();
    let closed = read_until(&mut watched, &mut seen, Duration::from_secs(10), |s| {
        s.closed.is_some()
    })
    .await?;
    ensure!(
        closed && seen.closed == Some(u16::from(CloseCode::Policy)),
        "a removed member's stream is closed with 1008 within seconds: {:?} after {:?}",
        seen.closed,
        removed_at.elapsed()
    );
    eprintln!("removed member cut off after {:?}", removed_at.elapsed());
    ensure!(member.get_status(&history_url).await? == 404);

    // A user's streams are capped (GANTRY_STREAMS_PER_USER, 16 by default).
    drop((first, second));
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(open_when_free(&format!("{stream_url}?tail=0"), &auth).await?);
    }
    let over = open(&format!("{stream_url}?tail=0"), &auth).await?;
    ensure!(
        matches!(over, Err(429)),
        "the 17th stream: {:?}",
        over.err()
    );
    drop(held);

    // Clients that never read, while an app floods the log: the server's memory stays bounded.
    admin.post(&apps, app("flood")).await?;
    let flood_lines = 60_000;
    admin
        .patch(
            &format!("{apps}/flood/config"),
            json!({"vars": {"LOG_LINES": flood_lines.to_string(), "LOG_LINE_BYTES": "200"}}),
        )
        .await?;
    let flood_url = format!("{ws_base}{apps}/flood/logs/stream?tail=0");
    let mut stuck = Vec::new();
    for _ in 0..10 {
        stuck.push(open_when_free(&flood_url, &auth).await?);
    }
    let pid = server.process.child.id().context("server pid")?;
    let before = rss_kib(pid)?;
    let mut peak = before;
    let flood_started = Instant::now();
    admin
        .post(&format!("{apps}/flood/deploys"), json!({"image": IMAGE}))
        .await?;
    let last = format!("{apps}/flood/logs?q=line%20{flood_lines}%20&limit=1");
    loop {
        peak = peak.max(rss_kib(pid)?);
        let page = admin.get(&last).await?;
        if page["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        ensure!(
            flood_started.elapsed() < Duration::from_secs(180),
            "the flood's last line was not stored within 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = flood_started.elapsed();
    // Every line of the flood is stored, once: a server slower than the app makes the agent
    // wait, never drop.
    let mut stored = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut page = format!("{apps}/flood/logs?stream=stdout&limit=5000");
        if let Some(b) = &cursor {
            page.push_str(&format!("&before={b}"));
        }
        let page = admin.get(&page).await?;
        stored += numbers(
            &page["items"]
                .as_array()
                .context("items")?
                .iter()
                .map(|i| i["line"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
        )
        .len();
        match page["before"].as_str() {
            Some(b) => cursor = Some(b.to_owned()),
            None => break,
        }
    }
    ensure!(
        stored == flood_lines as usize,
        "{stored} of the flood's {flood_lines} lines stored"
    );
    eprintln!(
        "flood: {flood_lines} lines of 200 bytes stored in {took:?} with 10 viewers that never read; server RSS {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    ensure!(
        peak.saturating_sub(before) < 96 * 1024,
        "the server's memory grew by {} MiB with clients that never read",
        peak.saturating_sub(before) / 1024
    );
    // Each stuck viewer, once it reads, learns it missed lines, or finds itself closed as
    // too slow (1013).
    for mut ws in stuck {
        let mut seen = Seen::default();
        read_until(&mut ws, &mut seen, Duration::from_secs(20), |s| {
            s.dropped > 0 || s.closed.is_some()
        })
        .await?;
        ensure!(
            seen.dropped > 0 || seen.closed == Some(1013),
            "a viewer that did not read was told what it missed, or closed: dropped {}, closed {:?}",
            seen.dropped,
            seen.closed
        );
    }
    Ok(())
}
