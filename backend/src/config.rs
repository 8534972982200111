//! Typed configuration: defaults, then environment (`GANTRY_*`, `DATABASE_URL`), then flags.
//! Secrets are held as `SecretString`/[`SecretKey`] so they never appear in logs or `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use gantry_common::quotas::QuotaLimits;
use secrecy::SecretString;

/// Flags shared by `gantry server` and `gantry up`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address the control plane (API, dashboard, registry) listens on.
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Postgres connection URL. `gantry up` starts a private Postgres when it is absent.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The URL people use to reach the server (default: http://<listen>). An https URL makes
    /// session cookies `Secure`; its origin is the one allowed to send cookie-authenticated writes.
    #[arg(long, env = "GANTRY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// 32 random bytes, base64 or hex: encrypts config vars at rest. `gantry up` creates one in
    /// the data directory when absent.
    #[arg(long, env = "GANTRY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// A session ends after this many minutes without a request.
    #[arg(long, env = "GANTRY_SESSION_IDLE_MINUTES", default_value_t = 12 * 60)]
    pub session_idle_minutes: u64,

    /// A session ends this many hours after login, however active.
    #[arg(long, env = "GANTRY_SESSION_MAX_HOURS", default_value_t = 7 * 24)]
    pub session_max_hours: u64,

    /// Size of the Postgres connection pool.
    #[arg(long, env = "GANTRY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// A node whose agent has not been heard from for this many seconds is marked down and its
    /// instances are replaced on other nodes.
    #[arg(long, env = "GANTRY_NODE_TIMEOUT", default_value_t = 20)]
    pub node_timeout: u64,

    /// Address the router (the apps' HTTP entry point) listens on.
    #[arg(long, env = "GANTRY_ROUTER_LISTEN", default_value = "127.0.0.1:8000")]
    pub router_listen: SocketAddr,

    /// Apps are served at `<app>.<team>.<apps-domain>`. The default, `localhost`, works in
    /// browsers and curl without any DNS set-up.
    #[arg(long, env = "GANTRY_APPS_DOMAIN", default_value = "localhost")]
    pub apps_domain: String,

    /// Where the registry keeps image layers (default: `registry/` in the data directory,
    /// `.gantry/registry` for `gantry server`).
    #[arg(long, env = "GANTRY_REGISTRY_DIR")]
    pub registry_dir: Option<PathBuf>,

    /// The largest blob (image layer) the registry accepts, in MiB.
    #[arg(long, env = "GANTRY_REGISTRY_MAX_BLOB_MIB", default_value_t = 10 * 1024)]
    pub registry_max_blob_mib: u64,

    /// What each team's images may take in the registry, in MiB (0: no limit).
    #[arg(long, env = "GANTRY_REGISTRY_TEAM_QUOTA_MIB", default_value_t = 0)]
    pub registry_team_quota_mib: u64,

    /// How many days apps' logs and events are kept (a team may keep less).
    #[arg(long, env = "GANTRY_LOG_RETENTION_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub log_retention_days: u32,

    /// A bearer token that lets a Prometheus scraper read `GET /metrics` (platform admins read
    /// it with their session).
    #[arg(long, env = "GANTRY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// The quota of teams without their own (a platform admin sets one with
    /// `PUT /api/v1/teams/{team}/quota`): apps per team.
    #[arg(long, env = "GANTRY_TEAM_QUOTA_APPS", default_value_t = QuotaLimits::DEFAULT.apps)]
    pub team_quota_apps: u32,
    /// … instances (running or wanted, surge and canary included).
    #[arg(long, env = "GANTRY_TEAM_QUOTA_INSTANCES", default_value_t = QuotaLimits::DEFAULT.instances)]
    pub team_quota_instances: u32,
    /// … CPU reserved, in thousandths of a core.
    #[arg(long, env = "GANTRY_TEAM_QUOTA_CPU_MILLIS", default_value_t = QuotaLimits::DEFAULT.cpu_millis)]
    pub team_quota_cpu_millis: u32,
    /// … memory reserved, in MiB.
    #[arg(long, env = "GANTRY_TEAM_QUOTA_MEMORY_MIB", default_value_t = QuotaLimits::DEFAULT.memory_mib)]
    pub team_quota_memory_mib: u32,

    /// Where apps' git repositories and build contexts live (default: `git/` in the data
    /// directory, `.gantry/git` for `gantry server`).
    #[arg(long, env = "GANTRY_GIT_DIR")]
    pub git_dir: Option<PathBuf>,

    /// The largest `git push` accepted, in MiB (what git sends: the packed objects).
    #[arg(long, env = "GANTRY_GIT_MAX_PUSH_MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub git_max_push_mib: u64,

    /// A build (context upload, `docker build` and push) is stopped after this many seconds.
    #[arg(long, env = "GANTRY_BUILD_TIMEOUT_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(u32).range(10..=86_400))]
    pub build_timeout_seconds: u32,
    /// The CPU each build step may use, in thousandths of a core.
    #[arg(long, env = "GANTRY_BUILD_CPU_MILLIS", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(100..=256_000))]
    pub build_cpu_millis: u32,
    /// The memory each build step may use, in MiB (the engine's API stops at 2047).
    #[arg(long, env = "GANTRY_BUILD_MEMORY_MIB", default_value_t = 1536,
          value_parser = clap::value_parser!(u32).range(64..=2047))]
    pub build_memory_mib: u32,

    /// Live streams (logs, metrics) one user may have open at once.
    #[arg(long, env = "GANTRY_STREAMS_PER_USER", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub streams_per_user: u32,
}

/// The server's configuration once checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: SecretString,
    /// `scheme://host[:port]` without a trailing slash; `None` = derived from the bound address.
    pub public_url: Option<String>,
    pub secret_key: SecretKey,
    pub session_idle: Duration,
    pub session_max_age: Duration,
    pub db_max_connections: u32,
    pub node_timeout: Duration,
    pub router_listen: SocketAddr,
    /// Lower case, without a trailing dot.
    pub apps_domain: String,
    /// The registry's blobs and uploads (created at the first push).
    pub registry_dir: PathBuf,
    pub registry_max_blob_bytes: u64,
    /// `None`: teams may store any amount.
    pub registry_team_quota_bytes: Option<u64>,
    pub log_retention_days: u32,
    pub streams_per_user: u32,
    pub metrics_token: Option<SecretString>,
    /// The quota of teams without their own.
    pub team_quota: QuotaLimits,
    /// Bare repositories (`repos/`), build contexts (`contexts/`) and the hook (`hooks/`).
    pub git_dir: PathBuf,
    pub git_max_push_bytes: u64,
    pub builds: BuildLimits,
}

/// What every build may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    pub timeout_seconds: u32,
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

impl Config {
    pub fn from_args(args: ServerArgs) -> anyhow::Result<Self> {
        let database_url = args
            .database_url
            .context("DATABASE_URL is not set: point it at a Postgres database (or use `gantry up`, which runs its own)")?;
        let secret_key = args.secret_key.context(
            "GANTRY_SECRET_KEY is not set: generate one with `openssl rand -base64 32` (or use `gantry up`, which keeps one in its data directory)",
        )?;
        let public_url = args.public_url.map(|u| parse_public_url(&u)).transpose()?;
        if args.session_idle_minutes == 0 || args.session_max_hours == 0 {
            bail!("session lifetimes must be positive");
        }
        if args.node_timeout < 2 * gantry_common::agent::HEARTBEAT_SECONDS {
            bail!(
                "GANTRY_NODE_TIMEOUT must be at least {} seconds (two agent heartbeats)",
                2 * gantry_common::agent::HEARTBEAT_SECONDS
            );
        }
        Ok(Self {
            listen: args.listen,
            database_url: SecretString::from(database_url),
            public_url,
            secret_key: SecretKey::parse(&secret_key)?,
            session_idle: Duration::from_secs(args.session_idle_minutes * 60),
            session_max_age: Duration::from_secs(args.session_max_hours * 3600),
            db_max_connections: args.db_max_connections.max(2),
            node_timeout: Duration::from_secs(args.node_timeout),
            router_listen: args.router_listen,
            apps_domain: parse_apps_domain(&args.apps_domain)?,
            registry_dir: args
                .registry_dir
                .unwrap_or_else(|| PathBuf::from(".gantry/registry")),
            registry_max_blob_bytes: args.registry_max_blob_mib.saturating_mul(1024 * 1024),
            registry_team_quota_bytes: (args.registry_team_quota_mib > 0)
                .then(|| args.registry_team_quota_mib.saturating_mul(1024 * 1024)),
            log_retention_days: args.log_retention_days,
            streams_per_user: args.streams_per_user,
            team_quota: QuotaLimits {
                apps: args.team_quota_apps,
                instances: args.team_quota_instances,
                cpu_millis: args.team_quota_cpu_millis,
                memory_mib: args.team_quota_memory_mib,
            },
            git_dir: args.git_dir.unwrap_or_else(|| PathBuf::from(".gantry/git")),
            git_max_push_bytes: args.git_max_push_mib.saturating_mul(1024 * 1024),
            builds: BuildLimits {
                timeout_seconds: args.build_timeout_seconds,
                cpu_millis: args.build_cpu_millis,
                memory_mib: args.build_memory_mib,
            },
            metrics_token: args
                .metrics_token
                .filter(|t| !t.is_empty())
                .map(SecretString::from),
        })
    }
}

/// Checks `http(s)://host[:port]` and returns it without a trailing slash or path.
fn parse_public_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .with_context(|| {
            format!("GANTRY_PUBLIC_URL {url:?} must start with http:// or https://")
        })?;
    if rest.is_empty() || rest.contains('/') {
        bail!("GANTRY_PUBLIC_URL {url:?} must be just scheme://host[:port], without a path");
    }
    Ok(url.to_owned())
}

/// Checks a DNS name (`localhost`, `apps.example.com`) for app hosts to end in.
fn parse_apps_domain(domain: &str) -> anyhow::Result<String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.len() <= 200
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !valid {
        bail!("GANTRY_APPS_DOMAIN {domain:?} must be a DNS name such as localhost or apps.example.com");
    }
    Ok(domain)
}

/// The 32-byte key that seals config vars.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl SecretKey {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .context("GANTRY_SECRET_KEY is neither 64 hex digits nor base64")?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!("GANTRY_SECRET_KEY must be 32 bytes, got {}", b.len())
        })?;
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_formats() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::parse(&k.to_base64()).unwrap().0, k.0);
        let hex: String = k.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(SecretKey::parse(&hex).unwrap().0, k.0);
        assert!(SecretKey::parse("c2hvcnQ=")
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
        assert!(SecretKey::parse("not base64!").is_err());
        assert_eq!(format!("{k:?}"), "SecretKey(***)");
    }

    #[test]
    fn apps_domains() {
        assert_eq!(
            parse_apps_domain("Apps.Example.com.").unwrap(),
            "apps.example.com"
        );
        assert_eq!(parse_apps_domain("localhost").unwrap(), "localhost");
        for bad in ["", "a..b", "-a.com", "a b", "a/b", "*.example.com"] {
            assert!(parse_apps_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_url() {
        assert_eq!(
            parse_public_url("https://gantry.example.com/").unwrap(),
            "https://gantry.example.com"
        );
        assert!(parse_public_url("gantry.example.com").is_err());
        assert!(parse_public_url("http://x/y").is_err());
    }
}
