//! Autoscaling: the policy an app's replica count follows (`PUT …/autoscaling`) and the
//! decisions the autoscaler made with it.
//!
//! The autoscaler works like a Kubernetes HorizontalPodAutoscaler: it sizes the app so that each
//! ready instance sees about the target CPU use or request rate, within `min..=max` (and the
//! team's quota). It scales up as soon as a metric asks for it and scales down only once a lower
//! count has been recommended for the whole `scale_down_stabilization_seconds`, so a short lull
//! does not take away instances the next burst needs. The decision itself is the orchestrator's
//! `autoscale::decide`; this module holds what the API and the dashboard exchange.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::app_limits::MAX_REPLICAS;

/// A metric within this fraction of its target counts as on target: the app keeps its size.
/// Without it, the noise of every sample would move the replica count by one back and forth.
pub const TOLERANCE: f64 = 0.1;

/// `target_cpu_percent` may be at most 90. An instance cannot use more CPU than it reserved
/// (`cpu_millis` is also its cap), so its use never reads above 100 %; with a target above
/// 100 / (1 + [`TOLERANCE`]) ≈ 90.9 even a saturated app would sit within the tolerance and never
/// scale up, only down.
pub const TARGET_CPU_PERCENT: RangeInclusive<u32> = 1..=90;

/// The most requests per second per instance a policy may aim for.
pub const MAX_TARGET_RPS_PER_INSTANCE: f64 = 1_000_000.0;

pub const DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS: u32 = 300;

/// Up to an hour: a longer window keeps instances for a load that is long gone.
pub const SCALE_DOWN_STABILIZATION_SECONDS: RangeInclusive<u32> = 0..=3600;

/// `PUT /api/v1/teams/{team}/apps/{app}/autoscaling`: scale the app between `min` and `max`
/// replicas by CPU use, by requests per instance, or by both (the larger count wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// The fewest replicas the autoscaler leaves the app (the team's quota may allow fewer).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, example = 1))]
    pub min: u32,
    /// The most replicas the autoscaler gives the app.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, example = 5))]
    pub max: u32,
    /// The mean CPU use of the ready instances to aim for, in percent of each instance's
    /// reserved CPU (`cpu_millis`). At most 90: instances cannot use more than they reserved,
    /// and a higher target could never scale the app up.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 90, example = 50))]
    pub target_cpu_percent: Option<u32>,
    /// The requests per second each ready instance should serve, as the router counts them.
    #[cfg_attr(
        feature = "openapi",
        schema(exclusive_minimum = 0, maximum = 1000000, example = 100)
    )]
    pub target_rps_per_instance: Option<f64>,
    /// How long a lower replica count must have been recommended before the app scales down
    /// to it (default 300). Scaling up never waits.
    #[serde(default = "default_stabilization")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 3600, default = 300)
    )]
    pub scale_down_stabilization_seconds: u32,
}

fn default_stabilization() -> u32 {
    DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS
}

impl Autoscaling {
    /// Checks the policy, naming the first field that is wrong and what would be right.
    pub fn validate(&self) -> Result<(), String> {
        if self.min == 0 {
            // Waking an app from zero is another feature (the router would have to hold requests
            // while an instance starts); until then an autoscaled app keeps one.
            return Err(
                "min must be at least 1: the autoscaler does not scale from zero (to stop the \
                 app, turn autoscaling off and scale it to 0)"
                    .into(),
            );
        }
        if self.max > MAX_REPLICAS {
            return Err(format!("max ({}) must be at most {MAX_REPLICAS}", self.max));
        }
        if self.min > self.max {
            return Err(format!(
                "min ({}) must not exceed max ({})",
                self.min, self.max
            ));
        }
        if self.target_cpu_percent.is_none() && self.target_rps_per_instance.is_none() {
            return Err(
                "give target_cpu_percent, target_rps_per_instance or both: the autoscaler needs \
                 a metric to scale by"
                    .into(),
            );
        }
        if let Some(cpu) = self.target_cpu_percent {
            if !TARGET_CPU_PERCENT.contains(&cpu) {
                return Err(format!(
                    "target_cpu_percent ({cpu}) must be between {} and {}: it is a share of each \
                     instance's reserved CPU, which an instance cannot exceed, so a higher target \
                     could never scale the app up",
                    TARGET_CPU_PERCENT.start(),
                    TARGET_CPU_PERCENT.end()
                ));
            }
        }
        if let Some(rps) = self.target_rps_per_instance {
            if !rps.is_finite() || rps <= 0.0 || rps > MAX_TARGET_RPS_PER_INSTANCE {
                return Err(format!(
                    "target_rps_per_instance ({rps}) must be a number above 0 and at most \
                     {MAX_TARGET_RPS_PER_INSTANCE}"
                ));
            }
        }
        if !SCALE_DOWN_STABILIZATION_SECONDS.contains(&self.scale_down_stabilization_seconds) {
            return Err(format!(
                "scale_down_stabilization_seconds ({}) must be between {} and {}",
                self.scale_down_stabilization_seconds,
                SCALE_DOWN_STABILIZATION_SECONDS.start(),
                SCALE_DOWN_STABILIZATION_SECONDS.end()
            ));
        }
        Ok(())
    }
}

/// One decision of the autoscaler, as the dashboard lists them: the metrics it saw, the replica
/// count before and after, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoscalerDecision {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Replicas before the decision.
    pub from: u32,
    /// Replicas after it (equal to `from` when it held the count).
    pub to: u32,
    /// The mean CPU use of the ready instances, in percent of their reserved CPU (`null`
    /// when none was known).
    pub cpu_percent: Option<f64>,
    /// Requests per second per ready instance (`null` when none was known).
    pub rps_per_instance: Option<f64>,
    /// The inputs and the rule, e.g. `cpu 90 % (target 50 %) → 2; scale 1 → 2`.
    pub reason: String,
}

/// `GET …/autoscaling`: the policy (`null`: off), the replica count now and the newest
/// decisions first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoscalingStatus {
    pub policy: Option<Autoscaling>,
    pub replicas: u32,
    /// The 50 newest decisions that changed the replica count or held back a change, newest
    /// first.
    pub decisions: Vec<AutoscalerDecision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Result<Autoscaling, String> {
        let p: Autoscaling = serde_json::from_str(json).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    #[test]
    fn the_documented_example_parses_with_the_default_stabilization() {
        let p = policy(r#"{"min":1,"max":5,"target_cpu_percent":50}"#).unwrap();
        assert_eq!(
            p,
            Autoscaling {
                min: 1,
                max: 5,
                target_cpu_percent: Some(50),
                target_rps_per_instance: None,
                scale_down_stabilization_seconds: 300,
            }
        );
        let p = policy(
            r#"{"min":2,"max":100,"target_rps_per_instance":12.5,"target_cpu_percent":90,
                "scale_down_stabilization_seconds":0}"#,
        )
        .unwrap();
        assert_eq!(p.target_rps_per_instance, Some(12.5));
        assert_eq!(p.scale_down_stabilization_seconds, 0);
    }

    #[test]
    fn bad_policies_are_refused_with_what_is_wrong() {
        let cases = [
            (
                r#"{"min":3,"max":2,"target_cpu_percent":50}"#,
                "min (3) must not exceed max (2)",
            ),
            (
                r#"{"min":0,"max":2,"target_cpu_percent":50}"#,
                "min must be at least 1",
            ),
            (
                r#"{"min":1,"max":101,"target_cpu_percent":50}"#,
                "max (101) must be at most 100",
            ),
            (
                r#"{"min":1,"max":5}"#,
                "give target_cpu_percent, target_rps_per_instance or both",
            ),
            (
                r#"{"min":1,"max":5,"target_cpu_percent":null,"target_rps_per_instance":null}"#,
                "give target_cpu_percent",
            ),
            (
                r#"{"min":1,"max":5,"target_cpu_percent":0}"#,
                "target_cpu_percent (0) must be between 1 and 90",
            ),
            (
                r#"{"min":1,"max":5,"target_cpu_percent":91}"#,
                "target_cpu_percent (91) must be between 1 and 90",
            ),
            (
                r#"{"min":1,"max":5,"target_rps_per_instance":0}"#,
                "target_rps_per_instance (0) must be a number above 0",
            ),
            (
                r#"{"min":1,"max":5,"target_rps_per_instance":-3.5}"#,
                "target_rps_per_instance (-3.5) must be",
            ),
            (
                r#"{"min":1,"max":5,"target_rps_per_instance":1000001}"#,
                "at most 1000000",
            ),
            (
                r#"{"min":1,"max":5,"target_cpu_percent":50,"scale_down_stabilization_seconds":3601}"#,
                "scale_down_stabilization_seconds (3601) must be between 0 and 3600",
            ),
        ];
        for (json, message) in cases {
            let err = policy(json).unwrap_err();
            assert!(err.contains(message), "{json}: {err}");
        }
        // JSON has no NaN or infinity, but a policy built in code can hold them.
        for rps in [f64::NAN, f64::INFINITY] {
            let p = Autoscaling {
                target_rps_per_instance: Some(rps),
                ..policy(r#"{"min":1,"max":5,"target_cpu_percent":50}"#).unwrap()
            };
            assert!(p
                .validate()
                .unwrap_err()
                .contains("target_rps_per_instance"));
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        for json in [
            r#"{"min":1,"max":5,"target_cpu":50}"#,
            r#"{"min":1,"max":5,"target_cpu_percent":50,"behavior":{}}"#,
            r#"{"min":-1,"max":5,"target_cpu_percent":50}"#,
            r#"{"min":1,"max":5,"target_cpu_percent":"50"}"#,
            r#"{"max":5,"target_cpu_percent":50}"#,
        ] {
            assert!(serde_json::from_str::<Autoscaling>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn decisions_serialize_their_time_as_rfc3339() {
        let d = AutoscalerDecision {
            at: time::macros::datetime!(2026-12-01 12:00 UTC),
            from: 1,
            to: 2,
            cpu_percent: Some(90.0),
            rps_per_instance: None,
            reason: "cpu 90 % (target 50 %) → 2; scale 1 → 2".into(),
        };
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["at"], "2026-12-01T12:00:00Z");
        assert_eq!(json["rps_per_instance"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<AutoscalerDecision>(json).unwrap(),
            d
        );
    }
}
