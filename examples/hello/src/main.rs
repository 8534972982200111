//! `hello`: the demo app Gantry deploys in its tests, docs and benchmarks.
//!
//! A tiny HTTP/1.1 server with no dependencies, so it links fully statically and runs in a
//! `scratch` image (see `Dockerfile` and `scripts/build-hello-image`).
//!
//! - `GET /` answers `<GREETING> from <hostname>`, and ` (release <GANTRY_RELEASE>)` after it when
//!   Gantry set that variable: `Hello, 世界 from 3f2a9c1d4e5b (release v3)`. Docker writes the
//!   container id to `/etc/hostname`, so replicas tell themselves apart, and the release tells
//!   which deploy answered;
//! - `GET /healthz` answers `ok`;
//! - `GET /burn?ms=N` keeps a core busy for N milliseconds (at most [`MAX_BURN_MS`]), then answers
//!   `burned`: load for autoscaling tests;
//! - anything else is a 404 (or 405 for another method on a known path).
//!
//! `FAIL_PERCENT` (0–100, 0 by default) makes that share of `GET /` answer 500 instead — exactly
//! that many of every hundred, spread evenly — to make a bad release for canary tests;
//! `/healthz` and `/burn` never fail, so the release still looks ready.
//!
//! The environment: `PORT` (8888 by default), `GREETING` (`Hello, 世界` when unset or empty) and
//! `GANTRY_RELEASE`, each at most [`MAX_VAR_BYTES`]; a bad value stops it at start with a message.
//!
//! For log tests and benchmarks it can also print numbered lines to stdout, beside serving:
//! `LOG_LINES` of them (`line 1`, `line 2`, …; none by default), one every `LOG_INTERVAL_MS`
//! milliseconds (0, the default: as fast as stdout takes them), each padded with dots to
//! `LOG_LINE_BYTES` (at most 64 KiB) when set.
//!
//! # Connections
//!
//! It listens on `0.0.0.0:$PORT` with one thread per connection, at most [`MAX_CONNECTIONS`] at
//! once (more are answered 503). Connections persist as HTTP/1.1 says: an HTTP/1.1 request keeps
//! its connection unless it says `Connection: close`, an HTTP/1.0 one closes it unless it says
//! `Connection: keep-alive`. Pipelined requests are answered in order, and the answers to requests
//! that arrived together leave in one write. Each thread holds a client for as long as the
//! client keeps to these bounds:
//!
//! - a request head is at most [`MAX_HEAD_BYTES`] (else 431) and, once its first byte is here,
//!   must be complete within [`IO_TIMEOUT`]; a new connection's first request must also start
//!   within it;
//! - a body is read and dropped: at most [`MAX_BODY_BYTES`] (else 413 and close), also within
//!   [`IO_TIMEOUT`]. A chunked body (`Transfer-Encoding`) is not parsed: the request is answered
//!   and the connection closed;
//! - between requests, a connection may idle for [`IDLE_TIMEOUT`], longer than the idle timeout of
//!   a proxy's upstream pool (Gantry's router, nginx), so the proxy always closes first and never
//!   sends a request into a connection this end is closing;
//! - before closing after an answer, it lingers ([`LINGER_TIMEOUT`]) so the answer is not lost.
//!
//! # Build steps
//!
//! With arguments it is a tool for the `RUN` steps of a `FROM scratch` build (exec form, as there
//! is no shell), used by the `git push` tests: `hello sleep <seconds>` sleeps and exits 0 (a long
//! build); `hello require-env <NAME>` exits 0 only when `NAME` is set and not empty, printing its
//! length but never its value (a build arg arrived); `hello print-env <NAME>` prints `NAME=<value>`
//! and exits 0 only when it is set (what a careless build step does with a secret, so that the
//! log's masking can be seen to work); `hello probe <ip:port>` tries a TCP
//! connection for 2 s and exits 0 only when it FAILS (a build cannot reach that address).
//!
//! No signal handling: in a container Gantry runs it under Docker's init (`--init`), which turns
//! SIGTERM into the default action (exit) at once.

use std::env::VarError;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const DEFAULT_PORT: u16 = 8888;
const DEFAULT_GREETING: &str = "Hello, 世界";
/// The longest `GET /burn?ms=N`.
const MAX_BURN_MS: u64 = 10_000;
/// The longest `GREETING` or `GANTRY_RELEASE`: the body of `GET /` is one short line.
const MAX_VAR_BYTES: usize = 1024;
/// Connections served at once; more are answered 503 and closed without a thread.
const MAX_CONNECTIONS: usize = 256;
/// Request line plus headers; a longer head is answered 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The largest request body read (and dropped) to keep the connection; a larger one gets 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A connection's read buffer: a whole head, and what came with it (pipelined requests).
const INBOX_BYTES: usize = 2 * MAX_HEAD_BYTES;
/// The least room a read is given; the buffer is compacted to make it.
const MIN_READ_BYTES: usize = 4 * 1024;
/// Queued answers are written once they reach this, even when more pipelined requests wait.
const MAX_OUTBOX_BYTES: usize = 16 * 1024;
/// For a request head once started, a new connection's first request, a body, and each write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Between requests on a kept-alive connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// After answering: how long, and how much, we read and drop what the client still sends.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// The threads parse a few KiB (their buffers are on the heap) and write short answers.
const THREAD_STACK_BYTES: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return match Tool::parse(&args) {
            Ok(tool) => tool.run(&mut io::stdout()),
            Err(msg) => {
                eprintln!("hello: {msg}");
                ExitCode::from(2)
            }
        };
    }
    let config = match Config::parse(|name| std::env::var(name)) {
        Ok(config) => config,
        Err(msg) => {
            eprintln!("hello: {msg}");
            return ExitCode::FAILURE;
        }
    };
    // An address literal, not a name: resolving names would need glibc's NSS, which a static
    // binary in a `scratch` image does not have.
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("hello: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let app = App::new(
        &read_hostname(),
        &config.greeting,
        config.release.as_deref(),
        config.fail_percent,
    );
    let local = listener.local_addr().unwrap_or(addr);
    // Ignore a closed stdout rather than panic: logging is not worth dying for.
    let _ = writeln!(io::stdout(), "hello: listening on {local}");
    if config.chatter.lines > 0 {
        let chatter = config.chatter;
        thread::spawn(move || chatter.print(&mut io::stdout()));
    }
    serve(listener, Arc::new(app), Timeouts::DEFAULT);
    ExitCode::SUCCESS
}

/// `hello <tool> <arg>`: a build step (see "Build steps" above).
#[derive(Debug, PartialEq, Eq)]
enum Tool {
    Sleep(Duration),
    RequireEnv(String),
    PrintEnv(String),
    Probe(SocketAddr),
}

/// The longest `hello sleep`: an hour, longer than any build may take.
const MAX_SLEEP_SECONDS: u64 = 3600;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Tool {
    fn parse(args: &[String]) -> Result<Tool, String> {
        let usage = "usage: hello [sleep <seconds> | require-env <NAME> | print-env <NAME> | \
                     probe <ip:port>]";
        let [tool, arg] = args else {
            return Err(usage.to_owned());
        };
        match tool.as_str() {
            "sleep" => arg
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= MAX_SLEEP_SECONDS)
                .map(|s| Tool::Sleep(Duration::from_secs(s)))
                .ok_or_else(|| {
                    format!("sleep takes 0 to {MAX_SLEEP_SECONDS} seconds, not {arg:?}")
                }),
            "require-env" if !arg.is_empty() => Ok(Tool::RequireEnv(arg.clone())),
            "print-env" if !arg.is_empty() => Ok(Tool::PrintEnv(arg.clone())),
            "probe" => arg
                .parse()
                .map(Tool::Probe)
                .map_err(|_| format!("probe takes an address like 172.17.0.1:5432, not {arg:?}")),
            _ => Err(usage.to_owned()),
        }
    }

    fn run(self, out: &mut impl Write) -> ExitCode {
        let ok = match self {
            Tool::Sleep(d) => {
                thread::sleep(d);
                true
            }
            Tool::RequireEnv(name) => match std::env::var(&name) {
                Ok(v) if !v.is_empty() => {
                    let _ = writeln!(out, "hello: {name} is set ({} bytes)", v.len());
                    true
                }
                _ => {
                    let _ = writeln!(out, "hello: {name} is not set");
                    false
                }
            },
            Tool::PrintEnv(name) => match std::env::var(&name) {
                Ok(v) => {
                    let _ = writeln!(out, "{name}={v}");
                    true
                }
                Err(_) => {
                    let _ = writeln!(out, "hello: {name} is not set");
                    false
                }
            },
            Tool::Probe(addr) => match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
                Ok(_) => {
                    let _ = writeln!(out, "hello: connected to {addr}: reachable");
                    false
                }
                Err(err) => {
                    let _ = writeln!(out, "hello: cannot connect to {addr}: {err}");
                    true
                }
            },
        };
        let _ = out.flush();
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// What the environment sets, checked before anything starts.
#[derive(Debug, PartialEq, Eq)]
struct Config {
    /// `PORT`.
    port: u16,
    /// `GREETING`, or [`DEFAULT_GREETING`].
    greeting: String,
    /// `GANTRY_RELEASE`: Gantry sets it to the release's version (`v3`).
    release: Option<String>,
    /// `FAIL_PERCENT`.
    fail_percent: u64,
    chatter: Chatter,
}

/// The numbered lines to print (`LOG_LINES`, `LOG_INTERVAL_MS`, `LOG_LINE_BYTES`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Chatter {
    lines: u64,
    interval_ms: u64,
    line_bytes: usize,
}

/// The longest `LOG_LINE_BYTES`.
const MAX_LINE_BYTES: u64 = 64 * 1024;

impl Chatter {
    /// `line <n>`, padded with dots to `line_bytes`.
    fn line(&self, n: u64) -> String {
        let mut line = format!("line {n}");
        if line.len() < self.line_bytes {
            line.push(' ');
            while line.len() < self.line_bytes {
                line.push('.');
            }
        }
        line
    }

    fn print(self, out: &mut impl Write) {
        for n in 1..=self.lines {
            if writeln!(out, "{}", self.line(n)).is_err() {
                return;
            }
            if self.interval_ms > 0 {
                thread::sleep(Duration::from_millis(self.interval_ms));
            }
        }
        let _ = out.flush();
    }
}

impl Config {
    /// Reads the variables through `var`: `std::env::var` in `main`, a table in tests.
    fn parse(var: impl Fn(&str) -> Result<String, VarError>) -> Result<Config, String> {
        let port = match var("PORT") {
            Err(VarError::NotPresent) => DEFAULT_PORT,
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("PORT must be a port number (0-65535), not {s:?}"))?,
            Err(VarError::NotUnicode(s)) => {
                return Err(format!("PORT must be a port number (0-65535), not {s:?}"))
            }
        };
        let greeting = text_var(&var, "GREETING")?.unwrap_or_else(|| DEFAULT_GREETING.to_owned());
        let release = text_var(&var, "GANTRY_RELEASE")?;
        let fail_percent = number_var(&var, "FAIL_PERCENT", 100)?;
        let chatter = Chatter {
            lines: number_var(&var, "LOG_LINES", u64::MAX)?,
            interval_ms: number_var(&var, "LOG_INTERVAL_MS", 3_600_000)?,
            line_bytes: number_var(&var, "LOG_LINE_BYTES", MAX_LINE_BYTES)? as usize,
        };
        Ok(Config {
            port,
            greeting,
            release,
            fail_percent,
            chatter,
        })
    }
}

/// A whole number up to `max`; unset or empty is 0.
fn number_var(
    var: &impl Fn(&str) -> Result<String, VarError>,
    name: &str,
    max: u64,
) -> Result<u64, String> {
    match text_var(var, name)? {
        None => Ok(0),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{name} must be a whole number from 0 to {max}, not {s:?}")),
    }
}

/// A short optional text: unset and empty are both `None` (`docker run -e GREETING=` means
/// "no greeting of my own", not "an empty one").
fn text_var(
    var: &impl Fn(&str) -> Result<String, VarError>,
    name: &str,
) -> Result<Option<String>, String> {
    match var(name) {
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(format!("{name} must be UTF-8")),
        Ok(s) if s.is_empty() => Ok(None),
        Ok(s) if s.len() > MAX_VAR_BYTES => Err(format!(
            "{name} is {} bytes long; at most {MAX_VAR_BYTES} are allowed",
            s.len()
        )),
        Ok(s) => Ok(Some(s)),
    }
}

/// What every connection shares.
struct App {
    /// The body of `GET /`, built once.
    greeting: String,
    /// Connections being served now.
    active: AtomicUsize,
    /// `FAIL_PERCENT`, and how many `GET /` have been answered.
    fail_percent: u64,
    greeted: AtomicU64,
}

impl App {
    fn new(hostname: &str, greeting: &str, release: Option<&str>, fail_percent: u64) -> Self {
        let release = release
            .map(|r| format!(" (release {r})"))
            .unwrap_or_default();
        App {
            greeting: format!("{greeting} from {hostname}{release}\n"),
            active: AtomicUsize::new(0),
            fail_percent,
            greeted: AtomicU64::new(0),
        }
    }

    /// Whether the next `GET /` fails: the n-th does when `n × p / 100` steps up, so every
    /// hundred in a row hold exactly `p` failures, evenly spread.
    fn next_fails(&self) -> bool {
        let n = self.greeted.fetch_add(1, Ordering::Relaxed);
        let p = self.fail_percent;
        (n + 1) * p / 100 > n * p / 100
    }
}

/// Keeps this thread's core busy for `ms` milliseconds.
fn burn(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x: u64 = 1;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// `ms=N` from a query string, N from 0 to [`MAX_BURN_MS`].
fn burn_ms(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= MAX_BURN_MS)
}

/// The container's hostname as Docker writes it, or `unknown` outside a container.
fn read_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// How long a client may take; [`Timeouts::DEFAULT`] except in tests, which cannot wait a minute.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    /// See [`IO_TIMEOUT`].
    io: Duration,
    /// See [`IDLE_TIMEOUT`].
    idle: Duration,
}

impl Timeouts {
    const DEFAULT: Timeouts = Timeouts {
        io: IO_TIMEOUT,
        idle: IDLE_TIMEOUT,
    };
}

/// Accepts connections forever, one thread each, at most [`MAX_CONNECTIONS`] at once.
fn serve(listener: TcpListener, app: Arc<App>, timeouts: Timeouts) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(_) => {
                // Out of file descriptors, or a connection reset before accept: back off a
                // little instead of spinning on the same error.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(slot) = Slot::take(&app) else {
            reject_busy(stream);
            continue;
        };
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || handle(stream, &slot.app, timeouts));
        // The closure (and with it the slot and the stream) is dropped when the spawn fails.
        if spawned.is_err() {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One of the [`MAX_CONNECTIONS`] places; given back on drop, even if the handler panics.
struct Slot {
    app: Arc<App>,
}

impl Slot {
    fn take(app: &Arc<App>) -> Option<Slot> {
        let taken = app
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Slot {
            app: Arc::clone(app),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.app.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 on the accepting thread: a short write into a fresh socket's buffer does not
/// block, and the timeout bounds it if it would.
fn reject_busy(mut stream: TcpStream) {
    let mut answer = Vec::new();
    Response::text(503, "busy\n").write_to(&mut answer, false, Persist::Close);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(&answer);
}

fn handle(stream: TcpStream, app: &App, timeouts: Timeouts) {
    // Every write is a whole batch of answers after which we wait for the client: Nagle's
    // algorithm could only hold the last segment back until the client's delayed ACK.
    if stream.set_nodelay(true).is_err() || stream.set_write_timeout(Some(timeouts.io)).is_err() {
        return;
    }
    let mut conn = Conn::new(stream);
    match converse(&mut conn, app, timeouts) {
        Ending::Close => {
            if conn.flush().is_ok() {
                linger(&mut conn.wire);
            }
        }
        Ending::Drop => {}
    }
}

/// How a conversation ends.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The last answer is queued and says `Connection: close`: write it, then linger.
    Close,
    /// The client went away, stalled, idled too long, or a write failed: nobody to answer.
    Drop,
}

/// Answers the requests on `conn` in order until one of them is the last.
fn converse<W: Wire>(conn: &mut Conn<W>, app: &App, timeouts: Timeouts) -> Ending {
    // A new connection has as long to send its first request as a started head has to finish:
    // only a client that was already served is given the idle timeout.
    let mut wait = timeouts.io;
    loop {
        let head_len = match conn.read_head(wait, timeouts.io) {
            Ok(len) => len,
            Err(HeadError::TooLarge) => {
                let too_large = Response::text(431, "request head too large\n");
                too_large.write_to(&mut conn.outbox, false, Persist::Close);
                return Ending::Close;
            }
            Err(HeadError::Io) => return Ending::Drop,
        };
        let answer = answer(&conn.inbox.pending()[..head_len], app);
        conn.inbox.consume(head_len);
        if answer.skip > 0 {
            // Unless the body is here already, the client waits (a while) for the go-ahead.
            if answer.send_continue && conn.inbox.pending().len() < answer.skip {
                conn.outbox.extend_from_slice(CONTINUE);
            }
            if conn.skip(answer.skip, timeouts.io).is_err() {
                return Ending::Drop;
            }
        }
        answer
            .response
            .write_to(&mut conn.outbox, answer.head_only, answer.persist);
        if answer.persist == Persist::Close {
            return Ending::Close;
        }
        if conn.outbox.len() >= MAX_OUTBOX_BYTES && conn.flush().is_err() {
            return Ending::Drop;
        }
        wait = timeouts.idle;
    }
}

/// Closing a socket that still holds unread bytes (a body we ignored, the rest of a head too
/// large) makes the kernel send a reset, and the client may lose our answer with it. So say we
/// are done writing, then read and drop what the client still sends, within bounds.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// A connection's byte stream: a socket, or a test's script.
trait Wire: Read + Write {
    /// Makes each read give up (`WouldBlock` or `TimedOut`) after waiting `limit`, never zero.
    fn set_read_limit(&mut self, limit: Duration) -> io::Result<()>;
}

impl Wire for TcpStream {
    fn set_read_limit(&mut self, limit: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(limit))
    }
}

/// One connection: its stream and the buffers every request on it reuses.
struct Conn<W> {
    wire: W,
    /// The limit now set on `wire`, so it is set again only when it changes: between requests it
    /// does not, which saves a system call per request.
    read_limit: Option<Duration>,
    inbox: Inbox,
    /// Answers not written yet. They are written before the next read, so requests that arrived
    /// together (pipelined) get their answers in one write.
    outbox: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    TooLarge,
    /// The client closed, stalled, idled too long, or a write of earlier answers failed.
    Io,
}

impl<W: Wire> Conn<W> {
    fn new(wire: W) -> Self {
        Conn {
            wire,
            read_limit: None,
            inbox: Inbox::new(),
            outbox: Vec::with_capacity(1024),
        }
    }

    /// Waits up to `wait` for a request to start, then up to `io` for the rest of its head.
    /// Returns the length of the head (its blank line included) at the front of the inbox.
    fn read_head(&mut self, wait: Duration, io: Duration) -> Result<usize, HeadError> {
        // Bytes already here (pipelined) mean the request has started.
        let mut deadline = (!self.inbox.pending().is_empty()).then(|| Instant::now() + io);
        let mut scanned = 0;
        loop {
            let pending = self.inbox.pending();
            if let Some(end) = find_head_end(&pending[scanned..]) {
                let len = scanned + end;
                return if len > MAX_HEAD_BYTES {
                    Err(HeadError::TooLarge)
                } else {
                    Ok(len)
                };
            }
            if pending.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            // Look for the end only where it can be: the new bytes and the 3 before them.
            scanned = pending.len().saturating_sub(3);
            let limit = deadline.map_or(wait, |d| d.saturating_duration_since(Instant::now()));
            match self.fill(limit) {
                Ok(0) | Err(_) => return Err(HeadError::Io),
                Ok(_) => {
                    deadline.get_or_insert_with(|| Instant::now() + io);
                }
            }
        }
    }

    /// Reads and drops `len` body bytes (those in the inbox first) within `io`.
    fn skip(&mut self, mut len: usize, io: Duration) -> io::Result<()> {
        let deadline = Instant::now() + io;
        loop {
            let here = self.inbox.pending().len().min(len);
            self.inbox.consume(here);
            len -= here;
            if len == 0 {
                return Ok(());
            }
            if self.fill(deadline.saturating_duration_since(Instant::now()))? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads more into the inbox, waiting at most `limit`; `Ok(0)` means the client closed its
    /// side. Writes the queued answers first: the client may wait for them before sending more.
    fn fill(&mut self, limit: Duration) -> io::Result<usize> {
        self.flush()?;
        if limit.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if self.read_limit != Some(limit) {
            self.wire.set_read_limit(limit)?;
            self.read_limit = Some(limit);
        }
        loop {
            match self.inbox.fill(&mut self.wire) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.outbox.is_empty() {
            self.wire.write_all(&self.outbox)?;
            self.outbox.clear();
        }
        Ok(())
    }
}

/// Bytes read from a connection and not consumed yet: `buf[start..end]`.
struct Inbox {
    /// On the heap: the threads' stacks are small.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buf: vec![0; INBOX_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// One read into the free end of the buffer.
    ///
    /// # Assumptions
    /// Fewer than [`MAX_HEAD_BYTES`] bytes are pending (callers read only to complete a head or
    /// a body), so after moving them to the front there is room for a read.
    fn fill(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.buf.len() - self.end < MIN_READ_BYTES && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        debug_assert!(
            self.end < self.buf.len(),
            "a read into no room looks like EOF"
        );
        let n = source.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// The length of the head up to and including its blank line (`\r\n\r\n`, or a bare `\n\n`,
/// which HTTP/1.1 tells servers to accept).
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// What to do about one request head, decided before any of it is consumed.
#[derive(Debug, PartialEq, Eq)]
struct Answer<'a> {
    response: Response<'a>,
    /// A HEAD request: the answer's head only.
    head_only: bool,
    persist: Persist,
    /// Body bytes to read and drop before answering, to find the next request.
    skip: usize,
    /// The client waits for `100 Continue` before it sends the body.
    send_continue: bool,
}

impl<'a> Answer<'a> {
    fn closing(response: Response<'a>, head_only: bool) -> Self {
        Answer {
            response,
            head_only,
            persist: Persist::Close,
            skip: 0,
            send_continue: false,
        }
    }
}

fn answer<'a>(head: &[u8], app: &'a App) -> Answer<'a> {
    let Ok(req) = parse_request(head) else {
        return Answer::closing(Response::text(400, "bad request\n"), false);
    };
    let head_only = req.method == "HEAD";
    match req.body {
        Body::Length(len) => match usize::try_from(len) {
            Ok(len) if len <= MAX_BODY_BYTES => Answer {
                response: route(&req, app),
                head_only,
                persist: req.persist,
                skip: len,
                send_continue: req.expects_continue && len > 0,
            },
            // Not worth reading to keep the connection: close it instead (after lingering).
            _ => Answer::closing(Response::text(413, "request body too large\n"), head_only),
        },
        // We do not parse chunks, so we cannot tell where a next request would start.
        Body::Chunked => Answer::closing(route(&req, app), head_only),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The path without its query string.
    path: &'a str,
    /// What follows `?` in the target (empty without one).
    query: &'a str,
    persist: Persist,
    body: Body,
    /// `Expect: 100-continue` (ignored from HTTP/1.0 clients, as HTTP/1.1 says).
    expects_continue: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// `Content-Length`, or 0 without one.
    Length(u64),
    /// `Transfer-Encoding`, which overrides any `Content-Length`.
    Chunked,
}

/// Whether a connection stays open after an answer, as that answer says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1's default: kept, no header needed.
    Keep,
    /// An HTTP/1.0 client asked to keep it: kept, and we say so (`Connection: keep-alive`).
    KeepAnnounced,
    /// Closed after the answer, which says `Connection: close`.
    Close,
}

/// Parses a head: the request line, then the headers that frame the body or decide whether the
/// connection persists. Other headers are only checked for shape.
fn parse_request(head: &[u8]) -> Result<Request<'_>, ()> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let (method, (path, query), http10) = parse_request_line(lines.next().ok_or(())?)?;
    let mut content_length = None;
    let mut chunked = false;
    let (mut close, mut keep_alive, mut expects_continue) = (false, false, false);
    for line in lines.take_while(|line| !line.is_empty()) {
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let len = parse_content_length(value)?;
            // Two lengths that differ: a broken client or request smuggling, either way a 400.
            if content_length
                .replace(len)
                .is_some_and(|first| first != len)
            {
                return Err(());
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expects_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let persist = match (close, http10, keep_alive) {
        (true, _, _) | (false, true, false) => Persist::Close,
        (false, true, true) => Persist::KeepAnnounced,
        (false, false, _) => Persist::Keep,
    };
    let body = if chunked {
        Body::Chunked
    } else {
        Body::Length(content_length.unwrap_or(0))
    };
    Ok(Request {
        method,
        path,
        query,
        persist,
        body,
        expects_continue: expects_continue && !http10,
    })
}

/// Parses `METHOD SP target SP HTTP/1.x` into the method, the path and query, and whether it
/// is HTTP/1.0.
fn parse_request_line(line: &[u8]) -> Result<(&str, (&str, &str), bool), ()> {
    let line = std::str::from_utf8(line).map_err(|_| ())?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(());
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    // A later 1.x is answered as 1.1, the highest we speak.
    let minor = version.strip_prefix("HTTP/1.").ok_or(())?;
    if !method_ok
        || !target.starts_with('/')
        || minor.len() != 1
        || !minor.as_bytes()[0].is_ascii_digit()
    {
        return Err(());
    }
    let path_query = target.split_once('?').unwrap_or((target, ""));
    Ok((method, path_query, minor == "0"))
}

/// Splits `name: value`. Whitespace before the colon and folded lines (which start with
/// whitespace) are refused, as HTTP/1.1 says: request smuggling lives on servers and proxies
/// that read them differently.
fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), ()> {
    let colon = line.iter().position(|&b| b == b':').ok_or(())?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
        return Err(());
    }
    Ok((name, value.trim_ascii()))
}

/// Digits only; a number too large for a `u64` is certainly too large a body, so it saturates.
fn parse_content_length(value: &[u8]) -> Result<u64, ()> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(value.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn route<'a>(req: &Request<'_>, app: &'a App) -> Response<'a> {
    if !matches!(req.path, "/" | "/healthz" | "/burn") {
        return Response::text(404, "not found\n");
    }
    if !matches!(req.method, "GET" | "HEAD") {
        return Response::text(405, "method not allowed\n");
    }
    match req.path {
        "/" if app.next_fails() => Response::text(500, "failing on purpose (FAIL_PERCENT)\n"),
        "/" => Response::text(200, &app.greeting),
        "/burn" => match burn_ms(req.query) {
            Some(ms) => {
                burn(ms);
                Response::text(200, "burned\n")
            }
            None => Response::text(400, "burn takes ms=<0-10000>\n"),
        },
        _ => Response::text(200, "ok\n"),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Response<'a> {
    status: u16,
    body: &'a str,
}

impl<'a> Response<'a> {
    fn text(status: u16, body: &'a str) -> Self {
        Response { status, body }
    }

    /// Appends the answer to `out`.
    fn write_to(&self, out: &mut Vec<u8>, head_only: bool, persist: Persist) {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let connection = match persist {
            Persist::Keep => "",
            Persist::KeepAnnounced => "Connection: keep-alive\r\n",
            Persist::Close => "Connection: close\r\n",
        };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n{allow}{connection}\r\n",
            self.status,
            self.body.len()
        );
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn build_step_tools_parse_their_argument() {
        let parse =
            |args: &[&str]| Tool::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            parse(&["sleep", "600"]),
            Ok(Tool::Sleep(Duration::from_secs(600)))
        );
        assert_eq!(
            parse(&["require-env", "TOKEN"]),
            Ok(Tool::RequireEnv("TOKEN".into()))
        );
        assert_eq!(
            parse(&["probe", "172.17.0.1:5432"]),
            Ok(Tool::Probe(SocketAddr::from(([172, 17, 0, 1], 5432))))
        );
        for bad in [
            &["sleep"][..],
            &["sleep", "-1"],
            &["sleep", "3601"],
            &["probe", "db:5432"],
            &["require-env", ""],
            &["serve", "x"],
            &["sleep", "1", "2"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_probe_succeeds_only_when_the_connection_fails() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        let mut out = Vec::new();
        assert_eq!(Tool::Probe(open).run(&mut out), ExitCode::FAILURE);
        assert!(String::from_utf8(out).unwrap().contains("reachable"));
        drop(listener);
        let mut out = Vec::new();
        assert_eq!(Tool::Probe(open).run(&mut out), ExitCode::SUCCESS);
        assert!(String::from_utf8(out).unwrap().contains("cannot connect"));
    }

    #[test]
    fn require_env_never_prints_the_value() {
        // PATH is set in every test environment; its value must not show.
        let path = std::env::var("PATH").unwrap();
        let mut out = Vec::new();
        assert_eq!(
            Tool::RequireEnv("PATH".into()).run(&mut out),
            ExitCode::SUCCESS
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("PATH is set") && !text.contains(&path),
            "{text}"
        );
        let mut out = Vec::new();
        let unset = "HELLO_TEST_SURELY_UNSET_VARIABLE";
        assert_eq!(
            Tool::RequireEnv(unset.into()).run(&mut out),
            ExitCode::FAILURE
        );
    }

    fn app() -> App {
        App::new("box1", DEFAULT_GREETING, None, 0)
    }

    fn request<'a>(method: &'a str, target: &'a str) -> Request<'a> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            path,
            query,
            persist: Persist::Keep,
            body: Body::Length(0),
            expects_continue: false,
        }
    }

    #[test]
    fn routes() {
        let app = app();
        let get = |path| route(&request("GET", path), &app);
        assert_eq!(get("/"), Response::text(200, "Hello, 世界 from box1\n"));
        assert_eq!(get("/healthz"), Response::text(200, "ok\n"));
        assert_eq!(get("/nope").status, 404);
        assert_eq!(get("/healthz/").status, 404);
        assert_eq!(route(&request("POST", "/"), &app).status, 405);
    }

    #[test]
    fn fails_exactly_the_share_asked_of_greetings_and_never_health_checks() {
        for p in [0, 1, 10, 33, 50, 99, 100] {
            let app = App::new("box1", DEFAULT_GREETING, None, p);
            let statuses: Vec<u16> = (0..1000)
                .map(|_| {
                    assert_eq!(route(&request("GET", "/healthz"), &app).status, 200);
                    route(&request("GET", "/"), &app).status
                })
                .collect();
            for hundred in statuses.chunks(100) {
                let failed = hundred.iter().filter(|s| **s == 500).count() as u64;
                assert_eq!(failed, p, "{p} %: {hundred:?}");
                assert!(hundred.iter().all(|s| matches!(s, 200 | 500)));
            }
        }
        let half = App::new("box1", DEFAULT_GREETING, None, 50);
        let first: Vec<u16> = (0..4)
            .map(|_| route(&request("GET", "/"), &half).status)
            .collect();
        assert_eq!(first, [200, 500, 200, 500], "spread, not in a block");
    }

    #[test]
    fn burns_a_core_for_the_time_asked() {
        let app = app();
        let started = Instant::now();
        let res = route(&request("GET", "/burn?x=1&ms=30"), &app);
        assert_eq!(res, Response::text(200, "burned\n"));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(route(&request("GET", "/burn?ms=0"), &app).status, 200);
        for bad in [
            "/burn",
            "/burn?ms=",
            "/burn?ms=-1",
            "/burn?ms=10001",
            "/burn?ms=1e3",
        ] {
            assert_eq!(route(&request("GET", bad), &app).status, 400, "{bad}");
        }
        assert_eq!(route(&request("POST", "/burn?ms=1"), &app).status, 405);
    }

    #[test]
    fn greets_as_configured_and_names_the_release() {
        let released = App::new("3f2a9c1d", DEFAULT_GREETING, Some("v3"), 0);
        assert_eq!(
            released.greeting,
            "Hello, 世界 from 3f2a9c1d (release v3)\n"
        );
        let custom = App::new("box1", "Howdy", None, 0);
        assert_eq!(custom.greeting, "Howdy from box1\n");
    }

    #[test]
    fn prints_numbered_lines_padded_as_asked() {
        let chatter = config(&[("LOG_LINES", "3"), ("LOG_LINE_BYTES", "12")])
            .unwrap()
            .chatter;
        let mut out = Vec::new();
        chatter.print(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "line 1 .....\nline 2 .....\nline 3 .....\n"
        );
        assert_eq!(Chatter::default().line(42), "line 42");
        assert!(config(&[("LOG_LINES", "-1")])
            .unwrap_err()
            .contains("LOG_LINES"));
        assert!(config(&[("LOG_LINE_BYTES", "65537")]).is_err());
        assert!(config(&[("LOG_INTERVAL_MS", "x")]).is_err());
    }

    /// `Config::parse` over a table instead of the process environment, which tests share.
    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(|name| vars.get(name).cloned().ok_or(VarError::NotPresent))
    }

    #[test]
    fn reads_the_environment() {
        assert_eq!(
            config(&[]),
            Ok(Config {
                port: DEFAULT_PORT,
                greeting: DEFAULT_GREETING.to_owned(),
                release: None,
                fail_percent: 0,
                chatter: Chatter::default(),
            })
        );
        let set = config(&[
            ("PORT", "9000"),
            ("GREETING", "Hi"),
            ("GANTRY_RELEASE", "v7"),
            ("FAIL_PERCENT", "50"),
        ]);
        assert_eq!(
            set,
            Ok(Config {
                port: 9000,
                greeting: "Hi".to_owned(),
                release: Some("v7".to_owned()),
                fail_percent: 50,
                chatter: Chatter::default(),
            })
        );
        let empty = config(&[("GREETING", ""), ("GANTRY_RELEASE", "")]).unwrap();
        assert_eq!(
            (empty.greeting.as_str(), empty.release),
            (DEFAULT_GREETING, None)
        );

        let long = "a".repeat(MAX_VAR_BYTES + 1);
        let err = config(&[("GREETING", long.as_str())]).unwrap_err();
        assert!(err.starts_with("GREETING is 1025 bytes long"), "{err}");
        assert!(config(&[("GREETING", &long[1..])]).is_ok());
        assert!(config(&[("GANTRY_RELEASE", long.as_str())]).is_err());
        assert!(config(&[("PORT", "http")]).unwrap_err().contains("PORT"));
        assert!(config(&[("FAIL_PERCENT", "101")])
            .unwrap_err()
            .contains("FAIL_PERCENT must be a whole number from 0 to 100"));
        let not_unicode = Config::parse(|name| match name {
            "GREETING" => Err(VarError::NotUnicode("\u{fffd}".into())),
            _ => Err(VarError::NotPresent),
        });
        assert_eq!(not_unicode, Err("GREETING must be UTF-8".to_owned()));
    }

    #[test]
    fn parses_request_lines() {
        let req = parse_request(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (req.method, req.path, req.query),
            ("GET", "/healthz", "probe=1")
        );
        assert!(parse_request(b"GET / HTTP/1.0\n\n").is_ok());
        assert!(parse_request(b"GET / HTTP/1.2\r\n\r\n").is_ok());
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"no newline at all",
        ] {
            assert_eq!(parse_request(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn headers_decide_persistence_and_framing() {
        fn parse(head: &str) -> Result<Request<'_>, ()> {
            parse_request(head.as_bytes())
        }
        let persist = |head: &str| parse(head).unwrap().persist;
        assert_eq!(persist("GET / HTTP/1.1\r\n\r\n"), Persist::Keep);
        assert_eq!(
            persist("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n"),
            Persist::Keep
        );
        assert_eq!(
            persist("GET / HTTP/1.1\r\nconnection: Upgrade , CLOSE\r\n\r\n"),
            Persist::Close
        );
        assert_eq!(persist("GET / HTTP/1.0\r\n\r\n"), Persist::Close);
        assert_eq!(
            persist("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Persist::KeepAnnounced
        );
        assert_eq!(
            persist("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
            Persist::Close
        );

        let body = |head: &str| parse(head).unwrap().body;
        assert_eq!(body("POST / HTTP/1.1\r\n\r\n"), Body::Length(0));
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length:  12 \r\n\r\n"),
            Body::Length(12)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n"),
            Body::Length(3)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Body::Length(u64::MAX)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Body::Chunked
        );
        assert!(
            parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expects_continue
        );
        assert!(
            !parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expects_continue
        );

        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\n: x\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn answers_decide_what_happens_to_the_connection() {
        let app = app();
        let decide = |head: &str| answer(head.as_bytes(), &app);

        let get = decide("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(get.response.status, 200);
        assert_eq!(
            (get.persist, get.skip, get.head_only),
            (Persist::Keep, 0, false)
        );
        assert!(decide("HEAD / HTTP/1.1\r\n\r\n").head_only);

        let post = decide("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(post.response.status, 405);
        assert_eq!(
            (post.persist, post.skip, post.send_continue),
            (Persist::Keep, 5, true)
        );

        let limit = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n");
        assert_eq!(decide(&limit).skip, MAX_BODY_BYTES);
        let over = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let over = decide(&over);
        assert_eq!(
            (over.response.status, over.persist, over.skip),
            (413, Persist::Close, 0)
        );

        let chunked = decide("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            (chunked.response.status, chunked.persist),
            (200, Persist::Close)
        );

        let bad = decide("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert_eq!((bad.response.status, bad.persist), (400, Persist::Close));
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    /// A scripted client: hands out its bytes a few at a time, like a slow one, then closes; keeps
    /// each write the server makes.
    struct Trickle<'a> {
        input: &'a [u8],
        step: usize,
        writes: Vec<Vec<u8>>,
    }

    impl<'a> Trickle<'a> {
        fn new(input: &'a [u8], step: usize) -> Conn<Self> {
            Conn::new(Trickle {
                input,
                step,
                writes: Vec::new(),
            })
        }
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.input.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }

    impl Write for Trickle<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Wire for Trickle<'_> {
        fn set_read_limit(&mut self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn reads_a_head_split_across_reads_and_bounds_it() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nnext";
        let mut conn = Trickle::new(raw, 3);
        let len = conn.read_head(T, T).unwrap();
        assert_eq!(
            &conn.inbox.pending()[..len],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        );

        let endless = vec![b'a'; MAX_HEAD_BYTES * 2];
        assert_eq!(
            Trickle::new(&endless, 1000).read_head(T, T),
            Err(HeadError::TooLarge)
        );
        // The end is here, but past the bound.
        let long = [
            &b"GET / HTTP/1.1\r\nX: "[..],
            &[b'a'; MAX_HEAD_BYTES],
            b"\r\n\r\n",
        ]
        .concat();
        assert_eq!(
            Trickle::new(&long, 20_000).read_head(T, T),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            Trickle::new(b"GET / HTTP/1.1\r\n", 100).read_head(T, T),
            Err(HeadError::Io)
        );
    }

    #[test]
    fn answers_pipelined_requests_in_order_in_one_write() {
        let app = app();
        let script = b"GET / HTTP/1.1\r\n\r\n\
            POST /healthz HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody\
            HEAD /healthz HTTP/1.1\r\n\r\n\
            GET /healthz HTTP/1.1\r\n\r\n";
        let mut conn = Trickle::new(script, script.len());
        assert_eq!(converse(&mut conn, &app, Timeouts::DEFAULT), Ending::Drop);
        assert_eq!(conn.wire.writes.len(), 1, "one write for all four answers");
        let text = String::from_utf8(conn.wire.writes.concat()).unwrap();
        let statuses: Vec<_> = text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "405", "200", "200"]);
        assert!(text.ends_with("Content-Length: 3\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nok\n"), "{text}");
        assert!(!text.contains("Connection:"), "{text}");
    }

    #[test]
    fn answers_say_whether_the_connection_persists() {
        let head = |persist, head_only| {
            let mut out = Vec::new();
            Response::text(200, "ok\n").write_to(&mut out, head_only, persist);
            String::from_utf8(out).unwrap()
        };
        let text = head(Persist::Keep, true);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "a HEAD answer has no body");
        assert!(!text.contains("Connection"));
        assert!(
            head(Persist::KeepAnnounced, false).contains("\r\nConnection: keep-alive\r\n\r\nok\n")
        );
        assert!(head(Persist::Close, false).contains("\r\nConnection: close\r\n\r\nok\n"));
    }

    // Over a real loopback port: where the wire matters (timeouts, closing, what arrives in which
    // read).

    /// Serves `app` on a fresh loopback port.
    fn start(app: App, timeouts: Timeouts) -> (SocketAddr, Arc<App>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(app);
        let served = Arc::clone(&app);
        thread::spawn(move || serve(listener, served, timeouts));
        (addr, app)
    }

    /// One client connection that reads answers one at a time, framed by `Content-Length`.
    struct Client {
        conn: TcpStream,
        /// Read and not yet returned.
        buf: Vec<u8>,
    }

    /// An answer: its head (status line and headers) and body.
    struct Reply {
        head: String,
        body: String,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let conn = TcpStream::connect(addr).unwrap();
            // A missing answer fails the test instead of hanging it.
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Client {
                conn,
                buf: Vec::new(),
            }
        }

        fn send(&mut self, bytes: &[u8]) -> &mut Self {
            self.conn.write_all(bytes).unwrap();
            self
        }

        fn read_more(&mut self) -> usize {
            let mut chunk = [0u8; 4096];
            let n = self.conn.read(&mut chunk).expect("an answer in time");
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        fn reply(&mut self) -> Reply {
            let head_len = loop {
                if let Some(end) = find_head_end(&self.buf) {
                    break end;
                }
                assert!(
                    self.read_more() > 0,
                    "closed before an answer: {:?}",
                    self.buf
                );
            };
            let head = String::from_utf8(self.buf[..head_len].to_vec()).unwrap();
            let body_len: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .map_or(0, |len| len.parse().unwrap());
            let body_len = if head.starts_with("HTTP/1.1 1") {
                0
            } else {
                body_len
            };
            while self.buf.len() < head_len + body_len {
                assert!(self.read_more() > 0, "closed within an answer");
            }
            let body = String::from_utf8(self.buf[head_len..head_len + body_len].to_vec()).unwrap();
            self.buf.drain(..head_len + body_len);
            Reply { head, body }
        }

        /// Whether the server closed the connection (with nothing more to read), waiting for it
        /// at most the client's read timeout.
        fn closed(&mut self) -> bool {
            self.buf.is_empty() && matches!(self.conn.read(&mut [0u8; 1]), Ok(0))
        }
    }

    fn wait_until_no_connections(app: &App) {
        // Every slot is given back once its connection is over.
        for _ in 0..200 {
            if app.active.load(Ordering::Acquire) == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("connection slots leaked");
    }

    #[test]
    fn serves_over_tcp() {
        let (addr, app) = start(self::app(), Timeouts::DEFAULT);
        let exchange = |request: &[u8]| {
            let mut client = Client::connect(addr);
            client.send(request);
            let mut answer = String::new();
            client.conn.read_to_string(&mut answer).unwrap();
            answer
        };
        let answer = exchange(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(answer.contains("Connection: close\r\n"));
        assert!(
            answer.ends_with("\r\n\r\nHello, 世界 from box1\n"),
            "{answer}"
        );
        assert!(exchange(b"GET /healthz HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nok\n"));
        assert!(exchange(b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let huge = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 20_000]].concat();
        assert!(exchange(&huge).starts_with("HTTP/1.1 431 "));

        let mut client = Client::connect(addr);
        let reply = client.send(b"GET /x HTTP/1.1\r\n\r\n").reply();
        assert!(reply.head.starts_with("HTTP/1.1 404 "), "{}", reply.head);
        let reply = client.send(b"PUT / HTTP/1.1\r\n\r\n").reply();
        assert!(
            reply.head.contains("Allow: GET, HEAD\r\n"),
            "{}",
            reply.head
        );
        drop(client);
        wait_until_no_connections(&app);
    }

    #[test]
    fn keeps_a_connection_for_many_requests() {
        let (addr, _) = start(app(), Timeouts::DEFAULT);
        let mut client = Client::connect(addr);
        for _ in 0..3 {
            let reply = client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").reply();
            assert!(
                reply.head.starts_with("HTTP/1.1 200 OK\r\n"),
                "{}",
                reply.head
            );
            assert!(!reply.head.contains("Connection:"), "{}", reply.head);
            assert_eq!(reply.body, "Hello, 世界 from box1\n");
        }

        // Pipelined: three requests in one write, answered in order.
        client
            .send(b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(client.reply().body, "ok\n");
        assert!(client.reply().head.starts_with("HTTP/1.1 404 "));
        assert_eq!(client.reply().body, "Hello, 世界 from box1\n");

        let reply = client
            .send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .reply();
        assert!(
            reply.head.contains("\r\nConnection: close\r\n"),
            "{}",
            reply.head
        );
        assert!(client.closed());
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive() {
        let (addr, _) = start(app(), Timeouts::DEFAULT);
        let mut client = Client::connect(addr);
        let reply = client.send(b"GET / HTTP/1.0\r\n\r\n").reply();
        assert!(
            reply.head.contains("\r\nConnection: close\r\n"),
            "{}",
            reply.head
        );
        assert!(client.closed());

        let mut client = Client::connect(addr);
        for _ in 0..2 {
            let reply = client
                .send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .reply();
            assert!(
                reply.head.contains("\r\nConnection: keep-alive\r\n"),
                "{}",
                reply.head
            );
            assert_eq!(reply.body, "Hello, 世界 from box1\n");
        }
    }

    #[test]
    fn skips_bodies_to_find_the_next_request() {
        let (addr, _) = start(app(), Timeouts::DEFAULT);
        let mut client = Client::connect(addr);
        // The body arrives apart from its head, and the next request right behind it.
        client.send(b"POST /healthz HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello");
        thread::sleep(Duration::from_millis(20));
        client.send(b" worldGET /healthz HTTP/1.1\r\n\r\n");
        assert!(client.reply().head.starts_with("HTTP/1.1 405 "));
        assert_eq!(client.reply().body, "ok\n");

        // A client that waits for the go-ahead gets it, then its answer.
        client.send(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(client.reply().head, "HTTP/1.1 100 Continue\r\n\r\n");
        assert!(client
            .send(b"body")
            .reply()
            .head
            .starts_with("HTTP/1.1 405 "));
        assert_eq!(
            client.send(b"GET / HTTP/1.1\r\n\r\n").reply().body,
            "Hello, 世界 from box1\n"
        );
    }

    #[test]
    fn closes_after_a_body_too_large_or_chunked() {
        let (addr, _) = start(app(), Timeouts::DEFAULT);
        let mut client = Client::connect(addr);
        let head = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let reply = client.send(head.as_bytes()).send(&[b'x'; 1000]).reply();
        assert!(
            reply.head.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{}",
            reply.head
        );
        assert!(reply.head.contains("\r\nConnection: close\r\n"));
        assert!(client.closed());

        let mut client = Client::connect(addr);
        client.send(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let reply = client.send(b"GET /healthz HTTP/1.1\r\n\r\n").reply();
        assert_eq!(reply.body, "Hello, 世界 from box1\n");
        assert!(
            reply.head.contains("\r\nConnection: close\r\n"),
            "{}",
            reply.head
        );
        assert!(
            client.closed(),
            "the request behind the chunks is not answered"
        );
    }

    #[test]
    fn closes_a_connection_idle_too_long() {
        let idle = Duration::from_millis(300);
        let (addr, _) = start(app(), Timeouts { io: T, idle });
        let mut client = Client::connect(addr);
        // Requests within the idle timeout of the last answer keep the connection.
        for _ in 0..3 {
            assert_eq!(
                client.send(b"GET /healthz HTTP/1.1\r\n\r\n").reply().body,
                "ok\n"
            );
            thread::sleep(Duration::from_millis(50));
        }
        let asked = Instant::now();
        assert_eq!(
            client.send(b"GET /healthz HTTP/1.1\r\n\r\n").reply().body,
            "ok\n"
        );
        assert!(client.closed());
        // The server's wait began after `asked`; a little slack for the kernel's timer.
        let waited = asked.elapsed();
        assert!(waited >= idle - Duration::from_millis(20), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    #[test]
    fn a_started_head_must_finish_within_the_io_timeout() {
        let io = Duration::from_millis(300);
        let (addr, _) = start(app(), Timeouts { io, idle: T });
        let mut client = Client::connect(addr);
        assert_eq!(
            client.send(b"GET /healthz HTTP/1.1\r\n\r\n").reply().body,
            "ok\n"
        );
        // Each line comes well within the timeout of the last, but the whole head does not: the
        // long idle timeout no longer applies once a head has started.
        let started = Instant::now();
        client.send(b"GET / HTTP/1.1\r\n");
        client
            .conn
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let closed = loop {
            match client.conn.read(&mut [0u8; 1]) {
                // Unread header lines of ours may turn the close into a reset.
                Ok(0) => break true,
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => break true,
                Err(_) if started.elapsed() < Duration::from_secs(3) => {
                    let _ = client.conn.write_all(b"X: 1\r\n");
                }
                other => panic!("{other:?} after {:?}", started.elapsed()),
            }
        };
        assert!(closed);
        assert!(
            started.elapsed() >= io - Duration::from_millis(20),
            "{:?}",
            started.elapsed()
        );
    }
}
