//! The route sync: keeps the router's table equal to what the cluster shows. On every change the
//! cluster reports (an instance became ready, one was taken out), on every app created, deleted
//! or given another port, and every [`RESYNC`], it reads the routable endpoints and the apps
//! that have a port, builds the whole [`RouteSpec`] and swaps it into the router — then tells
//! the cluster which version of its endpoints the router now routes, so instances taken out may
//! stop. How the traffic splits between an app's release sets (a canary's weight, blue-green's
//! flip and preview) is `rollout::traffic`'s decision, from the releases' rows.

use std::collections::HashMap;
use std::time::Duration;

use gantry_orchestrator::rollout::traffic::{traffic, ReleaseTraffic, SetTraffic};
use gantry_orchestrator::router::{AppSpec, EndpointSpec, RouteSpec, SetSpec};
use uuid::Uuid;

use crate::releases::{ReleaseRow, RELEASE_COLUMNS};
use crate::rollouts::rollout_state;
use crate::state::AppState;

/// A sync without any change, to heal anything missed.
pub const RESYNC: Duration = Duration::from_secs(5);

pub async fn run_forever(state: AppState) {
    let mut changes = state.cluster.changes();
    loop {
        // Marked seen before reading: a change during the sync makes another sync.
        changes.borrow_and_update();
        if let Err(e) = sync(&state).await {
            tracing::warn!("route sync failed (retrying in {RESYNC:?}): {e:#}");
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = state.routes.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// One sync.
pub async fn sync(state: &AppState) -> anyhow::Result<()> {
    let endpoints = state.cluster.endpoints().await?;
    let apps: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT a.id, t.slug, a.name FROM apps a JOIN teams t ON t.id = a.team_id
         WHERE a.port IS NOT NULL",
    )
    .fetch_all(&state.db)
    .await?;
    let set_ids: Vec<Uuid> = endpoints
        .apps
        .iter()
        .flat_map(|a| a.sets.iter().map(|s| s.release_id))
        .collect();
    let rows: Vec<ReleaseRow> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE status IN ('rolling_out', 'active') OR id = ANY($1)"
    ))
    .bind(&set_ids)
    .fetch_all(&state.db)
    .await?;
    let mut releases: HashMap<Uuid, Vec<ReleaseTraffic>> = HashMap::new();
    for r in &rows {
        releases.entry(r.app_id).or_default().push(ReleaseTraffic {
            id: r.id,
            status: r.status(),
            rollout: rollout_state(r),
        });
    }
    let mut sets: HashMap<Uuid, (Vec<SetSpec>, Option<Uuid>, bool)> = HashMap::new();
    for app in endpoints.apps {
        let split = traffic(
            releases.get(&app.app_id).map_or(&[], Vec::as_slice),
            &app.sets
                .iter()
                .map(|s| SetTraffic {
                    release: s.release_id,
                    endpoints: s.endpoints.len() as u32,
                })
                .collect::<Vec<_>>(),
        );
        let (preview, sticky) = (split.preview, split.sticky);
        let app_sets = app
            .sets
            .into_iter()
            .zip(split.weights)
            .map(|(s, weight)| SetSpec {
                release_id: s.release_id,
                version: s.version,
                weight,
                endpoints: s
                    .endpoints
                    .into_iter()
                    .map(|(instance, addr)| EndpointSpec { instance, addr })
                    .collect(),
            })
            .collect();
        sets.insert(app.app_id, (app_sets, preview, sticky));
    }
    let spec = RouteSpec {
        apps: apps
            .into_iter()
            .map(|(app_id, team, app)| {
                let (sets, preview, sticky) = sets.remove(&app_id).unwrap_or_default();
                AppSpec {
                    app_id,
                    team,
                    app,
                    sets,
                    preview,
                    sticky,
                }
            })
            .collect(),
    };
    state.router.update(spec);
    state.cluster.routed(endpoints.version);
    Ok(())
}
