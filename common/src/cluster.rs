//! REST bodies of the embedded cluster: worker nodes, join tokens, deploys, scaling and the
//! instances (replicas) an app runs as. Shared by the server, the CLI and the dashboard.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::app_limits::MAX_REPLICAS;

// ---- nodes ----

/// A node's status as the scheduler sees it, most important first: a down node is down whatever
/// else an admin asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Heartbeating and accepting new instances.
    Ready,
    /// Missed its heartbeats for longer than the node timeout; its instances are replaced.
    Down,
    /// Keeps its instances but takes no new ones.
    Cordoned,
    /// Its instances are being moved elsewhere (replacements first).
    Draining,
    /// Removed by an admin: drained like `draining`, then deleted, and its credential stops
    /// working.
    Removing,
}

impl NodeStatus {
    /// Down outranks removing, which outranks draining, which outranks cordoned.
    pub fn from_flags(down: bool, cordoned: bool, draining: bool, removing: bool) -> Self {
        match (down, removing, draining, cordoned) {
            (true, _, _, _) => NodeStatus::Down,
            (false, true, _, _) => NodeStatus::Removing,
            (false, false, true, _) => NodeStatus::Draining,
            (false, false, false, true) => NodeStatus::Cordoned,
            (false, false, false, false) => NodeStatus::Ready,
        }
    }

    /// Its instances move elsewhere (replacements first).
    pub fn evacuating(self) -> bool {
        matches!(self, NodeStatus::Draining | NodeStatus::Removing)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
            NodeStatus::Cordoned => "cordoned",
            NodeStatus::Draining => "draining",
            NodeStatus::Removing => "removing",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CPU in millicores (1000 = one core) and memory in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeResources {
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub id: Uuid,
    pub name: String,
    /// The address the node publishes instance ports on.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub status: NodeStatus,
    pub capacity: NodeResources,
    /// Resources promised to the instances placed on it.
    pub allocated: NodeResources,
    /// What its instances use now, as its agent last reported (every few seconds); `null`
    /// while it has no running instance reporting.
    pub used: Option<NodeResources>,
    pub instances: u32,
    pub agent_version: String,
    /// Problems an operator should fix, e.g. a loopback address the router cannot reach.
    pub warnings: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A frame of the live node stream (server → client), tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeFrame {
    /// Every node, as `GET /api/v1/nodes` lists them now.
    Nodes { nodes: Vec<Node> },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// How long agents can use the token to join, in seconds (default 24 hours). A node uses it
    /// once, at its first connection, to register the node's own credential; after that the
    /// token's expiry or revocation does not affect the node.
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 315360000))]
    pub ttl_seconds: Option<u32>,
}

pub const JOIN_TOKEN_DEFAULT_TTL_SECONDS: u32 = 24 * 3600;
pub const JOIN_TOKEN_MIN_TTL_SECONDS: u32 = 60;
pub const JOIN_TOKEN_MAX_TTL_SECONDS: u32 = 10 * 365 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedJoinToken {
    pub id: Uuid,
    /// Give it to `gantry agent --token`. Shown once; stored only as a hash.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A join token as `GET /api/v1/nodes/join-tokens` lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JoinToken {
    pub id: Uuid,
    /// Who made it; `null` for the token `gantry up` makes for its own node.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Nodes that joined with it.
    pub nodes_joined: u32,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

// ---- deploys and scaling ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDeploy {
    /// An image reference the nodes' Docker engines can reach or already have, e.g. `hello:1`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, min_length = 1, max_length = 255, example = "gantry-hello:latest"))]
    pub image: ImageRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scale {
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub replicas: u32,
}

impl Scale {
    pub fn validate(&self) -> Result<(), String> {
        if self.replicas > MAX_REPLICAS {
            return Err(format!("replicas must be between 0 and {MAX_REPLICAS}"));
        }
        Ok(())
    }
}

/// What an app runs after a scale: the serving release and its replica count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workload {
    /// The release that serves (or is rolling out); none before the first deploy.
    pub release: Option<u32>,
    pub image: Option<String>,
    pub replicas: u32,
}

// ---- instances ----

/// The life of one instance, as `kubectl get pods` shows a pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Not placed on a node yet; `reason` says why.
    Pending,
    /// Placed; the agent is pulling the image or creating the container.
    Creating,
    /// The container runs; its health check has not passed (yet).
    Running,
    /// The container runs and its health check passes.
    Ready,
    /// The container keeps exiting; it is restarted with exponential backoff.
    CrashLoop,
    /// The image could not be found or pulled; retried with backoff. `reason` has the engine's message.
    ImagePullError,
    /// Taken out of the route; its requests in flight finish before it is stopped.
    Draining,
    /// Being stopped and removed.
    Stopping,
    /// Stopped (its container exited and is not restarted).
    Stopped,
    /// Its node is down; a replacement is placed elsewhere.
    Lost,
}

impl InstanceState {
    pub const ALL: [InstanceState; 10] = [
        InstanceState::Pending,
        InstanceState::Creating,
        InstanceState::Running,
        InstanceState::Ready,
        InstanceState::CrashLoop,
        InstanceState::ImagePullError,
        InstanceState::Draining,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Creating => "creating",
            InstanceState::Running => "running",
            InstanceState::Ready => "ready",
            InstanceState::CrashLoop => "crash_loop",
            InstanceState::ImagePullError => "image_pull_error",
            InstanceState::Draining => "draining",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    pub id: Uuid,
    pub state: InstanceState,
    /// Why it is pending, or the engine's message for an image or crash error.
    pub reason: Option<String>,
    /// The release it runs (none for an instance left from before releases).
    pub release: Option<u32>,
    pub image: String,
    pub node: Option<String>,
    /// Where it answers: `address:port` on its node.
    pub endpoint: Option<String>,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

// ---- image references ----

/// A Docker image reference (`name[:tag][@digest]`, optionally with a registry host), checked
/// to the grammar Docker accepts so a bad one is a 400 and never reaches an engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef(String);

/// The parts of an image reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageParts<'a> {
    /// The registry host (`host[:port]`), when the reference names one.
    pub host: Option<&'a str>,
    /// The repository path after the host, e.g. `acme/hello` or `nginx`.
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageParts<'a> {
    fn split(s: &'a str) -> Self {
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let first = name.split('/').next().unwrap_or_default();
        let has_registry =
            name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        let (host, path) = if has_registry {
            (Some(first), &name[first.len() + 1..])
        } else {
            (None, name)
        };
        Self {
            host,
            path,
            tag,
            digest,
        }
    }
}

/// A tag: up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`.
pub fn tag_ok(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl ImageRef {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("image {s:?} is not a valid image reference: {why}"));
        if s.is_empty() {
            return Err("image must not be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return bad("it is longer than 255 characters");
        }
        let parts = ImageParts::split(s);
        if let Some(digest) = parts.digest {
            let valid = digest.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && algo.chars().all(|c| c.is_ascii_alphanumeric())
                    && hex.len() >= 32
                    && hex.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !valid {
                return bad("the digest must look like sha256:<hex>");
            }
        }
        if let Some(tag) = parts.tag {
            if !tag_ok(tag) {
                return bad("a tag is up to 128 letters, digits, '_', '.' or '-'");
            }
        }
        // Docker resolves these as an image id on the node, whoever's image it is.
        let hex = |t: &str| t.chars().all(|c| c.is_ascii_hexdigit());
        let local_id = parts.host.is_none()
            && parts.digest.is_none()
            && ((parts.path == "sha256" && parts.tag.is_some_and(hex))
                || (parts.tag.is_none() && hex(parts.path)));
        if local_id {
            return bad(
                "it names a local image id; name the image by repository (and tag or @digest)",
            );
        }
        if let Some(host) = parts.host {
            let valid = host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
                && !host.starts_with(['.', '-', ':']);
            if !valid {
                return bad("the registry host is not a host name or host:port");
            }
        }
        for component in parts.path.split('/') {
            let valid = !component.is_empty()
                && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && component.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                });
            if !valid {
                return bad("path components are lowercase letters, digits, '.', '_' or '-'");
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parts(&self) -> ImageParts<'_> {
        ImageParts::split(&self.0)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ImageRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ImageRef> for String {
    fn from(image: ImageRef) -> String {
        image.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_docker_accepts_parse() {
        for ok in [
            "hello",
            "gantry-hello:latest",
            "library/nginx:1.27",
            "127.0.0.1:5000/acme/web:v1",
            "localhost/app",
            "ghcr.io/owner/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example.com:443/a/b/c:1.0-rc_1",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn bad_image_refs_are_refused_with_a_reason() {
        for bad in [
            "",
            "Hello",
            "hello:",
            "hello:-x",
            "a//b",
            "hello world",
            "hello;rm -rf /",
            "$(id)",
            "app@sha256:xyz",
            "-app",
            // Local image ids: the engine would run whichever image has it.
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ef7ca592331d",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(ImageRef::parse(&"a".repeat(300)).is_err());
    }

    #[test]
    fn image_refs_split_into_host_path_tag_and_digest() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("hello", None, "hello", None, None),
            (
                "127.0.0.1:5000/acme/web:v1",
                Some("127.0.0.1:5000"),
                "acme/web",
                Some("v1"),
                None,
            ),
            ("localhost/app", Some("localhost"), "app", None, None),
            ("acme/web:v1", None, "acme/web", Some("v1"), None),
        ];
        for (image, host, path, tag, digest) in cases {
            let parsed = ImageRef::parse(image).unwrap();
            assert_eq!(
                parsed.parts(),
                ImageParts {
                    host,
                    path,
                    tag,
                    digest
                },
                "{image}"
            );
        }
        let pinned = ImageRef::parse(&format!("ghcr.io/o/app:1@{d}")).unwrap();
        assert_eq!(pinned.parts().digest, Some(d));
        assert_eq!(pinned.parts().tag, Some("1"));
        // Hex-looking names with a tag or a host are repositories, not ids.
        assert!(ImageRef::parse("cafe:1").is_ok());
        assert!(ImageRef::parse("127.0.0.1:5000/cafe").is_ok());
    }

    #[test]
    fn instance_states_round_trip_through_their_names() {
        for state in InstanceState::ALL {
            assert_eq!(InstanceState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}
