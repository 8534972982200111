//! Points from counters: the router's (cumulative, per app and release) and the agents'
//! usage reports. Pure: the sampler feeds it two snapshots and the reports.

use std::collections::{BTreeMap, HashMap};

use gantry_common::metrics::MetricPoint;
use gantry_common::routes::RouteStats;
use gantry_orchestrator::router::quantile_ms;
use time::OffsetDateTime;
use uuid::Uuid;

use super::usage::Reported;

/// The step of recent points, in seconds.
pub const STEP_SECONDS: u32 = 5;
/// The step of history points.
pub const MINUTE_SECONDS: u32 = 60;

/// One release set's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub requests: u64,
    pub server_errors: u64,
    /// Cumulative latency buckets, as the router lists them.
    pub cumulative: Vec<u64>,
}

impl Counters {
    pub fn of(stats: &RouteStats) -> Self {
        Counters {
            requests: stats.requests,
            server_errors: stats.status.server_error,
            cumulative: stats.latency.buckets.iter().map(|b| b.count).collect(),
        }
    }
}

/// Counters by app and release version.
pub type Snapshot = HashMap<(Uuid, u32), Counters>;

/// What a release's traffic did between two snapshots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Traffic {
    pub requests_per_second: f64,
    pub error_percent: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The traffic between `before` and `now` over `seconds`. A set that is new (or whose
/// counters went down: it left the table and came back) counts from zero.
pub fn traffic(before: Option<&Counters>, now: &Counters, seconds: f64) -> Traffic {
    let reset = before.is_none_or(|b| b.requests > now.requests);
    let zero = Counters::default();
    let before = if reset {
        &zero
    } else {
        before.unwrap_or(&zero)
    };
    let requests = now.requests - before.requests;
    let errors = now.server_errors.saturating_sub(before.server_errors);
    let delta: Vec<u64> = now
        .cumulative
        .iter()
        .enumerate()
        .map(|(i, c)| c.saturating_sub(before.cumulative.get(i).copied().unwrap_or(0)))
        .collect();
    Traffic {
        requests_per_second: requests as f64 / seconds.max(0.001),
        error_percent: (requests > 0).then(|| errors as f64 * 100.0 / requests as f64),
        p50_ms: quantile_ms(&delta, 0.50),
        p99_ms: quantile_ms(&delta, 0.99),
    }
}

/// The usage of one release's instances, added up.
#[derive(Debug, Default)]
struct Summed {
    instances: u32,
    cpu_millis: u32,
    memory_bytes: u64,
    rx: u64,
    tx: u64,
}

/// One point per release that had traffic counters or running instances.
pub fn points(
    ts: OffsetDateTime,
    step_seconds: u32,
    before: &Snapshot,
    now: &Snapshot,
    usage: &[Reported],
) -> Vec<(Uuid, MetricPoint)> {
    let mut used: BTreeMap<(Uuid, u32), Summed> = BTreeMap::new();
    for r in usage {
        let Some(release) = r.owner.release.and_then(|v| u32::try_from(v).ok()) else {
            continue;
        };
        let e = used.entry((r.owner.app_id, release)).or_default();
        e.instances += 1;
        e.cpu_millis = e.cpu_millis.saturating_add(r.usage.cpu_millis);
        e.memory_bytes += r.usage.memory_bytes;
        e.rx += r.usage.rx_bytes_per_second;
        e.tx += r.usage.tx_bytes_per_second;
    }
    let mut keys: Vec<(Uuid, u32)> = now.keys().copied().chain(used.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let t = now
                .get(&key)
                .map(|n| traffic(before.get(&key), n, f64::from(step_seconds)))
                .unwrap_or_default();
            let u = used.get(&key);
            let point = MetricPoint {
                ts,
                release: key.1,
                step_seconds,
                instances: u.map_or(0, |u| u.instances),
                cpu_millis: u.map(|u| u.cpu_millis),
                memory_bytes: u.map(|u| u.memory_bytes),
                rx_bytes_per_second: u.map(|u| u.rx),
                tx_bytes_per_second: u.map(|u| u.tx),
                requests_per_second: t.requests_per_second,
                error_percent: t.error_percent,
                p50_ms: t.p50_ms,
                p99_ms: t.p99_ms,
            };
            (key.0, point)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_common::agent::InstanceUsage;
    use gantry_orchestrator::router::BOUNDS_US;

    fn counters(requests: u64, errors: u64, fast: u64) -> Counters {
        // `fast` requests in the first bucket (≤ 0.5 ms), the rest in the 10 ms one.
        let mut cumulative = vec![0; BOUNDS_US.len() + 1];
        for (i, c) in cumulative.iter_mut().enumerate() {
            *c = if i < 4 { fast } else { requests };
        }
        Counters {
            requests,
            server_errors: errors,
            cumulative,
        }
    }

    #[test]
    fn traffic_is_the_difference_over_the_step() {
        let t = traffic(Some(&counters(100, 0, 100)), &counters(200, 10, 100), 5.0);
        assert_eq!(t.requests_per_second, 20.0);
        assert_eq!(t.error_percent, Some(10.0));
        // All 100 new requests took 5–10 ms.
        let p99 = t.p99_ms.unwrap();
        assert!((5.0..=10.0).contains(&p99), "{p99}");
    }

    #[test]
    fn a_new_or_reset_set_counts_from_zero_and_idle_has_no_percentiles() {
        let t = traffic(None, &counters(50, 5, 50), 5.0);
        assert_eq!(t.requests_per_second, 10.0);
        assert_eq!(t.error_percent, Some(10.0));
        let reset = traffic(Some(&counters(500, 0, 500)), &counters(50, 0, 50), 5.0);
        assert_eq!(reset.requests_per_second, 10.0);
        let idle = traffic(Some(&counters(50, 0, 50)), &counters(50, 0, 50), 5.0);
        assert_eq!(
            (idle.requests_per_second, idle.error_percent, idle.p99_ms),
            (0.0, None, None)
        );
    }

    #[test]
    fn points_join_traffic_and_usage_per_release() {
        let app = Uuid::from_u128(1);
        let owner = |release| super::super::usage::Owner {
            instance_id: Uuid::new_v4(),
            app_id: app,
            team: "acme".into(),
            app: "web".into(),
            release: Some(release),
        };
        let report = |release, cpu| Reported {
            node_id: Uuid::from_u128(9),
            owner: owner(release),
            usage: InstanceUsage {
                instance: Uuid::new_v4(),
                cpu_millis: cpu,
                memory_bytes: 1 << 20,
                rx_bytes_per_second: 10,
                tx_bytes_per_second: 20,
            },
            at: std::time::Instant::now(),
        };
        let before = Snapshot::from([((app, 1), counters(0, 0, 0))]);
        let now = Snapshot::from([((app, 1), counters(50, 0, 50))]);
        let usage = [report(1, 100), report(1, 150), report(2, 300)];
        let points = points(OffsetDateTime::UNIX_EPOCH, 5, &before, &now, &usage);
        assert_eq!(points.len(), 2);
        let v1 = &points[0].1;
        assert_eq!((v1.release, v1.instances, v1.cpu_millis), (1, 2, Some(250)));
        assert_eq!(v1.memory_bytes, Some(2 << 20));
        assert_eq!(v1.requests_per_second, 10.0);
        let v2 = &points[1].1;
        assert_eq!(
            (v2.release, v2.cpu_millis, v2.requests_per_second),
            (2, Some(300), 0.0)
        );
    }
}
