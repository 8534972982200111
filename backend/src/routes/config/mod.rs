//! `/api/v1/teams/{team}/apps/{app}/config`: an app's config vars (its environment).
//!
//! Values are sealed at rest ([`crate::crypto`]); viewers see the names only. `PUT` replaces the
//! whole set, `PATCH` sets some keys and removes those given as `null`.

pub mod get;
pub mod update;

use std::collections::BTreeMap;

use gantry_common::api::{config_limits, ConfigVar, ConfigVars};
use gantry_common::{ConfigKey, Permission};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::authz::AppAccess;
use crate::error::{invalid, ApiError, ApiResult};
use crate::state::AppState;

/// Reads an app's vars, opening the values only when the caller's role may see them.
async fn load(
    conn: &mut PgConnection,
    state: &AppState,
    access: &AppAccess,
) -> ApiResult<ConfigVars> {
    let rows = sqlx::query_as::<_, (String, Vec<u8>)>(
        "SELECT key, sealed FROM app_config_vars WHERE team_id = $1 AND app_id = $2 ORDER BY key",
    )
    .bind(access.access.team.id)
    .bind(access.app.id)
    .fetch_all(conn)
    .await?;
    let visible = access.access.role.allows(Permission::ReadConfigValues);
    let vars = rows
        .into_iter()
        .map(|(key, sealed)| {
            let value = if visible {
                Some(
                    state
                        .sealer
                        .open(access.app.id, &key, &sealed)
                        .map_err(ApiError::internal)?,
                )
            } else {
                None
            };
            let key = ConfigKey::parse(&key).map_err(ApiError::internal)?;
            Ok(ConfigVar { key, value })
        })
        .collect::<ApiResult<_>>()?;
    Ok(ConfigVars {
        vars,
        values_visible: visible,
    })
}

/// Checks a value: environment variables cannot hold NUL, and values are bounded.
fn check_value(key: &ConfigKey, value: &str) -> ApiResult<()> {
    if value.len() > config_limits::MAX_VALUE_BYTES {
        return Err(invalid(format!(
            "the value of {key} is {} bytes; the limit is {} bytes",
            value.len(),
            config_limits::MAX_VALUE_BYTES
        )));
    }
    if value.contains('\0') {
        return Err(invalid(format!(
            "the value of {key} contains a NUL character"
        )));
    }
    Ok(())
}

/// Writes the final set: `upserts` replace or add, `removals` delete. Returns an error (and
/// writes nothing, the caller's transaction being dropped) when the set would exceed the limit.
async fn write(
    tx: &mut PgConnection,
    state: &AppState,
    team_id: Uuid,
    app_id: Uuid,
    upserts: &BTreeMap<ConfigKey, String>,
    removals: &[ConfigKey],
) -> ApiResult<()> {
    for (key, value) in upserts {
        check_value(key, value)?;
    }
    if !removals.is_empty() {
        let keys: Vec<&str> = removals.iter().map(ConfigKey::as_str).collect();
        sqlx::query("DELETE FROM app_config_vars WHERE app_id = $1 AND key = ANY($2)")
            .bind(app_id)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
    }
    for (key, value) in upserts {
        sqlx::query(
            "INSERT INTO app_config_vars (app_id, team_id, key, sealed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (app_id, key) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()",
        )
        .bind(app_id)
        .bind(team_id)
        .bind(key.as_str())
        .bind(state.sealer.seal(app_id, key.as_str(), value))
        .execute(&mut *tx)
        .await?;
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM app_config_vars WHERE app_id = $1")
        .bind(app_id)
        .fetch_one(&mut *tx)
        .await?;
    if count as usize > config_limits::MAX_VARS {
        return Err(invalid(format!(
            "an app can have at most {} config vars; this change would leave {count}",
            config_limits::MAX_VARS
        )));
    }
    Ok(())
}
