//! The built-in registry's REST views (the registry itself speaks the distribution spec).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What one garbage collection removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    /// Upload sessions untouched for a day, and their bytes.
    pub uploads_expired: u64,
    /// Blobs repositories no longer serve: no manifest of theirs names them.
    pub links_removed: u64,
    /// Blob files no repository has any more.
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
}

/// A tag of a repository in the built-in registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageTag {
    pub tag: String,
    /// The manifest it names (`sha256:…`).
    pub digest: String,
    /// The manifest and the blobs it names.
    pub size_bytes: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub pushed_at: OffsetDateTime,
}

/// An app's repository in the built-in registry (`<team>/<app>`) and how to push to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppImages {
    /// `host[:port]` to `docker login` to.
    pub registry: String,
    /// `<registry>/<team>/<app>`: what to tag and push.
    pub repository: String,
    /// Pushes of this tag deploy the app (`null`: pushes never do).
    pub deploy_on_push: Option<String>,
    /// Newest push first.
    pub tags: Vec<ImageTag>,
}

/// A repository of a team, as its usage shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepositoryUsage {
    /// `<team>/<name>`.
    pub name: String,
    pub tags: u64,
    /// Its blobs (a blob shared with another repository counts in both).
    pub size_bytes: u64,
}

/// What a team's images take in the built-in registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRegistryUsage {
    /// Bytes of the team's blobs, each counted once.
    pub used_bytes: u64,
    /// The most it may store (`null`: no limit).
    pub quota_bytes: Option<u64>,
    pub repositories: Vec<RepositoryUsage>,
}
