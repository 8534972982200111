//! The rollout controller, above the `Cluster` seam. Each pass reads every app's releases and
//! what the cluster shows of their sets, asks the pure `rollout::plan` what to do next, and does
//! it: status changes in Postgres (each one conditional on the status it expects, so a release
//! made by a request in the meantime always wins), set sizes through `Cluster::apply` and
//! `Cluster::remove`.
//!
//! Like the reconciler it is level-triggered: it runs on every change the cluster reports, on a
//! kick from the API, and every [`REQUEUE`]; after a `kill -9` the next pass continues from
//! what Postgres and the cluster show.

use std::collections::HashMap;
use std::time::Duration;

use gantry_common::releases::{ReleaseStatus, Rollout, Strategy};
use gantry_orchestrator::cluster::{ReleaseSet, RunSpec, SetSettings, SetStatus};
use gantry_orchestrator::rollout::{self, AppView, ReleaseView, SetView, Step};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::error::ApiResult;
use crate::releases::{ReleaseRow, RELEASE_COLUMNS};
use crate::state::AppState;

/// The periodic requeue: progress deadlines are noticed at most this late.
pub const REQUEUE: Duration = Duration::from_secs(2);
/// Held for a whole pass, so two servers never run the controller at once (tests take it to
/// hold the controller still).
pub const ADVISORY_LOCK: i64 = 4_242_003;

/// What the controller needs of an app.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppInfo {
    pub id: Uuid,
    pub team_id: Uuid,
    pub team: String,
    pub name: String,
    pub replicas: i32,
    pub strategy: sqlx::types::Json<Strategy>,
    pub stop_grace_seconds: i32,
    pub progress_deadline_seconds: i32,
}

pub const APP_INFO_QUERY: &str = "
    SELECT a.id, a.team_id, t.slug AS team, a.name, a.replicas, a.strategy,
           a.stop_grace_seconds, a.progress_deadline_seconds
    FROM apps a JOIN teams t ON t.id = a.team_id";

impl AppInfo {
    fn settings(&self) -> SetSettings {
        SetSettings {
            stop_grace_seconds: self.stop_grace_seconds.max(0) as u32,
            ready_timeout_seconds: self.progress_deadline_seconds.max(1) as u32,
        }
    }
}

/// The set a release runs as, with the app's current settings.
pub fn release_set(sealer: &Sealer, release: &ReleaseRow, app: &AppInfo) -> ApiResult<ReleaseSet> {
    Ok(ReleaseSet {
        team_id: app.team_id,
        team: app.team.clone(),
        app_id: app.id,
        app: app.name.clone(),
        release_id: release.id,
        version: release.version(),
        spec: RunSpec {
            image: release.image.clone(),
            image_digest: release.image_digest.clone(),
            port: release.port(),
            cpu_millis: release.cpu_millis.max(0) as u32,
            memory_mib: release.memory_mib.max(0) as u32,
            health_check_path: release.health_check_path.clone(),
            env: release.environment(sealer, &app.team, &app.name)?,
        },
        settings: app.settings(),
    })
}

pub async fn run_forever(state: AppState) {
    let mut changes = state.cluster.changes();
    loop {
        changes.borrow_and_update();
        if let Err(e) = pass(&state).await {
            tracing::warn!("rollout pass failed (retrying in {REQUEUE:?}): {e:#}");
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = state.rollouts.notified() => {}
            _ = tokio::time::sleep(REQUEUE) => {}
        }
    }
}

/// One pass over every app that has releases.
pub async fn pass(state: &AppState) -> anyhow::Result<()> {
    // One controller at a time (several servers on one database), for the whole pass.
    let mut lock = state.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *lock)
        .await?;

    let sets: HashMap<Uuid, SetStatus> = state
        .cluster
        .sets()
        .await?
        .into_iter()
        .map(|s| (s.release_id, s))
        .collect();
    let set_ids: Vec<Uuid> = sets.keys().copied().collect();
    let releases: Vec<ReleaseRow> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE status IN ('pending', 'rolling_out', 'active') OR id = ANY($1)"
    ))
    .bind(&set_ids)
    .fetch_all(&state.db)
    .await?;
    let mut by_app: HashMap<Uuid, Vec<ReleaseRow>> = HashMap::new();
    for r in releases {
        by_app.entry(r.app_id).or_default().push(r);
    }
    let app_ids: Vec<Uuid> = by_app.keys().copied().collect();
    let apps: Vec<AppInfo> = sqlx::query_as(&format!("{APP_INFO_QUERY} WHERE a.id = ANY($1)"))
        .bind(&app_ids)
        .fetch_all(&state.db)
        .await?;

    let now = OffsetDateTime::now_utc();
    for app in apps {
        let releases = by_app.remove(&app.id).unwrap_or_default();
        record_digests(state, &releases, &sets).await?;
        let view = AppView {
            replicas: app.replicas.max(0) as u32,
            strategy: app.strategy.0,
            progress_deadline: Duration::from_secs(app.progress_deadline_seconds.max(1) as u64),
            now,
            releases: releases
                .iter()
                .map(|r| ReleaseView {
                    id: r.id,
                    version: r.version(),
                    status: r.status(),
                    progressed_at: r.progressed_at,
                    ready_seen: r.ready_seen.max(0) as u32,
                    set: sets.get(&r.id).map(|s| SetView {
                        replicas: s.replicas,
                        ready: s.ready,
                        failing: s.failing.clone(),
                        waiting: s.waiting.clone(),
                        settings_current: s.settings == app.settings(),
                        removed: s.removed,
                    }),
                })
                .collect(),
        };
        for step in rollout::plan(&view) {
            if let Err(e) = execute(state, &app, &releases, step, now).await {
                tracing::warn!(app.id = %app.id, "rollout step for app {} failed: {e:#}", app.name);
                break;
            }
        }
    }
    lock.commit().await?;
    Ok(())
}

/// A release learns its image's id from the first instance that reported it.
async fn record_digests(
    state: &AppState,
    releases: &[ReleaseRow],
    sets: &HashMap<Uuid, SetStatus>,
) -> sqlx::Result<()> {
    for r in releases.iter().filter(|r| r.image_digest.is_none()) {
        if let Some(digest) = sets.get(&r.id).and_then(|s| s.image_digest.as_deref()) {
            sqlx::query(
                "UPDATE releases SET image_digest = $2 WHERE id = $1 AND image_digest IS NULL",
            )
            .bind(r.id)
            .bind(digest)
            .execute(&state.db)
            .await?;
        }
    }
    Ok(())
}

async fn execute(
    state: &AppState,
    app: &AppInfo,
    releases: &[ReleaseRow],
    step: Step,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let release = |id: Uuid| {
        releases
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| anyhow::anyhow!("release {id} is not in this pass"))
    };
    match step {
        Step::Apply {
            release: id,
            replicas,
        } => {
            let r = release(id)?;
            let set =
                release_set(&state.sealer, r, app).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            state.cluster.apply(&set, replicas).await?;
        }
        Step::Remove { release: id } => state.cluster.remove(app.id, id).await?,
        Step::Start { release: id } => {
            let started = sqlx::query(
                "UPDATE releases SET status = 'rolling_out', started_at = $2, progressed_at = $2,
                     ready_seen = 0
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(now)
            .execute(&state.db)
            .await?
            .rows_affected();
            if started > 0 {
                let r = release(id)?;
                tracing::info!(app.id = %app.id, release.version = r.version, "rolling out v{} of app {}", r.version, app.name);
                let text = format!(
                    "release v{} created by {} ({}): rolling out {}",
                    r.version, r.actor, r.cause, r.image
                );
                event(state, app, Some(r.version), text).await;
            }
        }
        Step::Progress { release: id, ready } => {
            sqlx::query(
                "UPDATE releases SET progressed_at = $2, ready_seen = $3
                 WHERE id = $1 AND status = 'rolling_out'",
            )
            .bind(id)
            .bind(now)
            .bind(ready as i32)
            .execute(&state.db)
            .await?;
        }
        Step::Activate { release: id } => {
            let r = release(id)?;
            let mut tx = state.db.begin().await?;
            sqlx::query(
                "UPDATE releases SET status = 'superseded', finished_at = $3,
                     reason = 'superseded by v' || $2
                 WHERE app_id = $1 AND status = 'active'",
            )
            .bind(app.id)
            .bind(r.version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let activated = sqlx::query(
                "UPDATE releases SET status = 'active', activated_at = $2, finished_at = $2,
                     reason = NULL
                 WHERE id = $1 AND status = 'rolling_out'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if activated == 1 {
                tx.commit().await?;
                tracing::info!(app.id = %app.id, release.version = r.version, "v{} of app {} is active", r.version, app.name);
                let text = format!(
                    "release v{} is active: all its instances are ready",
                    r.version
                );
                event(state, app, Some(r.version), text).await;
            }
        }
        Step::Supersede { release: id, by } => {
            sqlx::query(
                "UPDATE releases SET status = 'superseded', finished_at = $2,
                     reason = 'superseded by v' || $3 || ' before its rollout finished'
                 WHERE id = $1 AND status IN ('pending', 'rolling_out', 'active')",
            )
            .bind(id)
            .bind(now)
            .bind(by as i32)
            .execute(&state.db)
            .await?;
        }
        Step::Fail {
            release: id,
            reason,
        } => {
            let failed = sqlx::query(
                "UPDATE releases SET status = 'failed', finished_at = $2, reason = $3
                 WHERE id = $1 AND status IN ('pending', 'rolling_out')",
            )
            .bind(id)
            .bind(now)
            .bind(&reason)
            .execute(&state.db)
            .await?
            .rows_affected();
            if failed > 0 {
                let r = release(id)?;
                tracing::warn!(app.id = %app.id, release.version = r.version, "rollout of v{} of app {} failed: {reason}", r.version, app.name);
                let text = format!("rollout of release v{} failed: {reason}", r.version);
                event(state, app, Some(r.version), text).await;
            }
        }
    }
    Ok(())
}

/// The newest rollout of an app (the one under way, or the last one), for `GET …/rollout`.
pub async fn progress(state: &AppState, app: &AppInfo) -> ApiResult<Option<Rollout>> {
    let releases: Vec<ReleaseRow> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 ORDER BY version DESC LIMIT 20"
    ))
    .bind(app.id)
    .fetch_all(&state.db)
    .await?;
    let Some(newest) = releases.first() else {
        return Ok(None);
    };
    let sets: HashMap<Uuid, SetStatus> = state
        .cluster
        .sets()
        .await
        .map_err(crate::error::ApiError::internal)?
        .into_iter()
        .filter(|s| s.app_id == app.id)
        .map(|s| (s.release_id, s))
        .collect();
    let from = releases
        .iter()
        .skip(1)
        .find(|r| {
            r.activated_at.is_some()
                && r.activated_at <= newest.started_at.or(Some(newest.created_at))
        })
        .map(ReleaseRow::version);
    let new_set = sets.get(&newest.id).filter(|s| !s.removed);
    let old: u32 = sets
        .values()
        .filter(|s| s.release_id != newest.id && !s.removed)
        .map(|s| s.replicas)
        .sum();
    let deadline_at = (newest.status() == ReleaseStatus::RollingOut)
        .then(|| {
            newest.progressed_at.map(|at| {
                at + time::Duration::seconds(i64::from(app.progress_deadline_seconds.max(1)))
            })
        })
        .flatten();
    Ok(Some(Rollout {
        release: newest.version(),
        status: newest.status(),
        reason: newest.reason.clone(),
        from,
        strategy: app.strategy.0,
        desired: app.replicas.max(0) as u32,
        updated: new_set.map_or(0, |s| s.replicas),
        ready: new_set.map_or(0, |s| s.ready.min(s.replicas)),
        old,
        started_at: newest.started_at,
        deadline_at,
        finished_at: newest.finished_at,
    }))
}

/// Records a rollout event in the app's log.
async fn event(state: &AppState, app: &AppInfo, release: Option<i32>, text: String) {
    let event = crate::logs::events::Event {
        team_id: app.team_id,
        app_id: app.id,
        release,
        instance: None,
        text,
    };
    crate::logs::events::record(&state.db, &state.logs.hub, vec![event]).await;
}
