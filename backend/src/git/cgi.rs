//! Running `git http-backend`, git's own smart HTTP server, as a CGI program: the request's
//! facts go in as environment variables (set one by one, on a cleared environment), its body
//! on stdin; the program's output is CGI headers, a blank line, then the body, streamed back as
//! it comes (a push's build output arrives over minutes).

use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::io::ReaderStream;

/// The most bytes of CGI headers read before giving up on the program.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// `git` with a clean environment: no system or user config, no terminal prompts.
pub fn git_command() -> Command {
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// One request for the program.
pub struct CgiRequest<'a> {
    pub project_root: &'a Path,
    /// `/<repo>.git/info/refs`, …
    pub path_info: String,
    pub method: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub remote_user: &'a str,
    pub remote_addr: String,
    /// More environment: the hook's (for a push) and git config for this request.
    pub env: Vec<(String, String)>,
    pub body: Body,
    pub max_body_bytes: u64,
}

/// Why the program could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CgiError {
    #[error("git could not be started on the server: {0}")]
    Spawn(std::io::Error),
    #[error("git http-backend failed: {0}")]
    Failed(String),
}

/// Runs the program and answers with what it writes; `guard` lives as long as the answer's
/// body is being sent (a push's session ends with it).
pub async fn run<G: Send + 'static>(
    request: CgiRequest<'_>,
    guard: G,
) -> Result<Response, CgiError> {
    let mut command = git_command();
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", request.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &request.path_info)
        .env("REQUEST_METHOD", request.method)
        .env("QUERY_STRING", request.query)
        .env("REMOTE_USER", request.remote_user)
        .env("REMOTE_ADDR", &request.remote_addr)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .envs(request.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (variable, header) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        if let Some(value) = request.headers.get(header).and_then(|v| v.to_str().ok()) {
            command.env(variable, value);
        }
    }
    let mut child = command.spawn().map_err(CgiError::Spawn)?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(feed(request.body, stdin, request.max_body_bytes));
    tokio::spawn(log_stderr(stderr));

    let mut head = Vec::new();
    let (status, headers, rest) = loop {
        if let Some(parsed) = parse_head(&head) {
            break parsed.map_err(CgiError::Failed)?;
        }
        if head.len() > MAX_HEADER_BYTES {
            return Err(CgiError::Failed("its headers are too long".into()));
        }
        let mut chunk = [0u8; 8192];
        let n = stdout
            .read(&mut chunk)
            .await
            .map_err(|e| CgiError::Failed(e.to_string()))?;
        if n == 0 {
            let status = child.wait().await.ok();
            return Err(CgiError::Failed(format!(
                "it ended without an answer ({status:?})"
            )));
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let first = bytes::Bytes::from(head[rest..].to_vec());
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(Rest::new(stdout, child, guard).into_stream());
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The program's output after its headers; the program and the guard go with it.
struct Rest<G> {
    stdout: ReaderStream<ChildStdout>,
    child: Child,
    _guard: G,
}

impl<G: Send + 'static> Rest<G> {
    fn new(stdout: ChildStdout, child: Child, guard: G) -> Self {
        Self {
            stdout: ReaderStream::new(stdout),
            child,
            _guard: guard,
        }
    }

    fn into_stream(self) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
        futures_util::stream::unfold(Some(self), |rest| async move {
            let mut rest = rest?;
            match rest.stdout.next().await {
                Some(item) => Some((item, Some(rest))),
                None => {
                    if let Ok(status) = rest.child.wait().await {
                        if !status.success() {
                            tracing::debug!("git http-backend exited with {status}");
                        }
                    }
                    None
                }
            }
        })
    }
}

/// Copies the request's body to the program, at most `max` bytes (then it is cut off, and the
/// program fails on the short input).
async fn feed(body: Body, mut stdin: tokio::process::ChildStdin, max: u64) {
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return };
        total += chunk.len() as u64;
        if total > max {
            tracing::warn!("a git request's body passed the limit of {max} bytes; cut off");
            return;
        }
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

async fn log_stderr(mut stderr: tokio::process::ChildStderr) {
    let mut text = String::new();
    let _ = stderr.read_to_string(&mut text).await;
    let text = text.trim();
    if !text.is_empty() {
        tracing::debug!("git http-backend: {text}");
    }
}

/// The status and headers of CGI output, and where its body starts: `None` while the blank
/// line has not arrived yet.
fn parse_head(bytes: &[u8]) -> Option<Result<(StatusCode, HeaderMap, usize), String>> {
    let (end, body) = find_blank_line(bytes)?;
    let text = match std::str::from_utf8(&bytes[..end]) {
        Ok(text) => text,
        Err(_) => return Some(Err("its headers are not text".into())),
    };
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Some(Err(format!("a malformed header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            match code.and_then(|c| StatusCode::from_u16(c).ok()) {
                Some(code) => status = code,
                None => return Some(Err(format!("a malformed status {value:?}"))),
            }
            continue;
        }
        match (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return Some(Err(format!("a malformed header line {line:?}"))),
        }
    }
    Some(Ok((status, headers, body)))
}

/// Where the headers end and where the body starts (CGI allows `\n` or `\r\n` line ends).
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_heads_give_a_status_headers_and_where_the_body_starts() {
        let out = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope";
        let (status, headers, body) = parse_head(out).unwrap().unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(&out[body..], b"nope");

        let out = b"Content-Type: application/x-git-upload-pack-advertisement\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\n\n001e# service";
        let (status, headers, body) = parse_head(out).unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.len(), 2);
        assert_eq!(&out[body..], b"001e# service");

        assert!(
            parse_head(b"Content-Type: text/plain\r\n").is_none(),
            "not complete"
        );
        assert!(parse_head(b"garbage\n\n").unwrap().is_err());
        assert!(parse_head(b"Status: nine\n\n").unwrap().is_err());
    }
}
