//! An app's metrics as the API and the live stream show them: points per release, at a step
//! of 5 seconds (recent) or 60 seconds (history).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What one release of an app did over one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    /// The end of the step.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// The release's version.
    pub release: u32,
    pub step_seconds: u32,
    /// Running instances that reported usage.
    pub instances: u32,
    /// CPU of all its instances together, in thousandths of a core.
    pub cpu_millis: Option<u32>,
    /// Memory of all its instances together, in bytes.
    pub memory_bytes: Option<u64>,
    /// Network received and sent by all its instances, in bytes per second.
    pub rx_bytes_per_second: Option<u64>,
    pub tx_bytes_per_second: Option<u64>,
    /// Requests the router sent it, per second.
    pub requests_per_second: f64,
    /// Share of those answered 5xx, in percent (`null` without requests).
    pub error_percent: Option<f64>,
    /// Time to the response's headers (`null` without requests).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Points of an app, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricSeries {
    /// 5 (recent, full resolution) or 60 (one-minute history).
    pub step_seconds: u32,
    pub points: Vec<MetricPoint>,
}

/// A frame of the live metrics stream (server → client), tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricFrame {
    /// Points, oldest first.
    Points { points: Vec<MetricPoint> },
    /// The replay of recent points is over; what follows is live.
    Live,
    /// This connection could not keep up and missed `count` points.
    Dropped { count: u64 },
}
