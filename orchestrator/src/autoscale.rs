//! The autoscaler's decision, as one pure function: from an app's autoscaling policy, its
//! replica count and what its metrics showed, how many replicas it should run, and why.
//!
//! The rule is the Kubernetes HorizontalPodAutoscaler's (`autoscaling/v2`):
//!
//! 1. Per metric the policy names, the replicas that would bring each instance to the target:
//!    the app's whole load divided by what one instance should carry. For CPU that is
//!    `ceil(ready × cpu_percent / target_cpu_percent)`; for requests,
//!    `ceil(rps / target_rps_per_instance)`.
//! 2. A metric within [`TOLERANCE`] (10 %) of its target asks for the current count, and a
//!    metric never asks to move against itself (a hot metric asks for at least the current
//!    count, a cold one for at most).
//! 3. The recommendation is the largest count a metric with data asks for. Without any data it
//!    is the current count: the app never scales on missing metrics.
//! 4. Scale-down stabilisation: the app shrinks only to the largest recommendation of the last
//!    `scale_down_stabilization_seconds`, so a lower count must have been recommended for the
//!    whole window first. Scale-up is immediate.
//! 5. Clamp to `min..=max`, then to the team's quota (which wins over `min`).
//!
//! # Why ready instances, not all replicas
//! HPA's formula reads `ceil(currentReplicas × observed / target)`, with `observed` the mean of
//! the pods that report. Instances that are still starting carry no load; multiplying the ready
//! ones' mean by every replica counts them as just as busy, and a scale-up snowballs while its
//! new instances start (2 → 4 at 90 % of a 50 % target, then 4 × 1.8 → 8 on the next pass
//! while two of them are still starting). HPA avoids that by counting unready pods as idle when
//! scaling up, which is the same as multiplying by the ready count. For requests the router
//! counts the app's total, so the load is `rps` itself, whatever the number of ready instances.
//!
//! [`decide`] keeps no state: the controller stores each decision's `recommendation` and hands
//! the recent ones back, so running it again after a crash decides the same.

use gantry_common::autoscaling::{Autoscaling, TOLERANCE};
use time::OffsetDateTime;

/// What the decision needs to know of one app.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The app's policy, as [`Autoscaling::validate`] accepted it.
    pub policy: &'a Autoscaling,
    /// Replicas the app has now.
    pub current: u32,
    /// The mean CPU use of the app's ready instances over the last sample, in percent of their
    /// reserved CPU; `None` when no usage is known.
    pub cpu_percent: Option<f64>,
    /// The app's total requests per second through the router over the last window; `None`
    /// when unknown.
    pub rps: Option<f64>,
    /// Instances ready (routed) now.
    pub ready: u32,
    /// The most replicas the team's quota allows this app; `None` for no limit.
    pub quota_max: Option<u32>,
    pub now: OffsetDateTime,
    /// This app's earlier recommendations, oldest first. Those older than the stabilisation
    /// window are ignored, so the controller may keep more than it needs.
    pub recent: &'a [(OffsetDateTime, u32)],
    /// A rollout (rolling, canary, blue-green) is under way.
    pub rollout_in_progress: bool,
}

/// What to do with one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The largest count the metrics asked for, before stabilisation and clamping: what the
    /// controller keeps in `recent` for later decisions.
    pub recommendation: u32,
    /// The replica count to apply.
    pub replicas: u32,
    /// The inputs and the rule, for the app's events and the dashboard, e.g.
    /// `cpu 90 % (target 50 %) → 4; scale 2 → 4`.
    pub reason: String,
}

/// The replica count one app should run.
///
/// # Guarantees
/// - Never scales on missing metrics: with no usable reading, the recommendation is the
///   current count (or `min` at 0).
/// - Scales up at once; scales down only to a count no recommendation of the last
///   `scale_down_stabilization_seconds` exceeds.
/// - The result lies within `min..=max`, and at most at `quota_max`, which wins over `min`.
/// - While a rollout is in progress, `replicas == current`: the rollout sizes its release sets
///   from the replica count, and changing it under a canary would make its sets flap.
/// - The same input gives the same decision.
///
/// # Assumptions
/// - The policy passed [`Autoscaling::validate`]. A target of 0 is nonetheless read as "no
///   data" rather than dividing by it.
/// - `cpu_percent` is a mean over the `ready` instances: with none ready it means nothing and is
///   ignored. Negative or non-finite readings are ignored too.
pub fn decide(input: &Input) -> Decision {
    let policy = input.policy;
    let mut reason = Vec::new();
    // The ratio rule scales the current count, and 0 × anything is 0: an app at zero (new, or
    // scaled to zero before autoscaling was turned on) starts from `min` instead.
    let base = if input.current == 0 {
        reason.push(format!("0 replicas count as min {}", policy.min));
        policy.min
    } else {
        input.current
    };

    let mut recommendation: Option<u32> = None;
    if let Some(target) = policy.target_cpu_percent {
        let reading = usable(input.cpu_percent).filter(|_| input.ready > 0 && target > 0);
        match reading {
            Some(cpu) => {
                let total = cpu * f64::from(input.ready);
                let (wants, within) = wants(base, total, input.ready, f64::from(target));
                reason.push(format!(
                    "cpu {} % (target {target} %) → {wants}{}",
                    num(cpu),
                    tolerance_note(within)
                ));
                recommendation = recommendation.max(Some(wants));
            }
            None if input.cpu_percent.is_some() && input.ready == 0 => {
                reason.push("cpu n/a (no ready instance)".into())
            }
            None => reason.push("cpu n/a".into()),
        }
    }
    if let Some(target) = policy.target_rps_per_instance {
        match usable(input.rps).filter(|_| target > 0.0) {
            Some(rps) => {
                // Requests are counted for the whole app, so the load does not depend on how
                // many instances are ready; the tolerance compares the rate each ready one
                // sees (all of it to one when none is ready yet).
                let (wants, within) = wants(base, rps, input.ready.max(1), target);
                reason.push(format!(
                    "rps {}/s over {} ready (target {}/s each) → {wants}{}",
                    num(rps),
                    input.ready,
                    num(target),
                    tolerance_note(within)
                ));
                recommendation = recommendation.max(Some(wants));
            }
            None => reason.push("rps n/a".into()),
        }
    }
    let recommendation = recommendation.unwrap_or_else(|| {
        reason.push(format!(
            "no metric data: recommend {base} (never scale on missing metrics)"
        ));
        base
    });

    if input.rollout_in_progress {
        reason.push("a rollout is in progress and holds the replica count".into());
        reason.push(format!("keep {}", input.current));
        return Decision {
            recommendation,
            replicas: input.current,
            reason: reason.join("; "),
        };
    }

    // The largest recommendation of the window, this one included: the app may not shrink
    // below it. It does not pull the app up, though: scale-up follows this recommendation
    // alone, not an older and higher one whose load is gone.
    let window = time::Duration::seconds(i64::from(policy.scale_down_stabilization_seconds));
    let floor = input
        .recent
        .iter()
        .filter(|(at, _)| *at >= input.now - window)
        .map(|(_, r)| *r)
        .fold(recommendation, u32::max);
    let stabilized = if recommendation >= base {
        recommendation
    } else if floor >= base {
        reason.push(format!(
            "scale-down to {recommendation} waits for the {} s stabilisation window",
            policy.scale_down_stabilization_seconds
        ));
        base
    } else {
        if floor > recommendation {
            reason.push(format!(
                "scale-down to {recommendation} limited to {floor} by the {} s stabilisation \
                 window",
                policy.scale_down_stabilization_seconds
            ));
        }
        floor
    };

    let mut replicas = stabilized;
    if replicas > policy.max {
        replicas = policy.max;
        reason.push(format!("clamped to max {}", policy.max));
    } else if replicas < policy.min {
        replicas = policy.min;
        reason.push(format!("raised to min {}", policy.min));
    }
    if let Some(quota) = input.quota_max.filter(|q| replicas > *q) {
        replicas = quota;
        // The quota is a promise to the rest of the team; `min` is only this app's wish.
        if quota < policy.min {
            reason.push(format!(
                "the team quota ({}) wins over min {}",
                instances(quota),
                policy.min
            ));
        } else {
            reason.push(format!("clamped to the team quota ({})", instances(quota)));
        }
    }
    if replicas == input.current {
        reason.push(format!("keep {replicas}"));
    } else {
        reason.push(format!("scale {} → {replicas}", input.current));
    }
    Decision {
        recommendation,
        replicas,
        reason: reason.join("; "),
    }
}

/// The replicas one metric asks for, and whether it was within the tolerance: `total` is the
/// app's whole load (in the metric's unit), carried now by `instances`, each of which should
/// carry `target`.
fn wants(base: u32, total: f64, instances: u32, target: f64) -> (u32, bool) {
    let ratio = total / (f64::from(instances) * target);
    if (1.0 - TOLERANCE..=1.0 + TOLERANCE).contains(&ratio) {
        return (base, true);
    }
    // Dividing the total (not multiplying a rounded mean back up) keeps a load of exactly 7
    // instances at 7.0; the small allowance absorbs what rounding is left, which would
    // otherwise ask for an 8th instance for a 7.000000000000001 load. The cast saturates.
    let wanted = (total / target - 1e-9).ceil().max(0.0) as u32;
    let wants = if ratio > 1.0 {
        wanted.max(base)
    } else {
        wanted.min(base)
    };
    (wants, false)
}

/// A reading that can be reasoned with: known, finite and not negative.
fn usable(reading: Option<f64>) -> Option<f64> {
    reading.filter(|v| v.is_finite() && *v >= 0.0)
}

fn tolerance_note(within: bool) -> String {
    if within {
        format!(" (within the {} % tolerance)", num(TOLERANCE * 100.0))
    } else {
        String::new()
    }
}

/// `90`, `12.5`, `0.33`: at most two decimals, none when they are zeros.
fn num(x: f64) -> String {
    // -0.0 passes as a reading and would print as "-0".
    let x = if x == 0.0 { 0.0 } else { x };
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn instances(n: u32) -> String {
    if n == 1 {
        "1 instance".into()
    } else {
        format!("{n} instances")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-01 12:00 UTC);

    fn policy(min: u32, max: u32, cpu: Option<u32>, rps: Option<f64>) -> Autoscaling {
        let p = Autoscaling {
            min,
            max,
            target_cpu_percent: cpu,
            target_rps_per_instance: rps,
            scale_down_stabilization_seconds: 300,
        };
        p.validate().unwrap();
        p
    }

    #[derive(Clone)]
    struct Case {
        name: &'static str,
        policy: Autoscaling,
        current: u32,
        ready: u32,
        cpu: Option<f64>,
        rps: Option<f64>,
        quota: Option<u32>,
        /// Earlier recommendations: (seconds before `NOW`, replicas), oldest first.
        recent: Vec<(i64, u32)>,
        rollout: bool,
        recommendation: u32,
        replicas: u32,
        reason: &'static str,
    }

    /// An app at 2 ready replicas, scaled by CPU at 50 % between 1 and 10, without data.
    fn case(name: &'static str) -> Case {
        Case {
            name,
            policy: policy(1, 10, Some(50), None),
            current: 2,
            ready: 2,
            cpu: None,
            rps: None,
            quota: None,
            recent: vec![],
            rollout: false,
            recommendation: 2,
            replicas: 2,
            reason: "",
        }
    }

    fn run(case: &Case) -> Decision {
        let recent: Vec<(OffsetDateTime, u32)> = case
            .recent
            .iter()
            .map(|&(ago, r)| (NOW - time::Duration::seconds(ago), r))
            .collect();
        decide(&Input {
            policy: &case.policy,
            current: case.current,
            cpu_percent: case.cpu,
            rps: case.rps,
            ready: case.ready,
            quota_max: case.quota,
            now: NOW,
            recent: &recent,
            rollout_in_progress: case.rollout,
        })
    }

    #[test]
    fn table() {
        let rps_100 = policy(1, 10, None, Some(100.0));
        let both = policy(1, 10, Some(50), Some(100.0));
        let window_0 = Autoscaling {
            scale_down_stabilization_seconds: 0,
            ..policy(1, 10, Some(50), None)
        };
        let cases = vec![
            // Scaling up.
            Case {
                cpu: Some(90.0),
                recommendation: 4,
                replicas: 4,
                reason: "cpu 90 % (target 50 %) → 4; scale 2 → 4",
                ..case("cpu above target scales up: 2 × 90 / 50 = 3.6 → 4")
            },
            Case {
                policy: rps_100.clone(),
                rps: Some(450.0),
                recommendation: 5,
                replicas: 5,
                reason: "rps 450/s over 2 ready (target 100/s each) → 5; scale 2 → 5",
                ..case("requests above target scale up: 450 / 100 → 5")
            },
            Case {
                policy: both.clone(),
                cpu: Some(90.0),
                rps: Some(450.0),
                recommendation: 5,
                replicas: 5,
                reason: "cpu 90 % (target 50 %) → 4; rps 450/s over 2 ready (target 100/s each) \
                         → 5; scale 2 → 5",
                ..case("the larger of the two metrics wins (rps)")
            },
            Case {
                policy: both.clone(),
                cpu: Some(90.0),
                rps: Some(150.0),
                recommendation: 4,
                replicas: 4,
                reason: "cpu 90 % (target 50 %) → 4; rps 150/s over 2 ready (target 100/s each) \
                         → 2; scale 2 → 4",
                ..case("the larger of the two metrics wins (cpu)")
            },
            Case {
                policy: both.clone(),
                cpu: Some(10.0),
                rps: Some(450.0),
                recommendation: 5,
                replicas: 5,
                reason: "cpu 10 % (target 50 %) → 1; rps 450/s over 2 ready (target 100/s each) \
                         → 5; scale 2 → 5",
                ..case("one metric cold and the other hot: the hot one wins")
            },
            Case {
                current: 4,
                ready: 1,
                cpu: Some(90.0),
                recommendation: 4,
                replicas: 4,
                reason: "cpu 90 % (target 50 %) → 4; keep 4",
                ..case("instances still starting carry no load: 1 ready × 1.8 does not grow 4")
            },
            Case {
                policy: rps_100.clone(),
                current: 1,
                ready: 0,
                rps: Some(250.0),
                recommendation: 3,
                replicas: 3,
                reason: "rps 250/s over 0 ready (target 100/s each) → 3; scale 1 → 3",
                ..case("requests count even before an instance is ready")
            },
            // The tolerance.
            Case {
                cpu: Some(55.0),
                reason: "cpu 55 % (target 50 %) → 2 (within the 10 % tolerance); keep 2",
                ..case("within 10 % above the target: keep")
            },
            Case {
                cpu: Some(45.0),
                reason: "cpu 45 % (target 50 %) → 2 (within the 10 % tolerance); keep 2",
                ..case("within 10 % below the target: keep")
            },
            Case {
                cpu: Some(56.0),
                recommendation: 3,
                replicas: 3,
                reason: "cpu 56 % (target 50 %) → 3; scale 2 → 3",
                ..case("just outside the tolerance: 2 × 56 / 50 = 2.24 → 3")
            },
            Case {
                current: 7,
                ready: 7,
                cpu: Some(450.0 / 7.0),
                recommendation: 9,
                replicas: 9,
                reason: "cpu 64.29 % (target 50 %) → 9; scale 7 → 9",
                ..case("a load of exactly 9 instances asks for 9, not 10 (7 × 450 / 7 > 450)")
            },
            // Missing metrics.
            Case {
                policy: both.clone(),
                rps: Some(450.0),
                recommendation: 5,
                replicas: 5,
                reason: "cpu n/a; rps 450/s over 2 ready (target 100/s each) → 5; scale 2 → 5",
                ..case("a metric without data is ignored")
            },
            Case {
                policy: both.clone(),
                reason: "cpu n/a; rps n/a; no metric data: recommend 2 (never scale on missing \
                         metrics); keep 2",
                ..case("no data at all: keep the current count")
            },
            Case {
                current: 4,
                recent: vec![(600, 4)],
                policy: both.clone(),
                recommendation: 4,
                replicas: 4,
                cpu: Some(f64::NAN),
                rps: Some(-1.0),
                reason: "cpu n/a; rps n/a; no metric data: recommend 4 (never scale on missing \
                         metrics); keep 4",
                ..case("nonsense readings count as missing")
            },
            Case {
                current: 3,
                ready: 0,
                cpu: Some(5.0),
                recommendation: 3,
                replicas: 3,
                reason: "cpu n/a (no ready instance); no metric data: recommend 3 (never scale \
                         on missing metrics); keep 3",
                ..case("a cpu mean over no ready instance means nothing")
            },
            // Scale-down stabilisation.
            Case {
                current: 4,
                ready: 4,
                cpu: Some(20.0),
                recent: vec![(240, 2), (60, 4), (30, 2)],
                recommendation: 2,
                replicas: 4,
                reason: "cpu 20 % (target 50 %) → 2; scale-down to 2 waits for the 300 s \
                         stabilisation window; keep 4",
                ..case("a scale-down recommended only lately waits")
            },
            Case {
                current: 4,
                ready: 4,
                cpu: Some(20.0),
                recent: vec![(400, 4), (240, 3), (120, 2)],
                recommendation: 2,
                replicas: 3,
                reason: "cpu 20 % (target 50 %) → 2; scale-down to 2 limited to 3 by the 300 s \
                         stabilisation window; scale 4 → 3",
                ..case("a scale-down goes as far as the window allows")
            },
            Case {
                current: 4,
                ready: 4,
                cpu: Some(20.0),
                recent: vec![(301, 4), (240, 2), (120, 2)],
                recommendation: 2,
                replicas: 2,
                reason: "cpu 20 % (target 50 %) → 2; scale 4 → 2",
                ..case("a scale-down recommended for the whole window happens")
            },
            Case {
                current: 4,
                ready: 4,
                cpu: Some(20.0),
                recent: vec![(300, 4), (120, 2)],
                recommendation: 2,
                replicas: 4,
                reason: "cpu 20 % (target 50 %) → 2; scale-down to 2 waits for the 300 s \
                         stabilisation window; keep 4",
                ..case("the window includes its first second")
            },
            Case {
                policy: window_0.clone(),
                current: 4,
                ready: 4,
                cpu: Some(20.0),
                recent: vec![(1, 4)],
                recommendation: 2,
                replicas: 2,
                reason: "cpu 20 % (target 50 %) → 2; scale 4 → 2",
                ..case("a window of 0 scales down at once")
            },
            Case {
                cpu: Some(90.0),
                recent: vec![(60, 2), (30, 1)],
                recommendation: 4,
                replicas: 4,
                reason: "cpu 90 % (target 50 %) → 4; scale 2 → 4",
                ..case("scale-up is immediate")
            },
            Case {
                cpu: Some(75.0),
                recent: vec![(60, 6)],
                recommendation: 3,
                replicas: 3,
                reason: "cpu 75 % (target 50 %) → 3; scale 2 → 3",
                ..case("an older, higher recommendation does not pull the app up")
            },
            // Clamping.
            Case {
                policy: policy(1, 3, Some(50), None),
                cpu: Some(90.0),
                recommendation: 4,
                replicas: 3,
                reason: "cpu 90 % (target 50 %) → 4; clamped to max 3; scale 2 → 3",
                ..case("clamped to max")
            },
            Case {
                policy: Autoscaling {
                    scale_down_stabilization_seconds: 0,
                    ..policy(3, 10, Some(50), None)
                },
                current: 3,
                ready: 3,
                cpu: Some(10.0),
                recommendation: 1,
                replicas: 3,
                reason: "cpu 10 % (target 50 %) → 1; raised to min 3; keep 3",
                ..case("raised to min")
            },
            Case {
                policy: policy(1, 5, Some(50), None),
                current: 8,
                ready: 8,
                cpu: Some(50.0),
                recommendation: 8,
                replicas: 5,
                reason: "cpu 50 % (target 50 %) → 8 (within the 10 % tolerance); clamped to \
                         max 5; scale 8 → 5",
                ..case("a lowered max applies at once")
            },
            Case {
                quota: Some(3),
                cpu: Some(90.0),
                recommendation: 4,
                replicas: 3,
                reason: "cpu 90 % (target 50 %) → 4; clamped to the team quota (3 instances); \
                         scale 2 → 3",
                ..case("clamped to the team quota")
            },
            Case {
                policy: policy(3, 10, Some(50), None),
                current: 3,
                ready: 3,
                quota: Some(1),
                cpu: Some(50.0),
                recommendation: 3,
                replicas: 1,
                reason: "cpu 50 % (target 50 %) → 3 (within the 10 % tolerance); the team \
                         quota (1 instance) wins over min 3; scale 3 → 1",
                ..case("the quota wins over min")
            },
            // Rollouts and an app at zero.
            Case {
                cpu: Some(90.0),
                rollout: true,
                recommendation: 4,
                replicas: 2,
                reason: "cpu 90 % (target 50 %) → 4; a rollout is in progress and holds the \
                         replica count; keep 2",
                ..case("a rollout holds the replica count")
            },
            Case {
                policy: policy(2, 10, Some(50), None),
                current: 0,
                ready: 0,
                reason: "0 replicas count as min 2; cpu n/a; no metric data: recommend 2 (never \
                         scale on missing metrics); scale 0 → 2",
                ..case("an app at 0 starts from min")
            },
            Case {
                policy: rps_100.clone(),
                current: 0,
                ready: 0,
                rps: Some(450.0),
                recommendation: 5,
                replicas: 5,
                reason: "0 replicas count as min 1; rps 450/s over 0 ready (target 100/s each) \
                         → 5; scale 0 → 5",
                ..case("an app at 0 with requests waiting scales to their load")
            },
        ];
        for case in &cases {
            let d = run(case);
            assert_eq!(
                (d.recommendation, d.replicas, d.reason.as_str()),
                (case.recommendation, case.replicas, case.reason),
                "{}",
                case.name
            );
        }
    }

    /// Runs the autoscaler every 15 s against a toy app whose instances are ready at once and
    /// share a fixed CPU load, as the controller will: each recommendation kept in `recent`.
    #[test]
    fn a_steady_load_settles_and_a_drop_waits_for_the_window() {
        let policy = policy(1, 10, Some(50), None);
        let mut replicas = 1;
        let mut recent: Vec<(OffsetDateTime, u32)> = Vec::new();
        let mut history = Vec::new();
        // 1.8 cores' worth of load for 10 minutes, then 0.6: in units of one instance's CPU.
        for pass in 0..80 {
            let now = NOW + time::Duration::seconds(15 * pass);
            let load = if pass < 40 { 180.0 } else { 60.0 };
            let d = decide(&Input {
                policy: &policy,
                current: replicas,
                cpu_percent: Some(load / f64::from(replicas)),
                rps: None,
                ready: replicas,
                quota_max: None,
                now,
                recent: &recent,
                rollout_in_progress: false,
            });
            recent.push((now, d.recommendation));
            replicas = d.replicas;
            history.push(replicas);
        }
        // 180 % of one instance at 50 % each: 4 instances from the first pass, and no flapping.
        assert!(history[..40].iter().all(|&r| r == 4), "{history:?}");
        // 60 % asks for 2 from pass 40 on; the last 4 was recommended at pass 39, so the app
        // shrinks once that is more than 300 s old: at pass 40 + 20.
        assert!(history[40..60].iter().all(|&r| r == 4), "{history:?}");
        assert!(history[60..].iter().all(|&r| r == 2), "{history:?}");
    }
}
