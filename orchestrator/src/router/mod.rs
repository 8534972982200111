//! The router: Gantry's HTTP reverse proxy, serving each app at
//! `Host: <app>.<team>.<apps-domain>` from the ready instances of its release sets.
//!
//! The control plane owns the truth (which releases get how much traffic, which instances are
//! ready) and hands the router a complete [`RouteSpec`] on every change; [`Router::update`]
//! builds a new table and swaps it in atomically, so requests never see half a change, nothing
//! restarts and requests in flight finish on the instance they were sent to. The drain logic
//! reads [`Router::routes_to`] and [`Router::in_flight`] to know when a removed instance can be
//! stopped.
//!
//! Two features serve releases side by side beyond the weights:
//! - **Preview host** (blue-green): an app's [`AppSpec::preview`] set is also served, alone and
//!   whatever its weight, at `preview.<app>.<team>.<apps-domain>`, so the new release can be
//!   tried before it gets any traffic at the main host. Without a preview set that host is an
//!   unknown host (404); with one that has no ready instance, a 503.
//! - **Sticky sets** (canary): with [`AppSpec::sticky`] and more than one set receiving traffic,
//!   a client is assigned a set by weight once and keeps it through the session cookie
//!   `gantry_release=<version>`, so one user does not flip between releases from request to
//!   request. A cookie naming a set that gets no traffic (any more) is ignored and replaced.
//!   Off, nothing of it runs: no cookie is read or set.
//!
//! It is HTTP/1.1 on hyper's connection API without tower or hyper-util's client: the proxy's
//! cost per request is the product (it is benchmarked against nginx), so it owns its pools and
//! keeps the request path free of locks, logging and avoidable allocation.
//!
//! # Layout
//! - `table`: the route table as plain data, and every decision made from it: building it from
//!   a spec (weights, renormalisation), host parsing (main and preview hosts), the sticky cookie,
//!   set and endpoint choice.
//! - `proxy`: the request path: host lookup, header rewriting, forwarding with retries,
//!   upgrades, the router's own error pages, the streamed response body.
//! - `pool`: one upstream instance: its in-flight count and its idle keep-alive connections.
//! - `stats`: per-app and per-set counters and the latency histogram behind
//!   [`Router::app_routes`].
//! - `idle`: the idle clock of a downstream connection, behind `client_idle_timeout`.
//! - this file: the public API, the live table and the accept loop with graceful shutdown.

mod idle;
mod pool;
mod proxy;
mod stats;

pub use stats::{quantile_ms, BOUNDS_US};
mod table;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gantry_common::routes::{AppRoutes, RouteEndpoint, RouteSet, RouteStats};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

use idle::{Gated, IdleClock, Timer};
use pool::Upstream;
use table::{release_cookie, AppEntry, AppHost, Picked, Table};

/// How long requests in flight get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not about one connection (out of file descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often idle upstream connections of quiet endpoints are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One app's counters (see [`Router::stats`]).
#[derive(Debug, Clone)]
pub struct AppStats {
    pub app_id: Uuid,
    pub team: String,
    pub app: String,
    /// All the app's requests, those answered by the router itself (503) included.
    pub stats: RouteStats,
    /// Per release set in the table: its version and counters (since it entered the table).
    pub sets: Vec<(u32, RouteStats)>,
}

/// Everything the router serves: the whole table, not a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    pub apps: Vec<AppSpec>,
}

/// Every app that has an HTTP port, even with no ready instance (then it answers 503, not 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub app_id: Uuid,
    pub team: String,
    pub app: String,
    pub sets: Vec<SetSpec>,
    /// The release id of one of `sets` that is also served alone at
    /// `preview.<app>.<team>.<apps-domain>` (blue-green: the new release before promotion, at
    /// whatever weight its set has at the main host, usually 0). `None`, or a release that is not
    /// in `sets`: the preview host answers 404 like any unknown host.
    pub preview: Option<Uuid>,
    /// Keep each client on one set with the `gantry_release` cookie while more than one set gets
    /// traffic (canary); clients without a valid cookie are still split by weight, and their
    /// response sets it. `false` (the rolling strategy): no cookie is read or set.
    pub sticky: bool,
}

/// The ready instances of one release version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub release_id: Uuid,
    pub version: u32,
    /// Percent of traffic; `None` on every set of an app = proportional to ready endpoints
    /// (the rolling strategy: every ready instance gets an equal share, like a Kubernetes Service).
    /// If any set of the app has `Some`, explicit weights are used (a `None` counts as 0).
    /// Either way, sets without endpoints get nothing and the rest is renormalised to 100.
    /// If explicit weights leave 0 to every set that has endpoints, the proportional rule applies
    /// (serving the instances there are beats answering 503).
    pub weight: Option<u32>,
    pub endpoints: Vec<EndpointSpec>,
}

/// A ready instance: where its HTTP port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub instance: Uuid,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// App hosts are `<app>.<team>.<apps_domain>`; matched without regard to case.
    pub apps_domain: String,
    /// The port people reach the router on; builds `AppRoutes.url` and `.preview_url` (no
    /// `:port` when 80).
    pub public_port: u16,
    /// Opening a connection to an instance.
    pub connect_timeout: Duration,
    /// The upstream must send response headers within this (counted from sending the request,
    /// so it also bounds the upload of a request body).
    pub response_header_timeout: Duration,
    /// A downstream keep-alive connection idle this long is closed (see `serve_connection`).
    pub client_idle_timeout: Duration,
    /// Pooled upstream connections idle longer are dropped; shorter than common app keep-alive
    /// timeouts (Node's is 5 s) so that the app rarely closes one under the router's feet.
    pub upstream_idle_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            apps_domain: "localhost".into(),
            public_port: 8000,
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(4),
        }
    }
}

/// The reverse proxy and its live route table.
pub struct Router {
    config: RouterConfig,
    /// `config.apps_domain` in lower case without a trailing dot.
    domain: String,
    table: ArcSwap<Table>,
    /// Bumped after every swap; see [`Router::still_routed`].
    generation: AtomicU64,
    /// Instances that left the table while requests to them may still run, so that
    /// `in_flight` can still answer for them. The lock also serialises `update`s.
    retired: Mutex<HashMap<Uuid, Weak<Upstream>>>,
    server: http1::Builder,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the requests of one downstream connection share.
pub(crate) struct Downstream {
    pub(crate) router: Arc<Router>,
    /// The client's address as an `X-Forwarded-For` value, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
    /// Marked busy by each request and idle again when its response ends (`ProxyBody`).
    pub(crate) idle: IdleClock,
}

/// Why a downstream connection ends other than by its client.
enum Event {
    /// The router is shutting down: finish what is in flight.
    Stop,
    /// No request for `client_idle_timeout`.
    Idle,
}

/// What the table says about a request's host.
pub(crate) enum Route {
    /// No such app, or its preview host while it has no preview set.
    Unknown,
    /// The app exists but no set has a ready endpoint (for the preview host: the preview set).
    Unavailable(Arc<AppEntry>),
    Picked(Picked),
}

impl Router {
    pub fn new(config: RouterConfig) -> Arc<Router> {
        let domain = config
            .apps_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let mut server = http1::Builder::new();
        // hyper's header read timeout would bound what `client_idle_timeout` bounds (from the end
        // of a response, or the accept, to the end of the next request head), but it allocates
        // and registers a timer for every request; `serve_connection` keeps one per connection
        // instead (see `idle`). Turned off explicitly: hyper's default (30 s) needs a timer and
        // would log a warning per connection without one.
        server.header_read_timeout(None).keep_alive(true);
        Arc::new(Router {
            config,
            domain,
            table: ArcSwap::from_pointee(Table::default()),
            generation: AtomicU64::new(0),
            retired: Mutex::new(HashMap::new()),
            server,
        })
    }

    pub(crate) fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    /// Builds the new table and swaps it in atomically. Per-instance upstream state (pool,
    /// in-flight count) and per-release / per-app counters survive the swap when the same
    /// instance / release / app is still in the spec.
    ///
    /// # Guarantees
    /// - When this returns, no new request is sent to an instance missing from `spec`
    ///   (`routes_to` is false for it), and `in_flight` counts every request already sent to it.
    /// - The idle connections of removed instances are closed at once.
    pub fn update(&self, spec: RouteSpec) {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table.load_full();
        let new = Arc::new(Table::build(&spec, &self.domain, &old, |id, addr| {
            retired
                .get(&id)
                .and_then(Weak::upgrade)
                .filter(|u| u.addr == addr)
        }));
        self.table.store(new.clone());
        self.generation.fetch_add(1, SeqCst);

        for gone in old.upstreams() {
            let kept = new
                .upstream(gone.instance)
                .is_some_and(|u| Arc::ptr_eq(u, gone));
            if !kept {
                gone.set_retired(true);
                retired.insert(gone.instance, Arc::downgrade(gone));
            }
        }
        for current in new.upstreams() {
            if current.is_retired() {
                current.set_retired(false);
                retired.remove(&current.instance);
            }
        }
        retired.retain(|_, upstream| upstream.strong_count() > 0);
        tracing::debug!(
            router.apps = spec.apps.len(),
            router.instances = new.upstreams().count(),
            "route table updated"
        );
    }

    /// Whether the current table still sends new requests to this instance.
    pub fn routes_to(&self, instance: Uuid) -> bool {
        self.table.load().upstream(instance).is_some()
    }

    /// Requests this instance is serving right now (0 for an unknown instance).
    pub fn in_flight(&self, instance: Uuid) -> u32 {
        let current = self
            .table
            .load()
            .upstream(instance)
            .map_or(0, |u| u.in_flight());
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let gone = retired
            .get(&instance)
            .and_then(Weak::upgrade)
            .map_or(0, |u| u.in_flight());
        current + gone
    }

    /// The table and counters of one app, for `GET …/apps/{app}/routes`; None if not in the table.
    pub fn app_routes(&self, app_id: Uuid) -> Option<AppRoutes> {
        let table = self.table.load();
        let app = table.app(app_id)?;
        let url = |host: &str| match self.config.public_port {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        };
        Some(AppRoutes {
            host: app.host.clone(),
            url: url(&app.host),
            preview_url: app.preview.map(|_| url(&format!("preview.{}", app.host))),
            sets: app
                .sets
                .iter()
                .enumerate()
                .map(|(i, set)| RouteSet {
                    release: set.version,
                    weight: set.percent,
                    preview: app.preview == Some(i),
                    endpoints: set
                        .endpoints
                        .iter()
                        .map(|u| RouteEndpoint {
                            instance: u.instance,
                            address: u.addr.to_string(),
                            in_flight: u.in_flight(),
                        })
                        .collect(),
                    stats: set.stats.snapshot(),
                })
                .collect(),
            stats: app.stats.snapshot(),
        })
    }

    /// The counters of every app in the table and of each of its release sets, for the
    /// metrics sampler and the Prometheus exposition.
    pub fn stats(&self) -> Vec<AppStats> {
        let table = self.table.load();
        table
            .apps()
            .map(|app| AppStats {
                app_id: app.id,
                team: app.team.clone(),
                app: app.app.clone(),
                stats: app.stats.snapshot(),
                sets: app
                    .sets
                    .iter()
                    .map(|set| (set.version, set.stats.snapshot()))
                    .collect(),
            })
            .collect()
    }

    /// Chooses and counts an endpoint for a request to `host`: at the main host by weight (or by
    /// the request's cookie, `headers`, for a sticky app), at the preview host in the preview set.
    pub(crate) fn route(&self, host: AppHost<'_>, headers: &HeaderMap) -> Route {
        loop {
            let generation = self.generation.load(SeqCst);
            let table = self.table.load();
            let Some(app) = table.app_by_key(host.key) else {
                return Route::Unknown;
            };
            let picked = if host.preview {
                let Some(set) = app.preview else {
                    return Route::Unknown;
                };
                app.pick_preview(set)
            } else if app.sticky {
                // Only here is the cookie read: an app that is not sticky costs one branch.
                let cookie = release_cookie(headers.get_all(COOKIE).iter().map(|v| v.as_bytes()));
                app.pick_sticky(cookie)
            } else {
                app.pick()
            };
            let Some(picked) = picked else {
                return Route::Unavailable(app.clone());
            };
            if self.still_routed(generation, &picked) {
                return Route::Picked(picked);
            }
        }
    }

    /// For a retry after a failed connect: another endpoint of the same app, from the current
    /// table (the one the request started with may be outdated by now); for the preview host,
    /// of the same release's set.
    pub(crate) fn pick_other(&self, failed: &Picked) -> Option<Picked> {
        loop {
            let generation = self.generation.load(SeqCst);
            let table = self.table.load();
            let app = table.app(failed.app().id)?;
            let picked = app.pick_other(failed.upstream().instance, failed.via())?;
            if self.still_routed(generation, &picked) {
                return Some(picked);
            }
        }
    }

    /// Closes the gap between "chosen from the old table" and "counted": the pick was counted
    /// (SeqCst) before this reads the generation (SeqCst), and `update` bumps the generation
    /// after storing the new table and before the drain logic reads `in_flight`. So either the
    /// drain sees this request counted, or this sees the new generation and checks the pick
    /// against the new table; a pick the new table no longer routes to is dropped (uncounted)
    /// and the caller chooses again.
    fn still_routed(&self, generation: u64, picked: &Picked) -> bool {
        self.generation.load(SeqCst) == generation
            || self
                .table
                .load()
                .upstream(picked.upstream().instance)
                .is_some_and(|u| Arc::ptr_eq(u, picked.upstream()))
    }

    /// Accepts connections until `shutdown` resolves, then stops accepting and lets requests in
    /// flight finish (hyper's graceful shutdown on each connection, bounded by ~30 s).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(sweep(Arc::downgrade(&self), stop_rx.clone()));
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(router.addr = %addr, router.domain = %self.domain, "router listening");
        }
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(self.clone().serve_connection(stream, peer, stop_rx.clone()));
                }
                // About one connection that went away before it was accepted: not the listener's
                // problem.
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "router accept failed; backing off");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        drop(listener);
        tracing::info!("router stopping: finishing requests in flight");
        // `closed` resolves when every connection task (each holds a receiver) has ended.
        let _ = stop_tx.send(true);
        drop(stop_rx);
        let grace = SHUTDOWN_GRACE + Duration::from_secs(1);
        if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
            tracing::warn!("router stopped with connections still open");
        }
        Ok(())
    }

    /// Serves one downstream connection: HTTP/1.1 keep-alive with upgrades, until the client
    /// closes it, it idles for `client_idle_timeout`, or shutdown (then gracefully).
    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let accepted = Instant::now();
        let idle_timeout = self.config.client_idle_timeout;
        let downstream = Arc::new(Downstream {
            router: self.clone(),
            // Formatted once per connection rather than per request.
            client_ip: HeaderValue::try_from(peer.ip().to_canonical().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            idle: IdleClock::new(accepted),
        });
        let service = {
            let downstream = downstream.clone();
            service_fn(move |req| {
                let downstream = downstream.clone();
                async move {
                    downstream.idle.busy();
                    let mut res =
                        proxy::handle(&downstream.router, req, &downstream.client_ip).await;
                    // The body marks the connection idle when it ends, with this reference.
                    res.body_mut().mark_idle_at_end(downstream);
                    Ok::<_, std::convert::Infallible>(res)
                }
            })
        };
        let conn = self
            .server
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        // What may end the connection besides the client: shutdown, or idling too long.
        let events = Gated::new(async {
            let timer = tokio::time::sleep_until((accepted + idle_timeout).into());
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return Event::Stop,
                    () = &mut timer => {
                        match downstream.idle.on_timer(Instant::now(), idle_timeout) {
                            Timer::RearmAt(deadline) => timer.as_mut().reset(deadline.into()),
                            Timer::Expired => return Event::Idle,
                        }
                    }
                }
            }
        });
        tokio::pin!(events);
        tokio::select! {
            biased;
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(client.addr = %peer, error = %err, "client connection ended with an error");
                }
                return;
            }
            event = events => match event {
                Event::Stop => {}
                Event::Idle => {
                    // As hyper's header read timeout did: closed without an answer.
                    tracing::debug!(client.addr = %peer, "client connection idle too long; closed");
                    return;
                }
            },
        }
        conn.as_mut().graceful_shutdown();
        if tokio::time::timeout(SHUTDOWN_GRACE, conn).await.is_err() {
            tracing::debug!(client.addr = %peer, "client connection still busy at shutdown; closed");
        }
    }
}

/// Drops expired idle connections of endpoints that see no traffic (busy ones expire theirs as
/// they go), until the router is gone or stops.
async fn sweep(router: Weak<Router>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let Some(router) = router.upgrade() else {
            return;
        };
        let now = Instant::now();
        for upstream in router.table.load().upstreams() {
            upstream.sweep(now, router.config.upstream_idle_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    //! `client_idle_timeout` over real sockets: what it closes and what it must not cut.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_millis(300);
    const HOST: &str = "hello.acme.localhost";

    /// A keep-alive upstream that answers `ok` to every request head, after 2 × `IDLE` for
    /// `/slow`.
    async fn upstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some(head) = read_head(&mut stream, &mut buf).await {
                        if head.starts_with("GET /slow ") {
                            tokio::time::sleep(2 * IDLE).await;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// The next request or response head on `stream` (bodies are not expected), or `None` at
    /// the end of the stream.
    async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                buf.drain(..end + 4);
                return Some(head);
            }
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A router for `hello.acme` in front of [`upstream`], with `IDLE` as the idle timeout.
    async fn router() -> SocketAddr {
        let router = Router::new(RouterConfig {
            client_idle_timeout: IDLE,
            ..RouterConfig::default()
        });
        router.update(RouteSpec {
            apps: vec![AppSpec {
                app_id: Uuid::from_u128(1),
                team: "acme".into(),
                app: "hello".into(),
                sets: vec![SetSpec {
                    release_id: Uuid::from_u128(2),
                    version: 1,
                    weight: None,
                    endpoints: vec![EndpointSpec {
                        instance: Uuid::from_u128(3),
                        addr: upstream().await,
                    }],
                }],
                preview: None,
                sticky: false,
            }],
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(router.serve(listener, std::future::pending()));
        addr
    }

    /// Sends `GET path` and reads the answer: its status line and body.
    async fn get(stream: &mut TcpStream, path: &str) -> (String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(stream, &mut buf))
            .await
            .expect("an answer in time")
            .expect("an answer before the connection closed");
        let mut body = [0u8; 2];
        let have = buf.len().min(2);
        body[..have].copy_from_slice(&buf[..have]);
        if have < 2 {
            stream.read_exact(&mut body[have..]).await.unwrap();
        }
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// How long until the router closes `stream`, sending nothing more; at most 5 s.
    async fn time_to_close(stream: &mut TcpStream) -> Duration {
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        let _ = read.await.expect("closed within 5 s");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        started.elapsed()
    }

    #[tokio::test]
    async fn a_kept_alive_connection_idle_for_the_timeout_is_closed() {
        let addr = router().await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            assert_eq!(get(&mut client, "/").await.1, "ok");
        }
        let waited = time_to_close(&mut client).await;
        assert!(waited >= IDLE - Duration::from_millis(50), "{waited:?}");
        assert!(waited < IDLE * 4, "{waited:?}");
    }

    #[tokio::test]
    async fn a_request_slower_than_the_idle_timeout_is_not_cut() {
        let addr = router().await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (status, body) = get(&mut client, "/slow").await;
        assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
        assert_eq!(body, "ok");
        // The idle time starts again after the answer: the connection is still there.
        tokio::time::sleep(IDLE / 2).await;
        assert_eq!(get(&mut client, "/").await.1, "ok");
    }

    #[tokio::test]
    async fn a_head_sent_too_slowly_is_cut_at_the_idle_timeout() {
        let addr = router().await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // Header lines well within the timeout of each other, but the head never ends.
        let mut closed = false;
        for _ in 0..40 {
            tokio::time::sleep(IDLE / 6).await;
            if client.write_all(b"X-Slow: 1\r\n").await.is_err() {
                closed = true;
                break;
            }
            let mut byte = [0u8; 1];
            if let Ok(read) =
                tokio::time::timeout(Duration::from_millis(1), client.read(&mut byte)).await
            {
                assert!(!matches!(read, Ok(n) if n > 0), "no answer to half a head");
                closed = true;
                break;
            }
        }
        assert!(closed, "still open after {:?}", started.elapsed());
        let waited = started.elapsed();
        assert!(waited >= IDLE - Duration::from_millis(50), "{waited:?}");
        assert!(waited < IDLE * 4, "{waited:?}");
    }
}
