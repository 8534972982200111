//! The one place a release is made.

use std::collections::BTreeMap;

use gantry_common::cluster::ImageRef;
use gantry_common::releases::ImageSource;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{config_key, ReleaseRow, RELEASE_COLUMNS};
use crate::audit::Actor;
use crate::crypto::Sealer;
use crate::error::{ApiError, ApiResult};

/// What made the release.
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// A new image (from this server's registry, pinned, or from elsewhere).
    Deploy {
        image: &'a ImageRef,
        source: ImageSource,
    },
    /// An image built from a `git push` (build `number` of `commit`).
    Build {
        image: &'a ImageRef,
        source: ImageSource,
        number: u32,
        commit: &'a str,
    },
    /// Config vars set or removed (names only: values are secrets).
    Config {
        set: Vec<String>,
        removed: Vec<String>,
    },
    /// A change of the settings a release freezes (port, resources, health check).
    Settings { changed: Vec<&'static str> },
    /// Back to an earlier release's image (its config and settings were restored on the app
    /// first, in the same transaction).
    Rollback { to: &'a ReleaseRow },
}

impl Change<'_> {
    fn cause(&self) -> String {
        match self {
            Change::Deploy { image, .. } => format!("Deploy {image}"),
            Change::Build { number, commit, .. } => format!(
                "Build {number} ({})",
                gantry_common::builds::short_commit(commit)
            ),
            Change::Config { set, removed } => {
                let mut parts = Vec::new();
                if !set.is_empty() {
                    parts.push(format!("Set {}", names(set)));
                }
                if !removed.is_empty() {
                    parts.push(format!("Remove {}", names(removed)));
                }
                if parts.is_empty() {
                    "Config change".to_owned()
                } else {
                    parts.join("; ")
                }
            }
            Change::Settings { changed } => format!("Change {}", changed.join(", ")),
            Change::Rollback { to } => format!("Rollback to v{}", to.version()),
        }
    }
}

/// `A, B, C and 4 more`.
fn names(keys: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = keys
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        text.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    text
}

#[derive(sqlx::FromRow)]
struct AppNow {
    port: Option<i32>,
    cpu_millis: i32,
    memory_mib: i32,
    health_check_path: String,
}

/// Makes release vN of the app, inside the caller's transaction (after the change it records),
/// from the app's settings and config vars as they are now in that transaction.
///
/// The image comes from the change (a deploy, a rollback), or else from the newest release that
/// serves or is on its way — so a config change made after a failed release builds on the last
/// good image, and one made during a rollout on the image being rolled out. An app with no such
/// release has nothing to run yet: then no release is made (`None`), and the next deploy picks
/// the change up.
///
/// A release pending or rolling out is superseded by the new one.
///
/// # Guarantees
/// Versions of an app are 1, 2, 3…: the app row is locked while the version is chosen.
pub async fn create(
    tx: &mut PgConnection,
    sealer: &Sealer,
    app_id: Uuid,
    team_id: Uuid,
    actor: &Actor,
    change: Change<'_>,
) -> ApiResult<Option<ReleaseRow>> {
    let app: AppNow = sqlx::query_as(
        "SELECT port, cpu_millis, memory_mib, health_check_path FROM apps
         WHERE id = $1 AND team_id = $2 FOR UPDATE",
    )
    .bind(app_id)
    .bind(team_id)
    .fetch_one(&mut *tx)
    .await?;
    let (image, image_source, image_digest) = match &change {
        Change::Deploy { image, source } | Change::Build { image, source, .. } => {
            (image.as_str().to_owned(), source.as_str().to_owned(), None)
        }
        Change::Rollback { to } => (
            to.image.clone(),
            to.image_source.clone(),
            to.image_digest.clone(),
        ),
        Change::Config { .. } | Change::Settings { .. } => {
            let base: Option<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT image, image_source, image_digest FROM releases
                 WHERE app_id = $1 AND status IN ('pending', 'rolling_out', 'active')
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(app_id)
            .fetch_optional(&mut *tx)
            .await?;
            match base {
                Some(base) => base,
                None => return Ok(None),
            }
        }
    };

    let version: i32 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) + 1 FROM releases WHERE app_id = $1")
            .bind(app_id)
            .fetch_one(&mut *tx)
            .await?;
    let config = current_config(tx, sealer, app_id).await?;
    let json = serde_json::to_string(&config).map_err(ApiError::internal)?;
    let sealed = sealer.seal(app_id, &config_key(version as u32), &json);
    let keys: Vec<String> = config.into_keys().collect();

    sqlx::query(
        "UPDATE releases SET status = 'superseded', finished_at = now(),
             reason = 'superseded by v' || $2 || ' before its rollout finished'
         WHERE app_id = $1 AND status IN ('pending', 'rolling_out')",
    )
    .bind(app_id)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    let rollback_of = match &change {
        Change::Rollback { to } => Some(to.version),
        _ => None,
    };
    let row: ReleaseRow = sqlx::query_as(&format!(
        "INSERT INTO releases (team_id, app_id, version, status, image, image_digest, port,
             cpu_millis, memory_mib, health_check_path, config_sealed, config_keys, cause,
             rollback_of, actor, actor_user_id, actor_token_id, image_source)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 $17)
         RETURNING {RELEASE_COLUMNS}"
    ))
    .bind(team_id)
    .bind(app_id)
    .bind(version)
    .bind(&image)
    .bind(image_digest)
    .bind(app.port)
    .bind(app.cpu_millis)
    .bind(app.memory_mib)
    .bind(&app.health_check_path)
    .bind(sealed)
    .bind(&keys)
    .bind(change.cause())
    .bind(rollback_of)
    .bind(&actor.label)
    .bind(actor.user_id)
    .bind(actor.token_id)
    .bind(&image_source)
    .fetch_one(&mut *tx)
    .await?;
    tracing::info!(app.id = %app_id, release.version = version, "release v{version} of app {app_id}: {}", row.cause);
    Ok(Some(row))
}

/// The app's config vars as they are in the transaction, opened.
async fn current_config(
    tx: &mut PgConnection,
    sealer: &Sealer,
    app_id: Uuid,
) -> ApiResult<BTreeMap<String, String>> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT key, sealed FROM app_config_vars WHERE app_id = $1")
            .bind(app_id)
            .fetch_all(&mut *tx)
            .await?;
    rows.into_iter()
        .map(|(key, sealed)| {
            let value = sealer
                .open(app_id, &key, &sealed)
                .map_err(ApiError::internal)?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_name_what_changed_without_values() {
        let config = Change::Config {
            set: vec!["GREETING".into()],
            removed: vec!["OLD".into()],
        };
        assert_eq!(config.cause(), "Set GREETING; Remove OLD");
        let many: Vec<String> = (1..=8).map(|n| format!("K{n}")).collect();
        let config = Change::Config {
            set: many,
            removed: vec![],
        };
        assert_eq!(config.cause(), "Set K1, K2, K3, K4, K5 and 3 more");
        let settings = Change::Settings {
            changed: vec!["port", "health_check_path"],
        };
        assert_eq!(settings.cause(), "Change port, health_check_path");
        let image = ImageRef::parse("gantry-hello:2").unwrap();
        assert_eq!(
            Change::Deploy {
                image: &image,
                source: ImageSource::External
            }
            .cause(),
            "Deploy gantry-hello:2"
        );
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let build = Change::Build {
            image: &image,
            source: ImageSource::Registry,
            number: 3,
            commit,
        };
        assert_eq!(build.cause(), "Build 3 (0123456789ab)");
    }
}
