//! Which share of an app's traffic each of its release sets gets, from the releases' statuses
//! and rollout state: what the route sync hands the router.
//!
//! - A canary under way: the new release gets its weight, the stable release the rest, any other
//!   set nothing.
//! - Blue-green under way: the stable release gets everything until promotion, the new release
//!   everything after; the new release is also served alone at the preview host.
//! - Otherwise (rolling, or no rollout) every ready instance gets an equal share, except those of
//!   a failed or aborted release: an abort must take the traffic away at once, before the set's
//!   instances have left.

use gantry_common::releases::{ReleaseStatus, Strategy};
use uuid::Uuid;

use super::RolloutState;

/// A release of the app, as far as traffic goes.
#[derive(Debug, Clone)]
pub struct ReleaseTraffic {
    pub id: Uuid,
    pub status: ReleaseStatus,
    pub rollout: RolloutState,
}

/// One set in the route table: its release and its ready endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetTraffic {
    pub release: Uuid,
    pub endpoints: u32,
}

/// The router's instructions for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Per set, in the order given: `None` everywhere means "in proportion to endpoints".
    pub weights: Vec<Option<u32>>,
    /// The release also served alone at the preview host.
    pub preview: Option<Uuid>,
    /// Keep clients on one release by cookie.
    pub sticky: bool,
}

/// # Guarantees
/// Either every weight is `None` or every weight is `Some`.
pub fn traffic(releases: &[ReleaseTraffic], sets: &[SetTraffic]) -> Traffic {
    let status = |id: Uuid| releases.iter().find(|r| r.id == id).map(|r| r.status);
    let stable = releases.iter().find(|r| r.status == ReleaseStatus::Active);
    let target = releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::RollingOut)
        .max_by_key(|r| r.rollout.step_started_at);
    let explicit = |weight_of: &dyn Fn(Uuid) -> u32| -> Vec<Option<u32>> {
        sets.iter().map(|s| Some(weight_of(s.release))).collect()
    };
    if let (Some(t), Some(stable)) = (target, stable) {
        match &t.rollout.strategy {
            Some(Strategy::Canary { sticky, .. }) => {
                let w = t.rollout.weight.min(100);
                return Traffic {
                    weights: explicit(&|id| match id {
                        id if id == t.id => w,
                        id if id == stable.id => 100 - w,
                        _ => 0,
                    }),
                    preview: None,
                    sticky: *sticky,
                };
            }
            Some(Strategy::BlueGreen { .. }) => {
                let (to_new, to_old) = if t.rollout.step >= 2 {
                    (100, 0)
                } else {
                    (0, 100)
                };
                return Traffic {
                    weights: explicit(&|id| match id {
                        id if id == t.id => to_new,
                        id if id == stable.id => to_old,
                        _ => 0,
                    }),
                    preview: Some(t.id),
                    sticky: false,
                };
            }
            _ => {}
        }
    }
    let stopped = |id: Uuid| {
        matches!(
            status(id),
            Some(ReleaseStatus::Failed | ReleaseStatus::Aborted)
        )
    };
    let weights = if sets.iter().any(|s| stopped(s.release)) {
        sets.iter()
            .map(|s| Some(if stopped(s.release) { 0 } else { s.endpoints }))
            .collect()
    } else {
        vec![None; sets.len()]
    };
    Traffic {
        weights,
        preview: None,
        sticky: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_common::releases::CanaryStep;
    use ReleaseStatus::*;

    fn id(v: u128) -> Uuid {
        Uuid::from_u128(v)
    }

    fn release(
        v: u128,
        status: ReleaseStatus,
        strategy: Option<Strategy>,
        step: u32,
        weight: u32,
    ) -> ReleaseTraffic {
        ReleaseTraffic {
            id: id(v),
            status,
            rollout: RolloutState {
                strategy,
                step,
                weight,
                ..RolloutState::default()
            },
        }
    }

    fn sets(list: &[(u128, u32)]) -> Vec<SetTraffic> {
        list.iter()
            .map(|&(v, endpoints)| SetTraffic {
                release: id(v),
                endpoints,
            })
            .collect()
    }

    fn canary(sticky: bool) -> Option<Strategy> {
        Some(Strategy::Canary {
            steps: vec![CanaryStep::SetWeight(10)],
            analysis: None,
            sticky,
        })
    }

    fn blue_green() -> Option<Strategy> {
        Some(Strategy::BlueGreen {
            auto_promote_seconds: None,
            scale_down_delay_seconds: 300,
        })
    }

    #[test]
    fn table() {
        let rolling = Some(Strategy::default());
        let cases: Vec<(&str, Vec<ReleaseTraffic>, Vec<SetTraffic>, Traffic)> = vec![
            (
                "steady: proportional",
                vec![release(1, Active, None, 0, 0)],
                sets(&[(1, 3)]),
                Traffic {
                    weights: vec![None],
                    preview: None,
                    sticky: false,
                },
            ),
            (
                "rolling update: proportional",
                vec![
                    release(1, Active, None, 0, 0),
                    release(2, RollingOut, rolling, 0, 0),
                ],
                sets(&[(1, 2), (2, 1)]),
                Traffic {
                    weights: vec![None, None],
                    preview: None,
                    sticky: false,
                },
            ),
            (
                "canary at 10 %: leftovers get nothing",
                vec![
                    release(1, Active, None, 0, 0),
                    release(2, RollingOut, canary(true), 1, 10),
                    release(3, Superseded, None, 0, 0),
                ],
                sets(&[(3, 1), (1, 3), (2, 1)]),
                Traffic {
                    weights: vec![Some(0), Some(90), Some(10)],
                    preview: None,
                    sticky: true,
                },
            ),
            (
                "blue-green before promotion: preview only",
                vec![
                    release(1, Active, None, 0, 0),
                    release(2, RollingOut, blue_green(), 1, 0),
                ],
                sets(&[(1, 3), (2, 3)]),
                Traffic {
                    weights: vec![Some(100), Some(0)],
                    preview: Some(id(2)),
                    sticky: false,
                },
            ),
            (
                "blue-green promoted: flipped",
                vec![
                    release(1, Active, None, 0, 0),
                    release(2, RollingOut, blue_green(), 2, 100),
                ],
                sets(&[(1, 3), (2, 3)]),
                Traffic {
                    weights: vec![Some(0), Some(100)],
                    preview: Some(id(2)),
                    sticky: false,
                },
            ),
            (
                "aborted canary: its set gets nothing at once",
                vec![
                    release(1, Active, None, 0, 0),
                    release(2, Aborted, canary(false), 3, 50),
                ],
                sets(&[(1, 3), (2, 2)]),
                Traffic {
                    weights: vec![Some(3), Some(0)],
                    preview: None,
                    sticky: false,
                },
            ),
            (
                "first canary release (no stable): proportional",
                vec![release(1, RollingOut, canary(false), 0, 0)],
                sets(&[(1, 2)]),
                Traffic {
                    weights: vec![None],
                    preview: None,
                    sticky: false,
                },
            ),
        ];
        for (name, releases, sets, want) in cases {
            assert_eq!(traffic(&releases, &sets), want, "{name}");
        }
    }
}
