//! The router's counters: requests, status classes and a time-to-headers histogram, per app and
//! per release set.
//!
//! Every request touches two of these (its app's and its set's), so recording is a handful of
//! relaxed atomic adds and nothing else; the work of turning buckets into a cumulative histogram
//! and percentiles happens only when someone asks (`GET …/routes`). A snapshot may be a request
//! or two out of step between fields, which is fine for counters that are read by people.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use gantry_common::routes::{LatencyBucket, LatencyHistogram, RouteStats, StatusClasses};

/// Upper bounds of the latency buckets in microseconds (0.5 ms … 10 s); one more bucket, +Inf,
/// follows. Fixed so that recording is a comparison chain, not a search over configuration.
pub const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Counters of one app or one release set, shared by every table that holds it so that they
/// survive route-table swaps.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: AtomicU64,
    /// 1xx … 5xx; statuses outside 100–599 are counted in `requests` only.
    classes: [AtomicU64; 5],
    /// Per-bucket (not cumulative) counts, so that recording is one add.
    buckets: [AtomicU64; BUCKETS],
    /// The latencies added up, in microseconds (a Prometheus histogram's `_sum`).
    sum_us: AtomicU64,
}

impl Stats {
    /// Counts one answered request: its status and how long its response headers took.
    pub(crate) fn record(&self, status: u16, latency: Duration) {
        self.requests.fetch_add(1, Relaxed);
        if let Some(class) = (status / 100).checked_sub(1).filter(|c| *c < 5) {
            self.classes[usize::from(class)].fetch_add(1, Relaxed);
        }
        self.buckets[bucket_index(latency)].fetch_add(1, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The counters as the API shows them: a cumulative histogram with estimated percentiles.
    pub(crate) fn snapshot(&self) -> RouteStats {
        let class = |i: usize| self.classes[i].load(Relaxed);
        let mut cumulative = [0u64; BUCKETS];
        let mut total = 0;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            total += bucket.load(Relaxed);
            *slot = total;
        }
        RouteStats {
            requests: self.requests.load(Relaxed),
            status: StatusClasses {
                informational: class(0),
                success: class(1),
                redirection: class(2),
                client_error: class(3),
                server_error: class(4),
            },
            latency: LatencyHistogram {
                buckets: cumulative
                    .iter()
                    .enumerate()
                    .map(|(i, &count)| LatencyBucket {
                        le_ms: BOUNDS_US.get(i).map(|&us| us as f64 / 1000.0),
                        count,
                    })
                    .collect(),
                p50_ms: percentile(&cumulative, 0.50),
                p90_ms: percentile(&cumulative, 0.90),
                p99_ms: percentile(&cumulative, 0.99),
                sum_ms: self.sum_us.load(Relaxed) as f64 / 1000.0,
            },
        }
    }
}

/// The bucket a latency falls in: the first whose bound it does not exceed.
pub(crate) fn bucket_index(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    BOUNDS_US
        .iter()
        .position(|&bound| us <= bound)
        .unwrap_or(BOUNDS_US.len())
}

/// [`percentile`] over cumulative counts given as a slice (one per bucket of [`BOUNDS_US`] and
/// +Inf, as [`Stats::snapshot`] lists them): for the counts of an interval, the difference of
/// two snapshots. `None` for a slice of another length.
pub fn quantile_ms(cumulative: &[u64], q: f64) -> Option<f64> {
    let cumulative: &[u64; BUCKETS] = cumulative.try_into().ok()?;
    percentile(cumulative, q)
}

/// Estimates the `q` quantile (0 < q ≤ 1) in milliseconds from cumulative bucket counts, the
/// way Prometheus' `histogram_quantile` does: find the bucket holding the rank and interpolate
/// linearly inside it (from 0 for the first bucket). A rank in the +Inf bucket reports the last
/// finite bound, since nothing is known above it. `None` when nothing was counted.
pub(crate) fn percentile(cumulative: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    let Some(&upper_us) = BOUNDS_US.get(i) else {
        return Some(BOUNDS_US[BOUNDS_US.len() - 1] as f64 / 1000.0);
    };
    let (lower_us, below) = match i.checked_sub(1) {
        Some(prev) => (BOUNDS_US[prev], cumulative[prev]),
        None => (0, 0),
    };
    let in_bucket = (cumulative[i] - below) as f64;
    let fraction = if in_bucket > 0.0 {
        (rank - below as f64) / in_bucket
    } else {
        1.0
    };
    let us = lower_us as f64 + (upper_us - lower_us) as f64 * fraction;
    Some(us / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: f64) -> Duration {
        Duration::from_secs_f64(ms / 1000.0)
    }

    #[test]
    fn latencies_land_in_the_bucket_whose_bound_they_do_not_exceed() {
        assert_eq!(bucket_index(Duration::ZERO), 0);
        assert_eq!(bucket_index(ms(0.5)), 0);
        assert_eq!(bucket_index(ms(0.501)), 1);
        assert_eq!(bucket_index(ms(3.0)), 3);
        assert_eq!(bucket_index(ms(10_000.0)), 13);
        assert_eq!(bucket_index(ms(10_000.1)), 14);
        assert_eq!(bucket_index(Duration::from_secs(u64::MAX)), 14);
    }

    #[test]
    fn status_classes_and_requests_are_counted() {
        let stats = Stats::default();
        for status in [101, 200, 204, 301, 404, 502, 503, 504, 99, 600] {
            stats.record(status, ms(1.0));
        }
        let snap = stats.snapshot();
        assert_eq!(snap.requests, 10);
        assert_eq!(
            snap.status,
            StatusClasses {
                informational: 1,
                success: 2,
                redirection: 1,
                client_error: 1,
                server_error: 3,
            }
        );
    }

    #[test]
    fn the_snapshot_is_cumulative_with_an_inf_bucket_last() {
        let stats = Stats::default();
        stats.record(200, ms(0.2));
        stats.record(200, ms(3.0));
        stats.record(200, ms(60_000.0));
        let buckets = stats.snapshot().latency.buckets;
        assert_eq!(buckets.len(), 15);
        assert_eq!(buckets[0].le_ms, Some(0.5));
        assert_eq!(buckets[0].count, 1);
        assert_eq!(buckets[2].count, 1, "2.5 ms holds only the first");
        assert_eq!(buckets[3].count, 2, "5 ms holds both");
        assert_eq!(buckets[13].le_ms, Some(10_000.0));
        assert_eq!(buckets[13].count, 2);
        assert_eq!(buckets[14].le_ms, None);
        assert_eq!(buckets[14].count, 3);
    }

    #[test]
    fn no_requests_no_percentiles() {
        let latency = Stats::default().snapshot().latency;
        assert_eq!(
            (latency.p50_ms, latency.p90_ms, latency.p99_ms),
            (None, None, None)
        );
    }

    #[test]
    fn percentiles_interpolate_linearly_inside_a_bucket() {
        // 100 requests spread evenly over (5 ms, 10 ms]: p50 ≈ 7.5 ms, p90 ≈ 9.5 ms.
        let stats = Stats::default();
        for _ in 0..100 {
            stats.record(200, ms(7.0));
        }
        let latency = stats.snapshot().latency;
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(close(latency.p50_ms, 7.5), "{:?}", latency.p50_ms);
        assert!(close(latency.p90_ms, 9.5), "{:?}", latency.p90_ms);
        assert!(close(latency.p99_ms, 9.95), "{:?}", latency.p99_ms);
    }

    #[test]
    fn percentiles_cross_buckets_and_start_the_first_at_zero() {
        // 90 fast (≤ 0.5 ms), 10 slow (in (100, 250] ms).
        let mut cumulative = [0u64; BUCKETS];
        for (i, c) in cumulative.iter_mut().enumerate() {
            *c = if i < 8 { 90 } else { 100 };
        }
        let p50 = percentile(&cumulative, 0.5).unwrap();
        assert!((p50 - 0.5 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        assert!((percentile(&cumulative, 0.9).unwrap() - 0.5).abs() < 1e-9);
        let p99 = percentile(&cumulative, 0.99).unwrap();
        assert!((p99 - (100.0 + 150.0 * 0.9)).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn a_rank_beyond_the_last_bound_reports_the_last_bound() {
        let stats = Stats::default();
        stats.record(200, Duration::from_secs(30));
        assert_eq!(stats.snapshot().latency.p99_ms, Some(10_000.0));
    }
}
