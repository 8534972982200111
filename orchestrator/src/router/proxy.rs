//! The request path: from a downstream request to the upstream response streamed back, with the
//! router's own answers (404, 502, 503, 504) on the way, and the sticky cookie on the way back.
//!
//! Everything here runs once per request, so it is written to allocate as little as it can:
//! header names are constants, the client IP header is formatted once per connection, the
//! common request carries no hop-by-hop header and so costs one scan of the header names, and
//! nothing is logged above `debug`. Bodies are streamed both ways, never collected.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    Entry, HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, EXPECT, HOST,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, RETRY_AFTER, SET_COOKIE, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::pool::{self, ConnectError, Sender};
use super::table::{app_host, AppEntry, Picked};
use super::{Downstream, Route, Router};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Times a pooled connection is found closed with the request handed back unsent before the
/// router gives up on the endpoint (each time it opens a fresh connection, so more than one
/// means the app closes connections as soon as they open).
const MAX_UNSENT_RETURNS: u8 = 3;

/// Handles one downstream request. Never fails: every problem is an HTTP answer.
pub(crate) async fn handle(
    router: &Router,
    mut req: Request<Incoming>,
    client_ip: &HeaderValue,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let request_id = match req.headers().get(X_REQUEST_ID) {
        Some(id) if is_sane_request_id(id.as_bytes()) => id.clone(),
        _ => next_request_id(),
    };
    // The original Host, for the app lookup and X-Forwarded-Host; absolute-form requests may
    // carry it in the URI only.
    let host = match req.headers().get(HOST) {
        Some(host) => Some(host.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let host_str = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    let Some(target) = app_host(host_str, router.domain()) else {
        return not_found(host.as_ref(), router.domain(), request_id);
    };
    let picked = match router.route(target, req.headers()) {
        Route::Picked(picked) => picked,
        Route::Unknown => return not_found(host.as_ref(), router.domain(), request_id),
        Route::Unavailable(app) => return unavailable(&app, start, request_id),
    };

    let upgrade = is_upgrade(req.headers());
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    set_forwarded(headers, client_ip, host);
    headers.insert(X_REQUEST_ID, request_id.clone());
    // HTTP/1.1 upstream whatever the client spoke, so that the upstream connection stays
    // keep-alive; and origin-form, which is what an app server expects.
    *req.version_mut() = Version::HTTP_11;
    if req.uri().authority().is_some() {
        let origin = req
            .uri()
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        *req.uri_mut() = origin;
    }
    forward(router, req, picked, start, request_id, on_upgrade).await
}

/// Sends `req` to the picked endpoint, on a pooled connection when there is one.
///
/// # Guarantees
/// - A request is written to an upstream at most once: it is sent again only when it never left
///   the router (the connect failed, or hyper handed it back from a connection that had closed).
/// - At most one move to another instance, on a connect failure or timeout.
async fn forward(
    router: &Router,
    mut req: Request<Incoming>,
    mut picked: Picked,
    start: Instant,
    request_id: HeaderValue,
    on_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let config = router.config();
    let mut moved = false;
    let mut unsent_returns = 0u8;
    let mut fresh_only = false;
    loop {
        let upstream = picked.upstream();
        let pooled = match fresh_only {
            true => None,
            false => upstream.take_idle(start, config.upstream_idle_timeout),
        };
        let mut sender = match pooled {
            Some(mut sender) => {
                // Between a response's end and the connection task asking for the next request
                // there is a short window where the sender is not ready yet; wait it out rather
                // than open another connection. A closed connection fails here, and the loop
                // takes the next idle one.
                if !sender.is_ready() {
                    let ready = tokio::time::timeout(config.connect_timeout, sender.ready()).await;
                    if !matches!(ready, Ok(Ok(()))) {
                        continue;
                    }
                }
                sender
            }
            None => match pool::connect(upstream.addr, config.connect_timeout).await {
                Ok(sender) => sender,
                Err(err) => {
                    tracing::debug!(
                        instance.id = %upstream.instance, upstream.addr = %upstream.addr,
                        error = %err, "connect to instance failed"
                    );
                    if !moved {
                        if let Some(other) = router.pick_other(&picked) {
                            (picked, moved, fresh_only) = (other, true, false);
                            continue;
                        }
                    }
                    let status = match err {
                        ConnectError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                        ConnectError::Failed(_) => StatusCode::BAD_GATEWAY,
                    };
                    return upstream_error(status, &picked, start, request_id);
                }
            },
        };
        let sent =
            tokio::time::timeout(config.response_header_timeout, sender.try_send_request(req))
                .await;
        match sent {
            Ok(Ok(res)) => {
                return respond(router, res, sender, picked, start, request_id, on_upgrade);
            }
            Ok(Err(mut err)) => match err.take_message() {
                // The keep-alive race: the app closed the pooled connection before the request
                // was written. Nothing was sent, so send it again, on a new connection.
                // What this cannot catch: a close whose FIN is still unread when the request
                // is written (the app closes right after a response, without saying so, while
                // another request takes that connection at once). hyper then reports an
                // incomplete message with the request gone, and it is a 502 below: resending
                // could run it twice. Seen about once in 800 requests with four concurrent
                // clients against an app that closes after every response; never sequentially.
                Some(unsent) if unsent_returns < MAX_UNSENT_RETURNS => {
                    (req, fresh_only) = (unsent, true);
                    unsent_returns += 1;
                }
                _ => {
                    tracing::debug!(
                        instance.id = %picked.upstream().instance,
                        error = %err.error(), "upstream request failed"
                    );
                    return upstream_error(StatusCode::BAD_GATEWAY, &picked, start, request_id);
                }
            },
            // Dropping the request future made hyper close that connection.
            Err(_) => {
                return upstream_error(StatusCode::GATEWAY_TIMEOUT, &picked, start, request_id)
            }
        }
    }
}

/// Turns the upstream's response into the downstream one.
fn respond(
    router: &Router,
    mut res: Response<Incoming>,
    sender: Sender,
    picked: Picked,
    start: Instant,
    request_id: HeaderValue,
    on_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut res));
    let (mut parts, body) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    parts.headers.insert(X_REQUEST_ID, request_id.clone());
    // Only for a sticky app's main host, naming the set that answered (after a retry, maybe not
    // the one the cookie named). Appended: the app's own cookies stay. The router's own errors
    // never set it: no set answered those.
    if let Some(cookie) = picked.set_cookie() {
        parts.headers.append(SET_COOKIE, cookie.clone());
    }
    record(&picked, parts.status, start);
    match (upstream_upgrade, on_upgrade) {
        (Some(upstream), Some(downstream)) => {
            tokio::spawn(splice(downstream, upstream, picked));
            Response::from_parts(parts, ProxyBody::empty())
        }
        (Some(_), None) => {
            tracing::debug!(instance.id = %picked.upstream().instance, "upstream switched protocols unasked");
            error_response(StatusCode::BAD_GATEWAY, request_id, BAD_GATEWAY_BODY)
        }
        (None, _) => {
            let body =
                ProxyBody::upstream(body, picked, sender, router.config().upstream_idle_timeout);
            Response::from_parts(parts, body)
        }
    }
}

/// Joins the two halves of an upgraded connection (a websocket, say) once both sides have
/// switched. `picked` keeps the upgrade counted as one request in flight until it ends.
async fn splice(downstream: OnUpgrade, upstream: OnUpgrade, picked: Picked) {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(instance.id = %picked.upstream().instance, error = %err, "upgrade failed");
            return;
        }
    };
    let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
    if let Err(err) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(instance.id = %picked.upstream().instance, error = %err, "upgraded connection ended with an error");
    }
    drop(picked);
}

fn record(picked: &Picked, status: StatusCode, start: Instant) {
    let latency = start.elapsed();
    picked.app().stats.record(status.as_u16(), latency);
    picked.set().stats.record(status.as_u16(), latency);
}

/// Whether the request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"upgrade")))
}

fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // `Expect` too: hyper's server already answered `100-continue` on this hop when the body
    // was first read, so passing it on would only make the app send a second, stray 100.
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &EXPECT,
    ]
    .contains(&name)
}

/// Removes the headers that belong to one connection, not to the message: the fixed list of
/// RFC 9110 §7.6.1 and whatever `Connection` names. For an upgrade, `Upgrade` stays and
/// `Connection` becomes exactly `upgrade`, since the switch must reach the other side.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Taken out of the map so that the headers they name can be removed while reading them;
    // collecting the rest allocates nothing unless there are several `Connection` lines.
    let more: Vec<HeaderValue> = headers
        .get_all(CONNECTION)
        .iter()
        .skip(1)
        .cloned()
        .collect();
    if let Some(first) = headers.remove(CONNECTION) {
        for value in std::iter::once(&first).chain(&more) {
            for token in tokens(value) {
                if upgrade && token.eq_ignore_ascii_case(b"upgrade") {
                    continue;
                }
                // `Host` is the message's, whatever a client claims.
                match HeaderName::from_bytes(token) {
                    Ok(name) if name != HOST => drop(headers.remove(name)),
                    _ => {}
                }
            }
        }
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &EXPECT,
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Tells the app who asked and how: the client IP appended to `X-Forwarded-For`, and
/// `X-Forwarded-Proto`/`-Host` replaced (the router is the edge, so a client's own values for
/// those would be lies).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    host: Option<HeaderValue>,
) {
    // One hash and probe of the name whether or not the client sent one.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(slot) => {
            slot.insert(client_ip.clone());
        }
        Entry::Occupied(mut prior) => {
            let mut joined = Vec::with_capacity(64);
            for value in prior.iter() {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client_ip.as_bytes());
            // Replaces every prior line with the one joined value.
            prior.insert(HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client_ip.clone()));
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// A client's request id is kept when it is short and made of plain characters, so that it can
/// go into logs and back to the client as it is.
pub(crate) fn is_sane_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// A new request id: a per-process random prefix and a counter, in hex (`3f9a0c21-1b`). Unique
/// within a process and, with 32 random bits, unlikely to repeat across restarts; no syscall and
/// no formatting machinery per request.
pub(crate) fn next_request_id() -> HeaderValue {
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once per process: randomness without a crate.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut out = [0u8; 8];
        hex_into(&mut out, random & 0xffff_ffff, 8);
        out
    });
    let n = COUNTER.fetch_add(1, Relaxed);
    let digits = (16 - n.leading_zeros() as usize / 4).max(1);
    let mut buf = [0u8; 8 + 1 + 16];
    buf[..8].copy_from_slice(prefix);
    buf[8] = b'-';
    hex_into(&mut buf[9..9 + digits], n, digits);
    HeaderValue::from_bytes(&buf[..9 + digits])
        .expect("hex digits and '-' are a valid header value")
}

fn hex_into(out: &mut [u8], mut n: u64, digits: usize) {
    for slot in out[..digits].iter_mut().rev() {
        *slot = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
}

const BAD_GATEWAY_BODY: &str = "502 Bad Gateway: the app's instance could not be reached or \
                                failed before answering.\n";
const GATEWAY_TIMEOUT_BODY: &str =
    "504 Gateway Timeout: the app's instance did not answer in time.\n";

/// The router's answer when the upstream could not be reached or did not answer, counted on the
/// picked app and set like any 5xx of theirs.
fn upstream_error(
    status: StatusCode,
    picked: &Picked,
    start: Instant,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    record(picked, status, start);
    let body = match status {
        StatusCode::GATEWAY_TIMEOUT => GATEWAY_TIMEOUT_BODY,
        _ => BAD_GATEWAY_BODY,
    };
    error_response(status, request_id, body)
}

fn error_response(
    status: StatusCode,
    request_id: HeaderValue,
    body: &'static str,
) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::full(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_REQUEST_ID, request_id);
    res
}

fn html_response(status: StatusCode, request_id: HeaderValue, html: String) -> Response<ProxyBody> {
    let mut res = Response::new(ProxyBody::full(Bytes::from(html)));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_REQUEST_ID, request_id);
    res
}

/// 404 for a host that is no app's: says what app hosts look like. Not counted anywhere: there
/// is no app to count it on.
pub(crate) fn not_found(
    host: Option<&HeaderValue>,
    domain: &str,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    let host = host.map_or_else(
        || "(none)".into(),
        |h| String::from_utf8_lossy(h.as_bytes()).into_owned(),
    );
    let suffix = match domain {
        "" => String::new(),
        domain => format!(".{}", escape_html(domain)),
    };
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>No app here</title>\n\
         <h1>No app here</h1>\n<p>Gantry serves no app at <code>{}</code>.</p>\n\
         <p>App hosts look like <code>&lt;app&gt;.&lt;team&gt;{suffix}</code>, for example \
         <code>hello.acme{suffix}</code>.</p>\n",
        escape_html(&host),
    );
    html_response(StatusCode::NOT_FOUND, request_id, html)
}

/// 503 for an app with no ready instance, counted on the app only (no set served it).
fn unavailable(app: &AppEntry, start: Instant, request_id: HeaderValue) -> Response<ProxyBody> {
    app.stats
        .record(StatusCode::SERVICE_UNAVAILABLE.as_u16(), start.elapsed());
    let html = format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>{app} is not ready</title>\n\
         <h1>{app} has no ready instance</h1>\n\
         <p>The app <code>{app}</code> of team <code>{team}</code> has no instance ready to \
         serve right now. Try again in a few seconds.</p>\n",
        app = escape_html(&app.app),
        team = escape_html(&app.team),
    );
    let mut res = html_response(StatusCode::SERVICE_UNAVAILABLE, request_id, html);
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    res
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The body of every response the router sends: the upstream's, streamed, or one of its own.
pub(crate) struct ProxyBody {
    kind: Kind,
    /// The connection it is sent on, marked idle when the body ends (see `idle`).
    downstream: Option<Arc<Downstream>>,
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBody")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Present until the body ended or was dropped.
        done: Option<Finish>,
    },
}

/// What happens when an upstream body ends: the connection goes back to its pool (only if the
/// body was read to its end, so that the next request never lands on a half-read response) and
/// the request stops counting as in flight.
#[derive(Debug)]
struct Finish {
    picked: Picked,
    sender: Sender,
    max_idle: Duration,
}

impl Finish {
    fn run(self, reusable: bool, now: Instant) {
        if reusable {
            self.picked
                .upstream()
                .put_idle(self.sender, now, self.max_idle);
        }
        drop(self.picked);
    }
}

impl ProxyBody {
    fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
            downstream: None,
        }
    }

    fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
            downstream: None,
        }
    }

    fn upstream(body: Incoming, picked: Picked, sender: Sender, max_idle: Duration) -> Self {
        Self {
            kind: Kind::Upstream {
                body,
                done: Some(Finish {
                    picked,
                    sender,
                    max_idle,
                }),
            },
            downstream: None,
        }
    }

    /// Has the body mark `downstream`'s connection idle when it ends or is dropped.
    pub(crate) fn mark_idle_at_end(&mut self, downstream: Arc<Downstream>) {
        self.downstream = Some(downstream);
    }

    /// The body ended (`reusable`: read to its end) or is being dropped: the upstream
    /// connection goes back to its pool or away, the request stops counting as in flight, and
    /// the downstream connection starts idling. One clock read for all of it.
    fn end(&mut self, reusable: bool) {
        let finish = match &mut self.kind {
            Kind::Upstream { done, .. } => done.take(),
            Kind::Full(_) => None,
        };
        if finish.is_none() && self.downstream.is_none() {
            return;
        }
        let now = Instant::now();
        if let Some(finish) = finish {
            finish.run(reusable, now);
        }
        if let Some(downstream) = self.downstream.take() {
            downstream.idle.idle(now);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { body, .. } => {
                let frame = std::task::ready!(Pin::new(&mut *body).poll_frame(cx));
                let ended = match &frame {
                    None => Some(true),
                    Some(Ok(_)) => body.is_end_stream().then_some(true),
                    Some(Err(_)) => Some(false),
                };
                if let Some(reusable) = ended {
                    this.end(reusable);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper stops polling a body that reports its end (say `Content-Length: 0`) and drops
        // it; any other body dropped early means the client went away mid-response, and that
        // connection cannot be reused.
        let reusable = match &self.kind {
            Kind::Upstream { body, .. } => body.is_end_stream(),
            Kind::Full(_) => true,
        };
        self.end(reusable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop, host"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "Basic"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("expect", "100-continue"),
            ("x-secret-hop", "1"),
            ("host", "hello.acme.localhost"),
            ("accept", "*/*"),
            ("x-app", "kept"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(names(&headers), ["accept", "host", "x-app"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_says_connection_upgrade() {
        let mut headers = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
            ("keep-alive", "timeout=5"),
        ]);
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(
            names(&headers),
            ["connection", "sec-websocket-key", "upgrade"]
        );
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(!is_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&map(&[("connection", "upgrade")])));
        assert!(is_upgrade(&map(&[
            ("connection", "UPGRADE"),
            ("upgrade", "h2c")
        ])));
    }

    #[test]
    fn headers_without_hop_by_hop_are_left_alone() {
        let mut headers = map(&[("host", "a.b.localhost"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(names(&headers), ["accept", "host"]);
    }

    #[test]
    fn forwarded_headers_append_the_client_and_replace_proto_and_host() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let host = Some(HeaderValue::from_static("hello.acme.localhost:8000"));
        let mut headers = HeaderMap::new();
        set_forwarded(&mut headers, &ip, host.clone());
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "hello.acme.localhost:8000");

        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        set_forwarded(&mut headers, &ip, host);
        assert_eq!(
            headers.get_all(X_FORWARDED_FOR).iter().collect::<Vec<_>>(),
            ["203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1"]
        );
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "hello.acme.localhost:8000");
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_generated_unique_otherwise() {
        assert!(is_sane_request_id(b"req-123_abc.def:1"));
        assert!(is_sane_request_id(b"0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"<script>"));
        assert!(!is_sane_request_id(&[b'a'; 129]));

        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert!(is_sane_request_id(a.as_bytes()), "{a}");
        let (prefix, counter) = a.split_once('-').unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(u64::from_str_radix(counter, 16).is_ok(), "{a}");
        assert!(b.to_str().unwrap().starts_with(prefix));
    }

    #[test]
    fn hex_is_minimal_width() {
        let mut buf = [0u8; 4];
        hex_into(&mut buf, 0x1af, 3);
        assert_eq!(&buf[..3], b"1af");
    }

    #[test]
    fn the_404_page_escapes_the_host() {
        let res = not_found(
            Some(&HeaderValue::from_static("<script>alert(1)</script>")),
            "localhost",
            HeaderValue::from_static("id"),
        );
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let Kind::Full(Some(body)) = &res.body().kind else {
            panic!("a full body");
        };
        let html = std::str::from_utf8(body).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;app&gt;.&lt;team&gt;.localhost"),
            "{html}"
        );
    }
}
