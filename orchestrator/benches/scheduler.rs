//! Scheduler throughput: decisions per second when placing 10,000 instances on 1,000 and
//! 5,000 nodes in one call of [`place`].
//!
//! Run with `cargo bench -p gantry-orchestrator --bench scheduler`. Criterion prints
//! `thrpt` in elements/s, and one element is one decision. Target (issue): ≥ 50,000
//! decisions/s in memory. There is no peer to run beside it: the issue sets an absolute target.
//!
//! The inputs are deterministic (a small LCG, no `rand`) and shaped like a real cluster:
//! mixed node sizes, some capacity already promised, 4 zones, a few nodes down, cordoned or
//! draining, some GPU and SSD nodes, instances already running for half the apps, and
//! 10,000 requests over 500 apps of varied sizes, some requiring labels. Setup asserts that
//! at least 95 % of the requests are placed, so the figure is for real placements and not
//! for cheap rejections.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gantry_orchestrator::scheduler::{
    place, Decision, Existing, Node, NodeStatus, Request, Resources,
};

const REQUESTS: usize = 10_000;
const APPS: usize = 500;
const ZONES: [&str; 4] = ["eu-1a", "eu-1b", "eu-1c", "eu-1d"];
const TARGET_PER_SEC: f64 = 50_000.0;

/// Knuth's MMIX LCG: deterministic and good enough to vary the inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn node_id(i: usize) -> String {
    format!("node-{i:05}")
}

fn nodes(count: usize, rng: &mut Lcg) -> Vec<Node> {
    (0..count)
        .map(|i| {
            let cores = rng.pick(&[4, 8, 16, 32, 64]);
            // 2 or 4 GiB per core, within 8–256 GiB.
            let memory_gib = (cores * rng.pick(&[2, 4])).clamp(8, 256);
            let capacity = Resources {
                cpu_millis: cores * 1000,
                memory_mib: memory_gib * 1024,
            };
            // 0–40 % already promised to instances running there.
            let allocated = Resources {
                cpu_millis: capacity.cpu_millis * rng.below(41) / 100,
                memory_mib: capacity.memory_mib * rng.below(41) / 100,
            };
            let status = match rng.below(100) {
                0 | 1 => NodeStatus::Down,
                2 => NodeStatus::Cordoned,
                3 => NodeStatus::Draining,
                _ => NodeStatus::Ready,
            };
            let mut labels = BTreeMap::from([
                ("zone".to_owned(), ZONES[i % ZONES.len()].to_owned()),
                ("arch".to_owned(), "amd64".to_owned()),
            ]);
            if rng.below(4) == 0 {
                labels.insert("disk".into(), "ssd".into());
            }
            if rng.below(20) == 0 {
                labels.insert("gpu".into(), "true".into());
            }
            Node {
                id: node_id(i),
                status,
                capacity,
                allocated,
                labels,
            }
        })
        .collect()
}

/// Instances already running: 1–4 for each even-numbered app.
fn existing(node_count: usize, rng: &mut Lcg) -> Vec<Existing> {
    let mut out = Vec::new();
    for app in (0..APPS).step_by(2) {
        for _ in 0..1 + rng.below(4) {
            out.push(Existing {
                app: format!("team-{}/app-{app}", app % 40),
                node: node_id(rng.below(node_count as u64) as usize),
            });
        }
    }
    out
}

/// 10,000 requests over 500 apps, replicas of one app next to each other (one deploy places
/// all of an app's replicas). Replica counts vary from 1 to 39.
fn requests(rng: &mut Lcg) -> Vec<Request> {
    let mut replicas: Vec<usize> = (0..APPS).map(|_| 1 + rng.below(39) as usize).collect();
    // Adjust to exactly REQUESTS in total.
    let mut total: usize = replicas.iter().sum();
    while total != REQUESTS {
        let app = rng.below(APPS as u64) as usize;
        if total > REQUESTS && replicas[app] > 1 {
            replicas[app] -= 1;
            total -= 1;
        } else if total < REQUESTS && replicas[app] < 39 {
            replicas[app] += 1;
            total += 1;
        }
    }
    let mut out = Vec::with_capacity(REQUESTS);
    for (app, &count) in replicas.iter().enumerate() {
        let resources = Resources {
            cpu_millis: rng.pick(&[100, 250, 500, 1000, 2000]),
            memory_mib: rng.pick(&[128, 256, 512, 1024, 2048]),
        };
        let mut required_labels = BTreeMap::new();
        match rng.below(100) {
            // Pinned to one zone.
            0..=9 => {
                required_labels.insert("zone".into(), rng.pick(&ZONES).to_owned());
            }
            10..=14 => {
                required_labels.insert("disk".into(), "ssd".into());
            }
            15 => {
                required_labels.insert("gpu".into(), "true".into());
            }
            16 => {
                required_labels.insert("arch".into(), "amd64".into());
                required_labels.insert("disk".into(), "ssd".into());
            }
            _ => {}
        }
        let name = format!("team-{}/app-{app}", app % 40);
        out.extend((0..count).map(|_| Request {
            app: name.clone(),
            resources,
            required_labels: required_labels.clone(),
        }));
    }
    out
}

struct Input {
    nodes: Vec<Node>,
    existing: Vec<Existing>,
    requests: Vec<Request>,
}

fn input(node_count: usize) -> Input {
    let mut rng = Lcg(node_count as u64);
    let input = Input {
        nodes: nodes(node_count, &mut rng),
        existing: existing(node_count, &mut rng),
        requests: requests(&mut rng),
    };
    assert_eq!(input.requests.len(), REQUESTS);
    let decisions = place(&input.nodes, &input.existing, &input.requests);
    let placed = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Placed(_)))
        .count();
    println!(
        "{node_count} nodes: {placed} of {REQUESTS} requests placed, {} existing instances",
        input.existing.len()
    );
    assert!(
        placed * 100 >= REQUESTS * 95,
        "only {placed} of {REQUESTS} placed: the bench would measure rejections"
    );
    input
}

fn bench_place(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler_place_10k_instances");
    group
        .throughput(Throughput::Elements(REQUESTS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for node_count in [1_000, 5_000] {
        let input = input(node_count);
        group.bench_with_input(BenchmarkId::new("nodes", node_count), &input, |b, input| {
            b.iter(|| {
                place(
                    black_box(&input.nodes),
                    black_box(&input.existing),
                    black_box(&input.requests),
                )
            })
        });
    }
    group.finish();
    println!("target: >= {TARGET_PER_SEC} decisions/s (thrpt above, 1 element = 1 decision)");
}

criterion_group!(benches, bench_place);
criterion_main!(benches);
