//! Releases: every change that alters what an app runs — a deploy, a config change, a change of
//! port, resources or health check, a rollback — is release vN of the app, made in the same
//! transaction as the change ([`create`]). The rollout controller (`crate::rollouts`) takes it
//! from there.
//!
//! A release freezes the image (and its digest once a node reports it), the app's settings and
//! its config vars. The config is kept sealed as one JSON object bound to the app and version,
//! and is opened only to run the release or to restore it on rollback ([`rollback`]).

pub mod create;
pub mod deploy;
pub mod legacy;
pub mod rollback;

use std::collections::BTreeMap;

use gantry_common::agent::Env;
use gantry_common::releases::{ImageSource, Release, ReleaseStatus};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::error::{not_found, ApiError, ApiResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseRow {
    pub id: Uuid,
    pub app_id: Uuid,
    pub version: i32,
    pub status: String,
    pub reason: Option<String>,
    pub image: String,
    pub image_source: String,
    pub image_digest: Option<String>,
    pub port: Option<i32>,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub health_check_path: String,
    pub config_sealed: Vec<u8>,
    pub config_keys: Vec<String>,
    pub cause: String,
    pub rollback_of: Option<i32>,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub progressed_at: Option<OffsetDateTime>,
    pub ready_seen: i32,
    pub activated_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    /// The rollout's own state (see the `progressive_rollouts` migration).
    pub strategy: Option<sqlx::types::Json<gantry_common::releases::Strategy>>,
    pub step: i32,
    pub weight: i32,
    pub step_started_at: Option<OffsetDateTime>,
    pub paused: bool,
    pub promote_requested: bool,
    pub promote_full: bool,
    pub promoted_at: Option<OffsetDateTime>,
}

pub const RELEASE_COLUMNS: &str = "id, app_id, version, status, reason, image, image_source, \
    image_digest, \
    port, cpu_millis, memory_mib, health_check_path, config_sealed, config_keys, cause, \
    rollback_of, actor, created_at, started_at, progressed_at, ready_seen, activated_at, \
    finished_at, strategy, step, weight, step_started_at, paused, promote_requested, \
    promote_full, promoted_at";

impl ReleaseRow {
    pub fn version(&self) -> u32 {
        self.version.max(0) as u32
    }

    pub fn status(&self) -> ReleaseStatus {
        // The column's CHECK constraint allows exactly the statuses there are.
        ReleaseStatus::parse(&self.status).unwrap_or(ReleaseStatus::Failed)
    }

    pub fn port(&self) -> Option<u16> {
        self.port.and_then(|p| u16::try_from(p).ok())
    }

    pub fn to_api(&self) -> Release {
        Release {
            version: self.version(),
            status: self.status(),
            reason: self.reason.clone(),
            image: self.image.clone(),
            image_source: match self.image_source.as_str() {
                "registry" => ImageSource::Registry,
                _ => ImageSource::External,
            },
            image_digest: self.image_digest.clone(),
            port: self.port(),
            cpu_millis: self.cpu_millis.max(0) as u32,
            memory_mib: self.memory_mib.max(0) as u32,
            health_check_path: self.health_check_path.clone(),
            config_keys: self.config_keys.clone(),
            cause: self.cause.clone(),
            rollback_of: self.rollback_of.map(|v| v.max(0) as u32),
            created_by: self.actor.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }

    /// The config vars it runs with. Secret.
    pub fn config(&self, sealer: &Sealer) -> Result<BTreeMap<String, String>, ApiError> {
        let json = sealer
            .open(
                self.app_id,
                &config_key(self.version()),
                &self.config_sealed,
            )
            .map_err(ApiError::internal)?;
        serde_json::from_str(&json).map_err(ApiError::internal)
    }

    /// The containers' environment: the config vars, plus what Gantry sets itself.
    pub fn environment(&self, sealer: &Sealer, team: &str, app: &str) -> Result<Env, ApiError> {
        let mut env = self.config(sealer)?;
        if let Some(port) = self.port() {
            env.insert("PORT".into(), port.to_string());
        }
        env.insert("GANTRY_TEAM".into(), team.to_owned());
        env.insert("GANTRY_APP".into(), app.to_owned());
        env.insert("GANTRY_RELEASE".into(), format!("v{}", self.version()));
        Ok(Env(env))
    }
}

/// What binds a release's sealed config to it (with the app id).
fn config_key(version: u32) -> String {
    format!("release:v{version}")
}

/// An app's releases, newest first.
pub async fn list(
    db: &mut PgConnection,
    app_id: Uuid,
    before: Option<u32>,
    limit: u32,
) -> sqlx::Result<Vec<ReleaseRow>> {
    sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE app_id = $1 AND ($2::integer IS NULL OR version < $2)
         ORDER BY version DESC LIMIT $3"
    ))
    .bind(app_id)
    .bind(before.map(|v| v.min(i32::MAX as u32) as i32))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await
}

/// One release of an app, or 404.
pub async fn get(db: &mut PgConnection, app_id: Uuid, version: u32) -> ApiResult<ReleaseRow> {
    let row: Option<ReleaseRow> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 AND version = $2"
    ))
    .bind(app_id)
    .bind(version.min(i32::MAX as u32) as i32)
    .fetch_optional(db)
    .await?;
    row.ok_or_else(|| not_found(&format!("release v{version}")))
}
