use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use gantry_common::api::{ConfigVars, PatchConfig, ReplaceConfig};
use gantry_common::{ConfigKey, Permission};
use serde_json::json;

use crate::audit;
use crate::authz::AppAccess;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::releases::create::{create, Change};
use crate::routes::answers;
use crate::state::AppState;

/// Replace all of an app's config vars; keys not given are removed. Once the app has a release,
/// this makes a new one that rolls out like a deploy (its instances get the new environment).
#[utoipa::path(put, path = "/api/v1/teams/{team}/apps/{app}/config", tag = "config",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = ReplaceConfig,
    responses(
        (status = 200, body = ConfigVars),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change config; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid name or value, too many vars, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn replace(
    State(state): State<AppState>,
    access: AppAccess,
    ApiJson(body): ApiJson<ReplaceConfig>,
) -> ApiResult<Json<ConfigVars>> {
    access.access.require(Permission::WriteApps)?;
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT key FROM app_config_vars WHERE app_id = $1")
            .bind(access.app.id)
            .fetch_all(&state.db)
            .await?;
    let removals: Vec<ConfigKey> = existing
        .iter()
        .filter(|k| !body.vars.keys().any(|n| n.as_str() == k.as_str()))
        .filter_map(|k| ConfigKey::parse(k).ok())
        .collect();
    apply(&state, &access, &body.vars, &removals)
        .await
        .map(Json)
}

/// Set some config vars; a `null` value removes that var. Once the app has a release, this
/// makes a new one that rolls out like a deploy.
#[utoipa::path(patch, path = "/api/v1/teams/{team}/apps/{app}/config", tag = "config",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name")),
    request_body = PatchConfig,
    responses(
        (status = 200, body = ConfigVars),
        answers::Authenticated, answers::PathParams, answers::JsonBody,
        (status = 403, description = "Viewers cannot change config; or a refused write (cross-site, or no CSRF token)", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
        (status = 422, description = "Invalid name or value, too many vars, or an unknown field", body = gantry_common::ErrorBody),
    ))]
pub async fn patch(
    State(state): State<AppState>,
    access: AppAccess,
    ApiJson(body): ApiJson<PatchConfig>,
) -> ApiResult<Json<ConfigVars>> {
    access.access.require(Permission::WriteApps)?;
    let mut upserts = BTreeMap::new();
    let mut removals = Vec::new();
    for (key, value) in body.vars {
        match value {
            Some(v) => {
                upserts.insert(key, v);
            }
            None => removals.push(key),
        }
    }
    apply(&state, &access, &upserts, &removals).await.map(Json)
}

async fn apply(
    state: &AppState,
    access: &AppAccess,
    upserts: &BTreeMap<ConfigKey, String>,
    removals: &[ConfigKey],
) -> ApiResult<ConfigVars> {
    let team_id = access.access.team.id;
    let mut tx = state.db.begin().await?;
    // Serialise concurrent edits of one app's config, so the size limit holds.
    sqlx::query("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE")
        .bind(access.app.id)
        .execute(&mut *tx)
        .await?;
    super::write(&mut tx, state, team_id, access.app.id, upserts, removals).await?;
    let actor = audit::Actor::from(&access.access.caller);
    let release = create(
        &mut tx,
        &state.sealer,
        access.app.id,
        team_id,
        &actor,
        Change::Config {
            set: upserts.keys().map(|k| k.as_str().to_owned()).collect(),
            removed: removals.iter().map(|k| k.as_str().to_owned()).collect(),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        audit::Event {
            team_id,
            action: "config.update",
            target: format!("app:{}", access.app.name),
            // Names only: values are secrets.
            details: json!({
                "set": upserts.keys().collect::<Vec<_>>(),
                "removed": removals,
                "release": release.as_ref().map(|r| r.version()),
            }),
            actor,
        },
    )
    .await?;
    let vars = super::load(&mut tx, state, access).await?;
    tx.commit().await?;
    if release.is_some() {
        state.rollouts.notify_one();
    }
    Ok(vars)
}
