//! Log lines and platform events of an app, as the REST API and the live stream show them.
//!
//! History: `GET /api/v1/teams/{team}/apps/{app}/logs` answers a [`LogPage`]. Live:
//! `GET …/logs/stream` upgrades to a websocket that sends [`LogFrame`]s: first the last lines
//! (the replay), then new lines as they arrive, batched.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a line came from: the container's stdout or stderr, the platform itself (a release
/// created, an instance that changed state, a node lost…), or a build from `git push`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Event,
    Build,
}

impl LogStream {
    pub const ALL: [LogStream; 4] = [
        LogStream::Stdout,
        LogStream::Stderr,
        LogStream::Event,
        LogStream::Build,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Event => "event",
            LogStream::Build => "build",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One line of an app's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogItem {
    /// When the container wrote it (events: when it happened).
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// The instance that wrote it; `null` for an event of the whole app.
    pub instance: Option<Uuid>,
    /// The version of the release the instance ran; `null` for an event of no release.
    pub release: Option<u32>,
    pub stream: LogStream,
    pub line: String,
    /// The build (its number) a `build` line belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<u32>,
}

/// A page of history, oldest line first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    pub items: Vec<LogItem>,
    /// When older lines match too: pass it as `before` to get the page before this one.
    pub before: Option<String>,
}

/// A frame of the live stream (server → client), tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogFrame {
    /// Lines, oldest first.
    Lines { items: Vec<LogItem> },
    /// The replay of recent lines is over; what follows is live.
    Live,
    /// This connection could not keep up and missed `count` lines.
    Dropped { count: u64 },
}

/// How long a team's logs are kept: its own setting, within the platform's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogRetention {
    /// The team's own setting in days; `null`: the platform's.
    pub days: Option<u32>,
    /// The platform's retention (`GANTRY_LOG_RETENTION_DAYS`): the most a team may keep.
    pub platform_days: u32,
    /// What applies: the lesser of the two.
    pub effective_days: u32,
}

/// `PUT /api/v1/teams/{team}/logs/retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetLogRetention {
    /// Days to keep the team's logs and events (at most the platform's); `null` for the
    /// platform's.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub days: Option<u32>,
}
