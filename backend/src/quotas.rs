//! Team quotas above the `Cluster` seam: a team's limits (its own, or the platform's defaults)
//! and what its apps reserve now — the instances of every release set the cluster was asked for
//! (surge, canary and blue-green sets included), each with its release's CPU and memory.
//!
//! Where they are enforced: creating an app and scaling one answer 409 with the figures; the
//! rollout controller does not grow a set beyond the quota (the rollout waits, and says so); the
//! autoscaler is clamped to what fits.

use std::collections::HashMap;

use gantry_common::quotas::{QuotaLimits, QuotaUsage, Reserve};
use gantry_orchestrator::cluster::SetStatus;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::state::AppState;

/// Who a release belongs to and what each of its instances reserves.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Size {
    pub team_id: Uuid,
    pub cpu_millis: i32,
    pub memory_mib: i32,
}

/// The instances the cluster's live sets reserve, per team (apps are not counted here).
pub fn tally<'a>(
    sets: impl IntoIterator<Item = &'a SetStatus>,
    sizes: &HashMap<Uuid, Size>,
) -> HashMap<Uuid, QuotaUsage> {
    let mut usage: HashMap<Uuid, QuotaUsage> = HashMap::new();
    for set in sets.into_iter().filter(|s| !s.removed) {
        let Some(size) = sizes.get(&set.release_id) else {
            continue;
        };
        let team = usage.entry(size.team_id).or_default();
        team.instances += set.replicas;
        team.cpu_millis += u64::from(set.replicas) * size.cpu_millis.max(0) as u64;
        team.memory_mib += u64::from(set.replicas) * size.memory_mib.max(0) as u64;
    }
    usage
}

/// What every team may still add, as the rollout controller resizes sets during one pass.
pub struct Room {
    pub usage: HashMap<Uuid, QuotaUsage>,
    pub limits: HashMap<Uuid, QuotaLimits>,
    pub defaults: QuotaLimits,
}

impl Room {
    /// Resizes a set of `team` from `from` to `to` instances of `size` in the books, if it
    /// fits; growing beyond the quota is refused with why. Shrinking always fits.
    pub fn resize(&mut self, team: Uuid, from: u32, to: u32, size: Size) -> Result<(), String> {
        let usage = self.usage.entry(team).or_default();
        let (cpu, memory) = (size.cpu_millis.max(0) as u32, size.memory_mib.max(0) as u32);
        if to > from {
            let limits = self.limits.get(&team).unwrap_or(&self.defaults);
            let add = Reserve {
                instances: to - from,
                cpu_millis: cpu,
                memory_mib: memory,
            };
            usage.fits(limits, add)?;
            usage.instances += add.instances;
            usage.cpu_millis += u64::from(add.instances) * u64::from(cpu);
            usage.memory_mib += u64::from(add.instances) * u64::from(memory);
        } else {
            let gone = from - to;
            usage.instances = usage.instances.saturating_sub(gone);
            usage.cpu_millis = usage
                .cpu_millis
                .saturating_sub(u64::from(gone) * u64::from(cpu));
            usage.memory_mib = usage
                .memory_mib
                .saturating_sub(u64::from(gone) * u64::from(memory));
        }
        Ok(())
    }
}

/// The releases' sizes, for [`tally`].
pub async fn sizes(state: &AppState, releases: &[Uuid]) -> sqlx::Result<HashMap<Uuid, Size>> {
    let rows: Vec<(Uuid, Uuid, i32, i32)> = sqlx::query_as(
        "SELECT id, team_id, cpu_millis, memory_mib FROM releases WHERE id = ANY($1)",
    )
    .bind(releases)
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, team_id, cpu_millis, memory_mib)| {
            (
                id,
                Size {
                    team_id,
                    cpu_millis,
                    memory_mib,
                },
            )
        })
        .collect())
}

/// Every team's usage now (apps included).
pub async fn usage_by_team(state: &AppState) -> anyhow::Result<HashMap<Uuid, QuotaUsage>> {
    let sets = state.cluster.sets().await?;
    let ids: Vec<Uuid> = sets.iter().map(|s| s.release_id).collect();
    let mut usage = tally(&sets, &sizes(state, &ids).await?);
    let apps: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT team_id, count(*) FROM apps GROUP BY team_id")
            .fetch_all(&state.db)
            .await?;
    for (team, count) in apps {
        usage.entry(team).or_default().apps = count.max(0) as u32;
    }
    Ok(usage)
}

/// One team's usage now.
pub async fn usage(state: &AppState, team: Uuid) -> ApiResult<QuotaUsage> {
    let all = usage_by_team(state)
        .await
        .map_err(crate::error::ApiError::internal)?;
    Ok(all.get(&team).copied().unwrap_or_default())
}

/// Every team's limits that differ from the platform's defaults; the rest have the defaults.
pub async fn limits_by_team(state: &AppState) -> sqlx::Result<HashMap<Uuid, QuotaLimits>> {
    let rows: Vec<LimitsRow> = sqlx::query_as(&format!(
        "SELECT {LIMIT_COLUMNS} FROM teams WHERE quota_apps IS NOT NULL"
    ))
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.limits(&state.team_quota).0))
        .collect())
}

/// A team's limits, and whether they are its own.
pub async fn limits(state: &AppState, team: Uuid) -> sqlx::Result<(QuotaLimits, bool)> {
    let row: LimitsRow =
        sqlx::query_as(&format!("SELECT {LIMIT_COLUMNS} FROM teams WHERE id = $1"))
            .bind(team)
            .fetch_one(&state.db)
            .await?;
    Ok(row.limits(&state.team_quota))
}

const LIMIT_COLUMNS: &str = "id, quota_apps, quota_instances, quota_cpu_millis, quota_memory_mib";

#[derive(sqlx::FromRow)]
struct LimitsRow {
    id: Uuid,
    quota_apps: Option<i32>,
    quota_instances: Option<i32>,
    quota_cpu_millis: Option<i32>,
    quota_memory_mib: Option<i32>,
}

impl LimitsRow {
    fn limits(&self, defaults: &QuotaLimits) -> (QuotaLimits, bool) {
        let pick = |own: Option<i32>, default: u32| own.map_or(default, |v| v.max(0) as u32);
        (
            QuotaLimits {
                apps: pick(self.quota_apps, defaults.apps),
                instances: pick(self.quota_instances, defaults.instances),
                cpu_millis: pick(self.quota_cpu_millis, defaults.cpu_millis),
                memory_mib: pick(self.quota_memory_mib, defaults.memory_mib),
            },
            self.quota_apps.is_some(),
        )
    }
}

/// The message of a refusal: whose quota, what it would take, what to do.
pub fn exceeded(team: &str, why: &str) -> String {
    format!(
        "team {team}'s quota would be exceeded: {why}; free some, or ask a platform admin to raise it (GET …/quota shows limits and usage)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_follows_resizes_within_a_pass() {
        let team = Uuid::from_u128(1);
        let size = Size {
            team_id: team,
            cpu_millis: 100,
            memory_mib: 64,
        };
        let mut room = Room {
            usage: HashMap::new(),
            limits: HashMap::new(),
            defaults: QuotaLimits {
                apps: 1,
                instances: 4,
                cpu_millis: 1_000,
                memory_mib: 1_000,
            },
        };
        assert_eq!(room.resize(team, 0, 3, size), Ok(()));
        // A surge of two does not fit beside three…
        assert_eq!(
            room.resize(team, 0, 2, size),
            Err("5 of 4 instances".into())
        );
        // …until an old one goes.
        assert_eq!(room.resize(team, 3, 2, size), Ok(()));
        assert_eq!(room.resize(team, 0, 2, size), Ok(()));
        assert_eq!(room.usage[&team].cpu_millis, 400);
        // Another team's limits are its own.
        let other = Uuid::from_u128(2);
        room.limits.insert(
            other,
            QuotaLimits {
                instances: 10,
                ..room.defaults
            },
        );
        assert_eq!(
            room.resize(
                other,
                0,
                9,
                Size {
                    team_id: other,
                    cpu_millis: 0,
                    memory_mib: 0
                }
            ),
            Ok(())
        );
    }
}
