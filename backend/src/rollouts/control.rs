//! What a person can do to a rollout under way: promote, abort, pause, resume. Each is one
//! conditional update of the release's row (so it never fights the controller: the controller's
//! own updates are conditional on the step it saw), an audit entry, a transition in the
//! rollout's history, and a kick to the controller and the route sync.
//!
//! An abort takes effect here, not at the controller's next pass: the release is `aborted` when
//! the request returns, and the route sync that follows gives its set no traffic.

use gantry_common::releases::{CanaryStep, ReleaseStatus, RolloutAction, Strategy};
use serde_json::json;
use time::OffsetDateTime;

use super::AppInfo;
use crate::audit::{self, Actor};
use crate::error::{conflict, not_found, ApiResult};
use crate::releases::{ReleaseRow, RELEASE_COLUMNS};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// End the current pause (canary) or flip the traffic (blue-green); `full`: skip every
    /// remaining canary step.
    Promote {
        full: bool,
    },
    Abort,
    Pause,
    Resume,
}

impl Action {
    fn audit_action(self) -> &'static str {
        match self {
            Action::Promote { .. } => "rollout.promote",
            Action::Abort => "rollout.abort",
            Action::Pause => "rollout.pause",
            Action::Resume => "rollout.resume",
        }
    }
}

/// Applies `action` to rollout `version` (the release it rolls out) of `app`.
///
/// # Errors
/// 404 when the app has no such release; 409 when the rollout is not under way, or the action
/// does not fit its strategy or step (the message says what would).
pub async fn act(
    state: &AppState,
    app: &AppInfo,
    version: u32,
    action: Action,
    actor: Actor,
) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let release: ReleaseRow = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 AND version = $2 FOR UPDATE"
    ))
    .bind(app.id)
    .bind(version.min(i32::MAX as u32) as i32)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(&format!("rollout {version}")))?;
    let status = release.status();
    if !status.in_flight() {
        return Err(conflict(format!(
            "rollout {version} is not under way: v{version} is {status}"
        )));
    }
    let strategy = release
        .strategy
        .as_ref()
        .map_or_else(|| app.strategy.0.clone(), |s| s.0.clone());
    if action != Action::Abort {
        check(&release, &strategy, action)?;
    }
    let now = OffsetDateTime::now_utc();
    let text = match action {
        Action::Promote { full } => format!(
            "{} asked to promote v{version}{}",
            actor.label,
            if full { " in full" } else { "" }
        ),
        Action::Pause => format!("paused by {}", actor.label),
        Action::Resume => format!("resumed by {}", actor.label),
        Action::Abort => format!("aborted by {}", actor.label),
    };
    let update = match action {
        Action::Promote { full } => sqlx::query(
            "UPDATE releases SET promote_requested = true, promote_full = $2 WHERE id = $1",
        )
        .bind(release.id)
        .bind(full),
        Action::Pause => {
            sqlx::query("UPDATE releases SET paused = true WHERE id = $1").bind(release.id)
        }
        Action::Resume => {
            sqlx::query("UPDATE releases SET paused = false WHERE id = $1").bind(release.id)
        }
        Action::Abort => sqlx::query(
            "UPDATE releases SET status = 'aborted', finished_at = $2, reason = $3 WHERE id = $1",
        )
        .bind(release.id)
        .bind(now)
        .bind(&text),
    };
    update.execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id: app.team_id,
            action: action.audit_action(),
            target: format!("app:{}", app.name),
            details: json!({"rollout": version, "strategy": strategy.kind(), "step": release.step}),
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    if action == Action::Abort {
        state.routes.notify_one();
    }
    state.rollouts.notify_one();
    let text = match action {
        Action::Abort => {
            format!("rollout of v{version} {text}; all traffic back to the stable release")
        }
        _ => format!("rollout of v{version}: {text}"),
    };
    super::transition(
        state,
        app,
        &release,
        release.step.max(0) as u32,
        release.weight.clamp(0, 100) as u32,
        text,
    )
    .await;
    Ok(())
}

/// The actions that fit rollout `release` now.
pub fn allowed(release: &ReleaseRow, strategy: &Strategy) -> Vec<RolloutAction> {
    if !release.status().in_flight() {
        return Vec::new();
    }
    let mut out: Vec<RolloutAction> = [
        (RolloutAction::Promote, Action::Promote { full: false }),
        (RolloutAction::PromoteFull, Action::Promote { full: true }),
    ]
    .into_iter()
    .filter(|(_, action)| check(release, strategy, *action).is_ok())
    .map(|(name, _)| name)
    .collect();
    if matches!(strategy, Strategy::Rolling { .. }) || release.strategy.is_none() {
        // Rolling (or not started): neither pause nor promote fit.
    } else if release.paused {
        out.push(RolloutAction::Resume);
    } else {
        out.push(RolloutAction::Pause);
    }
    // Blue-green: promote and promote in full are one action.
    if matches!(strategy, Strategy::BlueGreen { .. }) {
        out.retain(|a| *a != RolloutAction::PromoteFull);
    }
    out.push(RolloutAction::Abort);
    out
}

/// Whether promote, pause or resume fit the rollout's strategy and step.
fn check(release: &ReleaseRow, strategy: &Strategy, action: Action) -> ApiResult<()> {
    let version = release.version;
    if release.status() != ReleaseStatus::RollingOut || release.strategy.is_none() {
        return Err(conflict(format!(
            "rollout {version} has not started yet; try again in a moment"
        )));
    }
    let step = release.step.max(0) as usize;
    match (strategy, action) {
        (Strategy::Rolling { .. }, _) => Err(conflict(format!(
            "rollout {version} is a rolling update: it has no steps to promote or pause (abort it, or roll back)"
        ))),
        (Strategy::Canary { steps, .. }, Action::Promote { full: false }) => match steps.get(step) {
            Some(CanaryStep::PauseSeconds(_)) => Ok(()),
            Some(CanaryStep::SetWeight(w)) => Err(conflict(format!(
                "rollout {version} is at step {} (set_weight {w}), not at a pause: promote with ?full=true to skip every remaining step",
                step + 1
            ))),
            None => Err(conflict(format!(
                "rollout {version} has done all its steps: the new release is taking over"
            ))),
        },
        (Strategy::BlueGreen { .. }, Action::Promote { .. }) if step >= 2 => Err(conflict(
            format!("rollout {version} is already promoted"),
        )),
        _ => Ok(()),
    }
}
