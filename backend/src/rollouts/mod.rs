//! The rollout controller, above the `Cluster` seam. Each pass reads every app's releases and
//! what the cluster shows of their sets, asks the pure `rollout::plan` what to do next, and does
//! it: status changes in Postgres (each one conditional on the status it expects, so a release
//! made by a request in the meantime always wins), set sizes through `Cluster::apply` and
//! `Cluster::remove`.
//!
//! Like the reconciler it is level-triggered: it runs on every change the cluster reports, on a
//! kick from the API, and every [`REQUEUE`]; after a `kill -9` the next pass continues from
//! what Postgres and the cluster show.
//!
//! Canary analysis happens here too: each pass samples the router's counters of the canary and
//! stable sets (`book`) and hands the canary's figures over its window to the plan, which
//! aborts on a breach. Hence the one-second requeue.
//!
//! # Layout
//! - this file: the pass and the execution of its steps.
//! - `book`: the analysis windows and what each rollout waits for, in memory.
//! - `control`: promote, abort, pause and resume, as a person asks for them.
//! - `progress`: the rollout as `GET …/rollouts/current` shows it.

pub mod book;
pub mod control;
mod progress;

pub use progress::progress;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gantry_common::releases::{AnalysisFigures, ReleaseStatus, Strategy};
use gantry_orchestrator::cluster::{ReleaseSet, RunSpec, SetSettings, SetStatus};
use gantry_orchestrator::rollout::analysis::{judge, Sample};
use gantry_orchestrator::rollout::{
    self, AppView, Promote, ReleaseView, RolloutState, SetView, Step,
};
use gantry_orchestrator::router::AppStats;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::Sealer;
use crate::error::ApiResult;
use crate::quotas::{self, Room, Size};
use crate::releases::{ReleaseRow, RELEASE_COLUMNS};
use crate::state::AppState;

/// The periodic requeue: progress deadlines and pauses are noticed, and canary analysis is
/// judged, at most this late.
pub const REQUEUE: Duration = Duration::from_secs(1);
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

    // The team quotas' books for this pass: what the cluster's sets reserve now.
    let sizes: HashMap<Uuid, Size> = releases_by_id(&by_app, &apps);
    let mut room = Room {
        usage: quotas::tally(sets.values(), &sizes),
        limits: quotas::limits_by_team(state).await?,
        defaults: state.team_quota,
    };
    let now = OffsetDateTime::now_utc();
    let instant = Instant::now();
    let stats = state.router.stats();
    let mut watched = HashSet::new();
    let mut waiting = HashMap::new();
    let mut figures = HashMap::new();
    for app in apps {
        let releases = by_app.remove(&app.id).unwrap_or_default();
        record_digests(state, &releases, &sets).await?;
        let mut view = AppView {
            replicas: app.replicas.max(0) as u32,
            strategy: app.strategy.0.clone(),
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
                    rollout: rollout_state(r),
                })
                .collect(),
            window: None,
        };
        if let Some(analysed) = analyse(state, &app, &releases, &stats, instant, &mut watched) {
            view.window = Some(analysed.canary.clone());
            figures.insert(analysed.release, analysed.figures);
        }
        for step in rollout::plan(&view) {
            if let Step::Wait { release, why } = step {
                waiting.entry(release).or_insert(why);
                continue;
            }
            // Growing a set takes room in the team's quota; without it the rollout waits.
            let resize = match &step {
                Step::Apply { release, replicas } => Some((*release, *replicas)),
                Step::Remove { release } => Some((*release, 0)),
                _ => None,
            };
            if let Some((id, to)) = resize {
                let from = sets
                    .get(&id)
                    .filter(|s| !s.removed)
                    .map_or(0, |s| s.replicas);
                if let Some(size) = sizes.get(&id) {
                    if let Err(why) = room.resize(app.team_id, from, to, *size) {
                        let target = view
                            .releases
                            .iter()
                            .find(|r| r.status.in_flight())
                            .map_or(id, |r| r.id);
                        waiting.insert(target, format!("room in the team's quota ({why})"));
                        // Waiting for room is not a lack of progress: the deadline counts from
                        // when there is room.
                        sqlx::query(
                            "UPDATE releases SET progressed_at = $2
                             WHERE id = $1 AND status = 'rolling_out'",
                        )
                        .bind(target)
                        .bind(now)
                        .execute(&state.db)
                        .await?;
                        continue;
                    }
                }
            }
            if let Err(e) = execute(state, &app, &releases, step, now).await {
                tracing::warn!(app.id = %app.id, "rollout step for app {} failed: {e:#}", app.name);
                break;
            }
        }
    }
    state.rollout_book.retain(&watched);
    state.rollout_book.publish(waiting, figures);
    lock.commit().await?;
    Ok(())
}

/// Each release's team and size, for the quota books.
fn releases_by_id(
    by_app: &HashMap<Uuid, Vec<ReleaseRow>>,
    apps: &[AppInfo],
) -> HashMap<Uuid, Size> {
    apps.iter()
        .flat_map(|app| {
            by_app.get(&app.id).into_iter().flatten().map(|r| {
                (
                    r.id,
                    Size {
                        team_id: app.team_id,
                        cpu_millis: r.cpu_millis,
                        memory_mib: r.memory_mib,
                    },
                )
            })
        })
        .collect()
}

/// A release's rollout state as its row keeps it.
pub fn rollout_state(r: &ReleaseRow) -> RolloutState {
    RolloutState {
        strategy: r.strategy.as_ref().map(|s| s.0.clone()),
        step: r.step.max(0) as u32,
        weight: r.weight.clamp(0, 100) as u32,
        step_started_at: r.step_started_at,
        paused: r.paused,
        promote: match (r.promote_requested, r.promote_full) {
            (false, _) => Promote::No,
            (true, false) => Promote::Next,
            (true, true) => Promote::Full,
        },
        promoted_at: r.promoted_at,
    }
}

/// The canary analysis of an app's rollout this pass.
struct Analysed {
    release: Uuid,
    canary: gantry_common::releases::WindowFigures,
    figures: AnalysisFigures,
}

/// Samples the canary and stable sets of an app whose canary rollout has analysis, and returns
/// the canary's figures over the window (with the stable release's beside them).
fn analyse(
    state: &AppState,
    app: &AppInfo,
    releases: &[ReleaseRow],
    stats: &[AppStats],
    now: Instant,
    watched: &mut HashSet<(Uuid, u32)>,
) -> Option<Analysed> {
    let target = releases
        .iter()
        .find(|r| r.status() == ReleaseStatus::RollingOut)?;
    let Some(Strategy::Canary {
        analysis: Some(analysis),
        ..
    }) = target.strategy.as_ref().map(|s| &s.0)
    else {
        return None;
    };
    let stable = releases
        .iter()
        .find(|r| r.status() == ReleaseStatus::Active)?;
    let window = Duration::from_secs(u64::from(analysis.window_seconds));
    let app_stats = stats.iter().find(|s| s.app_id == app.id);
    let mut figures_of = |version: u32| {
        let sample = app_stats
            .and_then(|a| a.sets.iter().find(|(v, _)| *v == version))
            .map(|(_, s)| Sample {
                requests: s.requests,
                server_errors: s.status.server_error,
                buckets: s.latency.buckets.iter().map(|b| b.count).collect(),
            });
        watched.insert((app.id, version));
        state
            .rollout_book
            .window((app.id, version), sample, window, now)
    };
    let canary = figures_of(target.version());
    let stable_figures = figures_of(stable.version());
    let verdict = if target.weight > 0 {
        judge(analysis, &canary).text()
    } else {
        "no traffic to the canary yet".into()
    };
    Some(Analysed {
        release: target.id,
        canary: canary.clone(),
        figures: AnalysisFigures {
            window_seconds: analysis.window_seconds,
            canary,
            stable: Some(stable_figures),
            verdict,
        },
    })
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
                     ready_seen = 0, strategy = $3, step = 0, weight = 0, step_started_at = $2
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(now)
            .bind(sqlx::types::Json(&app.strategy.0))
            .execute(&state.db)
            .await?
            .rows_affected();
            if started > 0 {
                let r = release(id)?;
                tracing::info!(app.id = %app.id, release.version = r.version, "rolling out v{} of app {}", r.version, app.name);
                let text = format!(
                    "release v{} created by {} ({}): rolling out {} ({})",
                    r.version,
                    r.actor,
                    r.cause,
                    r.image,
                    app.strategy.0.kind()
                );
                transition(state, app, r, 0, 0, text).await;
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
                transition(state, app, r, r.step.max(0) as u32, 100, text).await;
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
                transition(state, app, r, r.step.max(0) as u32, 0, text).await;
            }
        }
        Step::Advance {
            release: id,
            step,
            weight,
            promoted,
            text,
        } => {
            let r = release(id)?;
            // Conditional on the step this pass saw: a promote, pause or abort in between wins.
            let advanced = sqlx::query(
                "UPDATE releases SET step = $2, weight = $3, step_started_at = $4,
                     promote_requested = false, promote_full = false,
                     promoted_at = CASE WHEN $5 THEN $4 ELSE promoted_at END
                 WHERE id = $1 AND status = 'rolling_out' AND step = $6 AND NOT paused",
            )
            .bind(id)
            .bind(step as i32)
            .bind(weight as i32)
            .bind(now)
            .bind(promoted)
            .bind(r.step)
            .execute(&state.db)
            .await?
            .rows_affected();
            if advanced > 0 {
                tracing::info!(app.id = %app.id, release.version = r.version, "rollout of v{} of app {}: {text}", r.version, app.name);
                let text = format!("v{}: {text}", r.version);
                transition(state, app, r, step, weight, text).await;
                state.routes.notify_one();
                // The next step may be due at once (a pause of 0 s, a set already ready).
                state.rollouts.notify_one();
            }
        }
        Step::Abort {
            release: id,
            reason,
        } => {
            let r = release(id)?;
            let aborted = sqlx::query(
                "UPDATE releases SET status = 'aborted', finished_at = $2, reason = $3
                 WHERE id = $1 AND status IN ('pending', 'rolling_out')",
            )
            .bind(id)
            .bind(now)
            .bind(&reason)
            .execute(&state.db)
            .await?
            .rows_affected();
            if aborted > 0 {
                // The traffic first: the route sync gives the aborted set nothing.
                state.routes.notify_one();
                tracing::warn!(app.id = %app.id, release.version = r.version, "rollout of v{} of app {} aborted: {reason}", r.version, app.name);
                let text = format!(
                    "rollout of v{} aborted: {reason}; all traffic back to the stable release",
                    r.version
                );
                transition(state, app, r, r.step.max(0) as u32, 0, text).await;
            }
        }
        Step::Wait { .. } => {}
    }
    Ok(())
}

/// Records a transition of a release's rollout: in its history and as an event in the app's
/// log.
pub async fn transition(
    state: &AppState,
    app: &AppInfo,
    release: &ReleaseRow,
    step: u32,
    weight: u32,
    text: String,
) {
    let stored = sqlx::query(
        "INSERT INTO rollout_transitions (release_id, step, weight, text)
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM releases WHERE id = $1)",
    )
    .bind(release.id)
    .bind(step as i32)
    .bind(weight as i32)
    .bind(&text)
    .execute(&state.db)
    .await;
    if let Err(e) = stored {
        tracing::warn!(app.id = %app.id, "failed to record a rollout transition: {e}");
    }
    let event = crate::logs::events::Event {
        team_id: app.team_id,
        app_id: app.id,
        release: Some(release.version),
        instance: None,
        text,
    };
    crate::logs::events::record(&state.db, &state.logs.hub, vec![event]).await;
}
