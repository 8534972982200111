//! Placement of app instances on worker nodes: a pure function of a snapshot.
//!
//! **Filter**: a node must be ready (not down, cordoned or draining), have the CPU and memory the
//! instance asks for free, and carry every label the instance requires.
//! **Score**, best first: fewest replicas of the same app on the node, then fewest in the node's
//! `zone` (so replicas spread over nodes, then zones), then the least allocated node (the larger
//! of its CPU and memory fractions), then the node id (so equal inputs give equal outputs).
//!
//! Instances are placed one after another and each placement counts against the next, so a batch
//! spreads as well as instances placed one at a time. An instance that fits nowhere gets a
//! [`Pending`] reason a person can act on ("no ready node has 512 MiB of memory free").

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// CPU in millicores and memory in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

impl Resources {
    fn fits_in(self, free: Resources) -> bool {
        self.cpu_millis <= free.cpu_millis && self.memory_mib <= free.memory_mib
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Ready,
    Down,
    Cordoned,
    Draining,
}

/// What the scheduler knows of a node.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub status: NodeStatus,
    pub capacity: Resources,
    /// Resources already promised to instances on this node.
    pub allocated: Resources,
    pub labels: BTreeMap<String, String>,
}

/// One instance to place.
#[derive(Debug, Clone)]
pub struct Request {
    /// The app it belongs to (e.g. `team/app`): replicas of one app are spread.
    pub app: String,
    pub resources: Resources,
    /// Labels a node must carry, e.g. `zone=a` or `gpu=true`.
    pub required_labels: BTreeMap<String, String>,
}

/// An instance already running somewhere, which placement spreads away from.
#[derive(Debug, Clone)]
pub struct Existing {
    pub app: String,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it on the node with this id.
    Placed(String),
    Pending(Pending),
}

/// Why an instance could not be placed; retried when nodes or capacity change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    NoReadyNode,
    NoNodeWithLabels(BTreeMap<String, String>),
    NotEnoughFree { cpu_millis: u64, memory_mib: u64 },
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pending::NoReadyNode => f.write_str("no node is ready (all are down, cordoned or draining)"),
            Pending::NoNodeWithLabels(labels) => {
                let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "no ready node has the labels {}", wanted.join(","))
            }
            Pending::NotEnoughFree { cpu_millis, memory_mib } => write!(
                f,
                "no ready node has {memory_mib} MiB of memory and {cpu_millis} millicores of CPU free"
            ),
        }
    }
}

const ZONE: &str = "zone";

/// Places `requests` in order on `nodes`, given the instances already running.
///
/// # Guarantees
/// - Pure and deterministic: the same inputs give the same decisions.
/// - Never places on a node that is not ready, lacks a required label, or lacks free resources
///   (counting the instances placed earlier in the same call).
pub fn place(nodes: &[Node], existing: &[Existing], requests: &[Request]) -> Vec<Decision> {
    let mut state = State::new(nodes, existing);
    requests.iter().map(|r| state.place_one(r)).collect()
}

/// What scoring reads of one node, kept together so the candidate loop (run once per request
/// over every ready node: 50 million times for 10,000 instances on 5,000 nodes) touches one
/// small array and does no division, string comparison or map lookup.
#[derive(Clone, Copy)]
struct Slot {
    free: Resources,
    /// [`load_permille`] at `free`, recomputed only when an instance is placed here: computing
    /// it per candidate (two divisions) was most of the cost of a decision.
    load: u64,
    /// Position of the node's id in sorted order, equal ids sharing one, so the last
    /// tie-break compares integers and still orders nodes exactly as their ids do.
    rank: u32,
    /// Index into [`AppCounts::in_zone`]. Nodes without a zone share the last index, which is
    /// never incremented, so it reads as 0 without a branch.
    zone: u32,
}

/// Replicas of one app on each node (indexed like `nodes`) and in each zone.
struct AppCounts {
    on_node: Vec<u32>,
    in_zone: Vec<u32>,
}

/// Working copy of the snapshot: free resources and per-app counts, updated as we place.
struct State<'a> {
    nodes: &'a [Node],
    slots: Vec<Slot>,
    /// Indices of ready nodes, in node order (a full tie keeps the first).
    ready: Vec<usize>,
    /// Ready nodes carrying each distinct set of required labels, worked out on first use: a
    /// batch repeats the same few sets, and this keeps label maps out of the candidate loop.
    labelled: HashMap<&'a BTreeMap<String, String>, Vec<usize>>,
    /// Index into `counts` of each app seen so far, keyed by borrowed names (no clones).
    apps: HashMap<&'a str, usize>,
    counts: Vec<AppCounts>,
    zones: usize,
}

impl<'a> State<'a> {
    fn new(nodes: &'a [Node], existing: &'a [Existing]) -> Self {
        let mut zone_ids: HashMap<&str, usize> = HashMap::new();
        let zone_of: Vec<Option<usize>> = nodes
            .iter()
            .map(|n| {
                n.labels.get(ZONE).map(|z| {
                    let next = zone_ids.len();
                    *zone_ids.entry(z.as_str()).or_insert(next)
                })
            })
            .collect();
        let zones = zone_ids.len();
        let mut by_id: Vec<usize> = (0..nodes.len()).collect();
        by_id.sort_by(|&a, &b| nodes[a].id.cmp(&nodes[b].id));
        let mut rank = vec![0u32; nodes.len()];
        for w in 1..by_id.len() {
            let (prev, this) = (by_id[w - 1], by_id[w]);
            rank[this] = rank[prev] + u32::from(nodes[prev].id != nodes[this].id);
        }
        let ready: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].status == NodeStatus::Ready)
            .collect();
        let slots = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let free = Resources {
                    cpu_millis: n.capacity.cpu_millis.saturating_sub(n.allocated.cpu_millis),
                    memory_mib: n.capacity.memory_mib.saturating_sub(n.allocated.memory_mib),
                };
                Slot {
                    free,
                    // Only ready nodes are ever scored.
                    load: if n.status == NodeStatus::Ready {
                        load_permille(n, free)
                    } else {
                        0
                    },
                    rank: rank[i],
                    zone: zone_of[i].unwrap_or(zones) as u32,
                }
            })
            .collect();
        let mut state = State {
            nodes,
            slots,
            ready,
            labelled: HashMap::new(),
            apps: HashMap::new(),
            counts: Vec::new(),
            zones,
        };
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        for e in existing {
            if let Some(&i) = index.get(e.node.as_str()) {
                let app = state.app(&e.app);
                state.count(app, i);
            }
        }
        state
    }

    /// The index of `app` in `counts`, adding zeroed counts the first time it is seen.
    fn app(&mut self, app: &'a str) -> usize {
        let (nodes, zones) = (self.nodes.len(), self.zones);
        let counts = &mut self.counts;
        *self.apps.entry(app).or_insert_with(|| {
            counts.push(AppCounts {
                on_node: vec![0; nodes],
                // One more for "no zone", which stays 0.
                in_zone: vec![0; zones + 1],
            });
            counts.len() - 1
        })
    }

    fn count(&mut self, app: usize, node: usize) {
        let zone = self.slots[node].zone as usize;
        let counts = &mut self.counts[app];
        counts.on_node[node] += 1;
        if zone < self.zones {
            counts.in_zone[zone] += 1;
        }
    }

    fn place_one(&mut self, req: &'a Request) -> Decision {
        if self.ready.is_empty() {
            return Decision::Pending(Pending::NoReadyNode);
        }
        let app = self.app(&req.app);
        let candidates: &[usize] = if req.required_labels.is_empty() {
            &self.ready
        } else {
            let (nodes, ready) = (self.nodes, &self.ready);
            self.labelled
                .entry(&req.required_labels)
                .or_insert_with(|| {
                    ready
                        .iter()
                        .copied()
                        .filter(|&i| {
                            req.required_labels
                                .iter()
                                .all(|(k, v)| nodes[i].labels.get(k) == Some(v))
                        })
                        .collect()
                })
        };
        let counts = &self.counts[app];
        // Score: (replicas on the node, replicas in its zone, load, id rank); lowest wins and
        // a full tie keeps the first node, as comparing ids did.
        let mut best: Option<((u32, u32, u64, u32), usize)> = None;
        for &i in candidates {
            let slot = &self.slots[i];
            if !req.resources.fits_in(slot.free) {
                continue;
            }
            let key = (
                counts.on_node[i],
                counts.in_zone[slot.zone as usize],
                slot.load,
                slot.rank,
            );
            if best.is_none_or(|(b, _)| key < b) {
                best = Some((key, i));
            }
        }
        let Some((_, i)) = best else {
            // Every candidate carries the labels, so "some carry them" is "any candidate".
            return Decision::Pending(if candidates.is_empty() {
                Pending::NoNodeWithLabels(req.required_labels.clone())
            } else {
                Pending::NotEnoughFree {
                    cpu_millis: req.resources.cpu_millis,
                    memory_mib: req.resources.memory_mib,
                }
            });
        };
        let slot = &mut self.slots[i];
        slot.free.cpu_millis -= req.resources.cpu_millis;
        slot.free.memory_mib -= req.resources.memory_mib;
        slot.load = load_permille(&self.nodes[i], slot.free);
        self.count(app, i);
        Decision::Placed(self.nodes[i].id.clone())
    }
}

/// How full a node is, 0–1000: the larger of its CPU and memory fractions in use.
fn load_permille(node: &Node, free: Resources) -> u64 {
    // A node without capacity counts as full.
    let frac = |cap: u64, free: u64| {
        ((cap - free.min(cap)) * 1000)
            .checked_div(cap)
            .unwrap_or(1000)
    };
    frac(node.capacity.cpu_millis, free.cpu_millis)
        .max(frac(node.capacity.memory_mib, free.memory_mib))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, zone: &str, cpu: u64, mem: u64) -> Node {
        let mut labels = BTreeMap::new();
        if !zone.is_empty() {
            labels.insert(ZONE.to_owned(), zone.to_owned());
        }
        Node {
            id: id.into(),
            status: NodeStatus::Ready,
            capacity: Resources {
                cpu_millis: cpu,
                memory_mib: mem,
            },
            allocated: Resources::default(),
            labels,
        }
    }

    fn req(app: &str, cpu: u64, mem: u64) -> Request {
        Request {
            app: app.into(),
            resources: Resources {
                cpu_millis: cpu,
                memory_mib: mem,
            },
            required_labels: BTreeMap::new(),
        }
    }

    fn placed(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Placed(n) => n.as_str(),
                Decision::Pending(_) => "-",
            })
            .collect()
    }

    #[test]
    fn spreads_replicas_over_nodes() {
        let nodes = [
            node("a", "", 4000, 4096),
            node("b", "", 4000, 4096),
            node("c", "", 4000, 4096),
        ];
        let d = place(&nodes, &[], &vec![req("web", 500, 256); 3]);
        let mut got = placed(&d);
        got.sort();
        assert_eq!(got, ["a", "b", "c"]);
        // A fourth replica goes where the app has fewest (a tie broken by load, then id).
        let d = place(&nodes, &[], &vec![req("web", 500, 256); 4]);
        assert_eq!(placed(&d), ["a", "b", "c", "a"]);
    }

    #[test]
    fn spreads_over_zones_before_filling_a_zone() {
        // Two nodes in zone a, one in zone b: the second replica goes to zone b.
        let nodes = [
            node("a1", "a", 4000, 4096),
            node("a2", "a", 4000, 4096),
            node("b1", "b", 4000, 4096),
        ];
        let d = place(&nodes, &[], &vec![req("web", 100, 64); 2]);
        assert_eq!(placed(&d), ["a1", "b1"]);
        let d = place(&nodes, &[], &vec![req("web", 100, 64); 3]);
        assert_eq!(placed(&d), ["a1", "b1", "a2"]);
    }

    #[test]
    fn counts_existing_instances_and_prefers_least_allocated() {
        let mut nodes = [node("a", "", 4000, 4096), node("b", "", 4000, 4096)];
        let existing = [Existing {
            app: "web".into(),
            node: "a".into(),
        }];
        assert_eq!(
            placed(&place(&nodes, &existing, &[req("web", 100, 64)])),
            ["b"]
        );
        // Another app: no spread preference, so the emptier node wins.
        nodes[1].allocated = Resources {
            cpu_millis: 3000,
            memory_mib: 100,
        };
        assert_eq!(
            placed(&place(&nodes, &existing, &[req("api", 100, 64)])),
            ["a"]
        );
    }

    #[test]
    fn filters_status_resources_and_labels() {
        let mut down = node("down", "", 8000, 8192);
        down.status = NodeStatus::Down;
        let mut cordoned = node("cordoned", "", 8000, 8192);
        cordoned.status = NodeStatus::Cordoned;
        let mut draining = node("draining", "", 8000, 8192);
        draining.status = NodeStatus::Draining;
        let small = node("small", "", 1000, 512);
        let mut gpu = node("gpu", "", 1000, 512);
        gpu.labels.insert("gpu".into(), "true".into());
        let nodes = [down, cordoned, draining, small, gpu];

        // (request, expected decision)
        let mut wants_gpu = req("ml", 100, 64);
        wants_gpu
            .required_labels
            .insert("gpu".into(), "true".into());
        let mut wants_tpu = req("ml", 100, 64);
        wants_tpu.required_labels.insert("tpu".into(), "v5".into());
        let cases = [
            (req("web", 500, 256), Decision::Placed("gpu".into())),
            (wants_gpu, Decision::Placed("gpu".into())),
            (
                req("web", 2000, 256),
                Decision::Pending(Pending::NotEnoughFree {
                    cpu_millis: 2000,
                    memory_mib: 256,
                }),
            ),
            (
                req("web", 100, 1024),
                Decision::Pending(Pending::NotEnoughFree {
                    cpu_millis: 100,
                    memory_mib: 1024,
                }),
            ),
            (
                wants_tpu.clone(),
                Decision::Pending(Pending::NoNodeWithLabels(wants_tpu.required_labels.clone())),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(
                place(&nodes, &[], std::slice::from_ref(&r)),
                std::slice::from_ref(&want),
                "{r:?}"
            );
        }
        let all_down = [nodes[0].clone()];
        assert_eq!(
            place(&all_down, &[], &[req("web", 1, 1)]),
            [Decision::Pending(Pending::NoReadyNode)]
        );
    }

    #[test]
    fn placements_in_one_call_use_up_capacity() {
        let nodes = [node("a", "", 1000, 1024)];
        let d = place(&nodes, &[], &vec![req("web", 400, 256); 3]);
        assert_eq!(placed(&d), ["a", "a", "-"]);
        assert_eq!(
            d[2],
            Decision::Pending(Pending::NotEnoughFree {
                cpu_millis: 400,
                memory_mib: 256
            })
        );
    }

    #[test]
    fn reasons_read_well() {
        let r = Pending::NotEnoughFree {
            cpu_millis: 500,
            memory_mib: 512,
        };
        assert_eq!(
            r.to_string(),
            "no ready node has 512 MiB of memory and 500 millicores of CPU free"
        );
        let labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
        assert_eq!(
            Pending::NoNodeWithLabels(labels).to_string(),
            "no ready node has the labels zone=a"
        );
    }

    #[test]
    fn deterministic() {
        let nodes: Vec<Node> = (0..20)
            .map(|i| node(&format!("n{i:02}"), ["a", "b", "c"][i % 3], 4000, 8192))
            .collect();
        let reqs: Vec<Request> = (0..60)
            .map(|i| req(&format!("app{}", i % 7), 250, 256))
            .collect();
        assert_eq!(place(&nodes, &[], &reqs), place(&nodes, &[], &reqs));
    }

    /// The scheduler as first written (before the candidate loop was made cheap): scores every
    /// ready node from the `Node` itself (label maps, two divisions for the load, the id
    /// string). Kept as the reference the faster `place` must agree with decision for decision.
    mod reference {
        use super::super::*;

        pub fn place(nodes: &[Node], existing: &[Existing], requests: &[Request]) -> Vec<Decision> {
            let mut state = State::new(nodes, existing);
            requests.iter().map(|r| state.place_one(r)).collect()
        }

        /// Working copy of the snapshot: free resources and per-app counts, updated as we place.
        struct State<'a> {
            nodes: &'a [Node],
            ready: Vec<usize>,
            free: Vec<Resources>,
            zone_of: Vec<Option<usize>>,
            /// Per app: replicas on each node (indexed like `nodes`) and in each zone.
            per_app: HashMap<String, (Vec<u32>, Vec<u32>)>,
            zones: usize,
        }

        impl<'a> State<'a> {
            fn new(nodes: &'a [Node], existing: &[Existing]) -> Self {
                let mut zone_ids: HashMap<&str, usize> = HashMap::new();
                let zone_of = nodes
                    .iter()
                    .map(|n| {
                        n.labels.get(ZONE).map(|z| {
                            let next = zone_ids.len();
                            *zone_ids.entry(z.as_str()).or_insert(next)
                        })
                    })
                    .collect();
                let free = nodes
                    .iter()
                    .map(|n| Resources {
                        cpu_millis: n.capacity.cpu_millis.saturating_sub(n.allocated.cpu_millis),
                        memory_mib: n.capacity.memory_mib.saturating_sub(n.allocated.memory_mib),
                    })
                    .collect();
                let ready = (0..nodes.len())
                    .filter(|&i| nodes[i].status == NodeStatus::Ready)
                    .collect();
                let mut state = State {
                    nodes,
                    ready,
                    free,
                    zone_of,
                    per_app: HashMap::new(),
                    zones: zone_ids.len(),
                };
                let index: HashMap<&str, usize> = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.id.as_str(), i))
                    .collect();
                for e in existing {
                    if let Some(&i) = index.get(e.node.as_str()) {
                        state.count(&e.app, i);
                    }
                }
                state
            }

            fn counts(&mut self, app: &str) -> &mut (Vec<u32>, Vec<u32>) {
                let (nodes, zones) = (self.nodes.len(), self.zones);
                self.per_app
                    .entry(app.to_owned())
                    .or_insert_with(|| (vec![0; nodes], vec![0; zones]))
            }

            fn count(&mut self, app: &str, node: usize) {
                let zone = self.zone_of[node];
                let (on_node, in_zone) = self.counts(app);
                on_node[node] += 1;
                if let Some(z) = zone {
                    in_zone[z] += 1;
                }
            }

            fn place_one(&mut self, req: &Request) -> Decision {
                if self.ready.is_empty() {
                    return Decision::Pending(Pending::NoReadyNode);
                }
                let mut any_labelled = false;
                let mut best: Option<(u32, u32, u64, &str, usize)> = None;
                let per_app = self.per_app.get(&req.app);
                for &i in &self.ready {
                    let node = &self.nodes[i];
                    if !req
                        .required_labels
                        .iter()
                        .all(|(k, v)| node.labels.get(k) == Some(v))
                    {
                        continue;
                    }
                    any_labelled = true;
                    if !req.resources.fits_in(self.free[i]) {
                        continue;
                    }
                    let (on_node, in_zone) = per_app.map_or((0, 0), |(n, z)| {
                        (n[i], self.zone_of[i].map_or(0, |zi| z[zi]))
                    });
                    let key = (
                        on_node,
                        in_zone,
                        load_permille(node, self.free[i]),
                        node.id.as_str(),
                        i,
                    );
                    if best.is_none_or(|b| (key.0, key.1, key.2, key.3) < (b.0, b.1, b.2, b.3)) {
                        best = Some(key);
                    }
                }
                let Some((.., i)) = best else {
                    return Decision::Pending(if any_labelled {
                        Pending::NotEnoughFree {
                            cpu_millis: req.resources.cpu_millis,
                            memory_mib: req.resources.memory_mib,
                        }
                    } else {
                        Pending::NoNodeWithLabels(req.required_labels.clone())
                    });
                };
                self.free[i].cpu_millis -= req.resources.cpu_millis;
                self.free[i].memory_mib -= req.resources.memory_mib;
                self.count(&req.app, i);
                Decision::Placed(self.nodes[i].id.clone())
            }
        }
    }

    /// Knuth's MMIX LCG, so the randomized-ish inputs below are the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// Small, crowded clusters so every branch is taken: ties broken by id (including equal
    /// ids), nodes without a zone or without capacity, every status, labels nobody carries,
    /// existing instances on unknown nodes, and capacity running out part-way through a batch.
    #[test]
    fn agrees_with_the_reference_implementation() {
        let mut pending = 0;
        for seed in 0..300 {
            let mut rng = Lcg(seed);
            let zones = ["a", "b", "c", ""];
            let nodes: Vec<Node> = (0..1 + rng.below(24))
                .map(|_| {
                    // Few distinct ids and sizes, so equal scores and equal ids both occur.
                    let mut n = node(
                        &format!("n{}", rng.below(12)),
                        zones[rng.below(4) as usize],
                        [0, 1000, 2000, 4000][rng.below(4) as usize],
                        [0, 1024, 2048, 4096][rng.below(4) as usize],
                    );
                    n.status = [
                        NodeStatus::Ready,
                        NodeStatus::Ready,
                        NodeStatus::Ready,
                        NodeStatus::Down,
                        NodeStatus::Cordoned,
                        NodeStatus::Draining,
                    ][rng.below(6) as usize];
                    n.allocated = Resources {
                        cpu_millis: 500 * rng.below(3),
                        memory_mib: 512 * rng.below(3),
                    };
                    if rng.below(3) == 0 {
                        n.labels.insert("gpu".into(), "true".into());
                    }
                    n
                })
                .collect();
            let existing: Vec<Existing> = (0..rng.below(10))
                .map(|_| Existing {
                    app: format!("app{}", rng.below(5)),
                    node: format!("n{}", rng.below(15)),
                })
                .collect();
            let requests: Vec<Request> = (0..rng.below(60))
                .map(|_| {
                    let mut r = req(
                        &format!("app{}", rng.below(5)),
                        [0, 100, 250, 500, 1500][rng.below(5) as usize],
                        [0, 64, 256, 512, 1500][rng.below(5) as usize],
                    );
                    match rng.below(8) {
                        0 => {
                            r.required_labels.insert("gpu".into(), "true".into());
                        }
                        1 => {
                            r.required_labels.insert(ZONE.into(), "b".into());
                        }
                        2 => {
                            r.required_labels.insert("tpu".into(), "v5".into());
                        }
                        _ => {}
                    }
                    r
                })
                .collect();
            let got = place(&nodes, &existing, &requests);
            assert_eq!(
                got,
                reference::place(&nodes, &existing, &requests),
                "seed {seed}"
            );
            pending += got
                .iter()
                .filter(|d| matches!(d, Decision::Pending(_)))
                .count();
        }
        // The inputs are crowded enough to exercise the pending reasons too.
        assert!(pending > 100, "{pending}");
    }
}
