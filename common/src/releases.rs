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

/// How an app's new releases replace the old (`PUT …/strategy`). Only `rolling` for now; canary
/// and blue-green come with progressive delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn one() -> u32 {
    1
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

    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Strategy::Rolling {
                max_surge,
                max_unavailable,
            } => {
                if max_surge > Self::MAX_STEP || max_unavailable > Self::MAX_STEP {
                    return Err(format!(
                        "max_surge and max_unavailable must be between 0 and {}",
                        Self::MAX_STEP
                    ));
                }
                if max_surge == 0 && max_unavailable == 0 {
                    return Err("max_surge and max_unavailable cannot both be 0: the rollout could never replace an instance".into());
                }
                Ok(())
            }
        }
    }
}

/// The progress of an app's newest rollout, for the dashboard and `gantry rollout status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rollout {
    /// The release being rolled out (or the last one that was).
    pub release: u32,
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    /// The release that served before it, if any.
    pub from: Option<u32>,
    pub strategy: Strategy,
    /// Replicas the app wants.
    pub desired: u32,
    /// Instances of the new release asked for, and ready (routed).
    pub updated: u32,
    pub ready: u32,
    /// Instances of older releases still running.
    pub old: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When the rollout fails unless more new instances become ready.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
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
        assert!(serde_json::from_str::<Strategy>(r#"{"kind":"rolling","max_surg":1}"#).is_err());
        assert_eq!(
            serde_json::to_value(Strategy::default()).unwrap(),
            serde_json::json!({"kind": "rolling", "max_surge": 1, "max_unavailable": 0})
        );
    }
}
