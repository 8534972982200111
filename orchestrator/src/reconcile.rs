//! The per-app decision of the reconciler: given an app's desired replica count and its current
//! instances, which instances to add and which to stop. Placement of the new ones is the
//! [`scheduler`](crate::scheduler)'s job.
//!
//! An instance **stays** when it runs the app's current spec on a node that is ready or
//! cordoned (or waits, pending, for one). It is **leaving** when its spec is outdated (a new
//! image or new settings) or its node drains. Leaving instances are replaced first and stopped
//! only once enough staying instances are ready, so a drain or a new image never drops below the
//! replicas that serve; a leaving instance that does not serve anyway is stopped at once.

use gantry_common::cluster::{InstanceState, NodeStatus};
use uuid::Uuid;

/// What the plan needs to know of one instance the app wants running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub id: Uuid,
    pub state: InstanceState,
    /// The status of its node; `None` while it is pending.
    pub node: Option<NodeStatus>,
    /// It runs the app's current spec (image and settings).
    pub current: bool,
    /// Creation order: a larger value is newer.
    pub age_rank: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppPlan {
    /// New instances to place.
    pub create: u32,
    /// Instances to stop and remove, in order.
    pub stop: Vec<Uuid>,
}

/// Plans one app.
///
/// # Guarantees
/// - Idempotent: applying the plan and planning again gives an empty plan (until states change).
/// - Never stops a ready leaving instance while fewer than `replicas` staying ones are ready.
/// - Instances on a down node are stopped (they are lost) and replaced.
pub fn plan_app(replicas: u32, instances: &[InstanceView]) -> AppPlan {
    let replicas = replicas as usize;
    let mut stay = Vec::new();
    let mut leave = Vec::new();
    let mut stop = Vec::new();
    for i in instances {
        match i.node {
            Some(NodeStatus::Down) => stop.push(i),
            Some(status) if status.evacuating() => leave.push(i),
            _ if !i.current => leave.push(i),
            _ => stay.push(i),
        }
    }

    // Scaling down: remove the least useful first (pending, then failing, then starting, then
    // ready), the newest first among equals.
    if stay.len() > replicas {
        stay.sort_by_key(|i| (usefulness(i), std::cmp::Reverse(i.age_rank)));
        let surplus = stay.len() - replicas;
        stop.extend(stay.drain(..surplus));
    }
    let create = (replicas - stay.len()) as u32;

    let ready_staying = stay
        .iter()
        .filter(|i| i.state == InstanceState::Ready)
        .count();
    for i in leave {
        if ready_staying >= replicas || i.state != InstanceState::Ready {
            stop.push(i);
        }
    }
    AppPlan {
        create,
        stop: stop.into_iter().map(|i| i.id).collect(),
    }
}

/// Lower is removed first when scaling down.
fn usefulness(i: &InstanceView) -> u8 {
    match i.state {
        InstanceState::Pending => 0,
        InstanceState::ImagePullError | InstanceState::CrashLoop => 1,
        InstanceState::Stopped
        | InstanceState::Draining
        | InstanceState::Stopping
        | InstanceState::Lost => 1,
        InstanceState::Creating => 2,
        InstanceState::Running => 3,
        InstanceState::Ready => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::*;

    fn inst(
        n: u128,
        state: InstanceState,
        node: Option<NodeStatus>,
        current: bool,
    ) -> InstanceView {
        InstanceView {
            id: Uuid::from_u128(n),
            state,
            node,
            current,
            age_rank: n as u64,
        }
    }

    const READY_NODE: Option<NodeStatus> = Some(NodeStatus::Ready);

    fn ids(ns: &[u128]) -> Vec<Uuid> {
        ns.iter().map(|n| Uuid::from_u128(*n)).collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            replicas: u32,
            instances: Vec<InstanceView>,
            create: u32,
            stop: Vec<u128>,
        }
        let cases = [
            Case {
                name: "a new app creates every replica",
                replicas: 3,
                instances: vec![],
                create: 3,
                stop: vec![],
            },
            Case {
                name: "steady state is an empty plan",
                replicas: 2,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, READY_NODE, true),
                ],
                create: 0,
                stop: vec![],
            },
            Case {
                name: "scale up adds the difference",
                replicas: 5,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Running, READY_NODE, true),
                ],
                create: 3,
                stop: vec![],
            },
            Case {
                name: "scale down removes pending, then failing, then the newest ready",
                replicas: 1,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, READY_NODE, true),
                    inst(3, CrashLoop, READY_NODE, true),
                    inst(4, Pending, None, true),
                ],
                create: 0,
                stop: vec![4, 3, 2],
            },
            Case {
                name: "scale to zero stops everything",
                replicas: 0,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, READY_NODE, false),
                ],
                create: 0,
                stop: vec![1, 2],
            },
            Case {
                name: "a lost node's instances are stopped and replaced",
                replicas: 3,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, READY_NODE, true),
                    inst(3, Ready, Some(NodeStatus::Down), true),
                ],
                create: 1,
                stop: vec![3],
            },
            Case {
                name: "a drain replaces first and keeps the old replica while the new one starts",
                replicas: 2,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, Some(NodeStatus::Draining), true),
                ],
                create: 1,
                stop: vec![],
            },
            Case {
                name: "a drain stops the old replica once the replacement is ready",
                replicas: 2,
                instances: vec![
                    inst(1, Ready, READY_NODE, true),
                    inst(2, Ready, Some(NodeStatus::Draining), true),
                    inst(3, Ready, READY_NODE, true),
                ],
                create: 0,
                stop: vec![2],
            },
            Case {
                name: "a new image rolls: outdated ready instances wait for ready replacements",
                replicas: 2,
                instances: vec![
                    inst(1, Ready, READY_NODE, false),
                    inst(2, CrashLoop, READY_NODE, false),
                    inst(3, Running, READY_NODE, true),
                ],
                create: 1,
                stop: vec![2],
            },
            Case {
                name: "cordoned nodes keep their instances",
                replicas: 1,
                instances: vec![inst(1, Ready, Some(NodeStatus::Cordoned), true)],
                create: 0,
                stop: vec![],
            },
            Case {
                name: "pending instances count as staying (no duplicate placement)",
                replicas: 2,
                instances: vec![inst(1, Pending, None, true), inst(2, Pending, None, true)],
                create: 0,
                stop: vec![],
            },
        ];
        for case in cases {
            let plan = plan_app(case.replicas, &case.instances);
            assert_eq!(plan.create, case.create, "{}: create", case.name);
            assert_eq!(plan.stop, ids(&case.stop), "{}: stop", case.name);
        }
    }
}
