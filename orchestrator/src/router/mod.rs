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
//! It is HTTP/1.1 on hyper's connection API without tower or hyper-util's client: the proxy's
//! cost per request is the product (it is benchmarked against nginx), so it owns its pools and
//! keeps the request path free of locks, logging and avoidable allocation.
//!
//! # Layout
//! - `table`: the route table as plain data, and every decision made from it: building it from
//!   a spec (weights, renormalisation), host parsing, set and endpoint choice.
//! - `proxy`: the request path: host lookup, header rewriting, forwarding with retries,
//!   upgrades, the router's own error pages, the streamed response body.
//! - `pool`: one upstream instance: its in-flight count and its idle keep-alive connections.
//! - `stats`: per-app and per-set counters and the latency histogram behind
//!   [`Router::app_routes`].
//! - this file: the public API, the live table and the accept loop with graceful shutdown.

mod pool;
mod proxy;
mod stats;
mod table;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gantry_common::routes::{AppRoutes, RouteEndpoint, RouteSet};
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

use pool::Upstream;
use table::{AppEntry, Picked, Table};

/// How long requests in flight get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not about one connection (out of file descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often idle upstream connections of quiet endpoints are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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
    /// The port people reach the router on; builds `AppRoutes.url` (no `:port` when 80).
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

/// What the table says about a request's host.
pub(crate) enum Route {
    Unknown,
    /// The app exists but no set has a ready endpoint.
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
        // In hyper 1.12 the header read timer is armed whenever the connection starts reading
        // a request head (`Conn::poll_read_head`), and after a response completes on a
        // keep-alive connection `State::idle` sets `notify_read` precisely so that the next
        // read (and so the timer) starts at once. So one setting bounds both a slow client
        // sending headers and a kept-alive connection waiting for its next request: exactly
        // the idle timeout. It does not run while a request is being served (the connection is
        // not reading a head then), so slow responses and long bodies are not cut. It costs a
        // boxed `Sleep` per request: hyper drops the timer after each head it parses.
        server
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_idle_timeout)
            .keep_alive(true);
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
        let url = match self.config.public_port {
            80 => format!("http://{}/", app.host),
            port => format!("http://{}:{port}/", app.host),
        };
        Some(AppRoutes {
            host: app.host.clone(),
            url,
            sets: app
                .sets
                .iter()
                .map(|set| RouteSet {
                    release: set.version,
                    weight: set.percent,
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

    /// Chooses and counts an endpoint for the app at `key` (`<app>.<team>`).
    pub(crate) fn route(&self, key: &str) -> Route {
        loop {
            let generation = self.generation.load(SeqCst);
            let table = self.table.load();
            let Some(app) = table.app_by_key(key) else {
                return Route::Unknown;
            };
            let Some(picked) = app.pick() else {
                return Route::Unavailable(app.clone());
            };
            if self.still_routed(generation, &picked) {
                return Route::Picked(picked);
            }
        }
    }

    /// For a retry after a failed connect: another endpoint of the same app, from the current
    /// table (the one the request started with may be outdated by now).
    pub(crate) fn pick_other(&self, failed: &Picked) -> Option<Picked> {
        loop {
            let generation = self.generation.load(SeqCst);
            let table = self.table.load();
            let app = table.app(failed.app().id)?;
            let picked = app.pick_other(failed.upstream().instance)?;
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
        // Formatted once per connection rather than per request.
        let client_ip = HeaderValue::try_from(peer.ip().to_canonical().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let downstream = Arc::new((self.clone(), client_ip));
        let service = service_fn(move |req| {
            let downstream = downstream.clone();
            async move {
                let (router, client_ip) = &*downstream;
                Ok::<_, std::convert::Infallible>(proxy::handle(router, req, client_ip).await)
            }
        });
        let conn = self
            .server
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(client.addr = %peer, error = %err, "client connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop) => {}
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
