//! `GET /metrics`: the Prometheus text exposition (OpenMetrics), through prometheus-client.
//!
//! - the control plane: HTTP requests and their latency by route, reconcile passes, agents
//!   connected, messages queued for agents, log lines stored, live streams open;
//! - every app: requests, 5xx answers and the latency histogram per release as the router
//!   counts them, and each running instance's CPU, memory and network as its agent reports.
//!
//! Readable by a platform admin (session) or with `Authorization: Bearer $GANTRY_METRICS_TOKEN`
//! (a scraper); anyone else gets a 401.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::usage::Reported;
use crate::authz::PlatformAdmin;
use crate::error::{unauthorized, ApiError, ApiResult};
use crate::state::AppState;
use gantry_orchestrator::router::{AppStats, BOUNDS_US};

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The API's own requests, counted by the middleware [`track`].
pub struct HttpMetrics {
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// Counts every request of the control plane by method, route template (not the path: its
/// values are unbounded) and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let res = next.run(req).await;
    let http = &state.metrics.http;
    let labels = vec![
        ("method", method.clone()),
        ("route", route.clone()),
        ("status", res.status().as_u16().to_string()),
    ];
    http.requests.get_or_create(&labels).inc();
    http.duration
        .get_or_create(&vec![("method", method), ("route", route)])
        .observe(started.elapsed().as_secs_f64());
    res
}

/// What a scrape reads, gathered before encoding.
#[derive(Debug)]
struct Scrape {
    apps: Vec<AppStats>,
    usage: Vec<Reported>,
    agents: usize,
    queued: usize,
    passes: u64,
    log_lines: u64,
    streams: u32,
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    // A family with no series is left out, as prometheus-client does for its own families.
    if values.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in values {
        if labels.is_empty() {
            // Without a family: `name 1`, not `name{} 1`.
            ConstCounter::new(*v).encode(metric)?;
            break;
        }
        ConstCounter::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    if values.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        if labels.is_empty() {
            ConstGauge::new(*v).encode(metric)?;
            break;
        }
        ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let none: Labels = Vec::new();
        gauge(
            &mut encoder,
            "gantry_agents_connected",
            "Agents connected now",
            &[(none.clone(), self.agents as i64)],
        )?;
        gauge(
            &mut encoder,
            "gantry_agent_queue_depth",
            "Messages waiting to be sent to agents",
            &[(none.clone(), self.queued as i64)],
        )?;
        counter(
            &mut encoder,
            "gantry_reconciler_passes",
            "Reconcile passes of the embedded cluster",
            &[(none.clone(), self.passes)],
        )?;
        counter(
            &mut encoder,
            "gantry_log_lines_stored",
            "Log lines stored",
            &[(none.clone(), self.log_lines)],
        )?;
        gauge(
            &mut encoder,
            "gantry_live_streams",
            "Live streams (websockets) open",
            &[(none, i64::from(self.streams))],
        )?;

        let sets = || {
            self.apps.iter().flat_map(|a| {
                a.sets.iter().map(move |(version, stats)| {
                    let labels: Labels = vec![
                        ("team", a.team.clone()),
                        ("app", a.app.clone()),
                        ("release", version.to_string()),
                    ];
                    (labels, stats)
                })
            })
        };
        let requests: Vec<(Labels, u64)> = sets().map(|(l, s)| (l, s.requests)).collect();
        counter(
            &mut encoder,
            "gantry_app_requests",
            "Requests the router sent to a release",
            &requests,
        )?;
        let errors: Vec<(Labels, u64)> = sets().map(|(l, s)| (l, s.status.server_error)).collect();
        counter(
            &mut encoder,
            "gantry_app_server_errors",
            "Requests of a release answered 5xx",
            &errors,
        )?;
        if sets().next().is_none() {
            return self.encode_usage(encoder);
        }
        let mut histogram = encoder.encode_descriptor(
            "gantry_app_request_duration_seconds",
            "Time to a response's headers, per release",
            None,
            MetricType::Histogram,
        )?;
        for (labels, stats) in sets() {
            // The router's buckets are cumulative; the encoder adds per-bucket counts up.
            let mut previous = 0;
            let buckets: Vec<(f64, u64)> = stats
                .latency
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let bound = BOUNDS_US
                        .get(i)
                        .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                    let own = b.count.saturating_sub(previous);
                    previous = b.count;
                    (bound, own)
                })
                .collect();
            histogram
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    stats.latency.sum_ms / 1000.0,
                    stats.requests,
                    &buckets,
                    None,
                )?;
        }
        self.encode_usage(encoder)
    }
}

impl Scrape {
    fn encode_usage(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let instance = |r: &Reported| -> Labels {
            vec![
                ("team", r.owner.team.clone()),
                ("app", r.owner.app.clone()),
                (
                    "release",
                    r.owner.release.map_or_else(String::new, |v| v.to_string()),
                ),
                ("instance", r.usage.instance.to_string()),
            ]
        };
        let usage = |f: fn(&Reported) -> i64| -> Vec<(Labels, i64)> {
            self.usage.iter().map(|r| (instance(r), f(r))).collect()
        };
        gauge(
            &mut encoder,
            "gantry_instance_cpu_millicores",
            "CPU of an instance, thousandths of a core",
            &usage(|r| i64::from(r.usage.cpu_millis)),
        )?;
        gauge(
            &mut encoder,
            "gantry_instance_memory_bytes",
            "Memory of an instance",
            &usage(|r| r.usage.memory_bytes as i64),
        )?;
        gauge(
            &mut encoder,
            "gantry_instance_network_receive_bytes_per_second",
            "Network received by an instance",
            &usage(|r| r.usage.rx_bytes_per_second as i64),
        )?;
        gauge(
            &mut encoder,
            "gantry_instance_network_transmit_bytes_per_second",
            "Network sent by an instance",
            &usage(|r| r.usage.tx_bytes_per_second as i64),
        )?;
        Ok(())
    }
}

/// Whether the request carries the scrape token.
fn scrape_token_matches(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.metrics.scrape_token else {
        return false;
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(sent.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}

/// The control plane's and every app's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    security(("token" = []), ("session" = [])),
    responses(
        (status = 200, description = "The metrics (OpenMetrics text); `Authorization: Bearer` with `GANTRY_METRICS_TOKEN`, or a platform admin's session", content_type = "application/openmetrics-text"),
        (status = 401, description = "Neither the scrape token nor a platform admin's session", body = gantry_common::ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    admin: Result<PlatformAdmin, ApiError>,
) -> ApiResult<Response> {
    if !scrape_token_matches(&state, &headers) && admin.is_err() {
        return Err(unauthorized(
            "metrics are for a platform admin's session, or a scraper with `Authorization: Bearer <GANTRY_METRICS_TOKEN>`",
        ));
    }
    let scrape = Scrape {
        apps: state.router.stats(),
        usage: state.metrics.usage.current(),
        agents: state.embedded.hub.connected().len(),
        queued: state.embedded.hub.queued(),
        passes: state.embedded.passes.load(Relaxed),
        log_lines: state.metrics.log_lines_stored.load(Relaxed),
        streams: state.live.open(),
    };
    let mut registry = Registry::default();
    registry.register(
        "gantry_http_requests",
        "Requests of the control plane's API, dashboard and registry",
        state.metrics.http.requests.clone(),
    );
    registry.register(
        "gantry_http_request_duration_seconds",
        "Time to answer a request of the control plane",
        state.metrics.http.duration.clone(),
    );
    registry.register_collector(Box::new(scrape));
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_plane_series_encode_without_empty_label_sets() {
        let scrape = Scrape {
            apps: Vec::new(),
            usage: Vec::new(),
            agents: 2,
            queued: 0,
            passes: 7,
            log_lines: 9,
            streams: 1,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "gantry_agents_connected 2",
            "gantry_reconciler_passes_total 7",
            "gantry_log_lines_stored_total 9",
            "gantry_live_streams 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
