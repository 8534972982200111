//! Releases and rollouts: every change that alters what an app runs is a numbered release, and
//! a release reaches the app's instances through a rollout of the app's strategy.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a release is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Created; its rollout has not started yet.
    Pending,
    /// Its instances are being started and the previous release's taken out.
    RollingOut,
    /// It serves the app.
    Active,
    /// It never became ready (or crashed, or its image could not be pulled); `reason` says why.
    /// The release before it kept serving.
    Failed,
    /// A newer release replaced it: after it served, or before its rollout finished.
    Superseded,
    /// A progressive rollout (canary, blue-green) was aborted by a person or by its analysis.
    Aborted,
}

impl ReleaseStatus {
    pub const ALL: [ReleaseStatus; 6] = [
        ReleaseStatus::Pending,
        ReleaseStatus::RollingOut,
        ReleaseStatus::Active,
        ReleaseStatus::Failed,
        ReleaseStatus::Superseded,
        ReleaseStatus::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::RollingOut => "rolling_out",
            ReleaseStatus::Active => "active",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Pending or rolling out: a rollout is under way (or about to be).
    pub fn in_flight(self) -> bool {
        matches!(self, ReleaseStatus::Pending | ReleaseStatus::RollingOut)
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One release, as `GET …/releases` lists it (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    /// 1, 2, 3… per app.
    pub version: u32,
    pub status: ReleaseStatus,
    /// Why it failed (or was superseded or aborted).
    pub reason: Option<String>,
    pub image: String,
    /// `registry`: from this server's registry, pinned by digest; `external`: from elsewhere
    /// (a public registry, an image built on the node).
    pub image_source: ImageSource,
    /// The image's id (`sha256:…`) as the first node that ran it reported it; instances of
    /// this release run exactly that image.
    pub image_digest: Option<String>,
    /// The port the app listens on; `null` for a worker (not routed).
    pub port: Option<u16>,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub health_check_path: String,
    /// The names of the config vars it runs with (values are never shown here).
    pub config_keys: Vec<String>,
    /// What made it, e.g. `Deploy gantry-hello:2`, `Set GREETING`, `Rollback to v1`.
    pub cause: String,
    /// The version a rollback release copied.
    pub rollback_of: Option<u32>,
    /// Who made it: `alice@example.com`, or `alice@example.com (token "ci")`.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its rollout started.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it became active, failed or was superseded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// Where a release's image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    /// This server's registry: a repository of the app's team, pinned by digest.
    Registry,
    /// Anywhere else: the nodes' engines pull it (or have it) themselves.
    External,
}

impl ImageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSource::Registry => "registry",
            ImageSource::External => "external",
        }
    }
}

/// `POST …/rollback`: make a new release from an old one (its image, config and settings).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The release to return to; default: the last release that served before the current one.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2147483647))]
    pub version: Option<u32>,
}

/// How an app's new releases replace the old (`PUT …/strategy`). It applies to the next release
/// (a deploy, a config change or a rollback); a canary or blue-green rollout under way keeps the
/// strategy it started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Start new instances (at most `max_surge` above the replica count), wait until they are
    /// ready and routed, then take old ones out of the route and stop them, keeping at least
    /// `replicas - max_unavailable` ready throughout.
    Rolling {
        #[serde(default = "one")]
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
        max_surge: u32,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
        max_unavailable: u32,
    },
    /// Send a share of the traffic to the new release, step by step, beside the stable release
    /// (which keeps its full size). The new release's set is scaled in proportion to its weight
    /// (at least one instance). After the last step it takes 100 %. `analysis`, when given, is
    /// evaluated continuously while the new release gets traffic, pauses included; a breach
    /// aborts the rollout. An app's first release has nothing to compare with and rolls out at
    /// once.
    Canary {
        #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
        steps: Vec<CanaryStep>,
        #[serde(default)]
        analysis: Option<Analysis>,
        /// Keep each client on the release it first got, by a `gantry_release` cookie.
        #[serde(default)]
        sticky: bool,
    },
    /// Bring the new release up at full size beside the old one, served only at the preview host
    /// `preview.<app>.<team>.<apps-domain>`; `promote` flips all traffic at once. The old release
    /// stays up for `scale_down_delay_seconds` after that, so an `abort` flips back instantly.
    BlueGreen {
        /// Promote by itself once the new release has been ready this long; `null`: wait for
        /// `promote`.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86400))]
        auto_promote_seconds: Option<u32>,
        #[serde(default = "five_minutes")]
        #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86400))]
        scale_down_delay_seconds: u32,
    },
}

/// One step of a canary: `{"set_weight": 10}` or `{"pause_seconds": 30}`; `{"pause_seconds":
/// null}` waits for `promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CanaryStep {
    /// Percent of the traffic (0–100) the new release gets from now on, once its instances for
    /// that share are ready.
    SetWeight(u32),
    /// Wait this many seconds (analysis keeps running), or until `promote` when `null`.
    PauseSeconds(Option<u32>),
}

// Written out because the derive cannot bound a variant's unnamed field (the document bounds
// every number a request carries).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for CanaryStep {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, OneOfBuilder, SchemaType, Type,
        };
        let step = |name: &str, what: &str, max: u32, nullable: bool| {
            let types = if nullable {
                SchemaType::from_iter([Type::Integer, Type::Null])
            } else {
                SchemaType::new(Type::Integer)
            };
            ObjectBuilder::new()
                .property(
                    name,
                    ObjectBuilder::new()
                        .schema_type(types)
                        .minimum(Some(0))
                        .maximum(Some(max))
                        .description(Some(what)),
                )
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(step(
                "set_weight",
                "Percent of the traffic the new release gets from now on, once its instances for that share are ready.",
                100,
                false,
            ))
            .item(step(
                "pause_seconds",
                "Wait this many seconds (analysis keeps running), or until promote when null.",
                Strategy::MAX_SECONDS,
                true,
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for CanaryStep {}

/// Absolute thresholds on the canary's traffic, over a sliding window of the router's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Abort when more than this percent of the canary's answers are 5xx.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub max_error_percent: Option<f64>,
    /// Abort when the canary's 99th percentile time to response headers exceeds this.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 600000))]
    pub max_p99_ms: Option<u32>,
    /// The sliding window the figures cover.
    #[serde(default = "ten")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub window_seconds: u32,
    /// Fewer canary requests than this in the window: no verdict yet.
    #[serde(default = "twenty")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub min_requests: u32,
}

fn one() -> u32 {
    1
}

fn ten() -> u32 {
    10
}

fn twenty() -> u32 {
    20
}

fn five_minutes() -> u32 {
    300
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Rolling {
            max_surge: 1,
            max_unavailable: 0,
        }
    }
}

impl Strategy {
    pub const MAX_STEP: u32 = 100;
    pub const MAX_CANARY_STEPS: usize = 20;
    pub const MAX_SECONDS: u32 = 86_400;

    pub fn kind(&self) -> &'static str {
        match self {
            Strategy::Rolling { .. } => "rolling",
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue_green",
        }
    }

    /// Canary or blue-green: weights, pauses, promote and abort.
    pub fn is_progressive(&self) -> bool {
        !matches!(self, Strategy::Rolling { .. })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Strategy::Rolling {
                max_surge,
                max_unavailable,
            } => {
                if *max_surge > Self::MAX_STEP || *max_unavailable > Self::MAX_STEP {
                    return Err(format!(
                        "max_surge and max_unavailable must be between 0 and {}",
                        Self::MAX_STEP
                    ));
                }
                if *max_surge == 0 && *max_unavailable == 0 {
                    return Err("max_surge and max_unavailable cannot both be 0: the rollout could never replace an instance".into());
                }
                Ok(())
            }
            Strategy::Canary {
                steps, analysis, ..
            } => {
                if steps.is_empty() || steps.len() > Self::MAX_CANARY_STEPS {
                    return Err(format!(
                        "a canary needs 1 to {} steps, e.g. [{{\"set_weight\":10}},{{\"pause_seconds\":30}}]",
                        Self::MAX_CANARY_STEPS
                    ));
                }
                for (i, step) in steps.iter().enumerate() {
                    match *step {
                        CanaryStep::SetWeight(w) if w > 100 => {
                            return Err(format!(
                                "step {}: set_weight must be a percent between 0 and 100, not {w}",
                                i + 1
                            ))
                        }
                        CanaryStep::PauseSeconds(Some(s)) if s > Self::MAX_SECONDS => {
                            return Err(format!(
                                "step {}: pause_seconds must be at most {} (a day), or null to wait for promote",
                                i + 1,
                                Self::MAX_SECONDS
                            ))
                        }
                        _ => {}
                    }
                }
                if let Some(a) = analysis {
                    a.validate()?;
                }
                Ok(())
            }
            Strategy::BlueGreen {
                auto_promote_seconds,
                scale_down_delay_seconds,
            } => {
                if auto_promote_seconds.is_some_and(|s| s > Self::MAX_SECONDS)
                    || *scale_down_delay_seconds > Self::MAX_SECONDS
                {
                    return Err(format!(
                        "auto_promote_seconds and scale_down_delay_seconds must be at most {} (a day)",
                        Self::MAX_SECONDS
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Analysis {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_error_percent.is_none() && self.max_p99_ms.is_none() {
            return Err(
                "analysis needs max_error_percent or max_p99_ms (or leave analysis out)".into(),
            );
        }
        if let Some(p) = self.max_error_percent {
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "analysis.max_error_percent must be between 0 and 100, not {p}"
                ));
            }
        }
        if self.max_p99_ms.is_some_and(|ms| ms == 0 || ms > 600_000) {
            return Err("analysis.max_p99_ms must be between 1 and 600000".into());
        }
        if self.window_seconds == 0 || self.window_seconds > 3_600 {
            return Err("analysis.window_seconds must be between 1 and 3600".into());
        }
        if self.min_requests == 0 || self.min_requests > 1_000_000 {
            return Err("analysis.min_requests must be between 1 and 1000000".into());
        }
        Ok(())
    }
}

/// The progress of an app's newest rollout (`GET …/rollouts/current`), for the dashboard and
/// `gantry rollout status`. A rollout is named by the release it rolls out: rollout 7 rolls out
/// v7.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    /// The release being rolled out (or the last one that was); also the rollout's id.
    pub release: u32,
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    /// The release that served before it, if any.
    pub from: Option<u32>,
    /// The strategy it rolls out with.
    pub strategy: Strategy,
    /// Replicas the app wants.
    pub desired: u32,
    /// Instances of the new release asked for, and ready (routed).
    pub updated: u32,
    pub ready: u32,
    /// Instances of older releases still running.
    pub old: u32,
    /// Canary: the index (from 0) of the step under way; the number of steps once they are all
    /// done and the new release is being scaled to full size. Blue-green: 0 while the new
    /// release comes up, 1 once it is ready (waiting for promote), 2 once promoted.
    pub step: u32,
    /// Percent of the main host's traffic the new release gets now.
    pub weight: u32,
    /// Paused by a person: no step advances (analysis keeps running).
    pub paused: bool,
    /// What the rollout waits for now, e.g. `pause: 12 s left`, `promote`, `2 of 3 new
    /// instances ready`, or the team quota.
    pub waiting: Option<String>,
    /// Canary analysis: the latest figures of the canary (and of the stable release beside
    /// them) over the analysis window.
    pub analysis: Option<AnalysisFigures>,
    /// Blue-green: where the new release is served before (and after) promotion.
    pub preview_url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub promoted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When the rollout fails unless more new instances become ready.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Every transition with its reason, oldest first.
    pub history: Vec<RolloutTransition>,
    /// What may be done to it now (by a member or above): the actions that would not be
    /// refused with a 409.
    pub actions: Vec<RolloutAction>,
}

/// An action on a rollout under way (`POST …/rollouts/{n}/<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    Promote,
    /// `promote?full=true`.
    PromoteFull,
    Pause,
    Resume,
    Abort,
}

/// One recorded transition of a rollout (also written to the app's event stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutTransition {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub step: u32,
    pub weight: u32,
    /// What happened and why, e.g. `weight 10 %: 1 canary instance ready`.
    pub text: String,
}

/// Canary and stable figures over the analysis window, with the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalysisFigures {
    pub window_seconds: u32,
    pub canary: WindowFigures,
    pub stable: Option<WindowFigures>,
    /// `ok`, `waiting for 20 requests (7 so far)`, or the breach that aborted the rollout.
    pub verdict: String,
}

/// One release set's traffic over a window, as the router counted it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowFigures {
    pub requests: u64,
    /// Share of 5xx answers in percent; `null` without requests.
    pub error_percent: Option<f64>,
    /// Estimated 99th percentile time to response headers; `null` without requests.
    pub p99_ms: Option<f64>,
}

/// A frame of `GET …/rollouts/current/stream`: the rollout whenever it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RolloutFrame {
    /// The app's current rollout, whole.
    Rollout { rollout: Box<Rollout> },
    /// The app has no release yet.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in ReleaseStatus::ALL {
            assert_eq!(ReleaseStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn strategies_parse_with_defaults_and_refuse_nonsense() {
        let s: Strategy = serde_json::from_str(r#"{"kind":"rolling"}"#).unwrap();
        assert_eq!(s, Strategy::default());
        let s: Strategy =
            serde_json::from_str(r#"{"kind":"rolling","max_surge":0,"max_unavailable":1}"#)
                .unwrap();
        assert!(s.validate().is_ok());
        let s: Strategy =
            serde_json::from_str(r#"{"kind":"rolling","max_surge":0,"max_unavailable":0}"#)
                .unwrap();
        assert!(s.validate().unwrap_err().contains("both be 0"));
        assert!(serde_json::from_str::<Strategy>(r#"{"kind":"canary"}"#).is_err());
        assert!(serde_json::from_str::<Strategy>(r#"{"kind":"linear"}"#).is_err());
        assert!(serde_json::from_str::<Strategy>(r#"{"kind":"rolling","max_surg":1}"#).is_err());
        assert_eq!(
            serde_json::to_value(Strategy::default()).unwrap(),
            serde_json::json!({"kind": "rolling", "max_surge": 1, "max_unavailable": 0})
        );
    }

    #[test]
    fn the_documented_progressive_strategies_parse_and_validate() {
        let canary: Strategy = serde_json::from_str(
            r#"{"kind":"canary","steps":[{"set_weight":10},{"pause_seconds":30},{"set_weight":50},{"pause_seconds":30}],
               "analysis":{"max_error_percent":5,"max_p99_ms":500,"window_seconds":10,"min_requests":20}}"#,
        )
        .unwrap();
        canary.validate().unwrap();
        let Strategy::Canary {
            steps,
            analysis,
            sticky,
        } = &canary
        else {
            panic!("{canary:?}")
        };
        assert_eq!(steps[0], CanaryStep::SetWeight(10));
        assert_eq!(steps[3], CanaryStep::PauseSeconds(Some(30)));
        assert_eq!(analysis.as_ref().unwrap().max_p99_ms, Some(500));
        assert!(!sticky);
        let wait: Strategy = serde_json::from_str(
            r#"{"kind":"canary","steps":[{"set_weight":10},{"pause_seconds":null}]}"#,
        )
        .unwrap();
        assert!(
            matches!(&wait, Strategy::Canary { steps, .. } if steps[1] == CanaryStep::PauseSeconds(None))
        );
        assert_eq!(
            serde_json::to_value(&wait).unwrap()["steps"][1],
            serde_json::json!({"pause_seconds": null})
        );
        let bg: Strategy = serde_json::from_str(
            r#"{"kind":"blue_green","auto_promote_seconds":null,"scale_down_delay_seconds":300}"#,
        )
        .unwrap();
        bg.validate().unwrap();
        let bg_defaults: Strategy = serde_json::from_str(r#"{"kind":"blue_green"}"#).unwrap();
        assert_eq!(bg, bg_defaults);
        assert!(bg.is_progressive() && !Strategy::default().is_progressive());
        let defaults: Analysis = serde_json::from_str(r#"{"max_error_percent":1}"#).unwrap();
        assert_eq!((defaults.window_seconds, defaults.min_requests), (10, 20));
    }

    #[test]
    fn bad_progressive_strategies_say_what_is_wrong() {
        let refused = |json: &str| -> String {
            match serde_json::from_str::<Strategy>(json) {
                Ok(s) => s.validate().unwrap_err(),
                Err(e) => e.to_string(),
            }
        };
        assert!(refused(r#"{"kind":"canary","steps":[]}"#).contains("1 to 20 steps"));
        assert!(refused(r#"{"kind":"canary","steps":[{"set_weight":150}]}"#)
            .contains("step 1: set_weight"));
        assert!(refused(
            r#"{"kind":"canary","steps":[{"set_weight":1},{"pause_seconds":100000}]}"#
        )
        .contains("step 2: pause_seconds"));
        assert!(refused(r#"{"kind":"canary","steps":[{"wait":1}]}"#).contains("unknown variant"));
        assert!(
            refused(r#"{"kind":"canary","steps":[{"set_weight":1}],"analysis":{}}"#)
                .contains("max_error_percent or max_p99_ms")
        );
        assert!(refused(
            r#"{"kind":"canary","steps":[{"set_weight":1}],"analysis":{"max_error_percent":101}}"#
        )
        .contains("between 0 and 100"));
        assert!(refused(r#"{"kind":"canary","steps":[{"set_weight":1}],"analysis":{"max_p99_ms":5,"window_seconds":0}}"#)
            .contains("window_seconds"));
        assert!(
            refused(r#"{"kind":"blue_green","scale_down_delay_seconds":90000}"#)
                .contains("at most 86400")
        );
        assert!(refused(r#"{"kind":"blue_green","max_surge":1}"#).contains("unknown field"));
    }
}
