//! Usage sampling: every few seconds the agent asks the engine what each running container
//! has used (CPU time, memory, network bytes: totals) and turns two samples into rates, which
//! the connection reports to the server (`usage`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_common::agent::{InstanceUsage, USAGE_SECONDS};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::plan;
use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerStatus, Usage};

/// The rates between two samples of one container. Pure. Counters that went down (the
/// container restarted) count from zero.
pub fn rates(instance: Uuid, before: Usage, now: Usage, elapsed: Duration) -> InstanceUsage {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let per_second = |now: u64, before: u64| {
        let delta = if now >= before { now - before } else { now };
        (delta as f64 / seconds) as u64
    };
    let cpu_ns_per_s = per_second(now.cpu_ns, before.cpu_ns);
    InstanceUsage {
        instance,
        // ns of CPU per s of wall time / 1e6 = thousandths of a core.
        cpu_millis: u32::try_from(cpu_ns_per_s / 1_000_000).unwrap_or(u32::MAX),
        memory_bytes: now.memory_bytes,
        rx_bytes_per_second: per_second(now.rx_bytes, before.rx_bytes),
        tx_bytes_per_second: per_second(now.tx_bytes, before.tx_bytes),
    }
}

/// Samples the running containers of the node (as the converger last saw them) every
/// [`USAGE_SECONDS`] and publishes their rates. Runs until dropped.
pub async fn sample_forever<R: ContainerRuntime>(
    runtime: Arc<R>,
    containers: watch::Receiver<Vec<ContainerInfo>>,
    report: watch::Sender<Vec<InstanceUsage>>,
) {
    let mut last: HashMap<String, (Usage, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(USAGE_SECONDS));
    loop {
        tick.tick().await;
        let running: Vec<(Uuid, String)> = containers
            .borrow()
            .iter()
            .filter(|c| c.status == ContainerStatus::Running)
            .filter_map(|c| Some((plan::instance_of(c)?, c.id.clone())))
            .collect();
        let mut sampled = HashMap::new();
        let mut usage = Vec::new();
        for (instance, id) in running {
            let now = match runtime.usage(&id).await {
                Ok(Some(now)) => now,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(instance.id = %instance, "usage of {id} unknown: {e}");
                    continue;
                }
            };
            let at = Instant::now();
            if let Some((before, then)) = last.get(&id) {
                usage.push(rates(instance, *before, now, at.duration_since(*then)));
            }
            sampled.insert(id, (now, at));
        }
        last = sampled;
        report.send_replace(usage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_samples_make_rates() {
        let i = Uuid::from_u128(1);
        let before = Usage {
            cpu_ns: 1_000_000_000,
            memory_bytes: 10,
            rx_bytes: 1000,
            tx_bytes: 0,
        };
        let now = Usage {
            cpu_ns: 3_500_000_000,
            memory_bytes: 20 << 20,
            rx_bytes: 11_000,
            tx_bytes: 5000,
        };
        let r = rates(i, before, now, Duration::from_secs(5));
        assert_eq!(r.cpu_millis, 500, "2.5 s of CPU in 5 s: half a core");
        assert_eq!(r.memory_bytes, 20 << 20);
        assert_eq!(r.rx_bytes_per_second, 2000);
        assert_eq!(r.tx_bytes_per_second, 1000);
    }

    #[test]
    fn a_restarted_container_counts_from_zero() {
        let i = Uuid::from_u128(1);
        let before = Usage {
            cpu_ns: 9_000_000_000,
            ..Usage::default()
        };
        let now = Usage {
            cpu_ns: 1_000_000_000,
            ..Usage::default()
        };
        assert_eq!(
            rates(i, before, now, Duration::from_secs(2)).cpu_millis,
            500
        );
    }
}
