//! Rollback, as Heroku does it: a new release made from an old one, and the app's config vars
//! and settings become that release's again.

use sqlx::PgConnection;
use uuid::Uuid;

use super::create::{create, Change};
use super::{get, ReleaseRow, RELEASE_COLUMNS};
use crate::audit::Actor;
use crate::crypto::Sealer;
use crate::error::{conflict, ApiError, ApiResult};

/// Rolls the app back to release `version`, or by default to the last release that served
/// before the current one (the newest that serves or is on its way). Returns the new release.
pub async fn rollback(
    tx: &mut PgConnection,
    sealer: &Sealer,
    app_id: Uuid,
    team_id: Uuid,
    actor: &Actor,
    version: Option<u32>,
) -> ApiResult<ReleaseRow> {
    let target = match version {
        Some(v) => get(tx, app_id, v).await?,
        None => last_good_before_current(tx, app_id).await?,
    };
    let config = target.config(sealer)?;
    sqlx::query("DELETE FROM app_config_vars WHERE app_id = $1")
        .bind(app_id)
        .execute(&mut *tx)
        .await?;
    for (key, value) in &config {
        sqlx::query(
            "INSERT INTO app_config_vars (app_id, team_id, key, sealed) VALUES ($1, $2, $3, $4)",
        )
        .bind(app_id)
        .bind(team_id)
        .bind(key)
        .bind(sealer.seal(app_id, key, value))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE apps SET port = $3, cpu_millis = $4, memory_mib = $5, health_check_path = $6,
             updated_at = now()
         WHERE id = $1 AND team_id = $2",
    )
    .bind(app_id)
    .bind(team_id)
    .bind(target.port)
    .bind(target.cpu_millis)
    .bind(target.memory_mib)
    .bind(&target.health_check_path)
    .execute(&mut *tx)
    .await?;
    create(
        tx,
        sealer,
        app_id,
        team_id,
        actor,
        Change::Rollback { to: &target },
    )
    .await?
    .ok_or_else(|| ApiError::internal("a rollback always has an image"))
}

async fn last_good_before_current(tx: &mut PgConnection, app_id: Uuid) -> ApiResult<ReleaseRow> {
    let current: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM releases WHERE app_id = $1
         ORDER BY (status IN ('pending', 'rolling_out', 'active')) DESC, version DESC LIMIT 1",
    )
    .bind(app_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(current) = current else {
        return Err(conflict(
            "this app has no releases yet: deploy an image first",
        ));
    };
    let target: Option<ReleaseRow> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases
         WHERE app_id = $1 AND version < $2 AND activated_at IS NOT NULL
         ORDER BY version DESC LIMIT 1"
    ))
    .bind(app_id)
    .bind(current)
    .fetch_optional(&mut *tx)
    .await?;
    target.ok_or_else(|| {
        conflict(format!(
            "no release before v{current} ever served, so there is nothing to roll back to; name one with {{\"version\": N}}"
        ))
    })
}
