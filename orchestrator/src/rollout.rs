//! Rollouts, decided as one pure function: from an app's releases and what its cluster shows of
//! their sets, the next steps — how many instances each release set should have, and which
//! release becomes active, fails or is superseded.
//!
//! The rolling strategy works like a Kubernetes Deployment's: the new release's set grows by at
//! most `max_surge` instances above the replica count; old sets shrink only while at least
//! `replicas - max_unavailable` instances stay ready (unready old instances go first: they serve
//! nothing). Which instance of a set goes, and taking it out of the route before it stops, is
//! the cluster's job. A rollout fails at once when a new instance crash-loops or its image
//! cannot be pulled, and when no new instance became ready for the progress deadline; the
//! release that served before is then brought back to full size.
//!
//! Canary and blue-green rollouts (`progressive`) keep a little state of their own (step,
//! traffic weight, pause, promotion) in the release's row; the plan reads it like everything
//! else and moves it on with [`Step::Advance`]. Which share of the traffic each set then gets
//! is `traffic`'s answer; whether the canary's figures breach its thresholds is `analysis`'s.
//!
//! [`plan`] is level-triggered: it looks only at the present, so running it again after a crash
//! (or after its steps were half applied) continues where things are.

pub mod analysis;
mod progressive;
pub mod traffic;

use std::time::Duration;

use gantry_common::releases::{ReleaseStatus, Strategy, WindowFigures};
use time::OffsetDateTime;
use uuid::Uuid;

/// What the plan needs to know of one app.
#[derive(Debug, Clone)]
pub struct AppView {
    /// Replicas the app wants.
    pub replicas: u32,
    pub strategy: Strategy,
    pub progress_deadline: Duration,
    pub now: OffsetDateTime,
    /// The releases that matter, in any order: those in flight or active, and any other that
    /// still has a set in the cluster.
    pub releases: Vec<ReleaseView>,
    /// The in-flight release's traffic over its canary analysis window, when it has one.
    pub window: Option<WindowFigures>,
}

#[derive(Debug, Clone)]
pub struct ReleaseView {
    pub id: Uuid,
    pub version: u32,
    pub status: ReleaseStatus,
    /// When its rollout last made progress (started, or more new instances ready).
    pub progressed_at: Option<OffsetDateTime>,
    /// New instances ready at the last progress.
    pub ready_seen: u32,
    /// Its set in the cluster, if it has one.
    pub set: Option<SetView>,
    /// Where its canary or blue-green rollout is.
    pub rollout: RolloutState,
}

/// The persisted state of a release's rollout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutState {
    /// The strategy it started with; `None` before it started.
    pub strategy: Option<Strategy>,
    /// See `Rollout::step`.
    pub step: u32,
    /// Percent of the main host's traffic it gets.
    pub weight: u32,
    pub step_started_at: Option<OffsetDateTime>,
    pub paused: bool,
    pub promote: Promote,
    pub promoted_at: Option<OffsetDateTime>,
}

/// A promotion a person asked for, not yet taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Promote {
    #[default]
    No,
    /// End the current pause (canary) or flip the traffic (blue-green).
    Next,
    /// Skip every remaining canary step.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    /// Instances asked for.
    pub replicas: u32,
    /// Instances ready and routed.
    pub ready: u32,
    /// A crash loop or image pull error of one of its instances.
    pub failing: Option<String>,
    /// Why an instance is not ready yet.
    pub waiting: Option<String>,
    /// The set runs with the app's current stop grace and ready timeout.
    pub settings_current: bool,
    /// Already being removed.
    pub removed: bool,
}

/// One thing to do. Status steps are recorded in the database; `Apply` and `Remove` go to the
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Give the release's set this many instances (creating it, or bringing it back).
    Apply {
        release: Uuid,
        replicas: u32,
    },
    /// Take the release's set away.
    Remove {
        release: Uuid,
    },
    /// Pending → rolling out.
    Start {
        release: Uuid,
    },
    /// More new instances are ready than before: the progress deadline starts again.
    Progress {
        release: Uuid,
        ready: u32,
    },
    /// The rollout finished: this release serves; the one that served before is superseded.
    Activate {
        release: Uuid,
    },
    /// A newer release replaced this one before its rollout finished.
    Supersede {
        release: Uuid,
        by: u32,
    },
    Fail {
        release: Uuid,
        reason: String,
    },
    /// A canary or blue-green rollout moves on: to `step`, with `weight` percent of the traffic
    /// (`promoted`: blue-green's flip). Takes a promotion that was asked for.
    Advance {
        release: Uuid,
        step: u32,
        weight: u32,
        promoted: bool,
        /// What happened, for the rollout's history and the app's events.
        text: String,
    },
    /// A canary or blue-green rollout stops: its traffic goes back to the stable release and its
    /// set goes.
    Abort {
        release: Uuid,
        reason: String,
    },
    /// Nothing to do yet; this is what the rollout waits for (shown, not stored).
    Wait {
        release: Uuid,
        why: String,
    },
}

/// The next steps for one app.
///
/// # Guarantees
/// - With `max_unavailable = 0`, no step takes the app below `replicas` ready instances that a
///   ready old instance still provides: old instances go only once new ones are ready.
/// - A failed release's set is removed and the active release is applied at full size again.
/// - Idempotent: planning again after the steps were applied, with nothing observed changed,
///   gives no step.
pub fn plan(app: &AppView) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut in_flight: Vec<&ReleaseView> = app
        .releases
        .iter()
        .filter(|r| r.status.in_flight())
        .collect();
    in_flight.sort_by_key(|r| r.version);
    let target = in_flight.pop();
    if let Some(t) = target {
        for older in in_flight {
            steps.push(Step::Supersede {
                release: older.id,
                by: t.version,
            });
        }
    }
    let mut actives: Vec<&ReleaseView> = app
        .releases
        .iter()
        .filter(|r| r.status == ReleaseStatus::Active)
        .collect();
    actives.sort_by_key(|r| r.version);
    let active = actives.pop();
    // Two active releases cannot happen (a unique index forbids it); if they did, the newest
    // serves.
    if let Some(a) = active {
        for older in actives {
            steps.push(Step::Supersede {
                release: older.id,
                by: a.version,
            });
        }
    }
    match target {
        None => settle(app, active, &mut steps),
        Some(t) => {
            // A rollout keeps the strategy it started with; rolling follows the app's (its
            // documented behaviour: a rolling update under way takes new surge values).
            let strategy = match &t.rollout.strategy {
                Some(s) if s.is_progressive() && t.status == ReleaseStatus::RollingOut => s,
                _ => &app.strategy,
            };
            match (strategy, active) {
                (
                    Strategy::Rolling {
                        max_surge,
                        max_unavailable,
                    },
                    _,
                ) => roll(app, t, active, *max_surge, *max_unavailable, &mut steps),
                // Nothing serves yet: nothing to compare with or to keep, so everything starts
                // at once.
                (_, None) => roll(app, t, None, app.replicas.max(1), 0, &mut steps),
                (progressive, Some(stable)) => {
                    progressive::plan(app, t, stable, progressive, &mut steps)
                }
            }
        }
    }
    steps
}

/// No rollout: the active release runs at the app's size; every other set goes.
fn settle(app: &AppView, active: Option<&ReleaseView>, steps: &mut Vec<Step>) {
    if let Some(a) = active {
        apply_if_needed(app, a, app.replicas, steps);
    }
    for r in &app.releases {
        let live_set = r.set.as_ref().is_some_and(|s| !s.removed);
        if live_set && Some(r.id) != active.map(|a| a.id) {
            steps.push(Step::Remove { release: r.id });
        }
    }
}

fn apply_if_needed(app: &AppView, r: &ReleaseView, replicas: u32, steps: &mut Vec<Step>) {
    let up_to_date = r
        .set
        .as_ref()
        .is_some_and(|s| !s.removed && s.replicas == replicas && s.settings_current);
    if !up_to_date {
        steps.push(Step::Apply {
            release: r.id,
            replicas,
        });
    }
    let _ = app;
}

/// Starts the rollout if it is pending, records progress, and says why it failed if it did: an
/// instance crash-loops (or its image cannot be pulled), or fewer than `wanted` new instances
/// became ready and none more for the progress deadline.
fn check_health(
    app: &AppView,
    t: &ReleaseView,
    wanted: u32,
    steps: &mut Vec<Step>,
) -> Result<(), String> {
    let mut progressed_at = t.progressed_at.unwrap_or(app.now);
    if t.status == ReleaseStatus::Pending {
        steps.push(Step::Start { release: t.id });
        progressed_at = app.now;
    }
    let tset = t.set.as_ref().filter(|s| !s.removed);
    let new_ready = tset.map_or(0, |s| s.ready.min(s.replicas));
    if let Some(failing) = tset.and_then(|s| s.failing.as_deref()) {
        return Err(format!("v{} failed: {failing}", t.version));
    }
    if new_ready > t.ready_seen {
        steps.push(Step::Progress {
            release: t.id,
            ready: new_ready,
        });
    } else if app.now - progressed_at > app.progress_deadline && new_ready < wanted {
        let mut reason = format!(
            "v{} did not become ready within the progress deadline ({} s): {new_ready} of {wanted} instances ready",
            t.version,
            app.progress_deadline.as_secs(),
        );
        if let Some(waiting) = tset.and_then(|s| s.waiting.as_deref()) {
            reason.push_str("; ");
            reason.push_str(waiting);
        }
        return Err(reason);
    }
    Ok(())
}

fn roll(
    app: &AppView,
    t: &ReleaseView,
    active: Option<&ReleaseView>,
    max_surge: u32,
    max_unavailable: u32,
    steps: &mut Vec<Step>,
) {
    if let Err(reason) = check_health(app, t, app.replicas, steps) {
        fail(app, t, active, reason, steps);
        return;
    }
    let tset = t.set.as_ref().filter(|s| !s.removed);
    let new_replicas = tset.map_or(0, |s| s.replicas);
    let new_ready = tset.map_or(0, |s| s.ready.min(s.replicas));
    let desired = app.replicas;
    let min_available = desired.saturating_sub(max_unavailable);

    // The old sets, in the order they give up instances: sets left from superseded or failed
    // releases first (oldest first), the release that served last.
    let mut olds: Vec<(&ReleaseView, &SetView)> = app
        .releases
        .iter()
        .filter(|r| r.id != t.id)
        .filter_map(|r| r.set.as_ref().filter(|s| !s.removed).map(|s| (r, s)))
        .collect();
    olds.sort_by_key(|(r, _)| (Some(r.id) == active.map(|a| a.id), r.version));

    // 1. Shrink the old sets: unready instances serve nothing and go at once; ready ones as far
    //    as the availability floor allows.
    let old_ready: u32 = olds.iter().map(|(_, s)| s.ready.min(s.replicas)).sum();
    let mut ready_to_remove = (old_ready + new_ready).saturating_sub(min_available);
    let mut old_after: Vec<(&ReleaseView, &SetView, u32)> = Vec::new();
    for (r, s) in &olds {
        let ready = s.ready.min(s.replicas);
        let take_ready = ready.min(ready_to_remove);
        ready_to_remove -= take_ready;
        old_after.push((r, s, ready - take_ready));
    }
    let old_total_after: u32 = old_after.iter().map(|(_, _, n)| n).sum();

    // 2. Grow the new set within the surge.
    let room = (desired + max_surge).saturating_sub(old_total_after);
    let new_target = desired.min(new_replicas.max(room));

    let done = new_target == desired && new_ready >= desired && old_total_after == 0;
    // Old sets shrink before the new one grows: a cluster that acts between the two steps must
    // never see more than `replicas + max_surge` instances asked for.
    for (r, s, after) in old_after {
        if done || after == 0 && Some(r.id) != active.map(|a| a.id) {
            steps.push(Step::Remove { release: r.id });
        } else if after != s.replicas || !s.settings_current {
            steps.push(Step::Apply {
                release: r.id,
                replicas: after,
            });
        }
    }
    apply_if_needed(app, t, new_target, steps);
    if done {
        steps.push(Step::Activate { release: t.id });
    }
}

/// The release failed: its set goes, the active one returns to full size, leftovers go.
fn fail(
    app: &AppView,
    t: &ReleaseView,
    active: Option<&ReleaseView>,
    reason: String,
    steps: &mut Vec<Step>,
) {
    steps.push(Step::Fail {
        release: t.id,
        reason,
    });
    settle(app, active, steps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus::*;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    fn id(v: u32) -> Uuid {
        Uuid::from_u128(u128::from(v))
    }

    fn set(replicas: u32, ready: u32) -> Option<SetView> {
        Some(SetView {
            replicas,
            ready,
            failing: None,
            waiting: None,
            settings_current: true,
            removed: false,
        })
    }

    fn release(version: u32, status: ReleaseStatus, set: Option<SetView>) -> ReleaseView {
        ReleaseView {
            id: id(version),
            version,
            status,
            progressed_at: status.in_flight().then_some(NOW),
            ready_seen: set.as_ref().map_or(0, |s| s.ready),
            set,
            rollout: RolloutState::default(),
        }
    }

    fn app(replicas: u32, releases: Vec<ReleaseView>) -> AppView {
        AppView {
            replicas,
            strategy: Strategy::default(),
            progress_deadline: Duration::from_secs(300),
            now: NOW,
            releases,
            window: None,
        }
    }

    fn apply(v: u32, replicas: u32) -> Step {
        Step::Apply {
            release: id(v),
            replicas,
        }
    }

    fn remove(v: u32) -> Step {
        Step::Remove { release: id(v) }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            app: AppView,
            steps: Vec<Step>,
        }
        let surge_0_unavailable_1 = |mut a: AppView| {
            a.strategy = Strategy::Rolling {
                max_surge: 0,
                max_unavailable: 1,
            };
            a
        };
        let cases = vec![
            Case {
                name: "steady state: nothing to do",
                app: app(3, vec![release(1, Active, set(3, 3))]),
                steps: vec![],
            },
            Case {
                name: "a scale applies the new size to the active release",
                app: app(5, vec![release(1, Active, set(3, 3))]),
                steps: vec![apply(1, 5)],
            },
            Case {
                name: "an active release whose set vanished is applied again",
                app: app(2, vec![release(1, Active, None)]),
                steps: vec![apply(1, 2)],
            },
            Case {
                name: "changed settings (stop grace) are applied",
                app: app(
                    2,
                    vec![release(
                        1,
                        Active,
                        Some(SetView {
                            settings_current: false,
                            ..set(2, 2).unwrap()
                        }),
                    )],
                ),
                steps: vec![apply(1, 2)],
            },
            Case {
                name: "leftover sets of old releases are removed",
                app: app(
                    1,
                    vec![
                        release(1, Superseded, set(1, 1)),
                        release(2, Failed, set(0, 0)),
                        release(3, Active, set(1, 1)),
                    ],
                ),
                steps: vec![remove(1), remove(2)],
            },
            Case {
                name: "the first deploy starts every replica at once",
                app: app(3, vec![release(1, Pending, None)]),
                steps: vec![Step::Start { release: id(1) }, apply(1, 3)],
            },
            Case {
                name: "the first deploy becomes active once all are ready",
                app: app(3, vec![release(1, RollingOut, set(3, 3))]),
                steps: vec![Step::Activate { release: id(1) }],
            },
            Case {
                name: "rolling starts with one surge instance and keeps every old one",
                app: app(
                    3,
                    vec![release(1, Active, set(3, 3)), release(2, Pending, None)],
                ),
                steps: vec![Step::Start { release: id(2) }, apply(2, 1)],
            },
            Case {
                name: "a new instance not ready yet: wait",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(3, 3)),
                        release(2, RollingOut, set(1, 0)),
                    ],
                ),
                steps: vec![],
            },
            Case {
                name: "one new ready: one old goes and one more new starts",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(3, 3)),
                        ReleaseView {
                            ready_seen: 0,
                            ..release(2, RollingOut, set(1, 1))
                        },
                    ],
                ),
                steps: vec![
                    Step::Progress {
                        release: id(2),
                        ready: 1,
                    },
                    apply(1, 2),
                    apply(2, 2),
                ],
            },
            Case {
                name: "all new ready: the last old goes and the release is active",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(1, 1)),
                        release(2, RollingOut, set(3, 3)),
                    ],
                ),
                steps: vec![remove(1), Step::Activate { release: id(2) }],
            },
            Case {
                name: "unready old instances go at once, ready ones stay",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(3, 1)),
                        release(2, RollingOut, set(1, 0)),
                    ],
                ),
                steps: vec![apply(1, 1), apply(2, 3)],
            },
            Case {
                name: "max_unavailable 1 without surge: take one old out first",
                app: surge_0_unavailable_1(app(
                    3,
                    vec![release(1, Active, set(3, 3)), release(2, Pending, None)],
                )),
                steps: vec![Step::Start { release: id(2) }, apply(1, 2), apply(2, 1)],
            },
            Case {
                name: "a release created mid-rollout supersedes the one rolling out; \
                       its ready instance counts as old capacity",
                app: app(
                    2,
                    vec![
                        release(1, Active, set(1, 1)),
                        release(2, RollingOut, set(2, 1)),
                        release(3, Pending, None),
                    ],
                ),
                steps: vec![
                    Step::Supersede {
                        release: id(2),
                        by: 3,
                    },
                    Step::Start { release: id(3) },
                    apply(2, 1),
                    apply(3, 1),
                ],
            },
            Case {
                name: "a crash loop fails the release at once and restores the old size",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(2, 2)),
                        release(
                            2,
                            RollingOut,
                            Some(SetView {
                                failing: Some("crash_loop: exited with code 1".into()),
                                ..set(2, 1).unwrap()
                            }),
                        ),
                    ],
                ),
                steps: vec![
                    Step::Fail {
                        release: id(2),
                        reason: "v2 failed: crash_loop: exited with code 1".into(),
                    },
                    apply(1, 3),
                    remove(2),
                ],
            },
            Case {
                name: "no progress within the deadline fails the release with the waiting reason",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(3, 3)),
                        ReleaseView {
                            progressed_at: Some(NOW - Duration::from_secs(301)),
                            ..release(
                                2,
                                RollingOut,
                                Some(SetView {
                                    waiting: Some("health check GET /nope answered 404".into()),
                                    ..set(1, 0).unwrap()
                                }),
                            )
                        },
                    ],
                ),
                steps: vec![
                    Step::Fail {
                        release: id(2),
                        reason: "v2 did not become ready within the progress deadline (300 s): \
                                 0 of 3 instances ready; health check GET /nope answered 404"
                            .into(),
                    },
                    remove(2),
                ],
            },
            Case {
                name: "progress within the deadline restarts the clock",
                app: app(
                    3,
                    vec![
                        release(1, Active, set(2, 2)),
                        ReleaseView {
                            progressed_at: Some(NOW - Duration::from_secs(301)),
                            ready_seen: 1,
                            ..release(2, RollingOut, set(2, 2))
                        },
                    ],
                ),
                steps: vec![
                    Step::Progress {
                        release: id(2),
                        ready: 2,
                    },
                    apply(1, 1),
                    apply(2, 3),
                ],
            },
            Case {
                name: "a failed first deploy leaves nothing running",
                app: app(
                    1,
                    vec![release(
                        1,
                        RollingOut,
                        Some(SetView {
                            failing: Some("image_pull_error: no such image".into()),
                            ..set(1, 0).unwrap()
                        }),
                    )],
                ),
                steps: vec![
                    Step::Fail {
                        release: id(1),
                        reason: "v1 failed: image_pull_error: no such image".into(),
                    },
                    remove(1),
                ],
            },
            Case {
                name: "a rollout of an app scaled to zero finishes at once",
                app: app(
                    0,
                    vec![release(1, Active, set(0, 0)), release(2, Pending, None)],
                ),
                steps: vec![
                    Step::Start { release: id(2) },
                    remove(1),
                    apply(2, 0),
                    Step::Activate { release: id(2) },
                ],
            },
        ];
        for case in cases {
            assert_eq!(plan(&case.app), case.steps, "{}", case.name);
        }
    }

    /// Runs a whole rollout against a toy cluster in which every applied instance becomes
    /// ready on the next pass, checking the availability floor at every pass.
    #[test]
    fn a_rolling_rollout_converges_without_dropping_below_the_replicas() {
        for (surge, unavailable) in [(1, 0), (2, 0), (0, 1), (3, 2), (1, 1)] {
            let desired = 5;
            let mut releases = vec![
                release(1, Active, set(desired, desired)),
                release(2, Pending, None),
            ];
            let mut passes = 0;
            loop {
                passes += 1;
                assert!(
                    passes < 50,
                    "surge {surge}, unavailable {unavailable}: no end"
                );
                let view = AppView {
                    strategy: Strategy::Rolling {
                        max_surge: surge,
                        max_unavailable: unavailable,
                    },
                    ..app(desired, releases.clone())
                };
                let steps = plan(&view);
                if steps.is_empty() {
                    break;
                }
                for step in steps {
                    let r = |id: Uuid, releases: &mut Vec<ReleaseView>| {
                        releases.iter().position(|r| r.id == id).unwrap()
                    };
                    match step {
                        Step::Apply { release, replicas } => {
                            let i = r(release, &mut releases);
                            let ready = releases[i].set.as_ref().map_or(0, |s| s.ready);
                            releases[i].set = set(replicas, ready.min(replicas));
                        }
                        Step::Remove { release } => {
                            let i = r(release, &mut releases);
                            releases[i].set = None;
                        }
                        Step::Start { release } => {
                            let i = r(release, &mut releases);
                            releases[i].status = RollingOut;
                        }
                        Step::Progress { release, ready } => {
                            let i = r(release, &mut releases);
                            releases[i].ready_seen = ready;
                        }
                        Step::Activate { release } => {
                            for rel in releases.iter_mut() {
                                if rel.status == Active {
                                    rel.status = Superseded;
                                }
                            }
                            let i = r(release, &mut releases);
                            releases[i].status = Active;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                let ready: u32 = releases
                    .iter()
                    .filter_map(|r| r.set.as_ref())
                    .map(|s| s.ready)
                    .sum();
                let running: u32 = releases
                    .iter()
                    .filter_map(|r| r.set.as_ref())
                    .map(|s| s.replicas)
                    .sum();
                assert!(
                    ready >= desired - unavailable,
                    "surge {surge}, unavailable {unavailable}: {ready} ready"
                );
                assert!(
                    running <= desired + surge,
                    "surge {surge}, unavailable {unavailable}: {running} instances"
                );
                // The cluster makes every asked-for instance ready before the next pass.
                for rel in releases.iter_mut() {
                    if let Some(s) = rel.set.as_mut() {
                        s.ready = s.replicas;
                    }
                }
            }
            assert_eq!(releases[1].status, Active);
            assert_eq!(releases[1].set, set(desired, desired));
            assert!(releases[0].set.is_none());
            assert_eq!(releases[0].status, Superseded);
        }
    }
}
