//! The router's view of an app, as `GET /api/v1/teams/{team}/apps/{app}/routes` shows it (like
//! `kubectl get endpoints`): the host it answers (and its preview host), its release sets with
//! their traffic weights and ready endpoints, and what the router counted for each.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An app's route: every release set that receives traffic, and the app's own counters
/// (which include requests answered 503 because no instance was ready).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppRoutes {
    /// `<app>.<team>.<apps-domain>`: the `Host` the router answers for this app.
    pub host: String,
    /// Where people reach the app, e.g. `http://hello.acme.localhost:8000/`.
    pub url: String,
    /// Where the preview set (the set with `preview: true`) is served alone, whatever its
    /// weight, e.g. `http://preview.hello.acme.localhost:8000/`; `null` when the app has no
    /// preview set (then that host answers 404).
    pub preview_url: Option<String>,
    pub sets: Vec<RouteSet>,
    pub stats: RouteStats,
}

/// One release set in the route table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteSet {
    /// The release's version (`3` for v3).
    pub release: u32,
    /// Percent of the app's traffic this set receives now (the weights of an app sum to 100
    /// when any set has a ready endpoint). Under the rolling strategy a set's weight is its
    /// share of the app's ready endpoints, so every ready instance gets an equal share.
    pub weight: u32,
    /// Whether this set is also served alone at the app's `preview_url` (blue-green: the new
    /// release before promotion). At most one set of an app has it.
    pub preview: bool,
    pub endpoints: Vec<RouteEndpoint>,
    pub stats: RouteStats,
}

/// A ready instance the router sends requests to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteEndpoint {
    pub instance: Uuid,
    /// `ip:port` on its node.
    pub address: String,
    /// Requests being served by this instance right now.
    pub in_flight: u32,
}

/// Counters since the router started (or since the set entered the table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStats {
    pub requests: u64,
    /// Responses by status class; the router's own errors (502, 503, 504) count as `5xx`.
    pub status: StatusClasses,
    /// Time to the response's headers, as a cumulative histogram.
    pub latency: LatencyHistogram,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub informational: u64,
    #[serde(rename = "2xx")]
    pub success: u64,
    #[serde(rename = "3xx")]
    pub redirection: u64,
    #[serde(rename = "4xx")]
    pub client_error: u64,
    #[serde(rename = "5xx")]
    pub server_error: u64,
}

/// Latency in the Prometheus style: `buckets[i].count` requests took at most `le_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencyHistogram {
    pub buckets: Vec<LatencyBucket>,
    /// Estimated percentiles in milliseconds (`None` before the first request).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Every request's time to headers, added up (with the count, the mean).
    pub sum_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencyBucket {
    /// Upper bound in milliseconds; the last bucket has none (`null`: +Inf).
    pub le_ms: Option<f64>,
    /// Requests at or under the bound (cumulative).
    pub count: u64,
}
