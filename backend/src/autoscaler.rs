//! The autoscaler, above the `Cluster` seam: every [`PERIOD`] it reads, for each app with a
//! policy, the CPU its instances use (the agents' usage reports) and the requests per second the
//! router counted, asks the pure `autoscale::decide` for a replica count, and sets it as a scale
//! would (the rollout controller then resizes the serving release). Decisions that change the
//! count, or hold a change back, are recorded with their inputs (`autoscaler_decisions`) and as
//! events in the app's log.
//!
//! Its memory (earlier recommendations for the scale-down stabilisation window, the last request
//! counts) is in this task. After a restart each app starts with its current count as its one
//! recommendation, so the window starts afresh: that can only delay a scale-down, never cause
//! one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use gantry_common::autoscaling::{AutoscalerDecision, Autoscaling, AutoscalingStatus};
use gantry_common::cluster::InstanceState;
use gantry_orchestrator::autoscale::{decide, Input};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::state::AppState;

/// How often decisions are made: the agents report usage every 5 s.
pub const PERIOD: Duration = Duration::from_secs(5);
/// Held for a pass, so that two servers on one database never both scale an app.
const ADVISORY_LOCK: i64 = 4_242_005;
/// Recommendations are kept this long (the longest stabilisation window allowed).
const KEEP: time::Duration = time::Duration::hours(1);

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: Uuid,
    team_id: Uuid,
    name: String,
    replicas: i32,
    cpu_millis: i32,
    memory_mib: i32,
    autoscaling: sqlx::types::Json<Autoscaling>,
    rolling_out: bool,
}

#[derive(Default)]
struct Memory {
    recent: HashMap<Uuid, VecDeque<(OffsetDateTime, u32)>>,
    /// The router's request count of each app at the last pass.
    requests: HashMap<Uuid, (Instant, u64)>,
    /// The last decision recorded per app (recommendation, replicas), so that one holding a
    /// change back is recorded once, not every pass as its readings move.
    recorded: HashMap<Uuid, (u32, u32)>,
}

pub async fn run_forever(state: AppState) {
    let mut memory = Memory::default();
    loop {
        if let Err(e) = pass(&state, &mut memory).await {
            tracing::warn!("autoscaler pass failed (retrying in {PERIOD:?}): {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = state.autoscaler.notified() => {}
        }
    }
}

async fn pass(state: &AppState, memory: &mut Memory) -> anyhow::Result<()> {
    let mut lock = state.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK)
        .execute(&mut *lock)
        .await?;
    let apps: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.team_id, a.name, a.replicas, a.cpu_millis, a.memory_mib, a.autoscaling,
                EXISTS (SELECT 1 FROM releases r WHERE r.app_id = a.id
                        AND r.status IN ('pending', 'rolling_out')) AS rolling_out
         FROM apps a WHERE a.autoscaling IS NOT NULL",
    )
    .fetch_all(&state.db)
    .await?;
    let usage = state.metrics.usage.current();
    let mut quota_usage = crate::quotas::usage_by_team(state).await?;
    let quota_limits = crate::quotas::limits_by_team(state).await?;
    let sets = state.cluster.sets().await?;
    let stats = state.router.stats();
    let now = OffsetDateTime::now_utc();
    let instant = Instant::now();
    for app in &apps {
        // Only ready instances: one starting, failing its health check or draining uses little
        // CPU and would dilute the figure of those that serve (`decide` multiplies the mean by
        // the ready count).
        let ready_ids: HashSet<Uuid> = state
            .cluster
            .instances(app.id)
            .await?
            .into_iter()
            .filter(|i| i.state == InstanceState::Ready)
            .map(|i| i.id)
            .collect();
        let used: Vec<u32> = usage
            .iter()
            .filter(|u| u.owner.app_id == app.id && ready_ids.contains(&u.owner.instance_id))
            .map(|u| u.usage.cpu_millis)
            .collect();
        let cpu_percent = (!used.is_empty() && app.cpu_millis > 0).then(|| {
            let mean = used.iter().map(|&c| f64::from(c)).sum::<f64>() / used.len() as f64;
            mean * 100.0 / f64::from(app.cpu_millis)
        });
        let ready: u32 = sets
            .iter()
            .filter(|s| s.app_id == app.id && !s.removed)
            .map(|s| s.ready.min(s.replicas))
            .sum();
        let requests = stats
            .iter()
            .find(|s| s.app_id == app.id)
            .map(|s| s.stats.requests);
        let rps = match (requests, memory.requests.get(&app.id)) {
            (Some(now_count), Some(&(then, then_count))) if now_count >= then_count => {
                let seconds = instant.duration_since(then).as_secs_f64();
                (seconds >= 0.5).then(|| (now_count - then_count) as f64 / seconds)
            }
            _ => None,
        };
        if let Some(count) = requests {
            let keep_base = memory.requests.get(&app.id).is_some_and(|&(then, _)| {
                instant.duration_since(then) < Duration::from_millis(500)
            });
            if !keep_base {
                memory.requests.insert(app.id, (instant, count));
            }
        }
        let current = app.replicas.max(0) as u32;
        // An app first seen (after a restart, or a new policy) counts as having asked for what
        // it has now: a scale-down then waits a whole window, as it would have before.
        let recent = memory
            .recent
            .entry(app.id)
            .or_insert_with(|| VecDeque::from([(now, current)]));
        while recent.front().is_some_and(|(at, _)| now - *at > KEEP) {
            recent.pop_front();
        }
        // The most this app may have: what it has, plus what the team's quota has room for.
        let team_usage = quota_usage.entry(app.team_id).or_default();
        let limits = quota_limits.get(&app.team_id).unwrap_or(&state.team_quota);
        let memory_mib = app.memory_mib.max(0) as u32;
        let quota_max = current + team_usage.room(limits, app.cpu_millis.max(0) as u32, memory_mib);
        let decision = decide(&Input {
            policy: &app.autoscaling.0,
            current,
            cpu_percent,
            rps,
            ready,
            quota_max: Some(quota_max),
            now,
            recent: recent.make_contiguous(),
            rollout_in_progress: app.rolling_out,
        });
        recent.push_back((now, decision.recommendation));

        let changes = decision.replicas != current;
        let holds = decision.recommendation != current;
        let seen = (decision.recommendation, decision.replicas);
        let new_hold = memory.recorded.get(&app.id) != Some(&seen);
        if !(changes || holds && new_hold) {
            continue;
        }
        if changes {
            let scaled = sqlx::query(
                "UPDATE apps SET replicas = $3, updated_at = now()
                 WHERE id = $1 AND replicas = $2 AND autoscaling IS NOT NULL",
            )
            .bind(app.id)
            .bind(app.replicas)
            .bind(decision.replicas as i32)
            .execute(&state.db)
            .await?
            .rows_affected();
            if scaled == 0 {
                // Scaled by a person in the meantime: the next pass decides from there.
                continue;
            }
            tracing::info!(app.id = %app.id, "autoscaler: app {} {current} → {}: {}", app.name, decision.replicas, decision.reason);
            // Later apps of the team this pass see the room this one took (or freed).
            let size = |n: u32| u64::from(n);
            if decision.replicas > current {
                let more = decision.replicas - current;
                team_usage.instances += more;
                team_usage.cpu_millis += size(more) * app.cpu_millis.max(0) as u64;
                team_usage.memory_mib += size(more) * u64::from(memory_mib);
            }
            state.rollouts.notify_one();
        }
        let per_instance = rps.map(|r| r / f64::from(ready.max(1)));
        sqlx::query(
            "INSERT INTO autoscaler_decisions (team_id, app_id, at, from_replicas, to_replicas,
                 cpu_percent, rps_per_instance, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app.team_id)
        .bind(app.id)
        .bind(now)
        .bind(current as i32)
        .bind(decision.replicas as i32)
        .bind(cpu_percent)
        .bind(per_instance)
        .bind(&decision.reason)
        .execute(&state.db)
        .await?;
        let event = crate::logs::events::Event {
            team_id: app.team_id,
            app_id: app.id,
            release: None,
            instance: None,
            text: format!("autoscaler: {}", decision.reason),
        };
        crate::logs::events::record(&state.db, &state.logs.hub, vec![event]).await;
        memory.recorded.insert(app.id, seen);
    }
    let live: std::collections::HashSet<Uuid> = apps.iter().map(|a| a.id).collect();
    memory.recent.retain(|id, _| live.contains(id));
    memory.requests.retain(|id, _| live.contains(id));
    memory.recorded.retain(|id, _| live.contains(id));
    lock.commit().await?;
    Ok(())
}

/// The policy, the replica count and the newest decisions, for `GET …/autoscaling`.
pub async fn status(state: &AppState, app: Uuid) -> ApiResult<AutoscalingStatus> {
    let (policy, replicas): (Option<sqlx::types::Json<Autoscaling>>, i32) =
        sqlx::query_as("SELECT autoscaling, replicas FROM apps WHERE id = $1")
            .bind(app)
            .fetch_one(&state.db)
            .await?;
    type DecisionRow = (OffsetDateTime, i32, i32, Option<f64>, Option<f64>, String);
    let rows: Vec<DecisionRow> = sqlx::query_as(
        "SELECT at, from_replicas, to_replicas, cpu_percent, rps_per_instance, reason
         FROM autoscaler_decisions WHERE app_id = $1 ORDER BY id DESC LIMIT 50",
    )
    .bind(app)
    .fetch_all(&state.db)
    .await?;
    Ok(AutoscalingStatus {
        policy: policy.map(|p| p.0),
        replicas: replicas.max(0) as u32,
        decisions: rows
            .into_iter()
            .map(
                |(at, from, to, cpu_percent, rps_per_instance, reason)| AutoscalerDecision {
                    at,
                    from: from.max(0) as u32,
                    to: to.max(0) as u32,
                    cpu_percent,
                    rps_per_instance,
                    reason,
                },
            )
            .collect(),
    })
}
