//! `hello`: the demo app Gantry deploys in its tests and docs.
//!
//! A tiny HTTP/1.1 server with no dependencies, so it links fully statically and runs in a
//! `scratch` image (see `Dockerfile` and `scripts/build-hello-image`).
//!
//! - `GET /` answers `Hello, 世界 from <hostname>` (Docker writes the container id to
//!   `/etc/hostname`, so replicas tell themselves apart);
//! - `GET /healthz` answers `ok`;
//! - anything else is a 404 (or 405 for another method on a known path).
//!
//! It listens on `0.0.0.0:$PORT` (8888 by default) with one thread per connection, at most
//! [`MAX_CONNECTIONS`] at once; every connection answers one request and is closed. Request heads
//! are bounded ([`MAX_HEAD_BYTES`]) and reads and writes time out ([`IO_TIMEOUT`]), so a slow or
//! hostile client holds a thread for a few seconds at most.
//!
//! No signal handling: in a container Gantry runs it under Docker's init (`--init`), which turns
//! SIGTERM into the default action (exit) at once.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const DEFAULT_PORT: u16 = 8888;
/// Connections served at once; more are answered 503 and closed without a thread.
const MAX_CONNECTIONS: usize = 256;
/// Request line plus headers; a longer head is answered 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering: how long, and how much, we read and drop what the client still sends.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_MAX_BYTES: usize = 64 * 1024;
/// The threads only parse a few KiB and write one short answer.
const THREAD_STACK_BYTES: usize = 64 * 1024;

fn main() -> ExitCode {
    let port = match std::env::var("PORT") {
        Err(_) => DEFAULT_PORT,
        Ok(s) => match s.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("hello: PORT must be a port number (0-65535), not {s:?}");
                return ExitCode::FAILURE;
            }
        },
    };
    // An address literal, not a name: resolving names would need glibc's NSS, which a static
    // binary in a `scratch` image does not have.
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("hello: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let app = App::new(read_hostname());
    let local = listener.local_addr().unwrap_or(addr);
    // Ignore a closed stdout rather than panic: logging is not worth dying for.
    let _ = writeln!(io::stdout(), "hello: listening on {local}");
    serve(listener, Arc::new(app));
    ExitCode::SUCCESS
}

/// What every connection shares.
struct App {
    /// The body of `GET /`, built once.
    greeting: String,
    /// Connections being served now.
    active: AtomicUsize,
}

impl App {
    fn new(hostname: String) -> Self {
        App {
            greeting: format!("Hello, 世界 from {hostname}\n"),
            active: AtomicUsize::new(0),
        }
    }
}

/// The container's hostname as Docker writes it, or `unknown` outside a container.
fn read_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Accepts connections forever, one thread each, at most [`MAX_CONNECTIONS`] at once.
fn serve(listener: TcpListener, app: Arc<App>) {
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
            .spawn(move || handle(stream, &slot.app));
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
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(&Response::text(503, "busy\n").to_bytes(false));
}

fn handle(mut stream: TcpStream, app: &App) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let (response, head_only) = match read_head(&mut stream) {
        Ok(head) => match parse_request_line(&head) {
            Ok(req) => (route(&req, app), req.method == "HEAD"),
            Err(()) => (Response::text(400, "bad request\n"), false),
        },
        Err(HeadError::TooLarge) => (Response::text(431, "request head too large\n"), false),
        // The client went away or stalled: nobody to answer.
        Err(HeadError::Io) => return,
    };
    if stream.write_all(&response.to_bytes(head_only)).is_err() {
        return;
    }
    linger(&mut stream);
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

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    TooLarge,
    Io,
}

/// Reads until the blank line that ends the head; the body (if any) is ignored.
fn read_head(stream: &mut impl Read) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(HeadError::Io),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Io),
        };
        // Look for the end only where it can be: the new bytes and the 3 before them.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_head_end(&head[from..]) {
            head.truncate(from + end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
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

#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The path without its query string.
    path: &'a str,
}

/// Parses `METHOD SP target SP HTTP/x.y` from the first line of the head.
fn parse_request_line(head: &[u8]) -> Result<Request<'_>, ()> {
    let line_end = head.iter().position(|&b| b == b'\n').ok_or(())?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| ())?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(());
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(());
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok(Request { method, path })
}

fn route(req: &Request<'_>, app: &App) -> Response {
    let body = match req.path {
        "/" => app.greeting.as_str(),
        "/healthz" => "ok\n",
        _ => return Response::text(404, "not found\n"),
    };
    match req.method {
        "GET" | "HEAD" => Response::text(200, body),
        _ => Response::text(405, "method not allowed\n"),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Response {
            status,
            body: body.to_owned(),
        }
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let allow = if self.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App::new("box1".into())
    }

    fn get(path: &str) -> Response {
        route(
            &Request {
                method: "GET",
                path,
            },
            &app(),
        )
    }

    #[test]
    fn routes() {
        assert_eq!(get("/"), Response::text(200, "Hello, 世界 from box1\n"));
        assert_eq!(get("/healthz"), Response::text(200, "ok\n"));
        assert_eq!(get("/nope").status, 404);
        assert_eq!(get("/healthz/").status, 404);
        let post = Request {
            method: "POST",
            path: "/",
        };
        assert_eq!(route(&post, &app()).status, 405);
    }

    #[test]
    fn parses_request_lines() {
        let req = parse_request_line(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            req,
            Ok(Request {
                method: "GET",
                path: "/healthz"
            })
        );
        assert!(parse_request_line(b"GET / HTTP/1.0\n\n").is_ok());
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"no newline at all",
        ] {
            assert_eq!(parse_request_line(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn finds_the_end_of_the_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    /// A reader that hands out its bytes a few at a time, like a slow client.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_a_head_split_across_reads_and_bounds_it() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nignored body";
        let head = read_head(&mut Trickle(raw, 3)).unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");

        let endless = vec![b'a'; MAX_HEAD_BYTES * 2];
        assert_eq!(
            read_head(&mut Trickle(&endless, 1000)),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            read_head(&mut Trickle(b"GET / HTTP/1.1\r\n", 100)),
            Err(HeadError::Io)
        );
    }

    #[test]
    fn head_requests_get_no_body() {
        let bytes = Response::text(200, "ok\n").to_bytes(true);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    /// The wire matters here (timeouts, the connection cap, closing), so one test over a real
    /// loopback port.
    #[test]
    fn serves_over_tcp() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(app());
        let served = Arc::clone(&app);
        thread::spawn(move || serve(listener, served));

        let exchange = |request: &[u8]| {
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.write_all(request).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            answer
        };
        let answer = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(
            answer.ends_with("\r\n\r\nHello, 世界 from box1\n"),
            "{answer}"
        );
        assert!(exchange(b"GET /healthz HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nok\n"));
        assert!(exchange(b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(exchange(b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let huge = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 20_000]].concat();
        assert!(exchange(&huge).starts_with("HTTP/1.1 431 "));
        // Every slot is given back once its connection is answered.
        for _ in 0..100 {
            if app.active.load(Ordering::Acquire) == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("connection slots leaked");
    }
}
