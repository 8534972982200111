//! Metrics: what apps use and how they answer, and the control plane's own figures.
//!
//! - [`usage`]: the latest CPU, memory and network of every running instance, as agents
//!   report it every few seconds;
//! - [`points`]: turning the router's counters and that usage into points per app and release
//!   (requests/s, error %, latency percentiles, CPU, memory, network) — pure;
//! - [`sampler`]: every [`points::STEP_SECONDS`] stores points, keeps one-minute points for
//!   history, shows new points to live viewers ([`hub`]) and expires old ones;
//! - [`prometheus`]: `GET /metrics`, every app's series and the control plane's, in the
//!   Prometheus text format (prometheus-client), for a platform admin or the scrape token.

pub mod hub;
pub mod points;
pub mod prometheus;
pub mod sampler;
pub mod usage;

use std::sync::atomic::AtomicU64;

/// What the server holds for metrics, in its shared state.
pub struct Metrics {
    pub usage: usage::UsageBook,
    pub hub: hub::MetricsHub,
    pub http: prometheus::HttpMetrics,
    /// Log lines stored since start.
    pub log_lines_stored: AtomicU64,
    /// `GANTRY_METRICS_TOKEN`: lets a scraper read `/metrics` without a session.
    pub scrape_token: Option<secrecy::SecretString>,
}

impl Metrics {
    pub fn new(scrape_token: Option<secrecy::SecretString>) -> Self {
        Metrics {
            usage: usage::UsageBook::default(),
            hub: hub::MetricsHub::default(),
            http: prometheus::HttpMetrics::default(),
            log_lines_stored: AtomicU64::new(0),
            scrape_token,
        }
    }
}
