//! Builds from `git push`: an app's git remote, its build settings, and the builds themselves.
//!
//! A push to the app's deploy branch (`main` unless set) at `<server>/git/<team>/<app>.git` is
//! built before the branch moves: the pushed commit's `Dockerfile` is built on a worker node's
//! engine, pushed to the built-in registry as `<team>/<app>:<short commit>` and released with
//! the app's strategy. A failed build rejects the push. Builds are numbered per app (1, 2, 3…)
//! and their log lines join the app's log with `stream = "build"` and `build = <number>`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::names::{string_newtype, ConfigKey, NameError};

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Waiting for the app's previous build to finish.
    Queued,
    Running,
    /// Built, pushed and released.
    Succeeded,
    Failed,
    Cancelled,
}

impl BuildStatus {
    pub const ALL: [BuildStatus; 5] = [
        BuildStatus::Queued,
        BuildStatus::Running,
        BuildStatus::Succeeded,
        BuildStatus::Failed,
        BuildStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::Running => "running",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Queued or running: it can still be cancelled.
    pub fn is_active(self) -> bool {
        matches!(self, BuildStatus::Queued | BuildStatus::Running)
    }
}

/// One build of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Build {
    /// 1, 2, 3… per app: `GET …/builds/{number}`, and `build` in the app's log lines.
    pub number: u32,
    pub status: BuildStatus,
    /// The pushed commit (full hexadecimal id).
    pub commit: String,
    /// The branch pushed (the app's deploy branch at the time).
    pub branch: String,
    /// The Dockerfile built (a path in the repository).
    pub dockerfile: String,
    /// The image pushed to the built-in registry, once built: `<host>/<team>/<app>:<short commit>`.
    pub image: Option<String>,
    /// The release it made, once succeeded.
    pub release: Option<u32>,
    /// Why it failed or was cancelled.
    pub message: Option<String>,
    /// The node whose engine built it.
    pub node: Option<String>,
    /// Who pushed: `alice@example.com`, or `alice@example.com (token "ci")`.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// From start to finish (or until now, while it runs), in seconds.
    pub duration_seconds: Option<f64>,
}

/// One line of a build's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildLine {
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    pub line: String,
}

/// `GET …/builds/{number}`: a build and its log (the last [`BuildDetail::MAX_LINES`] lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildDetail {
    pub build: Build,
    /// Oldest first. Live: the app's log stream with `?build=<number>`.
    pub log: Vec<BuildLine>,
    /// Older lines were left out.
    pub truncated: bool,
}

impl BuildDetail {
    pub const MAX_LINES: usize = 10_000;
}

/// `GET …/build-settings`: how the app's pushes are built, and where to push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildSettings {
    /// The app's git remote: `git remote add gantry <url>`, then `git push gantry <branch>`.
    pub remote_url: String,
    /// A push to this branch is built and released; other branches are only stored.
    pub deploy_branch: String,
    /// The Dockerfile's path in the repository.
    pub dockerfile: String,
    /// The names of the build args passed to `docker build` (values are never shown).
    pub build_arg_names: Vec<String>,
}

/// `PUT …/build-settings`: an absent field keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetBuildSettings {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 255))]
    pub deploy_branch: Option<BranchName>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 255))]
    pub dockerfile: Option<DockerfilePath>,
    /// Replaces all build args (`{}` removes them). They reach `docker build --build-arg`; the
    /// engine's classic builder keeps them in the image's history, so secrets belong in config
    /// vars, which reach the app at run time.
    #[cfg_attr(feature = "openapi", schema(schema_with = build_args_schema))]
    pub build_args: Option<BuildArgs>,
}

/// The schema of build args: names as config var names, values within
/// [`BuildArgs::MAX_VALUE_BYTES`], at most [`BuildArgs::MAX`].
#[cfg(feature = "openapi")]
fn build_args_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    let names = match ConfigKey::schema() {
        RefOr::T(schema) => Some(schema),
        RefOr::Ref(_) => None,
    };
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(BuildArgs::MAX_VALUE_BYTES))
        .examples(["https://registry.npmjs.org/"]);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(names)
        .additional_properties(Some(value))
        .max_properties(Some(BuildArgs::MAX))
        .description(Some(
            "Build args by name (at most 50, values of at most 4 KiB); `{}` removes them.",
        ))
        .into()
}

string_newtype!(
    /// A branch name as `git check-ref-format --branch` accepts it (and a little stricter: no
    /// control characters or spaces, at most 255 bytes).
    BranchName
);

impl BranchName {
    pub const DEFAULT: &'static str = "main";
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let fail = |why: &str| Err(NameError(format!("branch name {s:?} is not valid: {why}")));
        if s.is_empty() {
            return Err(NameError("branch names must not be empty".into()));
        }
        if s.len() > Self::MAX_LEN {
            return fail("at most 255 bytes");
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return fail("no spaces or control characters");
        }
        if let Some(c) = s.chars().find(|c| "~^:?*[\\".contains(*c)) {
            return fail(&format!("{c:?} is not allowed in a git ref"));
        }
        if s.starts_with('-') || s.starts_with('/') || s.ends_with('/') || s.ends_with('.') {
            return fail("it must not start with '-' or '/', or end with '/' or '.'");
        }
        if s.contains("..") || s.contains("//") || s.contains("@{") || s == "@" {
            return fail("'..', '//' and '@{' are not allowed");
        }
        if s.split('/')
            .any(|part| part.starts_with('.') || part.ends_with(".lock"))
        {
            return fail("no part may start with '.' or end with '.lock'");
        }
        Ok(Self(s.to_owned()))
    }

    /// `refs/heads/<name>`.
    pub fn git_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

string_newtype!(
    /// A Dockerfile's path inside the repository: relative, `/`-separated, without `.` or `..`
    /// parts, at most 255 bytes.
    DockerfilePath
);

impl DockerfilePath {
    pub const DEFAULT: &'static str = "Dockerfile";

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let fail = |why: &str| {
            Err(NameError(format!(
                "Dockerfile path {s:?} is not valid: {why}"
            )))
        };
        if s.is_empty() {
            return Err(NameError("the Dockerfile path must not be empty".into()));
        }
        if s.len() > 255 {
            return fail("at most 255 bytes");
        }
        if s.chars().any(|c| c.is_control() || c == '\\') {
            return fail("no control characters or backslashes");
        }
        if s.starts_with('/') {
            return fail("it must be relative to the repository's root");
        }
        if s.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return fail("no empty, '.' or '..' parts");
        }
        Ok(Self(s.to_owned()))
    }
}

/// Build args: names as config var names, at most [`BuildArgs::MAX`] of them, values of at most
/// 4 KiB. `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct BuildArgs(BTreeMap<String, String>);

impl BuildArgs {
    pub const MAX: usize = 50;
    pub const MAX_VALUE_BYTES: usize = 4096;

    pub fn parse(args: BTreeMap<String, String>) -> Result<Self, NameError> {
        if args.len() > Self::MAX {
            return Err(NameError(format!(
                "at most {} build args, not {}",
                Self::MAX,
                args.len()
            )));
        }
        for (name, value) in &args {
            ConfigKey::parse(name).map_err(|e| {
                NameError(format!(
                    "build arg: {}",
                    e.0.replace("config var", "build arg")
                ))
            })?;
            if value.len() > Self::MAX_VALUE_BYTES {
                return Err(NameError(format!(
                    "build arg {name}: values are at most {} bytes",
                    Self::MAX_VALUE_BYTES
                )));
            }
            if value.contains('\0') {
                return Err(NameError(format!(
                    "build arg {name}: values must not contain NUL characters"
                )));
            }
        }
        Ok(Self(args))
    }

    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl TryFrom<BTreeMap<String, String>> for BuildArgs {
    type Error = NameError;
    fn try_from(args: BTreeMap<String, String>) -> Result<Self, NameError> {
        Self::parse(args)
    }
}

impl From<BuildArgs> for BTreeMap<String, String> {
    fn from(args: BuildArgs) -> Self {
        args.0
    }
}

impl fmt::Debug for BuildArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The first 12 hexadecimal digits of a commit id: its image tag.
pub fn short_commit(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hexadecimal digits.
pub fn is_commit_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_follow_gits_rules() {
        for ok in ["main", "release/2026-12", "feature_x", "v1.2", "ünïcode"] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "/x",
            "x/",
            "x.",
            "a..b",
            "a//b",
            "a b",
            "a\tb",
            "x~1",
            "x^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "x@{1}",
            "@",
            ".hidden",
            "a/.b",
            "x.lock",
            "$(touch /tmp/pwned)",
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            BranchName::parse("main").unwrap().git_ref(),
            "refs/heads/main"
        );
    }

    #[test]
    fn dockerfile_paths_stay_inside_the_repository() {
        for ok in ["Dockerfile", "docker/web.Dockerfile", "a b/Dockerfile"] {
            assert!(DockerfilePath::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../Dockerfile",
            "a/../../b",
            "./Dockerfile",
            "a//b",
            "a\\b",
            "a\nb",
        ] {
            assert!(DockerfilePath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn build_args_are_checked_and_their_values_never_shown_in_debug() {
        let args = BuildArgs::parse(BTreeMap::from([("TOKEN".into(), "hunter2".into())])).unwrap();
        assert!(!format!("{args:?}").contains("hunter2"));
        assert!(BuildArgs::parse(BTreeMap::from([("1X".into(), "v".into())])).is_err());
        assert!(BuildArgs::parse(BTreeMap::from([("X".into(), "a\0b".into())])).is_err());
        let many = (0..51).map(|i| (format!("A{i}"), String::new())).collect();
        assert!(BuildArgs::parse(many).is_err());
    }

    #[test]
    fn commit_ids_are_full_lowercase_hex() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(is_commit_id(&"0".repeat(64)));
        assert!(!is_commit_id(&"A".repeat(40)));
        assert!(!is_commit_id("abc"));
        assert!(!is_commit_id(&format!("{};", "a".repeat(39))));
        assert_eq!(short_commit(&"ab".repeat(20)), "abababababab");
    }
}
