//! The rollout as people see it: `GET …/rollouts/current`, the dashboard's rollout panel and
//! `gantry rollout status`.

use std::collections::HashMap;

use gantry_common::releases::{ReleaseStatus, Rollout, RolloutTransition, Strategy};
use gantry_orchestrator::cluster::SetStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AppInfo;
use crate::error::ApiResult;
use crate::releases::{ReleaseRow, RELEASE_COLUMNS};
use crate::state::AppState;

/// The newest rollout of an app (the one under way, or the last one), for
/// `GET …/rollouts/current`.
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
    let history: Vec<(OffsetDateTime, i32, i32, String)> = sqlx::query_as(
        "SELECT at, step, weight, text FROM rollout_transitions WHERE release_id = $1
         ORDER BY id LIMIT 200",
    )
    .bind(newest.id)
    .fetch_all(&state.db)
    .await?;
    let strategy = newest
        .strategy
        .as_ref()
        .map_or_else(|| app.strategy.0.clone(), |s| s.0.clone());
    let in_flight = newest.status().in_flight();
    let actions = super::control::allowed(newest, &strategy);
    let preview_url = (matches!(strategy, Strategy::BlueGreen { .. }) && in_flight).then(|| {
        state
            .app_url(&app.team, &app.name)
            .replacen("://", "://preview.", 1)
    });
    Ok(Some(Rollout {
        release: newest.version(),
        status: newest.status(),
        reason: newest.reason.clone(),
        from,
        strategy,
        step: newest.step.max(0) as u32,
        weight: match newest.status() {
            ReleaseStatus::Active => 100,
            ReleaseStatus::RollingOut => newest.weight.clamp(0, 100) as u32,
            _ => 0,
        },
        paused: newest.paused && in_flight,
        waiting: in_flight
            .then(|| state.rollout_book.waiting(newest.id))
            .flatten(),
        analysis: state.rollout_book.figures(newest.id),
        preview_url,
        promoted_at: newest.promoted_at,
        desired: app.replicas.max(0) as u32,
        updated: new_set.map_or(0, |s| s.replicas),
        ready: new_set.map_or(0, |s| s.ready.min(s.replicas)),
        old,
        started_at: newest.started_at,
        deadline_at,
        finished_at: newest.finished_at,
        history: history
            .into_iter()
            .map(|(at, step, weight, text)| RolloutTransition {
                at,
                step: step.max(0) as u32,
                weight: weight.clamp(0, 100) as u32,
                text,
            })
            .collect(),
        actions,
    }))
}
