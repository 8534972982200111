//! Building and running the server: database pool and migrations, session layer, routes.
//!
//! `Application::build` binds the listener (port 0 in tests) and returns something with `port()`
//! and `run_until_stopped()`, so `main` and the tests start the server the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use gantry_orchestrator::router::{Router as AppRouter, RouterConfig};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{ExpiredDeletion, Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

use crate::auth::{origin, password, throttle};
use crate::cluster::{reconciler, EmbeddedCluster};
use crate::config::Config;
use crate::crypto::Sealer;
use crate::error::{not_found, ApiError};
use crate::registry::pull_secret::{BuildSecrets, PullSecrets};
use crate::state::{App, AppState};
use crate::{dashboard, releases, rollouts, routes, routing};

pub const SESSION_COOKIE: &str = "gantry_session";
/// Request bodies above this are refused with 413 (config values are at most 32 KiB each).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    db: PgPool,
    /// The apps' router and its own listener.
    app_router: Arc<AppRouter>,
    app_listener: TcpListener,
    app_port: u16,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(config.database_url.expose_secret())
            .await
            .context("failed to connect to the database (DATABASE_URL)")?;
        MIGRATOR
            .run(&db)
            .await
            .context("failed to apply database migrations")?;

        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));

        let app_listener = TcpListener::bind(config.router_listen)
            .await
            .with_context(|| {
                format!(
                    "failed to listen on {} for the router (GANTRY_ROUTER_LISTEN)",
                    config.router_listen
                )
            })?;
        let app_port = app_listener.local_addr()?.port();
        let app_router = AppRouter::new(RouterConfig {
            apps_domain: config.apps_domain.clone(),
            public_port: app_port,
            ..RouterConfig::default()
        });
        let log_hub = Arc::new(crate::logs::LogHub::default());
        let git = crate::git::Git::open(&config.git_dir, config.git_max_push_bytes);
        let embedded = Arc::new(EmbeddedCluster::new(
            db.clone(),
            Sealer::new(&config.secret_key),
            PullSecrets::new(&config.secret_key),
            config.node_timeout,
            app_router.clone(),
            log_hub.clone(),
        ));
        let state = AppState(Arc::new(App {
            db: db.clone(),
            sealer: Sealer::new(&config.secret_key),
            public_url: public_url.clone(),
            session_max_age: config.session_max_age,
            embedded: embedded.clone(),
            cluster: embedded.clone(),
            router: app_router.clone(),
            apps_domain: config.apps_domain.clone(),
            router_port: app_port,
            listen: addr,
            registry: crate::registry::Registry::new(
                config.registry_dir.clone(),
                config.registry_max_blob_bytes,
                config.registry_team_quota_bytes,
                PullSecrets::new(&config.secret_key),
                BuildSecrets::new(&config.secret_key),
            ),
            rollouts: Notify::new(),
            rollout_book: Default::default(),
            autoscaler: Notify::new(),
            team_quota: config.team_quota,
            routes: Notify::new(),
            logs: crate::logs::Logs::new(log_hub, config.log_retention_days),
            live: crate::live::LiveGate::new(config.streams_per_user),
            metrics: crate::metrics::Metrics::new(config.metrics_token.clone()),
            builds: crate::builds::Builds::new(config.builds, git.contexts_dir()),
            git,
        }));
        let interrupted = crate::builds::store::fail_interrupted(&db)
            .await
            .context("failed to end the builds a previous run left")?;
        if interrupted > 0 {
            tracing::warn!("{interrupted} builds were cut off by the last stop: marked failed");
        }
        crate::logs::partitions::maintain(&db, config.log_retention_days)
            .await
            .context("failed to prepare the log table's partitions")?;
        releases::legacy::adopt_legacy_deploys(&state)
            .await
            .context("failed to turn deploys made before releases into releases")?;
        tokio::spawn(reconciler::run_forever(embedded));
        tokio::spawn(rollouts::run_forever(state.clone()));
        tokio::spawn(crate::autoscaler::run_forever(state.clone()));
        tokio::spawn(routing::run_forever(state.clone()));
        tokio::spawn(crate::registry::gc::run_daily(state.clone()));
        tokio::spawn(crate::logs::partitions::run_hourly(state.clone()));
        tokio::spawn(crate::metrics::sampler::run_forever(state.clone()));

        let store = PostgresStore::new(db.clone());
        tokio::spawn(
            store
                .clone()
                .continuously_delete_expired(Duration::from_secs(3600)),
        );
        tokio::spawn(throttle::prune_periodically(db.clone()));
        let idle = time::Duration::try_from(config.session_idle).context("session idle timeout")?;
        let sessions = SessionManagerLayer::new(store)
            .with_name(SESSION_COOKIE)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(public_url.starts_with("https://"))
            .with_expiry(Expiry::OnInactivity(idle))
            // Each request pushes the idle expiry forward.
            .with_always_save(true);

        password::warm_up();
        let api = routes::api()
            .route("/healthz", axum::routing::get(routes::health::healthz))
            .route("/readyz", axum::routing::get(routes::health::readyz))
            .route(
                "/metrics",
                axum::routing::get(crate::metrics::prometheus::metrics),
            )
            .with_state(state.clone());
        let router = api
            .merge(dashboard::router())
            .fallback(fallback)
            .layer(middleware::from_fn_with_state(state.clone(), origin::guard))
            .layer(sessions)
            .layer(middleware::from_fn(json_errors))
            .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
        // The registry answers in the distribution spec's own terms: no sessions, no origin
        // check (docker sends no cookies), its own error bodies and body limits.
        let router = crate::registry::router()
            .merge(crate::git::router())
            .with_state(state.clone())
            .merge(router)
            .layer(middleware::from_fn_with_state(
                state.clone(),
                crate::metrics::prometheus::track,
            ))
            .layer(TraceLayer::new_for_http());

        Ok(Self {
            listener,
            router,
            port: addr.port(),
            db,
            app_router,
            app_listener,
            app_port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port the apps' router listens on.
    pub fn router_port(&self) -> u16 {
        self.app_port
    }

    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Serves the API and the apps' router until `shutdown` resolves, then finishes the
    /// requests in flight of both.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let apps = tokio::spawn(
            self.app_router
                .serve(self.app_listener, until(stopped.clone())),
        );
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(until(stopped))
            .await
            .context("server error")?;
        match apps.await {
            Ok(result) => result.context("router error")?,
            Err(e) => return Err(anyhow::anyhow!("the router task failed: {e}")),
        }
        self.db.close().await;
        Ok(())
    }
}

/// Unknown API paths get the JSON error; anything else is a browser URL: the dashboard's
/// "page not found".
async fn fallback(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        not_found("route").into_response()
    } else {
        dashboard::not_found_page(req).await
    }
}

/// Gives the few errors produced outside our handlers (axum's bare 405, plain-text rejections)
/// the API's JSON shape. Errors that already have a body of their own kind (JSON, the
/// dashboard's HTML pages) pass through.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let bare = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if (status.is_client_error() || status.is_server_error()) && bare {
        let message = match status {
            StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
        };
        let code = match status {
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        return ApiError::new(status, code, message).into_response();
    }
    res
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("failed to install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
