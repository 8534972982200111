//! REST request and response bodies of `/api/v1`.
//!
//! Request bodies deny unknown fields: a typo such as `replica` instead of `replicas` is an error
//! that names the field, not a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::names::{AppName, ConfigKey, Email, Label, Password, TeamSlug};
use crate::releases::Strategy;
use crate::roles::Role;

// ---- accounts ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: Email,
    pub password: Password,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: Uuid,
    pub email: Email,
    /// The first account of an instance administers the platform (nodes, clusters).
    pub is_platform_admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Returned by sign-up and login: the session cookie is set, and mutating requests made with it
/// must send `csrf_token` in the `x-csrf-token` header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub user: User,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CsrfToken {
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: User,
    /// The teams the caller can act in, with its role in each. A token sees only its own team.
    pub teams: Vec<TeamWithRole>,
}

// ---- teams ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    pub id: Uuid,
    pub slug: TeamSlug,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamWithRole {
    #[serde(flatten)]
    pub team: Team,
    /// The caller's role in this team.
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    pub slug: TeamSlug,
    /// Display name; defaults to the slug.
    pub name: Option<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: Uuid,
    pub email: Email,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// An existing account's e-mail address.
    pub email: Email,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: Role,
}

// ---- API tokens ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: Label,
    /// The team the token acts for.
    pub team: TeamSlug,
    /// At most the creator's own role in that team.
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub team: TeamSlug,
    pub role: Role,
    /// The first characters of the secret, to recognise it (`gnt_ab12…`).
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// The only response that ever contains a token's secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`. It is shown once and stored only as a hash.
    pub secret: String,
}

// ---- apps ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    pub id: Uuid,
    pub name: AppName,
    pub team: TeamSlug,
    /// The port the app's process listens on inside its container (`PORT` in its
    /// environment); `null` for a worker, which is not routed.
    pub port: Option<u16>,
    pub replicas: u32,
    /// CPU limit per replica in millicores (1000 = one core).
    pub cpu_millis: u32,
    /// Memory limit per replica in MiB.
    pub memory_mib: u32,
    /// HTTP path probed to decide whether a replica is ready.
    pub health_check_path: String,
    /// Seconds between SIGTERM and SIGKILL when an instance stops (after the router stopped
    /// sending it requests and those in flight finished).
    pub stop_grace_seconds: u32,
    /// A rollout fails when no new instance became ready for this long.
    pub progress_deadline_seconds: u32,
    pub strategy: Strategy,
    /// A push of this tag to the built-in registry's `<team>/<app>` deploys the app; `null`:
    /// pushes never deploy.
    #[serde(default)]
    pub deploy_on_push: Option<String>,
    /// The release that serves the app, if any.
    pub release: Option<u32>,
    /// The image of the release that serves (or of the newest release while none does yet);
    /// none before the first deploy.
    #[serde(default)]
    pub image: Option<String>,
    /// Where the router serves it, e.g. `http://hello.acme.localhost:8000/`; none for a worker.
    pub url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Limits and defaults of an app's settings; the server checks them, the dashboard shows them.
pub mod app_limits {
    pub const DEFAULT_PORT: u16 = 8080;
    pub const DEFAULT_REPLICAS: u32 = 1;
    pub const MAX_REPLICAS: u32 = 100;
    pub const DEFAULT_CPU_MILLIS: u32 = 500;
    pub const CPU_MILLIS: std::ops::RangeInclusive<u32> = 10..=64_000;
    pub const DEFAULT_MEMORY_MIB: u32 = 256;
    pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 16..=262_144;
    pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/";
    pub const HEALTH_CHECK_PATH_MAX_LEN: usize = 512;
    pub const DEFAULT_STOP_GRACE_SECONDS: u32 = 30;
    pub const STOP_GRACE_SECONDS: std::ops::RangeInclusive<u32> = 0..=3600;
    pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 300;
    pub const PROGRESS_DEADLINE_SECONDS: std::ops::RangeInclusive<u32> = 5..=86_400;
    /// Pushes of this tag deploy an app, unless its settings say otherwise.
    pub const DEFAULT_DEPLOY_ON_PUSH: &str = "latest";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: AppName,
    #[serde(flatten)]
    pub settings: AppSettings,
}

/// The changeable settings of an app; absent fields keep their current (or default) value.
/// A change of port, CPU, memory or health check makes a new release (when the app has one);
/// replicas scale the release that serves; the stop grace and progress deadline apply at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// `null` makes the app a worker: no port, not routed, ready once running.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u16>, nullable, minimum = 1, maximum = 65535))]
    pub port: Option<Option<u16>>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100))]
    pub replicas: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 64000))]
    pub cpu_millis: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 16, maximum = 262144))]
    pub memory_mib: Option<u32>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^/[!-~]*$",
            min_length = 1,
            max_length = 512,
            example = "/healthz"
        )
    )]
    pub health_check_path: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 3600))]
    pub stop_grace_seconds: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 5, maximum = 86400))]
    pub progress_deadline_seconds: Option<u32>,
    /// The tag whose pushes to the built-in registry deploy the app (default `latest`);
    /// `null` turns deploy on push off.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", example = "latest"))]
    pub deploy_on_push: Option<Option<String>>,
}

/// Reads a present field (even `null`) as `Some`, so `{"port": null}` ("no port") differs from
/// a body without `port` ("keep it"), which `#[serde(default)]` makes `None`.
fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl AppSettings {
    /// Checks every given field against [`app_limits`], naming the first one out of range.
    pub fn validate(&self) -> Result<(), String> {
        use app_limits::*;
        if self.port == Some(Some(0)) {
            return Err("port must be between 1 and 65535, or null for a worker".into());
        }
        if let Some(r) = self.replicas {
            if r > MAX_REPLICAS {
                return Err(format!("replicas must be between 0 and {MAX_REPLICAS}"));
            }
        }
        if let Some(c) = self.cpu_millis {
            if !CPU_MILLIS.contains(&c) {
                return Err(format!(
                    "cpu_millis must be between {} and {} (1000 = one core)",
                    CPU_MILLIS.start(),
                    CPU_MILLIS.end()
                ));
            }
        }
        if let Some(m) = self.memory_mib {
            if !MEMORY_MIB.contains(&m) {
                return Err(format!(
                    "memory_mib must be between {} and {}",
                    MEMORY_MIB.start(),
                    MEMORY_MIB.end()
                ));
            }
        }
        if let Some(p) = &self.health_check_path {
            let printable = p.chars().all(|c| c.is_ascii_graphic());
            if !p.starts_with('/') || !printable || p.len() > HEALTH_CHECK_PATH_MAX_LEN {
                return Err(format!(
                    "health_check_path must start with '/' and hold at most {HEALTH_CHECK_PATH_MAX_LEN} printable ASCII characters without spaces"
                ));
            }
        }
        if let Some(g) = self.stop_grace_seconds {
            if !STOP_GRACE_SECONDS.contains(&g) {
                return Err(format!(
                    "stop_grace_seconds must be between {} and {}",
                    STOP_GRACE_SECONDS.start(),
                    STOP_GRACE_SECONDS.end()
                ));
            }
        }
        if let Some(Some(tag)) = &self.deploy_on_push {
            if !crate::cluster::tag_ok(tag) {
                return Err(format!(
                    "deploy_on_push {tag:?} is not a tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
                ));
            }
        }
        if let Some(d) = self.progress_deadline_seconds {
            if !PROGRESS_DEADLINE_SECONDS.contains(&d) {
                return Err(format!(
                    "progress_deadline_seconds must be between {} and {}",
                    PROGRESS_DEADLINE_SECONDS.start(),
                    PROGRESS_DEADLINE_SECONDS.end()
                ));
            }
        }
        Ok(())
    }
}

// ---- config vars ----

/// An app's config vars. Viewers get the names with `value: null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigVars {
    pub vars: Vec<ConfigVar>,
    /// False when the caller's role may not read values (viewers).
    pub values_visible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigVar {
    pub key: ConfigKey,
    pub value: Option<String>,
}

/// Limits of an app's config.
pub mod config_limits {
    pub const MAX_VARS: usize = 500;
    pub const MAX_VALUE_BYTES: usize = 32 * 1024;
}

/// `PUT …/config`: the whole new set; keys not listed are removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplaceConfig {
    #[cfg_attr(feature = "openapi", schema(schema_with = config_vars_schema::replace))]
    pub vars: BTreeMap<ConfigKey, String>,
}

/// `PATCH …/config`: set the given keys; a `null` value removes the key (like `heroku config:unset`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchConfig {
    #[cfg_attr(feature = "openapi", schema(schema_with = config_vars_schema::patch))]
    pub vars: BTreeMap<ConfigKey, Option<String>>,
}

/// The schemas of the `vars` maps: names as [`ConfigKey`] checks them, values within
/// [`config_limits`].
#[cfg(feature = "openapi")]
mod config_vars_schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    use super::config_limits::{MAX_VALUE_BYTES, MAX_VARS};
    use crate::names::ConfigKey;

    fn value(nullable: bool) -> ObjectBuilder {
        let kind = if nullable {
            utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null])
        } else {
            Type::String.into()
        };
        ObjectBuilder::new()
            .schema_type(kind)
            .max_length(Some(MAX_VALUE_BYTES))
            .examples(["postgres://app@db/app"])
            .description(Some(
                "At most 32 KiB (counted in bytes of UTF-8) and without NUL characters.",
            ))
    }

    fn vars(nullable: bool, description: &str) -> ObjectBuilder {
        let names = match ConfigKey::schema() {
            RefOr::T(schema) => Some(schema),
            RefOr::Ref(_) => None,
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(names)
            .additional_properties(Some(value(nullable)))
            .description(Some(description))
    }

    /// `PUT …/config`: the whole set, so at most [`MAX_VARS`] of them.
    pub fn replace() -> RefOr<Schema> {
        vars(false, "The app's whole set of config vars, at most 500.")
            .max_properties(Some(MAX_VARS))
            .into()
    }

    /// `PATCH …/config`: `null` removes a var; the app keeps at most [`MAX_VARS`].
    pub fn patch() -> RefOr<Schema> {
        vars(
            true,
            "Vars to set, and to remove (`null`); the app keeps at most 500.",
        )
        .into()
    }
}

// ---- audit ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who did it: `alice@example.com`, or `alice@example.com (token "ci")`.
    pub actor: String,
    pub actor_user_id: Option<Uuid>,
    pub actor_token_id: Option<Uuid>,
    /// Dotted verb, e.g. `app.create`, `member.update`, `config.update`.
    pub action: String,
    /// What was acted on, e.g. `app:hello`, `member:bob@example.com`.
    pub target: String,
    /// Action-specific facts; never a secret or a config value.
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// Pass as `?before=` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_app_rejects_unknown_fields_and_bad_names() {
        let err = serde_json::from_str::<CreateApp>(r#"{"name":"web","replica":2}"#).unwrap_err();
        assert!(err.to_string().contains("replica"), "{err}");
        let err = serde_json::from_str::<CreateApp>(r#"{"name":"Web"}"#).unwrap_err();
        assert!(err.to_string().contains("app name"), "{err}");
        let ok = serde_json::from_str::<CreateApp>(r#"{"name":"web","port":3000}"#).unwrap();
        assert_eq!(ok.settings.port, Some(Some(3000)));
        let worker = serde_json::from_str::<CreateApp>(r#"{"name":"web","port":null}"#).unwrap();
        assert_eq!(worker.settings.port, Some(None));
        let default = serde_json::from_str::<CreateApp>(r#"{"name":"web"}"#).unwrap();
        assert_eq!(default.settings.port, None);
    }

    #[test]
    fn settings_limits() {
        let ok = AppSettings {
            port: Some(Some(80)),
            replicas: Some(0),
            cpu_millis: Some(250),
            memory_mib: Some(128),
            health_check_path: Some("/healthz?full=1".into()),
            stop_grace_seconds: Some(0),
            progress_deadline_seconds: Some(30),
            deploy_on_push: Some(Some("v1.2_rc-1".into())),
        };
        assert_eq!(ok.validate(), Ok(()));
        let off = AppSettings {
            deploy_on_push: Some(None),
            ..AppSettings::default()
        };
        assert_eq!(off.validate(), Ok(()));
        let bad_tag = AppSettings {
            deploy_on_push: Some(Some("-x".into())),
            ..AppSettings::default()
        };
        assert!(bad_tag.validate().unwrap_err().contains("deploy_on_push"));
        let cases = [
            (
                AppSettings {
                    port: Some(Some(0)),
                    ..Default::default()
                },
                "port",
            ),
            (
                AppSettings {
                    stop_grace_seconds: Some(3601),
                    ..Default::default()
                },
                "stop_grace_seconds",
            ),
            (
                AppSettings {
                    progress_deadline_seconds: Some(1),
                    ..Default::default()
                },
                "progress_deadline_seconds",
            ),
            (
                AppSettings {
                    replicas: Some(101),
                    ..Default::default()
                },
                "replicas",
            ),
            (
                AppSettings {
                    cpu_millis: Some(1),
                    ..Default::default()
                },
                "cpu_millis",
            ),
            (
                AppSettings {
                    memory_mib: Some(1 << 20),
                    ..Default::default()
                },
                "memory_mib",
            ),
            (
                AppSettings {
                    health_check_path: Some("health".into()),
                    ..Default::default()
                },
                "health_check_path",
            ),
            (
                AppSettings {
                    health_check_path: Some("/a b".into()),
                    ..Default::default()
                },
                "health_check_path",
            ),
        ];
        for (s, field) in cases {
            let err = s.validate().unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
