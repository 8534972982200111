//! Canary and blue-green rollouts: the steps that move a release from beside the stable one to
//! in its place. Both keep the stable release at full size throughout, so that an abort is only
//! a change of weights (instant) followed by the new set's removal.
//!
//! A canary walks its steps: `set_weight` scales the new set in proportion to the weight (at
//! least one instance) and moves the weight once those instances are ready; a pause waits for
//! its time (or, without one, for `promote`). Analysis is judged on every pass while the new
//! release gets traffic, pauses included, and a person's pause stops only the advance. After the
//! last step the new set grows to full size and then replaces the stable one.
//!
//! Blue-green brings the new set up at full size (step 0), waits ready at the preview host
//! (step 1) for `promote` or its automatic promotion, flips all traffic (step 2), keeps the old
//! set for the scale-down delay, then replaces it.

use gantry_common::releases::{CanaryStep, Strategy};

use super::analysis::{judge, Verdict};
use super::{apply_if_needed, check_health, settle, AppView, Promote, ReleaseView, Step};

/// The next steps of the in-flight release `t` beside the serving release `stable`.
///
/// # Assumptions
/// `strategy` is canary or blue-green; `stable` is active.
pub(super) fn plan(
    app: &AppView,
    t: &ReleaseView,
    stable: &ReleaseView,
    strategy: &Strategy,
    steps: &mut Vec<Step>,
) {
    let state = &t.rollout;
    let wanted = match strategy {
        Strategy::Canary { steps: list, .. } => match list.get(state.step as usize) {
            Some(CanaryStep::SetWeight(w)) => canary_size(app.replicas, *w),
            Some(CanaryStep::PauseSeconds(_)) => canary_size(app.replicas, state.weight),
            None => app.replicas,
        },
        _ => app.replicas,
    };
    if let Err(reason) = check_health(app, t, wanted, steps) {
        abort(app, t, stable, reason, steps);
        return;
    }
    // The stable release stays at full size; sets of any other release go.
    apply_if_needed(app, stable, app.replicas, steps);
    apply_if_needed(app, t, wanted, steps);
    for r in &app.releases {
        let live = r.set.as_ref().is_some_and(|s| !s.removed);
        if live && r.id != t.id && r.id != stable.id {
            steps.push(Step::Remove { release: r.id });
        }
    }
    let ready = t
        .set
        .as_ref()
        .filter(|s| !s.removed)
        .map_or(0, |s| s.ready.min(s.replicas));
    let wait = |why: String| Step::Wait { release: t.id, why };
    // Seconds since the current step began (a step that has no start yet began now).
    let elapsed = (app.now - state.step_started_at.unwrap_or(app.now))
        .whole_seconds()
        .max(0) as u64;

    match strategy {
        Strategy::Canary {
            steps: list,
            analysis,
            ..
        } => {
            if let (Some(a), Some(window)) = (analysis, &app.window) {
                if state.weight > 0 {
                    if let Verdict::Breach(reason) = judge(a, window) {
                        abort(app, t, stable, reason, steps);
                        return;
                    }
                }
            }
            if state.paused {
                steps.push(wait("paused: resume to continue".into()));
                return;
            }
            let n = list.len() as u32;
            if state.promote == Promote::Full && state.step < n {
                steps.push(advance(
                    t,
                    n,
                    state.weight,
                    format!(
                        "promoted in full: skipping to the end, v{} scales to {} instances",
                        t.version, app.replicas
                    ),
                ));
                return;
            }
            match list.get(state.step as usize) {
                None if ready >= app.replicas => {
                    steps.push(Step::Activate { release: t.id });
                    steps.push(Step::Remove { release: stable.id });
                }
                None => steps.push(wait(format!(
                    "scaling to full size: {ready} of {} instances ready",
                    app.replicas
                ))),
                Some(CanaryStep::SetWeight(w)) if ready >= wanted => steps.push(advance(
                    t,
                    state.step + 1,
                    *w,
                    format!(
                        "weight {w} %: {ready} canary instance(s) of v{} ready",
                        t.version
                    ),
                )),
                Some(CanaryStep::SetWeight(w)) => steps.push(wait(format!(
                    "{ready} of {wanted} canary instances ready for weight {w} %"
                ))),
                Some(CanaryStep::PauseSeconds(_)) if state.promote == Promote::Next => {
                    steps.push(advance(
                        t,
                        state.step + 1,
                        state.weight,
                        "pause ended by promote".into(),
                    ))
                }
                Some(CanaryStep::PauseSeconds(Some(s))) if elapsed >= u64::from(*s) => {
                    steps.push(advance(
                        t,
                        state.step + 1,
                        state.weight,
                        format!("pause of {s} s over at weight {} %", state.weight),
                    ))
                }
                Some(CanaryStep::PauseSeconds(Some(s))) => {
                    steps.push(wait(format!("pause: {} s left", u64::from(*s) - elapsed)))
                }
                Some(CanaryStep::PauseSeconds(None)) => {
                    steps.push(wait("promote (an indefinite pause)".into()))
                }
            }
        }
        Strategy::BlueGreen {
            auto_promote_seconds,
            scale_down_delay_seconds,
        } => match state.step {
            0 if ready >= app.replicas => steps.push(advance(
                t,
                1,
                0,
                format!(
                    "v{} is ready at the preview host: {ready} instances",
                    t.version
                ),
            )),
            0 => steps.push(wait(format!(
                "{ready} of {} new instances ready",
                app.replicas
            ))),
            1 => {
                let auto = auto_promote_seconds.filter(|_| !state.paused);
                if state.promote != Promote::No {
                    steps.push(promote(t, stable, "promoted".into()));
                } else if let Some(s) = auto.filter(|&s| elapsed >= u64::from(s)) {
                    steps.push(promote(
                        t,
                        stable,
                        format!("promoted automatically after {s} s ready"),
                    ));
                } else if let Some(s) = auto {
                    steps.push(wait(format!(
                        "promote (automatic in {} s)",
                        u64::from(s) - elapsed
                    )));
                } else {
                    steps.push(wait("promote".into()));
                }
            }
            _ => {
                let since = state
                    .promoted_at
                    .map_or(0, |at| (app.now - at).whole_seconds().max(0) as u64);
                let delay = u64::from(*scale_down_delay_seconds);
                if state.paused {
                    steps.push(wait(format!(
                        "paused: v{} stays up until resumed",
                        stable.version
                    )));
                } else if since >= delay {
                    steps.push(Step::Activate { release: t.id });
                    steps.push(Step::Remove { release: stable.id });
                } else {
                    steps.push(wait(format!(
                        "v{} stays up {} s more (abort flips back to it)",
                        stable.version,
                        delay - since
                    )));
                }
            }
        },
        Strategy::Rolling { .. } => {}
    }
}

/// Instances of the new release for `weight` percent of the traffic: in proportion, rounded
/// up, at least one.
pub(crate) fn canary_size(replicas: u32, weight: u32) -> u32 {
    let scaled = (u64::from(replicas) * u64::from(weight.min(100))).div_ceil(100);
    (scaled as u32).max(1)
}

fn advance(t: &ReleaseView, step: u32, weight: u32, text: String) -> Step {
    Step::Advance {
        release: t.id,
        step,
        weight,
        promoted: false,
        text,
    }
}

fn promote(t: &ReleaseView, stable: &ReleaseView, why: String) -> Step {
    Step::Advance {
        release: t.id,
        step: 2,
        weight: 100,
        promoted: true,
        text: format!(
            "{why}: all traffic to v{}, v{} kept for the scale-down delay",
            t.version, stable.version
        ),
    }
}

/// The rollout stops: the stable release takes all traffic at full size, the new set goes.
fn abort(
    app: &AppView,
    t: &ReleaseView,
    stable: &ReleaseView,
    reason: String,
    steps: &mut Vec<Step>,
) {
    steps.push(Step::Abort {
        release: t.id,
        reason,
    });
    settle(app, Some(stable), steps);
}

#[cfg(test)]
mod tests {
    //! The canary and blue-green state machines as a table. Every case is also a restart: the
    //! plan sees only what is persisted (the release's rollout state) and the cluster, so a
    //! server that restarts in that state takes the same step.

    use std::time::Duration;

    use gantry_common::releases::{Analysis, ReleaseStatus, WindowFigures};
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::super::{plan as plan_app, RolloutState, SetView};
    use super::*;

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

    fn canary() -> Strategy {
        Strategy::Canary {
            steps: vec![
                CanaryStep::SetWeight(10),
                CanaryStep::PauseSeconds(Some(30)),
                CanaryStep::SetWeight(50),
                CanaryStep::PauseSeconds(None),
            ],
            analysis: Some(Analysis {
                max_error_percent: Some(5.0),
                max_p99_ms: None,
                window_seconds: 10,
                min_requests: 20,
            }),
            sticky: false,
        }
    }

    fn blue_green(auto: Option<u32>) -> Strategy {
        Strategy::BlueGreen {
            auto_promote_seconds: auto,
            scale_down_delay_seconds: 300,
        }
    }

    /// An app of 4 replicas: v1 stable at full size, v2 rolling out with `strategy` at `step`
    /// and `weight`, whose step began `ago` seconds before now.
    fn app(
        strategy: Strategy,
        step: u32,
        weight: u32,
        ago: i64,
        new_set: Option<SetView>,
    ) -> AppView {
        AppView {
            replicas: 4,
            strategy: strategy.clone(),
            progress_deadline: Duration::from_secs(300),
            now: NOW,
            window: None,
            releases: vec![
                ReleaseView {
                    id: id(1),
                    version: 1,
                    status: ReleaseStatus::Active,
                    progressed_at: None,
                    ready_seen: 0,
                    set: set(4, 4),
                    rollout: RolloutState::default(),
                },
                ReleaseView {
                    id: id(2),
                    version: 2,
                    status: ReleaseStatus::RollingOut,
                    progressed_at: Some(NOW),
                    ready_seen: new_set.as_ref().map_or(0, |s| s.ready),
                    set: new_set,
                    rollout: RolloutState {
                        strategy: Some(strategy),
                        step,
                        weight,
                        step_started_at: Some(NOW - time::Duration::seconds(ago)),
                        ..RolloutState::default()
                    },
                },
            ],
        }
    }

    fn with(mut app: AppView, f: impl FnOnce(&mut RolloutState)) -> AppView {
        f(&mut app.releases[1].rollout);
        app
    }

    fn window(requests: u64, error_percent: f64) -> Option<WindowFigures> {
        Some(WindowFigures {
            requests,
            error_percent: Some(error_percent),
            p99_ms: Some(3.0),
        })
    }

    fn apply(v: u32, replicas: u32) -> Step {
        Step::Apply {
            release: id(v),
            replicas,
        }
    }

    fn advance(step: u32, weight: u32, text: &str) -> Step {
        Step::Advance {
            release: id(2),
            step,
            weight,
            promoted: false,
            text: text.into(),
        }
    }

    fn wait(why: &str) -> Step {
        Step::Wait {
            release: id(2),
            why: why.into(),
        }
    }

    #[test]
    fn canary_size_follows_the_weight_with_at_least_one() {
        assert_eq!(canary_size(4, 0), 1);
        assert_eq!(canary_size(4, 10), 1);
        assert_eq!(canary_size(4, 50), 2);
        assert_eq!(canary_size(4, 51), 3);
        assert_eq!(canary_size(4, 100), 4);
        assert_eq!(canary_size(0, 50), 1);
    }

    #[test]
    fn table() {
        let abort = |reason: &str| {
            vec![
                Step::Abort {
                    release: id(2),
                    reason: reason.into(),
                },
                Step::Remove { release: id(2) },
            ]
        };
        let cases: Vec<(&str, AppView, Vec<Step>)> = vec![
            (
                "canary starts: one instance, no traffic yet",
                with(app(canary(), 0, 0, 0, None), |r| r.strategy = None),
                vec![
                    apply(2, 1),
                    wait("0 of 1 canary instances ready for weight 10 %"),
                ],
            ),
            (
                "the canary instance is ready: weight 10 %",
                app(canary(), 0, 0, 5, set(1, 1)),
                vec![advance(1, 10, "weight 10 %: 1 canary instance(s) of v2 ready")],
            ),
            (
                "pausing: time left is shown",
                app(canary(), 1, 10, 12, set(1, 1)),
                vec![wait("pause: 18 s left")],
            ),
            (
                "the pause is over",
                app(canary(), 1, 10, 30, set(1, 1)),
                vec![advance(2, 10, "pause of 30 s over at weight 10 %")],
            ),
            (
                "weight 50 %: two instances first",
                app(canary(), 2, 10, 0, set(1, 1)),
                vec![
                    apply(2, 2),
                    wait("1 of 2 canary instances ready for weight 50 %"),
                ],
            ),
            (
                "an indefinite pause waits for promote",
                app(canary(), 3, 50, 3_600, set(2, 2)),
                vec![wait("promote (an indefinite pause)")],
            ),
            (
                "promote ends the indefinite pause",
                with(app(canary(), 3, 50, 3_600, set(2, 2)), |r| {
                    r.promote = Promote::Next
                }),
                vec![advance(4, 50, "pause ended by promote")],
            ),
            (
                "after the last step the canary grows to full size",
                app(canary(), 4, 50, 0, set(2, 2)),
                vec![apply(2, 4), wait("scaling to full size: 2 of 4 instances ready")],
            ),
            (
                "full size and ready: it replaces the stable release",
                app(canary(), 4, 50, 0, set(4, 4)),
                vec![Step::Activate { release: id(2) }, Step::Remove { release: id(1) }],
            ),
            (
                "a person's pause holds the steps (the pause is long over)",
                with(app(canary(), 1, 10, 600, set(1, 1)), |r| r.paused = true),
                vec![wait("paused: resume to continue")],
            ),
            (
                "promote in full skips the remaining steps",
                with(app(canary(), 1, 10, 0, set(1, 1)), |r| r.promote = Promote::Full),
                vec![advance(
                    4,
                    10,
                    "promoted in full: skipping to the end, v2 scales to 4 instances",
                )],
            ),
            (
                "analysis breach aborts (during a pause)",
                AppView {
                    window: window(212, 48.0),
                    ..app(canary(), 1, 10, 5, set(1, 1))
                },
                abort("canary 5xx 48 % > 5 % over last 10 s, 212 requests"),
            ),
            (
                "analysis breach aborts even when paused by a person",
                AppView {
                    window: window(212, 48.0),
                    ..with(app(canary(), 3, 50, 5, set(2, 2)), |r| r.paused = true)
                },
                abort("canary 5xx 48 % > 5 % over last 10 s, 212 requests"),
            ),
            (
                "too few requests: no verdict, the pause goes on",
                AppView {
                    window: window(19, 100.0),
                    ..app(canary(), 1, 10, 5, set(1, 1))
                },
                vec![wait("pause: 25 s left")],
            ),
            (
                "a crash-looping canary aborts",
                app(
                    canary(),
                    1,
                    10,
                    5,
                    Some(SetView {
                        failing: Some("crash_loop: exited 1".into()),
                        ..set(1, 0).unwrap()
                    }),
                ),
                abort("v2 failed: crash_loop: exited 1"),
            ),
            (
                "a canary never ready within the deadline aborts",
                AppView {
                    now: NOW + time::Duration::seconds(301),
                    ..app(canary(), 0, 0, 0, set(1, 0))
                },
                abort("v2 did not become ready within the progress deadline (300 s): 0 of 1 instances ready"),
            ),
            (
                "blue-green brings the new release up at full size",
                with(app(blue_green(None), 0, 0, 0, None), |r| r.strategy = None),
                vec![apply(2, 4), wait("0 of 4 new instances ready")],
            ),
            (
                "blue-green all ready: served at the preview host",
                app(blue_green(None), 0, 0, 0, set(4, 4)),
                vec![advance(1, 0, "v2 is ready at the preview host: 4 instances")],
            ),
            (
                "blue-green waits for promote",
                app(blue_green(None), 1, 0, 9_999, set(4, 4)),
                vec![wait("promote")],
            ),
            (
                "blue-green automatic promotion counts down",
                app(blue_green(Some(60)), 1, 0, 20, set(4, 4)),
                vec![wait("promote (automatic in 40 s)")],
            ),
            (
                "blue-green promotes itself after the healthy period",
                app(blue_green(Some(60)), 1, 0, 60, set(4, 4)),
                vec![Step::Advance {
                    release: id(2),
                    step: 2,
                    weight: 100,
                    promoted: true,
                    text: "promoted automatically after 60 s ready: all traffic to v2, v1 kept for the scale-down delay".into(),
                }],
            ),
            (
                "a person's pause holds the automatic promotion",
                with(app(blue_green(Some(60)), 1, 0, 600, set(4, 4)), |r| r.paused = true),
                vec![wait("promote")],
            ),
            (
                "blue-green promote flips",
                with(app(blue_green(None), 1, 0, 5, set(4, 4)), |r| r.promote = Promote::Next),
                vec![Step::Advance {
                    release: id(2),
                    step: 2,
                    weight: 100,
                    promoted: true,
                    text: "promoted: all traffic to v2, v1 kept for the scale-down delay".into(),
                }],
            ),
            (
                "after promotion the old release stays for the delay",
                with(app(blue_green(None), 2, 100, 0, set(4, 4)), |r| {
                    r.promoted_at = Some(NOW - time::Duration::seconds(100))
                }),
                vec![wait("v1 stays up 200 s more (abort flips back to it)")],
            ),
            (
                "after the delay the old release goes",
                with(app(blue_green(None), 2, 100, 0, set(4, 4)), |r| {
                    r.promoted_at = Some(NOW - time::Duration::seconds(300))
                }),
                vec![Step::Activate { release: id(2) }, Step::Remove { release: id(1) }],
            ),
        ];
        for (name, app, want) in cases {
            assert_eq!(plan_app(&app), want, "{name}");
        }
    }

    #[test]
    fn after_an_abort_the_stable_release_serves_alone() {
        let mut aborted = app(canary(), 3, 50, 0, set(2, 2));
        aborted.releases[1].status = ReleaseStatus::Aborted;
        assert_eq!(plan_app(&aborted), vec![Step::Remove { release: id(2) }]);
        // A stable set that shrank in the meantime is brought back to full size.
        aborted.releases[0].set = set(2, 2);
        assert_eq!(
            plan_app(&aborted),
            vec![apply(1, 4), Step::Remove { release: id(2) }]
        );
    }

    #[test]
    fn a_first_release_under_a_canary_strategy_rolls_out_at_once() {
        let mut first = app(canary(), 0, 0, 0, None);
        first.releases.remove(0);
        first.releases[0].status = ReleaseStatus::Pending;
        assert_eq!(
            plan_app(&first),
            vec![Step::Start { release: id(2) }, apply(2, 4)]
        );
    }
}
